"""Inference: :class:`Predictor` (image + person boxes -> keypoints), :class:`PoseInferencer`
(detector + pose + tracking on images and videos), pose models of any form, drawing."""

from keras_pose.inference.detectors import load_detector
from keras_pose.inference.inferencer import PoseInferencer, PoseResult
from keras_pose.inference.pose_models import load_pose
from keras_pose.inference.predictor import Predictor
from keras_pose.inference.tracking import Tracker
from keras_pose.inference.visualize import draw_people, draw_skeleton, save_png

__all__ = [
    "PoseInferencer",
    "PoseResult",
    "Predictor",
    "Tracker",
    "draw_people",
    "draw_skeleton",
    "load_detector",
    "load_pose",
    "save_png",
]
