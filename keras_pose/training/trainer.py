"""`train`: a pose model on a COCO-format folder, end to end, resumable, on any strategy.

    strategy -> data (COCO folder, or the synthetic set rendered once) -> model and optimizer
    (built inside ``strategy.scope()``) -> ``model.fit`` with the callbacks of
    :mod:`keras_pose.training.callbacks` -> final model, COCO AP, summary (-> SavedModel export
    and a picture of predictions).

Output folder (one per run: ``out_dir``, or a new ``work_dirs/<model>/<date-time>``; see
:mod:`keras_pose.training.run_folder`)::

    run.lock               held while the run is alive (no second run can share the folder)
    model.keras            final model (with optimizer), written atomically
    best.keras             the model of the best validation AP
    checkpoints/epoch_NNN.keras   end-of-epoch checkpoints (newest ``keep_checkpoints``)
    backup/                weights + optimizer + counters every ``backup_every`` steps (--resume)
    logs/                  TensorBoard event files (losses, learning rate, AP)
    summary.json           configuration, history and final metrics
    saved_model/           TF Serving export (``export=True``)
    predictions.png        predicted skeletons on validation images (``draw=True``)
    learning_curve.png     training loss and validation AP against time (``draw=True``)

A budgeted run (``time_budget``; the main job's default) first times a few steps and plans its
length to fit, then re-plans the epochs left after each epoch from the run's own times
(:mod:`keras_pose.training.plan`); every run prints a ``PLAN`` line before its first step (and
a budgeted one another whenever a re-plan changes it) and a ``FINAL`` line at the end
(:mod:`keras_pose.training.report`). What a run is made of, and the main job's defaults:
:mod:`keras_pose.training.config`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

import keras

from keras_pose.models import build_model
from keras_pose.training import checkpoints, run_folder
from keras_pose.training.callbacks import (
    CocoEvaluation,
    EpochCheckpoint,
    LearningRateLogger,
    RecordHistory,
    RefreshBackupState,
    RunProgress,
    StepBackup,
    StopAtDeadline,
    StopOnNonFiniteLoss,
    SyncReplicaStatistics,
    TensorBoardLogger,
)
from keras_pose.training.checkpoints import TrainingState
from keras_pose.training.config import DECODE_REFINEMENTS, TrainConfig
from keras_pose.training.data import TrainingInput
from keras_pose.training.distribute import (
    is_chief,
    is_multi_worker,
    logical_cpus,
    make_strategy,
    prepare_fit,
    resolve_jit_compile,
    worker_name,
)
from keras_pose.training.recipes import (
    learning_rate_schedule,
    make_optimizer,
    make_schedule,
    recipe_for,
)
from keras_pose.training.report import log_plan, make_summary, plan_line, summary_line
from keras_pose.training.schedules import ResizableSchedule

logger = logging.getLogger(__name__)

FINAL_MODEL = "model.keras"
SUMMARY_FILE = "summary.json"
PREDICTIONS_PNG = "predictions.png"
SAVED_MODEL_DIR = "saved_model"
LEARNING_CURVE_PNG = "learning_curve.png"
# image reading, the prediction function's tracing and pycocotools per evaluation (the main
# job's evaluations took 3-7 s in all: benchmarks/main_job.md)
EVALUATION_OVERHEAD_SECONDS = 3.0
# the schedule length a budgeted run is compiled with before its plan exists (any length: its
# timed steps are undone, and the schedule is resized to the plan's before the first step)
PROVISIONAL_SCHEDULE_STEPS = 1000

@dataclasses.dataclass(frozen=True)
class DataPaths:
    train_annotations: str
    train_images: str
    val_annotations: str
    val_images: str
    det_file: str | None


def data_paths(config: TrainConfig, worker: str | None = None) -> DataPaths:
    """The splits of ``config.data_dir``, or of the synthetic set (rendered if missing, into
    ``config.synthetic_dir``; a non-chief ``worker`` of a multi-worker run renders its own
    identical copy beside it rather than racing the chief for the same folder)."""
    if config.synthetic:
        from keras_pose.data.synthetic import make_coco_layout

        folder = config.synthetic_dir
        if worker is not None:
            parent, name = os.path.split(folder)
            folder = os.path.join(parent, f".{name}-{worker}")
        layout = make_coco_layout(folder,
                                  config.num_train_images, config.num_val_images, seed=0)
        train, val = layout["train2017"], layout["val2017"]
        return DataPaths(train["annotation_file"], train["image_dir"], val["annotation_file"],
                         val["image_dir"], config.det_file)
    paths = DataPaths(
        os.path.join(config.data_dir, "annotations", f"person_keypoints_{config.train_split}.json"),
        os.path.join(config.data_dir, config.train_split),
        os.path.join(config.data_dir, "annotations", f"person_keypoints_{config.val_split}.json"),
        os.path.join(config.data_dir, config.val_split),
        config.det_file,
    )
    for path in dataclasses.astuple(paths):
        if path is not None and not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: data_dir must be a COCO layout "
                                    "(annotations/, train2017/, val2017/)")
    return paths


def set_precision(config: TrainConfig) -> str:
    """Set (and return) the global dtype policy of ``config``'s precision on this machine."""
    from keras_pose.training.plan import cpu_has_bf16, gpu_visible, precision_policy

    policy = precision_policy(config.precision, config.mixed_precision, config.budgeted,
                              gpu_visible(), cpu_has_bf16())
    keras.mixed_precision.set_global_policy(policy)
    return policy


