"""Small utilities: FLOPs counting, atomic file writes (:mod:`keras_pose.utils.atomic`)."""

from keras_pose.utils.atomic import atomic_path, save_atomic, write_json, write_text
from keras_pose.utils.flops import flops

__all__ = ["atomic_path", "flops", "save_atomic", "write_json", "write_text"]
