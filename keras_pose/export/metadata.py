"""What an exported file carries so that it alone is enough to predict with: the model's
:class:`~keras_pose.spec.PoseSpec` (input size, channel order, outputs with codec, stride and
convention, box extension, flip test) and the keypoint set (flip pairs, skeleton, sigmas).

One JSON text, stored where each format keeps metadata:

* SavedModel: ``assets.extra/keras_pose.json`` (TF Serving ignores the folder's other files);
* LiteRT: a ``keras_pose`` entry of the flatbuffer's ``metadata`` (a buffer of the JSON bytes);
* ONNX: the ``keras_pose`` key of the model's ``metadata_props``.

:func:`read_metadata` reads it back from any of them (without TensorFlow for LiteRT and ONNX).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from keras_pose.data.dataset_info import COCO17, DatasetInfo
from keras_pose.spec import PoseSpec

KEY = "keras_pose"
SAVED_MODEL_FILE = os.path.join("assets.extra", "keras_pose.json")
FORMAT_VERSION = 1


class MissingMetadataError(ValueError):
    """An exported model without keras-pose's metadata (exported by an older version)."""


@dataclasses.dataclass(frozen=True)
class ExportMetadata:
    """The spec and keypoint set of an exported model."""

    spec: PoseSpec
    dataset_info: DatasetInfo | None

    def to_json(self) -> str:
        info = dataclasses.asdict(self.dataset_info) if self.dataset_info else None
        return json.dumps(
            {"format_version": FORMAT_VERSION, "spec": self.spec.to_dict(), "dataset_info": info}
        )

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "") -> ExportMetadata:
        try:
            content = json.loads(text)
            spec = PoseSpec.from_dict(content["spec"])
            info = content.get("dataset_info")
            dataset_info = None if info is None else DatasetInfo(
                name=info["name"],
                keypoint_names=tuple(info["keypoint_names"]),
                flip_pairs=tuple(tuple(p) for p in info["flip_pairs"]),
                skeleton=tuple(tuple(p) for p in info["skeleton"]),
                sigmas=tuple(info["sigmas"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{source}: unreadable keras-pose metadata ({error})") from error
        return cls(spec, dataset_info)


def metadata_for(spec: PoseSpec, dataset_info: DatasetInfo | None = None) -> ExportMetadata:
    """The metadata of an export of a model with ``spec`` (COCO-17 for 17 keypoints by default)."""
    if dataset_info is None and spec.num_keypoints == COCO17.num_keypoints:
        dataset_info = COCO17
    if dataset_info is not None and dataset_info.num_keypoints != spec.num_keypoints:
        raise ValueError(
            f"dataset_info {dataset_info.name!r} has {dataset_info.num_keypoints} keypoints, "
            f"the model {spec.num_keypoints}"
        )
    return ExportMetadata(spec, dataset_info)


# ------------------------------------------------------------------------------------------
# Writing


def write_saved_model_metadata(directory: str, metadata: ExportMetadata) -> None:
    path = os.path.join(directory, SAVED_MODEL_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(metadata.to_json())


def add_tflite_metadata(content: bytes, metadata: ExportMetadata) -> bytes:
    """The flatbuffer ``content`` with a ``keras_pose`` metadata entry (replacing an old one)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    buffer = schema.BufferT()
    buffer.data = list(metadata.to_json().encode())
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) != KEY] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def add_onnx_metadata(graph: Any, metadata: ExportMetadata) -> None:
    """Set the ``keras_pose`` key of an ``onnx.ModelProto``'s ``metadata_props``."""
    kept = [p for p in graph.metadata_props if p.key != KEY]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    prop = graph.metadata_props.add()
    prop.key, prop.value = KEY, metadata.to_json()


# ------------------------------------------------------------------------------------------
# Reading


def read_metadata(path: str | os.PathLike) -> ExportMetadata:
    """The metadata of a SavedModel directory, a ``.tflite`` or an ``.onnx`` file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        file = os.path.join(path, SAVED_MODEL_FILE)
        if not os.path.isfile(file):
            raise MissingMetadataError(
                f"{path}: no {SAVED_MODEL_FILE} (re-export with this keras-pose)"
            )
        with open(file) as f:
            return ExportMetadata.from_json(f.read(), file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model not found: {path}")
    if path.endswith(".tflite"):
        with open(path, "rb") as f:
            return ExportMetadata.from_json(_tflite_metadata(f.read(), path), path)
    if path.endswith(".onnx"):
        return ExportMetadata.from_json(_onnx_metadata(path), path)
    raise ValueError(f"{path}: not a SavedModel directory, .tflite or .onnx file")


def _tflite_metadata(content: bytes, path: str) -> bytes:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if _name(entry.Name()) == KEY:
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    raise MissingMetadataError(f"{path}: no {KEY!r} metadata (re-export with this keras-pose)")


def _onnx_metadata(path: str) -> str:
    import onnx

    model = onnx.load(path, load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == KEY:
            return prop.value
    raise MissingMetadataError(
        f"{path}: no {KEY!r} metadata_props (re-export with this keras-pose)"
    )


def _name(name: str | bytes | None) -> str:
    return name.decode() if isinstance(name, bytes) else (name or "")
