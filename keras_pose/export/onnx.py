"""ONNX export through tf2onnx, with named input/outputs and a dynamic batch, checked with
ONNX Runtime.

The model's ``metadata_props`` key ``keras_pose`` holds the spec
(:mod:`keras_pose.export.metadata`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import tempfile
from collections.abc import Iterator, Sequence

import numpy as np

from keras_pose.export._model import (
    crop_signature,
    heatmap_model,
    keras_outputs,
    require_tensorflow_backend,
    resolve_outputs,
)
from keras_pose.export.metadata import add_onnx_metadata, metadata_for
from keras_pose.export.parity import ExportParityError, heatmap_errors, parity_crops, require
from keras_pose.models.base import PoseModel
from keras_pose.utils.atomic import atomic_path

BATCH = "batch"
DEFAULT_OPSET = 17


def onnx(
    model: PoseModel,
    path: str | os.PathLike,
    *,
    outputs: str | Sequence[str] = "all",
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    atol: float = 1e-4,
) -> str:
    """Write ``model`` as an ONNX file: input ``image`` ``(batch, H, W, 3)`` float 0..255,
    one output per heatmap output, named like it, with the batch dimension named ``batch``.

    Args:
        model: a keras-pose model.
        path: the ``.onnx`` file (written atomically, only if the check passes).
        outputs: ``"all"`` (default), ``"final"`` (``heatmaps`` only) or a list of names.
        opset: ONNX opset.
        check: run it with ONNX Runtime on batches of 2 and 1 crops and compare with Keras
            (``atol`` on heatmaps divided by the output's peak).
    """
    require_tensorflow_backend("ONNX export")
    names = resolve_outputs(model, outputs)
    what = f"ONNX export of {model.name}"
    with atomic_path(path, directory=False) as tmp:
        _convert(model, names, opset, tmp)
        if check:
            crops = parity_crops(model.spec, batch=2)
            session = OnnxRunner(tmp)
            if session.input_name != "image" or session.output_names != names:
                raise ExportParityError(
                    f"{what}: expected input 'image' and outputs {names}, got "
                    f"{session.input_name!r} and {session.output_names}"
                )
            for batch in (crops, crops[:1]):
                expected = keras_outputs(model, batch, names)
                errors = heatmap_errors(expected, session(batch), model.spec, what)
                require(errors, "scaled", atol, what)
    return os.fspath(path)


def _convert(model: PoseModel, names: Sequence[str], opset: int, destination: str) -> None:
    import onnx as onnx_lib

    export_model = heatmap_model(model, names)
    with tempfile.TemporaryDirectory(prefix="keras_pose_onnx_") as work:
        raw = os.path.join(work, "model.onnx")
        with _collect_between_tf2onnx_passes():
            export_model.export(
                raw,
                format="onnx",
                input_signature=[crop_signature(model)],
                opset_version=opset,
                verbose=False,
            )
        graph = onnx_lib.load(raw)
    for value in (*graph.graph.input, *graph.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH
    order = {name: i for i, name in enumerate(names)}
    sorted_outputs = sorted(graph.graph.output, key=lambda v: order.get(v.name, len(order)))
    del graph.graph.output[:]
    graph.graph.output.extend(sorted_outputs)
    add_onnx_metadata(graph, metadata_for(model.spec))
    onnx_lib.checker.check_model(graph)
    onnx_lib.save(graph, destination)


@contextlib.contextmanager
def _collect_between_tf2onnx_passes() -> Iterator[None]:
    """Free tf2onnx's discarded graph copies before each of its optimizer passes.

    Each pass works on a deep copy of the ONNX graph and drops the previous one, whose nodes and
    graph reference each other, so only the cyclic garbage collector frees them (weights
    included), and with a large Keras model alive it runs a full collection too rarely: a
    ResNet-50 CPN peaked at 9.1 GB converting. Objects alive before the conversion are frozen
    (``gc.freeze``), so each collection only scans tf2onnx's new objects: that conversion then
    peaks at 3.0 GB (TensorFlow's graph freezing) and takes less CPU time, not more.
    """
    try:
        from tf2onnx import optimizer
    except ImportError:  # pragma: no cover - Keras' ONNX export raises its own clear error
        yield
        return
    passes = getattr(optimizer, "_optimizers", None)
    if not isinstance(passes, dict):  # another tf2onnx layout: convert without the guard
        yield
        return

    def collecting(factory):
        def make_pass(*args, **kwargs):
            gc.collect()
            return factory(*args, **kwargs)

        return make_pass

    original = dict(passes)
    gc.collect()
    gc.freeze()
    try:
        passes.update({name: collecting(factory) for name, factory in original.items()})
        yield
    finally:
        passes.clear()
        passes.update(original)
        gc.unfreeze()


class OnnxRunner:
    """An ONNX Runtime CPU session that maps ``(N, H, W, 3)`` crops to ``{output name: array}``."""

    def __init__(self, path: str | os.PathLike, num_threads: int = 2):
        try:
            import onnxruntime as ort
        except ImportError as error:  # pragma: no cover - part of the export extra
            raise ImportError("running ONNX models needs `pip install onnxruntime`") from error
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.fspath(path), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        results = self.session.run(None, {self.input_name: np.asarray(crops, np.float32)})
        return dict(zip(self.output_names, results))
