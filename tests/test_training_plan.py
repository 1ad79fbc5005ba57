"""A run sized by a time budget: durations, CPU/GPU detection, precision, the plan itself, the
main job's defaults with and without a GPU, the re-plan after the first epoch, and a tiny
budgeted run end to end (plan lines, schedule over the planned steps, weights untouched by the
timing, the re-planned run repeated by its flags, learning curve)."""

import dataclasses

import cv2
import keras
import numpy as np
import pytest

from keras_pose.training import checkpoints
from keras_pose.training import plan as planning
from keras_pose.training.checkpoints import TrainingState
from keras_pose.training.config import TrainConfig
from keras_pose.training.plan import (
    BudgetPlan,
    cpu_flags,
    cpu_has_bf16,
    parse_duration,
    plan_budget,
    precision_policy,
    replan_budget,
)


@pytest.mark.parametrize("text, seconds", [
    ("15m", 900), ("900s", 900), ("900", 900), ("1h30m", 5400), ("2.5m", 150), (42, 42),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "15 minutes", "-5m", "0", 0, "abc"])
def test_bad_durations_name_the_flag(text):
    with pytest.raises(ValueError, match="--time-budget"):
        parse_duration(text)


def test_cpu_bf16_is_read_from_the_cpu_flags(tmp_path):
    def cpuinfo(flags):
        path = tmp_path / f"cpuinfo-{len(flags)}"
        path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\nbogomips\t: 1\n")
        return str(path)

    assert cpu_has_bf16(cpu_flags(cpuinfo("avx512f avx512_bf16")))
    assert cpu_has_bf16(cpu_flags(cpuinfo("amx_tile amx_bf16 amx_int8")))
    assert not cpu_has_bf16(cpu_flags(cpuinfo("avx2 avx512f avx512_vnni")))
    assert cpu_flags(str(tmp_path / "missing")) == set()


def test_process_age_counts_from_the_process_start():
    import subprocess
    import sys
    import time

    age = planning.process_seconds()
    assert age > 0  # this process imported TensorFlow a while ago
    code = ("import time; time.sleep(1.0); from keras_pose.training.plan import "
            "process_seconds; print(process_seconds())")
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout)
    assert 1.0 <= child < 60
    time.sleep(0.05)
    assert planning.process_seconds() > age


def test_precision_policy():
    # an explicit choice is kept; the older --mixed-precision switch wins
    assert precision_policy("fp32", False, True, False, True) == "float32"
    assert precision_policy("bf16", False, False, False, False) == "mixed_bfloat16"
    assert precision_policy("fp32", True, False, True, False) == "mixed_float16"
    assert precision_policy("fp32", True, False, False, False) == "mixed_bfloat16"
    # auto: float32 unless budgeted, on a bf16 CPU, without GPU, and AUTO_BF16 measured so
    for gpu, cpu_bf16, budgeted in [(True, True, True), (False, False, True),
                                    (False, True, False)]:
        assert precision_policy("auto", False, budgeted, gpu, cpu_bf16) == "float32"
    expected = "mixed_bfloat16" if planning.AUTO_BF16 else "float32"
    assert precision_policy("auto", False, True, False, True) == expected
    with pytest.raises(ValueError, match="--precision"):
        precision_policy("fp16", False, True, False, True)


def test_plan_fits_the_budget_and_scales_with_the_step_time():
    slow = plan_budget(900, 60, 0.62, 15)
    fast = plan_budget(900, 60, 0.31, 15)
    for plan in (slow, fast):
        first, *rest = plan.epoch_steps
        assert len(set(rest)) == 1 and first <= rest[0] < 2 * first
        assert first & (first - 1) == 0  # the first epoch: a power of two
        assert plan.total_steps == first + (plan.epochs - 1) * rest[0]
        assert 800 < plan.expected_seconds <= 900
        assert plan.eval_every * planning.EVALUATIONS >= plan.epochs  # evaluations spread out
    assert 1.9 < fast.total_steps / slow.total_steps < 2.1
    assert plan_budget(900, 60, 0.62, 15) == slow  # a pure function of what was measured
    # a few percent of timing noise rarely moves the plan (steps in STEP_QUANTUM units), and
    # 10% (two fresh clones timed 0.54 and 0.60 s) leaves the first epoch alone
    assert plan_budget(900, 60, 0.621, 15).total_steps == slow.total_steps
    assert plan_budget(900, 60, 0.68, 15).epoch_steps[0] == slow.epoch_steps[0]
    assert slow.flags() == "--epoch-steps " + ",".join(map(str, slow.epoch_steps))


