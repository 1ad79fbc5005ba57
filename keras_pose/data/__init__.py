"""Datasets, top-down crops, targets and the tf.data pipeline."""

from keras_pose.data.dataset_info import COCO17, DatasetInfo

__all__ = ["COCO17", "DatasetInfo"]
