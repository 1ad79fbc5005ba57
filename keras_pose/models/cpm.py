"""Convolutional Pose Machines (Wei et al., CVPR 2016), as ``training/genProto.py`` of
shihenw/convolutional-pose-machines-release builds the 6-stage MPII model::

    crop (BGR 0..255) ─ (x - 128) / 256
     │
     ├─ stage 1:  C9-128 P  C9-128 P  C9-128 P  C5-32  C9-512 D  C1-512 D  C1-K ─────────► b1
     │
     └─ stage-2 image branch:  C9-128 P  C9-128 P  C9-128 P  = pool3_stage2 (stride 8, shared)
          stage s = 2..S:
            concat[ C5-32(pool3_stage2), b(s-1), centre map ]
              ─ M11-128 ─ M11-128 ─ M11-128 ─ C1-128 ─ C1-K ─────────────────────────────► bs

``Ck-n``: k x k conv to n channels, stride 1, "same" padding, ReLU, no BatchNorm; the last conv of
each stage has no ReLU and produces the stage's belief maps. ``P``: 3x3/s2 max-pool in Caffe's
ceil mode (pad bottom/right by one, then "valid": an H-row map gives floor(H/2) rows, so
368 -> 184 -> 92 -> 46 and the output is ``H // 8`` by ``W // 8`` for any size). ``D``: dropout
0.5 (training only). Stages 3..S reuse ``pool3_stage2``, each with its own C5-32.

The centre map is a Gaussian of sigma 21 px at the crop centre, average-pooled with a 9x9/s8
window (Caffe ``pool_center_lower``). The original fed it as a fourth input channel; a top-down
crop is always centred on its person, so here it is a constant built inside the graph and the
model takes only the crop.

Outputs ``stage1 .. stage{S-1}`` and ``heatmaps`` (the last stage), ``(N, H/8, W/8, K)``. Layer
names follow the prototxt (``conv1_stage1``, ``Mconv3_stage4``, ...) except that each stage's
last conv carries its output's name.

Where this differs from the original, on purpose:

* K channels, one per keypoint, and no background channel (the MPII model had 14 joints +
  background = 15; MMPose's CPM drops it too).
* Targets: the MSRA codec with sigma 0.875 heatmap cells, i.e. the original's sigma of 7 input
  pixels on the stride-8 grid; every stage gets the target person's joints (the original's
  stage 1 also saw other people's joints) and the loss counts labelled joints only.
* Optimizer: Adam 5e-4 (MMPose's CPM recipe). The original's SGD lr 8e-5 (stage 1 x5) went with
  Caffe's summed Euclidean loss and means nothing for our mean-squared loss. Weights start
  like the original's: Gaussian std 0.01, biases 0.

Size: 31,219,866 parameters for the 6-stage, 15-channel MPII network (the original's 31.2M);
351 GFLOPs at 368x368 (``keras_pose.utils.flops``, about 175 GMACs). With 17 keypoints:
31,377,062 parameters, 128 GFLOPs at 256x192 (MMPose lists 63.8 "GFLOPs", i.e. GMACs). MMPose's CPM
(31,304,166 for 17 keypoints) is this network without the centre map and the dropout, with
BatchNorm in place of every conv bias but the stages' last.

``variant="mmpose"`` builds that MMPose 1.x CPM (``CPM`` backbone + ``CPMHead`` without extra
layers), which loads MMPose checkpoints (:func:`keras_pose.convert.load_mmpose_checkpoint`):

* every conv but the stages' last is conv (no bias) + BatchNorm (eps 1e-5) + ReLU;
* pools are PyTorch's ``MaxPool2d(3, 2, padding=1)`` (one pixel on every side, floor mode);
* no dropout, no centre map: stage s >= 2 reads concat[b(s-1), C5-32(pool3_stage2)];
* the RGB crop, normalised with ImageNet mean/std (MMPose's data preprocessor);
* MSRA targets of sigma 2 cells, flip test (MMPose's codec and test config).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_pose.layers import ConvBN, PixelNormalization
from keras_pose.models.base import (
    IMAGE_INPUT,
    PoseModel,
    check_input_shape,
    check_positive,
    check_variant,
    finish_builder,
    keyword_builder,
)
from keras_pose.models.mmpose_variant import (
    MMPOSE_BOX_EXTENSION,
    MMPOSE_CHANNEL_ORDER,
    mmpose_normalization,
    variant_convention,
)
from keras_pose.profiles import CPM as PROFILE
from keras_pose.spec import PoseSpec, msra_outputs

OUTPUT_STRIDE = 8
PIXEL_MEAN = (128.0, 128.0, 128.0)
PIXEL_STD = (256.0, 256.0, 256.0)
IMAGE_CHANNELS = 128
FEATURE_CHANNELS = 32
STAGE1_CHANNELS = 512
STAGE_CHANNELS = 128
STAGE_KERNEL = 11
DROPOUT_RATE = 0.5
CENTER_SIGMA = 21.0
CENTER_POOL_SIZE = 9
# sigma 7 input px (data_transformer.cpp) on the stride-8 grid
TARGET_SIGMA = 7.0 / OUTPUT_STRIDE
INITIALIZER = {"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.01}}
MMPOSE_TARGET_SIGMA = 2.0
MMPOSE_INITIALIZER = {"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.001}}


def center_map(
    input_size: Sequence[int],
    stride: int = OUTPUT_STRIDE,
    sigma: float = CENTER_SIGMA,
    pool_size: int = CENTER_POOL_SIZE,
) -> np.ndarray:
    """The pooled centre map, ``(H // stride, W // stride)`` float32.

    A Gaussian of ``sigma`` px at the crop centre (pixel centres at integer coordinates, so
    the centre of an H-row crop is row (H-1)/2), averaged over ``pool_size`` windows with
    step ``stride`` and no padding, as Caffe's AVE pooling does; a window running past the
    border averages the pixels inside it.
    """
    profiles = []
    for size in input_size[:2]:
        offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
        profile = np.exp(-(offsets**2) / (2.0 * sigma**2))
        starts = np.arange(size // stride) * stride
        profiles.append(np.array([profile[s : s + pool_size].mean() for s in starts]))
    # the Gaussian is separable, so are the window means
    return np.outer(*profiles).astype(np.float32)


@keras.saving.register_keras_serializable(package="keras_pose")
class CenterMap(keras.layers.Layer):
    """CPM's pooled centre map as a constant, one copy per sample of a stride-8 feature map.

    Takes any ``(N, h, w, C)`` tensor of the pooled size and returns ``(N, h, w, 1)``.

    Args:
        input_size: ``(H, W)`` of the crop.
        stride, sigma, pool_size: see :func:`center_map`.
    """

    def __init__(
        self,
        input_size: Sequence[int],
        stride: int = OUTPUT_STRIDE,
        sigma: float = CENTER_SIGMA,
        pool_size: int = CENTER_POOL_SIZE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.stride = stride
        self.sigma = sigma
        self.pool_size = pool_size
        self._map = center_map(self.input_size, stride, sigma, pool_size)[None, :, :, None]

    def build(self, input_shape) -> None:
        if tuple(input_shape[1:3]) != self._map.shape[1:3]:
            raise ValueError(
                f"{self.name}: features are {tuple(input_shape[1:3])}, the centre map of a "
                f"{self.input_size} crop at stride {self.stride} is {self._map.shape[1:3]}"
            )

    def call(self, features):
        # features * 0 gives the batch size with ops every runtime has (no SHAPE/BROADCAST_TO)
        zeros = features[..., :1] * ops.cast(0.0, features.dtype)
        return zeros + ops.convert_to_tensor(self._map, dtype=features.dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            input_size=list(self.input_size),
            stride=self.stride,
            sigma=self.sigma,
            pool_size=self.pool_size,
        )
        return config


def output_name(stage: int, num_stages: int) -> str:
    return "heatmaps" if stage == num_stages else f"stage{stage}"


def cpm_spec(
    input_size: Sequence[int], num_keypoints: int, num_stages: int, variant: str = "original"
) -> PoseSpec:
    """MSRA targets of sigma 0.875 cells (MMPose: 2) for every stage; L2 of weight 1 on
    labelled joints."""
    mmpose = variant == "mmpose"
    names = [output_name(stage, num_stages) for stage in range(1, num_stages + 1)]
    sigma = MMPOSE_TARGET_SIGMA if mmpose else TARGET_SIGMA
    outputs = msra_outputs(names, sigma, OUTPUT_STRIDE, convention=variant_convention(variant))
    return PoseSpec(
        family=PROFILE.family,
        input_size=(int(input_size[0]), int(input_size[1])),
        num_keypoints=num_keypoints,
        channel_order=MMPOSE_CHANNEL_ORDER if mmpose else PROFILE.channel_order,
        outputs=outputs,
        box_extension=MMPOSE_BOX_EXTENSION if mmpose else PROFILE.box_extension,
        # applyModel.m: multi-scale search, no flip; MMPose: flip test
        flip_test=mmpose or PROFILE.evaluation.flip_test,
    )


def conv(filters: int, kernel_size: int, name: str, relu: bool = True) -> keras.layers.Conv2D:
    """A Caffe convolution: stride 1, pad k//2, bias, Gaussian(0.01) weights, optional ReLU."""
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        activation="relu" if relu else None,
        kernel_initializer=INITIALIZER,
        name=name,
    )