@dataclasses.dataclass
class Run:
    """A prepared run: strategy, data, compiled model and its state."""

    config: TrainConfig
    strategy: Any
    paths: DataPaths
    model: Any
    inputs: TrainingInput
    state: TrainingState
    jit_compile: bool
    policy: str
    started: float
    lock: run_folder.RunLock | None = None
    plan: Any = None  # the BudgetPlan of a budgeted run (re-planned after each epoch)
    previous_policy: str = "float32"  # the global dtype policy before the run set its own
    replan: bool = False  # re-plan the epochs left after each epoch
    first_plan: Any = None  # the plan made before training
    schedule_steps: int = 0  # the length of the optimizer's schedule now

    @property
    def total_steps(self) -> int:
        return self.state.total_steps


def prepare(config: TrainConfig) -> Run:
    """Strategy, data, model and optimizer of ``config`` (resolved), restored from the backup
    with ``resume``. The strategy comes first: a multi-worker one must exist before TensorFlow
    runs anything. Then (the chief) claims and locks the run folder, and every input the run
    will need is checked, validation split included, before any training step."""
    started = time.perf_counter()
    previous_policy = keras.mixed_precision.global_policy().name
    devices = logical_cpus(config.cpu_replicas) if config.cpu_replicas > 1 else None
    strategy = make_strategy("mirrored" if devices else config.strategy, devices)
    lock = None
    if is_chief(strategy):
        lock = run_folder.claim_run_folder(config.out_dir, config.resume, config.overwrite)
    try:
        run = _prepare(config, strategy, started)
    except BaseException:
        keras.mixed_precision.set_global_policy(previous_policy)
        if lock is not None:
            lock.release()
        raise
    run.lock = lock
    run.previous_policy = previous_policy
    if lock is not None:
        run_folder.point_latest_if_default(config.out_dir, config.model)
    return run


