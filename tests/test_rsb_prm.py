"""ResidualStepsBlock and PoseRefineMachine: wiring against numpy re-computations, stride,
widths, attention ranges, TFLite op, serialization."""

import os

import keras
import numpy as np
import pytest

from keras_pose.layers.prm import PoseRefineMachine
from keras_pose.layers.rsb import ResidualStepsBlock, branch_width

RNG = np.random.default_rng(0)


# --- numpy re-computation -------------------------------------------------------------------


def randomize(layer: keras.layers.Layer, seed: int = 0) -> None:
    """Random conv biases and BN statistics/affine terms, so every term of the maths shows."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        name = weight.path.rsplit("/", 1)[-1]
        shape = tuple(weight.shape)
        if name == "bias":
            weight.assign(rng.uniform(-0.2, 0.2, shape).astype("float32"))
        elif name in ("gamma", "moving_variance"):
            weight.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif name in ("beta", "moving_mean"):
            weight.assign(rng.uniform(-0.2, 0.2, shape).astype("float32"))


def np_conv(x, kernel, bias, stride=1, depthwise=False):
    """NHWC conv with symmetric 'same' padding (odd kernels), PyTorch style."""
    kh, kw = kernel.shape[:2]
    ph, pw = kh // 2, kw // 2
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    h = (x.shape[1] + 2 * ph - kh) // stride + 1
    w = (x.shape[2] + 2 * pw - kw) // stride + 1
    out = np.zeros((x.shape[0], h, w, x.shape[3] if depthwise else kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i : i + stride * h : stride, j : j + stride * w : stride, :]
            out += patch * kernel[i, j, :, 0] if depthwise else patch @ kernel[i, j]
    return out + bias


def np_conv_bn(unit, x):
    """What a ConvBN does in inference, from its weights."""
    conv, bn = unit.conv, unit.bn
    y = np_conv(
        x,
        np.asarray(conv.kernel),
        np.asarray(conv.bias),
        stride=unit.strides,
        depthwise=unit.depthwise,
    )
    y = (y - np.asarray(bn.moving_mean)) / np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon)
    y = y * np.asarray(bn.gamma) + np.asarray(bn.beta)
    return np.maximum(y, 0) if unit.activation == "relu" else y


def reference_rsb(block: ResidualStepsBlock, x: np.ndarray) -> np.ndarray:
    """The RSN code's forward, written out step by step (originals §3.2)."""

    def f(branch, step, value):
        return np_conv_bn(block.steps[branch - 1][step - 1], value)

    s1, s2, s3, s4 = np.split(np_conv_bn(block.expand, x), 4, axis=-1)
    y11 = f(1, 1, s1)
    y21 = f(2, 1, s2 + y11)
    y22 = f(2, 2, y21)
    y31 = f(3, 1, s3 + y21)
    y32 = f(3, 2, y31 + y22)
    y33 = f(3, 3, y32)
    y41 = f(4, 1, s4 + y31)
    y42 = f(4, 2, y41 + y32)
    y43 = f(4, 3, y42 + y33)
    y44 = f(4, 4, y43)
    out = np_conv_bn(block.project, np.concatenate([y11, y22, y33, y44], axis=-1))
    shortcut = x if block.shortcut is None else np_conv_bn(block.shortcut, x)
    return np.maximum(out + shortcut, 0)


def built_block(filters, in_channels, strides=1, spatial=(6, 5), seed=0):
    block = ResidualStepsBlock(filters, strides=strides)
    block.build((None, *spatial, in_channels))
    randomize(block, seed)
    return block


# --- ResidualStepsBlock ---------------------------------------------------------------------


@pytest.mark.parametrize("filters, strides", [(8, 1), (12, 2)])
def test_rsb_lattice_matches_step_by_step_reference(filters, strides):
    x = RNG.normal(size=(2, 6, 5, 8)).astype("float32")
    block = built_block(filters, 8, strides)
    assert (block.shortcut is None) == (filters == 8 and strides == 1)
    got = np.asarray(block(x, training=False))
    expected = reference_rsb(block, x.astype("float64"))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_rsb_reference_detects_a_miswired_lattice():
    """The reference is sensitive to the wiring: swapping two same-shaped steps changes it."""
    x = RNG.normal(size=(1, 6, 5, 8))
    block = built_block(8, 8)
    expected = reference_rsb(block, x)
    block.steps[3][1], block.steps[3][2] = block.steps[3][2], block.steps[3][1]
    assert not np.allclose(reference_rsb(block, x), expected, atol=1e-3)


def test_rsb_step_kernels_start_different():
    block = built_block(16, 16)
    kernels = [np.asarray(step.conv.kernel) for branch in block.steps for step in branch]
    assert len(kernels) == 10
    for i in range(len(kernels)):
        for j in range(i + 1, len(kernels)):
            assert not np.allclose(kernels[i], kernels[j])


def test_rsb_branch_width_comes_from_input_width():
    # RSN-18 layer by layer: (input width, planes) of each block -> 26, 26 | 26, 52 | 52, 104 | ...
    blocks = [(64, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512)]
    blocks.append((512, 512))
    widths = [built_block(planes, width, spatial=(4, 4)).branch_filters for width, planes in blocks]
    assert widths == [26, 26, 26, 52, 52, 104, 104, 208]
    assert branch_width(2048) == 832
    block = built_block(128, 64, strides=2, spatial=(4, 4))
    assert block.expand.filters == 4 * 26 and block.project.filters == 128


