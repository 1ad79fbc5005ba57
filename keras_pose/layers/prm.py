"""RSN's Pose Refine Machine (PRM), as the released RSN code defines it.

The class ``PRM`` in the RSN repository (``exps/4XRSN18.coco/network.py``) is defined but never
instantiated; asked where it goes, the owner answered "use it at the output end" (RSN issue #17).
Its convolutions are ``K -> K`` (K = number of keypoints), so it refines the heatmaps::

    o = ReLU(BN(conv3x3(x)))
    a = sigmoid(ReLU(BN(conv1x1(ReLU(BN(conv1x1(GAP(o))))))))        # channel attention
    b = sigmoid(ReLU(BN(dwconv9x9(ReLU(BN(conv1x1(o)))))))           # spatial attention
    y = o * (1 + a * b)

Both sigmoids follow a ReLU, so ``a`` and ``b`` lie in ``[0.5, 1)``.

MMPose's PRM (``MSPNHead(use_prm=True)``) differs: it runs on every unit's heatmap, its channel
path is Linear + BN1d + ReLU twice, and its spatial path ends in a single-channel map. That
variant is not this layer.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_pose.layers.conv_bn import ConvBNBlock


@keras.saving.register_keras_serializable(package="keras_pose")
class PoseRefineMachine(ConvBNBlock):
    """``y = o * (1 + a * b)``: the RSN code's PRM on a ``(N, H, W, K)`` heatmap tensor.

    The global average is an ``AveragePooling2D`` over the static spatial size (it exports to
    TFLite as ``AVERAGE_POOL_2D``, which the GPU delegate runs, rather than ``MEAN``), so the
    input height and width must be known when the layer is built.

    Args:
        use_bias: conv bias (True in the RSN code).
        **kwargs: the other conv options of :class:`~keras_pose.layers.ConvBNBlock`
            (``bn_epsilon``, ``bn_momentum``, ``kernel_initializer``, ``kernel_regularizer``)
            and the base layer's (``name``, ``dtype``).
    """

    def __init__(self, use_bias: bool = True, **kwargs: Any) -> None:
        super().__init__(use_bias=use_bias, **kwargs)

    def build(self, input_shape) -> None:
        _, h, w, channels = input_shape
        if h is None or w is None:
            raise ValueError(f"{self.name} needs a static input height/width, got {input_shape}")
        self.refine = self.conv_bn(channels, 3, name="refine")
        self.global_pool = keras.layers.AveragePooling2D(
            pool_size=(h, w), dtype=self.dtype_policy, name="global_pool"
        )
        self.channel_conv1 = self.conv_bn(channels, 1, name="channel_conv1")
        self.channel_conv2 = self.conv_bn(channels, 1, name="channel_conv2")
        self.spatial_conv1 = self.conv_bn(channels, 1, name="spatial_conv1")
        self.spatial_conv2 = self.conv_bn(channels, 9, name="spatial_conv2", depthwise=True)
        pooled = (input_shape[0], 1, 1, channels)
        self.refine.build(input_shape)
        self.channel_conv1.build(pooled)
        self.channel_conv2.build(pooled)
        self.spatial_conv1.build(input_shape)
        self.spatial_conv2.build(input_shape)

    def attention(self, inputs, training=None) -> tuple[Any, Any, Any]:
        """``(o, a, b)``: features, channel attention ``(N,1,1,K)``, spatial ``(N,H,W,K)``."""
        o = self.refine(inputs, training=training)
        a = self.channel_conv1(self.global_pool(o), training=training)
        a = ops.sigmoid(self.channel_conv2(a, training=training))
        b = self.spatial_conv1(o, training=training)
        b = ops.sigmoid(self.spatial_conv2(b, training=training))
        return o, a, b

    def call(self, inputs, training=None):
        o, a, b = self.attention(inputs, training=training)
        return o * (1.0 + a * b)

    def compute_output_shape(self, input_shape):
        return input_shape
