"""ResNet-v1 trunk as tf-cpn builds it from TF-slim, returning the C2..C5 feature maps.

::

    conv1   7x7/2, 64, BN, ReLU       (symmetric pad 3, then VALID)        stride 2
    pool1   3x3/2 max-pool            (zero pad 1, then VALID)             stride 4
    block1  units (256, 64) x n1      stride 1                    -> C2    stride 4
    block2  units (512, 128) x n2     stride 2 in the FIRST unit  -> C3    stride 8
    block3  units (1024, 256) x n3    stride 2 in the FIRST unit  -> C4    stride 16
    block4  units (2048, 512) x n4    stride 2 in the FIRST unit  -> C5    stride 32

Depths 50/101/152 use :class:`~keras_pose.layers.Bottleneck` units (stride on the 3x3, as
slim's ``bottleneck_v1``); depths 18/34 use :class:`~keras_pose.layers.basic_block.BasicBlock`
units of width 64/128/256/512. Convs have no bias (BN follows) and strided convs pad
symmetrically, like slim's ``conv2d_same`` and PyTorch.

Layer names map one-to-one onto the slim variable scopes (``{prefix}`` is ``name_prefix``)::

    {prefix}conv1            ->  resnet_v1_{depth}/conv1
    {prefix}block{b}_unit_{u} ->  resnet_v1_{depth}/block{b}/unit_{u}/bottleneck_v1
        (its sublayers conv1/conv2/conv3/shortcut keep the slim names)

and inside every :class:`~keras_pose.layers.ConvBN`, ``conv/kernel`` is slim's ``weights``
(same HWIO layout) and ``bn/{gamma,beta,moving_mean,moving_variance}`` is ``BatchNorm/...``.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_pose.layers.basic_block import BasicBlock
from keras_pose.layers.bottleneck import Bottleneck
from keras_pose.layers.conv_bn import ConvBN

# depth -> (unit type, units per block)
RESNET_DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
BLOCK_WIDTHS = {"basic": (64, 128, 256, 512), "bottleneck": (256, 512, 1024, 2048)}
BLOCK_TYPES = {"basic": BasicBlock, "bottleneck": Bottleneck}
FEATURE_NAMES = ("C2", "C3", "C4", "C5")

# tf-cpn's BN as the released checkpoints ran it (docs/provenance.md#tfcpn-graph: TF1 clamped
# 1e-9 to 1.001e-5).
TFCPN_BN_EPSILON = 1.001e-5
TFCPN_BN_MOMENTUM = 0.99


def resnet_stage(
    x: Any,
    filters: int,
    num_blocks: int,
    strides: int,
    name: str,
    block: str = "bottleneck",
    **block_kwargs: Any,
) -> Any:
    """``num_blocks`` residual units named ``{name}_unit_1..n``; the first carries ``strides``.

    Args:
        x: input feature map (NHWC).
        filters: output channels of every unit.
        num_blocks: number of units.
        strides: stride of the first unit (slim's resnet_v1 as tf-cpn configures it).
        name: prefix of the unit names.
        block: ``"bottleneck"`` (:class:`Bottleneck`) or ``"basic"`` (:class:`BasicBlock`).
        **block_kwargs: passed to every unit (BN constants, initializer, regularizer, ...).
    """
    if block not in BLOCK_TYPES:
        raise ValueError(f"block must be one of {sorted(BLOCK_TYPES)}, got {block!r}")
    unit = BLOCK_TYPES[block]
    for index in range(num_blocks):
        x = unit(
            filters,
            strides=strides if index == 0 else 1,
            name=f"{name}_unit_{index + 1}",
            **block_kwargs,
        )(x)
    return x


def resnet(
    x: Any,
    depth: int = 50,
    bn_epsilon: float = TFCPN_BN_EPSILON,
    bn_momentum: float = TFCPN_BN_MOMENTUM,
    kernel_initializer: Any = "he_normal",
    kernel_regularizer: Any = None,
    name_prefix: str = "",
) -> dict[str, Any]:
    """Run the ResNet-v1 trunk on ``x`` and return ``{"C2", "C3", "C4", "C5"}``.

    Args:
        x: the normalised image tensor (NHWC).
        depth: 18, 34, 50, 101 or 152.
        bn_epsilon, bn_momentum: BatchNorm constants of every conv (Keras momentum convention);
            the defaults are tf-cpn's as it ran (eps 1.001e-5, decay 0.99).
        kernel_initializer: initializer of every conv (slim's He ``variance_scaling``).
        kernel_regularizer: regularizer of every conv kernel (tf-cpn: L2, see ``CPN``).
        name_prefix: prefix of every layer name (to put two trunks in one model).

    Returns:
        Features at strides 4, 8, 16 and 32.
    """
    if depth not in RESNET_DEPTHS:
        raise ValueError(f"ResNet depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
    block, units = RESNET_DEPTHS[depth]
    conv_kwargs = dict(
        bn_epsilon=bn_epsilon,
        bn_momentum=bn_momentum,
        kernel_initializer=kernel_initializer,
        kernel_regularizer=kernel_regularizer,
    )
    x = ConvBN(64, 7, strides=2, name=f"{name_prefix}conv1", **conv_kwargs)(x)
    x = keras.layers.ZeroPadding2D(1, name=f"{name_prefix}pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name=f"{name_prefix}pool1")(x)
    features = {}
    for index, (filters, num_blocks) in enumerate(zip(BLOCK_WIDTHS[block], units)):
        x = resnet_stage(
            x,
            filters,
            num_blocks,
            strides=1 if index == 0 else 2,
            name=f"{name_prefix}block{index + 1}",
            block=block,
            **conv_kwargs,
        )
        features[FEATURE_NAMES[index]] = x
    return features
