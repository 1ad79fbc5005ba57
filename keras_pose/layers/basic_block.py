"""The ResNet basic unit (two 3x3 convs), used by ResNet-18/34."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_pose.layers.conv_bn import ConvBNBlock


@keras.saving.register_keras_serializable(package="keras_pose")
class BasicBlock(ConvBNBlock):
    """3x3 (carries the stride) -> 3x3 without ReLU, plus shortcut, then ReLU.

    torchvision's ``BasicBlock`` (expansion 1). The shortcut is a 1x1 conv (with the stride) +
    BN when the width or the stride changes, the identity otherwise. Strided 3x3 convs pad
    symmetrically (see :class:`~keras_pose.layers.ConvBN`).

    Args:
        filters: output channels (also the width of the first 3x3).
        strides: stride of the first 3x3 conv and of the projection shortcut.
        use_bias, bn_epsilon, bn_momentum, kernel_initializer, kernel_regularizer: see
            :class:`~keras_pose.layers.ConvBN`.
    """

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        use_bias: bool = False,
        bn_epsilon: float = 1e-5,
        bn_momentum: float = 0.9,
        kernel_initializer: Any = "he_normal",
        kernel_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            use_bias=use_bias,
            bn_epsilon=bn_epsilon,
            bn_momentum=bn_momentum,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            **kwargs,
        )
        self.filters = filters
        self.strides = strides
        self.conv1 = self.conv_bn(self.filters, 3, strides, "relu", "conv1")
        self.conv2 = self.conv_bn(self.filters, 3, 1, None, "conv2")
        self.shortcut = None

    def build(self, input_shape) -> None:
        if input_shape[-1] != self.filters or self.strides != 1:
            self.shortcut = self.conv_bn(self.filters, 1, self.strides, None, "shortcut")
            self.shortcut.build(input_shape)
        self.conv1.build(input_shape)
        self.conv2.build(self.conv1.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        x = self.conv1(inputs, training=training)
        x = self.conv2(x, training=training)
        shortcut = inputs if self.shortcut is None else self.shortcut(inputs, training=training)
        return ops.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        return self.conv1.compute_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
        )
        return config
