"""COCO keypoint evaluation: person rescoring, OKS-NMS, results files and pycocotools AP.

``evaluate_coco`` (in :mod:`keras_pose.evaluation.evaluate`) is loaded on first access, so the
numpy parts stay importable without TensorFlow/Keras.
"""

from keras_pose.evaluation.coco_eval import METRIC_NAMES, coco_keypoint_ap, format_metrics
from keras_pose.evaluation.nms import (
    NMS_MODES,
    oks_iou,
    oks_matrix,
    oks_nms,
    soft_oks_nms,
    suppress,
)
from keras_pose.evaluation.rescoring import instance_scores, mean_keypoint_scores
from keras_pose.evaluation.results import (
    ResultsError,
    load_results,
    make_results,
    validate_results,
    write_results,
)

_EVALUATE_NAMES = ("evaluate_coco", "default_nms", "default_keypoint_threshold")


def __getattr__(name):
    if name in _EVALUATE_NAMES:
        from keras_pose.evaluation import evaluate

        return getattr(evaluate, name)
    raise AttributeError(f"module 'keras_pose.evaluation' has no attribute {name!r}")


__all__ = [
    "METRIC_NAMES",
    "NMS_MODES",
    "ResultsError",
    "coco_keypoint_ap",
    "default_keypoint_threshold",
    "default_nms",
    "evaluate_coco",
    "format_metrics",
    "instance_scores",
    "load_results",
    "make_results",
    "mean_keypoint_scores",
    "oks_iou",
    "oks_matrix",
    "oks_nms",
    "soft_oks_nms",
    "suppress",
    "validate_results",
    "write_results",
]
