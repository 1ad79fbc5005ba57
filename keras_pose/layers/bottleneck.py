"""The ResNet bottleneck unit shared by CPN (slim ResNet-v1), MSPN and the CPN RefineNet."""

from __future__ import annotations

from typing import Any

import keras

from keras_pose.layers.residual_unit import ResidualUnit


@keras.saving.register_keras_serializable(package="keras_pose")
class Bottleneck(ResidualUnit):
    """1x1 -> 3x3 (carries the stride) -> 1x1 without ReLU, plus shortcut, then ReLU.

    The shortcut is a 1x1 conv (with the stride) + BN when the width or the stride changes,
    the identity otherwise. This is both slim's ``bottleneck_v1`` as tf-cpn uses it (stride on
    the 3x3, symmetric padding) and torchvision's ``Bottleneck`` (expansion 4) as MSPN uses it.

    Args:
        filters: output channels.
        bottleneck_filters: width of the inner 1x1/3x3 convs (default ``filters // 4``).
        strides: stride of the 3x3 conv and of the projection shortcut.
        **kwargs: the conv options of :class:`~keras_pose.layers.ConvBNBlock` (``use_bias``,
            ``bn_epsilon``, ``bn_momentum``, ``kernel_initializer``, ``kernel_regularizer``) and
            the base layer's (``name``, ``dtype``).
    """

    def __init__(
        self,
        filters: int,
        bottleneck_filters: int | None = None,
        strides: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(filters, strides, **kwargs)
        self.bottleneck_filters = bottleneck_filters or filters // 4
        self.conv1 = self.conv_bn(self.bottleneck_filters, 1, 1, "relu", "conv1")
        self.conv2 = self.conv_bn(self.bottleneck_filters, 3, strides, "relu", "conv2")
        self.conv3 = self.conv_bn(filters, 1, 1, None, "conv3")

    def build(self, input_shape) -> None:
        self.build_shortcut(input_shape)
        self.conv1.build(input_shape)
        shape = self.conv1.compute_output_shape(input_shape)
        self.conv2.build(shape)
        self.conv3.build(self.conv2.compute_output_shape(shape))

    def call(self, inputs, training=None):
        x = self.conv1(inputs, training=training)
        x = self.conv2(x, training=training)
        x = self.conv3(x, training=training)
        return self.add_shortcut(x, inputs, training=training)

    def compute_output_shape(self, input_shape):
        shape = self.conv2.compute_output_shape(input_shape)
        return shape[:-1] + (self.filters,)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(bottleneck_filters=self.bottleneck_filters)
        return config
