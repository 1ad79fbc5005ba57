"""Convolution + BatchNorm (+ ReLU): the unit every family is built from."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_pose.layers.batch_norm import BatchNorm


def symmetric_padding(kernel_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The padding PyTorch and slim's ``conv2d_same`` apply to a strided conv: k//2 each side."""
    pad = kernel_size // 2
    return ((pad, pad), (pad, pad))


class ConvOptions:
    """Mixin for layers that hand BatchNorm constants, a kernel initializer and a kernel
    regularizer to their convs: stores them (deserialized) and serializes them for ``get_config``.
    """

    def set_conv_options(
        self,
        bn_epsilon: float,
        bn_momentum: float,
        kernel_initializer: Any,
        kernel_regularizer: Any,
    ) -> None:
        self.bn_epsilon = bn_epsilon
        self.bn_momentum = bn_momentum
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def conv_options_config(self) -> dict[str, Any]:
        """``bn_epsilon``, ``bn_momentum``, ``kernel_initializer``, ``kernel_regularizer``."""
        regularizer = self.kernel_regularizer
        return {
            "bn_epsilon": self.bn_epsilon,
            "bn_momentum": self.bn_momentum,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": (
                None if regularizer is None else keras.regularizers.serialize(regularizer)
            ),
        }


@keras.saving.register_keras_serializable(package="keras_pose")
class ConvBN(ConvOptions, keras.layers.Layer):
    """Conv2D, optional BatchNorm, optional ReLU, with the originals' padding.

    Strided convolutions pad ``k//2`` on every side and then run ``valid`` (Keras' ``same``
    pads bottom/right only for stride 2, which is not what PyTorch or slim do). Stride-1
    convolutions use ``same``, which is symmetric for odd kernels.

    Args:
        filters: output channels.
        kernel_size: square kernel size (odd).
        strides: stride.
        use_bias: conv bias (tf-cpn: False before BN; MSPN/RSN keep it).
        use_bn: follow the conv with BatchNormalization.
        activation: ``"relu"`` or ``None``.
        bn_epsilon, bn_momentum: BatchNorm constants (Keras momentum = 1 - PyTorch momentum).
        kernel_initializer, kernel_regularizer: passed to the conv.
        depthwise: use a depthwise conv (channel multiplier 1) instead of a full conv.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 1,
        strides: int = 1,
        use_bias: bool = False,
        use_bn: bool = True,
        activation: str | None = "relu",
        bn_epsilon: float = 1e-5,
        bn_momentum: float = 0.9,
        kernel_initializer: Any = "he_normal",
        kernel_regularizer: Any = None,
        depthwise: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if activation not in ("relu", None):
            raise ValueError(f"activation must be 'relu' or None, got {activation!r}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.use_bias = use_bias
        self.use_bn = use_bn
        self.activation = activation
        self.set_conv_options(bn_epsilon, bn_momentum, kernel_initializer, kernel_regularizer)
        self.depthwise = depthwise
        self.conv = self._make_conv()
        self.bn = (
            BatchNorm(
                epsilon=bn_epsilon, momentum=bn_momentum, dtype=self.dtype_policy, name="bn"
            )
            if use_bn
            else None
        )

    def _make_conv(self) -> keras.layers.Conv2D | keras.layers.DepthwiseConv2D:
        common = dict(
            strides=self.strides,
            padding="same" if self.strides == 1 else "valid",
            use_bias=self.use_bias,
            dtype=self.dtype_policy,
            name="conv",
        )
        if self.depthwise:
            return keras.layers.DepthwiseConv2D(
                self.kernel_size,
                depthwise_initializer=self.kernel_initializer,
                depthwise_regularizer=self.kernel_regularizer,
                **common,
            )
        return keras.layers.Conv2D(
            self.filters,
            self.kernel_size,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            **common,
        )

    def _pad(self, x):
        if self.strides == 1 or self.kernel_size == 1:
            return x
        (top, bottom), (left, right) = symmetric_padding(self.kernel_size)
        return ops.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))

    def _padded_shape(self, input_shape):
        if self.strides == 1 or self.kernel_size == 1:
            return tuple(input_shape)
        pad = 2 * (self.kernel_size // 2)
        n, h, w, c = input_shape
        return (n, None if h is None else h + pad, None if w is None else w + pad, c)

    def build(self, input_shape) -> None:
        self.conv.build(self._padded_shape(input_shape))
        if self.bn is not None:
            self.bn.build(self.conv.compute_output_shape(self._padded_shape(input_shape)))

    def call(self, inputs, training=None):
        x = self.conv(self._pad(inputs))
        if self.bn is not None:
            x = self.bn(x, training=training)
        if self.activation == "relu":
            x = ops.relu(x)
        return x

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(self._padded_shape(input_shape))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            use_bias=self.use_bias,
            use_bn=self.use_bn,
            activation=self.activation,
            **self.conv_options_config(),
            depthwise=self.depthwise,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_pose")
class LateralBlock(ConvBN):
    """The lateral connection of a feature pyramid: 1x1 conv to ``filters`` + BN + ReLU.

    CPN's GlobalNet ``lateral`` and MSPN/RSN's ``skip`` and ``cross_conv`` units are this block.
    """

    def __init__(self, filters: int = 256, **kwargs: Any) -> None:
        kwargs.setdefault("kernel_size", 1)
        if kwargs["kernel_size"] != 1:
            raise ValueError(f"LateralBlock is a 1x1 conv, got kernel_size={kwargs['kernel_size']}")
        super().__init__(filters, **kwargs)


class ConvBNBlock(ConvOptions, keras.layers.Layer):
    """Base of the composite blocks (Bottleneck, BasicBlock, RSB, PRM): the conv/BN options
    every inner :class:`ConvBN` shares, a factory for those convs, and their config.

    Subclasses take their own arguments and pass the options below on as keyword arguments
    (``**kwargs``); ``get_config`` returns all of them.

    Args:
        use_bias: give every conv a bias (tf-cpn: False before BN; the RSN code keeps it).
        bn_epsilon, bn_momentum: BatchNorm constants (Keras momentum = 1 - PyTorch momentum).
        kernel_initializer: initializer of every conv kernel (each conv gets its own instance).
        kernel_regularizer: regularizer of every conv kernel.
        **kwargs: base layer arguments (``name``, ``dtype``, ...).
    """

    def __init__(
        self,
        use_bias: bool = False,
        bn_epsilon: float = 1e-5,
        bn_momentum: float = 0.9,
        kernel_initializer: Any = "he_normal",
        kernel_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.use_bias = use_bias
        self.set_conv_options(bn_epsilon, bn_momentum, kernel_initializer, kernel_regularizer)

    def conv_bn(
        self,
        filters: int,
        kernel_size: int,
        strides: int = 1,
        activation: str | None = "relu",
        name: str | None = None,
        depthwise: bool = False,
    ) -> ConvBN:
        """A ConvBN with the block's options and its own initializer instance (a shared
        unseeded instance would give same-shaped kernels identical starting values)."""
        return ConvBN(
            filters,
            kernel_size,
            strides=strides,
            use_bias=self.use_bias,
            activation=activation,
            bn_epsilon=self.bn_epsilon,
            bn_momentum=self.bn_momentum,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            kernel_regularizer=self.kernel_regularizer,
            depthwise=depthwise,
            dtype=self.dtype_policy,
            name=name,
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(use_bias=self.use_bias, **self.conv_options_config())
        return config
