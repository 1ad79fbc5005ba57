"""Nothing lost, nothing silent in training: run folders are never clobbered, a NaN stops the
run before anything non-finite is written, and bad settings or inputs fail before the work."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_pose.training import checkpoints, run_folder, trainer
from keras_pose.training.config import TrainConfig


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from keras_pose.data.synthetic import make_coco_layout

    return make_coco_layout(tmp_path_factory.mktemp("coco"), 8, 2)["root"]


def tiny_config(data_dir, out, **overrides):
    settings = dict(model="tiny", input_size=(32, 24), model_kwargs={"width": 4},
                    data_dir=str(data_dir), out_dir=None if out is None else str(out),
                    augment=False, epochs=2,
                    steps_per_epoch=2, batch_size=2, learning_rate=1e-3, backup_every=1,
                    eval_every=0, tensorboard=False, export=False, draw=False, verbose=0)
    settings.update(overrides)
    return TrainConfig(**settings)


def digests(folder):
    """``{relative path: sha1}`` of every file under ``folder``."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = hashlib.sha1(f.read()).hexdigest()
    return found


# -- run folders ----------------------------------------------------------------------------


def test_a_new_run_into_a_run_folder_is_refused_and_nothing_changes(tmp_path, data_dir):
    out = tmp_path / "run"
    trainer.train(tiny_config(data_dir, out))
    before = digests(out)
    assert "model.keras" in before and "backup/state.json" in before
    assert "run.lock" not in before  # released at the end

    with pytest.raises(run_folder.RunFolderError, match="--resume.*--overwrite"):
        trainer.train(tiny_config(data_dir, out, epochs=3))
    assert digests(out) == before

    summary = trainer.train(tiny_config(data_dir, out, overwrite=True, epochs=1))
    assert summary["global_step"] == 2  # a new run, not the old one continued
    assert not os.path.exists(out / "checkpoints" / "epoch_002.keras")  # old run deleted


def test_default_run_folders_are_unique_with_a_latest_pointer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = run_folder.default_run_folder("tiny")
    os.makedirs(first)
    run_folder.point_latest(first)
    second = run_folder.default_run_folder("tiny")
    assert second != first and not os.path.exists(second)
    assert os.path.dirname(first) == os.path.dirname(second) == os.path.join("work_dirs", "tiny")
    assert run_folder.latest_run_folder("tiny") == os.path.realpath(first)
    os.makedirs(second)
    run_folder.point_latest(second)
    assert run_folder.latest_run_folder("tiny") == os.path.realpath(second)
    config = TrainConfig(model="tiny", resume=True).resolved()
    assert config.out_dir == os.path.realpath(second)  # --resume without --out: the latest
    assert TrainConfig(model="tiny").resolved().out_dir != first  # never an existing run


def test_resume_without_out_and_without_runs_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(run_folder.RunFolderError, match="pass the run folder with --out"):
        TrainConfig(model="tiny", resume=True).resolved()


def test_a_live_lock_refuses_a_second_run_and_a_stale_one_is_replaced(tmp_path, caplog):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = tmp_path / run_folder.LOCK_FILE
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename,
                                    "since": 0}))
        with pytest.raises(run_folder.RunFolderError, match=f"process {sleeper.pid}"):
            run_folder.claim_run_folder(str(tmp_path), resume=False, overwrite=False)
    finally:
        sleeper.kill()
        sleeper.wait()
    claimed = run_folder.claim_run_folder(str(tmp_path), resume=False, overwrite=False)
    assert "stale lock" in caplog.text
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    claimed.release()
    assert not lock.exists()


def test_unwritable_out_fails_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(run_folder.RunFolderError, match="cannot create the run folder"):
        run_folder.claim_run_folder(str(blocker / "run"), resume=False, overwrite=False)


# -- NaN / Inf -------------------------------------------------------------------------------