def run_and_replan(first: BudgetPlan, epochs: int, seconds_per_step: float) -> BudgetPlan:
    """The plan after ``epochs`` epochs of a run whose steps take ``seconds_per_step`` (the
    first epoch's at the first plan's speed), re-planned after each."""
    plan, elapsed = first, 45 + first.epoch_steps[0] * first.seconds_per_step
    for done in range(1, epochs + 1):
        if done > 1:
            elapsed += plan.epoch_steps[done - 1] * seconds_per_step
        elapsed += planning.EPOCH_END_SECONDS + first.eval_seconds * (done % plan.eval_every == 0)
        before = plan
        plan = replan_budget(plan, 900, elapsed, seconds_per_step, done)
        assert plan.epoch_steps[:done] == before.epoch_steps[:done]  # the epochs done stay
    return plan


@pytest.mark.parametrize("done", [1, 4, 7])
@pytest.mark.parametrize("first_seconds, run_seconds", [(0.5, 0.4), (0.4, 0.5), (0.4, 0.4)])
def test_replan_sizes_the_epochs_left_from_the_run_own_steps(first_seconds, run_seconds, done):
    """The first plan rests on a few timed steps; after each epoch the run knows its own step
    time and re-sizes the epochs left to end on time."""
    first = plan_budget(900, 45, first_seconds, 8)
    plan = run_and_replan(first, done, run_seconds)
    assert plan.epochs == first.epochs and plan.eval_every == first.eval_every
    left = plan.epoch_steps[done:]
    assert len(set(left)) == 1 and left[0] % planning.EPOCH_QUANTUM == 0
    assert (plan.seconds_per_step, plan.after_epoch) == (run_seconds, done)
    # it ends within one quantum of steps per epoch left of the budget less the margin
    slack = len(left) * planning.EPOCH_QUANTUM * run_seconds
    assert 900 - planning.MARGIN_SECONDS - slack <= plan.expected_seconds
    assert plan.expected_seconds <= 900 - planning.MARGIN_SECONDS
    # a faster run than timed gets longer epochs, a slower one shorter; an equal one about
    # the same (the first plan's rounding, and its epoch-end estimate, which the re-plan
    # measures within the step time)
    change = plan.total_steps - first.total_steps
    if first_seconds == run_seconds:
        assert -len(left) * planning.EPOCH_QUANTUM <= change <= planning.STEP_QUANTUM + (
            first.epochs * planning.EPOCH_END_SECONDS / run_seconds)
    else:
        assert np.sign(change) == np.sign(first_seconds - run_seconds)
        assert abs(change) > 0.15 * sum(first.epoch_steps[1:])
    assert plan.flags() == "--epoch-steps " + ",".join(map(str, plan.epoch_steps))


def test_each_replan_moves_only_the_epochs_left():
    """A run whose steps speed up after its first re-plan (run O of the main job: 0.72 s a
    step in its first epoch, 0.56-0.62 later) gets the time back at the next one, and a
    measured evaluation replaces the estimate."""
    plan = plan_budget(900, 45, 0.77, 8)
    elapsed = 45 + plan.epoch_steps[0] * 0.72
    plan = replan_budget(plan, 900, elapsed, 0.72, 1)
    elapsed += sum(plan.epoch_steps[1:4]) * 0.6 + 8
    later = replan_budget(plan, 900, elapsed, 0.6, 4)
    assert later.epoch_steps[:4] == plan.epoch_steps[:4]
    assert later.epoch_steps[4] > 1.1 * plan.epoch_steps[4]
    evaluations = planning.evaluations_after(4, plan.epochs, plan.eval_every)
    unused = 900 - (elapsed + sum(plan.epoch_steps[4:]) * 0.6
                    + evaluations * plan.eval_seconds + planning.FINISH_SECONDS)
    assert unused > 60  # what keeping the first re-plan would have left unused
    assert planning.MARGIN_SECONDS <= 900 - later.expected_seconds <= (
        planning.MARGIN_SECONDS + 4 * planning.EPOCH_QUANTUM * 0.6)
    slow_evaluations = replan_budget(plan, 900, elapsed, 0.6, 4, eval_seconds=60.0)
    assert slow_evaluations.eval_seconds == 60.0
    assert slow_evaluations.total_steps < later.total_steps  # two evaluations left, 52 s more
    assert replan_budget(later, 900, elapsed, 0.6, 8) == later  # nothing left to re-plan


