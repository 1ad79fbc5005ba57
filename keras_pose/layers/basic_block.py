"""The ResNet basic unit (two 3x3 convs), used by ResNet-18/34."""

from __future__ import annotations

from typing import Any

import keras

from keras_pose.layers.residual_unit import ResidualUnit


@keras.saving.register_keras_serializable(package="keras_pose")
class BasicBlock(ResidualUnit):
    """3x3 (carries the stride) -> 3x3 without ReLU, plus shortcut, then ReLU.

    torchvision's ``BasicBlock`` (expansion 1). The shortcut is a 1x1 conv (with the stride) +
    BN when the width or the stride changes, the identity otherwise. Strided 3x3 convs pad
    symmetrically (see :class:`~keras_pose.layers.ConvBN`).

    Args:
        filters: output channels (also the width of the first 3x3).
        strides: stride of the first 3x3 conv and of the projection shortcut.
        **kwargs: the conv options of :class:`~keras_pose.layers.ConvBNBlock` (``use_bias``,
            ``bn_epsilon``, ``bn_momentum``, ``kernel_initializer``, ``kernel_regularizer``) and
            the base layer's (``name``, ``dtype``).
    """

    def __init__(self, filters: int, strides: int = 1, **kwargs: Any) -> None:
        super().__init__(filters, strides, **kwargs)
        self.conv1 = self.conv_bn(filters, 3, strides, "relu", "conv1")
        self.conv2 = self.conv_bn(filters, 3, 1, None, "conv2")

    def build(self, input_shape) -> None:
        self.build_shortcut(input_shape)
        self.conv1.build(input_shape)
        self.conv2.build(self.conv1.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        x = self.conv1(inputs, training=training)
        x = self.conv2(x, training=training)
        return self.add_shortcut(x, inputs, training=training)

    def compute_output_shape(self, input_shape):
        return self.conv1.compute_output_shape(input_shape)
