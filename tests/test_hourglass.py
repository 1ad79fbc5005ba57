"""Stacked Hourglass: the original's size, pre-activation residual, structure, spec, training."""

import keras
import numpy as np
import pytest
from model_checks import check_outputs, trainable_params

from keras_pose.backbones.hourglass import nearest_upsample_x2
from keras_pose.layers.residual import PreActResidual
from keras_pose.layers.upsample import NearestUpsample2x
from keras_pose.models.hourglass import StackedHourglass, StackedHourglassModel

SMALL = dict(num_stacks=2, num_features=16, input_shape=(64, 64, 3), num_keypoints=4)


@pytest.fixture(scope="module")
def small_model():
    """A 2-stack, 16-feature network on 64x64 crops, shared by the read-only tests."""
    return StackedHourglassModel(**SMALL)


def randomize(layer: keras.layers.Layer, seed: int = 0) -> None:
    """Random kernels, biases and BatchNorm statistics (positive variances)."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        if "variance" in weight.path:
            value = rng.uniform(0.5, 2.0, weight.shape)
        else:
            value = rng.normal(0.0, 0.5, weight.shape)
        weight.assign(value.astype("float32"))


def batch_norm(x, bn: keras.layers.BatchNormalization):
    gamma, beta = bn.gamma.numpy(), bn.beta.numpy()
    mean, variance = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    return gamma * (x - mean) / np.sqrt(variance + bn.epsilon) + beta


def conv_same(x, conv: keras.layers.Conv2D):
    """Stride-1 convolution with k//2 zero padding, (H, W, Cin) -> (H, W, Cout)."""
    kernel, bias = conv.kernel.numpy(), conv.bias.numpy()
    k = kernel.shape[0]
    h, w = x.shape[:2]
    padded = np.pad(x, ((k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    out = np.zeros((h, w, kernel.shape[-1])) + bias
    for di in range(k):
        for dj in range(k):
            out += padded[di : di + h, dj : dj + w] @ kernel[di, dj]
    return out


def relu(x):
    return np.maximum(x, 0.0)


@pytest.mark.parametrize("in_channels", [3, 4])
def test_pre_activation_residual_matches_a_numpy_recomputation(in_channels):
    layer = PreActResidual(4)
    x = np.random.default_rng(1).normal(0, 1, (1, 5, 6, in_channels)).astype("float32")
    layer(x)  # build
    randomize(layer)
    assert (layer.skip is None) == (in_channels == 4)
    assert layer.conv1.kernel.shape == (1, 1, in_channels, 2)
    assert layer.conv2.kernel.shape == (3, 3, 2, 2)
    assert layer.conv3.kernel.shape == (1, 1, 2, 4)
    y = conv_same(relu(batch_norm(x[0], layer.bn1)), layer.conv1)
    y = conv_same(relu(batch_norm(y, layer.bn2)), layer.conv2)
    y = conv_same(relu(batch_norm(y, layer.bn3)), layer.conv3)
    skip = x[0] if layer.skip is None else conv_same(x[0], layer.skip)
    np.testing.assert_allclose(layer(x, training=False)[0], y + skip, rtol=1e-4, atol=1e-4)


def test_pre_activation_residual_serializes():
    layer = PreActResidual(6, bn_epsilon=1e-3, name="res")
    clone = PreActResidual.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="even"):
        PreActResidual(5)


def test_parameter_count_matches_the_original_8_stack_network():
    # docs/provenance.md#hourglass: 25.4M parameters for 8 stacks, 256 features, 16 MPII joints
    model = StackedHourglassModel(num_stacks=8, num_keypoints=16)
    assert trainable_params(model) == pytest.approx(25.4e6, rel=0.005)


def test_structure_13_residuals_per_hourglass_and_nearest_upsampling(small_model):
    model = small_model
    residuals = [layer.name for layer in model.layers if isinstance(layer, PreActResidual)]
    assert sum(name.startswith("stack1_hourglass") for name in residuals) == 13
    assert sum(name.startswith("stem_") for name in residuals) == 3
    upsamples = [layer for layer in model.layers if isinstance(layer, NearestUpsample2x)]
    assert len(upsamples) == 2 * 4
    # the innermost level of a 64x64 crop works at 1x1 (stride 64)
    assert tuple(model.get_layer("stack1_hourglass_level1_pool").output.shape[1:3]) == (1, 1)
    two_modules = StackedHourglassModel(
        num_stacks=1, num_features=8, num_modules=2, input_shape=(64, 64, 3)
    )
    residuals = [layer.name for layer in two_modules.layers if isinstance(layer, PreActResidual)]
    assert sum(name.startswith("stack1_hourglass") for name in residuals) == 26
    assert sum(name.startswith("stack1_res") for name in residuals) == 2


def test_nearest_upsampling_repeats_each_cell():
    x = np.arange(2 * 3 * 4 * 2, dtype="float32").reshape(2, 3, 4, 2)
    inputs = keras.Input((3, 4, 2))
    upsample = keras.Model(inputs, nearest_upsample_x2(inputs, "up"))
    expected = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    np.testing.assert_array_equal(upsample.predict(x, verbose=0), expected)


def test_batch_norm_constants_are_torch7s(small_model):
    model = small_model
    norms = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    # stem conv + 3 per residual (3 stem + 2 x (13 + 1)) + one lin per stack
    assert len(norms) == 1 + 3 * (3 + 2 * 14) + 2
    assert all(bn.epsilon == 1e-5 and bn.momentum == 0.9 for bn in norms)


def test_outputs_spec_and_preprocessing(small_model):
    model = small_model
    check_outputs(model, {"stack1": (16, 16), "heatmaps": (16, 16)})
    spec = model.spec
    assert spec.family == "hourglass" and spec.channel_order == "RGB" and spec.flip_test
    for output in spec.outputs:
        assert output.stride == 4 and output.loss == "mse" and output.loss_weight == 1.0
        assert output.codec.type == "msra" and output.codec.sigma == pytest.approx(1.75)
        assert output.codec.peak == 1.0 and not output.codec.flip_shift
        assert output.target_min_visibility == 1 and output.weight_min_visibility == 1
    normalize = keras.Model(model.inputs, model.get_layer("normalize").output)
    crop = np.zeros((1, 64, 64, 3), "float32")
    crop[..., 1] = 255.0
    np.testing.assert_allclose(normalize.predict(crop, verbose=0)[0, 0, 0], [0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="multiples of 64"):
        StackedHourglassModel(num_stacks=1, input_shape=(256, 200, 3))


def test_builder_compiles_with_rmsprop_and_trains_one_step():
    model = StackedHourglass(**SMALL)
    assert isinstance(model, StackedHourglassModel)
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.RMSprop)
    assert float(optimizer.learning_rate) == pytest.approx(2.5e-4)
    assert optimizer.rho == pytest.approx(0.99) and optimizer.momentum == 0.0
    model.compile(run_eagerly=True)  # the family defaults again; eager skips a slow trace
    rng = np.random.default_rng(0)
    crops = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    names = model.output_names
    targets = {name: rng.uniform(0, 1, (2, 16, 16, 4)).astype("float32") for name in names}
    weights = {name: np.ones((2, 4), "float32") for name in names}
    kernel_before = model.get_layer("heatmaps").kernel.numpy()
    history = model.fit(crops, targets, sample_weight=weights, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and history.history["loss"][0] > 0
    assert not np.allclose(model.get_layer("heatmaps").kernel.numpy(), kernel_before)
