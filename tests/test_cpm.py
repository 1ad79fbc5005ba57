"""CPM: the original's size, Caffe ceil-mode pooling, the built-in centre map, spec, training."""

import math

import keras
import numpy as np
import pytest
from model_checks import check_outputs, trainable_params

from keras_pose.models.cpm import CPM, CPMModel, caffe_max_pool, center_map


def caffe_pool_size(size: int, kernel: int, stride: int) -> int:
    """Caffe's pooled size, ceil mode, no padding."""
    return math.ceil((size - kernel) / stride) + 1


def caffe_pool_reference(x: np.ndarray, kernel: int, stride: int, reduce) -> np.ndarray:
    """Caffe pooling of an (H, W, C) map: windows clipped at the border, ceil mode, no padding."""
    h, w = x.shape[:2]
    out_h, out_w = caffe_pool_size(h, kernel, stride), caffe_pool_size(w, kernel, stride)
    out = np.zeros((out_h, out_w, x.shape[2]))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            window = x[i * stride : i * stride + kernel, j * stride : j * stride + kernel]
            out[i, j] = reduce(window.reshape(-1, x.shape[2]), axis=0)
    return out


def test_parameter_count_matches_the_original_mpii_model():
    # docs/provenance.md#cpm: 31.2M parameters for the 6-stage model with 15 output channels
    model = CPMModel(num_keypoints=15, input_shape=(368, 368, 3))
    assert trainable_params(model) == pytest.approx(31.2e6, rel=0.005)
    assert len(model.non_trainable_weights) == 0  # no BatchNorm anywhere
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


def test_outputs_are_stride_8_stages_then_heatmaps():
    model = CPMModel(num_stages=3, input_shape=(64, 48, 3))
    check_outputs(model, {"stage1": (8, 6), "stage2": (8, 6), "heatmaps": (8, 6)})
    # stages 3+ share the stage-2 image branch: only one such branch exists
    names = [layer.name for layer in model.layers]
    assert "pool3_stage2" in names and "pool3_stage3" not in names
    assert "conv4_stage3" in names
    assert model.get_layer("concat_stage3").output.shape[-1] == 32 + 17 + 1


def test_ceil_mode_pools_on_a_size_that_is_no_multiple_of_8():
    model = CPMModel(num_stages=2, input_shape=(100, 76, 3))
    h, w = 100, 76
    for index in (1, 2, 3):
        h, w = caffe_pool_size(h, 3, 2), caffe_pool_size(w, 3, 2)
        assert tuple(model.get_layer(f"pool{index}_stage1").output.shape[1:3]) == (h, w)
    assert (h, w) == (12, 9) == model.spec.heatmap_size()
    assert tuple(model.get_layer("heatmaps").output.shape[1:3]) == (12, 9)


@pytest.mark.parametrize("shape", [(7, 10, 2), (8, 9, 2)])
def test_caffe_max_pool_matches_caffe_semantics(shape):
    x = np.random.default_rng(1).uniform(0, 1, (1, *shape)).astype("float32")
    inputs = keras.Input(shape)
    pool = keras.Model(inputs, caffe_max_pool(inputs, "pool"))
    expected = caffe_pool_reference(x[0], 3, 2, np.max)
    np.testing.assert_allclose(pool.predict(x, verbose=0)[0], expected, rtol=0, atol=0)


@pytest.mark.parametrize("size", [(368, 368), (100, 76)])
def test_center_map_is_a_caffe_average_pooled_gaussian(size):
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    gaussian = np.exp(-((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / (2 * 21.0**2))
    pooled = caffe_pool_reference(gaussian[..., None], 9, 8, np.mean)[..., 0]
    # the features are floor(H/8) cells; Caffe's pooled map has at least that many windows
    np.testing.assert_allclose(center_map(size), pooled[: h // 8, : w // 8], atol=1e-6)
    if size == (368, 368):
        assert pooled.shape == (46, 46)


def test_in_graph_center_map_peaks_at_the_crop_centre():
    model = CPMModel(num_stages=2, input_shape=(64, 48, 3))
    probe = keras.Model(model.inputs, model.get_layer("pool_center_lower").output)
    crops = np.random.default_rng(0).uniform(0, 255, (2, 64, 48, 3)).astype("float32")
    maps = probe.predict(crops, verbose=0)[..., 0]
    assert maps.shape == (2, 8, 6)
    np.testing.assert_array_equal(maps[0], maps[1])  # a constant: the crop does not matter
    centre = maps[0]
    peak_row, peak_col = np.unravel_index(np.argmax(centre), centre.shape)
    assert peak_row in (3, 4) and peak_col in (2, 3)
    # centre of mass, in input pixels (Caffe's window i is centred on pixel 8i + 4)
    rows, cols = np.mgrid[0:8, 0:6] * 8 + 4
    com = (np.sum(centre * rows) / centre.sum(), np.sum(centre * cols) / centre.sum())
    np.testing.assert_allclose(com, ((64 - 1) / 2, (48 - 1) / 2), atol=1.0)
    assert centre.max() > 0.95 and centre.min() < centre.max() / 2


def test_spec_and_preprocessing():
    model = CPMModel(num_stages=2, input_shape=(64, 48, 3))
    spec = model.spec
    assert spec.family == "cpm" and spec.channel_order == "BGR" and not spec.flip_test
    assert spec.output_names == ["stage1", "heatmaps"]
    for output in spec.outputs:
        assert output.stride == 8 and output.loss == "mse" and output.loss_weight == 1.0
        assert output.codec.type == "msra" and output.codec.peak == 1.0
        assert not output.codec.flip_shift
        assert output.codec.sigma == pytest.approx(7 / 8)
        assert output.target_min_visibility == 1 and output.weight_min_visibility == 1
    normalize = keras.Model(model.inputs, model.get_layer("normalize").output)
    crop = np.full((1, 64, 48, 3), 0.0, "float32")
    crop[..., 0], crop[..., 2] = 128.0, 255.0
    out = normalize.predict(crop, verbose=0)[0, 0, 0]
    np.testing.assert_allclose(out, [0.0, -0.5, 127.0 / 256.0], atol=1e-6)


def test_builder_compiles_trains_one_step_and_loads_weights(tmp_path):
    model = CPM(num_stages=2, input_shape=(64, 48, 3), num_keypoints=4)
    assert isinstance(model, CPMModel)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(5e-4)
    model.compile(run_eagerly=True)  # the family defaults again; eager skips a slow trace
    rng = np.random.default_rng(0)
    crops = rng.uniform(0, 255, (2, 64, 48, 3)).astype("float32")
    names = model.output_names
    targets = {name: rng.uniform(0, 1, (2, 8, 6, 4)).astype("float32") for name in names}
    weights = {name: np.ones((2, 4), "float32") for name in names}
    history = model.fit(crops, targets, sample_weight=weights, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and history.history["loss"][0] > 0
    path = str(tmp_path / "cpm.weights.h5")
    model.save_weights(path)
    loaded = CPM(num_stages=2, input_shape=(64, 48, 3), num_keypoints=4, weights=path,
                 compile=False)
    assert not loaded.compiled
    np.testing.assert_array_equal(
        loaded.predict(crops, verbose=0)["heatmaps"], model.predict(crops, verbose=0)["heatmaps"]
    )
