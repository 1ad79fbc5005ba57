"""Nothing is lost on interruption: atomic files, and a training process killed with SIGKILL
mid-epoch resumes exactly where its last backup stopped."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from keras_pose.training import checkpoints

RECIPE = os.path.join(os.path.dirname(__file__), os.pardir, "recipes", "train_coco.py")
TIMEOUT = 300


def test_backup_is_a_consistent_pair(tmp_path):
    from keras_pose.models import TinyPoseModel

    model = TinyPoseModel(input_shape=(16, 12, 3), num_keypoints=3, width=2)
    model.compile()
    model.optimizer.build(model.trainable_variables)
    state = checkpoints.TrainingState(global_step=5, epoch_steps=[4, 4, 4], global_batch=2)
    checkpoints.save_backup(model, tmp_path, state)
    state.global_step = 7
    checkpoints.save_backup(model, tmp_path, state)
    backup = tmp_path / checkpoints.BACKUP_DIR
    assert sorted(os.listdir(backup)) == ["state.json", "step-000000007.weights.h5"]
    loaded = checkpoints.load_state(tmp_path)
    assert (loaded.global_step, loaded.epoch, loaded.step_in_epoch) == (7, 1, 3)
    with pytest.raises(ValueError, match="same settings"):
        loaded.check_compatible([4, 4, 4], global_batch=4, seed=0)


def test_a_version_1_backup_resumes_with_its_layout(tmp_path):
    """A backup written before the per-epoch layout (one first epoch and ``epochs - 1`` of
    ``steps_per_epoch``) loads as the same epochs and schedules."""
    state = checkpoints.TrainingState(global_step=5, epoch_steps=[2, 3, 3], global_batch=2)
    (tmp_path / checkpoints.BACKUP_DIR).mkdir()
    (tmp_path / checkpoints.BACKUP_DIR / "step-000000005.weights.h5").write_bytes(b"")
    old = {"global_step": 5, "steps_per_epoch": 3, "epochs": 3, "first_epoch_steps": 2,
           "global_batch": 2, "seed": 0, "best_ap": None, "best_epoch": None, "history": [],
           "weights_file": "step-000000005.weights.h5", "model": "", "version": 1}
    checkpoints.write_json(old, tmp_path / checkpoints.BACKUP_DIR / checkpoints.STATE_FILE)
    loaded = checkpoints.load_state(tmp_path)
    assert loaded == dataclasses.replace(state, weights_file=old["weights_file"])
    assert [loaded.schedule_steps_of(e) for e in range(3)] == [6, 8, 8]


def recipe_command(out, data_dir, *extra):
    return [
        sys.executable, RECIPE, "--model", "tiny", "--input-size", "32", "24",
        "--model-arg", "width=8", "--data-dir", str(data_dir), "--out", str(out),
        "--epochs", "3", "--steps-per-epoch", "6", "--batch-size", "4", "--lr", "3e-3",
        "--backup-every", "1", "--eval-every", "0", "--no-export", "--no-draw",
        "--deterministic", "--verbose", "2", *extra,
    ]


def environment():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def start(command):
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=environment())


def wait(process):
    """The output of a process that must succeed within the time limit (killed otherwise)."""
    try:
        output = process.communicate(timeout=TIMEOUT)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output[-5000:]
    return output


def run_and_kill(command, out, kill_from_step):
    """Start a run and SIGKILL it as soon as its backup has passed ``kill_from_step``."""
    state_file = os.path.join(out, checkpoints.BACKUP_DIR, checkpoints.STATE_FILE)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=environment())
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            if os.path.exists(state_file):
                with open(state_file) as f:
                    saved = json.load(f)["global_step"]
                if saved >= kill_from_step:
                    process.send_signal(signal.SIGKILL)
                    process.wait(timeout=30)
                    return saved
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        raise AssertionError(f"no backup past step {kill_from_step} within {TIMEOUT} s")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def backup_arrays(out):
    state = checkpoints.load_state(out)
    arrays = {}
    with h5py.File(os.path.join(out, checkpoints.BACKUP_DIR, state.weights_file)) as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return state, arrays


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from keras_pose.data.synthetic import make_coco_layout

    return make_coco_layout(tmp_path_factory.mktemp("coco"), 12, 2)["root"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path, data_dir):
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    uninterrupted = start(recipe_command(reference, data_dir))  # runs alongside
    try:
        killed_at = run_and_kill(recipe_command(interrupted, data_dir), str(interrupted), 7)
    finally:
        wait(uninterrupted)
    assert killed_at < 18, "the run finished before the kill"
    partial = checkpoints.load_state(interrupted)
    assert partial.global_step == killed_at and partial.global_step % 6, "not mid-epoch"
    assert [h["epoch"] for h in partial.history] == list(range(1, partial.epoch + 1))

    log = wait(start(recipe_command(interrupted, data_dir, "--resume")))
    assert f"resuming at global step {killed_at}" in log
    assert f"Epoch {partial.epoch + 1}/3" in log and "Epoch 1/3" not in log

    expected_state, expected = backup_arrays(reference)
    resumed_state, resumed = backup_arrays(interrupted)
    assert resumed_state.global_step == expected_state.global_step == 18
    assert [h["epoch"] for h in resumed_state.history] == [1, 2, 3]
    assert [h["global_step"] for h in resumed_state.history] == [6, 12, 18]
    assert sorted(resumed) == sorted(expected)
    assert any("optimizer" in name for name in expected)  # optimizer state is in the backup
    assert int(expected["optimizer/vars/0"]) == int(resumed["optimizer/vars/0"]) == 18  # iterations
    # Same batches in the same order with the same optimizer state: identical weights. A
    # repeated or skipped batch, a reset optimizer or a restarted schedule would differ.
    for name in expected:
        np.testing.assert_array_equal(resumed[name], expected[name], err_msg=name)
    assert resumed_state.history[-1]["loss"] == expected_state.history[-1]["loss"]
