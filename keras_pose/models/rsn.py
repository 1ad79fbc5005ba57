"""RSN: Residual Steps Networks (Cai et al., caiyuanhao1998/RSN), in MSPN's multi-stage wrapper.

RSN keeps MSPN's whole network (stem, upsample units, heads, cross-stage aggregation, losses,
data, test) and swaps the ResNet-50 bottlenecks of each stage's downsample module for
:class:`~keras_pose.layers.rsb.ResidualStepsBlock` layers: widths 64/128/256/512 with expansion
1, so the upsample units read 512/256/128/64-channel features. Depths: 18 = [2,2,2,2] blocks per
layer (the released code), 50 = [3,4,6,3] (the owner's recipe for RSN-50, issue #21), 101 =
[3,4,23,3] (by analogy). RSN was trained from scratch.

The Pose Refine Machine (``use_prm=True``) is the RSN code's ``PRM`` class, which the repository
defines but never uses; following the owner ("use it at the output end") it refines the final
``heatmaps`` output only. MMPose's PRM differs (see :mod:`keras_pose.layers.prm`).

``variant="mmpose"`` builds MMPose 1.x's RSN (no conv biases, RGB input with ImageNet
mean/std, no PRM), which loads MMPose checkpoints: ``RSN50(variant="mmpose")`` then
:func:`keras_pose.convert.load_mmpose_checkpoint` (see :mod:`keras_pose.models.mspn`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras

from keras_pose.layers.rsb import ResidualStepsBlock
from keras_pose.models.base import (
    deprecated_alias,
    finish_builder,
    keyword_builder,
    register_legacy_name,
)
from keras_pose.models.mspn import DownsampleDesign, MultiStagePoseModel

RSN_LAYERS = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def residual_steps_block(planes: int, strides: int = 1, name: str | None = None, **options: Any):
    """One RSB of ``planes`` output channels (expansion 1)."""
    return ResidualStepsBlock(planes, strides=strides, name=name, **options)


def rsn_downsample(depth: int) -> DownsampleDesign:
    if depth not in RSN_LAYERS:
        raise ValueError(f"RSN depth must be one of {sorted(RSN_LAYERS)}, got {depth}")
    return DownsampleDesign(residual_steps_block, RSN_LAYERS[depth], expansion=1)


@keras.saving.register_keras_serializable(package="keras_pose")
class RSNModel(MultiStagePoseModel):
    """Residual Steps Network: MSPN's multi-stage wrapper around RSB downsample modules.

    Args:
        depth: 18, 50 or 101 (blocks per layer [2,2,2,2], [3,4,6,3], [3,4,23,3]).
        num_stages: stages (1 for RSN-18/50, 2-4 for the "n x RSN-50" models).
        use_prm: refine the final ``heatmaps`` output with the RSN code's Pose Refine Machine.
        input_shape: ``(height, width, 3)``, both multiples of 32; the BGR 0..255 crop.
        num_keypoints: K, the heatmap channels.
        weight_decay: the originals' coupled Adam weight decay (1e-5), applied as an L2 penalty
            of ``weight_decay / 2`` on every conv kernel; 0 disables it.
        bn_epsilon, bn_momentum: BatchNorm constants (PyTorch defaults).
        variant: ``"original"`` (caiyuanhao1998/RSN) or ``"mmpose"`` (MMPose 1.x's RSN: no
            conv biases, RGB input with ImageNet mean/std; loads MMPose checkpoints).
        name: model name (default ``rsn{depth}``, or ``{S}xrsn{depth}`` for S stages).
        target_kernels: the five label kernels, as :class:`~keras_pose.models.mspn.MSPNModel`.

    Outputs as :class:`~keras_pose.models.mspn.MSPNModel`: ``stage{s}_unit{u}`` and
    ``heatmaps``.
    """

    family = "rsn"

    def __init__(
        self,
        depth: int = 18,
        num_stages: int = 1,
        use_prm: bool = False,
        input_shape: Sequence[int] = (256, 192, 3),
        num_keypoints: int = 17,
        weight_decay: float = 1e-5,
        bn_epsilon: float = 1e-5,
        bn_momentum: float = 0.9,
        variant: str = "original",
        name: str | None = None,
        target_kernels: Sequence[int] | None = None,
    ) -> None:
        default_name = f"rsn{depth}" if num_stages == 1 else f"{num_stages}xrsn{depth}"
        super().__init__(
            rsn_downsample(depth),
            num_stages=num_stages,
            input_shape=input_shape,
            num_keypoints=num_keypoints,
            use_prm=use_prm,
            weight_decay=weight_decay,
            bn_epsilon=bn_epsilon,
            bn_momentum=bn_momentum,
            variant=variant,
            name=name or default_name,
            target_kernels=target_kernels,
        )
        self.depth = depth

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "depth": self.depth, "use_prm": self.use_prm}


_LEGACY_ORDER = ("input_shape", "num_keypoints", "weights", "compile")


@keyword_builder(*_LEGACY_ORDER)
def RSN18(
    *,
    input_shape: Sequence[int] = (256, 192, 3),
    num_keypoints: int = 17,
    weights: str | os.PathLike | None = None,
    compile: bool = True,
    variant: str = "original",
    **kwargs: Any,
) -> RSNModel:
    """RSN-18 (the released RSN code: 1 stage, [2,2,2,2] RSBs); ``kwargs`` go to
    :class:`RSNModel`."""
    model = RSNModel(depth=18, input_shape=input_shape, num_keypoints=num_keypoints,
                     variant=variant, **kwargs)
    return finish_builder(model, weights, compile)


@keyword_builder(*_LEGACY_ORDER)
def RSN50(
    *,
    input_shape: Sequence[int] = (256, 192, 3),
    num_keypoints: int = 17,
    weights: str | os.PathLike | None = None,
    compile: bool = True,
    variant: str = "original",
    num_stages: int = 1,
    **kwargs: Any,
) -> RSNModel:
    """RSN-50 ([3,4,6,3] RSBs); ``num_stages=4`` gives 4xRSN-50. ``kwargs`` go to
    :class:`RSNModel`."""
    model = RSNModel(depth=50, num_stages=num_stages, input_shape=input_shape,
                     num_keypoints=num_keypoints, variant=variant, **kwargs)
    return finish_builder(model, weights, compile)


register_legacy_name(RSNModel, "RSN")


def __getattr__(name: str) -> Any:
    return deprecated_alias(__name__, name, {"RSN": RSNModel})
