"""Reading weight files of other frameworks and writing converted Keras weights atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from keras_pose.utils.atomic import save_atomic


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{name: array}`` of a PyTorch ``.pth``/``.pt`` file, or of an ``.npz`` of the same keys.

    A checkpoint holding the state dict under ``"state_dict"`` (MMPose, mmengine) is unwrapped;
    non-tensor entries are dropped. Reading ``.pth`` needs PyTorch (``pip install
    keras-pose[torch]``); ``.npz`` needs nothing.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"reading {path} needs PyTorch: pip install 'keras-pose[torch]' "
            "(or convert it to an .npz of the same keys)"
        ) from None
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return state_dict_to_numpy(checkpoint, path)


def state_dict_to_numpy(checkpoint: Any, description: str = "checkpoint") -> dict[str, np.ndarray]:
    """Unwrap ``{"state_dict": ...}`` and turn every tensor into a numpy array."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{description}: expected a state dict, got {type(checkpoint).__name__}")
    arrays = {}
    for name, value in checkpoint.items():
        if hasattr(value, "detach"):
            arrays[str(name)] = value.detach().cpu().float().numpy() if value.is_floating_point() \
                else value.detach().cpu().numpy()
        elif isinstance(value, np.ndarray):
            arrays[str(name)] = value
    if not arrays:
        raise ValueError(f"{description}: no tensors found")
    return arrays


def save_weights_atomic(model: keras.Model, path: str | os.PathLike) -> str:
    """``model.save_weights(path)``, atomically (:func:`keras_pose.utils.atomic.save_atomic`)."""
    return _save_atomic(model.save_weights, path, ".weights.h5")


def save_model_atomic(model: keras.Model, path: str | os.PathLike) -> str:
    """``model.save(path)`` (a whole ``.keras`` model), atomically."""
    return _save_atomic(model.save, path, ".keras")


def _save_atomic(save, path: str | os.PathLike, suffix: str) -> str:
    if not os.fspath(path).endswith(suffix):
        raise ValueError(f"expected a path ending in {suffix}, got {os.fspath(path)}")
    return save_atomic(save, path, suffix)
