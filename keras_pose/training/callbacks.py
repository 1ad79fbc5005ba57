"""Callbacks of a training run: step counting, backups, epoch checkpoints, COCO AP, logs.

They share one :class:`RunProgress`, which counts the steps of the run (not of one ``fit``
call: a resumed run calls ``fit`` once for the rest of the interrupted epoch and once for the
others) and holds the :class:`~keras_pose.training.checkpoints.TrainingState` that backups
save. Their order matters (:func:`keras_pose.training.trainer.make_callbacks`): the progress
first, the non-finite loss check before anything is saved, the replica synchronisation before
anything reads the weights, the backup before the evaluation (an evaluation that fails never
costs the epoch's backup), the evaluation before the history, the checkpoints and TensorBoard
(which all want its ``val_AP``), and last the backup's state refreshed with that history.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from typing import Any

import keras
import numpy as np

from keras_pose.training import checkpoints
from keras_pose.training.checkpoints import TrainingState
from keras_pose.training.distribute import local_model

logger = logging.getLogger(__name__)

BEST_MODEL = "best.keras"
CHECKPOINT_DIR = "checkpoints"
AP_LOGS = {"AP": "val_AP", "AP50": "val_AP50", "AP75": "val_AP75", "AR": "val_AR"}


class RunProgress(keras.callbacks.Callback):
    """Counts the run's global step into ``state`` (first in the list: the others read it)."""

    def __init__(self, state: TrainingState) -> None:
        super().__init__()
        self.state = state

    @property
    def global_step(self) -> int:
        return self.state.global_step

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.state.global_step += 1


class StepClock(keras.callbacks.Callback):
    """Notes when each step ends (a synchronous callback: Keras waits for the step)."""

    def __init__(self) -> None:
        super().__init__()
        self.ends: list[float] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.ends = [time.perf_counter()]

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.ends.append(time.perf_counter())

    def intervals(self) -> list[float]:
        """Seconds of each step: its input wait and the other callbacks' work included."""
        return [b - a for a, b in itertools.pairwise(self.ends)]

    def seconds_per_step(self, skip: int = 1) -> float:
        """The mean step, leaving out the first ``skip`` (the first one traces)."""
        steps = self.intervals()
        timed = steps[skip:] or steps
        return sum(timed) / len(timed)


