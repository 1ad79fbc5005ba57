"""Shared layers: exact resize conventions, symmetric strided padding, serialization."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_pose.layers import (
    BilinearUpsample,
    Bottleneck,
    ConvBN,
    LateralBlock,
    NearestUpsample2x,
    PixelNormalization,
    PoseRefineMachine,
    PreActResidual,
    ResidualStepsBlock,
    interpolation_matrix,
)
from keras_pose.layers.basic_block import BasicBlock

RESIZE_CASES = [((5, 7), (10, 14)), ((8, 6), (64, 48)), ((3, 2), (96, 72)), ((9, 7), (4, 5))]


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("in_size,out_size", RESIZE_CASES)
def test_bilinear_upsample_matches_tf1_resize_bilinear(in_size, out_size, align_corners):
    x = np.random.default_rng(1).normal(size=(2, *in_size, 3)).astype("float32")
    expected = tf.compat.v1.image.resize_bilinear(x, out_size, align_corners=align_corners).numpy()
    mode = "align_corners" if align_corners else "tf_legacy"

    layer_out = BilinearUpsample(out_size, mode=mode)(x)
    np.testing.assert_allclose(np.asarray(layer_out), expected, atol=1e-5)

    rows = interpolation_matrix(in_size[0], out_size[0], mode)
    cols = interpolation_matrix(in_size[1], out_size[1], mode)
    einsum_out = np.einsum("hH,bHWc,wW->bhwc", rows, x, cols)
    np.testing.assert_allclose(einsum_out, expected, atol=1e-5)


def test_nearest_upsample_repeats_every_pixel_twice_each_way():
    x = np.random.default_rng(5).normal(size=(2, 3, 5, 4)).astype("float32")
    expected = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    np.testing.assert_array_equal(np.asarray(NearestUpsample2x()(x)), expected)


def test_interpolation_matrix_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        interpolation_matrix(4, 8, "half_pixel")


def _explicit_pad_conv(x, kernel, stride, pad):
    """Zero-pad ``pad`` on every side, then a VALID strided conv, in numpy."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    k = kernel.shape[0]
    out_h = (x.shape[1] - k) // stride + 1
    out_w = (x.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[-1]), np.float64)
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
            out[:, i, j] = np.einsum("bhwc,hwco->bo", patch, kernel)
    return out


@pytest.mark.parametrize("kernel_size,size", [(3, (8, 6)), (7, (10, 8)), (3, (7, 5))])
def test_strided_conv_bn_pads_symmetrically(kernel_size, size):
    x = np.random.default_rng(2).normal(size=(1, *size, 2)).astype("float32")
    layer = ConvBN(4, kernel_size, strides=2, use_bn=False, activation=None)
    out = np.asarray(layer(x))
    kernel = np.asarray(layer.conv.kernel)
    expected = _explicit_pad_conv(x, kernel, 2, kernel_size // 2)
    np.testing.assert_allclose(out, expected, atol=1e-4)

    keras_same = keras.layers.Conv2D(4, kernel_size, strides=2, padding="same", use_bias=False)
    keras_same.build(x.shape)
    keras_same.kernel.assign(kernel)
    if size[0] % 2 == 0:  # Keras pads bottom/right only here: the explicit padding matters
        assert np.abs(np.asarray(keras_same(x)) - out).max() > 1e-3


LAYERS = {
    "conv_bn": lambda: ConvBN(8, 3, strides=2, kernel_regularizer=keras.regularizers.L2(1e-4)),
    "lateral": lambda: LateralBlock(8, bn_epsilon=1.001e-5, bn_momentum=0.99),
    "bottleneck": lambda: Bottleneck(16, bottleneck_filters=4, strides=2),
    "basic_block": lambda: BasicBlock(8, strides=2, bn_momentum=0.99),
    "pixel_norm": lambda: PixelNormalization([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 4.0, 4.0]),
    "upsample": lambda: BilinearUpsample((12, 10), mode="align_corners"),
    "nearest_x2": lambda: NearestUpsample2x(),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_config_round_trip(name):
    layer = LAYERS[name]()
    x = np.random.default_rng(3).normal(size=(2, 6, 6, 4)).astype("float32")
    expected = np.asarray(layer(x, training=False))
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    got = np.asarray(clone(x, training=False))
    np.testing.assert_array_equal(got, expected)


def test_keras_file_round_trip_of_a_tiny_model(tmp_path):
    inputs = keras.Input((16, 12, 3))
    x = PixelNormalization([100.0, 110.0, 120.0], [255.0, 255.0, 255.0])(inputs)
    x = ConvBN(8, 7, strides=2, name="stem")(x)
    x = Bottleneck(16, strides=2, name="unit")(x)
    x = BasicBlock(16, name="basic")(x)
    x = LateralBlock(8, name="lateral")(x)
    x = BilinearUpsample((8, 6), name="resize")(x)
    model = keras.Model(inputs, x)
    images = np.random.default_rng(4).uniform(0, 255, (2, 16, 12, 3)).astype("float32")
    before = model.predict(images, verbose=0)
    path = os.path.join(tmp_path, "tiny.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for layer_name, cls in [("stem", ConvBN), ("unit", Bottleneck), ("basic", BasicBlock),
                            ("lateral", LateralBlock), ("resize", BilinearUpsample)]:
        assert type(loaded.get_layer(layer_name)) is cls
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), before)


def test_basic_block_shortcut_only_when_shape_changes():
    x = np.zeros((1, 8, 8, 8), "float32")
    same = BasicBlock(8)
    same(x)
    assert same.shortcut is None
    projected = BasicBlock(8, strides=2)
    assert projected(x).shape == (1, 4, 4, 8)
    assert projected.shortcut is not None and projected.shortcut.strides == 2
    assert projected.conv1.strides == 2 and projected.conv2.strides == 1


