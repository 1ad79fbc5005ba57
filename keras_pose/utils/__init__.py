"""Small utilities: FLOPs counting, atomic file writes."""

from keras_pose.utils.flops import flops

__all__ = ["flops"]
