"""Atomic files and the resumable training state.

Every file a run writes appears complete or not at all: it is written to a temporary file in
the same folder (same suffix, as Keras requires) and moved into place with ``os.replace``.

The backup that ``--resume`` continues from lives in ``<out>/backup/``: weights with the
optimizer's variables (``step-<global step>.weights.h5``) and ``state.json`` naming them with
the run's counters. ``state.json`` is written after the weights, so whichever instant the
process dies at, it names a complete pair; older weights are deleted after it is replaced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import tempfile
from typing import Any, Iterator

BACKUP_DIR = "backup"
STATE_FILE = "state.json"
STATE_VERSION = 1


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, suffix: str | None = None) -> Iterator[str]:
    """Yield a temporary path beside ``path`` ending in ``suffix`` (default: ``path``'s full
    extension, e.g. ``.weights.h5``); when the body succeeds, flush it to disk and move it onto
    ``path``. On failure the temporary file is removed and ``path`` is untouched."""
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    if suffix is None:
        suffix = name[name.index("."):] if "." in name else ""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    os.remove(tmp)  # Keras refuses to overwrite some files; let the writer create it
    try:
        yield tmp
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(content: Any, path: str | os.PathLike) -> str:
    with atomic_file(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(content, f, indent=1, sort_keys=True)
    return os.fspath(path)


def save_model(model: Any, path: str | os.PathLike) -> str:
    """``model.save(path)`` (a ``.keras`` file, with the compiled optimizer), atomically."""
    with atomic_file(path) as tmp:
        model.save(tmp)
    return os.fspath(path)


@dataclasses.dataclass
class TrainingState:
    """Counters of a run, saved with every backup.

    Args:
        global_step: training steps completed (batches consumed) since the start of the run.
        steps_per_epoch, global_batch, seed: the run's layout; a resume must use the same.
        epochs: the run's planned number of epochs.
        best_ap, best_epoch: best validation AP so far and the (1-based) epoch that had it.
        history: one dict of logs per completed epoch (losses, learning rate, AP).
        weights_file: the weights + optimizer file of this state (in the backup folder).
    """

    global_step: int = 0
    steps_per_epoch: int = 0
    global_batch: int = 0
    seed: int = 0
    epochs: int = 0
    best_ap: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    weights_file: str = ""
    version: int = STATE_VERSION

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return self.global_step // self.steps_per_epoch

    @property
    def step_in_epoch(self) -> int:
        return self.global_step % self.steps_per_epoch

    def check_compatible(self, steps_per_epoch: int, global_batch: int, seed: int) -> None:
        """Raise unless a resumed run has the layout of the saved one (otherwise its data
        stream and schedule would not continue where they stopped)."""
        saved = (self.steps_per_epoch, self.global_batch, self.seed)
        asked = (steps_per_epoch, global_batch, seed)
        if saved != asked:
            raise ValueError(
                "cannot resume: the backup was made with steps_per_epoch, global batch, seed = "
                f"{saved}, this run asks for {asked}; resume with the same settings"
            )


def weights_name(global_step: int) -> str:
    return f"step-{global_step:09d}.weights.h5"


def backup_dir(out_dir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(out_dir), BACKUP_DIR)


def save_backup(model: Any, out_dir: str | os.PathLike, state: TrainingState) -> str:
    """Write the weights (with optimizer variables) of ``state.global_step``, then the state
    naming them, then delete older weights. Returns the weights path."""
    folder = backup_dir(out_dir)
    name = weights_name(state.global_step)
    path = os.path.join(folder, name)
    with atomic_file(path) as tmp:
        model.save_weights(tmp)
    state.weights_file = name
    write_state(out_dir, state)
    for old in glob.glob(os.path.join(folder, "step-*.weights.h5")):
        if os.path.basename(old) != name:
            os.remove(old)
    return path


def write_state(out_dir: str | os.PathLike, state: TrainingState) -> None:
    """Rewrite ``state.json`` alone (its weights file must exist already)."""
    write_json(dataclasses.asdict(state), os.path.join(backup_dir(out_dir), STATE_FILE))


def load_state(out_dir: str | os.PathLike) -> TrainingState | None:
    """The saved state of a run in ``out_dir``, or ``None`` if it has no backup."""
    path = os.path.join(backup_dir(out_dir), STATE_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        saved = json.load(f)
    if saved.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: state version {saved.get('version')}, expected {STATE_VERSION}")
    state = TrainingState(**saved)
    weights = os.path.join(backup_dir(out_dir), state.weights_file)
    if not os.path.exists(weights):
        raise FileNotFoundError(f"{path} names {state.weights_file}, which is missing")
    return state


def restore_backup(model: Any, out_dir: str | os.PathLike, state: TrainingState) -> None:
    """Load the weights and optimizer variables of ``state`` into the compiled ``model``."""
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    model.load_weights(os.path.join(backup_dir(out_dir), state.weights_file))


def prune(pattern: str, keep: int) -> None:
    """Delete all but the ``keep`` newest (by name) files matching ``pattern`` (0: keep all)."""
    if keep <= 0:
        return
    for old in sorted(glob.glob(pattern))[:-keep]:
        os.remove(old)
