"""Atomic files and the resumable training state.

Every file a run writes appears complete or not at all (:mod:`keras_pose.utils.atomic`).

The backup that ``--resume`` continues from lives in ``<out>/backup/``: weights with the
optimizer's variables (``step-<global step>.weights.h5``) and ``state.json`` naming them with
the run's counters. ``state.json`` is written after the weights, so whichever instant the
process dies at, it names a complete pair; older weights are deleted after it is replaced.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any

from keras_pose.utils import atomic
from keras_pose.utils.files import read_json

BACKUP_DIR = "backup"
STATE_FILE = "state.json"
STATE_VERSION = 2


class NonFiniteError(FloatingPointError):
    """A loss or weight became NaN or infinite: the run stops, and nothing of it is saved."""


def check_finite_weights(model: Any, destination: str | os.PathLike) -> None:
    """Raise :class:`NonFiniteError` (naming the variable) rather than write NaN or infinite
    weights to ``destination``."""
    import numpy as np

    for variable in model.weights:
        if not np.all(np.isfinite(np.asarray(variable))):
            raise NonFiniteError(f"not writing {os.fspath(destination)}: weight "
                                 f"{variable.path} holds NaN or infinite values")


def write_json(content: Any, path: str | os.PathLike) -> str:
    return atomic.write_json(content, path, indent=1, sort_keys=True)


def save_model(model: Any, path: str | os.PathLike) -> str:
    """``model.save(path)`` (a ``.keras`` file, with the compiled optimizer), atomically;
    refused if a weight is not finite."""
    check_finite_weights(model, path)
    return atomic.save_atomic(model.save, path)


class EpochLayout:
    """The sizes of a layout of ``epoch_steps`` (a run's state, a budgeted run's plan)."""

    epoch_steps: Any

    @property
    def epochs(self) -> int:
        return len(self.epoch_steps)

    @property
    def total_steps(self) -> int:
        return sum(self.epoch_steps)


@dataclasses.dataclass
class TrainingState(EpochLayout):
    """Counters of a run, saved with every backup.

    Args:
        global_step: training steps completed (batches consumed) since the start of the run.
        epoch_steps: each epoch's steps (a budgeted run re-plans the epochs it has not begun).
            Epoch ``e`` trains on the schedule of a run whose later epochs are as long as it
            (:meth:`schedule_steps_of`): what a re-planned run knew when it began that epoch.
        global_batch, seed: the run's batch and data order; a resume must use the same.
        best_ap, best_epoch: best validation AP so far and the (1-based) epoch that had it.
        history: one dict of logs per completed epoch (losses, learning rate, AP).
        weights_file: the weights + optimizer file of this state (in the backup folder).
        model: the model it trains (name, input size, keypoints); a resume must build the same.
    """

    global_step: int = 0
    epoch_steps: list[int] = dataclasses.field(default_factory=list)
    global_batch: int = 0
    seed: int = 0
    best_ap: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    weights_file: str = ""
    model: str = ""
    version: int = STATE_VERSION

    def steps_before(self, epoch: int) -> int:
        """Steps of the epochs before epoch ``epoch`` (0-based)."""
        return sum(self.epoch_steps[:epoch])

    def locate(self, global_step: int) -> tuple[int, int]:
        """``(epochs completed, steps into the next)`` after ``global_step`` steps."""
        for epoch, steps in enumerate(self.epoch_steps):
            if global_step < steps:
                return epoch, global_step
            global_step -= steps
        return self.epochs, global_step

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return self.locate(self.global_step)[0]

    @property
    def step_in_epoch(self) -> int:
        return self.locate(self.global_step)[1]

    def steps_in_epoch(self, epoch: int) -> int:
        """Steps of epoch ``epoch`` (0-based)."""
        return self.epoch_steps[epoch]

    def last_of_equal_epochs(self, epoch: int) -> int:
        """The last epoch of the stretch of epochs as long as ``epoch`` that begins with it
        (they train on one schedule, in one ``fit`` call)."""
        last = epoch
        while last + 1 < self.epochs and self.epoch_steps[last + 1] == self.epoch_steps[epoch]:
            last += 1
        return last

    def schedule_steps_of(self, epoch: int) -> int:
        """The length of the learning-rate schedule epoch ``epoch`` trains on: the steps
        before it and its own length for each epoch left."""
        return self.steps_before(epoch) + self.epoch_steps[epoch] * (self.epochs - epoch)

    def schedules_left(self) -> set[int]:
        """The schedule lengths of the epochs not completed."""
        return {self.schedule_steps_of(e) for e in range(self.epoch, self.epochs)}

    @property
    def schedule_steps(self) -> int:
        """The length of the learning-rate schedule the next step trains on."""
        return self.schedule_steps_of(min(self.epoch, self.epochs - 1))

    def check_compatible(self, epoch_steps: list[int], global_batch: int, seed: int) -> None:
        """Raise unless a resumed run has the layout of the saved one up to the end of the
        epoch it resumes in (otherwise its data stream and schedule would not continue where
        they stopped); later epochs may change."""
        kept = min(self.epoch, self.epochs - 1) + 1
        saved = (self.epoch_steps[:kept], self.global_batch, self.seed)
        asked = (list(epoch_steps[:kept]), global_batch, seed)
        if saved != asked:
            raise ValueError(
                "cannot resume: the backup was made with epoch steps (up to the epoch it "
                f"stopped in), global batch, seed = {saved}, this run asks for {asked}; resume "
                "with the same settings"
            )

    def check_model(self, identity: str, out_dir: str | os.PathLike) -> None:
        """Record the run's model, or raise if a resumed backup is of another model."""
        if self.model and self.model != identity:
            raise ValueError(
                f"cannot resume: the backup in {backup_dir(out_dir)} is from another model "
                f"({self.model}); this run builds {identity}. Resume with the same model "
                "settings, or start a new run with another --out")
        self.model = identity


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
    check_finite_weights(model, path)
    atomic.save_atomic(model.save_weights, path)
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
    saved = read_json(path, "training state")
    if isinstance(saved, dict) and saved.get("version") == 1:
        saved = upgrade_version_1(saved)
    if not isinstance(saved, dict) or saved.get("version") != STATE_VERSION:
        version = saved.get("version") if isinstance(saved, dict) else None
        raise ValueError(f"{path}: state version {version}, expected {STATE_VERSION}")
    fields = {f.name for f in dataclasses.fields(TrainingState)}
    unknown = sorted(set(saved) - fields)
    if unknown:
        raise ValueError(f"{path}: unknown training state fields {unknown}")
    state = TrainingState(**saved)
    weights = os.path.join(backup_dir(out_dir), state.weights_file)
    if not os.path.exists(weights):
        raise FileNotFoundError(f"{path} names {state.weights_file}, which is missing")
    return state


