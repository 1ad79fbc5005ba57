"""What every ``variant="mmpose"`` graph shares: MMPose's input normalisation and test-time
conventions.

MMPose's data preprocessor turns the BGR image into RGB and normalises it with the ImageNet
statistics, outside the network. keras-pose models normalise inside, so an MMPose-variant model
takes the **RGB** 0..255 crop (``spec.channel_order == "RGB"``) and starts with this layer.
Its spec carries MMPose's codec convention (``CodecSpec.convention == "mmpose"``) and
``GetBBoxCenterScale``'s box padding of 1.25.
"""

from __future__ import annotations

from keras_pose.layers import PixelNormalization
from keras_pose.models.base import VARIANTS, check_variant

MMPOSE_RGB_MEAN = (123.675, 116.28, 103.53)
MMPOSE_RGB_STD = (58.395, 57.12, 57.375)
MMPOSE_CHANNEL_ORDER = "RGB"
MMPOSE_BOX_EXTENSION = (1.25, 1.25)  # GetBBoxCenterScale(padding=1.25)


def variant_convention(variant: str) -> str:
    """The codec convention (:attr:`keras_pose.spec.CodecSpec.convention`) of a variant."""
    return "mmpose" if variant == "mmpose" else "original"


__all__ = [
    "MMPOSE_BOX_EXTENSION",
    "MMPOSE_CHANNEL_ORDER",
    "VARIANTS",
    "check_variant",
    "mmpose_normalization",
    "variant_convention",
]


def mmpose_normalization(name: str = "normalize") -> PixelNormalization:
    """``(rgb - ImageNet mean) / ImageNet std`` on the 0..255 scale, as MMPose's preprocessor."""
    return PixelNormalization(MMPOSE_RGB_MEAN, MMPOSE_RGB_STD, name=name)
