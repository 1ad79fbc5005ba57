"""ResNet-v1 trunk: feature strides and widths, stride placement, parameter counts."""

import functools

import keras
import numpy as np
import pytest

from keras_pose.backbones.resnet import resnet, resnet_stage
from keras_pose.layers import Bottleneck
from keras_pose.layers.basic_block import BasicBlock

# torchvision ResNet parameter counts minus the 1000-class fc layer (2048*1000+1000 for the
# bottleneck nets, 512*1000+1000 for ResNet-18); slim's resnet_v1 trunks have the same weights.
TRUNK_PARAMS = {18: 11_689_512 - 513_000, 50: 25_557_032 - 2_049_000, 101: 44_549_160 - 2_049_000}
WIDTHS = {18: (64, 128, 256, 512), 50: (256, 512, 1024, 2048), 101: (256, 512, 1024, 2048)}


@functools.cache
def trunk(depth):
    """The trunk on 96x64 inputs, built once per test session."""
    inputs = keras.Input((96, 64, 3))
    return keras.Model(inputs, resnet(inputs, depth))


def trainable(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


@pytest.mark.parametrize("depth", [18, 50, 101])
def test_features_strides_widths_and_params(depth):
    model = trunk(depth)
    shapes = {name: tuple(t.shape[1:]) for name, t in model.output.items()}
    expected = {
        f"C{level}": (96 // 2**level, 64 // 2**level, width)
        for level, width in zip((2, 3, 4, 5), WIDTHS[depth])
    }
    assert shapes == expected
    assert trainable(model) == TRUNK_PARAMS[depth]


def test_resnet50_trunk_matches_tf_cpn_backbone():
    # docs/provenance.md#tfcpn-graph: the tf-cpn graph's backbone has 23,508,032 trainable
    # parameters.
    assert TRUNK_PARAMS[50] == 23_508_032
    model = trunk(50)
    assert trainable(model) == 23_508_032
    assert type(model.get_layer("block1_unit_1")) is Bottleneck


def test_stride_is_in_the_first_unit_on_the_3x3():
    model = trunk(50)
    for block, units in zip((1, 2, 3, 4), (3, 4, 6, 3)):
        for unit in range(1, units + 1):
            layer = model.get_layer(f"block{block}_unit_{unit}")
            stride = 2 if block > 1 and unit == 1 else 1
            assert (layer.conv1.strides, layer.conv2.strides, layer.conv3.strides) == (1, stride, 1)
            has_projection = unit == 1  # block1 unit 1 widens 64 -> 256 at stride 1
            assert (layer.shortcut is not None) == has_projection, layer.name
    assert model.get_layer("conv1").conv.get_config()["use_bias"] is False


def test_stem_then_padded_max_pool_gives_stride_4():
    inputs = keras.Input((30, 22, 3))
    features = resnet(inputs, 18)
    model = keras.Model(inputs, features["C2"])
    # 30 -> conv1 15 -> pool 8 ; 22 -> 11 -> 6 (ceil halvings, as slim/PyTorch with pad 3 / pad 1)
    assert tuple(model.output.shape[1:3]) == (8, 6)
    assert model.get_layer("pool1_pad").get_config()["padding"] == ((1, 1), (1, 1))


def test_resnet_stage_names_units_and_accepts_basic_blocks():
    inputs = keras.Input((16, 16, 32))
    outputs = resnet_stage(inputs, 64, 3, strides=2, name="stage", block="basic", bn_momentum=0.99)
    model = keras.Model(inputs, outputs)
    assert tuple(outputs.shape[1:]) == (8, 8, 64)
    units = [model.get_layer(f"stage_unit_{i}") for i in (1, 2, 3)]
    assert all(type(u) is BasicBlock and u.bn_momentum == 0.99 for u in units)
    assert [u.strides for u in units] == [2, 1, 1]
    with pytest.raises(ValueError, match="block"):
        resnet_stage(inputs, 64, 1, strides=1, name="bad", block="dense")


def test_unknown_depth_is_rejected():
    with pytest.raises(ValueError, match="depth"):
        resnet(keras.Input((64, 64, 3)), 42)
