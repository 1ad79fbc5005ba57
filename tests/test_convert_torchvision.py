"""ImageNet initialisation of CPN's trunk from torchvision-layout ResNet weights (no torch needed:
the state dict is synthesised with torchvision's key names and shapes and saved as .npz)."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_pose.convert import WeightMappingError
from keras_pose.convert.torchvision import (
    IMAGENET_RGB_MEAN,
    IMAGENET_RGB_STD,
    load_torchvision_resnet,
)
from keras_pose.models.cpn import CPNModel

INPUT_SHAPE = (64, 48, 3)
BN_EPS = 1.001e-5


def torchvision_resnet_keys(units=(3, 4, 6, 3)) -> dict[str, tuple[int, ...]]:
    """torchvision ``resnet50().state_dict()`` names and shapes (Bottleneck, expansion 4)."""
    def bn(prefix, c):
        params = ("weight", "bias", "running_mean", "running_var")
        return {f"{prefix}.{p}": (c,) for p in params} | {f"{prefix}.num_batches_tracked": ()}

    keys = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}
    inplanes = 64
    for layer, (count, planes) in enumerate(zip(units, (64, 128, 256, 512)), 1):
        for index in range(count):
            prefix = f"layer{layer}.{index}"
            keys[f"{prefix}.conv1.weight"] = (planes, inplanes, 1, 1)
            keys |= bn(f"{prefix}.bn1", planes)
            keys[f"{prefix}.conv2.weight"] = (planes, planes, 3, 3)
            keys |= bn(f"{prefix}.bn2", planes)
            keys[f"{prefix}.conv3.weight"] = (planes * 4, planes, 1, 1)
            keys |= bn(f"{prefix}.bn3", planes * 4)
            if index == 0:
                keys[f"{prefix}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                keys |= bn(f"{prefix}.downsample.1", planes * 4)
            inplanes = planes * 4
    keys["fc.weight"] = (1000, 2048)
    keys["fc.bias"] = (1000,)
    return keys


@functools.cache
def state_dict() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    values = {}
    for key, shape in torchvision_resnet_keys().items():
        if key.endswith("num_batches_tracked"):
            values[key] = np.array(5)
        elif key.endswith("running_var"):
            values[key] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:
            values[key] = rng.standard_normal(shape, dtype=np.float32) * 0.1
    return values


@functools.cache
def loaded(tmp_dir: str) -> tuple[CPNModel, int, np.ndarray]:
    path = f"{tmp_dir}/resnet50_torchvision.npz"
    np.savez(path, **state_dict())
    model = CPNModel(depth=50, input_shape=INPUT_SHAPE)
    lateral_before = np.asarray(model.get_layer("lateral_res5").conv.kernel).copy()
    return model, load_torchvision_resnet(model, path), lateral_before


@pytest.fixture(scope="module")
def cpn(tmp_path_factory):
    return loaded(str(tmp_path_factory.mktemp("torchvision")))


def test_every_trunk_variable_takes_one_tensor(cpn):
    model, count, lateral_before = cpn
    trunk = [v for v in model.weights if v.path.startswith(("conv1/", "block"))]
    tensors = [k for k in state_dict() if not k.startswith("fc.") and "num_batches" not in k]
    assert count == len(trunk) == len(tensors) == 265
    # GlobalNet / RefineNet keep their own initialisation
    np.testing.assert_array_equal(
        np.asarray(model.get_layer("lateral_res5").conv.kernel), lateral_before
    )


@pytest.mark.parametrize(
    "keras_path, key",
    [
        ("block2_unit_1/conv2/conv/kernel", "layer2.0.conv2.weight"),  # the strided 3x3
        ("block3_unit_1/shortcut/conv/kernel", "layer3.0.downsample.0.weight"),
        ("block3_unit_1/shortcut/bn/moving_variance", "layer3.0.downsample.1.running_var"),
        ("block4_unit_3/conv3/bn/gamma", "layer4.2.bn3.weight"),
        ("block1_unit_2/conv1/bn/beta", "layer1.1.bn1.bias"),
    ],
)
def test_values_land_where_their_names_say(cpn, keras_path, key):
    model, _, _ = cpn
    variable = {v.path: v for v in model.weights}[keras_path]
    source = state_dict()[key]
    expected = np.einsum("oihw->hwio", source) if source.ndim == 4 else source
    np.testing.assert_array_equal(np.asarray(variable), expected)


def test_strided_unit_matches_torchvision_padding(cpn):
    """block2_unit_1 (3x3 stride 2, padding 1; 1x1/2 projection) equals torchvision's Bottleneck
    computed with explicit symmetric padding from the raw tensors."""
    model, _, _ = cpn
    t = state_dict()

    def conv_bn(x, prefix_conv, prefix_bn, stride=1, relu=True):
        w = np.einsum("oihw->hwio", t[f"{prefix_conv}.weight"])
        pad = w.shape[0] // 2
        x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        y = tf.nn.conv2d(x, w, stride, "VALID")
        b = prefix_bn
        y = tf.nn.batch_normalization(y, t[f"{b}.running_mean"], t[f"{b}.running_var"],
                                      t[f"{b}.bias"], t[f"{b}.weight"], BN_EPS)
        return tf.nn.relu(y) if relu else y

    x = np.random.default_rng(1).standard_normal((1, 16, 12, 256), dtype=np.float32)
    p = "layer2.0"
    y = conv_bn(x, f"{p}.conv1", f"{p}.bn1")
    y = conv_bn(y, f"{p}.conv2", f"{p}.bn2", stride=2)
    y = conv_bn(y, f"{p}.conv3", f"{p}.bn3", relu=False)
    shortcut = conv_bn(x, f"{p}.downsample.0", f"{p}.downsample.1", stride=2, relu=False)
    expected = tf.nn.relu(y + shortcut).numpy()
    got = np.asarray(model.get_layer("block2_unit_1")(x, training=False))
    assert got.shape == expected.shape == (1, 8, 6, 512)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_first_conv_sees_what_torchvision_saw(cpn):
    """On CPN's BGR input the adapted conv1+bn1 equals torchvision's conv1+bn1 on the RGB
    ImageNet-normalised image (away from the zero-padded border)."""
    model, _, _ = cpn
    t = state_dict()
    bgr = np.random.default_rng(2).uniform(0, 255, (1, *INPUT_SHAPE)).astype(np.float32)
    rgb = bgr[..., ::-1] / 255.0
    normalised = ((rgb - IMAGENET_RGB_MEAN) / IMAGENET_RGB_STD).astype(np.float32)
    x = tf.pad(normalised, [[0, 0], [3, 3], [3, 3], [0, 0]])
    y = tf.nn.conv2d(x, np.einsum("oihw->hwio", t["conv1.weight"]), 2, "VALID")
    y = tf.nn.batch_normalization(y, t["bn1.running_mean"], t["bn1.running_var"], t["bn1.bias"],
                                  t["bn1.weight"], BN_EPS)
    expected = tf.nn.relu(y).numpy()
    stem = keras.Model(model.input, model.get_layer("conv1").output)
    got = np.asarray(stem(bgr, training=False))
    interior = (slice(None), slice(2, -2), slice(2, -2))
    np.testing.assert_allclose(got[interior], expected[interior], rtol=1e-4, atol=1e-4)


def test_missing_and_foreign_tensors_are_listed(cpn):
    model, _, _ = cpn
    broken = dict(state_dict())
    del broken["layer3.5.bn2.running_mean"]
    broken["layer5.0.conv1.weight"] = np.zeros((8, 8, 1, 1), np.float32)
    with pytest.raises(WeightMappingError) as error:
        load_torchvision_resnet(model, broken, adapt_input=False)
    message = str(error.value)
    assert "'layer3.5.bn2.running_mean'" in message
    assert "'layer5.0.conv1.weight' (8, 8, 1, 1) matches no model variable" in message


def test_cpn_builder_takes_backbone_weights(cpn, tmp_path):
    from keras_pose.models.cpn import CPN50

    path = tmp_path / "resnet50.npz"
    np.savez(path, **state_dict())
    model = CPN50(input_shape=INPUT_SHAPE, backbone_weights=str(path), compile=False)
    reference, _, _ = cpn
    for name in ("block4_unit_3", "conv1"):
        for got, expected in zip(model.get_layer(name).weights, reference.get_layer(name).weights):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    assert "backbone_weights" not in model.get_config()
