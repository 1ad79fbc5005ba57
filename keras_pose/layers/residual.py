"""The pre-activation residual module of the Stacked Hourglass network (pose-hg-train).

``layers/Residual.lua``::

    in ─┬─ BN ─ ReLU ─ 1x1 (out/2) ─ BN ─ ReLU ─ 3x3 (out/2) ─ BN ─ ReLU ─ 1x1 (out) ─┐
        └───────────────── identity, or 1x1 conv (out) when in != out ─────────────── + ── out

Every conv has a bias; the skip projection has no BatchNorm; nothing follows the sum (the next
module starts with its own BN-ReLU).
"""

from __future__ import annotations

from typing import Any

import keras

from keras_pose.layers.batch_norm import BatchNorm
from keras_pose.layers.conv_bn import ConvOptions

# Torch7's SpatialConvolution default: U(+-1/sqrt(fan_in)) (biases start at zero here).
TORCH_CONV_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_in", "distribution": "uniform"},
}


@keras.saving.register_keras_serializable(package="keras_pose")
class PreActResidual(ConvOptions, keras.layers.Layer):
    """BN-ReLU-conv1x1(filters/2), BN-ReLU-conv3x3(filters/2), BN-ReLU-conv1x1(filters) + skip.

    Args:
        filters: output channels (even); the two inner convs have ``filters // 2``.
        bn_epsilon, bn_momentum: BatchNorm constants (Torch7: eps 1e-5, momentum 0.1 = Keras 0.9).
        kernel_initializer, kernel_regularizer: passed to every conv.
    """

    def __init__(
        self,
        filters: int,
        bn_epsilon: float = 1e-5,
        bn_momentum: float = 0.9,
        kernel_initializer: Any = TORCH_CONV_INITIALIZER,
        kernel_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if filters < 2 or filters % 2:
            raise ValueError(f"PreActResidual needs an even filters >= 2, got {filters}")
        self.filters = filters
        self.set_conv_options(bn_epsilon, bn_momentum, kernel_initializer, kernel_regularizer)
        half = filters // 2
        self.bn1, self.bn2, self.bn3 = (self._bn(f"bn{i}") for i in (1, 2, 3))
        self.conv1 = self._conv(half, 1, "conv1")
        self.conv2 = self._conv(half, 3, "conv2")
        self.conv3 = self._conv(filters, 1, "conv3")
        self.skip = None

    def _bn(self, name: str) -> BatchNorm:
        return BatchNorm(
            epsilon=self.bn_epsilon, momentum=self.bn_momentum, dtype=self.dtype_policy, name=name
        )

    def _conv(self, filters: int, kernel_size: int, name: str) -> keras.layers.Conv2D:
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            padding="same",
            use_bias=True,
            # a fresh copy per conv: one unseeded instance would repeat its draws across convs
            kernel_initializer=self.kernel_initializer.from_config(
                self.kernel_initializer.get_config()
            ),
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, input_shape) -> None:
        half_shape = (*input_shape[:-1], self.filters // 2)
        self.bn1.build(input_shape)
        self.conv1.build(input_shape)
        self.bn2.build(half_shape)
        self.conv2.build(half_shape)
        self.bn3.build(half_shape)
        self.conv3.build(half_shape)
        if input_shape[-1] != self.filters:
            self.skip = self._conv(self.filters, 1, "skip")
            self.skip.build(input_shape)

    def call(self, inputs, training=None):
        x = self.conv1(keras.ops.relu(self.bn1(inputs, training=training)))
        x = self.conv2(keras.ops.relu(self.bn2(x, training=training)))
        x = self.conv3(keras.ops.relu(self.bn3(x, training=training)))
        return x + (inputs if self.skip is None else self.skip(inputs))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(filters=self.filters, **self.conv_options_config())
        return config
