"""LiteRT export: signature runner, GPU-delegate op list, fp32/fp16 parity per family, int8."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
from export_checks import FAMILIES, TinyPose, family_model, random_crops, tiny_model

from keras_pose.codecs import codec_from_spec
from keras_pose.export import (
    ExportCompatibilityError,
    ExportParityError,
    LiteRTConverter,
    LiteRTRunner,
    litert,
    tflite_ops_used,
)
from keras_pose.export.parity import keypoint_agreement

# The TFLite GPU delegate's supported ops ("Supported ops", TFLite GPU delegate documentation:
# tensorflow/lite/g3doc/performance/gpu.md, now ai.google.dev/edge/litert/performance/gpu),
# "in 16-bit and 32-bit float precision"; "By default, all ops are only supported at version 1"
# except DEPTHWISE_CONV_2D v1-2 and RESIZE_BILINEAR v1-3. Quantized models: "Enabling the
# quantization support allows the appropriate versions", the delegate dequantizes 8-bit models
# (QUANTIZE/DEQUANTIZE), and it consumes float16 weights directly (DEQUANTIZE of constants).
GPU_DELEGATE_OPS = {
    "ADD": 1, "AVERAGE_POOL_2D": 1, "CONCATENATION": 1, "CONV_2D": 1, "DEPTHWISE_CONV_2D": 2,
    "EXP": 1, "FULLY_CONNECTED": 1, "LOGICAL_AND": 1, "LOGISTIC": 1, "MAX_POOL_2D": 1,
    "MAXIMUM": 1, "MINIMUM": 1, "MUL": 1, "PAD": 1, "PRELU": 1, "RELU": 1, "RELU6": 1,
    "RESHAPE": 1, "RESIZE_BILINEAR": 3, "SOFTMAX": 1, "STRIDED_SLICE": 1, "SUB": 1,
    "TRANSPOSE_CONV": 1,
}  # fmt: skip
QUANTIZATION_OPS = {None: set(), "float16": {"DEQUANTIZE"}, "int8": {"QUANTIZE", "DEQUANTIZE"}}


def interpreter_ops(path) -> set[str]:
    """Op names as the LiteRT interpreter instantiates them (a second reading of the file)."""
    from ai_edge_litert.interpreter import Interpreter

    return {op["op_name"] for op in Interpreter(model_path=os.fspath(path))._get_ops_details()}


def assert_gpu_delegate_ops(path, quantize=None) -> None:
    """Every op of the file is a builtin on the GPU delegate's list (no Flex/custom op)."""
    ops = tflite_ops_used(open(path, "rb").read())
    names = {op.name for op in ops}
    assert names == interpreter_ops(path), "flatbuffer and interpreter disagree on the ops"
    allowed = set(GPU_DELEGATE_OPS) | QUANTIZATION_OPS[quantize]
    assert names <= allowed, f"not GPU-delegate ops: {sorted(names - allowed)}"
    if quantize != "int8":
        too_new = [(o.name, o.version) for o in ops if o.version > GPU_DELEGATE_OPS.get(o.name, 99)]
        assert not too_new, f"op versions above the documented float ones: {too_new}"


def decode(model, heatmaps):
    spec = model.spec
    return codec_from_spec(spec.final.codec, spec.input_size, spec.final.stride).decode(heatmaps)


# ------------------------------------------------------------------------------------------
# The machinery, on a tiny model


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


@pytest.mark.parametrize("quantize", [None, "float16", "int8"])
def test_tiny_litert_signature_and_parity(tiny, tmp_path, quantize):
    crops = random_crops(tiny, batch=8)
    path = litert(tiny, tmp_path / "tiny.tflite", quantize=quantize, representative_data=crops)
    assert_gpu_delegate_ops(path, quantize)

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    signatures = interpreter.get_signature_list()
    assert signatures == {"serving_default": {"inputs": ["image"], "outputs": ["heatmaps"]}}
    runner = interpreter.get_signature_runner("serving_default")
    assert list(runner.get_input_details()["image"]["shape"]) == [1, 64, 48, 3]
    got = np.concatenate([runner(image=c[None])["heatmaps"] for c in crops[:3]])
    expected = np.asarray(tiny(crops[:3], training=False)["heatmaps"])
    error = np.abs(got - expected).max() / 255.0
    relative = np.abs(got - expected).max() / np.abs(expected).max()
    if quantize is None:
        assert error < 1e-4
    elif quantize == "float16":
        assert relative < 1e-2
        assert os.path.getsize(path) < 0.7 * os.path.getsize(litert(tiny, tmp_path / "f32.tflite"))
    else:
        assert relative < 0.15
        assert got.dtype == np.float32