def test_rsb_stride_is_on_the_first_1x1():
    """A stride-2 block equals the stride-1 block with the same weights on x[:, ::2, ::2]."""
    x = RNG.normal(size=(1, 8, 8, 8)).astype("float32")
    strided = built_block(16, 8, strides=2, spatial=(8, 8))
    plain = built_block(16, 8, strides=1, spatial=(4, 4), seed=1)
    plain.set_weights(strided.get_weights())
    assert strided.expand.conv.strides == (2, 2) and strided.expand.kernel_size == 1
    assert all(step.strides == 1 for branch in strided.steps for step in branch)
    np.testing.assert_allclose(
        np.asarray(strided(x, training=False)),
        np.asarray(plain(x[:, ::2, ::2], training=False)),
        rtol=1e-5,
        atol=1e-5,
    )
    assert strided.compute_output_shape((1, 8, 8, 8)) == (1, 4, 4, 16)


def test_rsb_rejects_too_narrow_input():
    with pytest.raises(ValueError, match="bc=0"):
        ResidualStepsBlock(8).build((None, 4, 4, 2))


# --- PoseRefineMachine ----------------------------------------------------------------------


def built_prm(shape=(2, 8, 6, 5), seed=0):
    prm = PoseRefineMachine()
    prm.build((None, *shape[1:]))
    randomize(prm, seed)
    return prm


def test_prm_is_o_times_one_plus_a_times_b():
    x = RNG.normal(size=(2, 8, 6, 5)).astype("float32") * 3
    prm = built_prm()
    o, a, b = (np.asarray(t) for t in prm.attention(x, training=False))
    y = np.asarray(prm(x, training=False))
    assert a.shape == (2, 1, 1, 5) and b.shape == o.shape == y.shape == x.shape
    np.testing.assert_allclose(y, o * (1 + a * b), rtol=1e-5, atol=1e-5)
    # sigmoid after ReLU: both attentions in [0.5, 1)
    for att in (a, b):
        assert att.min() >= 0.5 and att.max() < 1.0
    # each path recomputed from the weights
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    o_ref = np_conv_bn(prm.refine, x.astype("float64"))
    pooled = o_ref.mean(axis=(1, 2), keepdims=True)
    a_ref = sigmoid(np_conv_bn(prm.channel_conv2, np_conv_bn(prm.channel_conv1, pooled)))
    b_ref = sigmoid(np_conv_bn(prm.spatial_conv2, np_conv_bn(prm.spatial_conv1, o_ref)))
    np.testing.assert_allclose(o, o_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a, a_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b, b_ref, rtol=1e-4, atol=1e-4)


def test_prm_layers_and_parameter_count():
    k = 17
    prm = PoseRefineMachine()
    prm.build((None, 64, 48, k))
    assert prm.refine.kernel_size == 3
    assert prm.spatial_conv2.depthwise and prm.spatial_conv2.kernel_size == 9
    assert isinstance(prm.global_pool, keras.layers.AveragePooling2D)
    assert tuple(prm.global_pool.pool_size) == (64, 48)
    # PyTorch: 3x3 KxK, three 1x1 KxK, depthwise 9x9 (groups=K), all with bias; five BNs
    expected = (9 * k * k + k) + 3 * (k * k + k) + (81 * k + k) + 5 * 2 * k
    assert sum(int(np.prod(w.shape)) for w in prm.trainable_weights) == expected


def test_prm_needs_static_spatial_size():
    with pytest.raises(ValueError, match="static"):
        PoseRefineMachine().build((None, None, None, 17))


def test_prm_exports_global_average_as_average_pool_2d():
    tf = pytest.importorskip("tensorflow")
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter")
    inputs = keras.Input((16, 12, 5))
    model = keras.Model(inputs, PoseRefineMachine()(inputs))
    function = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((1, 16, 12, 5), tf.float32)],
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], model
    )
    interpreter = interpreter_module.Interpreter(model_content=converter.convert())
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "AVERAGE_POOL_2D" in ops and "MEAN" not in ops, ops


# --- serialization --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer",
    [
        ResidualStepsBlock(
            32, strides=2, bn_epsilon=1e-3, bn_momentum=0.99, kernel_regularizer="l2", name="rsb"
        ),
        PoseRefineMachine(use_bias=False, bn_epsilon=1e-3, name="prm"),
    ],
)
def test_get_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


def test_keras_file_round_trip(tmp_path):
    inputs = keras.Input((8, 8, 8))
    x = ResidualStepsBlock(16, strides=2, name="rsb")(inputs)
    outputs = PoseRefineMachine(name="prm")(x)
    model = keras.Model(inputs, outputs)
    randomize(model)
    x = RNG.normal(size=(2, 8, 8, 8)).astype("float32")
    before = model.predict(x, verbose=0)
    path = os.path.join(tmp_path, "tiny.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("rsb"), ResidualStepsBlock)
    assert isinstance(loaded.get_layer("prm"), PoseRefineMachine)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), before)