def upgrade_version_1(saved: dict[str, Any]) -> dict[str, Any]:
    """A version 1 state (one first epoch, then ``epochs - 1`` of ``steps_per_epoch``) in
    today's fields; its schedules were those :meth:`TrainingState.schedule_steps_of` gives."""
    saved = dict(saved)
    per_epoch, epochs = saved.pop("steps_per_epoch", 0), saved.pop("epochs", 0)
    first = saved.pop("first_epoch_steps", 0) or per_epoch
    saved["epoch_steps"] = [first] + [per_epoch] * (epochs - 1) if epochs else []
    saved["version"] = STATE_VERSION
    return saved


def restore_backup(model: Any, out_dir: str | os.PathLike, state: TrainingState) -> None:
    """Load the weights and optimizer variables of ``state`` into the compiled ``model``."""
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    path = os.path.join(backup_dir(out_dir), state.weights_file)
    try:
        model.load_weights(path)
    except ValueError as error:
        raise ValueError(f"cannot resume from {path}: its weights do not fit this model (is the "
                         f"backup from another model or model settings?): {error}") from None


def prune(pattern: str, keep: int) -> None:
    """Delete all but the ``keep`` newest (by name) files matching ``pattern`` (0: keep all)."""
    if keep <= 0:
        return
    for old in sorted(glob.glob(pattern))[:-keep]:
        os.remove(old)