def caffe_max_pool(x, name: str):
    """3x3/s2 max-pool in Caffe's ceil mode: pad bottom/right by one, then "valid".

    Zero padding equals Caffe's out-of-range skipping here: every pool follows a ReLU.
    """
    x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name=name)(x)


def image_branch(x, stage: int, make_conv=None, max_pool=None):
    """C9-128 P, three times: the stride-8 image features of a stage (the original's conv and
    Caffe pool, or MMPose's ``make_conv`` and ``max_pool``)."""
    make_conv, max_pool = make_conv or conv, max_pool or caffe_max_pool
    for index in range(1, 4):
        x = make_conv(IMAGE_CHANNELS, 9, f"conv{index}_stage{stage}")(x)
        x = max_pool(x, f"pool{index}_stage{stage}")
    return x


def first_stage(image, num_keypoints: int, name: str):
    """Stage 1: image branch, C5-32, C9-512, D, C1-512, D, C1-K (no ReLU)."""
    x = image_branch(image, 1)
    x = conv(FEATURE_CHANNELS, 5, "conv4_stage1")(x)
    x = conv(STAGE1_CHANNELS, 9, "conv5_stage1")(x)
    x = keras.layers.Dropout(DROPOUT_RATE, name="drop1_stage1")(x)
    x = conv(STAGE1_CHANNELS, 1, "conv6_stage1")(x)
    x = keras.layers.Dropout(DROPOUT_RATE, name="drop2_stage1")(x)
    return conv(num_keypoints, 1, name, relu=False)(x)


