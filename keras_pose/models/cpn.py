"""Cascaded Pyramid Network (Chen et al., CVPR 2018), exactly as tf-cpn builds it.

::

    BGR crop 0..255 ──(x - [102.98, 115.95, 122.77]) / 255──► ResNet-v1 trunk
                                                  C2 (s4)  C3 (s8)  C4 (s16)  C5 (s32)
    GlobalNet (feature pyramid, coarse to fine, from C5 down to C2):
        lateral_l = ReLU(BN(conv1x1_256(C_l)))
        P5 = lateral_5
        P_l = merge_l(upsample(P_{l+1} to C_l's size)) + lateral_l    (l = 4, 3, 2)
              merge_l: 1x1 conv 256 with bias, no BN, no ReLU; no ReLU after the sum
        global_c{l} = resize(BN(conv3x3_K(ReLU(BN(conv1x1_256(P_l))))), H/4 x W/4)
                                                        tmp_l ──┘          pyramid_l
    RefineNet (on the 256-channel P_l, not on the heatmaps):
        R_l = resize(Bottleneck^(l-2)(P_l), H/4 x W/4)  0/1/2/3 bottlenecks (256 out, 128 mid)
                                                        run at each level's own resolution
        heatmaps = BN(conv3x3_K(Bottleneck_1024->256(concat[R_2, R_3, R_4, R_5])))
                   final_bottleneck (projection shortcut) ──┘        refine_out

    Every resize is TF1's legacy ``resize_bilinear`` (``src = dst * in / out``).
    Losses: global_c2..c5 plain L2 against targets blurred with k = 15/11/9/7 (23/17/13/9 at
    384x288; the finest level gets the widest kernel, as released), visible joints only,
    weight 1/8 each (sum over levels / 4 / 2); heatmaps: OHKM (top 8 of 17) against k = 7 (9).

Outputs, in this order: ``global_c2, global_c3, global_c4, global_c5, heatmaps``.

Correspondence with the tf-cpn graph (``tfcpn_variable_name`` spells it per variable)::

    Keras layer                     tf-cpn variable scope
    conv1, block{b}_unit_{u}        resnet_v1_{depth}/conv1, .../block{b}/unit_{u}/bottleneck_v1
    lateral_res{l}                  lateral/res{l}
    merge_res{l}                    merge/res{l}         (kernel -> weights, bias -> biases)
    tmp_res{l}, pyramid_res{l}      tmp/res{l}, pyramid/res{l}
    res{l}_refine_conv{j}           res{l}/refine_conv{j}
    final_bottleneck                final_bottleneck
    heatmaps                        refine_out

Inside a :class:`~keras_pose.layers.ConvBN`, ``conv/kernel`` is slim's ``weights`` (same HWIO
layout) and ``bn/{gamma,beta,moving_mean,moving_variance}`` is ``BatchNorm/...``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import keras

from keras_pose.backbones.resnet import RESNET_DEPTHS, TFCPN_BN_EPSILON, TFCPN_BN_MOMENTUM, resnet
from keras_pose.layers import BilinearUpsample, Bottleneck, ConvBN, LateralBlock, PixelNormalization
from keras_pose.models.base import (
    IMAGE_INPUT,
    PoseModel,
    check_input_shape,
    check_variant,
    deprecated_alias,
    finish_builder,
    keyword_builder,
    register_legacy_name,
)
from keras_pose.profiles import CPN as PROFILE
from keras_pose.spec import PoseSpec, megvii_outputs

PIXEL_MEAN_BGR = (102.9801, 115.9465, 122.7717)
PIXEL_STD = (255.0, 255.0, 255.0)
STRIDE = 4
LEVELS = (2, 3, 4, 5)
PYRAMID_CHANNELS = 256
REFINE_MID_CHANNELS = 128
OUTPUT_NAMES = ("global_c2", "global_c3", "global_c4", "global_c5", "heatmaps")
# Gaussian kernels of the targets of global_c2..c5 and heatmaps (tf-cpn config.py gk15..gk7).
KERNELS_256x192 = (15, 11, 9, 7, 7)
KERNELS_384x288 = (23, 17, 13, 9, 9)
BOX_EXTENSION = PROFILE.box_extension  # imgExtXBorder 0.1 and imgExtYBorder 0.15 per side
XAVIER = "glorot_uniform"  # tf.contrib.layers.xavier_initializer() (uniform)
HE = "he_normal"  # slim variance_scaling_initializer() (truncated normal, fan-in, factor 2)


def cpn_spec(input_size: Sequence[int], num_keypoints: int = 17) -> PoseSpec:
    """The :class:`PoseSpec` of a CPN taking ``input_size = (height, width)`` crops.

    Inputs of height >= 384 use the 384x288 configuration's kernels (23/17/13/9), smaller ones
    the 256x192 kernels (15/11/9/7).
    """
    height, width = (int(s) for s in input_size)
    kernels = KERNELS_384x288 if height >= 384 else KERNELS_256x192
    outputs = megvii_outputs(
        OUTPUT_NAMES,
        kernels,
        losses=("mse",) * 4 + ("ohkm",),
        loss_weights=(1 / 8,) * 4 + (1.0,),
        stride=STRIDE,
        decode_blur=21,
        decode_normalize=True,
    )
    return PoseSpec(
        family=PROFILE.family,
        input_size=(height, width),
        num_keypoints=num_keypoints,
        channel_order=PROFILE.channel_order,
        outputs=outputs,
        box_extension=PROFILE.box_extension,
        flip_test=PROFILE.evaluation.flip_test,
    )


def global_net(
    features: dict[str, Any],
    output_size: tuple[int, int],
    num_keypoints: int,
    bn_kwargs: dict[str, Any],
) -> tuple[dict[int, Any], dict[int, Any]]:
    """GlobalNet: returns the merged 256-channel maps ``P_l`` and the outputs ``global_c{l}``."""
    merged: dict[int, Any] = {}
    outputs: dict[int, Any] = {}
    previous = None
    for level in reversed(LEVELS):
        feature = features[f"C{level}"]
        x = LateralBlock(
            PYRAMID_CHANNELS, kernel_initializer=XAVIER, name=f"lateral_res{level}", **bn_kwargs
        )(feature)
        if previous is not None:
            upsampled = BilinearUpsample(x.shape[1:3], name=f"upsample_res{level}")(previous)
            upsampled = keras.layers.Conv2D(
                PYRAMID_CHANNELS,
                1,
                use_bias=True,
                kernel_initializer=XAVIER,
                name=f"merge_res{level}",
            )(upsampled)
            x = keras.layers.Add(name=f"sum_res{level}")([upsampled, x])
        merged[level] = previous = x
        head = ConvBN(
            PYRAMID_CHANNELS, 1, kernel_initializer=XAVIER, name=f"tmp_res{level}", **bn_kwargs
        )(x)
        head = ConvBN(
            num_keypoints,
            3,
            activation=None,
            kernel_initializer=XAVIER,
            name=f"pyramid_res{level}",
            **bn_kwargs,
        )(head)
        outputs[level] = BilinearUpsample(output_size, name=f"global_c{level}")(head)
    return merged, outputs


def refine_net(
    merged: dict[int, Any],
    output_size: tuple[int, int],
    num_keypoints: int,
    bn_kwargs: dict[str, Any],
) -> Any:
    """RefineNet: ``l - 2`` bottlenecks per level at its own size, resize, concat, predict."""
    bottleneck_kwargs = dict(bottleneck_filters=REFINE_MID_CHANNELS, kernel_initializer=HE)
    resized = []
    for level in LEVELS:
        x = merged[level]
        for index in range(level - 2):
            x = Bottleneck(
                PYRAMID_CHANNELS,
                name=f"res{level}_refine_conv{index}",
                **bottleneck_kwargs,
                **bn_kwargs,
            )(x)
        resized.append(BilinearUpsample(output_size, name=f"upsample_conv_res{level}")(x))
    x = keras.layers.Concatenate(axis=-1, name="refine_concat")(resized)
    x = Bottleneck(PYRAMID_CHANNELS, name="final_bottleneck", **bottleneck_kwargs, **bn_kwargs)(x)
    return ConvBN(
        num_keypoints,
        3,
        activation=None,
        kernel_initializer=XAVIER,
        name="heatmaps",
        **bn_kwargs,
    )(x)


def _depth_from(depth: int, backbone: str | None) -> int:
    if backbone is not None:
        match = re.fullmatch(r"resnet(\d+)", str(backbone).lower().replace("-", ""))
        if match is None:
            raise ValueError(f"backbone must look like 'resnet50', got {backbone!r}")
        depth = int(match.group(1))
    if depth not in RESNET_DEPTHS:
        raise ValueError(f"CPN depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
    return depth


@keras.saving.register_keras_serializable(package="keras_pose")
class CPNModel(PoseModel):
    """Cascaded Pyramid Network: ResNet-v1 trunk, GlobalNet and RefineNet (see module doc).

    Args:
        depth: ResNet depth (50 and 101 are tf-cpn's; 18/34/152 also build).
        input_shape: ``(height, width, 3)`` of the BGR 0..255 crop; height and width must be
            multiples of 4 (tf-cpn: 256x192 or 384x288; multiples of 32 keep every pyramid
            level an exact halving).
        num_keypoints: K, the heatmap channels.
        bn_epsilon: BatchNorm epsilon. tf-cpn's source asks for 1e-9, but TF 1.x raised a fused
            BN epsilon below 1.001e-5 to 1.001e-5, so the released models ran with 1.001e-5.
        bn_momentum: BatchNorm momentum (slim decay 0.99).
        weight_decay: slim's L2 factor ``wd * sum(w**2) / 2``, applied as Keras
            ``L2(wd / 2)`` on every conv kernel except the GlobalNet ``merge`` convs (they sit
            outside tf-cpn's arg_scope). 0 disables it.
        backbone: alternative spelling of ``depth``, e.g. ``"resnet101"``.
        backbone_weights: ImageNet initialisation of the trunk from a torchvision-layout
            ResNet state dict (``.pth``, read with PyTorch, or an ``.npz`` of the same keys),
            via :func:`keras_pose.convert.load_torchvision_resnet` (first conv adapted to
            CPN's BGR input). Not part of the config: it only initialises.
        variant: ``"original"`` only (MMPose has no CPN).
        name: model name.
    """

    def __init__(
        self,
        depth: int = 50,
        input_shape: Sequence[int] = (256, 192, 3),
        num_keypoints: int = 17,
        bn_epsilon: float = TFCPN_BN_EPSILON,
        bn_momentum: float = TFCPN_BN_MOMENTUM,
        weight_decay: float = 1e-5,
        backbone: str | None = None,
        backbone_weights: str | None = None,
        variant: str = "original",
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        check_variant(variant, "CPN", allowed=("original",))
        depth = _depth_from(depth, backbone)
        height, width, channels = check_input_shape(input_shape, "CPN", multiple=STRIDE)
        output_size = (height // STRIDE, width // STRIDE)
        regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
        bn_kwargs = dict(
            bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, kernel_regularizer=regularizer
        )

        image = keras.Input((height, width, channels), name=IMAGE_INPUT)
        x = PixelNormalization(PIXEL_MEAN_BGR, PIXEL_STD, name="pixel_normalization")(image)
        features = resnet(x, depth, **bn_kwargs)
        merged, global_outputs = global_net(features, output_size, num_keypoints, bn_kwargs)
        heatmaps = refine_net(merged, output_size, num_keypoints, bn_kwargs)
        outputs = {f"global_c{level}": global_outputs[level] for level in LEVELS}
        outputs["heatmaps"] = heatmaps

        super().__init__(
            inputs=image,
            outputs=outputs,
            spec=cpn_spec((height, width), num_keypoints),
            name=name or f"cpn{depth}",
            **kwargs,
        )
        self.depth = depth
        self.image_shape = (height, width, channels)
        self.num_keypoints = num_keypoints
        self.bn_epsilon = bn_epsilon
        self.bn_momentum = bn_momentum
        self.weight_decay = weight_decay
        if backbone_weights is not None:
            from keras_pose.convert.torchvision import load_torchvision_resnet

            load_torchvision_resnet(self, backbone_weights)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            depth=self.depth,
            input_shape=list(self.image_shape),
            num_keypoints=self.num_keypoints,
            bn_epsilon=self.bn_epsilon,
            bn_momentum=self.bn_momentum,
            weight_decay=self.weight_decay,
        )
        return config


def tfcpn_variable_name(path: str, depth: int = 50) -> str:
    """The tf-cpn (slim) variable name of a CPN variable, from its Keras ``variable.path``.

    ``block2_unit_1/conv2/bn/gamma`` -> ``resnet_v1_50/block2/unit_1/bottleneck_v1/conv2/
    BatchNorm/gamma``; ``merge_res4/kernel`` -> ``merge/res4/weights``; ``heatmaps/conv/kernel``
    -> ``refine_out/weights``.
    """
    layer, *rest = path.split("/")
    return f"{_tfcpn_scope(layer, depth)}/{_tfcpn_leaf(rest, path)}"


def _tfcpn_scope(layer: str, depth: int) -> str:
    if layer == "conv1":
        return f"resnet_v1_{depth}/conv1"
    if layer == "heatmaps":
        return "refine_out"
    if layer == "final_bottleneck":
        return layer
    unit = re.fullmatch(r"block(\d)_unit_(\d+)", layer)
    if unit:
        return f"resnet_v1_{depth}/block{unit.group(1)}/unit_{unit.group(2)}/bottleneck_v1"
    head = re.fullmatch(r"(lateral|merge|tmp|pyramid)_(res\d)", layer)
    if head:
        return f"{head.group(1)}/{head.group(2)}"
    refine = re.fullmatch(r"(res\d)_(refine_conv\d+)", layer)
    if refine:
        return f"{refine.group(1)}/{refine.group(2)}"
    raise ValueError(f"layer {layer!r} has no tf-cpn counterpart")


def _tfcpn_leaf(parts: list[str], path: str) -> str:
    leaf = {"kernel": "weights", "bias": "biases"}
    if parts[-2:-1] == ["bn"]:
        return "/".join(parts[:-2] + ["BatchNorm", parts[-1]])
    if parts[-2:-1] == ["conv"] and parts[-1] in leaf:
        return "/".join(parts[:-2] + [leaf[parts[-1]]])
    if len(parts) == 1 and parts[0] in leaf:
        return leaf[parts[0]]
    raise ValueError(f"variable {path!r} has no tf-cpn counterpart")


_LEGACY_ORDER = ("input_shape", "num_keypoints", "weights", "compile")


@keyword_builder(*_LEGACY_ORDER)
def CPN50(
    *,
    input_shape: Sequence[int] = (256, 192, 3),
    num_keypoints: int = 17,
    weights: str | os.PathLike | None = None,
    compile: bool = True,
    variant: str = "original",
    **kwargs: Any,
) -> CPNModel:
    """CPN with a ResNet-50 trunk (tf-cpn ``COCO.res50.{256x192,384x288}.CPN``); ``kwargs``
    go to :class:`CPNModel`."""
    model = CPNModel(depth=50, input_shape=input_shape, num_keypoints=num_keypoints,
                     variant=variant, **kwargs)
    return finish_builder(model, weights, compile)


@keyword_builder(*_LEGACY_ORDER)
def CPN101(
    *,
    input_shape: Sequence[int] = (256, 192, 3),
    num_keypoints: int = 17,
    weights: str | os.PathLike | None = None,
    compile: bool = True,
    variant: str = "original",
    **kwargs: Any,
) -> CPNModel:
    """CPN with a ResNet-101 trunk (tf-cpn ``COCO.res101.{256x192,384x288}.CPN``); ``kwargs``
    go to :class:`CPNModel`."""
    model = CPNModel(depth=101, input_shape=input_shape, num_keypoints=num_keypoints,
                     variant=variant, **kwargs)
    return finish_builder(model, weights, compile)


register_legacy_name(CPNModel, "CPN")


def __getattr__(name: str) -> Any:
    return deprecated_alias(__name__, name, {"CPN": CPNModel})
