"""The ResNet bottleneck unit shared by CPN (slim ResNet-v1), MSPN and the CPN RefineNet."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_pose.layers.conv_bn import ConvBNBlock


@keras.saving.register_keras_serializable(package="keras_pose")
class Bottleneck(ConvBNBlock):
    """1x1 -> 3x3 (carries the stride) -> 1x1 without ReLU, plus shortcut, then ReLU.

    The shortcut is a 1x1 conv (with the stride) + BN when the width or the stride changes,
    the identity otherwise. This is both slim's ``bottleneck_v1`` as tf-cpn uses it (stride on
    the 3x3, symmetric padding) and torchvision's ``Bottleneck`` (expansion 4) as MSPN uses it.

    Args:
        filters: output channels.
        bottleneck_filters: width of the inner 1x1/3x3 convs (default ``filters // 4``).
        strides: stride of the 3x3 conv and of the projection shortcut.
        use_bias, bn_epsilon, bn_momentum, kernel_initializer, kernel_regularizer: see
            :class:`~keras_pose.layers.ConvBN`.
    """

    def __init__(
        self,
        filters: int,
        bottleneck_filters: int | None = None,
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
        self.bottleneck_filters = bottleneck_filters or filters // 4
        self.strides = strides
        self.conv1 = self.conv_bn(self.bottleneck_filters, 1, 1, "relu", "conv1")
        self.conv2 = self.conv_bn(self.bottleneck_filters, 3, strides, "relu", "conv2")
        self.conv3 = self.conv_bn(filters, 1, 1, None, "conv3")
        self.shortcut = None

    def build(self, input_shape) -> None:
        if input_shape[-1] != self.filters or self.strides != 1:
            self.shortcut = self.conv_bn(self.filters, 1, self.strides, None, "shortcut")
            self.shortcut.build(input_shape)
        self.conv1.build(input_shape)
        shape = self.conv1.compute_output_shape(input_shape)
        self.conv2.build(shape)
        self.conv3.build(self.conv2.compute_output_shape(shape))

    def call(self, inputs, training=None):
        x = self.conv1(inputs, training=training)
        x = self.conv2(x, training=training)
        x = self.conv3(x, training=training)
        shortcut = inputs if self.shortcut is None else self.shortcut(inputs, training=training)
        return ops.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        shape = self.conv2.compute_output_shape(input_shape)
        return shape[:-1] + (self.filters,)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            filters=self.filters,
            bottleneck_filters=self.bottleneck_filters,
            strides=self.strides,
        )
        return config