# --- configs as saved .keras files hold them ------------------------------------------------

HE_NORMAL = {
    "module": "keras.initializers",
    "class_name": "HeNormal",
    "config": {"seed": None},
    "registered_name": None,
}
L2 = {
    "module": "keras.regularizers",
    "class_name": "L2",
    "config": {"l2": 1e-4},
    "registered_name": None,
}
CONV_OPTIONS = {
    "bn_epsilon": 1e-3,
    "bn_momentum": 0.99,
    "kernel_initializer": HE_NORMAL,
    "kernel_regularizer": L2,
}
BN_WEIGHTS = ["gamma", "beta", "moving_mean", "moving_variance"]
CONV_WEIGHTS = ["kernel", "bias"]
RSB_UNITS = ["expand"] + [f"step{k}_{t}" for k in range(1, 5) for t in range(1, k + 1)]


def conv_bn_paths(units: list[str], use_bias: bool) -> list[str]:
    """Weight paths, in order, of the ConvBN sublayers ``units`` ("" for the layer itself)."""
    conv = ["conv/kernel", "conv/bias"] if use_bias else ["conv/kernel"]
    names = conv + [f"bn/{w}" for w in BN_WEIGHTS]
    return [f"{unit}/{name}" if unit else name for unit in units for name in names]


CONV_BN_CONFIG = {
    "filters": 8,
    "kernel_size": 3,
    "strides": 2,
    "use_bias": False,
    "use_bn": True,
    "activation": "relu",
    "depthwise": False,
    **CONV_OPTIONS,
}

# class, config (without name/trainable/dtype), input channels, weight paths in order
SAVED_CONFIGS = {
    "conv_bn": (ConvBN, CONV_BN_CONFIG, 4, conv_bn_paths([""], use_bias=False)),
    "depthwise_conv_bn": (
        ConvBN,
        dict(
            CONV_BN_CONFIG,
            filters=4, kernel_size=9, strides=1, use_bias=True, activation=None, depthwise=True,
        ),
        4,
        conv_bn_paths([""], use_bias=True),
    ),
    "lateral": (
        LateralBlock,
        dict(CONV_BN_CONFIG, kernel_size=1, strides=1),
        4,
        conv_bn_paths([""], use_bias=False),
    ),
    "bottleneck": (
        Bottleneck,
        dict(filters=16, bottleneck_filters=4, strides=2, use_bias=False, **CONV_OPTIONS),
        4,
        conv_bn_paths(["conv1", "conv2", "conv3", "shortcut"], use_bias=False),
    ),
    "basic_block": (
        BasicBlock,
        dict(filters=8, strides=2, use_bias=True, **CONV_OPTIONS),
        4,
        conv_bn_paths(["conv1", "conv2", "shortcut"], use_bias=True),
    ),
    "rsb": (
        ResidualStepsBlock,
        dict(filters=32, strides=2, use_bias=True, **CONV_OPTIONS),
        16,
        conv_bn_paths(RSB_UNITS + ["project", "shortcut"], use_bias=True),
    ),
    "prm": (
        PoseRefineMachine,
        dict(use_bias=False, **CONV_OPTIONS),
        5,
        conv_bn_paths(
            ["refine", "channel_conv1", "channel_conv2", "spatial_conv1", "spatial_conv2"],
            use_bias=False,
        ),
    ),
    "pre_act_residual": (  # every conv has a bias, the skip has no BN
        PreActResidual,
        dict(filters=6, **CONV_OPTIONS),
        4,
        [f"bn{i}/{w}" for i in (1, 2, 3) for w in BN_WEIGHTS]
        + [f"{conv}/{w}" for conv in ("conv1", "conv2", "conv3", "skip") for w in CONV_WEIGHTS],
    ),
}


@pytest.mark.parametrize("name", sorted(SAVED_CONFIGS))
def test_saved_config_builds_the_same_layer_and_weight_names(name):
    cls, saved, channels, weight_paths = SAVED_CONFIGS[name]
    layer = cls.from_config({"name": "saved", "trainable": True, **saved})
    layer(np.zeros((1, 8, 8, channels), "float32"))

    config = layer.get_config()
    assert set(config) == {"name", "trainable", "dtype", *saved}
    for key, value in saved.items():
        if key not in ("kernel_initializer", "kernel_regularizer"):
            assert config[key] == value, key
    assert cls.from_config(config).get_config() == config
    assert [w.path for w in layer.weights] == [f"saved/{path}" for path in weight_paths]

    sublayers = list(layer._flatten_layers(include_self=True, recursive=True))
    conv_types = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
    convs = [s for s in sublayers if isinstance(s, conv_types)]
    norms = [s for s in sublayers if isinstance(s, keras.layers.BatchNormalization)]
    assert convs and norms
    for conv in convs:
        initializer = getattr(conv, "depthwise_initializer", None) or conv.kernel_initializer
        regularizer = getattr(conv, "depthwise_regularizer", None) or conv.kernel_regularizer
        assert isinstance(initializer, keras.initializers.HeNormal), conv.path
        assert isinstance(regularizer, keras.regularizers.L2), conv.path
        assert regularizer.l2 == pytest.approx(1e-4)
    assert all(n.epsilon == 1e-3 and n.momentum == 0.99 for n in norms)
    kernels = [w for w in layer.weights if w.path.endswith("kernel")]
    assert len(layer.losses) == len(kernels)
    expected_penalty = sum(1e-4 * float(np.sum(np.square(w))) for w in kernels)
    penalty = sum(float(loss) for loss in layer.losses)
    assert penalty == pytest.approx(expected_penalty, rel=1e-5)
