"""The model families, one module each, all returning a :class:`PoseModel`.

Classes are ``<Family>Model`` (``CPNModel``, ``MSPNModel``, ``RSNModel``, ``CPMModel``,
``StackedHourglassModel``, ``Hourglass52Model``, ``TinyPoseModel``); builders are functions
with one keyword signature (``input_shape``, ``num_keypoints``, ``weights``, ``compile``,
``variant``, then the family's own arguments) that load weights and compile: ``CPN50``,
``CPN101``, ``MSPN50``, ``RSN18``, ``RSN50``, ``CPM``, ``StackedHourglass``, ``Hourglass52``,
``TinyPose``. ``build_model(name, **kwargs)`` builds any of them by the short names every
recipe takes (``cpn50``, ``2xmspn50``, ``rsn18``, ``4xrsn50``, ``cpm``, ``hourglass`` ...);
``FAMILIES`` names each one's family (its :class:`~keras_pose.profiles.FamilyProfile`).
The former class names ``CPN``, ``MSPN``, ``RSN`` and ``TinyPoseNet`` still work for one
release, with a DeprecationWarning.
"""

from __future__ import annotations

from typing import Any

from keras_pose.models.base import PoseModel, deprecated_alias
from keras_pose.models.cpm import CPM, CPMModel
from keras_pose.models.cpn import CPN50, CPN101, CPNModel
from keras_pose.models.hourglass import StackedHourglass, StackedHourglassModel
from keras_pose.models.hourglass52 import Hourglass52, Hourglass52Model
from keras_pose.models.mspn import MSPN50, MSPNModel
from keras_pose.models.registry import (
    FAMILIES,
    MODELS,
    build_model,
    check_model_name,
    load_model,
)
from keras_pose.models.rsn import RSN18, RSN50, RSNModel
from keras_pose.models.tiny import TinyPose, TinyPoseModel

DEPRECATED_NAMES = {
    "CPN": CPNModel,
    "MSPN": MSPNModel,
    "RSN": RSNModel,
    "TinyPoseNet": TinyPoseModel,
}


def __getattr__(name: str) -> Any:
    return deprecated_alias(__name__, name, DEPRECATED_NAMES)


__all__ = [
    "CPM",
    "CPMModel",
    "CPN50",
    "CPN101",
    "CPNModel",
    "FAMILIES",
    "Hourglass52",
    "Hourglass52Model",
    "MODELS",
    "MSPN50",
    "MSPNModel",
    "PoseModel",
    "RSN18",
    "RSN50",
    "RSNModel",
    "StackedHourglass",
    "StackedHourglassModel",
    "TinyPose",
    "TinyPoseModel",
    "build_model",
    "check_model_name",
    "load_model",
]