class StopAtDeadline(keras.callbacks.Callback):
    """Ends a budgeted run's training at the first step after which one more step and
    ``reserve_seconds`` (what follows training: its last evaluation, save, export, pictures)
    would end after ``deadline`` (a ``time.perf_counter()`` value). The run's plan is sized to
    end before it; this catches a machine that slowed down after the plan was made."""

    def __init__(self, progress: RunProgress, deadline: float, step_seconds: float,
                 reserve_seconds: float) -> None:
        super().__init__()
        self.progress = progress
        self.deadline = deadline
        self.step_seconds = step_seconds
        self.reserve_seconds = reserve_seconds
        self.stopped_at: int | None = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        late = time.perf_counter() + self.step_seconds + self.reserve_seconds - self.deadline
        if late > 0:
            self.stopped_at = self.progress.global_step
            logger.warning("stopping training at step %d of %d: one more step would end the "
                           "run %.0f s after its time budget", self.stopped_at,
                           self.progress.state.total_steps, late)
            self.model.stop_training = True


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops the run at the first step whose loss (any of the logged losses) is NaN or
    infinite, by raising :class:`~keras_pose.training.checkpoints.NonFiniteError` before any
    later callback of that step can save something. (Keras logs each loss as its running mean
    over the epoch, which turns non-finite at the first non-finite step.)"""

    def __init__(self, progress: RunProgress) -> None:
        super().__init__()
        self.progress = progress

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        bad = {k: v for k, v in _scalars(logs or {}).items()
               if "loss" in k and not math.isfinite(v)}
        if bad:
            raise checkpoints.NonFiniteError(non_finite_message(self.progress.state, bad))


def non_finite_message(state: TrainingState, bad: dict[str, float]) -> str:
    losses = ", ".join(f"{name} = {value}" for name, value in sorted(bad.items()))
    backup = state.weights_file or "none yet"
    epoch, step = state.locate(state.global_step - 1)
    return (f"training stopped: {losses} at global step {state.global_step} (epoch "
            f"{epoch + 1}, step {step + 1}); nothing non-finite was "
            f"saved. --resume continues from the last backup ({backup}); a lower learning rate "
            "(--lr) may be needed")


class RecordHistory(keras.callbacks.Callback):
    """Appends each epoch's logs (after the evaluation added its AP) to the state's history,
    with ``seconds``: training wall time up to that epoch's end (evaluations included,
    continued across a resume)."""

    def __init__(self, progress: RunProgress) -> None:
        super().__init__()
        self.progress = progress
        self._clock = 0.0
        self._offset = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        history = self.progress.state.history
        self._offset = float(history[-1].get("seconds", 0.0)) if history else 0.0
        self._clock = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        state = self.progress.state
        entry = {"epoch": epoch + 1, "global_step": state.global_step,
                 "seconds": self._offset + time.perf_counter() - self._clock}
        entry.update(_scalars(logs or {}))
        state.history.append(entry)


class SyncReplicaStatistics(keras.callbacks.Callback):
    """Makes every replica's non-trainable statistics (BatchNorm moving mean and variance)
    the mean over replicas, every ``every_steps`` steps and at each epoch end, i.e. before
    anything is saved or evaluated.

    Each replica normalises with its own batch's statistics, as the originals' per-GPU BN
    did, and updates its own moving averages; since those are linear in the batch statistics,
    averaging them at any interval gives exactly the moving average of the replicas' mean
    statistics, and the replicas (and workers) hold identical weights afterwards. Runs on every
    worker (it is a collective operation).
    """

    def __init__(self, progress: RunProgress, every_steps: int) -> None:
        super().__init__()
        self.progress = progress
        self.every_steps = int(every_steps)
        self._sync = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.every_steps > 0 and self.progress.global_step % self.every_steps == 0:
            self.sync()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.sync()

    def sync(self) -> None:
        if self.model.distribute_strategy.num_replicas_in_sync == 1:
            return
        if self._sync is None:
            self._sync = replica_mean_function(self.model)
        self._sync()


def replica_mean_function(model: Any):
    """A ``tf.function`` that assigns to every float non-trainable variable of ``model`` its
    mean over all replicas."""
    import tensorflow as tf

    strategy = model.distribute_strategy
    variables = [v.value for v in model.non_trainable_variables
                 if "float" in str(v.dtype)]

    def replica_values():
        context = tf.distribute.get_replica_context()
        return context.all_reduce(tf.distribute.ReduceOp.MEAN,
                                  [tf.identity(v) for v in variables])

    @tf.function
    def sync():
        means = strategy.run(replica_values)
        for variable, mean in zip(variables, means):
            variable.assign(strategy.experimental_local_results(mean)[0])

    return sync


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the current ``learning_rate`` to the batch logs (progress bar, TensorBoard)."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = current_learning_rate(self.model.optimizer)


def current_learning_rate(optimizer: Any) -> float:
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class StepBackup(keras.callbacks.Callback):
    """Saves the weights, the optimizer and the counters every ``every_steps`` steps and at
    the end of every epoch, so that ``--resume`` after a kill loses at most ``every_steps``
    steps (see :func:`keras_pose.training.checkpoints.save_backup`)."""

    def __init__(self, out_dir: str, progress: RunProgress, every_steps: int) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.progress = progress
        self.every_steps = int(every_steps)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        step = self.progress.global_step
        if self.every_steps > 0 and step % self.every_steps == 0:
            self._save()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._save()

    def _save(self) -> None:
        state = self.progress.state
        if state.weights_file == checkpoints.weights_name(state.global_step):
            checkpoints.write_state(self.out_dir, state)  # same weights, newer logs
        else:
            checkpoints.save_backup(self.model, self.out_dir, state)


class RefreshBackupState(keras.callbacks.Callback):
    """At an epoch end, after the evaluation and the history: rewrites the backup's state (the
    weights were saved by :class:`StepBackup` before the evaluation) with the epoch's logs."""

    def __init__(self, out_dir: str, progress: RunProgress) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.progress = progress

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        state = self.progress.state
        if state.weights_file == checkpoints.weights_name(state.global_step):
            checkpoints.write_state(self.out_dir, state)


class EpochCheckpoint(keras.callbacks.Callback):
    """Writes ``checkpoints/epoch_NNN.keras`` (model + optimizer) at the end of each epoch,
    keeping the newest ``keep`` (0: all)."""

    def __init__(self, out_dir: str, keep: int = 3) -> None:
        super().__init__()
        self.folder = os.path.join(out_dir, CHECKPOINT_DIR)
        self.keep = keep

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        path = os.path.join(self.folder, f"epoch_{epoch + 1:03d}.keras")
        checkpoints.save_model(self.model, path)
        checkpoints.prune(os.path.join(self.folder, "epoch_*.keras"), self.keep)


