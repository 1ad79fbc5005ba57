"""Learning-rate schedules of the original training recipes, as serializable Keras schedules.

Both are functions of the optimizer's step counter (``optimizer.iterations``), so a resumed run
continues on the same curve, and both are registered Keras objects, so a ``.keras`` file with a
compiled optimizer loads again (``import keras_pose.training`` registers them).

* :class:`WarmupLinearDecay` — MSPN/RSN (``lib/utils/solver.py``): linear warm-up from
  ``warmup_factor`` x the peak, then a straight line down to 0 at ``total_steps``; with
  ``decay_steps`` the peak is held until the line's last ``decay_steps`` steps (a
  warm-up-stable-decay schedule: runs of different lengths share their steps until the first
  of them starts to decay).
* :class:`WarmupMultiStep` — tf-cpn's halving every 60 "epochs" (no warm-up), MMPose's CPM
  recipe (warm-up from 0.001x, x0.1 at two milestones), and any step schedule.

The warm-up factor at step ``t < W`` is ``f + (1 - f) t / W`` (the detectron/cvpack form the
originals use), reaching 1 at ``t = W``.

A run that re-plans its length after tracing its training step (a budgeted run, see
:mod:`keras_pose.training.plan`) calls :meth:`~ResizableSchedule.make_resizable` before the
first step: the step counts are then read from variables, and :meth:`~ResizableSchedule.
resize` moves them to another schedule's (TensorFlow; a traced JAX step keeps the values it
was traced with).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops


def _warmup_factor(step, warmup_steps, warmup_factor: float):
    """``f + (1 - f) * step / W`` below ``W`` steps, 1 from then on (and without a warm-up)."""
    progress = ops.minimum(step / ops.maximum(warmup_steps, 1.0), 1.0)
    factor = warmup_factor + (1.0 - warmup_factor) * progress
    return ops.where(warmup_steps > 0, factor, ops.ones_like(step))


class ResizableSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A schedule whose step counts (:attr:`LENGTH_FIELDS`) can change after tracing."""

    LENGTH_FIELDS: tuple[str, ...] = ()
    _length_variables: dict[str, Any] | None = None

    def make_resizable(self) -> None:
        """Read the step counts from variables from now on (before the step is traced)."""
        if self._length_variables is None:
            self._length_variables = {
                name: keras.Variable(self._length_value(name), dtype="float32",
                                     trainable=False, name=f"schedule_{name}")
                for name in self.LENGTH_FIELDS
            }

    def resize(self, other: ResizableSchedule) -> None:
        """Take ``other``'s step counts (same class and rate; a resizable schedule)."""
        if type(other) is not type(self) or self._length_variables is None:
            raise ValueError("resize needs a resizable schedule and another of its class")
        for name in self.LENGTH_FIELDS:
            if other._length_value(name).shape != self._length_value(name).shape:
                raise ValueError(f"cannot resize {name} from {getattr(self, name)} to "
                                 f"{getattr(other, name)}: not as many values")
        for name in self.LENGTH_FIELDS:
            setattr(self, name, getattr(other, name))
            self._length_variables[name].assign(self._length_value(name))

    def _length_value(self, name: str) -> np.ndarray:
        return np.asarray(getattr(self, name), dtype="float32")

    def _length(self, name: str):
        """The step count ``name``: its variable when resizable, else a constant."""
        if self._length_variables is not None:
            return self._length_variables[name]
        return ops.convert_to_tensor(self._length_value(name))


@keras.saving.register_keras_serializable(package="keras_pose")
class WarmupLinearDecay(ResizableSchedule):
    """Linear warm-up to ``learning_rate`` over ``warmup_steps``, then linear decay to 0.

    Args:
        learning_rate: the peak rate, reached at ``warmup_steps``.
        total_steps: the rate is 0 from this step on.
        warmup_steps: length of the warm-up (0: none).
        warmup_factor: the warm-up starts at ``warmup_factor * learning_rate``.
        decay_steps: the decay's length: the peak holds until ``total_steps - decay_steps``;
            ``None``: from the warm-up's end (the originals').
    """

    LENGTH_FIELDS = ("total_steps", "warmup_steps", "decay_steps")

    def __init__(
        self,
        learning_rate: float,
        total_steps: int,
        warmup_steps: int = 0,
        warmup_factor: float = 0.1,
        decay_steps: int | None = None,
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}), "
                             f"got {warmup_steps}")
        if decay_steps is not None and not 1 <= decay_steps <= total_steps - warmup_steps:
            raise ValueError(f"decay_steps must be in [1, total_steps - warmup_steps = "
                             f"{total_steps - warmup_steps}], got {decay_steps}")
        self.learning_rate = float(learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)
        self.decay_steps = None if decay_steps is None else int(decay_steps)

    def _length_value(self, name: str) -> np.ndarray:
        if name == "decay_steps" and self.decay_steps is None:
            return np.asarray(self.total_steps - self.warmup_steps, dtype="float32")
        return super()._length_value(name)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        total, warmup = self._length("total_steps"), self._length("warmup_steps")
        warm = _warmup_factor(step, warmup, self.warmup_factor)
        decay = ops.clip((total - step) / self._length("decay_steps"), 0.0, 1.0)
        factor = ops.where(step < warmup, warm, decay)
        return self.learning_rate * factor

    def get_config(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "warmup_factor": self.warmup_factor,
            "decay_steps": self.decay_steps,
        }


@keras.saving.register_keras_serializable(package="keras_pose")
class WarmupMultiStep(ResizableSchedule):
    """``learning_rate * factor ** (number of boundaries passed)``, after an optional warm-up.

    Args:
        learning_rate: the rate after warm-up and before the first boundary.
        boundaries: increasing steps at which the rate is multiplied by ``factor``
            (the step itself already has the lower rate).
        factor: the multiplier at each boundary (0.5 tf-cpn, 0.1 MMPose).
        warmup_steps, warmup_factor: linear warm-up, as :class:`WarmupLinearDecay`.
    """

    LENGTH_FIELDS = ("boundaries", "warmup_steps")

    def __init__(
        self,
        learning_rate: float,
        boundaries: Sequence[int] = (),
        factor: float = 0.1,
        warmup_steps: int = 0,
        warmup_factor: float = 0.001,
    ) -> None:
        boundaries = [int(b) for b in boundaries]
        if any(b <= a for a, b in zip(boundaries, boundaries[1:])):
            raise ValueError(f"boundaries must increase strictly, got {boundaries}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.learning_rate = float(learning_rate)
        self.boundaries = boundaries
        self.factor = float(factor)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        passed = ops.sum(ops.cast(step >= self._length("boundaries"), "float32"))
        decay = ops.power(self.factor, passed)
        return self.learning_rate * decay * _warmup_factor(
            step, self._length("warmup_steps"), self.warmup_factor
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "boundaries": list(self.boundaries),
            "factor": self.factor,
            "warmup_steps": self.warmup_steps,
            "warmup_factor": self.warmup_factor,
        }