def test_epochs_of_their_own_lengths_in_the_training_state():
    state = TrainingState(epoch_steps=[3, 5, 5])
    assert state.total_steps == 3 + 2 * 5
    located = [state.locate(step) for step in (0, 2, 3, 7, 8, 12, 13)]
    assert located == [(0, 0), (0, 2), (1, 0), (1, 4), (2, 0), (2, 4), (3, 0)]
    assert [state.steps_in_epoch(e) for e in range(3)] == [3, 5, 5]
    # the first epoch trains on the schedule of 3 epochs of its length, the rest on the run's
    assert state.schedule_steps == 9
    state.global_step = 3
    assert (state.epoch, state.step_in_epoch, state.schedule_steps) == (1, 0, 13)
    uniform = TrainingState(epoch_steps=[5, 5, 5], global_step=7)
    assert (uniform.total_steps, uniform.epoch, uniform.step_in_epoch) == (15, 1, 2)
    assert uniform.schedule_steps == 15 and uniform.schedules_left() == {15}
    # re-planned twice: each epoch trains on the run its plan then foresaw
    replanned = TrainingState(epoch_steps=[2, 3, 4, 4])
    assert [replanned.schedule_steps_of(e) for e in range(4)] == [8, 11, 13, 13]
    assert replanned.schedules_left() == {8, 11, 13}
    assert [replanned.last_of_equal_epochs(e) for e in range(4)] == [0, 1, 3, 3]
    # a resume must keep the epochs up to the one it resumes in; later ones may change
    state.check_compatible([3, 5, 9], 0, 0)
    with pytest.raises(ValueError, match="epoch steps"):
        state.check_compatible([3, 6, 5], 0, 0)
    with pytest.raises(ValueError, match="epoch steps"):
        state.check_compatible([5, 5, 5], 0, 0)


def test_epoch_layouts_from_the_settings():
    from keras_pose.training.trainer import epoch_layout

    class Inputs:
        global_batch = 4

        @staticmethod
        def steps_per_pass():
            return 7

    def layout(**changes):
        config = dataclasses.replace(TrainConfig(model="tiny", data_dir="d"), **changes)
        return epoch_layout(config.resolved(), Inputs, "rsn")

    assert layout(epochs=3) == [7, 7, 7]
    assert layout(epochs=3, steps_per_epoch=5, first_epoch_steps=2) == [2, 5, 5]
    assert layout(epoch_steps="2, 3,4") == layout(epoch_steps=(2, 3, 4)) == [2, 3, 4]
    for wrong, message in [("2,x", "integers >= 1"), ((2, 0), "integers >= 1"), ((), ">= 1")]:
        with pytest.raises(ValueError, match=message):
            layout(epoch_steps=wrong)
    with pytest.raises(ValueError, match="drop --steps-per-epoch, --epochs 2"):
        layout(epoch_steps=(2, 3, 4), steps_per_epoch=3, epochs=2)
    assert layout(epoch_steps=(2, 3), epochs=2) == [2, 3]


def test_plan_with_fixed_epoch_length_and_a_budget_too_small():
    plan = plan_budget(900, 60, 0.6, 15, steps_per_epoch=184)
    assert set(plan.epoch_steps) == {184} and plan.expected_seconds <= 900
    tiny = plan_budget(30, 60, 0.6, 15)
    assert tiny.total_steps >= planning.STEP_QUANTUM // 2 and tiny.epochs >= 1
    with pytest.raises(ValueError, match="seconds_per_step"):
        plan_budget(900, 0, 0.0, 15)


