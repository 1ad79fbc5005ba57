"""The five model families, one module each, all returning a :class:`PoseModel`.

``build_model(name, **kwargs)`` builds any variant by the short names every recipe takes
(``cpn50``, ``2xmspn50``, ``rsn18``, ``4xrsn50``, ``cpm``, ``hourglass`` ...); ``FAMILIES``
names each one's family (its training recipe). ``tiny`` is a few-layer network for smoke tests.
"""

from __future__ import annotations

from keras_pose.models.base import PoseModel
from keras_pose.models.cpm import CPM, CPMModel
from keras_pose.models.cpn import CPN, CPN50, CPN101
from keras_pose.models.hourglass import StackedHourglass, StackedHourglassModel
from keras_pose.models.hourglass52 import Hourglass52, Hourglass52Model
from keras_pose.models.mspn import MSPN
from keras_pose.models.rsn import RSN, RSN18, RSN50
from keras_pose.models.tiny import TinyPoseNet
from keras_pose.models.registry import (
    FAMILIES,
    MODELS,
    build_model,
    check_model_name,
    load_model,
)


__all__ = [
    "CPM",
    "CPMModel",
    "CPN",
    "CPN50",
    "CPN101",
    "FAMILIES",
    "Hourglass52",
    "Hourglass52Model",
    "MODELS",
    "MSPN",
    "PoseModel",
    "RSN",
    "RSN18",
    "RSN50",
    "StackedHourglass",
    "StackedHourglassModel",
    "TinyPoseNet",
    "build_model",
    "check_model_name",
    "load_model",
]