def later_stage(stage: int, shared, belief, center, num_keypoints: int, name: str):
    """Stage s >= 2: concat[C5-32(shared), previous belief, centre], M11-128 x3, C1-128, C1-K."""
    features = conv(FEATURE_CHANNELS, 5, f"conv4_stage{stage}")(shared)
    x = keras.layers.Concatenate(name=f"concat_stage{stage}")([features, belief, center])
    for index in range(1, 4):
        x = conv(STAGE_CHANNELS, STAGE_KERNEL, f"Mconv{index}_stage{stage}")(x)
    x = conv(STAGE_CHANNELS, 1, f"Mconv4_stage{stage}")(x)
    return conv(num_keypoints, 1, name, relu=False)(x)


def mmpose_conv(filters: int, kernel_size: int, name: str) -> ConvBN:
    """MMPose's ``ConvModule``: conv (no bias) + BN + ReLU."""
    return ConvBN(filters, kernel_size, kernel_initializer=MMPOSE_INITIALIZER, name=name)


def mmpose_head_conv(filters: int, name: str) -> keras.layers.Conv2D:
    """A stage's last 1x1 conv in MMPose's CPM: bias, no BN, no ReLU."""
    return keras.layers.Conv2D(filters, 1, kernel_initializer=MMPOSE_INITIALIZER, name=name)


def torch_max_pool(x, name: str):
    """PyTorch ``MaxPool2d(3, 2, padding=1)``: pad one pixel on every side, then "valid"
    (zero padding equals -inf padding here: every pool follows a ReLU)."""
    x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name=name)(x)


def mmpose_image_branch(x, stage: int):
    return image_branch(x, stage, mmpose_conv, torch_max_pool)