def _prepare(config: TrainConfig, strategy: Any, started: float) -> Run:
    if config.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    policy = set_precision(config)
    paths = data_paths(config, None if is_chief(strategy) else worker_name(strategy))
    with strategy.scope():
        model, inputs = model_and_input(config, paths, strategy.num_replicas_in_sync)
    val_people = check_validation_inputs(paths, inputs.dataset_info, config.eval_max_images,
                                         config.default_sigma)
    jit = resolve_jit_compile(config.jit_compile, strategy)
    plan, replan, timed = None, False, False
    if config.budgeted:
        planned_epochs = config.steps_per_epoch is None
        config, plan = plan_run(config, strategy, model, inputs, jit, val_people, started)
        timed = plan is not None
        replan = timed and planned_epochs and plan.epochs > 1
    state = resumed_state(config, epoch_layout(config, inputs, model.spec.family),
                          inputs.global_batch)
    state.check_model(model_identity(config.model, model.spec), config.out_dir)
    if not timed:  # (a timed run's model is compiled, on a schedule to resize to the plan's)
        compile_run(model, config, strategy, inputs, state.schedule_steps, jit,
                    resizable=len(state.schedules_left()) > 1)
    if state.global_step:
        with strategy.scope():
            checkpoints.restore_backup(model, config.out_dir, state)
    run = Run(config, strategy, paths, model, inputs, state, jit, policy, started, plan=plan,
              replan=replan,
              schedule_steps=PROVISIONAL_SCHEDULE_STEPS if timed else state.schedule_steps)
    follow_schedule(run)
    return run


def compile_run(model: Any, config: TrainConfig, strategy: Any, inputs: TrainingInput,
                schedule_steps: int, jit: bool, resizable: bool) -> None:
    """Compile ``model`` with the family's optimizer on a schedule of ``schedule_steps``
    (``resizable``: its length can change after the step is traced), optimizer built and
    ``fit``'s losses ready."""
    with strategy.scope():
        optimizer = make_optimizer(model, schedule_steps, inputs.global_batch,
                                   config.learning_rate, config.schedule, config.decay_fraction)
        schedule = learning_rate_schedule(optimizer)
        if resizable and isinstance(schedule, ResizableSchedule):
            schedule.make_resizable()  # before the step is traced
        model.compile(optimizer=optimizer, jit_compile=jit)
        model.optimizer.build(model.trainable_variables)
    prepare_fit(model, inputs.dataset(num_replicas=strategy.num_replicas_in_sync).element_spec)


def plan_run(config: TrainConfig, strategy: Any, model: Any, inputs: TrainingInput,
             jit: bool, val_people: int, started: float) -> tuple[TrainConfig, Any]:
    """``config`` with the epochs, steps per epoch and evaluation period that fit its time
    budget, and the :class:`~keras_pose.training.plan.BudgetPlan`. A resumed run keeps the
    layout of its backup (its schedule was planned for it)."""
    from keras_pose.training import plan as planning

    if is_multi_worker(strategy):
        raise ValueError("a time budget (--time-budget) needs one process to plan the run; "
                         "give several workers --epochs (and --steps-per-epoch) instead")
    saved = checkpoints.load_state(config.out_dir) if config.resume else None
    if saved is not None:
        eval_every = config.eval_every or max(1, math.ceil(saved.epochs / planning.EVALUATIONS))
        return dataclasses.replace(config, epochs=saved.epochs,
                                   epoch_steps=tuple(saved.epoch_steps),
                                   eval_every=eval_every), None
    # the run's own optimizer times the steps (one trace for timing and run); weights and
    # optimizer state are restored after, and the schedule is resized to the plan's
    compile_run(model, config, strategy, inputs, PROVISIONAL_SCHEDULE_STEPS, jit,
                resizable=True)
    with strategy.scope():
        step = planning.measure_step_seconds(model, inputs.distributed(strategy))
    eval_seconds = evaluation_seconds(val_people, config.eval_batch_size, inputs.global_batch,
                                      step)
    elapsed = planning.elapsed_seconds(started)
    plan = planning.plan_budget(config.time_budget, elapsed, step, eval_seconds,
                                config.steps_per_epoch)
    if plan.expected_seconds > config.time_budget:
        logger.warning("the time budget (%.0f s) is too short for this machine: %.0f s were "
                       "spent before training, and the smallest plan (%d steps) ends after "
                       "about %.0f s", config.time_budget, elapsed, plan.total_steps,
                       plan.expected_seconds)
    eval_every = plan.eval_every if config.eval_every is None else config.eval_every
    return dataclasses.replace(config, epochs=plan.epochs, epoch_steps=plan.epoch_steps,
                               eval_every=eval_every), plan


