"""`TinyPoseModel`: a few-layer pose network for smoke-testing a data set and the training set-up.

It is not a model to train for accuracy: it exists so that ``recipes/train_coco.py --model
tiny`` checks a new data folder, a multi-GPU or multi-worker set-up or a resume in seconds
instead of minutes, with the targets, losses, augmentation and evaluation protocol of the family
it stands in for (``family``): a coarse output (plain L2 on a wider Gaussian, weight 1/4) and
the final ``heatmaps`` (OHKM on the family's finest kernel), both at stride 4, as the Megvii
families supervise their units. Its heads predict in units of the target's peak (a 1x1 conv
times 255), so a few steps visibly lower the loss.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras

from keras_pose.layers import ConvBN, PixelNormalization
from keras_pose.models.base import (
    IMAGE_INPUT,
    PoseModel,
    check_input_shape,
    check_variant,
    deprecated_alias,
    finish_builder,
    register_legacy_name,
)
from keras_pose.profiles import profile_for
from keras_pose.spec import PoseSpec, megvii_outputs

STRIDE = 4
BGR_MEAN = (104.0, 117.0, 124.0)
BGR_STD = (58.0, 57.0, 58.0)
OUTPUTS = ("coarse", "heatmaps")
KERNELS = (9, 7)
PEAK = 255.0  # the Megvii targets' peak


def tiny_spec(family: str, input_size: Sequence[int], num_keypoints: int) -> PoseSpec:
    outputs = megvii_outputs(
        OUTPUTS, KERNELS, losses=("mse", "ohkm"), loss_weights=(0.25, 1.0), stride=STRIDE
    )
    profile = profile_for(family)
    return PoseSpec(
        family=profile.family,
        input_size=(int(input_size[0]), int(input_size[1])),
        num_keypoints=num_keypoints,
        channel_order="BGR",
        outputs=outputs,
        box_extension=profile.box_extension,
        flip_test=profile.evaluation.flip_test,
    )


def head(x, num_keypoints: int, name: str):
    """1x1 conv to K maps, scaled to the targets' peak; the last layer carries the name."""
    x = keras.layers.Conv2D(num_keypoints, 1, name=f"{name}_conv")(x)
    return keras.layers.Rescaling(PEAK, name=name)(x)


@keras.saving.register_keras_serializable(package="keras_pose")
class TinyPoseModel(PoseModel):
    """Four conv-BN-ReLU layers to stride 4 and two 1x1 heads (about 10k parameters).

    Args:
        family: the family whose augmentation and evaluation defaults apply (``"rsn"``...).
        input_shape: ``(height, width, 3)``, multiples of 4; the BGR 0..255 crop.
        num_keypoints: K.
        width: channels of the first layer (the others use twice as many).
        name: model name.
    """

    def __init__(
        self,
        family: str = "rsn",
        input_shape: Sequence[int] = (64, 48, 3),
        num_keypoints: int = 17,
        width: int = 16,
        name: str | None = None,
    ) -> None:
        height, width_px, channels = check_input_shape(input_shape, "TinyPose", multiple=STRIDE)
        image = keras.Input((height, width_px, channels), name=IMAGE_INPUT)
        x = PixelNormalization(BGR_MEAN, BGR_STD, name="normalize")(image)
        x = ConvBN(width, 3, strides=2, name="conv1")(x)
        x = ConvBN(2 * width, 3, strides=2, name="conv2")(x)
        x = ConvBN(2 * width, 3, name="conv3")(x)
        coarse = head(x, num_keypoints, "coarse")
        x = ConvBN(2 * width, 3, name="conv4")(x)
        heatmaps = head(x, num_keypoints, "heatmaps")
        super().__init__(
            inputs=image,
            outputs={"coarse": coarse, "heatmaps": heatmaps},
            spec=tiny_spec(family, (height, width_px), num_keypoints),
            name=name or "tiny_pose_net",
        )
        self._arguments = dict(family=family, input_shape=[height, width_px, channels],
                               num_keypoints=num_keypoints, width=width)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._arguments}


def TinyPose(
    *,
    input_shape: Sequence[int] = (64, 48, 3),
    num_keypoints: int = 17,
    weights: str | os.PathLike | None = None,
    compile: bool = True,
    variant: str = "original",
    family: str = "rsn",
    width: int = 16,
    name: str | None = None,
) -> TinyPoseModel:
    """Builds a :class:`TinyPoseModel` standing in for ``family`` (smoke tests only)."""
    check_variant(variant, "TinyPose", allowed=("original",))
    model = TinyPoseModel(family=family, input_shape=input_shape, num_keypoints=num_keypoints,
                          width=width, name=name)
    return finish_builder(model, weights, compile)


register_legacy_name(TinyPoseModel, "TinyPoseNet")


def __getattr__(name: str) -> Any:
    return deprecated_alias(__name__, name, {"TinyPoseNet": TinyPoseModel})
