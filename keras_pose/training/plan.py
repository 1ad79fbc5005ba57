"""Sizing a run to a wall-clock budget, and choosing its device settings.

A budgeted run (``--time-budget``, the main job's default) times a few training steps of its
own model on its own data (:func:`measure_step_seconds`), then :func:`plan_budget` turns the
time left into a number of steps, split into epochs, with evaluations spread over the run. The
learning-rate schedule is made for that total, so it warms up and decays over the whole run
whatever the machine's speed. A few timed steps can be off by a quarter on a shared machine,
so the first epoch is the measure: its length is the power of two at or below a planned epoch
(:func:`first_epoch_steps`, which timing noise rarely moves). After every epoch but the last
the run times its own steps (and its evaluations), and :func:`replan_budget` re-sizes the
epochs left (and the schedule, which is then made for the new total) to end the run on time:
a machine that runs faster or slower than its first epoch no longer leaves minutes unused or
runs late. Plans are pure functions of the measured times, rounded to :data:`STEP_QUANTUM`
(:data:`EPOCH_QUANTUM`) steps; the plan lines print the flags that repeat a plan exactly
(``--epoch-steps`` for a re-planned one). Should the machine slow
down after the plan was made, a deadline guard ends training at the step after which the rest
would not fit (:class:`~keras_pose.training.callbacks.StopAtDeadline`).

Precision: ``fp32``, ``bf16`` (``mixed_bfloat16``) or ``auto``: bf16 for a budgeted run on a
CPU with AVX512-BF16 or AMX (:func:`cpu_has_bf16`) when :data:`AUTO_BF16` says it measured
faster with a loss that follows fp32's, float32 otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from typing import Any

from keras_pose.training.checkpoints import EpochLayout

PRECISIONS = ("auto", "fp32", "bf16")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# Whether ``auto`` picks bf16 on a CPU that has it: RSN-18 128x96 took 0.6-0.85x the time
# per step with a loss within 0.1% of float32's (benchmarks/train_throughput.md).
AUTO_BF16 = True

STEP_QUANTUM = 50        # planned steps are a multiple of this (same plan despite timing noise)
EPOCH_QUANTUM = 5        # re-planned epochs' steps are a multiple of this
# timed steps that are not counted (tracing, first allocations, the input pipeline's workers
# starting and its buffers filling: with 2 warm-up steps the plan's step time came out ~20%
# above the run's own on 2 cores, and the run ended minutes early)
WARMUP_STEPS = 5
# steps whose mean is the step time: the mean, not the median, because a step's time on a
# shared 2-core machine has a long tail (RSN-18 128x96: median 0.41 s, mean 0.44, 90th
# percentile 0.52) and the run lasts its mean (a median of 8 planned 0.40 s for a run of 0.445)
TIMED_STEPS = 10
EPOCHS_PER_PLAN = 8      # epochs of a planned run (backup, checkpoint and history each)
EVALUATIONS = 3          # COCO AP evaluations of a planned run (the last one after the end)
# final save, evaluation model, export, pictures: 43 s measured on 2026-12-04, 22 s on 12-05,
# 17-18 s on 12-06 (the last epoch's evaluation is reused; benchmarks/main_job.md)
FINISH_SECONDS = 20.0
# backup, checkpoint and the input's restart at each epoch end (an estimate for the first plan;
# a re-plan measures it with the steps)
EPOCH_END_SECONDS = 3.0
# the plan ends this long before the budget (the finish's own noise: a run whose steps slow
# down after the plan is stopped in time by the deadline guard, callbacks.StopAtDeadline)
MARGIN_SECONDS = 10.0
# the run's steps take longer than the timed ones: backups every 200 steps, the input
# pipeline's workers and TensorBoard under way (main job on 2 cores: 1.02-1.07x); a re-plan
# times the run's own steps and needs no factor
STEP_TIME_FACTOR = 1.05


def parse_duration(text: str | float) -> float:
    """Seconds of ``"15m"``, ``"900s"``, ``"1h30m"``, ``"90"`` (seconds) or a number."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*"
                             r"(?:(\d+(?:\.\d+)?)s?)?\s*", str(text))
        if not match or not any(match.groups()):
            raise ValueError(
                "time_budget (--time-budget) must look like 15m, 900s, 1h30m or 900, "
                f"got {text!r}"
            )
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = 3600 * hours + 60 * minutes + secs
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"time_budget (--time-budget) must be > 0 seconds, got {text!r}")
    return seconds


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (empty where ``path`` cannot be read, e.g. not Linux)."""
    try:
        with open(path) as f:
            lines = [line for line in f if line.startswith(("flags", "Features"))]
    except OSError:
        return set()
    return {flag for line in lines for flag in line.partition(":")[2].split()}


def cpu_has_bf16(flags: Iterable[str] | None = None) -> bool:
    """True where the CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    flags = cpu_flags() if flags is None else set(flags)
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def process_seconds() -> float:
    """Wall time since this process started (Linux ``/proc``; 0 where unknown), so that a
    budget counts the imports too."""
    import os

    try:
        with open("/proc/self/stat") as f:
            start_ticks = float(f.read().rpartition(")")[2].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def elapsed_seconds(started: float) -> float:
    """Seconds a budget has spent: since ``started`` (a ``time.perf_counter()`` value) or since
    the process started, whichever is longer."""
    import time

    return max(time.perf_counter() - started, process_seconds())


def gpu_visible() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def precision_policy(precision: str, mixed: bool, budgeted: bool, gpu: bool,
                     cpu_bf16: bool) -> str:
    """The Keras dtype policy of a run.

    Args:
        precision: one of :data:`PRECISIONS`.
        mixed: the older ``--mixed-precision`` switch (float16 on GPU, bfloat16 on CPU).
        budgeted: the run is sized by a time budget (``auto`` may then pick bf16).
        gpu, cpu_bf16: what the machine has.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision (--precision) must be one of {PRECISIONS}, "
                         f"got {precision!r}")
    if mixed:
        return "mixed_float16" if gpu else "mixed_bfloat16"
    if precision == "bf16":
        return "mixed_bfloat16"
    if precision == "auto" and budgeted and not gpu and cpu_bf16 and AUTO_BF16:
        return "mixed_bfloat16"
    return "float32"


@dataclasses.dataclass(frozen=True)
class BudgetPlan(EpochLayout):
    """How a budgeted run spends its time.

    Args:
        epoch_steps: each epoch's steps.
        eval_every: epochs between COCO AP evaluations.
        seconds_per_step: the measured training step.
        expected_seconds: the whole run's expected wall time (from the start of the process).
        eval_seconds: one COCO AP evaluation (estimated, then measured).
        after_epoch: the epochs done when it was made (0: planned from the timed steps).
    """

    epoch_steps: tuple[int, ...]
    eval_every: int
    seconds_per_step: float
    expected_seconds: float
    eval_seconds: float = 0.0
    after_epoch: int = 0

    def flags(self) -> str:
        """The command-line flags that repeat this plan exactly."""
        if len(set(self.epoch_steps)) == 1:
            return f"--epochs {self.epochs} --steps-per-epoch {self.epoch_steps[0]}"
        return "--epoch-steps " + ",".join(map(str, self.epoch_steps))


def plan_budget(
    budget_seconds: float,
    elapsed_seconds: float,
    seconds_per_step: float,
    eval_seconds: float,
    steps_per_epoch: int | None = None,
    epochs: int | None = None,
    evaluations: int | None = None,
) -> BudgetPlan:
    """The plan that ends a run ``budget_seconds`` after its start.

    Args:
        budget_seconds: the whole run's wall time.
        elapsed_seconds: spent before training (data, model, the timed steps, which trace the
            run's step).
        seconds_per_step: one training step.
        eval_seconds: one COCO AP evaluation.
        steps_per_epoch: fixed (``--steps-per-epoch``); default: the total over ``epochs``.
        epochs: epochs of a plan without ``steps_per_epoch`` (:data:`EPOCHS_PER_PLAN`).
        evaluations: evaluations spread over the run, the last at its end
            (:data:`EVALUATIONS`).
    """
    epochs = EPOCHS_PER_PLAN if epochs is None else epochs
    evaluations = EVALUATIONS if evaluations is None else evaluations
    if seconds_per_step <= 0:
        raise ValueError(f"seconds_per_step must be > 0, got {seconds_per_step}")
    fixed = elapsed_seconds + FINISH_SECONDS + MARGIN_SECONDS + evaluations * eval_seconds
    fixed += epochs * EPOCH_END_SECONDS
    available = max(0.0, budget_seconds - fixed)
    total = max(STEP_QUANTUM, int(available / seconds_per_step) // STEP_QUANTUM * STEP_QUANTUM)
    if steps_per_epoch is None:
        epochs = max(1, min(epochs, total))
        steps_per_epoch = total // epochs
        # re-planned after each epoch, the first of which is the timing-proof measure
        first = first_epoch_steps(steps_per_epoch) if epochs > 1 else steps_per_epoch
        rest = (total - first) // (epochs - 1) if epochs > 1 else steps_per_epoch
        epoch_steps = (first,) + (rest,) * (epochs - 1)
    else:
        epoch_steps = (steps_per_epoch,) * max(1, total // steps_per_epoch)
    eval_every = max(1, math.ceil(len(epoch_steps) / max(1, evaluations)))
    evals = evaluations_after(0, len(epoch_steps), eval_every)
    expected = (elapsed_seconds + sum(epoch_steps) * seconds_per_step + evals * eval_seconds
                + len(epoch_steps) * EPOCH_END_SECONDS + FINISH_SECONDS)
    return BudgetPlan(epoch_steps, eval_every, seconds_per_step, expected, eval_seconds)


def first_epoch_steps(steps_per_epoch: int) -> int:
    """The first epoch of a plan of epochs of ``steps_per_epoch``: the power of two at or
    below it. It trains on the schedule of ``EPOCHS_PER_PLAN`` epochs of its length, so a
    first epoch that only depends on the bin of the timed steps (a factor of 2 wide) lets two
    runs on one machine train the same first epoch although their timed steps differ by 10%
    or more (two fresh clones timed 0.54 and 0.60 s a step, then both ran at 0.55)."""
    return 2 ** int(math.log2(max(1, steps_per_epoch)))


def evaluations_after(done_epochs: int, epochs: int, eval_every: int) -> int:
    """The evaluations of a run's epochs after ``done_epochs`` (every ``eval_every``-th epoch
    and the last one)."""
    periodic = epochs // eval_every - done_epochs // eval_every
    return periodic + (epochs % eval_every > 0)


def replan_budget(plan: BudgetPlan, budget_seconds: float, elapsed_seconds: float,
                  seconds_per_step: float, done_epochs: int,
                  eval_seconds: float | None = None) -> BudgetPlan:
    """``plan`` after ``done_epochs`` epochs, with the epochs left all as long as fits the
    budget at ``seconds_per_step`` (the run's own steps, their epoch's end included),
    ``elapsed_seconds`` after the start; ``eval_seconds``: a measured evaluation."""
    if seconds_per_step <= 0:
        raise ValueError(f"seconds_per_step must be > 0, got {seconds_per_step}")
    epochs_left = plan.epochs - done_epochs
    if epochs_left < 1:
        return plan
    eval_seconds = plan.eval_seconds if eval_seconds is None else eval_seconds
    evals = evaluations_after(done_epochs, plan.epochs, plan.eval_every)
    fixed = elapsed_seconds + FINISH_SECONDS + MARGIN_SECONDS + evals * eval_seconds
    per_epoch = max(0.0, budget_seconds - fixed) / seconds_per_step / epochs_left
    per_epoch = max(EPOCH_QUANTUM, int(per_epoch) // EPOCH_QUANTUM * EPOCH_QUANTUM)
    expected = (elapsed_seconds + epochs_left * per_epoch * seconds_per_step
                + evals * eval_seconds + FINISH_SECONDS)
    return dataclasses.replace(
        plan, epoch_steps=plan.epoch_steps[:done_epochs] + (per_epoch,) * epochs_left,
        seconds_per_step=seconds_per_step, expected_seconds=expected,
        eval_seconds=eval_seconds, after_epoch=done_epochs)


def measure_step_seconds(model: Any, dataset: Any, steps: int | None = None) -> float:
    """Seconds of a training step in a run (the mean timed one x STEP_TIME_FACTOR) of the
    compiled ``model`` on ``dataset`` (its first step traces the run's). The steps are undone:
    the weights (BatchNorm statistics included) and the optimizer's state (step counter,
    moments) are restored afterwards, so the run starts from where it was."""
    from keras_pose.training.callbacks import StepClock

    steps = WARMUP_STEPS + TIMED_STEPS if steps is None else steps
    clock = StepClock()
    weights = model.get_weights()
    optimizer_state = [variable.numpy() for variable in model.optimizer.variables]
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[clock],
              shuffle=False)
    model.set_weights(weights)
    for variable, value in zip(model.optimizer.variables, optimizer_state, strict=True):
        variable.assign(value)
    return STEP_TIME_FACTOR * clock.seconds_per_step(WARMUP_STEPS)