def evaluation_seconds(people: int, eval_batch: int, train_batch: int, step_seconds: float
                       ) -> float:
    """An estimate of one COCO AP evaluation: every person and its flip through the network
    (a forward pass costs about a third of a training step per crop), plus reading the
    images and scoring."""
    forward_per_crop = step_seconds / (3.0 * train_batch)
    batches = math.ceil(2 * people / eval_batch)
    return 2 * people * forward_per_crop + 0.05 * batches + EVALUATION_OVERHEAD_SECONDS


def model_and_input(config: TrainConfig, paths: DataPaths, replicas: int):
    """The (uncompiled) model and its :class:`TrainingInput` from the training split."""
    from keras_pose.data.coco import load_coco_records
    from keras_pose.data.transforms import resolve_augment

    info = run_dataset_info(config, paths)
    records = load_coco_records(paths.train_annotations, paths.train_images, info)
    model = build_run_model(config, info.num_keypoints)
    batch = config.batch_size
    if batch is None:
        batch = recipe_for(model.spec.family).batch_per_replica * replicas
    inputs = TrainingInput(model.spec, records, info,
                           resolve_augment(model.spec, config.augment_setting), batch, config.seed)
    inputs.check_batch(replicas)
    return model, inputs


def run_dataset_info(config: TrainConfig, paths: DataPaths):
    """The keypoint set: ``keypoints_from`` if given (checked against the training
    annotations' keypoint count), else the training annotations'."""
    from keras_pose.data.coco import read_dataset_info
    from keras_pose.data.dataset_info import load_keypoint_info

    info = read_dataset_info(paths.train_annotations)
    if config.keypoints_from is None:
        return info
    given = load_keypoint_info(config.keypoints_from)
    if given.num_keypoints != info.num_keypoints:
        raise ValueError(f"{config.keypoints_from} describes {given.num_keypoints} keypoints, "
                         f"{paths.train_annotations} has {info.num_keypoints}")
    return given


def check_validation_inputs(paths: DataPaths, info: Any, max_images: int | None,
                            default_sigma: float | None = None) -> int:
    """Read the validation annotations (and detections) and check that their images exist
    and that the keypoint set has OKS sigmas, now rather than at the first evaluation;
    returns the number of people (or boxes) an evaluation scores."""
    from keras_pose.data.coco import load_coco, load_coco_records, load_detection_records

    info.oks_sigmas(default_sigma)
    coco = load_coco(paths.val_annotations)
    wanted = set(sorted(coco.getImgIds())[:max_images])
    if paths.det_file is None:
        records = load_coco_records(paths.val_annotations, paths.val_images, info, coco=coco)
    else:
        records = load_detection_records(paths.det_file, paths.val_annotations,
                                         paths.val_images, dataset_info=info, coco=coco)
    people = sum(r.image_id in wanted for r in records)
    if not people:
        source = paths.det_file or paths.val_annotations
        raise ValueError(f"{source}: no person to evaluate on the first "
                         f"{len(wanted)} validation images")
    return people


def model_identity(name: str, spec: Any) -> str:
    """What a backup must match to be resumed: model name, input size, keypoint count."""
    height, width = spec.input_size
    return f"{name} {height}x{width}, {spec.num_keypoints} keypoints"


def build_run_model(config: TrainConfig, num_keypoints: int):
    """The uncompiled model of ``config`` (name, input size, extra arguments, decode) for K
    keypoints."""
    kwargs = {**config.model_kwargs, "num_keypoints": num_keypoints, "compile": False}
    if config.input_size is not None:
        kwargs["input_shape"] = (int(config.input_size[0]), int(config.input_size[1]), 3)
    model = build_model(config.model, **kwargs)
    if config.decode_refine is not None:
        model.decode_refine = DECODE_REFINEMENTS[config.decode_refine]
    return model


