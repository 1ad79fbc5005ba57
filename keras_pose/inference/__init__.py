"""Inference: :class:`Predictor` (image + person boxes -> keypoints) and pose drawing."""

from keras_pose.inference.predictor import Predictor
from keras_pose.inference.visualize import draw_skeleton, save_png

__all__ = ["Predictor", "draw_skeleton", "save_png"]
