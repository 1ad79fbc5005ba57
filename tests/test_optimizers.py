"""keras_pose.optimizers.Adam: Keras' Adam computed by one fused TensorFlow kernel per variable.

Same weights as ``keras.optimizers.Adam`` within float tolerance (its ``1 - beta_2`` is rounded
in float32 by the kernel: a relative ~1e-5 on each update), one ``ResourceApplyAdam`` node per
variable in the traced step, the same variables and config, under MirroredStrategy too (see
tests/test_training_distributed.py, whose runs use the family's Adam)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_pose.optimizers import Adam, optimizer_class

SHAPES = [(3, 3, 4, 8), (8,), (5,)]


def run_steps(optimizer_type, steps=6, per_call=1, **options):
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=s).astype("float32")) for s in SHAPES]
    start = [v.numpy() for v in variables]
    # gradients from 1e-7 to 10: the kernel's epsilon and its large-gradient regime
    grads = [[(rng.normal(size=s) * 10 ** rng.uniform(-7, 1)).astype("float32")
              for s in SHAPES] for _ in range(steps)]
    optimizer = optimizer_type(learning_rate=2e-2, **options)
    optimizer.build(variables)

    @tf.function
    def step(*calls):
        for gradients in calls:  # per_call optimizer steps in one traced function
            optimizer.apply_gradients(zip(gradients, variables))

    for first in range(0, steps, per_call):
        step(*[[tf.constant(g) for g in gradients] for gradients in grads[first:][:per_call]])
    graph = step.get_concrete_function(*[[tf.TensorSpec(s) for s in SHAPES]] * per_call).graph
    return start, [v.numpy() for v in variables], [op.type for op in graph.get_operations()]


@pytest.mark.parametrize("options", [{}, {"weight_decay": 1e-2}, {"clipnorm": 0.5}])
def test_fused_adam_gives_keras_adams_weights(options):
    start, expected, keras_ops = run_steps(keras.optimizers.Adam, **options)
    _, fused, fused_ops = run_steps(Adam, **options)
    for before, want, got in zip(start, expected, fused):
        update = np.abs(want - before).max()
        assert update > 1e-3  # the steps moved the weights
        assert np.abs(got - want).max() <= 3e-5 * update
    assert fused_ops.count("ResourceApplyAdam") == len(SHAPES)
    assert "ResourceApplyAdam" not in keras_ops
    assert keras_ops.count("Sqrt") - fused_ops.count("Sqrt") == 2 * len(SHAPES)  # per variable
    assert fused_ops.count("Pow") == 2  # beta_1^t and beta_2^t once per step


def test_fused_adam_steps_twice_in_one_traced_function():
    """Several steps in one graph (as ``steps_per_execution`` may unroll them): each step's
    beta powers are its own."""
    start, expected, _ = run_steps(keras.optimizers.Adam)
    _, fused, ops = run_steps(Adam, per_call=2)
    assert ops.count("ResourceApplyAdam") == 2 * len(SHAPES) and ops.count("Pow") == 4
    for before, want, got in zip(start, expected, fused):
        assert np.abs(got - want).max() <= 3e-5 * np.abs(want - before).max()


def test_amsgrad_keeps_keras_update():
    start, expected, _ = run_steps(keras.optimizers.Adam, amsgrad=True)
    _, fused, ops = run_steps(Adam, amsgrad=True)
    assert "ResourceApplyAdam" not in ops
    for want, got in zip(expected, fused):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_same_variables_and_config_as_keras_adam(tmp_path):
    assert optimizer_class("Adam") is Adam
    assert optimizer_class("RMSprop") is keras.optimizers.RMSprop
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=Adam(1e-3, beta_2=0.99), loss="mse")
    model.fit(np.ones((4, 4)), np.zeros((4, 2)), verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.optimizer) is Adam
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    names = [v.name for v in model.optimizer.variables]
    keras_adam = keras.optimizers.Adam(1e-3)
    keras_adam.build(model.trainable_variables)
    assert names == [v.name for v in keras_adam.variables]
    for mine, theirs in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))


def test_one_training_step_of_rsn18_matches_keras_adam():
    """The family optimizer of RSN, one step of the whole model (losses, BatchNorm, bf16 off)."""
    from keras_pose.models import build_model

    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    weights = None
    results = []
    for optimizer_type in (keras.optimizers.Adam, Adam):
        model = build_model("rsn18", input_shape=(64, 64, 3), compile=False)
        if weights is None:
            weights = model.get_weights()
            images = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
            targets = {o.name: rng.uniform(0, 1, (2, *model.spec.heatmap_size(o.name), 17))
                       .astype("float32") for o in model.spec.outputs}
            masks = {o.name: np.ones((2, 17), "float32") for o in model.spec.outputs}
        model.set_weights(weights)
        model.compile(optimizer=optimizer_type(learning_rate=1e-3))
        model.train_on_batch(images, targets, masks)
        results.append(model.get_weights())
    assert type(model.optimizer) is Adam
    moved = 0
    for before, want, got in zip(weights, *results):
        update = np.abs(want - before)
        moved += int(update.max() > 0)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5 * max(update.max(), 1e-3))
    assert moved > len(weights) // 2