@pytest.mark.parametrize("codec", ["megvii", "msra"])
def test_on_device_decode(tmp_path, codec):
    model = tiny_model(codec=codec)
    crops = random_crops(model, batch=3, seed=4)
    with LiteRTConverter(model, decode=True) as converter:
        fp32 = converter.write(tmp_path / "decode.tflite")
        fp16 = converter.write(tmp_path / "decode16.tflite", "float16")
        with pytest.raises(ValueError, match="float model"):
            converter.write(tmp_path / "decode8.tflite", "int8", crops)
    assert_gpu_delegate_ops(fp32)
    assert_gpu_delegate_ops(fp16, "float16")
    for path in (fp32, fp16):
        out = LiteRTRunner(path)(crops)
        assert sorted(out) == ["heatmaps", "keypoints", "scores"]
        keypoints, scores = decode(model, out["heatmaps"])
        np.testing.assert_allclose(out["keypoints"], keypoints, atol=1e-3)
        np.testing.assert_allclose(out["scores"], scores, atol=1e-3)


def test_a_dark_decode_is_refused_by_the_gpu_check_with_what_to_do(tmp_path):
    model = tiny_model(codec="megvii")
    model.decode_refine = "dark"
    crops = random_crops(model, batch=3, seed=5)
    with LiteRTConverter(model, decode=True) as converter:
        with pytest.raises(ExportCompatibilityError, match="LOG.*decode_refine = 'quarter'"):
            converter.write(tmp_path / "dark.tflite")
        path = converter.write(tmp_path / "dark.tflite", require_gpu_compatible=False)
    out = LiteRTRunner(path)(crops)
    keypoints, scores = decode(model, out["heatmaps"])  # the model's own (DARK) decode
    np.testing.assert_allclose(out["keypoints"], keypoints, atol=1e-3)
    np.testing.assert_allclose(out["scores"], scores, atol=1e-3)


def test_all_outputs_and_representative_iterables(tiny, tmp_path):
    crops = random_crops(tiny, batch=4)
    batches = [(crops[:2], {"ignored": 0}), ({"image": crops[2:]}, None)]
    path = litert(tiny, tmp_path / "all.tflite", "int8", batches, outputs="all")
    assert LiteRTRunner(path).output_names == ["aux", "heatmaps"]


def test_int8_needs_representative_data_of_the_right_shape(tiny, tmp_path):
    with pytest.raises(ValueError, match="representative_data"):
        litert(tiny, tmp_path / "a.tflite", quantize="int8")
    with pytest.raises(ValueError, match=r"\(N, 64, 48, 3\).*\(2, 32, 32, 3\)"):
        litert(tiny, tmp_path / "a.tflite", "int8", np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="float16"):
        litert(tiny, tmp_path / "a.tflite", quantize="fp8")
    assert not os.listdir(tmp_path)


def test_graph_outside_the_gpu_list_is_refused_and_not_written(tmp_path):
    model = TinyPose(upsample="nearest")
    path = tmp_path / "nearest.tflite"
    with pytest.raises(ExportCompatibilityError, match="RESIZE_NEAREST_NEIGHBOR"):
        litert(model, path)
    assert not os.listdir(tmp_path)
    written = litert(model, path, require_gpu_compatible=False)
    assert "RESIZE_NEAREST_NEIGHBOR" in interpreter_ops(written)


def test_failed_parity_keeps_the_previous_file(tiny, tmp_path, monkeypatch):
    path = litert(tiny, tmp_path / "tiny.tflite")
    before = open(path, "rb").read()
    module = importlib.import_module("keras_pose.export.litert")

    real = module.keras_outputs
    monkeypatch.setattr(
        module, "keras_outputs", lambda *a: {k: v + 1.0 for k, v in real(*a).items()}
    )
    with pytest.raises(ExportParityError, match="heatmaps"):
        litert(tiny, path, quantize="float16")
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["tiny.tflite"]


# ------------------------------------------------------------------------------------------
# Every family, small variants


