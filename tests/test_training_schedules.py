"""Learning-rate schedules and per-family recipes of keras_pose.training."""

import math

import keras
import numpy as np
import pytest

from keras_pose.models import TinyPoseModel
from keras_pose.training import (
    RECIPES,
    WarmupLinearDecay,
    WarmupMultiStep,
    make_optimizer,
    make_schedule,
)


def rates(schedule, steps):
    return np.array([float(schedule(step)) for step in steps])


def test_warmup_linear_decay_follows_the_megvii_solver():
    schedule = WarmupLinearDecay(4e-3, total_steps=1000, warmup_steps=100, warmup_factor=0.1)
    np.testing.assert_allclose(
        rates(schedule, [0, 50, 100, 550, 1000, 1200]),
        [4e-4, 4e-3 * (0.1 + 0.9 * 0.5), 4e-3, 2e-3, 0.0, 0.0],
        rtol=1e-5, atol=1e-12,
    )


def test_warmup_linear_decay_with_decay_steps_holds_the_peak_until_the_decay():
    schedule = WarmupLinearDecay(4e-3, total_steps=1000, warmup_steps=100, warmup_factor=0.1,
                                 decay_steps=300)
    np.testing.assert_allclose(
        rates(schedule, [0, 50, 100, 400, 700, 850, 1000, 1200]),
        [4e-4, 4e-3 * (0.1 + 0.9 * 0.5), 4e-3, 4e-3, 4e-3, 2e-3, 0.0, 0.0],
        rtol=1e-5, atol=1e-12,
    )
    whole = WarmupLinearDecay(4e-3, total_steps=1000, warmup_steps=100, decay_steps=900)
    steps = [0, 99, 100, 333, 999]
    np.testing.assert_allclose(rates(whole, steps),
                               rates(WarmupLinearDecay(4e-3, 1000, 100), steps), rtol=1e-6)


def test_runs_of_two_lengths_share_their_rates_until_the_shorter_decays():
    """What the decay fraction is for: a re-planned run's rate does not move before its decay."""
    short, long = (make_schedule(RECIPES["rsn"], total, 24, 1.2e-2, decay_fraction=0.3)
                   for total in (1358, 1458))
    shared = np.arange(40, 1358 - 407)
    np.testing.assert_array_equal(rates(short, shared), rates(long, shared))
    assert (short.decay_steps, long.decay_steps) == (407, 437)
    assert float(short(1357)) < float(long(1357)) < 1.2e-2
    linear = [make_schedule(RECIPES["rsn"], total, 24, 1.2e-2) for total in (1358, 1458)]
    assert float(linear[0](200)) < float(linear[1](200))


def test_decay_fraction_is_checked():
    with pytest.raises(ValueError, match="decay_fraction must be in"):
        make_schedule(RECIPES["rsn"], 100, 32, decay_fraction=1.5)
    with pytest.raises(ValueError, match="warmup_linear schedule, not 'multistep'"):
        make_schedule(RECIPES["cpn"], 100, 32, decay_fraction=0.3)
    with pytest.raises(ValueError, match="decay_steps"):
        WarmupLinearDecay(1e-3, total_steps=10, warmup_steps=2, decay_steps=9)
    whole = make_schedule(RECIPES["rsn"], 100, 32, decay_fraction=1.0)
    assert whole.decay_steps == 100 - whole.warmup_steps  # capped at the steps after warm-up


def test_warmup_multistep_decays_at_each_boundary():
    schedule = WarmupMultiStep(5e-4, boundaries=[10, 20], factor=0.5)
    np.testing.assert_allclose(rates(schedule, [0, 9, 10, 19, 20, 99]),
                               [5e-4, 5e-4, 2.5e-4, 2.5e-4, 1.25e-4, 1.25e-4], rtol=1e-6)
    warm = WarmupMultiStep(1.0, boundaries=[50], factor=0.1, warmup_steps=10, warmup_factor=0.001)
    np.testing.assert_allclose(rates(warm, [0, 5, 10, 49, 50]),
                               [0.001, 0.001 + 0.999 * 0.5, 1.0, 1.0, 0.1], rtol=1e-5)


def test_schedules_reject_inconsistent_arguments():
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupLinearDecay(1e-3, total_steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="increase"):
        WarmupMultiStep(1e-3, boundaries=[5, 5])


@pytest.mark.parametrize("schedule", [
    WarmupLinearDecay(1e-3, 500, 20, 0.1),
    WarmupLinearDecay(1e-3, 500, 20, 0.1, decay_steps=150),
    WarmupMultiStep(5e-4, [100, 300], 0.5, 10, 0.001),
])
def test_schedules_serialize(schedule):
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule))
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    steps = [0, 15, 150, 400, 600]
    np.testing.assert_allclose(rates(restored, steps), rates(schedule, steps))


def test_keras_file_with_a_scheduled_optimizer_round_trips(tmp_path):
    model = TinyPoseModel(input_shape=(32, 24, 3), num_keypoints=5, width=4)
    model.compile(optimizer=make_optimizer(model, total_steps=100, global_batch=64))
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(40)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    schedule = loaded.optimizer._learning_rate
    assert isinstance(schedule, WarmupLinearDecay)
    assert schedule.get_config() == model.optimizer._learning_rate.get_config()
    assert int(loaded.optimizer.iterations) == 40
    assert float(loaded.optimizer.learning_rate) == pytest.approx(
        float(model.optimizer.learning_rate))