def epoch_layout(config: TrainConfig, inputs: TrainingInput, family: str) -> list[int]:
    """Each epoch's steps: ``epoch_steps``, or ``epochs`` of ``steps_per_epoch`` (default one
    pass over the people; epochs default: as many samples as the family's original saw), the
    first ``first_epoch_steps`` long where given."""
    if config.epoch_steps is not None:
        return list(config.epoch_steps)
    per_epoch = config.steps_per_epoch or inputs.steps_per_pass()
    epochs = config.epochs
    if epochs is None:
        epochs = recipe_for(family).default_epochs(per_epoch * inputs.global_batch)
    return [config.first_epoch_steps or per_epoch] + [per_epoch] * (epochs - 1)


def resumed_state(config: TrainConfig, epoch_steps: list[int], batch: int) -> TrainingState:
    """The saved state with ``resume`` (checked against this run's layout), else a fresh one."""
    fresh = TrainingState(epoch_steps=epoch_steps, global_batch=batch, seed=config.seed)
    if not config.resume:
        return fresh  # (a folder holding a run was refused or cleared by claim_run_folder)
    state = checkpoints.load_state(config.out_dir)
    if state is None:
        logger.warning("--resume: no backup in %s, starting from scratch", config.out_dir)
        return fresh
    state.check_compatible(epoch_steps, batch, config.seed)
    if state.epoch_steps != epoch_steps:
        logger.warning("resuming a run of epochs of %s steps as one of %s: the learning-rate "
                       "schedule follows", state.epoch_steps, epoch_steps)
        state.epoch_steps = list(epoch_steps)
    logger.info("resuming at global step %d (epoch %d, step %d of %d)", state.global_step,
                state.epoch + 1, state.step_in_epoch, state.steps_in_epoch(state.epoch))
    return state


def make_evaluate(run: Run) -> Callable[[Any], dict[str, Any]]:
    from keras_pose.evaluation import evaluate_coco

    config, paths = run.config, run.paths
    results = os.path.join(config.out_dir, "eval", "person_keypoints_results.json")

    def evaluate(model):
        return evaluate_coco(model, paths.val_annotations, paths.val_images,
                             det_file=paths.det_file, batch_size=config.eval_batch_size,
                             max_images=config.eval_max_images, results_file=results,
                             progress=False, dataset_info=run.inputs.dataset_info,
                             default_sigma=config.default_sigma)

    return evaluate


def make_callbacks(run: Run, progress: RunProgress) -> tuple[list, CocoEvaluation]:
    """The run's callbacks in their required order (see :mod:`~keras_pose.training.callbacks`);
    only the chief writes files."""
    config, chief = run.config, is_chief(run.strategy)
    out = config.out_dir
    evaluation = CocoEvaluation(make_evaluate(run), out if chief else None, progress,
                                config.eval_every, run.state.epochs - 1)
    callbacks = [progress, StopOnNonFiniteLoss(progress), LearningRateLogger(),
                 SyncReplicaStatistics(progress, config.backup_every)]
    if chief:
        callbacks += [StepBackup(out, progress, config.backup_every), evaluation,
                      RecordHistory(progress), EpochCheckpoint(out, config.keep_checkpoints),
                      RefreshBackupState(out, progress)]
        if config.tensorboard:
            callbacks.append(TensorBoardLogger(os.path.join(out, "logs"), progress,
                                               config.tensorboard_every))
    if run.plan is not None and run.plan.expected_seconds <= config.time_budget:
        callbacks.append(deadline_guard(run, progress))  # (a budget too short runs its plan)
    return callbacks, evaluation


def deadline_guard(run: Run, progress: RunProgress) -> StopAtDeadline:
    """The :class:`~keras_pose.training.callbacks.StopAtDeadline` of a budgeted run: its
    budget counts from the start of the process, and the last evaluation and the finish
    follow training."""
    from keras_pose.training import plan as planning

    elapsed = planning.elapsed_seconds(run.started)
    deadline = time.perf_counter() + run.config.time_budget - elapsed
    guard = StopAtDeadline(progress, deadline, 0.0, 0.0)
    guard_follows(run.plan, [guard])
    return guard


