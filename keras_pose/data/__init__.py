"""Datasets, top-down crops, targets and the tf.data pipeline.

The pipeline (``build_dataset``, which imports TensorFlow) and the synthetic data set
(:mod:`keras_pose.data.synthetic`) are loaded on first access, so the COCO reader, the geometry
in :mod:`keras_pose.data.transforms` and the targets import without TensorFlow or Keras.
"""

import importlib

from keras_pose.data.coco import (
    BadImageError,
    PersonRecord,
    load_coco_records,
    load_detection_records,
    read_dataset_info,
    read_image,
)
from keras_pose.data.dataset_info import COCO17, DatasetInfo, load_keypoint_info
from keras_pose.data.targets import make_targets
from keras_pose.data.transforms import (
    AugmentConfig,
    augment_config_for,
    box_to_center_size,
    crop_matrix,
    invert_matrix,
    transform_points,
    warp_image,
)

_PIPELINE_NAMES = (
    "build_dataset",
    "dataset_from_records",
    "evaluation_dataset",
    "training_dataset",
    "SKIPPED_IMAGES",
)
_LAZY_SUBMODULES = ("pipeline", "synthetic")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"keras_pose.data.{name}")
    if name in _PIPELINE_NAMES:
        from keras_pose.data import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'keras_pose.data' has no attribute {name!r}")


__all__ = [
    "COCO17",
    "DatasetInfo",
    "AugmentConfig",
    "BadImageError",
    "PersonRecord",
    "SKIPPED_IMAGES",
    "augment_config_for",
    "box_to_center_size",
    "build_dataset",
    "evaluation_dataset",
    "training_dataset",
    "crop_matrix",
    "dataset_from_records",
    "invert_matrix",
    "load_coco_records",
    "load_detection_records",
    "load_keypoint_info",
    "make_targets",
    "read_dataset_info",
    "read_image",
    "transform_points",
    "warp_image",
]
