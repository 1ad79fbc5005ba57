"""The hourglass module of Newell et al. (pose-hg-train ``src/models/hg.lua``), over tensors.

``hourglass(x, depth=4)`` at resolution r (every box a :class:`PreActResidual` of ``filters``)::

    x ──────────── up1: Res ────────────────────────────────────────────────┐
    └─ MaxPool 2x2 ─ low1: Res ─ low2 ─ low3: Res ─ nearest x2 upsample ─ + ── out (r)
                                 │
                                 └ hourglass(depth - 1) at r/2, or one Res at depth 1

With ``num_modules`` > 1 every "Res" is that many residuals in a row. A depth-4 hourglass with
one module holds 13 residuals and needs its input's height and width divisible by 16.

The stem in front of the first hourglass is :func:`hourglass_stem`: 7x7/s2 conv 64 + BN +
ReLU, Res(128), 2x2 max-pool, Res(128), Res(filters), i.e. stride 4.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_pose.layers.conv_bn import ConvBN
from keras_pose.layers.residual import TORCH_CONV_INITIALIZER, PreActResidual
from keras_pose.layers.upsample import NearestUpsample2x

STEM_CHANNELS = 64
STEM_RESIDUAL_CHANNELS = 128
STEM_STRIDE = 4


def residuals(x, filters: int, count: int, name: str, **options: Any):
    """``count`` pre-activation residuals of ``filters`` in a row, named ``{name}_{i}``."""
    for index in range(1, count + 1):
        x = PreActResidual(filters, name=f"{name}_{index}", **options)(x)
    return x


def nearest_upsample_x2(x, name: str):
    """Nearest-neighbour x2 upsampling (:class:`NearestUpsample2x`: GPU-delegate and ONNX exact)."""
    return NearestUpsample2x(name=name)(x)


def hourglass(
    x,
    depth: int,
    filters: int,
    num_modules: int = 1,
    name: str = "hourglass",
    **options: Any,
):
    """One hourglass of ``depth`` pooling levels; ``options`` go to every residual."""
    if depth < 1:
        raise ValueError(f"hourglass depth must be >= 1, got {depth}")
    height, width = x.shape[1], x.shape[2]
    if height % 2 or width % 2:
        raise ValueError(
            f"{name}: an hourglass level needs an even input size to pool and upsample, "
            f"got {height}x{width}"
        )
    prefix = f"{name}_level{depth}"
    up1 = residuals(x, filters, num_modules, f"{prefix}_up1", **options)
    low1 = keras.layers.MaxPooling2D(2, strides=2, name=f"{prefix}_pool")(x)
    low1 = residuals(low1, filters, num_modules, f"{prefix}_low1", **options)
    if depth > 1:
        low2 = hourglass(low1, depth - 1, filters, num_modules, name, **options)
    else:
        low2 = residuals(low1, filters, num_modules, f"{prefix}_low2", **options)
    low3 = residuals(low2, filters, num_modules, f"{prefix}_low3", **options)
    up2 = nearest_upsample_x2(low3, f"{prefix}_upsample")
    return keras.layers.Add(name=f"{prefix}_add")([up1, up2])


def hourglass_stem(x, filters: int, **options: Any):
    """7x7/s2 conv 64 (pad 3) + BN + ReLU, Res(128), MaxPool 2x2, Res(128), Res(filters).

    ``options`` (``bn_epsilon``, ``bn_momentum``, ``kernel_initializer``,
    ``kernel_regularizer``) go to the conv and to every residual.
    """
    options.setdefault("kernel_initializer", TORCH_CONV_INITIALIZER)
    x = ConvBN(STEM_CHANNELS, 7, strides=2, use_bias=True, name="stem_conv", **options)(x)
    x = PreActResidual(STEM_RESIDUAL_CHANNELS, name="stem_res1", **options)(x)
    x = keras.layers.MaxPooling2D(2, strides=2, name="stem_pool")(x)
    x = PreActResidual(STEM_RESIDUAL_CHANNELS, name="stem_res2", **options)(x)
    return PreActResidual(filters, name="stem_res3", **options)(x)