@pytest.mark.parametrize("schedule, resized", [
    (WarmupLinearDecay(1.0, 100, 10, 0.1), WarmupLinearDecay(1.0, 180, 12, 0.1)),
    (WarmupLinearDecay(1.0, 100, 10, 0.1, 30), WarmupLinearDecay(1.0, 180, 12, 0.1, 54)),
    (WarmupMultiStep(1.0, [50, 80], 0.1, 5, 0.01), WarmupMultiStep(1.0, [90, 150], 0.1, 9, 0.01)),
])
def test_a_resizable_schedule_takes_a_new_length_after_tracing(schedule, resized):
    """A budgeted run re-plans its length after its training step is traced: the traced
    schedule must follow the new step counts without tracing again."""
    import tensorflow as tf

    steps = [0, 4, 7, 11, 60, 95, 120, 170, 200]
    before, after = rates(schedule, steps), rates(resized, steps)
    assert not np.allclose(before, after)
    schedule.make_resizable()
    traces = []

    @tf.function
    def traced(step):
        traces.append(step)
        return schedule(step)

    def traced_rates():
        return np.array([float(traced(tf.constant(step, tf.int64))) for step in steps])

    np.testing.assert_allclose(traced_rates(), before, rtol=1e-6)
    schedule.resize(resized)
    np.testing.assert_allclose(traced_rates(), after, rtol=1e-6)
    assert len(traces) == 1
    assert schedule.get_config() == resized.get_config()  # what a saved model records
    two_steps = WarmupMultiStep(1.0, [5, 8], 0.1)
    with pytest.raises(ValueError, match="resizable"):
        two_steps.resize(WarmupMultiStep(1.0, [6, 9], 0.1))
    two_steps.make_resizable()
    with pytest.raises(ValueError, match="not as many values"):
        two_steps.resize(WarmupMultiStep(1.0, [5], 0.1))


def test_tfcpn_halves_every_sixty_of_four_hundred_epochs():
    total = 4000
    schedule = make_schedule(RECIPES["cpn"], total, global_batch=256)
    assert isinstance(schedule, WarmupMultiStep)
    assert schedule.boundaries == [600, 1200, 1800, 2400, 3000, 3600]
    assert schedule.factor == 0.5 and schedule.warmup_steps == 0
    # Adam is invariant to tf-cpn's summed tower gradients: the rate does not scale.
    assert schedule.learning_rate == make_schedule(RECIPES["cpn"], total, 32).learning_rate == 5e-4
    assert RECIPES["cpn"].samples == 400 * 60_000


@pytest.mark.parametrize("family", ["mspn", "rsn"])
def test_megvii_recipe_scales_the_rate_with_the_batch(family):
    recipe = RECIPES[family]
    original = make_schedule(recipe, total_steps=96_000, global_batch=256)
    assert isinstance(original, WarmupLinearDecay)
    assert original.learning_rate == pytest.approx(5e-4 * 8)
    assert original.warmup_steps == 2_400 and original.warmup_factor == 0.1
    assert make_schedule(recipe, 1000, 32).learning_rate == pytest.approx(5e-4)
    assert recipe.default_epochs(149_813) == math.ceil(96_000 * 256 / 149_813)


def test_hourglass_and_cpm_recipes():
    assert make_schedule(RECIPES["hourglass"], 1000, 6) == pytest.approx(2.5e-4)
    cpm = make_schedule(RECIPES["cpm"], 210_000, 512)
    assert cpm.boundaries == [170_000, 200_000] and cpm.factor == 0.1
    assert cpm.warmup_factor == 0.001 and 1_500 < cpm.warmup_steps < 1_800
    assert cpm.learning_rate == 5e-4


def test_overrides_of_rate_and_schedule():
    recipe = RECIPES["rsn"]
    assert make_schedule(recipe, 100, 32, learning_rate=1e-2, schedule="constant") == 1e-2
    linear = make_schedule(RECIPES["cpn"], 100, 32, schedule="warmup_linear")
    assert isinstance(linear, WarmupLinearDecay) and linear.total_steps == 100
    with pytest.raises(ValueError, match="schedule"):
        make_schedule(recipe, 100, 32, schedule="cosine")


def test_optimizer_is_the_family_default_with_the_schedule():
    from keras_pose.models.hourglass import StackedHourglassModel

    hourglass = StackedHourglassModel(num_stacks=1, num_features=8, input_shape=(64, 64, 3))
    optimizer = make_optimizer(hourglass, total_steps=50, global_batch=6)
    assert isinstance(optimizer, keras.optimizers.RMSprop)
    assert optimizer.rho == pytest.approx(0.99) and optimizer.momentum == 0.0
    assert float(optimizer.learning_rate) == pytest.approx(2.5e-4)
    tiny = make_optimizer(TinyPoseModel(input_shape=(32, 24, 3)), total_steps=50, global_batch=8)
    assert isinstance(tiny, keras.optimizers.Adam)


