"""Exact bilinear resizing in the two conventions the originals use.

* ``"tf_legacy"`` — TF1 ``tf.image.resize_bilinear`` defaults (CPN): ``src = dst * in / out``.
* ``"align_corners"`` — PyTorch ``F.interpolate(..., align_corners=True)`` (MSPN, RSN):
  ``src = dst * (in - 1) / (out - 1)``.

``keras.ops.image.resize`` uses half-pixel centres and matches neither. On the TensorFlow
backend the layer lowers to ``ResizeBilinear`` with the matching flags (one TFLite
``RESIZE_BILINEAR`` op, which the GPU delegate runs); on other backends it multiplies by
separable interpolation matrices, which gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

MODES = ("tf_legacy", "align_corners")


def interpolation_matrix(in_size: int, out_size: int, mode: str) -> np.ndarray:
    """The ``(out_size, in_size)`` matrix A with ``resized = A @ signal`` along one axis."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "align_corners":
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    else:
        scale = in_size / out_size
    src = np.arange(out_size, dtype=np.float64) * scale
    lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, lo), 1.0 - frac)
    np.add.at(matrix, (rows, hi), frac)
    return matrix.astype(np.float32)


@keras.saving.register_keras_serializable(package="keras_pose")
class BilinearUpsample(keras.layers.Layer):
    """Resize NHWC feature maps to a fixed ``size`` with an exact bilinear convention.

    Args:
        size: ``(height, width)`` of the output.
        mode: ``"tf_legacy"`` (CPN) or ``"align_corners"`` (MSPN/RSN).
    """

    def __init__(self, size: Sequence[int], mode: str = "tf_legacy", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.size = tuple(int(s) for s in size)
        self.mode = mode

    def build(self, input_shape) -> None:
        _, h, w, _ = input_shape
        if h is None or w is None:
            raise ValueError(
                f"BilinearUpsample needs a static input height/width, got {input_shape}"
            )
        self._in_size = (int(h), int(w))
        self._rows = interpolation_matrix(h, self.size[0], self.mode)
        self._cols = interpolation_matrix(w, self.size[1], self.mode)

    def call(self, inputs):
        if self._in_size == self.size:
            return inputs
        if keras.backend.backend() == "tensorflow":
            return _tf_resize_bilinear(inputs, self.size, self.mode == "align_corners")
        rows = ops.convert_to_tensor(self._rows, dtype=inputs.dtype)
        cols = ops.convert_to_tensor(self._cols, dtype=inputs.dtype)
        return ops.einsum("hH,bHWc,wW->bhwc", rows, inputs, cols)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size[0], self.size[1], input_shape[3])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(size=list(self.size), mode=self.mode)
        return config


def _tf_resize_bilinear(images, size, align_corners: bool):
    import tensorflow as tf  # only reached on the TensorFlow backend

    return tf.raw_ops.ResizeBilinear(
        images=images, size=list(size), align_corners=align_corners, half_pixel_centers=False
    )


@keras.saving.register_keras_serializable(package="keras_pose")
class NearestUpsample2x(keras.layers.Layer):
    """Nearest-neighbour x2 upsampling of NHWC maps written as concatenations and reshapes.

    Each pixel is repeated along channels then folded into width, and each row likewise into
    height. It lowers to CONCATENATION and RESHAPE only, which every runtime computes exactly
    (TFLite's RESIZE_NEAREST_NEIGHBOR is not on the GPU delegate's op list, and ONNX Runtime's
    nearest resize rounds differently), and needs static height, width and channels.
    """

    def call(self, inputs):
        _, height, width, channels = inputs.shape
        if None in (height, width, channels):
            raise ValueError(f"NearestUpsample2x needs a static input shape, got {inputs.shape}")
        x = ops.concatenate([inputs, inputs], axis=-1)
        x = ops.reshape(x, (-1, height, 2 * width, channels))
        x = ops.concatenate([x, x], axis=2)
        return ops.reshape(x, (-1, 2 * height, 2 * width, channels))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if h is None else 2 * h, None if w is None else 2 * w, c)
