"""KeypointMSE and OHKMLoss against hand computations, masking, serialization, compile wiring."""

import keras
import numpy as np
import pytest

from keras_pose.losses import KeypointMSE, OHKMLoss, loss_for_output
from keras_pose.spec import CodecSpec, OutputSpec


def _maps(values):
    """(N, K) per-keypoint values -> (N, 2, 2, K) heatmaps whose every pixel holds the value."""
    values = np.asarray(values, np.float32)
    shape = (values.shape[0], 2, 2, values.shape[1])
    return np.broadcast_to(values[:, None, None, :], shape).copy()


def test_ohkm_equals_hand_computation():
    # Errors per keypoint are constant over the map, so each keypoint's spatial MSE is err**2.
    err = np.array([[1.0, 3.0, 2.0, 0.5], [4.0, 0.0, 1.0, 2.0]], np.float32)
    y_true = np.zeros_like(_maps(err))
    loss = OHKMLoss(top_k=2)(y_true, _maps(err))
    # Sample 1: top-2 of (1, 9, 4, .25) = 9 + 4 -> 6.5; sample 2: (16, 0, 1, 4) -> 16 + 4 -> 10.
    assert float(loss) == pytest.approx((6.5 + 10.0) / 2)


def test_ohkm_masked_keypoints_contribute_nothing():
    err = np.array([[1.0, 3.0, 2.0, 0.5]], np.float32)
    weights = np.array([[1.0, 0.0, 1.0, 1.0]], np.float32)  # the hardest keypoint is unlabelled
    loss = OHKMLoss(top_k=2)(np.zeros((1, 2, 2, 4), np.float32), _maps(err), sample_weight=weights)
    assert float(loss) == pytest.approx((4.0 + 1.0) / 2)
    # Whatever the masked keypoint predicts, the loss does not move.
    wild = _maps(np.array([[1.0, 300.0, 2.0, 0.5]], np.float32))
    again = OHKMLoss(top_k=2)(np.zeros((1, 2, 2, 4), np.float32), wild, sample_weight=weights)
    assert float(again) == pytest.approx(float(loss))


def test_keypoint_mse_is_weighted_mean_over_everything():
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    y_pred = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    assert float(KeypointMSE()(y_true, y_pred)) == pytest.approx(
        np.mean((y_true - y_pred) ** 2), 1e-5
    )
    weights = (rng.uniform(size=(3, 6)) > 0.5).astype(np.float32)
    expected = np.mean(np.mean((y_true - y_pred) ** 2, axis=(1, 2)) * weights)
    got = KeypointMSE()(y_true, y_pred, sample_weight=weights)
    assert float(got) == pytest.approx(expected, 1e-5)


def test_losses_reject_mismatched_shapes_and_too_few_keypoints():
    with pytest.raises(ValueError, match="same shape"):
        KeypointMSE()(np.zeros((1, 4, 4, 3)), np.zeros((1, 4, 4, 2)))
    with pytest.raises(ValueError, match="top_k=8 exceeds the 5 keypoints"):
        OHKMLoss()(np.zeros((1, 4, 4, 5)), np.zeros((1, 4, 4, 5)))


def test_losses_serialize():
    for loss in (KeypointMSE(name="a"), OHKMLoss(top_k=3, name="b")):
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(clone) is type(loss) and clone.get_config() == loss.get_config()


def test_loss_for_output_follows_the_spec():
    codec = CodecSpec("megvii", kernel_size=7)
    assert isinstance(loss_for_output(OutputSpec("heatmaps", 4, codec, loss="ohkm")), OHKMLoss)
    assert isinstance(loss_for_output(OutputSpec("global_c2", 4, codec)), KeypointMSE)
