"""keras_pose.utils.atomic: every file or folder written for a user appears whole or not at all."""

import json
import os

import pytest

from keras_pose.utils import atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    atomic.write_json({"step": 1}, path)
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write('{"step": 2')  # interrupted half-way
            raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"step": 1}
    assert os.listdir(tmp_path) == ["state.json"]


def test_temporary_keeps_the_full_extension_and_does_not_exist_yet(tmp_path):
    with atomic.atomic_path(tmp_path / "w.weights.h5") as tmp:
        assert tmp.endswith(".weights.h5") and os.path.dirname(tmp) == str(tmp_path)
        assert not os.path.exists(tmp)  # Keras refuses to overwrite some files
        open(tmp, "wb").close()
    assert os.listdir(tmp_path) == ["w.weights.h5"]


def test_a_writer_that_writes_nothing_is_an_error_not_an_empty_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic.atomic_path(tmp_path / "model.keras"):
            pass
    assert os.listdir(tmp_path) == []


def test_folder_replaced_whole_or_kept(tmp_path):
    target = tmp_path / "saved_model"
    with atomic.atomic_path(target, directory=True) as tmp:
        os.makedirs(os.path.join(tmp, "variables"))
        with open(os.path.join(tmp, "variables", "v.data"), "w") as f:
            f.write("old")
    with pytest.raises(ValueError):
        with atomic.atomic_path(target, directory=True) as tmp:
            with open(os.path.join(tmp, "partial"), "w") as f:
                f.write("new")
            raise ValueError("parity check failed")
    assert sorted(os.listdir(target)) == ["variables"]
    assert (target / "variables" / "v.data").read_text() == "old"
    with atomic.atomic_path(target, directory=True) as tmp:
        with open(os.path.join(tmp, "saved_model.pb"), "w") as f:
            f.write("new")
    assert os.listdir(target) == ["saved_model.pb"]
    assert os.listdir(tmp_path) == ["saved_model"]  # no temporary or old copy left


def test_save_atomic_and_write_text(tmp_path):
    path = atomic.save_atomic(lambda p: open(p, "w").write("x"), tmp_path / "a" / "m.keras")
    assert open(path).read() == "x"
    atomic.write_text("hello\n", tmp_path / "models.config")
    assert (tmp_path / "models.config").read_text() == "hello\n"
