"""TF Serving SavedModel: two signatures, fresh-process loading, saved_model_cli, REST bodies."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from export_checks import FAMILIES, family_model, random_crops, tiny_model

from keras_pose.codecs import codec_from_spec, flip_heatmaps, flip_images
from keras_pose.data.transforms import (
    border_value_for,
    eval_crop,
    invert_matrix,
    transform_points,
    warp_image,
)
from keras_pose.export import (
    ExportParityError,
    models_config,
    rest_request,
    saved_model,
    signature_defs,
    tflite_ops_used,
)
from keras_pose.export.serving_config import config_names

FLIP_INDICES = [0, 2, 1, 4, 3]  # the tiny model's 5 keypoints: nose, two left/right pairs


def decode(model, heatmaps):
    spec = model.spec
    return codec_from_spec(spec.final.codec, spec.input_size, spec.final.stride).decode(heatmaps)


def reference_predict_image(model, image_rgb, boxes, flip):
    """What ``predict_image`` should return, with the numpy/OpenCV pipeline."""
    spec = model.spec
    image = image_rgb[..., ::-1] if spec.channel_order == "BGR" else image_rgb
    image = np.ascontiguousarray(image, dtype=np.float32)
    draws = [eval_crop(box, spec) for box in boxes]
    crops = np.stack(
        [warp_image(image, d.matrix, spec.input_size, border_value_for(spec)) for d in draws]
    ).astype(np.float32)
    heatmaps = np.asarray(model(crops, training=False)["heatmaps"])
    if flip:
        mirrored = np.asarray(model(flip_images(crops), training=False)["heatmaps"])
        shift = spec.final.codec.flip_shift
        heatmaps = 0.5 * (heatmaps + flip_heatmaps(mirrored, FLIP_INDICES, shift=shift))
    keypoints, scores = decode(model, heatmaps)
    keypoints = np.stack(
        [transform_points(k, invert_matrix(d.matrix)) for k, d in zip(keypoints, draws)]
    )
    return keypoints, scores


def sample_image_and_boxes():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    boxes = np.array([[10, 5, 40, 70], [70, 30, 45, 35], [-10, 60, 50, 50]], np.float32)
    return image, boxes


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny model exported with flip test, as version 1 of ``<base>/tiny``."""
    model = tiny_model()
    base = tmp_path_factory.mktemp("savedmodels") / "tiny"
    path = saved_model(model, base, version=1, flip_test=True, flip_indices=FLIP_INDICES)
    return model, base, path


def test_versioned_layout_and_signature_defs(exported):
    _, base, path = exported
    assert path == os.path.join(base, "1")
    assert sorted(os.listdir(base)) == ["1"]
    assert {"saved_model.pb", "variables"} <= set(os.listdir(path))
    assert signature_defs(path) == {
        "serving_default": {
            "inputs": {"image": ("float32", (-1, 64, 48, 3))},
            "outputs": {
                "heatmaps": ("float32", (-1, 16, 12, 5)),
                "keypoints": ("float32", (-1, 5, 2)),
                "scores": ("float32", (-1, 5)),
            },
        },
        "predict_image": {
            "inputs": {"image": ("uint8", (-1, -1, 3)), "boxes": ("float32", (-1, 4))},
            "outputs": {"keypoints": ("float32", (-1, 5, 2)), "scores": ("float32", (-1, 5))},
        },
    }


