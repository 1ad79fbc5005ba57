"""Heatmap losses with per-keypoint weights: masked L2 and online hard keypoint mining.

Both losses take ``y_true`` and ``y_pred`` of shape ``(N, H, W, K)`` and, as Keras'
``sample_weight``, the per-keypoint weights ``(N, K)`` the data pipeline yields for that output
(``keras_pose.data`` builds them from visibility through the model's spec). A keypoint of weight
0 contributes nothing.

* :class:`KeypointMSE` — per-keypoint spatial mean of the squared error, times its weight, mean
  over samples and keypoints (MMPose ``KeypointMSELoss``; with all-one weights and a target
  that is zero for non-visible joints it is the tf-cpn GlobalNet / MSPN ``JointsL2Loss``).
* :class:`OHKMLoss` — per-keypoint spatial MSE times its weight; per sample the mean of the
  ``top_k`` largest; mean over samples (tf-cpn ``ohkm``, MSPN ``JointsL2Loss(has_ohkm=True)``).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_pose.spec import OutputSpec


class _KeypointLoss(keras.losses.Loss):
    """Base: reduce ``(N, H, W, K)`` errors to per-keypoint losses, weight them, then reduce."""

    def call(self, y_true, y_pred):
        """Per-(sample, keypoint) spatial mean squared error, shape ``(N, K)``."""
        y_true = ops.cast(y_true, y_pred.dtype)
        return ops.mean(ops.square(y_pred - y_true), axis=(1, 2))

    def __call__(self, y_true, y_pred, sample_weight=None):
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
            if len(y_pred.shape) != 4 or tuple(y_true.shape[1:]) != tuple(y_pred.shape[1:]):
                raise ValueError(
                    f"{self.name}: y_true {tuple(y_true.shape)} and y_pred "
                    f"{tuple(y_pred.shape)} must both be (N, H, W, K) of the same shape"
                )
            per_keypoint = self.call(y_true, y_pred)
            if sample_weight is not None:
                weights = ops.convert_to_tensor(sample_weight, dtype=self.dtype)
                if len(weights.shape) == 1:
                    weights = ops.expand_dims(weights, -1)
                per_keypoint = per_keypoint * weights
            return self.reduce_keypoints(per_keypoint)

    def reduce_keypoints(self, per_keypoint):
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="keras_pose")
class KeypointMSE(_KeypointLoss):
    """Masked L2 heatmap loss: mean over samples, keypoints and pixels of weighted squares."""

    def __init__(self, name: str = "keypoint_mse", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def reduce_keypoints(self, per_keypoint):
        return ops.mean(per_keypoint)


@keras.saving.register_keras_serializable(package="keras_pose")
class OHKMLoss(_KeypointLoss):
    """Online hard keypoint mining: mean of the ``top_k`` largest weighted keypoint losses.

    Args:
        top_k: keypoints kept per sample (8 of 17 in tf-cpn, MSPN and RSN).
    """

    def __init__(self, top_k: int = 8, name: str = "ohkm", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.top_k = top_k

    def reduce_keypoints(self, per_keypoint):
        num_keypoints = per_keypoint.shape[-1]
        if num_keypoints is not None and num_keypoints < self.top_k:
            raise ValueError(f"OHKMLoss: top_k={self.top_k} exceeds the {num_keypoints} keypoints")
        hardest, _ = ops.top_k(per_keypoint, self.top_k, sorted=False)
        return ops.mean(ops.sum(hardest, axis=-1) / self.top_k)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(top_k=self.top_k)
        return config


def loss_for_output(output: OutputSpec, top_k: int = 8) -> keras.losses.Loss:
    """The loss object an output's spec asks for."""
    if output.loss == "ohkm":
        return OHKMLoss(top_k=top_k, name=f"{output.name}_ohkm")
    return KeypointMSE(name=f"{output.name}_mse")
