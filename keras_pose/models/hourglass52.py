"""MMPose's Hourglass-52: one CornerNet-style hourglass (``HourglassNet(num_stacks=1)``).

This is not Newell's network (:mod:`keras_pose.models.hourglass`): it is the hourglass of
CornerNet that MMPose's ``td-hm_hourglass52_8xb32-210e_coco-256x256`` config trains on COCO::

    RGB crop ─ ImageNet mean/std ─ 7x7/s2 conv 128 + BN + ReLU ─ BasicBlock(256, stride 2)
       ─ hourglass(depth 5, widths 256, 256, 384, 384, 384, 512, blocks 2, 2, 2, 2, 2, 4)
       ─ 3x3 conv 256 + BN + ReLU ─ 1x1 conv to K (bias) ─► heatmaps   (stride 4)

    hourglass(d, widths, blocks) at resolution r:
        up1  = blocks[0] BasicBlocks widths[0] -> widths[0]
        low1 = blocks[0] BasicBlocks widths[0] -> widths[1], the first with stride 2
        low2 = hourglass(d - 1, widths[1:], blocks[1:]), or blocks[1] BasicBlocks at d = 1
        low3 = blocks[0] BasicBlocks widths[1] -> widths[0], the width changing in the last
        out  = up1 + nearest_x2(low3)

BasicBlocks are torchvision's (two 3x3 convs, no bias, BN, 1x1 projection + BN when the width
or stride changes); strided convs pad symmetrically; BN eps 1e-5. Input sides must be
multiples of 128 (256x256 or 384x384). Keras layer names spell MMPose's module paths with
``.`` written ``__`` (``hourglass_modules__0__low1__0``), so MMPose checkpoints map by name
(:func:`keras_pose.convert.load_mmpose_checkpoint`). Output: ``heatmaps`` ``(N, H/4, W/4, K)``,
MSRA targets of sigma 2 (MMPose's codec). 93,667,217 trainable parameters with 17 keypoints:
MMPose's 94,847,889 less the one ``inters`` block it builds but never runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras

from keras_pose.backbones.hourglass import nearest_upsample_x2
from keras_pose.layers import ConvBN
from keras_pose.layers.basic_block import BasicBlock
from keras_pose.models.base import (
    IMAGE_INPUT,
    PoseModel,
    check_input_shape,
    check_variant,
    finish_builder,
    keyword_builder,
)
from keras_pose.models.mmpose_variant import mmpose_normalization
from keras_pose.profiles import HOURGLASS52 as PROFILE
from keras_pose.spec import MMPOSE, MSRA, CodecSpec, OutputSpec, PoseSpec

STAGE_CHANNELS = (256, 256, 384, 384, 384, 512)
STAGE_BLOCKS = (2, 2, 2, 2, 2, 4)
DOWNSAMPLE_TIMES = 5
STEM_CHANNELS = 128
FEATURE_CHANNELS = 256
OUTPUT_STRIDE = 4
INPUT_MULTIPLE = OUTPUT_STRIDE * 2**DOWNSAMPLE_TIMES
TARGET_SIGMA = 2.0
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9
# MMPose's init: Normal(std 0.001) for convs
INITIALIZER = {"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.001}}


def layer_name(module_path: str) -> str:
    """Keras layer name of an MMPose module path (``.`` -> ``__``, no ``backbone.``)."""
    return module_path.replace(".", "__")


def res_layer(x, count: int, out_channels: int, path: str, strides: int = 1,
              width_change_last: bool = False):
    """MMPose's ``ResLayer`` of BasicBlocks named ``{path}.{i}``.

    The width (and stride) change in the first block, or with ``width_change_last`` (MMPose's
    ``downsample_first=False``, the hourglass ``low3``) in the last one.
    """
    in_channels = int(x.shape[-1])
    for index in range(count):
        last = index == count - 1
        changes = last if width_change_last else index == 0
        filters = out_channels if changes else (in_channels if width_change_last else out_channels)
        x = BasicBlock(
            filters,
            strides=strides if changes else 1,
            bn_epsilon=BN_EPSILON,
            bn_momentum=BN_MOMENTUM,
            kernel_initializer=INITIALIZER,
            name=layer_name(f"{path}.{index}"),
        )(x)
    return x


def hourglass_module(x, depth: int, channels: Sequence[int], blocks: Sequence[int], path: str):
    """One CornerNet hourglass level (see the module docstring)."""
    current, following = channels[0], channels[1]
    up1 = res_layer(x, blocks[0], current, f"{path}.up1")
    low1 = res_layer(x, blocks[0], following, f"{path}.low1", strides=2)
    if depth > 1:
        low2 = hourglass_module(low1, depth - 1, channels[1:], blocks[1:], f"{path}.low2")
    else:
        low2 = res_layer(low1, blocks[1], following, f"{path}.low2")
    low3 = res_layer(low2, blocks[0], current, f"{path}.low3", width_change_last=True)
    up2 = nearest_upsample_x2(low3, layer_name(f"{path}.up2"))
    return keras.layers.Add(name=layer_name(f"{path}.add"))([up1, up2])


def conv_module(filters: int, kernel_size: int, path: str, strides: int = 1) -> ConvBN:
    """MMPose's ``ConvModule`` with BN: conv (no bias) + BN + ReLU."""
    return ConvBN(
        filters,
        kernel_size,
        strides=strides,
        bn_epsilon=BN_EPSILON,
        bn_momentum=BN_MOMENTUM,
        kernel_initializer=INITIALIZER,
        name=layer_name(path),
    )