def test_fresh_process_and_saved_model_cli(exported, tmp_path):
    model, _, path = exported
    crops = random_crops(model, batch=3, seed=2)
    image, boxes = sample_image_and_boxes()
    for name, value in (("crops", crops), ("image", image), ("boxes", boxes)):
        np.save(tmp_path / f"{name}.npy", value)
    script = textwrap.dedent(
        f"""
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({path!r})
        assert sorted(loaded.signatures) == ["predict_image", "serving_default"]
        crops_in = np.load({str(tmp_path / "crops.npy")!r})
        crops = loaded.signatures["serving_default"](image=tf.constant(crops_in))
        image = loaded.signatures["predict_image"](
            image=tf.constant(np.load({str(tmp_path / "image.npy")!r})),
            boxes=tf.constant(np.load({str(tmp_path / "boxes.npy")!r})))
        np.savez({str(tmp_path / "crops_out.npz")!r}, **{{k: v.numpy() for k, v in crops.items()}})
        np.savez({str(tmp_path / "image_out.npz")!r}, **{{k: v.numpy() for k, v in image.items()}})
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]

    heatmaps = np.asarray(model(crops, training=False)["heatmaps"])
    keypoints, scores = decode(model, heatmaps)
    image_keypoints, image_scores = reference_predict_image(model, image, boxes, flip=True)
    crops_out, image_out = np.load(tmp_path / "crops_out.npz"), np.load(tmp_path / "image_out.npz")
    assert np.abs(crops_out["heatmaps"] - heatmaps).max() / 255 < 1e-4
    np.testing.assert_allclose(crops_out["keypoints"], keypoints, atol=1e-3)
    np.testing.assert_allclose(crops_out["scores"], scores, atol=1e-4)
    np.testing.assert_allclose(image_out["keypoints"], image_keypoints, atol=2e-3)
    np.testing.assert_allclose(image_out["scores"], image_scores, atol=1e-4)

    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    runs = {
        "serving_default": f"image={tmp_path / 'crops.npy'}",
        "predict_image": f"image={tmp_path / 'image.npy'};boxes={tmp_path / 'boxes.npy'}",
    }
    for signature, inputs in runs.items():
        outdir = tmp_path / signature
        command = [cli, "run", "--dir", path, "--tag_set", "serve",
                   "--signature_def", signature, "--inputs", inputs,
                   "--outdir", str(outdir)]  # fmt: skip
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(
        np.load(tmp_path / "serving_default" / "keypoints.npy"), keypoints, atol=1e-3
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "predict_image" / "keypoints.npy"), image_keypoints, atol=2e-3
    )


def test_rest_request_and_response_follow_the_signature_def(exported):
    """The REST bodies TF Serving's ``:predict`` takes and returns, through a local shim."""
    _, _, path = exported
    defs = signature_defs(path)
    loaded = tf.saved_model.load(path)
    image, boxes = sample_image_and_boxes()
    for signature, inputs in (
        ("serving_default", {"image": random_crops(exported[0], batch=2)}),
        ("predict_image", {"image": image, "boxes": boxes}),
    ):
        body = json.loads(rest_request(inputs, signature))
        assert body["signature_name"] == signature
        assert set(body["inputs"]) == set(defs[signature]["inputs"])
        tensors = {}
        for name, (dtype, shape) in defs[signature]["inputs"].items():
            value = np.asarray(body["inputs"][name])
            assert len(value.shape) == len(shape), name
            assert all(s in (-1, v) for s, v in zip(shape, value.shape)), name
            cast = value.astype(dtype)
            assert np.array_equal(cast, value), f"{name} does not fit {dtype}"
            tensors[name] = tf.constant(cast)
        outputs = loaded.signatures[signature](**tensors)
        body_out = {"outputs": {k: v.numpy().tolist() for k, v in outputs.items()}}
        response = json.loads(json.dumps(body_out))
        assert set(response["outputs"]) == set(defs[signature]["outputs"])
        for name, (_, shape) in defs[signature]["outputs"].items():
            got = np.asarray(response["outputs"][name]).shape
            assert all(s in (-1, v) for s, v in zip(shape, got)) and len(got) == len(shape), name


def test_empty_requests(exported):
    loaded = tf.saved_model.load(exported[2])
    image = tf.zeros((40, 30, 3), tf.uint8)
    out = loaded.signatures["predict_image"](image=image, boxes=tf.zeros((0, 4)))
    assert out["keypoints"].shape == (0, 5, 2) and out["scores"].shape == (0, 5)
    out = loaded.signatures["serving_default"](image=tf.zeros((0, 64, 48, 3)))
    assert out["heatmaps"].shape == (0, 16, 12, 5) and out["keypoints"].shape == (0, 5, 2)


@pytest.mark.parametrize("codec", ["megvii", "msra"])
def test_predict_image_flip_codecs_and_channel_orders(tmp_path, codec):
    model = tiny_model(codec=codec)
    image, boxes = sample_image_and_boxes()
    for flip, order in ((False, "RGB"), (True, "BGR")):
        expected = reference_predict_image(model, image, boxes, flip=flip)
        pixels = np.ascontiguousarray(image[..., ::-1]) if order == "BGR" else image
        path = saved_model(
            model,
            tmp_path / f"{flip}{order}",
            flip_test=flip,
            flip_indices=FLIP_INDICES,
            image_channel_order=order,
        )
        loaded = tf.saved_model.load(path)
        out = loaded.signatures["predict_image"](
            image=tf.constant(pixels), boxes=tf.constant(boxes)
        )
        np.testing.assert_allclose(out["keypoints"].numpy(), expected[0], atol=2e-3)
        np.testing.assert_allclose(out["scores"].numpy(), expected[1], atol=1e-4)


def test_failed_check_keeps_the_previous_version(exported, monkeypatch):
    model, base, path = exported
    before = open(os.path.join(path, "saved_model.pb"), "rb").read()
    module = importlib.import_module("keras_pose.export.saved_model")

    real = module.keras_outputs
    monkeypatch.setattr(
        module, "keras_outputs", lambda *a: {k: v + 0.5 for k, v in real(*a).items()}
    )
    with pytest.raises(ExportParityError, match="heatmaps"):
        saved_model(model, base, version=1, flip_test=True, flip_indices=FLIP_INDICES)
    assert sorted(os.listdir(base)) == ["1"]
    assert open(os.path.join(path, "saved_model.pb"), "rb").read() == before


def test_flip_needs_flip_indices_beyond_coco():
    with pytest.raises(ValueError, match="flip_indices"):
        saved_model(tiny_model(), "unused", flip_test=True)
    with pytest.warns(DeprecationWarning, match="flip_test"), \
            pytest.raises(ValueError, match="flip_indices"):
        saved_model(tiny_model(), "unused", flip=True)  # the former name still works


@pytest.mark.parametrize("family", FAMILIES)
def test_family_saved_model(tmp_path, family):
    """Each family exports (the export itself loads it back and checks parity: see above)."""
    model = family_model(family)
    path = saved_model(model, tmp_path / family, version=1)
    h, w = model.spec.input_size
    hh, hw = model.spec.heatmap_size()
    k = model.spec.num_keypoints
    defs = signature_defs(path)
    assert defs["serving_default"]["inputs"] == {"image": ("float32", (-1, h, w, 3))}
    assert defs["serving_default"]["outputs"]["heatmaps"] == ("float32", (-1, hh, hw, k))
    assert defs["predict_image"]["outputs"]["keypoints"] == ("float32", (-1, k, 2))


def load_recipe():
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes", "export.py")
    spec = importlib.util.spec_from_file_location("export_recipe", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    return recipe


def test_recipe_writes_every_format_from_a_keras_file(tmp_path):
    model = tiny_model()
    keras_file = tmp_path / "tiny.keras"
    model.save(keras_file)
    out = tmp_path / "savedmodels"
    out.mkdir()
    (out / "models.config").write_text(models_config(["rsn18"]))
    argv = ["--format", "all", "--keras", str(keras_file), "--out", str(out), "--name", "tiny",
            "--version", "2", "--quantize", "float16", "--no-flip"]  # fmt: skip
    assert load_recipe().main(argv) == 0
    assert sorted(os.listdir(out / "tiny")) == ["2", "tiny-float16.tflite", "tiny.onnx"]
    assert sorted(signature_defs(out / "tiny" / "2")) == ["predict_image", "serving_default"]
    assert config_names((out / "models.config").read_text()) == ["rsn18", "tiny"]


def test_committed_models_config_is_what_the_writer_produces():
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "savedmodels", "models.config")
    text = open(path).read()
    assert text == models_config(config_names(text))
    assert 'base_path: "/models/rsn18"' in text


def test_recipe_int8_with_synthetic_calibration_and_built_models(tmp_path):
    recipe = load_recipe()
    model = tiny_model(num_keypoints=17)  # the synthetic calibration people have 17
    keras_file = tmp_path / "tiny.keras"
    model.save(keras_file)
    argv = ["--format", "litert", "--keras", str(keras_file), "--out", str(tmp_path / "out"),
            "--name", "tiny", "--quantize", "int8", "--num-calibration", "8"]  # fmt: skip
    assert recipe.main(argv) == 0
    content = (tmp_path / "out" / "tiny" / "tiny-int8.tflite").read_bytes()
    ops = {op.name for op in tflite_ops_used(content)}
    assert {"QUANTIZE", "DEQUANTIZE", "CONV_2D"} <= ops

    parser = recipe.build_parser()
    built = recipe.load_model(parser.parse_args(["--model", "rsn18", "--input-size", "128", "96"]))
    assert built.spec.input_size == (128, 96) and built.spec.family == "rsn"
    with pytest.raises(ValueError, match="unknown model"):
        recipe.load_model(parser.parse_args(["--model", "resnet"]))


def test_tensorflows_rename_notice_is_one_short_line():
    import logging

    from keras_pose.export._archive import ShortRenameNotice

    names = ", ".join(f"input_{i}" for i in range(600))
    renamed = ", ".join(f"cond_1_input_{i}" for i in range(600))
    record = logging.LogRecord(
        "tensorflow", logging.WARNING, __file__, 1,
        "Function `%s` contains input name(s) %s with unsupported characters which will be "
        "renamed to %s in the SavedModel.", ("predict_crops", names, renamed), None)
    assert ShortRenameNotice().filter(record)
    message = record.getMessage()
    assert len(message) < 150 and "predict_crops" in message and "600 input names" in message
    other = logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, "other %s", ("x",),
                              None)
    assert ShortRenameNotice().filter(other) and other.getMessage() == "other x"


def test_an_export_logs_the_rename_notice_as_one_short_line(tmp_path, caplog):
    """The notice above, from a real export (absl's logger in TensorFlow 2.21): one short line
    per function, not the list of every weight's input."""
    import logging

    with caplog.at_level(logging.INFO, logger="absl"):  # (other tests quiet absl's logger)
        saved_model(tiny_model(), tmp_path / "tiny", flip_test=True, flip_indices=FLIP_INDICES)
    notices = [r.getMessage() for r in caplog.records if "renamed" in r.getMessage()]
    assert notices and all(len(n) < 150 and "input names renamed" in n for n in notices)
