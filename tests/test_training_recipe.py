"""recipes/train_coco.py end to end with a tiny configuration: train -> evaluate -> export ->
draw, and the files, logs and summary line it promises."""

import glob
import importlib.util
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

RECIPE = os.path.join(os.path.dirname(__file__), os.pardir, "recipes", "train_coco.py")


def load_recipe():
    spec = importlib.util.spec_from_file_location("train_coco", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_recipe().main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--model", "--data-dir", "--det-file", "--epochs", "--batch-size", "--lr",
                 "--schedule", "--input-size", "--mixed-precision", "--jit-compile", "--out",
                 "--resume", "--strategy", "--time-budget", "--precision"):
        assert flag in text


def test_flags_become_the_run_configuration():
    recipe = load_recipe()
    config = recipe.config_from_args(recipe.parse_args([
        "--model", "rsn50", "--model-arg", "num_stages=2", "--model-arg", "use_prm=true",
        "--input-size", "384", "288", "--batch-size", "64", "--lr", "1e-3",
        "--schedule", "constant", "--no-jit-compile", "--mixed-precision", "--resume",
        "--time-budget", "1h30m", "--precision", "bf16",
    ]))
    assert config.model == "rsn50" and config.model_kwargs == {"num_stages": 2, "use_prm": True}
    assert config.time_budget == 5400 and config.precision == "bf16"
    assert config.input_size == (384, 288) and config.batch_size == 64
    assert config.learning_rate == 1e-3 and config.schedule == "constant"
    assert config.jit_compile is False and config.mixed_precision and config.resume
    defaults = recipe.config_from_args(recipe.parse_args([]))
    assert defaults.jit_compile is None and defaults.precision == "auto"  # auto
    assert defaults.time_budget is None  # (the main job's 15 minutes come from TrainConfig)


@pytest.mark.parametrize("flags", [["--time-budget", "soon"], ["--time-budget", "0m"],
                                   ["--precision", "fp16"]])
def test_bad_budget_or_precision_is_refused_naming_the_flag(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_recipe().parse_args(flags)
    assert exit_info.value.code == 2 and flags[0] in capsys.readouterr().err


def test_without_data_dir_the_main_job_defaults_apply():
    from keras_pose.training import TrainConfig
    from keras_pose.training.config import (
        MAIN_JOB_CPU,
        MAIN_JOB_DECAY_FRACTION,
        MAIN_JOB_MODEL,
        SYNTHETIC_DEFAULTS,
    )

    main_job = TrainConfig().resolved()
    assert main_job.synthetic and main_job.model == SYNTHETIC_DEFAULTS["model"]
    assert main_job.input_size == MAIN_JOB_CPU["input_size"]
    assert main_job.epochs is None and main_job.time_budget == 900  # planned at the start
    assert (main_job.batch_size, main_job.learning_rate) == (24, 1.2e-2)
    assert main_job.decay_fraction == MAIN_JOB_DECAY_FRACTION < 1
    assert TrainConfig(decay_fraction=1.0).resolved().decay_fraction == 1.0
    assert TrainConfig(schedule="multistep").resolved().decay_fraction is None
    assert TrainConfig(batch_size=8).resolved().batch_size == 8  # the user's flag wins
    other = TrainConfig(model="hourglass").resolved()
    assert other.epochs == SYNTHETIC_DEFAULTS["epochs"] and other.input_size is None
    assert other.batch_size == SYNTHETIC_DEFAULTS["batch_size"] != MAIN_JOB_MODEL["batch_size"]
    assert other.learning_rate is None and other.decay_fraction is None  # the family's own
    coco = TrainConfig(data_dir="/data/coco", model="cpn50").resolved()
    assert coco.epochs is None and coco.input_size is None  # the family's own defaults
    with pytest.raises(ValueError, match="give a model"):
        TrainConfig(data_dir="/data/coco").resolved()


def event_scalars(folder):
    """``{tag: {step: value}}`` of the TensorBoard event files in ``folder``."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    scalars = {}
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = float(
                    tf.make_ndarray(value.tensor))
    return scalars


@pytest.mark.slow
def test_tiny_run_trains_evaluates_exports_and_draws(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable, RECIPE, "--model", "tiny", "--input-size", "64", "48",
        "--out", str(out), "--synthetic-train", "10", "--synthetic-val", "3",
        "--epochs", "2", "--steps-per-epoch", "3", "--batch-size", "4", "--eval-every", "1",
        "--verbose", "2",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=420,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    final = [line for line in result.stdout.splitlines() if line.startswith("FINAL tiny")]
    assert len(final) == 1 and " AP " in final[0] and str(out / "model.keras") in final[0]

    summary = json.loads((out / "summary.json").read_text())
    assert f"AP {summary['metrics']['AP']:.4f}" in final[0]
    assert summary["global_step"] == 6 and [h["epoch"] for h in summary["history"]] == [1, 2]
    assert all("val_AP" in h and "loss" in h for h in summary["history"])
    assert os.path.isdir(out / "synthetic" / "train2017")  # rendered into the run folder

    import keras

    import keras_pose.training  # noqa: F401  (registers the model and schedule classes)

    model = keras.saving.load_model(out / "model.keras", compile=False)
    assert model.spec.input_size == (64, 48) and model.output_names[-1] == "heatmaps"
    assert (out / "best.keras").exists()
    assert sorted(os.listdir(out / "checkpoints")) == ["epoch_001.keras", "epoch_002.keras"]
    assert os.path.exists(out / "saved_model" / "saved_model.pb")

    picture = cv2.imread(str(out / "predictions.png"))
    assert picture is not None and picture.shape[0] >= 240 and picture.std() > 0
    curve = cv2.imread(str(out / "learning_curve.png"))
    assert curve is not None and curve.shape[0] >= 240 and curve.std() > 0
    assert summary["artifacts"]["learning_curve"] == str(out / "learning_curve.png")
    plan = [line for line in result.stdout.splitlines() if line.startswith("PLAN tiny 64x48")]
    assert len(plan) == 1 and "2 epochs x 3 steps of 4 = 6 steps" in plan[0]

    train = event_scalars(out / "logs" / "train")
    validation = event_scalars(out / "logs" / "validation")
    assert set(train["epoch_loss"]) == {0, 1}
    assert train["epoch_learning_rate"][1] < train["epoch_learning_rate"][0]  # linear decay
    assert set(validation["epoch_AP"]) == {0, 1}
    assert np.isclose(validation["epoch_AP"][1], summary["history"][1]["val_AP"])
