"""Base of the post-activation residual blocks: ``relu(body(x) + shortcut(x))``."""

from __future__ import annotations

from typing import Any

from keras import ops

from keras_pose.layers.conv_bn import ConvBN, ConvBNBlock


class ResidualUnit(ConvBNBlock):
    """The part BasicBlock, Bottleneck and the Residual Steps Block share: output width, stride,
    the shortcut and the final ``relu(body + shortcut)``.

    The shortcut is a 1x1 conv (with the stride) + BN when the width or the stride changes, the
    identity otherwise. Subclasses build their body and call :meth:`build_shortcut` in
    ``build``, and end ``call`` with :meth:`add_shortcut`.

    Args:
        filters: output channels.
        strides: the block's stride (the projection shortcut's too).
        **kwargs: the conv options of :class:`~keras_pose.layers.ConvBNBlock` (``use_bias``,
            ``bn_epsilon``, ``bn_momentum``, ``kernel_initializer``, ``kernel_regularizer``) and
            the base layer's (``name``, ``dtype``).
    """

    def __init__(self, filters: int, strides: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.shortcut: ConvBN | None = None

    def build_shortcut(self, input_shape) -> None:
        """Creates and builds the projection shortcut if the width or the stride changes."""
        if input_shape[-1] != self.filters or self.strides != 1:
            self.shortcut = self.conv_bn(self.filters, 1, self.strides, None, "shortcut")
            self.shortcut.build(input_shape)

    def add_shortcut(self, body, inputs, training=None):
        """``relu(body + shortcut(inputs))``."""
        shortcut = inputs if self.shortcut is None else self.shortcut(inputs, training=training)
        return ops.relu(body + shortcut)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides)
        return config
