"""Reusable, serializable building blocks shared by every model family."""

from keras_pose.layers.basic_block import BasicBlock
from keras_pose.layers.bottleneck import Bottleneck
from keras_pose.layers.conv_bn import ConvBN, LateralBlock
from keras_pose.layers.normalization import PixelNormalization
from keras_pose.layers.residual import PreActResidual
from keras_pose.layers.upsample import BilinearUpsample, interpolation_matrix

__all__ = [
    "BasicBlock",
    "BilinearUpsample",
    "Bottleneck",
    "ConvBN",
    "LateralBlock",
    "PixelNormalization",
    "PreActResidual",
    "interpolation_matrix",
]
