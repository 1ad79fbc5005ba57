"""Shared helpers of the export tests: a tiny pose model, family builders, crops."""

from __future__ import annotations

import functools
from typing import Any

import keras
import numpy as np

from keras_pose.layers import BilinearUpsample, ConvBN, PixelNormalization
from keras_pose.models.base import IMAGE_INPUT, PoseModel
from keras_pose.spec import MSRA, CodecSpec, OutputSpec, PoseSpec, megvii_outputs


@keras.saving.register_keras_serializable(package="keras_pose_tests")
class PositionBias(keras.layers.Layer):
    """A learned ``(h, w, C)`` map added to every sample: lets a small net learn a mean pose."""

    def build(self, input_shape) -> None:
        self.bias = self.add_weight(shape=tuple(input_shape[1:]), initializer="zeros", name="bias")

    def call(self, inputs):
        return inputs + self.bias


@keras.saving.register_keras_serializable(package="keras_pose_tests")
class TinyPose(PoseModel):
    """A small encoder-decoder: stride-16 features, a coarse auxiliary output, refined ``heatmaps``.

    Uses ``BilinearUpsample`` in both modes, a Megvii spec (0..255 heatmaps; ``codec="msra"``:
    peak-1 heatmaps with the flip test's one-cell shift) and BGR input, so it exercises every
    piece of the export machinery in a fraction of a second, and learns peaked heatmaps on the
    synthetic data within a minute. ``upsample="nearest"`` puts an op outside the GPU
    delegate's list in the graph.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int] = (64, 48, 3),
        num_keypoints: int = 5,
        width: int = 8,
        kernels: tuple[int, int] = (7, 5),
        upsample: str = "bilinear",
        codec: str = "megvii",
        name: str = "tiny_pose",
        **kwargs: Any,
    ) -> None:
        height, width_px, _ = input_shape
        spec = PoseSpec(
            family="tiny",
            input_size=(height, width_px),
            num_keypoints=num_keypoints,
            channel_order="BGR",
            outputs=_outputs(codec, kernels),
        )
        hm_size = (height // 4, width_px // 4)
        inputs = keras.Input(input_shape, name=IMAGE_INPUT)
        x = PixelNormalization([102.98, 115.95, 122.77], [255.0] * 3, name="normalize")(inputs)
        x = ConvBN(width, 3, strides=2, name="stem1")(x)
        fine = ConvBN(width, 3, strides=2, name="stem2")(x)
        coarse = ConvBN(2 * width, 3, strides=2, name="down1")(fine)
        coarse = ConvBN(2 * width, 3, strides=2, name="down2")(coarse)
        coarse = ConvBN(2 * width, 3, name="context")(coarse)
        coarse = PositionBias(name="position_bias")(coarse)
        aux = keras.layers.Conv2D(num_keypoints, 1, name="aux_logits")(coarse)
        aux = BilinearUpsample(hm_size, mode="align_corners", name="aux")(aux)
        if upsample == "nearest":  # RESIZE_NEAREST_NEIGHBOR: not on the GPU delegate's list
            up = keras.layers.Resizing(*hm_size, interpolation="nearest", name="up")(coarse)
        else:
            up = BilinearUpsample(hm_size, mode="tf_legacy", name="up")(coarse)
        merged = keras.layers.Concatenate(name="merge")([fine, up])
        merged = ConvBN(width, 3, name="refine")(merged)
        heatmaps = keras.layers.Conv2D(num_keypoints, 1, name="heatmaps")(merged)
        super().__init__(
            inputs=inputs,
            outputs={"aux": aux, "heatmaps": heatmaps},
            spec=spec,
            name=name,
            **kwargs,
        )
        self._args = dict(
            input_shape=tuple(input_shape),
            num_keypoints=num_keypoints,
            width=width,
            kernels=tuple(kernels),
            upsample=upsample,
            codec=codec,
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._args}


def _outputs(codec: str, kernels: tuple[int, int]) -> tuple[OutputSpec, ...]:
    if codec == "megvii":
        return megvii_outputs(["aux", "heatmaps"], kernels, ["mse", "mse"], [0.5, 1.0])
    msra = CodecSpec(MSRA, sigma=2.0, peak=1.0, flip_shift=True)
    return (OutputSpec("aux", 4, msra, loss_weight=0.5), OutputSpec("heatmaps", 4, msra))


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


# Small variants of every family: keras_pose.models.build_model name and arguments.
FAMILY_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "cpn": ("cpn50", {"input_shape": (128, 96, 3)}),
    "mspn": ("mspn50", {"input_shape": (128, 96, 3)}),
    "rsn": ("rsn18", {"input_shape": (128, 96, 3)}),
    "cpm": ("cpm", {"num_stages": 2, "input_shape": (128, 128, 3)}),
    "hourglass": ("hourglass", {"num_stacks": 1, "num_features": 64, "input_shape": (64, 64, 3)}),
}
FAMILIES = tuple(FAMILY_VARIANTS)


@functools.cache
def family_model(family: str) -> PoseModel:
    """A small variant of ``family`` (seeded, BatchNorm statistics randomised), built once per
    test session and shared by the three export test files (exports do not change a model)."""
    from keras_pose.models import build_model

    name, kwargs = FAMILY_VARIANTS[family]
    keras.utils.set_random_seed(0)
    model = build_model(name, compile=False, **kwargs)
    randomize_batchnorm(model)
    return model