def mmpose_stages(x, num_stages: int, num_keypoints: int) -> dict[str, Any]:
    """MMPose's CPM: ``{output name: belief}`` for stages 1..S (see the module docstring)."""
    h = mmpose_image_branch(x, 1)
    h = mmpose_conv(FEATURE_CHANNELS, 5, "conv4_stage1")(h)
    h = mmpose_conv(STAGE1_CHANNELS, 9, "conv5_stage1")(h)
    h = mmpose_conv(STAGE1_CHANNELS, 1, "conv6_stage1")(h)
    belief = mmpose_head_conv(num_keypoints, output_name(1, num_stages))(h)
    outputs = {output_name(1, num_stages): belief}
    if num_stages > 1:
        shared = mmpose_image_branch(x, 2)
    for stage in range(2, num_stages + 1):
        features = mmpose_conv(FEATURE_CHANNELS, 5, f"conv4_stage{stage}")(shared)
        h = keras.layers.Concatenate(name=f"concat_stage{stage}")([belief, features])
        for index in range(1, 4):
            h = mmpose_conv(STAGE_CHANNELS, STAGE_KERNEL, f"Mconv{index}_stage{stage}")(h)
        h = mmpose_conv(STAGE_CHANNELS, 1, f"Mconv4_stage{stage}")(h)
        belief = mmpose_head_conv(num_keypoints, output_name(stage, num_stages))(h)
        outputs[output_name(stage, num_stages)] = belief
    return outputs


@keras.saving.register_keras_serializable(package="keras_pose")
class CPMModel(PoseModel):
    """Convolutional Pose Machine (the original's no-BN network with a built-in centre map).

    Args:
        num_stages: S >= 1 (6 in the paper).
        input_shape: ``(height, width, 3)``, the BGR 0..255 crop (368x368 in the original;
            any size >= 8, e.g. MMPose's 256x192).
        num_keypoints: K, the heatmap channels.
        variant: ``"original"`` (the Caffe network) or ``"mmpose"`` (MMPose 1.x's CPM with
            BatchNorm, RGB input; loads MMPose checkpoints; see the module docstring).
        name: model name (default ``cpm_{S}stage``).

    Outputs ``stage1 .. stage{S-1}`` and ``heatmaps``, all ``(N, H // 8, W // 8, K)``.
    """

    family = "cpm"

    def __init__(
        self,
        num_stages: int = 6,
        input_shape: Sequence[int] = (368, 368, 3),
        num_keypoints: int = 17,
        name: str | None = None,
        variant: str = "original",
    ) -> None:
        check_variant(variant, "CPM")
        check_positive("CPM", num_stages=num_stages, num_keypoints=num_keypoints)
        h, w, c = check_input_shape(input_shape, "CPM", minimum=OUTPUT_STRIDE)
        image = keras.Input(shape=(h, w, c), name=IMAGE_INPUT)
        if variant == "mmpose":
            outputs = mmpose_stages(mmpose_normalization()(image), num_stages, num_keypoints)
        else:
            outputs = self._original_stages(image, num_stages, num_keypoints)
        super().__init__(
            inputs=image,
            outputs=outputs,
            spec=cpm_spec((h, w), num_keypoints, num_stages, variant),
            name=name or f"cpm_{num_stages}stage",
        )
        self.variant = variant
        self._arguments = dict(
            num_stages=num_stages,
            input_shape=[h, w, c],
            num_keypoints=num_keypoints,
            variant=variant,
        )

    @staticmethod
    def _original_stages(image, num_stages: int, num_keypoints: int) -> dict[str, Any]:
        h, w = image.shape[1], image.shape[2]
        x = PixelNormalization(PIXEL_MEAN, PIXEL_STD, name="normalize")(image)
        belief = first_stage(x, num_keypoints, output_name(1, num_stages))
        outputs = {output_name(1, num_stages): belief}
        if num_stages > 1:
            shared = image_branch(x, 2)
            center = CenterMap((h, w), name="pool_center_lower")(shared)
            for stage in range(2, num_stages + 1):
                name_s = output_name(stage, num_stages)
                belief = later_stage(stage, shared, belief, center, num_keypoints, name_s)
                outputs[name_s] = belief
        return outputs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._arguments}


@keyword_builder("num_stages", "input_shape", "num_keypoints", "weights", "compile", "name",
                 "variant")
def CPM(
    *,
    input_shape: Sequence[int] = (368, 368, 3),
    num_keypoints: int = 17,
    weights: str | os.PathLike | None = None,
    compile: bool = True,
    variant: str = "original",
    num_stages: int = 6,
    name: str | None = None,
) -> CPMModel:
    """Builds a :class:`CPMModel`, loads ``weights`` (a ``.weights.h5`` file) and compiles it
    with the family's losses and optimizer unless ``compile=False``. ``variant="mmpose"``
    builds MMPose's CPM (e.g. ``CPM(input_shape=(256, 192, 3), variant="mmpose")``)."""
    model = CPMModel(num_stages, input_shape, num_keypoints, name=name, variant=variant)
    return finish_builder(model, weights, compile)
