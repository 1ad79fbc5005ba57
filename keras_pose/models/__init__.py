"""The five model families, one module each, all returning a :class:`PoseModel`."""

from keras_pose.models.base import PoseModel

__all__ = ["PoseModel"]
