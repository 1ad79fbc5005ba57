"""Shared helpers of the export tests: a tiny pose model, family builders, crops."""

from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np

from keras_pose.layers import BilinearUpsample, ConvBN, PixelNormalization
from keras_pose.models.base import IMAGE_INPUT, PoseModel
from keras_pose.spec import PoseSpec, megvii_outputs


@keras.saving.register_keras_serializable(package="keras_pose_tests")
class TinyPose(PoseModel):
    """A small encoder-decoder: stride-16 features, a coarse auxiliary output, refined ``heatmaps``.

    Uses ``BilinearUpsample`` in both modes, a Megvii spec (0..255 heatmaps) and BGR input, so
    it exercises every piece of the export machinery in a fraction of a second, and learns
    peaked heatmaps on the synthetic data within a minute.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int] = (64, 48, 3),
        num_keypoints: int = 5,
        width: int = 8,
        kernels: tuple[int, int] = (7, 5),
        name: str = "tiny_pose",
        **kwargs: Any,
    ) -> None:
        height, width_px, _ = input_shape
        spec = PoseSpec(
            family="tiny",
            input_size=(height, width_px),
            num_keypoints=num_keypoints,
            channel_order="BGR",
            outputs=megvii_outputs(["aux", "heatmaps"], kernels, ["mse", "mse"], [0.5, 1.0]),
        )
        hm_size = (height // 4, width_px // 4)
        inputs = keras.Input(input_shape, name=IMAGE_INPUT)
        x = PixelNormalization([102.98, 115.95, 122.77], [255.0] * 3, name="normalize")(inputs)
        x = ConvBN(width, 3, strides=2, name="stem1")(x)
        fine = ConvBN(width, 3, strides=2, name="stem2")(x)
        coarse = ConvBN(2 * width, 3, strides=2, name="down1")(fine)
        coarse = ConvBN(2 * width, 3, strides=2, name="down2")(coarse)
        coarse = ConvBN(2 * width, 3, name="context")(coarse)
        aux = keras.layers.Conv2D(num_keypoints, 1, name="aux_logits")(coarse)
        aux = BilinearUpsample(hm_size, mode="align_corners", name="aux")(aux)
        up = BilinearUpsample(hm_size, mode="tf_legacy", name="up")(coarse)
        merged = keras.layers.Concatenate(name="merge")([fine, up])
        merged = ConvBN(width, 3, name="refine")(merged)
        heatmaps = keras.layers.Conv2D(num_keypoints, 1, name="heatmaps")(merged)
        super().__init__(
            inputs=inputs, outputs={"aux": aux, "heatmaps": heatmaps}, spec=spec, name=name, **kwargs
        )
        self._args = dict(
            input_shape=tuple(input_shape), num_keypoints=num_keypoints, width=width, kernels=tuple(kernels)
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._args}


def tiny_model(**kwargs: Any) -> TinyPose:
    """A TinyPose whose BN statistics are not the identity (so folding BN is exercised)."""
    model = TinyPose(**kwargs)
    randomize_batchnorm(model)
    return model


def randomize_batchnorm(model: keras.Model, seed: int = 0) -> None:
    """Give every BatchNormalization non-trivial moving statistics and affine parameters."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.1, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.1, n).astype("float32"))



def random_crops(model: PoseModel, batch: int = 2, seed: int = 0) -> np.ndarray:
    """A batch of random 0..255 crops of the model's input size."""
    h, w = model.spec.input_size
    return np.random.default_rng(seed).uniform(0, 255, (batch, h, w, 3)).astype("float32")


def family_builders() -> dict[str, Callable[[], PoseModel]]:
    """Small variants of every model family that is importable (families land independently)."""
    builders: dict[str, Callable[[], PoseModel]] = {"tiny": tiny_model}
    return builders
