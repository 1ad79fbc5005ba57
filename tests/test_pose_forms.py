"""Every form of one tiny model (PoseModel, .keras, SavedModel, LiteRT fp32/int8, ONNX) loads from
its file alone (the exports carry the spec) and gives the Predictor the same keypoints."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from keras_pose.codecs import codec_from_spec
from keras_pose.data.dataset_info import COCO17
from keras_pose.export import litert, onnx, saved_model
from keras_pose.export.metadata import MissingMetadataError, read_metadata
from keras_pose.inference import Predictor
from keras_pose.inference.pose_models import load_pose
from keras_pose.models.cpm import CPMModel
from keras_pose.models.tiny import TinyPoseModel


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(7)
    model = TinyPoseModel("rsn", (64, 48, 3), 17, width=8)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # BatchNorm statistics away from identity
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.5, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    return model


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    image = np.ascontiguousarray(np.repeat(np.repeat(image[::4, ::4], 4, 0), 4, 1)[:120, :160])
    boxes = np.array([[10, 8, 40, 70], [70, 20, 50, 90], [120, 5, 35, 60]], np.float64)
    return image, boxes


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("forms")
    crops = np.random.default_rng(2).uniform(0, 255, (16, 64, 48, 3)).astype(np.float32)
    paths = {
        "keras": str(root / "tiny.keras"),
        "saved_model": saved_model(tiny, root / "tiny_savedmodel"),
        "tflite": litert(tiny, root / "tiny.tflite"),
        "tflite_int8": litert(tiny, root / "tiny-int8.tflite", "int8", crops),
        "onnx": onnx(tiny, root / "tiny.onnx", outputs="final"),
    }
    tiny.save(paths["keras"])
    return paths


def predict(pose, scene):
    image, boxes = scene
    return Predictor(pose, flip_test=True)(image, boxes)


def test_every_form_gives_the_same_keypoints(tiny, exported, scene):
    expected = predict(tiny, scene)
    for form in ("keras", "saved_model", "tflite", "onnx"):
        pose = load_pose(exported[form])
        assert pose.spec == tiny.spec, form
        assert pose.dataset_info == COCO17, form
        got = predict(pose, scene)
        np.testing.assert_allclose(got[..., :2], expected[..., :2], atol=1e-2, err_msg=form)
        np.testing.assert_allclose(got[..., 2], expected[..., 2], atol=1e-3, err_msg=form)
    int8 = predict(load_pose(exported["tflite_int8"]), scene)
    distance = np.linalg.norm(int8[..., :2] - expected[..., :2], axis=-1)
    stride = tiny.spec.final.stride
    assert np.median(distance) <= stride, np.median(distance)  # int8: within a heatmap cell


def test_exports_carry_the_spec_and_keypoint_set(tiny, exported):
    for form in ("saved_model", "tflite", "tflite_int8", "onnx"):
        metadata = read_metadata(exported[form])
        assert metadata.spec == tiny.spec and metadata.dataset_info == COCO17, form


def test_missing_metadata_and_unknown_forms_are_named(tmp_path, exported):
    import onnx as onnx_lib

    graph = onnx_lib.load(exported["onnx"])
    del graph.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx_lib.save(graph, bare)
    with pytest.raises(MissingMetadataError, match="bare.onnx"):
        load_pose(bare)
    with pytest.raises(FileNotFoundError, match="nothing.tflite"):
        load_pose(tmp_path / "nothing.tflite")
    (tmp_path / "weights.h5").write_bytes(b"x")
    with pytest.raises(ValueError, match="weights.h5"):
        load_pose(tmp_path / "weights.h5")
    with pytest.raises(ValueError, match="saved_model.pb"):
        load_pose(tmp_path)


def test_saved_model_decodes_an_mmpose_variant_like_mmpose(tmp_path):
    """The SavedModel's in-graph decodes follow the spec's MMPose convention."""
    import tensorflow as tf

    keras.utils.set_random_seed(3)
    model = CPMModel(num_stages=1, input_shape=(64, 48, 3), variant="mmpose")
    path = saved_model(model, tmp_path / "cpm", flip_test=False)
    spec = read_metadata(path).spec
    assert spec.final.codec.convention == "mmpose" and spec.box_extension == (1.25, 1.25)
    loaded = tf.saved_model.load(path)
    image = np.random.default_rng(4).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    served = loaded.signatures["serving_default"](image=tf.constant(image[None], tf.float32))
    heatmaps = served["heatmaps"].numpy()
    codec = codec_from_spec(spec.final.codec, spec.input_size, spec.final.stride)
    keypoints, scores = codec.decode(heatmaps)
    np.testing.assert_allclose(served["keypoints"].numpy(), keypoints, atol=1e-3)
    np.testing.assert_allclose(served["scores"].numpy(), scores, atol=1e-5)
    plain = dataclasses.replace(spec.final.codec, convention="original")
    original, _ = codec_from_spec(plain, spec.input_size, spec.final.stride).decode(heatmaps)
    assert np.abs(keypoints - original).max() > 1.0
    # predict_image: the box extended 1.25x is the whole image (an identity crop)
    box = np.array([[4.8, 6.4, 38.4, 51.2]], np.float32)
    whole = loaded.signatures["predict_image"](image=tf.constant(image), boxes=tf.constant(box))
    close = np.abs(whole["keypoints"].numpy() - keypoints) <= 0.25 * spec.final.stride + 1e-3
    assert close.mean() >= 0.9  # a quarter step may flip where an untrained map's neighbours tie


def mmpose_convention(model):
    """A TinyPoseModel read with MMPose's Megvii convention (what an MMPose MSPN/RSN spec says)."""
    outputs = tuple(dataclasses.replace(o, codec=dataclasses.replace(o.codec, convention="mmpose"))
                    for o in model.spec.outputs)
    model._pose_spec = dataclasses.replace(model.spec, outputs=outputs)
    return model


@pytest.mark.parametrize("codec", ["msra", "megvii"])
def test_litert_on_device_decode_of_mmpose_variants(tmp_path, codec):
    """``decode=True`` with MMPose's convention equals the codec (MSRA: GPU-delegate ops only;
    Megvii: plus one DIV per map)."""
    from keras_pose.export import LiteRTRunner, gpu_delegate_problems

    keras.utils.set_random_seed(5)
    if codec == "msra":
        model = CPMModel(num_stages=1, input_shape=(64, 48, 3), variant="mmpose")
    else:
        model = mmpose_convention(TinyPoseModel("rsn", (64, 48, 3), 17, width=8))
    path = litert(model, tmp_path / "decode.tflite", decode=True, require_gpu_compatible=False)
    with open(path, "rb") as f:
        problems = gpu_delegate_problems(f.read(), None)
    assert problems == [] if codec == "msra" else (len(problems) == 1 and "DIV" in problems[0])
    crops = np.random.default_rng(6).uniform(0, 255, (2, *model.spec.input_size, 3))
    out = LiteRTRunner(path)(crops.astype(np.float32))
    decoder = codec_from_spec(
        model.spec.final.codec, model.spec.input_size, model.spec.final.stride
    )
    keypoints, _ = decoder.decode(out["heatmaps"])
    np.testing.assert_allclose(out["keypoints"], keypoints, atol=1e-3)