class PoisonAfter:
    """A callback that makes the weights NaN after step ``step`` (after that step's backup)."""

    def __new__(cls, step):
        import keras

        class Poison(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if int(self.model.optimizer.iterations.numpy()) == step:
                    for variable in self.model.trainable_variables:
                        variable.assign(np.full(variable.shape, np.nan, "float32"))

        return Poison()


def test_nan_loss_stops_at_once_and_resume_starts_from_the_last_finite_backup(
        tmp_path, data_dir, monkeypatch):
    out = tmp_path / "run"
    make_callbacks = trainer.make_callbacks

    def poisoned(run, progress):
        callbacks, evaluation = make_callbacks(run, progress)
        return callbacks + [PoisonAfter(3)], evaluation

    monkeypatch.setattr(trainer, "make_callbacks", poisoned)
    with pytest.raises(checkpoints.NonFiniteError,
                       match=r"loss = nan at global step 4 \(epoch 2, step 2\).*step-000000003"):
        trainer.train(tiny_config(data_dir, out))
    state = checkpoints.load_state(out)
    assert state.global_step == 3  # the last finite step; step 4 was never saved
    for name in os.listdir(out / "checkpoints"):
        assert name == "epoch_001.keras"  # the epoch-2 checkpoint was never written
    assert not (out / "model.keras").exists() and not (out / "run.lock").exists()
    monkeypatch.setattr(trainer, "make_callbacks", make_callbacks)
    summary = trainer.train(tiny_config(data_dir, out, resume=True))
    assert summary["global_step"] == 4


def test_non_finite_weights_are_never_written(tmp_path):
    from keras_pose.models import TinyPoseNet

    model = TinyPoseNet(input_shape=(16, 12, 3), num_keypoints=3, width=2)
    model.compile()
    state = checkpoints.TrainingState(global_step=1, epoch_steps=[2], global_batch=2)
    checkpoints.save_backup(model, tmp_path, state)
    before = digests(tmp_path)
    model.trainable_variables[0].assign(np.full(model.trainable_variables[0].shape, np.inf))
    state.global_step = 2
    with pytest.raises(checkpoints.NonFiniteError, match="NaN or infinite"):
        checkpoints.save_backup(model, tmp_path, state)
    with pytest.raises(checkpoints.NonFiniteError, match="best.keras"):
        checkpoints.save_model(model, tmp_path / "best.keras")
    assert digests(tmp_path) == before


# -- fail before the work --------------------------------------------------------------------


@pytest.mark.parametrize("field, flag, value", [
    ("epochs", "--epochs", 0), ("epochs", "--epochs", -1), ("batch_size", "--batch-size", 0),
    ("steps_per_epoch", "--steps-per-epoch", 0), ("eval_batch_size", "--eval-batch-size", 0),
    ("eval_max_images", "--eval-max-images", -1), ("learning_rate", "--lr", -1e-3),
    ("learning_rate", "--lr", float("nan")), ("backup_every", "--backup-every", -5),
])
def test_numbers_out_of_range_are_refused_naming_the_flag(tmp_path, field, flag, value):
    config = TrainConfig(model="tiny", out_dir=str(tmp_path / "run"), **{field: value})
    with pytest.raises(ValueError, match=f"{field} \\({flag}\\) must be"):
        config.resolved()
    assert not (tmp_path / "run").exists()


def test_bad_validation_inputs_fail_before_training(tmp_path, data_dir):
    missing_det = tiny_config(data_dir, tmp_path / "a", det_file=str(tmp_path / "none.json"))
    with pytest.raises(FileNotFoundError, match="none.json"):
        trainer.train(missing_det)
    bad = tmp_path / "det.json"
    bad.write_text("[{not json")
    with pytest.raises(ValueError, match=f"{bad}.*not valid json"):
        trainer.train(tiny_config(data_dir, tmp_path / "b", det_file=str(bad)))
    for run in ("a", "b"):
        assert not os.path.exists(tmp_path / run / "backup")  # no step was trained
        assert not os.path.exists(tmp_path / run / "run.lock")


def test_resume_with_another_model_names_the_problem(tmp_path, data_dir):
    out = tmp_path / "run"
    trainer.train(tiny_config(data_dir, out, epochs=1))
    with pytest.raises(ValueError, match="from another model.*tiny 32x24"):
        trainer.train(tiny_config(data_dir, out, resume=True, input_size=(40, 32), epochs=2))


def test_a_failing_evaluation_never_costs_the_epochs_backup(tmp_path, data_dir, monkeypatch):
    out = tmp_path / "run"

    def failing_evaluate(run):
        def evaluate(model):
            raise RuntimeError("the evaluation crashed")

        return evaluate

    monkeypatch.setattr(trainer, "make_evaluate", failing_evaluate)
    with pytest.raises(RuntimeError, match="evaluation crashed"):
        trainer.train(tiny_config(data_dir, out, backup_every=0, eval_every=1))
    state = checkpoints.load_state(out)
    assert state.global_step == 2  # the epoch-end backup came before the evaluation
    assert not (out / "run.lock").exists()


def test_resume_and_overwrite_together_are_refused(tmp_path):
    with pytest.raises(run_folder.RunFolderError, match="give one of them"):
        run_folder.claim_run_folder(str(tmp_path), resume=True, overwrite=True)


def test_a_run_without_out_gets_its_own_folder_and_the_latest_pointer(tmp_path, data_dir,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = trainer.train(tiny_config(data_dir, None, epochs=1))
    folder = os.path.dirname(summary["artifacts"]["model"])
    assert os.path.dirname(folder) == os.path.join("work_dirs", "tiny")
    assert os.path.realpath(tmp_path / "work_dirs" / "tiny" / "latest") == os.path.realpath(folder)
    again = trainer.train(tiny_config(data_dir, None, epochs=1))  # no clash, no refusal
    assert os.path.dirname(again["artifacts"]["model"]) != folder