class CocoEvaluation(keras.callbacks.Callback):
    """COCO keypoint AP on the validation split every ``every_epochs`` epochs and after the
    last one; writes ``val_AP`` (and AP50, AP75, AR) into the epoch logs and keeps the best
    model as ``best.keras``.

    Args:
        evaluate: ``evaluate(model) -> metrics dict`` (``keras_pose.evaluation.evaluate_coco``
            with the split bound).
        out_dir: where ``best.keras`` goes (``None``: not written, e.g. a non-chief worker).
        progress: the run's progress (its state keeps the best AP).
        every_epochs: evaluation period (0: only after the last epoch).
        last_epoch: the run's final epoch (0-based).
    """

    def __init__(
        self,
        evaluate: Any,
        out_dir: str | None,
        progress: RunProgress,
        every_epochs: int,
        last_epoch: int,
    ) -> None:
        super().__init__()
        self.evaluate = evaluate
        self.out_dir = out_dir
        self.progress = progress
        self.every_epochs = every_epochs
        self.last_epoch = last_epoch
        self.last_metrics: dict[str, Any] | None = None
        self.durations: list[float] = []  # seconds of each evaluation
        self._copy = None

    @property
    def seconds_spent(self) -> float:
        return sum(self.durations)

    def mean_seconds(self) -> float | None:
        """An evaluation's mean seconds (``None`` before the first)."""
        return self.seconds_spent / len(self.durations) if self.durations else None

    def due(self, epoch: int) -> bool:
        periodic = self.every_epochs > 0 and (epoch + 1) % self.every_epochs == 0
        return periodic or epoch == self.last_epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self.due(epoch):
            return
        start = time.perf_counter()
        metrics = self.evaluate(self.evaluation_model())
        self.last_metrics = {**metrics, "epoch": epoch + 1}
        if logs is not None:
            logs.update({key: float(metrics[name]) for name, key in AP_LOGS.items()})
        state = self.progress.state
        improved = state.best_ap is None or metrics["AP"] > state.best_ap
        if improved:
            state.best_ap, state.best_epoch = float(metrics["AP"]), epoch + 1
            if self.out_dir is not None:
                checkpoints.save_model(self.model, os.path.join(self.out_dir, BEST_MODEL))
        self.durations.append(time.perf_counter() - start)
        logger.info("epoch %d: COCO AP %.4f (AP50 %.4f, AR %.4f) in %.0f s%s", epoch + 1,
                    metrics["AP"], metrics["AP50"], metrics["AR"], self.durations[-1],
                    ", best so far" if improved else f", best {state.best_ap:.4f}")

    def evaluation_model(self):
        """The model itself, or under a multi-replica strategy an undistributed copy with
        its weights (prediction then needs no other replica or worker)."""
        self._copy = local_model(self.model, self._copy)
        return self._copy


class TensorBoardLogger(keras.callbacks.Callback):
    """TensorBoard scalars: batch losses and learning rate every ``every_steps`` steps (x axis:
    the run's global step, so a resumed run continues its curves) and the epoch logs
    (``epoch_*``; ``val_*`` entries such as the AP go to the ``validation`` run).

    Written with TensorFlow's own ``tf.summary.write``: TensorFlow 2.21 no longer installs the
    ``tensorboard`` package, without which ``tf.summary.scalar`` and Keras' TensorBoard
    callback raise. Viewing the logs needs ``pip install tensorboard``.
    """

    def __init__(self, log_dir: str, progress: RunProgress, every_steps: int = 50) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.progress = progress
        self.every_steps = int(every_steps)
        self._writers: dict[str, Any] = {}

    def writer(self, run: str):
        import tensorflow as tf

        if run not in self._writers:
            self._writers[run] = tf.summary.create_file_writer(os.path.join(self.log_dir, run))
        return self._writers[run]

    def write(self, run: str, values: dict[str, Any], step: int) -> None:
        import tensorflow as tf

        with self.writer(run).as_default():
            for name, value in values.items():
                tf.summary.write(name, tf.constant(float(value), tf.float32), step=step,
                                 metadata=scalar_metadata())

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        step = self.progress.global_step
        if logs and self.every_steps > 0 and step % self.every_steps == 0:
            self.write("train", {f"batch_{k}": v for k, v in _scalars(logs).items()}, step)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        values = _scalars(logs or {})
        values.setdefault("learning_rate", current_learning_rate(self.model.optimizer))
        train = {f"epoch_{k}": v for k, v in values.items() if not k.startswith("val_")}
        val = {f"epoch_{k[4:]}": v for k, v in values.items() if k.startswith("val_")}
        self.write("train", train, epoch)
        if val:
            self.write("validation", val, epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def scalar_metadata():
    """Summary metadata that makes TensorBoard show a value as a scalar curve."""
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    )


def _scalars(logs: dict) -> dict[str, float]:
    return {k: float(v) for k, v in logs.items() if np.ndim(v) == 0}
