"""MSPN, the multi-stage pose network (megvii-detection/MSPN), and the wrapper RSN shares.

The network, as ``exps/mspn.2xstg.coco/network.py`` builds it:

* ``ResNet_top`` once: 7x7/s2 conv 64 + BN + ReLU, 3x3/s2 max-pool (stride 4, 64 channels).
* Each stage = a **downsample module** (four ResNet layers of widths 64/128/256/512 times the
  block expansion, strides 4/8/16/32) + an **upsample module** of four units, coarse to fine.
  Unit ``u`` takes the downsample feature of its level ``x`` and the previous unit's output:
  ``out = ReLU(BN(conv1x1(x -> 256)) + BN(conv1x1(resize(prev))))`` (the first unit has no
  second term), and predicts ``resize_to_output(BN(conv3x3(ReLU(BN(conv1x1(out))))))``.
* Cross-stage aggregation (every stage but the last): ``skip1 = ReLU(BN(conv1x1(x)))`` and
  ``skip2 = ReLU(BN(conv1x1(out)))`` per unit are added to the next stage's ResNet layer outputs,
  and ``cross_conv = ReLU(BN(conv1x1(out of the finest unit -> 64)))`` is the next stage's input.
* Every unit of every stage predicts a heatmap: outputs ``stage{s}_unit{u}`` (u = 1..4 coarse to
  fine); the last stage's finest unit is ``heatmaps``, the prediction.

Every conv keeps its bias (PyTorch ``nn.Conv2d`` default) even before BN; BN uses PyTorch's
eps 1e-5 and momentum 0.1 (Keras 0.9). Resizes are bilinear with ``align_corners=True``.

``variant="mmpose"`` builds MMPose 1.x's port instead (``MSPN``/``RSN`` backbone + ``MSPNHead``
without PRM), so MMPose checkpoints load (:func:`keras_pose.convert.load_mmpose_checkpoint`) and
give MMPose's heatmaps: the same graph, but every conv followed by BN has **no bias**
(``ConvModule``), and the model takes the **RGB** crop normalised with ImageNet mean/std
(MMPose's data preprocessor, here inside the model). MMPose's PRM is not implemented.

Training targets and losses (``keras_pose.spec``): stages before the last are supervised with
Gaussian kernels 15/11/9/7 (coarse to fine), the last stage with 11/9/7/5; the three coarse
units use L2 on visible joints with weight 1/4, the finest unit of every stage OHKM (top 8).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import keras

from keras_pose.layers import BilinearUpsample, Bottleneck, ConvBN, PixelNormalization
from keras_pose.layers.prm import PoseRefineMachine
from keras_pose.models.base import (
    IMAGE_INPUT,
    PoseModel,
    check_input_shape,
    check_positive,
    check_variant,
    deprecated_alias,
    finish_builder,
    register_legacy_name,
)
from keras_pose.models.mmpose_variant import (
    MMPOSE_BOX_EXTENSION,
    MMPOSE_CHANNEL_ORDER,
    mmpose_normalization,
    variant_convention,
)
from keras_pose.profiles import PROFILES
from keras_pose.spec import PoseSpec, megvii_outputs

# ImageNet statistics in BGR order, on the 0..255 scale (MSPN/RSN feed cv2's BGR images).
BGR_MEAN = (0.406 * 255.0, 0.456 * 255.0, 0.485 * 255.0)
BGR_STD = (0.225 * 255.0, 0.224 * 255.0, 0.229 * 255.0)
# attribute.py COCO: TEST.X_EXTENTION = 0.09, TEST.Y_EXTENTION = 0.135, applied to the box
# before its aspect ratio is fixed (the MSPN and RSN profiles hold it).
TEST_BOX_EXTENSION = PROFILES["mspn"].box_extension
STEM_CHANNELS = 64
UNIT_CHANNELS = 256
LAYER_WIDTHS = (64, 128, 256, 512)
NUM_UNITS = 4
OUTPUT_STRIDE = 4
INPUT_MULTIPLE = 32
# label kernels of the five targets, coarse to fine; a non-final stage uses the first four,
# the final stage the last four (the originals' coarse-to-fine supervision).
TARGET_KERNELS = (15, 11, 9, 7, 5)
UNIT_LOSSES = ("mse", "mse", "mse", "ohkm")
UNIT_LOSS_WEIGHTS = (0.25, 0.25, 0.25, 1.0)
DECODE_BLUR = 5

# Downsample convs: kaiming_normal(fan_out) as in ResNet_downsample_module; every other conv:
# PyTorch's default kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)). Biases start at zero.
DOWNSAMPLE_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"},
}
DEFAULT_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_in", "distribution": "uniform"},
}

BlockFactory = Callable[..., keras.layers.Layer]


@dataclasses.dataclass(frozen=True)
class DownsampleDesign:
    """What a stage's downsample module is made of.

    Args:
        block: ``block(planes, strides=..., name=..., **conv_options) -> layer``, one residual
            block of ``planes * expansion`` output channels.
        blocks_per_layer: blocks in each of the four ResNet layers.
        expansion: output channels of a block per ``planes`` (4 for MSPN's bottleneck, 1 for RSB).
    """

    block: BlockFactory
    blocks_per_layer: tuple[int, int, int, int]
    expansion: int

    @property
    def level_channels(self) -> tuple[int, ...]:
        """Channels of the four downsample features x1..x4 (fine to coarse)."""
        return tuple(width * self.expansion for width in LAYER_WIDTHS)


def bottleneck_block(planes: int, strides: int = 1, name: str | None = None, **options: Any):
    """MSPN's torchvision-style bottleneck: 1x1 -> 3x3 (stride) -> 1x1 to ``4 * planes``."""
    return Bottleneck(4 * planes, bottleneck_filters=planes, strides=strides, name=name, **options)


RESNET50_LAYERS = (3, 4, 6, 3)
MSPN_DOWNSAMPLE = DownsampleDesign(bottleneck_block, RESNET50_LAYERS, expansion=4)


def output_name(stage: int, unit: int, num_stages: int) -> str:
    """``stage{s}_unit{u}`` (1-based), except the final stage's finest unit: ``heatmaps``."""
    if stage == num_stages and unit == NUM_UNITS:
        return "heatmaps"
    return f"stage{stage}_unit{unit}"


def output_names(num_stages: int) -> list[str]:
    return [
        output_name(s, u, num_stages)
        for s in range(1, num_stages + 1)
        for u in range(1, NUM_UNITS + 1)
    ]


def check_target_kernels(kernels: Sequence[int] | None) -> tuple[int, ...]:
    """The label kernels of the five targets (:data:`TARGET_KERNELS` for ``None``); a
    ``ValueError`` names anything but five odd positive integers."""
    if kernels is None:
        return TARGET_KERNELS
    values = tuple(kernels)
    if len(values) != len(TARGET_KERNELS) or not all(
        isinstance(k, int) and not isinstance(k, bool) and k >= 1 and k % 2 for k in values
    ):
        raise ValueError(f"target_kernels must be {len(TARGET_KERNELS)} odd integers >= 1 "
                         f"(coarse to fine, e.g. {list(TARGET_KERNELS)}), got {kernels!r}")
    return values


def multi_stage_spec(
    family: str,
    input_size: Sequence[int],
    num_keypoints: int,
    num_stages: int,
    channel_order: str = "BGR",
    variant: str = "original",
    target_kernels: Sequence[int] | None = None,
) -> PoseSpec:
    """The MSPN/RSN spec: coarse-to-fine kernels, 1/4-weighted L2 + OHKM, blur-5 decoding.

    ``channel_order`` is ``"RGB"`` for the ``variant="mmpose"`` graphs, whose spec also has
    MMPose's codec convention and box padding. ``target_kernels``: the five label kernels
    instead of :data:`TARGET_KERNELS` (odd, coarse to fine)."""
    profile = PROFILES[family]
    all_kernels = check_target_kernels(target_kernels)
    kernels, losses, weights = [], [], []
    for stage in range(1, num_stages + 1):
        shift = 1 if stage == num_stages else 0
        kernels += all_kernels[shift : shift + NUM_UNITS]
        losses += UNIT_LOSSES
        weights += UNIT_LOSS_WEIGHTS
    outputs = megvii_outputs(
        output_names(num_stages),
        kernels,
        losses,
        weights,
        stride=OUTPUT_STRIDE,
        decode_blur=DECODE_BLUR,
        decode_normalize=False,
        convention=variant_convention(variant),
    )
    return PoseSpec(
        family=family,
        input_size=(int(input_size[0]), int(input_size[1])),
        num_keypoints=num_keypoints,
        channel_order=channel_order,
        outputs=outputs,
        box_extension=MMPOSE_BOX_EXTENSION if variant == "mmpose" else profile.box_extension,
        flip_test=profile.evaluation.flip_test,
    )


def build_multi_stage_network(
    input_shape: Sequence[int],
    *,
    family: str,
    design: DownsampleDesign,
    num_stages: int,
    num_keypoints: int,
    use_prm: bool = False,
    weight_decay: float = 1e-5,
    bn_epsilon: float = 1e-5,
    bn_momentum: float = 0.9,
    variant: str = "original",
) -> tuple[keras.KerasTensor, dict[str, keras.KerasTensor]]:
    """The MSPN wrapper around any downsample design: ``(image input, {output name: heatmaps})``.

    ``family`` names the model in error messages.
    ``weight_decay`` is the originals' coupled Adam weight decay; it becomes an L2 penalty of
    ``weight_decay / 2`` on every conv kernel (same gradient). With ``use_prm`` a
    :class:`PoseRefineMachine` refines the final ``heatmaps`` output (RSN owner: "use it at
    the output end"); the other outputs are unchanged. ``variant="mmpose"``: no conv biases,
    RGB ImageNet normalisation (see the module docstring).
    """
    mmpose = check_variant(variant, family) == "mmpose"
    if mmpose and use_prm:
        raise ValueError("variant='mmpose' has no PRM (MMPose's configs never enable it)")
    check_positive(family, num_stages=num_stages, num_keypoints=num_keypoints)
    # multiples of 32 so that every level lines up with the resizes
    h, w, c = check_input_shape(input_shape, family, multiple=INPUT_MULTIPLE)
    regularizer = keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None
    options = dict(
        use_bias=not mmpose,
        bn_epsilon=bn_epsilon,
        bn_momentum=bn_momentum,
        kernel_regularizer=regularizer,
    )
    builder = _StageBuilder(
        design=design,
        num_stages=num_stages,
        num_keypoints=num_keypoints,
        output_size=(h // OUTPUT_STRIDE, w // OUTPUT_STRIDE),
        use_prm=use_prm,
        options=options,
    )
    image = keras.Input(shape=(h, w, c), name=IMAGE_INPUT)
    if mmpose:
        x = mmpose_normalization()(image)
    else:
        x = PixelNormalization(BGR_MEAN, BGR_STD, name="normalize")(image)
    x = builder.stem(x)
    outputs: dict[str, keras.KerasTensor] = {}
    skips = None
    for stage in range(1, num_stages + 1):
        heatmaps, x, skips = builder.stage(stage, x, skips)
        outputs.update(heatmaps)
    return image, outputs


@dataclasses.dataclass
class _StageBuilder:
    """Builds the stem and the stages of the functional graph, with the originals' layer names."""

    design: DownsampleDesign
    num_stages: int
    num_keypoints: int
    output_size: tuple[int, int]
    use_prm: bool
    options: dict[str, Any]

    def conv(self, filters: int, kernel_size: int, name: str, relu: bool, strides: int = 1):
        return ConvBN(
            filters,
            kernel_size,
            strides=strides,
            activation="relu" if relu else None,
            kernel_initializer=DEFAULT_INITIALIZER,
            name=name,
            **self.options,
        )

    def stem(self, x):
        """ResNet_top: 7x7/s2 conv + BN + ReLU, then 3x3/s2 max-pool with 1-pixel padding."""
        x = self.conv(STEM_CHANNELS, 7, "stem_conv", relu=True, strides=2)(x)
        # zero padding equals PyTorch's -inf padding here: the pool follows a ReLU
        x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_pool")(x)

    def stage(self, stage: int, x, skips):
        """One stage: ``({output name: heatmaps}, next stage input or None, skips or None)``."""
        levels = self.downsample(stage, x, skips)
        return self.upsample(stage, levels)

    def downsample(self, stage: int, x, skips) -> list:
        """The four ResNet layers; from stage 2 on each layer's output gets skip1 + skip2 added."""
        levels = []
        for index, (width, count) in enumerate(zip(LAYER_WIDTHS, self.design.blocks_per_layer)):
            layer = index + 1
            for block in range(1, count + 1):
                strides = 2 if layer > 1 and block == 1 else 1
                x = self.design.block(
                    width,
                    strides=strides,
                    name=f"stage{stage}_layer{layer}_block{block}",
                    kernel_initializer=DOWNSAMPLE_INITIALIZER,
                    **self.options,
                )(x)
            if skips is not None:
                aggregate = keras.layers.Add(name=f"stage{stage}_layer{layer}_aggregate")
                x = aggregate([x, *skips[index]])
            levels.append(x)
        return levels

    def upsample(self, stage: int, levels: list):
        """The four upsample units, coarse to fine, their heads and the cross-stage outputs."""
        final = stage == self.num_stages
        h, w = self.output_size
        heatmaps, skips = {}, [None] * NUM_UNITS
        out = None
        for unit in range(1, NUM_UNITS + 1):
            prefix = f"stage{stage}_unit{unit}"
            level = NUM_UNITS - unit  # unit 1 reads x4 (coarsest), unit 4 reads x1
            x = levels[level]
            lateral = self.conv(UNIT_CHANNELS, 1, f"{prefix}_lateral", relu=False)(x)
            if out is None:
                merged = lateral
            else:
                scale = 2 ** (NUM_UNITS - unit)
                up = BilinearUpsample(
                    (h // scale, w // scale), mode="align_corners", name=f"{prefix}_upsample"
                )(out)
                up = self.conv(UNIT_CHANNELS, 1, f"{prefix}_up_conv", relu=False)(up)
                merged = keras.layers.Add(name=f"{prefix}_add")([lateral, up])
            out = keras.layers.ReLU(name=f"{prefix}_relu")(merged)
            name = output_name(stage, unit, self.num_stages)
            heatmaps[name] = self.head(prefix, name, out)
            if not final:
                channels = self.design.level_channels[level]
                skips[level] = (
                    self.conv(channels, 1, f"{prefix}_skip1", relu=True)(x),
                    self.conv(channels, 1, f"{prefix}_skip2", relu=True)(out),
                )
        if final:
            return heatmaps, None, None
        cross = self.conv(STEM_CHANNELS, 1, f"stage{stage}_cross_conv", relu=True)(out)
        return heatmaps, cross, skips

    def head(self, prefix: str, name: str, x):
        """1x1 conv 256 + BN + ReLU, 3x3 conv to K + BN, bilinear (align corners) to output size.

        The resize carries the output's name (for the finest unit it passes the map through),
        unless the PRM refines the final output: then the PRM carries it."""
        x = self.conv(UNIT_CHANNELS, 1, f"{prefix}_head_conv1", relu=True)(x)
        x = self.conv(self.num_keypoints, 3, f"{prefix}_head_conv2", relu=False)(x)
        refine = self.use_prm and name == "heatmaps"
        resize_name = f"{prefix}_resize" if refine else name
        x = BilinearUpsample(self.output_size, mode="align_corners", name=resize_name)(x)
        if refine:
            prm = PoseRefineMachine(
                kernel_initializer=DEFAULT_INITIALIZER, name=name, **self.options
            )
            x = prm(x)
        return x


class MultiStagePoseModel(PoseModel):
    """What MSPN and RSN share: the multi-stage graph of a downsample design, its spec and the
    config of the shared constructor arguments (subclasses add their own)."""

    family = ""

    def __init__(
        self,
        design: DownsampleDesign,
        *,
        num_stages: int,
        input_shape: Sequence[int],
        num_keypoints: int,
        use_prm: bool,
        weight_decay: float,
        bn_epsilon: float,
        bn_momentum: float,
        variant: str,
        name: str,
        target_kernels: Sequence[int] | None = None,
    ) -> None:
        target_kernels = check_target_kernels(target_kernels)
        image, outputs = build_multi_stage_network(
            input_shape,
            family=self.family,
            design=design,
            num_stages=num_stages,
            num_keypoints=num_keypoints,
            use_prm=use_prm,
            weight_decay=weight_decay,
            bn_epsilon=bn_epsilon,
            bn_momentum=bn_momentum,
            variant=variant,
        )
        channel_order = MMPOSE_CHANNEL_ORDER if variant == "mmpose" else "BGR"
        image_shape = tuple(int(v) for v in image.shape[1:])
        spec = multi_stage_spec(self.family, image_shape[:2], num_keypoints, num_stages,
                                channel_order, variant, target_kernels)
        super().__init__(inputs=image, outputs=outputs, spec=spec, name=name)
        self.num_stages = num_stages
        self.image_shape = image_shape
        self.num_keypoints = num_keypoints
        self.use_prm = use_prm
        self.weight_decay = weight_decay
        self.bn_epsilon = bn_epsilon
        self.bn_momentum = bn_momentum
        self.variant = variant
        self.target_kernels = target_kernels

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "target_kernels": list(self.target_kernels),
            "num_stages": self.num_stages,
            "input_shape": list(self.image_shape),
            "num_keypoints": self.num_keypoints,
            "weight_decay": self.weight_decay,
            "bn_epsilon": self.bn_epsilon,
            "bn_momentum": self.bn_momentum,
            "variant": self.variant,
        }


@keras.saving.register_keras_serializable(package="keras_pose")
class MSPNModel(MultiStagePoseModel):
    """Multi-Stage Pose Network with ResNet-50 downsample modules (the original's layout).

    Args:
        num_stages: stages (1-4 in the paper); the only released COCO model has 2.
        input_shape: ``(height, width, 3)``, both multiples of 32; the BGR 0..255 crop.
        num_keypoints: K, the heatmap channels.
        weight_decay: the originals' coupled Adam weight decay (1e-5), applied as an L2 penalty
            of ``weight_decay / 2`` on every conv kernel; 0 disables it.
        bn_epsilon, bn_momentum: BatchNorm constants (PyTorch defaults).
        variant: ``"original"`` (megvii-research/MSPN) or ``"mmpose"`` (MMPose 1.x's MSPN:
            no conv biases, RGB input with ImageNet mean/std; loads MMPose checkpoints).
        name: model name (default ``mspn_{num_stages}stage``).
        target_kernels: the five label kernels, coarse to fine (default the originals'
            ``(15, 11, 9, 7, 5)``, sized for 64x48 heatmaps; the main job's 32x24 ones use
            ``(7, 5, 5, 3, 3)``).

    Outputs ``stage{s}_unit{u}`` (coarse to fine) and ``heatmaps`` (last stage, finest unit),
    all ``(N, H/4, W/4, K)`` on the 0..255 target scale.
    """

    family = "mspn"

    def __init__(
        self,
        num_stages: int = 2,
        input_shape: Sequence[int] = (256, 192, 3),
        num_keypoints: int = 17,
        weight_decay: float = 1e-5,
        bn_epsilon: float = 1e-5,
        bn_momentum: float = 0.9,
        variant: str = "original",
        name: str | None = None,
        target_kernels: Sequence[int] | None = None,
    ) -> None:
        super().__init__(
            MSPN_DOWNSAMPLE,
            num_stages=num_stages,
            input_shape=input_shape,
            num_keypoints=num_keypoints,
            use_prm=False,
            weight_decay=weight_decay,
            bn_epsilon=bn_epsilon,
            bn_momentum=bn_momentum,
            variant=variant,
            name=name or f"mspn_{num_stages}stage",
            target_kernels=target_kernels,
        )


def MSPN50(
    *,
    input_shape: Sequence[int] = (256, 192, 3),
    num_keypoints: int = 17,
    weights: str | os.PathLike | None = None,
    compile: bool = True,
    variant: str = "original",
    num_stages: int = 1,
    **kwargs: Any,
) -> MSPNModel:
    """MSPN with ResNet-50 downsample modules; ``num_stages`` 1-4 (``2xmspn50`` ...);
    ``kwargs`` go to :class:`MSPNModel`."""
    model = MSPNModel(num_stages=num_stages, input_shape=input_shape,
                      num_keypoints=num_keypoints, variant=variant, **kwargs)
    return finish_builder(model, weights, compile)


register_legacy_name(MSPNModel, "MSPN")


def __getattr__(name: str) -> Any:
    return deprecated_alias(__name__, name, {"MSPN": MSPNModel})
