"""In-graph input normalisation, so an exported model takes the raw 0..255 crop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="keras_pose")
class PixelNormalization(keras.layers.Layer):
    """``(x - mean) / std`` per channel, with constants in the input's channel order.

    tf-cpn: BGR mean [102.98, 115.95, 122.77], std 255. MSPN/RSN: BGR ImageNet statistics
    (mean [0.406, 0.456, 0.485]*255, std [0.225, 0.224, 0.229]*255). CPM: (x - 128) / 256.
    Hourglass: RGB / 255.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean {self.mean} and std {self.std} differ in length")
        self._scale = (1.0 / np.asarray(self.std, np.float32)).tolist()

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        mean = ops.convert_to_tensor(self.mean, dtype=x.dtype)
        scale = ops.convert_to_tensor(self._scale, dtype=x.dtype)
        return (x - mean) * scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(mean=self.mean, std=self.std)
        return config
