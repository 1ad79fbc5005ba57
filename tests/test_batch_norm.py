"""The training-speed changes compute what the code before them computed.

The fused BatchNorm against Keras' BatchNormalization, layer by layer (tight tolerances), and one
whole training step of a model with every speed change (fused BatchNorm, RSB split) against the
same step with Keras' BatchNormalization and static slices.
"""

import keras
import numpy as np
import pytest

from keras_pose.layers import BatchNorm, rsb
from keras_pose.losses import KeypointMSE
from keras_pose.models import build_model

BATCH = 8


def _layer_pair(policy: str, channels: int):
    rng = np.random.default_rng(1)
    weights = [
        rng.uniform(0.5, 1.5, channels),  # gamma
        rng.normal(0, 0.5, channels),  # beta
        rng.normal(0, 1, channels),  # moving mean
        rng.uniform(0.5, 2.0, channels),  # moving variance
    ]
    layers = []
    for cls in (keras.layers.BatchNormalization, BatchNorm):
        layer = cls(momentum=0.9, epsilon=1e-5, dtype=policy)
        layer.build((None, 6, 5, channels))
        layer.set_weights([w.astype(np.float32) for w in weights])
        layers.append(layer)
    return layers


def _forward_backward(layer, x, training: bool):
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2 * tf.range(1.0, y.shape[-1] + 1.0))
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return [np.asarray(tf.cast(v, tf.float32)) for v in [y, *grads]] + [
        np.asarray(w) for w in layer.non_trainable_weights
    ]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("policy,tol", [("float32", 1e-4), ("mixed_bfloat16", 2e-2)])
def test_batch_norm_matches_keras(policy, tol, training):
    reference, fused = _layer_pair(policy, channels=7)
    initial_mean = np.asarray(fused.moving_mean).copy()
    x = np.random.default_rng(2).normal(1.0, 3.0, (4, 6, 5, 7)).astype(np.float32)
    expected = _forward_backward(reference, x, training)
    got = _forward_backward(fused, x, training)
    names = ["output", "d/dx", "d/dgamma", "d/dbeta", "moving_mean", "moving_variance"]
    for name, want, have in zip(names, expected, got):
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(have, want, atol=tol * scale, rtol=tol, err_msg=name)
    assert np.allclose(got[4], initial_mean) != training  # moved in training only


def test_batch_norm_config_round_trip():
    layer = BatchNorm(momentum=0.8, epsilon=1e-3, name="bn")
    clone = BatchNorm.from_config(layer.get_config())
    assert (clone.momentum, clone.epsilon, clone.name) == (0.8, 1e-3, "bn")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is BatchNorm


def _one_step_weights(name: str, input_shape, image_scales=(1.0,), seed: int = 0):
    """Loss, per-variable update and BatchNorm statistics of one SGD step from the same start,
    once per image scale (the model is built and its step traced once)."""
    keras.utils.set_random_seed(seed)
    model = build_model(name, input_shape=input_shape, compile=False)
    # plain SGD: the weight change is the gradient itself (Adam's first step is lr * sign(g),
    # which flips on gradients that are zero up to rounding), and L2 on every output: OHKM's
    # top-k choice flips between keypoints of near-equal loss.
    mse = {o.name: KeypointMSE() for o in model.spec.outputs}
    model.compile(optimizer=keras.optimizers.SGD(1e-2), loss=mse)
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (BATCH, *input_shape))
    targets = {
        o.name: (rng.uniform(0, 1, (BATCH, *model.spec.heatmap_size(o.name), 17)) ** 8
                 * o.codec.peak).astype(np.float32)
        for o in model.spec.outputs
    }
    weights = {o.name: np.ones((BATCH, 17), np.float32) for o in model.spec.outputs}
    start = model.get_weights()
    before = [np.asarray(w) for w in model.trainable_weights]
    results = []
    for scale in image_scales:
        model.set_weights(start)
        loss = model.train_on_batch((images * scale).astype(np.float32), targets, weights)
        deltas = [np.asarray(w) - b for w, b in zip(model.trainable_weights, before)]
        stats = [np.asarray(w) for w in model.non_trainable_weights]
        results.append((loss, deltas, stats))
    return results


def _reference_code_path(monkeypatch):
    """Keras' own BatchNormalization code and RSB's static slices: the step before the changes."""
    monkeypatch.setattr(BatchNorm, "_fusable", lambda self, inputs, mask: False)
    original_split = rsb.split_channels
    monkeypatch.setattr(
        rsb, "split_channels", lambda x, parts, training=None: original_split(x, parts)
    )


def _relative_differences(steps, reference, significant):
    return np.array([
        np.abs(steps[i] - reference[i]).max() / np.abs(reference[i]).max() for i in significant
    ])


@pytest.mark.slow
def test_one_training_step_same_weights_as_before(monkeypatch):
    """One SGD step moves every weight as the reference code does, within float rounding.

    At initialisation a training step of these networks is sensitive to rounding: a 1e-6
    relative change of the input images moves Keras' own step by a few percent on many
    variables. So "within float tolerance" is measured against that: the new step must be no
    farther from the reference than the reference is from itself with the perturbed input.
    """
    name, shape = "rsn18", (64, 64, 3)  # ConvBN, RSB (split), upsampling, heads, OHKM model
    ((loss_new, steps_new, stats_new),) = _one_step_weights(name, shape)
    _reference_code_path(monkeypatch)
    (loss_ref, steps_ref, stats_ref), (_, steps_noise, _) = _one_step_weights(
        name, shape, image_scales=(1.0, 1 + 1e-6)
    )
    np.testing.assert_allclose(loss_new, loss_ref, rtol=1e-5)
    assert len(steps_new) == len(steps_ref) and len(stats_new) == len(stats_ref)
    largest = max(float(np.abs(d).max()) for d in steps_ref)
    # variables whose update is not rounding noise (conv biases before a BatchNorm get none)
    significant = [i for i, d in enumerate(steps_ref) if np.abs(d).max() > 1e-4 * largest]
    assert len(significant) > len(steps_ref) // 2
    ours = _relative_differences(steps_new, steps_ref, significant)
    noise = _relative_differences(steps_noise, steps_ref, significant)
    assert np.median(ours) <= 3 * np.median(noise) + 1e-5, (np.median(ours), np.median(noise))
    assert np.percentile(ours, 90) <= 3 * np.percentile(noise, 90) + 1e-5
    for want, have in zip(stats_ref, stats_new):  # BatchNorm moving statistics
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-5)
