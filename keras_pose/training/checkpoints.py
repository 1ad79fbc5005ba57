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
STATE_VERSION = 1


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


@dataclasses.dataclass
class TrainingState:
    """Counters of a run, saved with every backup.

    Args:
        global_step: training steps completed (batches consumed) since the start of the run.
        steps_per_epoch, global_batch, seed: the run's layout; a resume must use the same.
        epochs: the run's planned number of epochs.
        first_epoch_steps: the first epoch's steps where they differ from the others' (0: the
            same). Such a first epoch trains on the schedule of ``epochs`` of its length, the
            rest on that of the whole run (a budgeted run re-planned after its first epoch).
        best_ap, best_epoch: best validation AP so far and the (1-based) epoch that had it.
        history: one dict of logs per completed epoch (losses, learning rate, AP).
        weights_file: the weights + optimizer file of this state (in the backup folder).
        model: the model it trains (name, input size, keypoints); a resume must build the same.
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
    model: str = ""
    first_epoch_steps: int = 0
    version: int = STATE_VERSION

    @property
    def first_epoch(self) -> int:
        """Steps of the first epoch."""
        return self.first_epoch_steps or self.steps_per_epoch

    @property
    def total_steps(self) -> int:
        return self.first_epoch + (self.epochs - 1) * self.steps_per_epoch

    def locate(self, global_step: int) -> tuple[int, int]:
        """``(epochs completed, steps into the next)`` after ``global_step`` steps."""
        if global_step < self.first_epoch:
            return 0, global_step
        epochs, step = divmod(global_step - self.first_epoch, self.steps_per_epoch)
        return epochs + 1, step

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return self.locate(self.global_step)[0]

    @property
    def step_in_epoch(self) -> int:
        return self.locate(self.global_step)[1]

    def steps_in_epoch(self, epoch: int) -> int:
        """Steps of epoch ``epoch`` (0-based)."""
        return self.first_epoch if epoch == 0 else self.steps_per_epoch

    @property
    def schedule_steps(self) -> int:
        """The length of the learning-rate schedule the next step trains on."""
        if self.global_step < self.first_epoch != self.steps_per_epoch:
            return self.epochs * self.first_epoch
        return self.total_steps

    def check_compatible(self, steps_per_epoch: int, global_batch: int, seed: int,
                         first_epoch_steps: int | None = None) -> None:
        """Raise unless a resumed run has the layout of the saved one (otherwise its data
        stream and schedule would not continue where they stopped)."""
        saved = (self.steps_per_epoch, self.first_epoch, self.global_batch, self.seed)
        asked = (steps_per_epoch, first_epoch_steps or steps_per_epoch, global_batch, seed)
        if saved != asked:
            raise ValueError(
                "cannot resume: the backup was made with steps_per_epoch, first_epoch_steps, "
                f"global batch, seed = {saved}, this run asks for {asked}; resume with the "
                "same settings"
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
