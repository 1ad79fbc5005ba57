"""The five model families, one module each, all returning a :class:`PoseModel`.

``build_model(name, **kwargs)`` builds any variant by the short names the recipes take
(``cpn50``, ``2xmspn50``, ``rsn18``, ``4xrsn50``, ``cpm``, ``hourglass`` ...).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from keras_pose.models.base import PoseModel
from keras_pose.models.cpm import CPM, CPMModel
from keras_pose.models.cpn import CPN, CPN50, CPN101
from keras_pose.models.hourglass import StackedHourglass, StackedHourglassModel
from keras_pose.models.hourglass52 import Hourglass52, Hourglass52Model
from keras_pose.models.mspn import MSPN
from keras_pose.models.rsn import RSN, RSN18, RSN50
from keras_pose.models.base import finish_builder


def _class_builder(cls: type, **fixed: Any) -> Callable[..., PoseModel]:
    def build(weights=None, compile: bool = True, **kwargs: Any) -> PoseModel:
        return finish_builder(cls(**fixed, **kwargs), weights, compile)

    return build


MODELS: dict[str, Callable[..., PoseModel]] = {
    "cpn50": CPN50,
    "cpn101": CPN101,
    **{
        (f"{s}xmspn50" if s > 1 else "mspn50"): _class_builder(MSPN, num_stages=s)
        for s in (1, 2, 3, 4)
    },
    "rsn18": RSN18,
    "rsn50": RSN50,
    **{f"{s}xrsn50": functools.partial(RSN50, num_stages=s) for s in (2, 3, 4)},
    "cpm": CPM,
    "hourglass": StackedHourglass,
    "hourglass52": Hourglass52,
}


def build_model(name: str, **kwargs: Any) -> PoseModel:
    """Build a model by its short name (``keras_pose.models.MODELS`` lists them)."""
    key = name.lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[key](**kwargs)


__all__ = [
    "CPM",
    "CPMModel",
    "CPN",
    "CPN50",
    "CPN101",
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
    "build_model",
]