@pytest.fixture(scope="module")
def family_files(tmp_path_factory):
    """fp32, fp16 and int8 files per family, converted once (each export checks its parity with
    Keras too; int8 on its four calibration crops)."""
    cache = {}

    def get(family):
        if family not in cache:
            model = family_model(family)
            folder = tmp_path_factory.mktemp(family)
            calibration = random_crops(model, batch=4, seed=2)
            with LiteRTConverter(model) as converter:
                files = {
                    q: converter.write(
                        folder / f"{q}.tflite", q, calibration, require_gpu_compatible=False
                    )
                    for q in (None, "float16", "int8")
                }
            cache[family] = model, files
        return cache[family]

    return get


@pytest.mark.parametrize("family", FAMILIES)
def test_family_litert_parity(family_files, family):
    model, files = family_files(family)
    crops = random_crops(model, batch=2, seed=1)
    expected = np.asarray(model(crops, training=False)["heatmaps"])
    scale = max(model.spec.final.codec.peak, np.abs(expected).max())
    fp32 = LiteRTRunner(files[None])(crops)
    assert list(fp32) == ["heatmaps"]
    assert np.abs(fp32["heatmaps"] - expected).max() / scale < 1e-4
    fp16 = LiteRTRunner(files["float16"])(crops)["heatmaps"]
    assert np.abs(fp16 - expected).max() / np.abs(expected).max() < 1e-2


@pytest.mark.parametrize("family", FAMILIES)
def test_family_runs_whole_on_gpu_delegate(family_files, family):
    _, files = family_files(family)
    for quantize, path in files.items():
        assert_gpu_delegate_ops(path, quantize)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_int8_follows_keras(family_files, family):
    """Full int8 works for every family: integer weights, float heatmaps that follow Keras' on
    crops it was not calibrated on (keypoint accuracy: the trained model's test below)."""
    model, files = family_files(family)
    assert os.path.getsize(files["int8"]) < 0.4 * os.path.getsize(files[None])
    crops = random_crops(model, batch=2, seed=3)
    heatmaps = LiteRTRunner(files["int8"])(crops)["heatmaps"]
    expected = np.asarray(model(crops, training=False)["heatmaps"])
    assert heatmaps.dtype == np.float32 and heatmaps.shape == expected.shape
    assert np.corrcoef(heatmaps.ravel(), expected.ravel())[0, 1] > 0.99


# ------------------------------------------------------------------------------------------
# int8 on a briefly trained model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """TinyPose trained ~400 steps on synthetic people through the data pipeline."""
    import keras

    from keras_pose.data import build_dataset
    from keras_pose.data.synthetic import make_coco_layout

    keras.utils.set_random_seed(0)
    paths = make_coco_layout(
        tmp_path_factory.mktemp("coco"), num_train=192, num_val=16, seed=0, image_size=(160, 128)
    )
    model = TinyPose(input_shape=(128, 96, 3), num_keypoints=17, width=16, kernels=(15, 11))
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    train = build_dataset(
        model, paths["train2017"]["annotation_file"], paths["train2017"]["image_dir"],
        batch_size=16, seed=0, deterministic=True, augment=False, repeat=True,
    )  # fmt: skip
    model.fit(train, steps_per_epoch=400, epochs=1, verbose=0, shuffle=False)
    val = build_dataset(
        model, paths["val2017"]["annotation_file"], paths["val2017"]["image_dir"],
        batch_size=16, training=False,
    )  # fmt: skip
    return model, train, val


def test_int8_keypoints_match_fp32(trained, tmp_path):
    model, train, val = trained
    crops, visible = [], []
    for images, targets, _ in val:
        crops.append(images.numpy())
        visible.append(targets["heatmaps"].numpy().max(axis=(1, 2)) > 0)  # v = 2 joints
    crops, visible = np.concatenate(crops), np.concatenate(visible)
    assert visible.sum() > 200

    fp32_path = litert(model, tmp_path / "fp32.tflite")
    int8_path = litert(model, tmp_path / "int8.tflite", "int8", train.take(4), num_calibration=64)
    assert_gpu_delegate_ops(int8_path, "int8")
    assert os.path.getsize(int8_path) < 0.4 * os.path.getsize(fp32_path)

    fp32, _ = decode(model, LiteRTRunner(fp32_path)(crops)["heatmaps"])
    int8, _ = decode(model, LiteRTRunner(int8_path)(crops)["heatmaps"])
    stride = model.spec.final.stride
    assert keypoint_agreement(fp32, int8, stride, visible, max_cells=1.0) >= 0.95
    # The model learnt something, so agreement is not that of two flat maps.
    truth, _ = decode(model, np.concatenate([t["heatmaps"].numpy() for _, t, _ in val]))
    assert keypoint_agreement(truth, fp32, stride, visible, max_cells=2.0) > 0.2
