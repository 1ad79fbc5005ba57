"""keras-pose: top-down human pose estimation in Keras 3, faithful to CPN, MSPN, RSN, CPM and
Stacked Hourglass.

    import keras_pose
    model = keras_pose.CPN50()                     # compiled with tf-cpn's losses and optimizer
    model.fit(keras_pose.data.build_dataset(model, ann_file, image_dir), epochs=...)

Submodules: ``layers``, ``models``, ``losses``, ``codecs``, ``data``, ``inference``,
``evaluation``; ``export``, ``convert`` and ``training`` are imported on first use (they pull
in optional dependencies).
"""

import importlib
from typing import Any

from keras_pose import codecs, data, evaluation, inference, layers, losses, models
from keras_pose.data.dataset_info import COCO17, DatasetInfo
from keras_pose.inference import PoseInferencer, Predictor, draw_skeleton, load_pose
from keras_pose.inference import visualize
from keras_pose.models import (
    CPM,
    CPN,
    CPN50,
    CPN101,
    MSPN,
    RSN,
    RSN18,
    RSN50,
    Hourglass52,
    PoseModel,
    StackedHourglass,
    build_model,
)
from keras_pose.spec import CodecSpec, OutputSpec, PoseSpec
from keras_pose.version import __version__

_LAZY_SUBMODULES = ("export", "convert", "training", "utils")


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"keras_pose.{name}")
    if name == "evaluate_coco":
        from keras_pose.evaluation import evaluate_coco

        return evaluate_coco
    raise AttributeError(f"module 'keras_pose' has no attribute {name!r}")


__all__ = [
    "COCO17",
    "CPM",
    "CPN",
    "CPN50",
    "CPN101",
    "CodecSpec",
    "DatasetInfo",
    "Hourglass52",
    "MSPN",
    "OutputSpec",
    "PoseInferencer",
    "PoseModel",
    "PoseSpec",
    "Predictor",
    "RSN",
    "RSN18",
    "RSN50",
    "StackedHourglass",
    "__version__",
    "build_model",
    "codecs",
    "data",
    "draw_skeleton",
    "evaluate_coco",
    "evaluation",
    "inference",
    "layers",
    "load_pose",
    "losses",
    "models",
    "visualize",
]