def hourglass52_spec(input_size: Sequence[int], num_keypoints: int) -> PoseSpec:
    codec = CodecSpec(MSRA, sigma=TARGET_SIGMA, peak=1.0, flip_shift=True, convention=MMPOSE)
    return PoseSpec(
        family=PROFILE.family,
        input_size=(int(input_size[0]), int(input_size[1])),
        num_keypoints=num_keypoints,
        channel_order=PROFILE.channel_order,
        outputs=(OutputSpec("heatmaps", OUTPUT_STRIDE, codec, loss="mse"),),
        box_extension=PROFILE.box_extension,  # MMPose's GetBBoxCenterScale padding
        flip_test=PROFILE.evaluation.flip_test,
    )


@keras.saving.register_keras_serializable(package="keras_pose")
class Hourglass52Model(PoseModel):
    """MMPose's Hourglass-52 (one CornerNet-style stack) taking the RGB 0..255 crop.

    Args:
        input_shape: ``(height, width, 3)``, multiples of 128 (MMPose: 256x256 or 384x384).
        num_keypoints: K.
        variant: ``"mmpose"`` only (the network exists only in MMPose).
        name: model name (default ``hourglass52``).
    """

    variant = "mmpose"

    def __init__(
        self,
        input_shape: Sequence[int] = (256, 256, 3),
        num_keypoints: int = 17,
        name: str | None = None,
        variant: str = "mmpose",
    ) -> None:
        check_variant(variant, "Hourglass52", allowed=("mmpose",))
        h, w, c = check_input_shape(input_shape, "Hourglass52", multiple=INPUT_MULTIPLE)
        image = keras.Input(shape=(h, w, c), name=IMAGE_INPUT)
        x = mmpose_normalization()(image)
        x = conv_module(STEM_CHANNELS, 7, "stem.0", strides=2)(x)
        x = res_layer(x, 1, STAGE_CHANNELS[0], "stem.1", strides=2)
        x = hourglass_module(
            x, DOWNSAMPLE_TIMES, STAGE_CHANNELS, STAGE_BLOCKS, "hourglass_modules.0"
        )
        x = conv_module(FEATURE_CHANNELS, 3, "out_convs.0")(x)
        heatmaps = keras.layers.Conv2D(
            num_keypoints, 1, kernel_initializer=INITIALIZER, name="heatmaps"
        )(x)
        super().__init__(
            inputs=image,
            outputs={"heatmaps": heatmaps},
            spec=hourglass52_spec((h, w), num_keypoints),
            name=name or "hourglass52",
        )
        self._arguments = dict(input_shape=[h, w, c], num_keypoints=num_keypoints)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._arguments}


@keyword_builder("input_shape", "num_keypoints", "weights", "compile", "name")
def Hourglass52(
    *,
    input_shape: Sequence[int] = (256, 256, 3),
    num_keypoints: int = 17,
    weights: str | os.PathLike | None = None,
    compile: bool = True,
    variant: str = "mmpose",
    name: str | None = None,
) -> Hourglass52Model:
    """Builds MMPose's Hourglass-52 (load MMPose weights with
    :func:`keras_pose.convert.load_mmpose_checkpoint`, or ``weights=`` a converted
    ``.weights.h5``)."""
    model = Hourglass52Model(input_shape, num_keypoints, name=name, variant=variant)
    return finish_builder(model, weights, compile)
