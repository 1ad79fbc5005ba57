"""The registry of model names: ``MODELS`` (name -> builder), ``FAMILIES`` (name -> family,
read from the :class:`~keras_pose.profiles.FamilyProfile` that lists the name),
``build_model`` and ``load_model`` (a name or a ``.keras`` file).

Every builder has one signature: keyword arguments ``input_shape``, ``num_keypoints``,
``weights``, ``compile``, ``variant``, then the family's own (``num_stages``, ``num_stacks``...).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

from keras_pose.models.base import PoseModel, finish_builder
from keras_pose.models.cpm import CPM
from keras_pose.models.cpn import CPN50, CPN101
from keras_pose.models.hourglass import StackedHourglass
from keras_pose.models.hourglass52 import Hourglass52
from keras_pose.models.mspn import MSPN50
from keras_pose.models.rsn import RSN18, RSN50
from keras_pose.models.tiny import TinyPose
from keras_pose.profiles import family_of

MODELS: dict[str, Callable[..., PoseModel]] = {
    "cpn50": CPN50,
    "cpn101": CPN101,
    "mspn50": MSPN50,
    **{f"{s}xmspn50": functools.partial(MSPN50, num_stages=s) for s in (2, 3, 4)},
    "rsn18": RSN18,
    "rsn50": RSN50,
    **{f"{s}xrsn50": functools.partial(RSN50, num_stages=s) for s in (2, 3, 4)},
    "cpm": CPM,
    "hourglass": StackedHourglass,
    "hourglass52": Hourglass52,
    "tiny": TinyPose,
}

FAMILIES: dict[str, str] = {name: family_of(name) for name in MODELS}


def check_model_name(name: str) -> str:
    """``name`` in lower case, if ``MODELS`` has it (else a ValueError listing the names)."""
    key = name.lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return key


def build_model(name: str, **kwargs: Any) -> PoseModel:
    """Build a model by its short name (``keras_pose.models.MODELS`` lists them); ``kwargs``
    go to its builder (``input_shape``, ``num_keypoints``, ``weights``, ``compile``, ...)."""
    return MODELS[check_model_name(name)](**kwargs)


def check_keras_archive(path: str) -> None:
    """Raise a ``ValueError`` naming ``path`` if a ``.keras`` file is not a complete zip archive
    (Keras itself reports a truncated one as "File not found")."""
    import zipfile

    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a complete .keras file (a .keras model is a zip archive; "
                         f"this one is truncated or damaged, {os.path.getsize(path)} bytes)")


def load_model(
    name_or_path: str,
    weights: str | os.PathLike | None = None,
    input_shape: Sequence[int] | None = None,
    compile: bool = False,
) -> PoseModel:
    """A saved ``.keras`` model, or a fresh model by its ``MODELS`` name, with ``weights``
    (a ``.weights.h5`` file) loaded if given. ``input_shape`` applies to a fresh model only."""
    import keras

    path = os.fspath(name_or_path)
    if path.endswith(".keras") or os.path.isfile(path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"model file not found: {path}")
        if input_shape is not None:
            raise ValueError(f"{path}: a saved model keeps its input shape; drop input_shape")
        check_keras_archive(path)
        model = keras.saving.load_model(path, compile=compile)
        if not isinstance(model, PoseModel):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a keras-pose PoseModel")
        return finish_builder(model, weights, compile=False)
    kwargs = {} if input_shape is None else {"input_shape": tuple(int(v) for v in input_shape)}
    return build_model(path, weights=weights, compile=compile, **kwargs)
