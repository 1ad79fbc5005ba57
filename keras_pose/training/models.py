"""The ``--model`` names of the training recipe and how each is built."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Sequence

from keras_pose.models.base import PoseModel


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """A builder (``module.attribute``, a function or a ``PoseModel`` class) and its
    keyword arguments; ``family`` selects the training recipe."""

    module: str
    attribute: str
    family: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def builder(self):
        return getattr(importlib.import_module(self.module), self.attribute)


MODELS: dict[str, ModelEntry] = {
    "cpn50": ModelEntry("keras_pose.models.cpn", "CPN50", "cpn"),
    "cpn101": ModelEntry("keras_pose.models.cpn", "CPN101", "cpn"),
    "mspn1": ModelEntry("keras_pose.models.mspn", "MSPN", "mspn", {"num_stages": 1}),
    "mspn": ModelEntry("keras_pose.models.mspn", "MSPN", "mspn", {"num_stages": 2}),
    "mspn3": ModelEntry("keras_pose.models.mspn", "MSPN", "mspn", {"num_stages": 3}),
    "mspn4": ModelEntry("keras_pose.models.mspn", "MSPN", "mspn", {"num_stages": 4}),
    "rsn18": ModelEntry("keras_pose.models.rsn", "RSN18", "rsn"),
    "rsn50": ModelEntry("keras_pose.models.rsn", "RSN50", "rsn"),
    "2xrsn50": ModelEntry("keras_pose.models.rsn", "RSN50", "rsn", {"num_stages": 2}),
    "3xrsn50": ModelEntry("keras_pose.models.rsn", "RSN50", "rsn", {"num_stages": 3}),
    "4xrsn50": ModelEntry("keras_pose.models.rsn", "RSN50", "rsn", {"num_stages": 4}),
    "cpm": ModelEntry("keras_pose.models.cpm", "CPM", "cpm"),
    "hourglass": ModelEntry("keras_pose.models.hourglass", "StackedHourglass", "hourglass"),
    "tiny": ModelEntry("keras_pose.training.tiny", "TinyPoseNet", "rsn"),
}


def model_entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name]


def build_model(
    name: str,
    input_size: Sequence[int] | None = None,
    num_keypoints: int = 17,
    **overrides: Any,
) -> PoseModel:
    """The uncompiled model ``name`` (a key of :data:`MODELS`).

    Args:
        input_size: ``(height, width)``; default: the builder's.
        num_keypoints: K.
        overrides: further constructor arguments (e.g. ``num_stages=3``, ``use_prm=True``).
    """
    entry = model_entry(name)
    kwargs = {**entry.kwargs, "num_keypoints": num_keypoints, **overrides}
    if input_size is not None:
        kwargs["input_shape"] = (int(input_size[0]), int(input_size[1]), 3)
    factory = entry.builder()
    if isinstance(factory, type):
        return factory(**kwargs)
    return factory(compile=False, **kwargs)


def register_model_classes() -> None:
    """Import every model module, so ``keras.saving.load_model`` knows their classes."""
    for entry in MODELS.values():
        importlib.import_module(entry.module)
