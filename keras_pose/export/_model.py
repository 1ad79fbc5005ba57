"""What every exporter starts from: the chosen named outputs of a pose model, as a Keras model."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from keras_pose.models.base import IMAGE_INPUT, PoseModel

FINAL = "final"
ALL = "all"
KEYPOINTS = "keypoints"  # decoded outputs of the exports that decode in the graph
SCORES = "scores"


def require_tensorflow_backend(what: str) -> None:
    """Exports trace the model into a TensorFlow graph: refuse other Keras backends clearly."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"{what} needs the TensorFlow backend (KERAS_BACKEND=tensorflow), got {backend!r}; "
            "a .keras file saved under any backend loads under TensorFlow"
        )


def resolve_outputs(model: PoseModel, outputs: str | Sequence[str]) -> list[str]:
    """``"final"`` -> ``["heatmaps"]``, ``"all"`` -> every output in spec order, or a name list."""
    spec = model.spec
    if outputs == FINAL:
        return [spec.final_output]
    if outputs == ALL:
        return spec.output_names
    if isinstance(outputs, str):
        raise ValueError(f"outputs must be 'final', 'all' or a list of names, got {outputs!r}")
    names = list(outputs)
    unknown = [n for n in names if n not in spec.output_names]
    if unknown or not names:
        raise ValueError(f"unknown outputs {unknown or names}; the model has {spec.output_names}")
    return names


def heatmap_model(model: PoseModel, names: Sequence[str]) -> keras.Model:
    """A functional model sharing ``model``'s weights that returns ``{name: heatmaps}``.

    Outputs that are not asked for (and the layers only they need) are left out, so a
    heatmaps-only export does not compute auxiliary heads.
    """
    if not isinstance(model, PoseModel):
        raise TypeError(f"expected a keras_pose PoseModel, got {type(model).__name__}")
    structure = model.output
    if not isinstance(structure, dict):
        raise TypeError(f"{model.name}: a PoseModel returns a dict of named heatmaps")
    outputs = {name: structure[name] for name in names}
    return keras.Model(inputs=model.input, outputs=outputs, name=f"{model.name}_export")


def crop_signature(model: PoseModel, batch: int | None = None):
    """The ``tf.TensorSpec`` of a batch of float 0..255 crops, named like the model's input."""
    import tensorflow as tf

    h, w = model.spec.input_size
    return tf.TensorSpec((batch, h, w, 3), tf.float32, name=IMAGE_INPUT)


def keras_outputs(
    model: keras.Model, crops: np.ndarray, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """The Keras model's outputs ``names`` on ``crops``, as float32 numpy arrays."""
    outputs = model(crops, training=False)
    return {name: np.asarray(outputs[name], dtype=np.float32) for name in names}