def guard_follows(plan: Any, callbacks: list) -> None:
    """Give the deadline guard among ``callbacks`` the step and evaluation times of ``plan``
    (the first plan's timed ones, then each re-plan's measured ones)."""
    from keras_pose.training import plan as planning

    for callback in callbacks:
        if isinstance(callback, StopAtDeadline):
            callback.step_seconds = plan.seconds_per_step
            callback.reserve_seconds = plan.eval_seconds + planning.FINISH_SECONDS


def fit(run: Run, callbacks: list) -> None:
    """``model.fit`` from the state's global step to the end: the rest of an interrupted epoch
    first (a ``fit`` call of its remaining steps), then each stretch of epochs of one length
    (one epoch at a time in a run that re-plans after each); the data stream starts where it
    stopped."""
    state, model = run.state, run.model
    verbose = run.config.verbose if is_chief(run.strategy) else 0
    evaluation = next((c for c in callbacks if isinstance(c, CocoEvaluation)), None)
    fit_seconds, trained_steps = 0.0, 0  # of this process's fit calls
    while state.global_step < run.total_steps:
        epoch, done = state.epoch, state.step_in_epoch
        last = epoch if done or run.replan else state.last_of_equal_epochs(epoch)
        extra = [StopAfterEpoch(last)] if last < state.epochs - 1 else []
        if done:
            logger.info("resuming epoch %d at step %d of %d", epoch + 1, done,
                        state.steps_in_epoch(epoch))
        started, first_step = time.perf_counter(), state.global_step
        model.fit(training_data(run), epochs=state.epochs, initial_epoch=epoch,
                  steps_per_epoch=state.steps_in_epoch(epoch) - done,
                  callbacks=callbacks + extra, verbose=verbose, shuffle=False)
        if state.global_step != state.steps_before(last + 1) or stopped_at_deadline(callbacks):
            break  # the run is complete, or a callback stopped it
        fit_seconds += time.perf_counter() - started
        trained_steps += state.global_step - first_step
        if run.replan and state.epoch < state.epochs:
            evaluated = evaluation.seconds_spent if evaluation is not None else 0.0
            replan(run, (fit_seconds - evaluated) / trained_steps,
                   evaluation.mean_seconds() if evaluation is not None else None)
            guard_follows(run.plan, callbacks)
        follow_schedule(run)


def stopped_at_deadline(callbacks: list) -> bool:
    return any(isinstance(c, StopAtDeadline) and c.stopped_at is not None for c in callbacks)


def replan(run: Run, seconds_per_step: float, eval_seconds: float | None) -> None:
    """Re-size the epochs left from the run's own step time (the mean over its epochs so far,
    their ends included: one epoch's mean moves by 5% on a shared machine) and evaluation time
    (see :func:`~keras_pose.training.plan.replan_budget`); the chief saves the new layout (a
    resume continues it) and prints its ``PLAN`` line where it changed."""
    from keras_pose.training import plan as planning

    elapsed = planning.elapsed_seconds(run.started)
    state = run.state
    plan = planning.replan_budget(run.plan, run.config.time_budget, elapsed, seconds_per_step,
                                  state.epoch, eval_seconds)
    changed = plan.epoch_steps != run.plan.epoch_steps
    state.epoch_steps = list(plan.epoch_steps)
    run.config = dataclasses.replace(run.config, epoch_steps=plan.epoch_steps)
    run.first_plan = run.first_plan or run.plan
    run.plan = plan
    if is_chief(run.strategy):
        checkpoints.write_state(run.config.out_dir, state)
        if changed:
            print(plan_line(run), flush=True)
        else:
            logger.info("%s", plan_line(run))


def follow_schedule(run: Run) -> None:
    """Make the optimizer's schedule the one of the state's next step (epochs of another
    length than the last train on another schedule; see
    :meth:`~keras_pose.training.checkpoints.TrainingState.schedule_steps_of`)."""
    steps = run.state.schedule_steps
    if steps == run.schedule_steps:
        return
    schedule = learning_rate_schedule(run.model.optimizer)
    if isinstance(schedule, ResizableSchedule):
        config = run.config
        schedule.resize(make_schedule(recipe_for(run.model.spec.family), steps,
                                      run.state.global_batch, config.learning_rate,
                                      config.schedule, config.decay_fraction))
    run.schedule_steps = steps


