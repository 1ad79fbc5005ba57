"""A pose model from anything keras-pose makes, for :class:`~keras_pose.inference.Predictor`.

:func:`load_pose` takes a :class:`~keras_pose.models.PoseModel`, a ``.keras`` file, a SavedModel
directory, a ``.tflite`` file (``ai_edge_litert``) or an ``.onnx`` file (``onnxruntime``) and
returns an object with ``spec``, ``dataset_info`` and ``predict_on_batch(crops) ->
{"heatmaps": (N, h, w, K)}``: what the Predictor needs. Exported files carry their spec
(:mod:`keras_pose.export.metadata`), so the file alone is enough.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from keras_pose.data.dataset_info import COCO17, DatasetInfo
from keras_pose.spec import PoseSpec

FORMS = ("keras", "saved_model", "tflite", "onnx")


class ExportedPose:
    """An exported heatmap model and its metadata.

    Attributes:
        spec: the model's :class:`PoseSpec`.
        dataset_info: its keypoint set (``None`` when unknown).
        form: ``"saved_model"``, ``"tflite"`` or ``"onnx"``.
        path: the file or directory.
    """

    form = ""

    def __init__(self, path: str, spec: PoseSpec, dataset_info: DatasetInfo | None) -> None:
        self.path = path
        self.spec = spec
        self.dataset_info = dataset_info

    def predict_on_batch(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        crops = np.ascontiguousarray(crops, dtype=np.float32)
        if len(crops) == 0:
            shape = (0, *self.spec.heatmap_size(), self.spec.num_keypoints)
            return {self.spec.final_output: np.zeros(shape, np.float32)}
        outputs = self._run(crops)
        if self.spec.final_output not in outputs:
            raise KeyError(f"{self.path}: outputs {sorted(outputs)}, no {self.spec.final_output!r}")
        return {self.spec.final_output: np.asarray(outputs[self.spec.final_output], np.float32)}

    def _run(self, crops: np.ndarray) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, family={self.spec.family!r})"


class SavedModelPose(ExportedPose):
    """The ``serving_default`` signature of a keras-pose SavedModel."""

    form = "saved_model"

    def __init__(self, path: str, metadata) -> None:
        import tensorflow as tf

        from keras_pose.export.saved_model import CROPS_SIGNATURE

        super().__init__(path, metadata.spec, metadata.dataset_info)
        self._tf = tf
        self._function = tf.saved_model.load(path).signatures[CROPS_SIGNATURE]

    def _run(self, crops: np.ndarray) -> dict[str, Any]:
        return {k: v.numpy() for k, v in self._function(image=self._tf.constant(crops)).items()}


class LiteRTPose(ExportedPose):
    """A keras-pose ``.tflite`` file run by ``ai_edge_litert`` (batch 1, crop by crop)."""

    form = "tflite"

    def __init__(self, path: str, metadata, num_threads: int) -> None:
        from keras_pose.export.litert import LiteRTRunner

        super().__init__(path, metadata.spec, metadata.dataset_info)
        self._runner = LiteRTRunner(path, num_threads=num_threads)

    def _run(self, crops: np.ndarray) -> dict[str, Any]:
        return self._runner(crops)


class OnnxPose(ExportedPose):
    """A keras-pose ``.onnx`` file run by ONNX Runtime (CPU)."""

    form = "onnx"

    def __init__(self, path: str, num_threads: int) -> None:
        from keras_pose.export.metadata import KEY, ExportMetadata, MissingMetadataError
        from keras_pose.export.onnx import OnnxRunner

        self._runner = OnnxRunner(path, num_threads=num_threads)
        text = self._runner.session.get_modelmeta().custom_metadata_map.get(KEY)
        if text is None:
            raise MissingMetadataError(
                f"{path}: no {KEY!r} metadata_props (re-export with this keras-pose)"
            )
        metadata = ExportMetadata.from_json(text, path)
        super().__init__(path, metadata.spec, metadata.dataset_info)

    def _run(self, crops: np.ndarray) -> dict[str, Any]:
        return self._runner(crops)


class KerasPose:
    """A :class:`~keras_pose.models.PoseModel` (or a loaded ``.keras`` file)."""

    form = "keras"

    def __init__(self, model: Any, path: str = "") -> None:
        self.model = model
        self.path = path
        self.spec = model.spec
        self.dataset_info = COCO17 if self.spec.num_keypoints == COCO17.num_keypoints else None

    def predict_on_batch(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        if len(crops) == 0:
            shape = (0, *self.spec.heatmap_size(), self.spec.num_keypoints)
            return {self.spec.final_output: np.zeros(shape, np.float32)}
        outputs = self.model.predict_on_batch(np.asarray(crops, np.float32))  # a compiled graph
        return {self.spec.final_output: np.asarray(outputs[self.spec.final_output], np.float32)}

    def __repr__(self) -> str:
        return f"KerasPose({self.model.name!r})"


def load_pose(pose: Any, num_threads: int = 2) -> KerasPose | ExportedPose:
    """A pose model ready for :class:`~keras_pose.inference.Predictor` from any form.

    Args:
        pose: a ``PoseModel``, an object already loaded by this function, or a path: a
            ``.keras`` file, a SavedModel directory, a ``.tflite`` or an ``.onnx`` file.
        num_threads: CPU threads of the LiteRT and ONNX Runtime interpreters.
    """
    if isinstance(pose, (KerasPose, ExportedPose)):
        return pose
    if isinstance(getattr(pose, "spec", None), PoseSpec) and hasattr(pose, "predict_on_batch"):
        return KerasPose(pose)
    if not isinstance(pose, (str, os.PathLike)):
        raise TypeError(f"pose must be a PoseModel or a model path, got {type(pose).__name__}")
    path = os.fspath(pose)
    if not os.path.exists(path):
        raise FileNotFoundError(f"pose model not found: {path}")
    from keras_pose.export.metadata import read_metadata

    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ValueError(f"{path} is a directory without saved_model.pb: not a SavedModel")
        return SavedModelPose(path, read_metadata(path))
    if path.endswith(".keras"):
        import keras

        import keras_pose.models  # noqa: F401  (registers the model classes)

        return KerasPose(keras.saving.load_model(path, compile=False), path)
    if path.endswith(".tflite"):
        return LiteRTPose(path, read_metadata(path), num_threads)
    if path.endswith(".onnx"):
        return OnnxPose(path, num_threads)
    raise ValueError(
        f"{path}: a pose model is a .keras, .tflite or .onnx file or a SavedModel directory"
    )