def fake_gpu(monkeypatch):
    import tensorflow as tf

    real = tf.config.list_physical_devices

    def devices(kind=None):
        if kind == "GPU":
            return [tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")]
        return real(kind)

    monkeypatch.setattr(tf.config, "list_physical_devices", devices)


def test_main_job_is_budgeted_and_explicit_epochs_win():
    from keras_pose.training import TrainConfig
    from keras_pose.training.config import MAIN_JOB_CPU

    main = TrainConfig().resolved()
    assert main.budgeted and main.time_budget == 900 and main.epochs is None
    assert main.eval_every is None  # planned
    assert main.input_size == MAIN_JOB_CPU["input_size"]
    assert main.model_kwargs == {"target_kernels": (7, 5, 5, 3, 3)}  # 32x24 heatmaps
    assert TrainConfig(input_size=(256, 192)).resolved().model_kwargs == {}  # the originals'
    mine = TrainConfig(model_kwargs={"target_kernels": [9, 7, 5, 3, 1]}).resolved()
    assert mine.model_kwargs == {"target_kernels": [9, 7, 5, 3, 1]}
    fixed = TrainConfig(epochs=3).resolved()
    assert not fixed.budgeted and fixed.time_budget is None and fixed.epochs == 3
    assert TrainConfig(epochs=3, time_budget="5m").resolved().time_budget is None
    other = TrainConfig(model="hourglass").resolved()  # another model: 6 epochs, no budget
    assert not other.budgeted and other.epochs == 6
    coco = TrainConfig(data_dir="/data/coco", model="cpn50", time_budget="2h").resolved()
    assert coco.budgeted and coco.time_budget == 7200
    with pytest.raises(ValueError, match="--time-budget"):
        TrainConfig(time_budget="soon").resolved()
    with pytest.raises(ValueError, match="--precision"):
        TrainConfig(precision="fp16").resolved()


def test_main_job_decodes_with_dark_on_cpu_and_the_model_keeps_it():
    from keras_pose.training import TrainConfig
    from keras_pose.training.trainer import build_run_model

    assert TrainConfig().resolved().decode_refine == "dark"  # 32x24 heatmaps: 4 px a cell
    assert TrainConfig(decode_refine="quarter").resolved().decode_refine == "quarter"
    assert TrainConfig(model="cpn50").resolved().decode_refine is None  # the family's own
    with pytest.raises(ValueError, match="--decode-refine"):
        TrainConfig(decode_refine="bilinear").resolved()
    config = TrainConfig(model="tiny", input_size=(32, 24), decode_refine="none").resolved()
    assert build_run_model(config, 17).decode_refine is None
    config = TrainConfig(model="tiny", input_size=(32, 24), decode_refine="dark").resolved()
    assert build_run_model(config, 17).spec.final.codec.refine == "dark"
    plain = TrainConfig(model="tiny", input_size=(32, 24)).resolved()
    assert build_run_model(plain, 17).decode_refine == "quarter"


def test_main_job_trains_with_the_family_augmentation_cut_to_its_flips():
    from keras_pose.data.transforms import augment_config_for
    from keras_pose.models import RSN18
    from keras_pose.training import TrainConfig
    from keras_pose.training.config import AUGMENT_PRESETS

    assert TrainConfig().resolved().augment == "short"
    assert TrainConfig(model="cpn50").resolved().augment is None  # the family's own
    assert TrainConfig(augment="family").resolved().augment == "family"
    with pytest.raises(ValueError, match="--augment"):
        TrainConfig(augment="strong").resolved()
    spec = RSN18(input_shape=(64, 64, 3), num_keypoints=17).spec
    family = augment_config_for(spec)
    short = augment_config_for(spec, **AUGMENT_PRESETS["short"])
    assert family.random_extension != (0, 0) and short.random_extension == (0, 0)
    assert short.rotation == 0 < family.rotation
    assert short.half_body_prob == 0 < family.half_body_prob
    assert short.scale == (1, 1) != family.scale
    assert (short.flip_prob, short.box_extension) == (family.flip_prob, family.box_extension)


def test_with_a_gpu_the_main_job_trains_at_full_size(monkeypatch):
    from keras_pose.models import build_model
    from keras_pose.training import TrainConfig
    from keras_pose.training.plan import gpu_visible

    fake_gpu(monkeypatch)
    assert gpu_visible()
    main = TrainConfig().resolved()
    assert main.budgeted and main.input_size is None  # the family's own input size
    assert main.model_kwargs == {}  # and its own label kernels
    assert main.decode_refine is None  # and its own decode (64x48 heatmaps)
    full = build_model(main.model, compile=False).spec.input_size
    assert tuple(full) == (256, 192)
    assert precision_policy("auto", False, True, gpu_visible(), True) == "float32"


def tiny_config(tmp_path, **changes):
    from keras_pose.training import TrainConfig

    config = TrainConfig(model="tiny", input_size=(64, 48), num_train_images=6,
                         num_val_images=2, batch_size=4, out_dir=str(tmp_path / "run"),
                         synthetic_dir=str(tmp_path / "synthetic"), export=False,
                         tensorboard=False, verbose=0, backup_every=0)
    return dataclasses.replace(config, **changes).resolved()


def test_budgeted_run_plans_its_schedule_and_draws_its_learning_curve(tmp_path, monkeypatch,
                                                                      capsys, caplog):
    from keras_pose.training.trainer import execute, prepare

    monkeypatch.setattr(planning, "STEP_QUANTUM", 4)
    monkeypatch.setattr(planning, "EPOCH_QUANTUM", 3)
    monkeypatch.setattr(planning, "EPOCHS_PER_PLAN", 3)
    monkeypatch.setattr(planning, "FINISH_SECONDS", 0.0)
    reference = prepare(tiny_config(tmp_path / "reference", epochs=1, precision="fp32"))
    reference.lock.release()
    traces = count_class_traces(monkeypatch, type(reference.model))
    # far too short: the smallest plan, re-planned after epoch 1 to the smallest epochs
    run = prepare(tiny_config(tmp_path, time_budget=1, precision="fp32", decay_fraction=0.5))
    assert len(traces) == 1  # the timed steps traced the run's step
    assert "time budget (1 s) is too short" in caplog.text
    assert isinstance(run.plan, BudgetPlan) and run.plan.seconds_per_step > 0
    assert run.state.epoch_steps == [1, 1, 1]
    assert run.config.eval_every == 1
    schedule = run.model.optimizer._learning_rate  # noqa: SLF001
    assert schedule.total_steps == run.total_steps == 3  # the schedule decays over the plan
    assert schedule.decay_steps == 2  # over its last half (rounded)
    # the timed steps were undone: same seed, same initial weights (BatchNorm included), and
    # the optimizer at step 0 with zero moments
    for mine, theirs in zip(run.model.get_weights(), reference.model.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    optimizer_state = [v.numpy() for v in run.model.optimizer.variables]
    assert len(optimizer_state) == len(reference.model.optimizer.variables) > 2
    for mine, theirs in zip(optimizer_state, reference.model.optimizer.variables):
        np.testing.assert_array_equal(mine, theirs.numpy())

    # re-planned after each epoch from the run's own times; the second re-plan (made one step
    # longer here, as a machine that sped up would) moves the last epoch alone
    replans = []

    def replan_budget(plan, budget, elapsed, seconds_per_step, done, eval_seconds=None):
        replans.append((done, seconds_per_step, eval_seconds))
        plan = real_replan_budget(plan, budget, elapsed, seconds_per_step, done, eval_seconds)
        if done == 2:
            plan = dataclasses.replace(plan, epoch_steps=plan.epoch_steps[:2] + (4,))
        return plan

    real_replan_budget = planning.replan_budget
    monkeypatch.setattr(planning, "replan_budget", replan_budget)
    summary = execute(run)
    assert len(traces) == 1  # neither the run, its re-plans nor its other fits traced again
    assert [done for done, _, _ in replans] == [1, 2]
    assert all(seconds > 0 and evaluation > 0 for _, seconds, evaluation in replans)
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run
    printed = capsys.readouterr().out
    plan_lines = [line for line in printed.splitlines() if line.startswith("PLAN tiny 64x48")]
    assert len(plan_lines) == 3 and "3 epochs x 1 steps of 4 = 3 steps" in plan_lines[0]
    assert "s/step measured" in plan_lines[0]
    assert "--epochs 3 --steps-per-epoch 1 --seed 0 --precision fp32" in plan_lines[0]
    assert "1 epoch x 1 + 2 x 3 steps of 4 = 7 steps" in plan_lines[1]
    assert "s/step in epoch 1" in plan_lines[1]
    assert "3 epochs of 1/3/4 steps of 4 = 8 steps" in plan_lines[2]
    assert "s/step in epochs 1-2" in plan_lines[2]
    repeat = "--epoch-steps 1,3,4 --seed 0 --precision fp32"
    assert repeat in plan_lines[2]
    assert summary["first_plan"]["total_steps"] == 3
    assert summary["plan"]["total_steps"] == summary["global_step"] == 8
    assert summary["epoch_steps"] == [1, 3, 4]
    assert (schedule.total_steps, schedule.decay_steps) == (8, 4)  # re-sized to the last plan
    assert [entry["global_step"] for entry in summary["history"]] == [1, 4, 8]
    seconds = [entry["seconds"] for entry in summary["history"]]
    assert len(seconds) == 3 and 0 < seconds[0] < seconds[1] < seconds[2]
    saved = checkpoints.load_state(run.config.out_dir)
    assert (saved.epoch_steps, saved.global_step) == ([1, 3, 4], 8)

    # the flags repeat the run exactly: same data, same schedules, same weights
    again = prepare(tiny_config(tmp_path / "repeat", epoch_steps="1,3,4", precision="fp32",
                                decay_fraction=0.5, draw=False))
    assert execute(again)["global_step"] == 8
    for mine, theirs in zip(run.model.get_weights(), again.model.get_weights()):
        np.testing.assert_array_equal(mine, theirs)

    curve = cv2.imread(summary["artifacts"]["learning_curve"])
    assert curve is not None and curve.shape[:2] == (540, 720)
    assert curve.std() > 0 and (curve != 255).any(axis=2).mean() > 0.01


def test_a_budgeted_run_that_slows_down_stops_at_its_deadline(tmp_path, monkeypatch, capsys,
                                                               caplog):
    """A plan that fits its budget gets a deadline guard: when the budget's end comes closer
    than planned (here: the run's start is moved back once it is prepared, as if the machine
    had been slower than timed), training stops at the step after which the rest would not
    fit, and the run still saves, evaluates and reports its model."""
    import time

    from keras_pose.training.trainer import execute, prepare

    monkeypatch.setattr(planning, "FINISH_SECONDS", 0.0)
    budget = 4 * 3600  # (longer than the test process has been running)
    run = prepare(tiny_config(tmp_path, time_budget=budget, precision="fp32", draw=False))
    assert run.plan.expected_seconds <= budget and run.total_steps > 1000
    run.started = time.perf_counter() - (budget - 15)  # the budget ends in 15 s
    assert planning.process_seconds() < budget - 15
    summary = execute(run)
    assert 0 < summary["global_step"] < summary["plan"]["total_steps"] == run.total_steps
    assert "stopping training at step" in caplog.text
    final = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FINAL")]
    assert f"{summary['global_step']} steps of 4 (stopped at the time budget" in final[0]
    assert np.isfinite(summary["metrics"]["AP"])
    assert checkpoints.load_state(run.config.out_dir).global_step == summary["global_step"]


def test_the_deadline_guard_follows_each_plan():
    """The guard's "one more step" and its reserve for the last evaluation and the finish are
    the plan's: the first plan's timed step and estimated evaluation, then a re-plan's
    measured ones."""
    from keras_pose.training.callbacks import RunProgress, StopAtDeadline
    from keras_pose.training.trainer import guard_follows

    first = plan_budget(900, 45, 0.9, 12.0)
    replanned = replan_budget(first, 900, 130, 0.55, 1, eval_seconds=4.0)
    guard = StopAtDeadline(RunProgress(TrainingState(epoch_steps=[5])), 0.0, 0.0, 0.0)
    callbacks = [object(), guard]
    guard_follows(first, callbacks)
    assert (guard.step_seconds, guard.reserve_seconds) == (
        0.9, 12.0 + planning.FINISH_SECONDS)
    guard_follows(replanned, callbacks)
    assert (guard.step_seconds, guard.reserve_seconds) == (
        0.55, 4.0 + planning.FINISH_SECONDS)


def count_class_traces(monkeypatch, model_class) -> list:
    """The list to which each trace of a training step of ``model_class`` appends its input."""
    traces = []
    train_step = model_class.train_step

    def counted_step(self, data):
        traces.append(data)
        return train_step(self, data)

    monkeypatch.setattr(model_class, "train_step", counted_step)
    return traces


def count_traces(model) -> list:
    """The list to which each trace of ``model``'s training step appends its input."""
    traces = []
    train_step = model.train_step

    def counted_step(data):
        traces.append(data)
        return train_step(data)

    model.train_step = counted_step
    return traces


def test_a_run_traces_its_training_step_once(tmp_path):
    """Keras creates the compiled losses' trackers while tracing the first step unless they
    exist, and a ``tf.function`` that creates variables is traced again: the main job's first
    step took 32 s instead of 22. ``prepare_fit`` builds them before ``fit``."""
    from keras_pose.training.trainer import execute, prepare

    run = prepare(tiny_config(tmp_path, epochs=1, steps_per_epoch=3, draw=False))
    traces = count_traces(run.model)
    execute(run)
    assert run.state.global_step == 3 and len(traces) == 1


def test_a_bf16_run_exports_a_float32_copy_with_its_weights(tmp_path):
    import keras

    from keras_pose.training.trainer import float32_model, prepare

    run = prepare(tiny_config(tmp_path, epochs=1, precision="bf16"))
    try:
        assert run.policy == "mixed_bfloat16"
        copy = float32_model(run, run.model)
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # left as it was
        assert copy is not run.model and copy.compute_dtype == "float32"
        assert all(layer.compute_dtype == "float32" for layer in copy.layers)
        for mine, theirs in zip(copy.get_weights(), run.model.get_weights()):
            np.testing.assert_array_equal(mine, theirs)
        crops = np.random.default_rng(0).uniform(-1, 1, (2, 64, 48, 3)).astype("float32")
        outputs = copy.predict(crops, verbose=0)
        outputs = outputs if isinstance(outputs, dict) else {"out": outputs}
        assert all(np.asarray(v).dtype == np.float32 for v in outputs.values())
    finally:
        run.lock.release()
        keras.mixed_precision.set_global_policy("float32")


def test_learning_curve_is_drawn_from_the_history(tmp_path):
    from keras_pose.training.artifacts import draw_learning_curve

    history = [{"epoch": i + 1, "seconds": 120.0 * (i + 1), "loss": 600.0 / (1 + i)}
               for i in range(4)]
    history[1]["val_AP"], history[3]["val_AP"] = 0.1, 0.3
    image = cv2.imread(draw_learning_curve(history, str(tmp_path / "curve.png")))
    assert image.shape[:2] == (540, 720)
    loss_colour = np.all(image == (200, 80, 30), axis=2)
    ap_colour = np.all(image == (40, 40, 200), axis=2)
    assert loss_colour[:270].sum() > 200 and loss_colour[270:].sum() == 0
    assert ap_colour[270:].sum() > 200 and ap_colour[:270].sum() == 0
    with pytest.raises(ValueError, match="no timed epoch"):
        draw_learning_curve([{"epoch": 1, "loss": 1.0}], str(tmp_path / "none.png"))


@pytest.mark.parametrize("stop_at", [1, 3, 6])
def test_a_run_of_epochs_of_their_own_lengths_resumes_exactly(tmp_path, monkeypatch, stop_at):
    """Stopped inside any of its epochs (each on its own schedule), a run of epochs of
    different lengths (a re-planned run's) resumes to the same weights."""
    from keras_pose.training import trainer

    def config(name, **changes):
        return tiny_config(tmp_path, out_dir=str(tmp_path / name), epoch_steps=(2, 3, 4),
                           precision="fp32", draw=False, backup_every=1,
                           **changes)

    reference = trainer.prepare(config("reference"))
    trainer.execute(reference)

    class Interrupt(keras.callbacks.Callback):
        def __init__(self, progress):
            super().__init__()
            self.progress = progress

        def on_train_batch_end(self, batch, logs=None):
            if self.progress.global_step == stop_at:
                raise KeyboardInterrupt

    make_callbacks = trainer.make_callbacks

    def interrupted_callbacks(run, progress):
        callbacks, evaluation = make_callbacks(run, progress)
        return callbacks + [Interrupt(progress)], evaluation

    monkeypatch.setattr(trainer, "make_callbacks", interrupted_callbacks)
    with pytest.raises(KeyboardInterrupt):
        trainer.execute(trainer.prepare(config("stopped")))
    monkeypatch.setattr(trainer, "make_callbacks", make_callbacks)
    assert checkpoints.load_state(tmp_path / "stopped").global_step == stop_at

    resumed = trainer.prepare(config("stopped", resume=True))
    assert resumed.state.global_step == stop_at
    assert trainer.execute(resumed)["global_step"] == 9
    schedule = resumed.model.optimizer._learning_rate  # noqa: SLF001
    assert schedule.total_steps == 9
    for mine, theirs in zip(resumed.model.get_weights(), reference.model.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