def training_data(run: Run):
    """The input of ``model.fit`` from the state's global step on."""
    address, step = run.config.data_service, run.state.global_step
    if not address:
        return run.inputs.distributed(run.strategy, step)
    if run.strategy.num_replicas_in_sync != 1:
        raise ValueError("data_service supports one replica; got "
                         f"{run.strategy.num_replicas_in_sync}")
    return run.inputs.on_service(address, step, os.path.join(run.config.out_dir, "data_service"))


class StopAfterEpoch(keras.callbacks.Callback):
    """Ends ``fit`` after epoch ``epoch`` (the shortened epoch of a resumed run)."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self.epoch:
            self.model.stop_training = True


def train(config: TrainConfig) -> dict[str, Any]:
    """Run ``config`` to the end; returns the summary (also written to ``summary.json``)."""
    return execute(prepare(config.resolved()))


def execute(run: Run) -> dict[str, Any]:
    """Train a prepared run to its last step, then (on the chief) save the final model,
    evaluate it, export and draw it, and write and print the summary. The run folder's lock
    is released and the global dtype policy restored at the end, whatever happens."""
    try:
        return _execute(run)
    finally:
        keras.mixed_precision.set_global_policy(run.previous_policy)
        if run.lock is not None:
            run.lock.release()


def _execute(run: Run) -> dict[str, Any]:
    progress = RunProgress(run.state)
    callbacks, evaluation = make_callbacks(run, progress)
    log_plan(run)
    fit(run, callbacks)
    if not is_chief(run.strategy):
        return {"global_step": run.state.global_step}
    out = run.config.out_dir
    checkpoints.save_model(run.model, os.path.join(out, FINAL_MODEL))
    evaluation.set_model(run.model)  # (also when fit had nothing left to do)
    model = evaluation.evaluation_model()
    metrics = evaluation.last_metrics
    if metrics is None or metrics["epoch"] != run.state.epochs:
        metrics = {**make_evaluate(run)(model), "epoch": run.state.epochs}
    artifacts = finish(run, model, metrics)
    summary = make_summary(run, metrics, artifacts, time.perf_counter() - run.started)
    checkpoints.write_json(summary, os.path.join(out, SUMMARY_FILE))
    print(summary_line(summary), flush=True)
    return summary


def finish(run: Run, model: Any, metrics: dict[str, Any]) -> dict[str, str]:
    """The export and the picture of predictions of ``model`` (the final weights, on one
    device), as configured; returns the paths of the run's products."""
    from keras_pose.training.artifacts import (
        draw_learning_curve,
        draw_predictions,
        export_saved_model,
    )

    artifacts = {"model": os.path.join(run.config.out_dir, FINAL_MODEL)}
    if run.state.best_ap is not None:
        artifacts["best_model"] = os.path.join(run.config.out_dir, "best.keras")
    if run.config.export:
        artifacts["saved_model"] = export_saved_model(
            float32_model(run, model), os.path.join(run.config.out_dir, SAVED_MODEL_DIR))
    if run.config.draw:
        artifacts["predictions"] = draw_predictions(
            model, run.paths.val_annotations, run.paths.val_images,
            os.path.join(run.config.out_dir, PREDICTIONS_PNG), metrics.get("results_file"))
        if any("seconds" in entry for entry in run.state.history):
            artifacts["learning_curve"] = draw_learning_curve(
                run.state.history, os.path.join(run.config.out_dir, LEARNING_CURVE_PNG))
    return artifacts


def float32_model(run: Run, model: Any) -> Any:
    """``model`` if it computes in float32, else a float32 copy with its weights (a mixed
    precision run trains in bfloat16 or float16; what it exports computes in float32)."""
    if run.policy == "float32":
        return model
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = build_run_model(run.config, run.inputs.dataset_info.num_keypoints)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    copy.set_weights(model.get_weights())
    return copy
