"""The recipes fail before the work: numbers out of range name their flag, missing inputs and
unwritable outputs are refused before a model is loaded or an image predicted; an unreadable
image is an error naming it; --score-threshold filters empty boxes on every family's scale."""

import importlib.util
import os

import cv2
import numpy as np
import pytest

RECIPES = os.path.join(os.path.dirname(__file__), os.pardir, "recipes")


def load_recipe(name):
    spec = importlib.util.spec_from_file_location(f"{name}_recipe",
                                                  os.path.join(RECIPES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("recipe, argv, message", [
    ("train_coco", ["--epochs", "0"], "argument --epochs: must be an integer >= 1, got 0"),
    ("train_coco", ["--epochs", "-1"], "argument --epochs: must be an integer >= 1, got -1"),
    ("train_coco", ["--batch-size", "0"], "argument --batch-size: must be an integer >= 1"),
    ("train_coco", ["--lr", "-0.01"], "argument --lr: must be a finite number > 0"),
    ("train_coco", ["--eval-batch-size", "0"], "argument --eval-batch-size: must be an integer"),
    ("eval_coco", ["--max-images", "-1"], "argument --max-images: must be an integer >= 1"),
    ("eval_coco", ["--batch-size", "0"], "argument --batch-size: must be an integer >= 1"),
    ("export", ["--version", "0"], "argument --version: must be an integer >= 1"),
    ("predict", ["x.jpg", "--model", "tiny", "--score-threshold", "1.5"],
     "argument --score-threshold: must be a number in \\[0, 1\\]"),
])
def test_numbers_out_of_range_name_the_flag(capsys, recipe, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        load_recipe(recipe).main(argv)
    assert exit_info.value.code == 2
    assert __import__("re").search(message, capsys.readouterr().err)


@pytest.fixture()
def tiny_keras(tmp_path):
    from keras_pose.models import TinyPoseNet

    path = tmp_path / "tiny.keras"
    TinyPoseNet(input_shape=(32, 24, 3), num_keypoints=17, width=4).save(path)
    return path


def test_eval_output_is_checked_before_the_model_is_loaded(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    recipe = load_recipe("eval_coco")
    with pytest.raises(SystemExit, match="--out .*not writable"):
        recipe.main(["--model", "tiny", "--out", str(blocker / "results.json")])
    with pytest.raises(SystemExit, match="--keras .*missing.keras: no such file"):
        recipe.main(["--keras", str(tmp_path / "missing.keras")])


def test_export_checks_inputs_and_output_first(tmp_path, tiny_keras):
    recipe = load_recipe("export")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit, match="--out .*not writable"):
        recipe.main(["--keras", str(tiny_keras), "--out", str(blocker / "savedmodels")])
    with pytest.raises(SystemExit, match="--weights .*none.weights.h5: no such file"):
        recipe.main(["--keras", str(tiny_keras), "--weights", str(tmp_path / "none.weights.h5")])


def test_truncated_keras_file_is_named_not_reported_missing(tmp_path, tiny_keras):
    from keras_pose.models import load_model

    data = tiny_keras.read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.keras: not a complete .keras file"):
        load_model(str(truncated))


def test_predict_names_an_unreadable_image(tmp_path, tiny_keras):
    image = tmp_path / "empty.jpg"
    image.write_bytes(b"")
    with pytest.raises(SystemExit, match="empty image file.*empty.jpg"):
        load_recipe("predict").main([str(image), "--keras", str(tiny_keras),
                                     "--out", str(tmp_path / "out.png")])
    assert not (tmp_path / "out.png").exists()


def test_score_threshold_filters_an_empty_box_of_a_megvii_model(tmp_path, tiny_keras, capsys):
    """A blank crop scores above 0.5 on CPN/MSPN/RSN's original scale (peak / 255 + 0.5): the
    threshold compares the 0..1 confidence, so nothing is drawn on it."""
    from keras_pose.inference import Predictor
    from keras_pose.models import load_model

    model = load_model(str(tiny_keras))
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])  # sees no one anywhere
    empty = tmp_path / "empty.keras"
    model.save(empty)
    blank = np.zeros((64, 48, 3), np.uint8)
    path = tmp_path / "blank.png"
    cv2.imwrite(str(path), blank)
    predictor = Predictor(model)
    poses = predictor(blank, [[0, 0, 48, 64]])
    assert poses[..., 2].min() >= 0.5  # the original scale: above any usual threshold
    assert predictor.confidences(poses)[..., 2].max() < 0.3
    out = tmp_path / "out.png"
    assert load_recipe("predict").main([str(path), "--keras", str(empty), "--out", str(out)]) == 0
    assert np.array_equal(cv2.imread(str(out)), blank)  # no skeleton drawn
    assert "confidence=" in capsys.readouterr().out


def test_train_recipe_refuses_a_folder_holding_another_run(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "model.keras").write_bytes(b"the user's trained model")
    with pytest.raises(SystemExit, match="holds another run.*--resume.*--overwrite"):
        load_recipe("train_coco").main(["--model", "tiny", "--data-dir", str(tmp_path),
                                        "--out", str(out)])
    assert (out / "model.keras").read_bytes() == b"the user's trained model"
    assert sorted(os.listdir(out)) == ["checkpoints", "model.keras"]  # not even a lock left
