"""Stacked Hourglass Networks (Newell et al., ECCV 2016), as pose-hg-train ``src/models/hg.lua``
builds them::

    crop (RGB 0..255) ─ x / 255 ─ stem: 7x7/s2 conv 64 + BN + ReLU, Res 128, MaxPool 2,
                                        Res 128, Res F                      (stride 4: inter)
    for stack i = 1..S:
        inter ─ hourglass(depth 4, F) ─ Res F ─ lin: 1x1 F + BN + ReLU = ll ─ 1x1 K ─► "stack{i}"
        if i < S:  inter = inter + 1x1 F(ll) + 1x1 F(heatmap)               (last: "heatmaps")

``Res`` is the pre-activation residual (:class:`keras_pose.layers.residual.PreActResidual`,
BN-ReLU-conv x3 with a 1x1 projection skip when widths differ) and the hourglass is
:func:`keras_pose.backbones.hourglass.hourglass` (13 residuals at depth 4, nearest upsampling).
With ``num_modules`` M every Res inside and after an hourglass is M residuals in a row. Convs
have biases; BatchNorm is Torch7's (eps 1e-5, momentum 0.1 = Keras 0.9). The crop's height and
width must be multiples of 64 (stride 4 then four 2x2 pools).

Training as the original: every stack is supervised with the same target, L2 of weight 1, on
labelled joints; the target is ``image.gaussian(7)`` pasted at the joint, a 7x7 patch whose
effective sigma is 0.25 * 7 = 1.75 heatmap cells (the paper says 1); RMSprop lr 2.5e-4,
alpha 0.99, no momentum. Test: flip average and the quarter-cell offset of the MSRA codec.

Size: 25,434,112 parameters for 8 stacks of 256 features and 16 MPII joints (the original's
25.4M; BatchNorm moving statistics not counted); 55.2 GFLOPs at 256x256 (``keras_pose.utils.flops``:
27.4 GMACs of convolution plus BatchNorm, biases and sums).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras

from keras_pose.backbones.hourglass import STEM_STRIDE, hourglass, hourglass_stem, residuals
from keras_pose.layers import ConvBN, PixelNormalization
from keras_pose.layers.residual import TORCH_CONV_INITIALIZER
from keras_pose.models.base import (
    IMAGE_INPUT,
    PoseModel,
    check_input_shape,
    check_positive,
    check_variant,
    finish_builder,
    keyword_builder,
)
from keras_pose.profiles import HOURGLASS as PROFILE
from keras_pose.spec import PoseSpec, msra_outputs

HOURGLASS_DEPTH = 4
OUTPUT_STRIDE = STEM_STRIDE
INPUT_MULTIPLE = STEM_STRIDE * 2**HOURGLASS_DEPTH
PIXEL_MEAN = (0.0, 0.0, 0.0)
PIXEL_STD = (255.0, 255.0, 255.0)
TARGET_SIGMA = 0.25 * 7  # image.gaussian(7) in util/img.lua
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def output_name(stack: int, num_stacks: int) -> str:
    return "heatmaps" if stack == num_stacks else f"stack{stack}"


def hourglass_spec(input_size: Sequence[int], num_keypoints: int, num_stacks: int) -> PoseSpec:
    """MSRA targets of sigma 1.75 cells for every stack; L2 of weight 1 on labelled joints."""
    names = [output_name(stack, num_stacks) for stack in range(1, num_stacks + 1)]
    outputs = msra_outputs(names, TARGET_SIGMA, OUTPUT_STRIDE)
    return PoseSpec(
        family=PROFILE.family,
        input_size=(int(input_size[0]), int(input_size[1])),
        num_keypoints=num_keypoints,
        channel_order=PROFILE.channel_order,
        outputs=outputs,
        box_extension=PROFILE.box_extension,
        flip_test=PROFILE.evaluation.flip_test,
    )


def check_arguments(
    input_shape: Sequence[int],
    num_stacks: int,
    num_features: int,
    num_modules: int,
    num_keypoints: int,
) -> tuple[int, int, int]:
    check_positive("StackedHourglass", num_stacks=num_stacks, num_modules=num_modules,
                   num_keypoints=num_keypoints)
    if num_features < 2 or num_features % 2:
        raise ValueError(f"StackedHourglass: num_features must be even, got {num_features}")
    return check_input_shape(input_shape, "StackedHourglass", multiple=INPUT_MULTIPLE)


def conv1x1(filters: int, name: str) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(filters, 1, kernel_initializer=TORCH_CONV_INITIALIZER, name=name)


@keras.saving.register_keras_serializable(package="keras_pose")
class StackedHourglassModel(PoseModel):
    """Newell's stacked hourglass network with intermediate supervision.

    Args:
        num_stacks: S (8 in the paper).
        num_features: F, the width of every hourglass and residual (256).
        num_modules: residuals per "Res" box (1).
        input_shape: ``(height, width, 3)``, multiples of 64; the RGB 0..255 crop.
        num_keypoints: K, the heatmap channels.
        variant: ``"original"`` only (MMPose's Hourglass-52 is another network,
            :class:`~keras_pose.models.hourglass52.Hourglass52Model`).
        name: model name (default ``hourglass_{S}stack``).

    Outputs ``stack1 .. stack{S-1}`` and ``heatmaps``, all ``(N, H/4, W/4, K)``.
    """

    family = "hourglass"

    def __init__(
        self,
        num_stacks: int = 8,
        num_features: int = 256,
        num_modules: int = 1,
        input_shape: Sequence[int] = (256, 256, 3),
        num_keypoints: int = 17,
        name: str | None = None,
        variant: str = "original",
    ) -> None:
        check_variant(variant, "StackedHourglass", allowed=("original",))
        h, w, c = check_arguments(input_shape, num_stacks, num_features, num_modules, num_keypoints)
        options = dict(
            bn_epsilon=BN_EPSILON,
            bn_momentum=BN_MOMENTUM,
            kernel_initializer=TORCH_CONV_INITIALIZER,
        )
        image = keras.Input(shape=(h, w, c), name=IMAGE_INPUT)
        x = PixelNormalization(PIXEL_MEAN, PIXEL_STD, name="normalize")(image)
        inter = hourglass_stem(x, num_features, **options)
        outputs = {}
        for stack in range(1, num_stacks + 1):
            prefix = f"stack{stack}"
            x = hourglass(
                inter, HOURGLASS_DEPTH, num_features, num_modules, f"{prefix}_hourglass", **options
            )
            x = residuals(x, num_features, num_modules, f"{prefix}_res", **options)
            ll = ConvBN(num_features, 1, use_bias=True, name=f"{prefix}_lin", **options)(x)
            heatmap = conv1x1(num_keypoints, output_name(stack, num_stacks))(ll)
            outputs[output_name(stack, num_stacks)] = heatmap
            if stack < num_stacks:
                inter = keras.layers.Add(name=f"{prefix}_merge")(
                    [
                        inter,
                        conv1x1(num_features, f"{prefix}_features_back")(ll),
                        conv1x1(num_features, f"{prefix}_heatmaps_back")(heatmap),
                    ]
                )
        super().__init__(
            inputs=image,
            outputs=outputs,
            spec=hourglass_spec((h, w), num_keypoints, num_stacks),
            name=name or f"hourglass_{num_stacks}stack",
        )
        self._arguments = dict(
            num_stacks=num_stacks,
            num_features=num_features,
            num_modules=num_modules,
            input_shape=[h, w, c],
            num_keypoints=num_keypoints,
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._arguments}


@keyword_builder("num_stacks", "num_features", "num_modules", "input_shape", "num_keypoints",
                 "weights", "compile", "name")
def StackedHourglass(
    *,
    input_shape: Sequence[int] = (256, 256, 3),
    num_keypoints: int = 17,
    weights: str | os.PathLike | None = None,
    compile: bool = True,
    variant: str = "original",
    num_stacks: int = 8,
    num_features: int = 256,
    num_modules: int = 1,
    name: str | None = None,
) -> StackedHourglassModel:
    """Builds a :class:`StackedHourglassModel`, loads ``weights`` (a ``.weights.h5`` file) and
    compiles it with the family's losses and optimizer unless ``compile=False``."""
    model = StackedHourglassModel(
        num_stacks, num_features, num_modules, input_shape, num_keypoints, name=name,
        variant=variant,
    )
    return finish_builder(model, weights, compile)
