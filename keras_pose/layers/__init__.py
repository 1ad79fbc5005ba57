"""Reusable, serializable building blocks shared by every model family."""

from keras_pose.layers.basic_block import BasicBlock
from keras_pose.layers.batch_norm import BatchNorm
from keras_pose.layers.bottleneck import Bottleneck
from keras_pose.layers.conv_bn import ConvBN, ConvBNBlock, LateralBlock
from keras_pose.layers.normalization import PixelNormalization
from keras_pose.layers.prm import PoseRefineMachine
from keras_pose.layers.residual import PreActResidual
from keras_pose.layers.residual_unit import ResidualUnit
from keras_pose.layers.rsb import ResidualStepsBlock
from keras_pose.layers.upsample import BilinearUpsample, NearestUpsample2x, interpolation_matrix

__all__ = [
    "BasicBlock",
    "BatchNorm",
    "BilinearUpsample",
    "Bottleneck",
    "ConvBN",
    "ConvBNBlock",
    "LateralBlock",
    "NearestUpsample2x",
    "PixelNormalization",
    "PoseRefineMachine",
    "PreActResidual",
    "ResidualStepsBlock",
    "ResidualUnit",
    "interpolation_matrix",
]
