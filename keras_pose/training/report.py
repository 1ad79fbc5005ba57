"""What a run says: the ``PLAN`` line before its first step, the summary it writes
(``summary.json``) and the ``FINAL`` line it ends with."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
from typing import TYPE_CHECKING, Any

import keras

from keras_pose.training.distribute import is_chief
from keras_pose.training.recipes import learning_rate_schedule

if TYPE_CHECKING:
    from keras_pose.training.trainer import Run

# the run's log lines keep the trainer's logger name, where users filter them
logger = logging.getLogger("keras_pose.training.trainer")

PRECISION_FLAGS = {"float32": " --precision fp32", "mixed_bfloat16": " --precision bf16"}


def log_plan(run: Run) -> None:
    """Log the run's layout, and print its ``PLAN`` line on the chief."""
    state, config = run.state, run.config
    logger.info(
        "training %s (%s, %s) on %d people: %s steps of %d crops, %s, jit_compile=%s,"
        " %d replica(s), out %s", config.model, "x".join(map(str, run.model.spec.input_size)),
        run.policy, len(run.inputs.records), describe_epochs(state.epoch_steps),
        state.global_batch, describe_learning_rate(run.model.optimizer), run.jit_compile,
        run.strategy.num_replicas_in_sync, config.out_dir)
    if is_chief(run.strategy):
        print(plan_line(run), flush=True)


def plan_line(run: Run) -> str:
    """What the run will do, printed before its first step: model, input size, precision,
    device, steps, and for a budgeted run the measured step time and the expected wall time
    (with the flags that repeat the plan)."""
    state, plan = run.state, run.plan
    from keras_pose.training.plan import gpu_visible

    device = "GPU" if gpu_visible() else f"CPU ({os.cpu_count()} cores)"
    line = (f"PLAN {run.config.model} {'x'.join(map(str, run.model.spec.input_size))}, "
            f"{run.policy}, decode {run.model.decode_refine or 'none'}, {device}: "
            f"{describe_epochs(state.epoch_steps)} "
            f"steps of {state.global_batch} = "
            f"{run.total_steps} steps, COCO AP every {run.config.eval_every or state.epochs} "
            "epoch(s)")
    if plan is not None:
        measured = {0: "measured", 1: "in epoch 1"}.get(plan.after_epoch,
                                                        f"in epochs 1-{plan.after_epoch}")
        line += (f" | {plan.seconds_per_step:.2f} s/step {measured}, expected "
                 f"{_minutes(plan.expected_seconds)} of a {_minutes(run.config.time_budget)} "
                 f"budget | repeat: {plan.flags()} --seed {run.config.seed}"
                 f"{PRECISION_FLAGS.get(run.policy, '')}")
    return line


def describe_epochs(epoch_steps: list[int]) -> str:
    """``8 epochs x 160``, ``1 epoch x 128 + 7 x 160``, or each epoch's: ``4 epochs of
    128/185/190/175``."""
    stretches = [(len(list(group)), steps) for steps, group in itertools.groupby(epoch_steps)]
    if len(stretches) > 2:
        return f"{len(epoch_steps)} epochs of {'/'.join(map(str, epoch_steps))}"
    count, steps = stretches[0]
    text = f"{count} epoch{'s' if count > 1 else ''} x {steps}"
    return text + "".join(f" + {count} x {steps}" for count, steps in stretches[1:])


def plan_record(plan: Any) -> dict[str, Any] | None:
    """A :class:`~keras_pose.training.plan.BudgetPlan` for ``summary.json``."""
    if plan is None:
        return None
    return {**dataclasses.asdict(plan), "epochs": plan.epochs, "total_steps": plan.total_steps}


def _minutes(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def describe_learning_rate(optimizer: Any) -> str:
    schedule = learning_rate_schedule(optimizer)
    name = type(getattr(optimizer, "inner_optimizer", optimizer)).__name__
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return f"{name} {type(schedule).__name__}{schedule.get_config()}"
    return f"{name} lr {float(keras.ops.convert_to_numpy(schedule)):g}"


def make_summary(run: Run, metrics: dict[str, Any], artifacts: dict[str, str],
                 seconds: float) -> dict[str, Any]:
    state, config = run.state, run.config
    names = ("AP", "AP50", "AP75", "APm", "APl", "AR")
    return {
        "model": config.model,
        "input_size": list(run.model.spec.input_size),
        "data": config.data_dir or "synthetic",
        "epochs": state.epochs,
        "epoch_steps": state.epoch_steps,
        "global_step": state.global_step,
        "global_batch": state.global_batch,
        "replicas": run.strategy.num_replicas_in_sync,
        "jit_compile": run.jit_compile,
        "precision": run.policy,
        "plan": plan_record(run.plan),
        "first_plan": plan_record(run.first_plan),
        "metrics": {k: float(metrics[k]) for k in names if k in metrics},
        "best_ap": state.best_ap,
        "best_epoch": state.best_epoch,
        "history": state.history,
        "artifacts": artifacts,
        "seconds": seconds,
        "config": {k: v for k, v in dataclasses.asdict(config).items() if _jsonable(v)},
    }


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, list, tuple, dict))


def summary_line(summary: dict[str, Any]) -> str:
    """The run's last line: final AP, best AP, size of the run, wall time, model file."""
    m = summary["metrics"]
    best = summary["best_ap"]
    best_text = "n/a" if best is None else f"{best:.4f} (epoch {summary['best_epoch']})"
    return (
        f"FINAL {summary['model']} {'x'.join(map(str, summary['input_size']))}: "
        f"AP {m['AP']:.4f} | AP50 {m['AP50']:.4f} | AR {m['AR']:.4f} | best AP {best_text} | "
        f"{summary['epochs']} epochs, {summary['global_step']} steps of {summary['global_batch']}"
        f"{stopped_text(summary)} | {summary['seconds']:.0f} s | {summary['artifacts']['model']}"
    )


def stopped_text(summary: dict[str, Any]) -> str:
    """`` (stopped at the time budget: M planned)`` for a run whose deadline guard ended it."""
    plan = summary.get("plan")
    if plan is None or summary["global_step"] >= plan["total_steps"]:
        return ""
    return f" (stopped at the time budget: {plan['total_steps']} planned)"
