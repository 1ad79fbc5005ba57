"""LiteRT (TFLite) export: fp32, float16 or full-int8 heatmaps model that the GPU delegate
runs whole.

The graph is converted from a SavedModel with the TFLite builtin op set only (no Flex /
``SELECT_TF_OPS``), its op codes are checked against the GPU delegate's documented list, and it
is run with ``ai_edge_litert`` through its signature runner and compared with Keras before it is
moved into place. The flatbuffer's ``keras_pose`` metadata holds the spec
(:mod:`keras_pose.export.metadata`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from keras_pose.export._archive import write_saved_model
from keras_pose.export._model import (
    KEYPOINTS,
    SCORES,
    crop_signature,
    heatmap_model,
    keras_outputs,
    resolve_outputs,
)
from keras_pose.export.gpu_ops import gpu_delegate_problems
from keras_pose.export.metadata import add_tflite_metadata, metadata_for
from keras_pose.export.parity import (
    ExportCompatibilityError,
    ExportParityError,
    heatmap_errors,
    parity_crops,
    require,
)
from keras_pose.models.base import IMAGE_INPUT, PoseModel
from keras_pose.utils.atomic import atomic_path

QUANTIZE_MODES = (None, "float16", "int8")
SIGNATURE = "serving_default"
# Parity limits (keras_pose.export.parity.heatmap_errors): fp32 max error on the heatmap scale;
# fp16 max error relative to the largest heatmap value; int8 mean error relative to it (a broken
# conversion is far above; int8 keypoints are compared with fp32 ones in the tests).
DEFAULT_TOLERANCE = {
    None: ("scaled", 1e-4),
    "float16": ("relative", 1e-2),
    "int8": ("mean_relative", 0.05),
}


def litert(
    model: PoseModel,
    path: str | os.PathLike,
    quantize: str | None = None,
    representative_data: Any = None,
    *,
    outputs: str | Sequence[str] = "final",
    decode: bool = False,
    num_calibration: int = 64,
    require_gpu_compatible: bool = True,
    check: bool = True,
    tolerance: float | None = None,
) -> str:
    """Write ``model`` as a ``.tflite`` file with one signature ``serving_default``.

    Args:
        model: a keras-pose model.
        path: the ``.tflite`` file to write (atomically: only after every check passed).
        quantize: ``None`` (float32), ``"float16"`` (float16 weights) or ``"int8"`` (full
            integer, float input/output; needs ``representative_data``).
        representative_data: int8 calibration crops: an ``(N, H, W, 3)`` array or an iterable
            (e.g. a ``keras_pose.data`` ``tf.data`` pipeline) of batches, ``(crops, ...)``
            tuples or ``{"image": crops}`` dicts, in the model's channel order, 0..255.
        outputs: ``"final"`` (the ``heatmaps`` output only, the default), ``"all"`` or names.
        decode: also output ``keypoints`` (crop pixels) and ``scores``, decoded on the device
            (float models only; see :class:`LiteRTConverter`).
        num_calibration: at most this many crops are used to calibrate int8.
        require_gpu_compatible: refuse a graph with an op outside the GPU delegate's list.
        check: compare with Keras (fp32: 1e-4 of the heatmap scale; fp16: 1e-2 relative;
            int8: 5 % mean relative error on calibration crops).
        tolerance: override the limit of the check.

    Returns:
        The path written. Raises ``ExportParityError`` / ``ExportCompatibilityError`` (and
        writes nothing) if a check fails.

    The input ``image`` has a static batch of 1 (what mobile runtimes and the GPU delegate
    expect); outputs keep the model's output names. To write several variants of one model,
    :class:`LiteRTConverter` traces it once.
    """
    _check_arguments(path, quantize, representative_data)
    with LiteRTConverter(model, outputs, decode) as converter:
        return converter.write(
            path,
            quantize,
            representative_data,
            num_calibration=num_calibration,
            require_gpu_compatible=require_gpu_compatible,
            check=check,
            tolerance=tolerance,
        )


class LiteRTConverter:
    """Traces ``model`` into a temporary SavedModel once, then writes checked ``.tflite`` variants.

    Use as a context manager (the SavedModel is deleted on exit)::

        with LiteRTConverter(model) as converter:
            converter.write("m.tflite")
            converter.write("m-float16.tflite", "float16")
            converter.write("m-int8.tflite", "int8", calibration_crops)

    Args:
        model: a keras-pose model.
        outputs: ``"final"`` (``heatmaps`` only), ``"all"`` or output names.
        decode: also output ``keypoints`` ``(1, K, 2)`` (crop pixels) and ``scores`` ``(1, K)``,
            decoded on the device by :func:`keras_pose.codecs.graph.decode_graph` (float
            models only; its ops are on the GPU delegate's list too).

    ``write`` takes the arguments of :func:`litert` after ``path``.
    """

    def __init__(
        self, model: PoseModel, outputs: str | Sequence[str] = "final", decode: bool = False
    ) -> None:
        self.model = model
        self.names = resolve_outputs(model, outputs)
        self.decode = decode
        self._workdir: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> LiteRTConverter:
        from keras_pose.codecs import codec_from_spec
        from keras_pose.codecs.graph import decode_graph

        spec = self.model.spec
        final = spec.final_output
        names = self.names if final in self.names or not self.decode else [*self.names, final]
        export_model = heatmap_model(self.model, names)
        codec = codec_from_spec(spec.final.codec, spec.input_size, spec.final.stride)

        def serve(image):
            heatmaps = export_model(image, training=False)
            outputs = {name: heatmaps[name] for name in self.names}
            if self.decode:
                outputs[KEYPOINTS], outputs[SCORES] = decode_graph(heatmaps[final], codec)
            return outputs

        self._codec = codec
        self._workdir = tempfile.TemporaryDirectory(prefix="keras_pose_litert_")
        endpoint = (serve, [crop_signature(self.model, batch=1)])
        write_saved_model(self._workdir.name, export_model, {SIGNATURE: endpoint})
        return self

    def __exit__(self, *exc_info) -> None:
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def write(
        self,
        path: str | os.PathLike,
        quantize: str | None = None,
        representative_data: Any = None,
        *,
        num_calibration: int = 64,
        require_gpu_compatible: bool = True,
        check: bool = True,
        tolerance: float | None = None,
    ) -> str:
        if self._workdir is None:
            raise RuntimeError(
                "use LiteRTConverter as a context manager: `with LiteRTConverter(m) as c:`"
            )
        path = _check_arguments(path, quantize, representative_data)
        if self.decode and quantize == "int8":
            raise ValueError(
                "decode=True needs a float model: int8 would quantize the decode's arithmetic"
            )
        calibration = None
        if quantize == "int8":
            calibration = calibration_crops(representative_data, self.model, num_calibration)
        content = _convert(self._workdir.name, quantize, calibration)
        content = add_tflite_metadata(content, metadata_for(self.model.spec))
        what = f"LiteRT {quantize or 'float32'} export of {self.model.name}"
        with atomic_path(path, directory=False) as tmp:
            with open(tmp, "wb") as f:
                f.write(content)
            if require_gpu_compatible:
                problems = gpu_delegate_problems(content, quantize)
                if problems:
                    raise ExportCompatibilityError(
                        f"{what} would not run whole on the TFLite GPU delegate: "
                        + "; ".join(problems) + _dark_hint(self.decode, self.model.spec)
                    )
            if check:
                if calibration is not None:
                    crops = calibration[:8]
                else:
                    crops = parity_crops(self.model.spec)
                self._check(tmp, crops, quantize, tolerance, what)
        return path

    def _check(
        self, path: str, crops: np.ndarray, quantize: str | None, tolerance, what: str
    ) -> None:
        """Heatmaps against Keras; the on-device decode against the codec on the same heatmaps."""
        measure, limit = DEFAULT_TOLERANCE[quantize]
        expected = keras_outputs(self.model, crops, self.names)
        actual = LiteRTRunner(path)(crops)
        errors = heatmap_errors(expected, actual, self.model.spec, what)
        require(errors, measure, limit if tolerance is None else tolerance, what)
        if self.decode:
            heatmaps = actual.get(self.model.spec.final_output)
            if heatmaps is None:
                heatmaps = keras_outputs(self.model, crops, [self.model.spec.final_output])
                heatmaps = heatmaps[self.model.spec.final_output]
            keypoints, scores = self._codec.decode(heatmaps)
            same = np.allclose(actual[KEYPOINTS], keypoints, atol=1e-3)
            if not (same and np.allclose(actual[SCORES], scores, atol=1e-3)):
                raise ExportParityError(
                    f"{what}: the on-device decode differs from the codec's decode"
                )


def _check_arguments(
    path: str | os.PathLike, quantize: str | None, representative_data: Any
) -> str:
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    if quantize == "int8" and representative_data is None:
        raise ValueError(
            "int8 quantization needs representative_data: crops (N, H, W, 3) or a dataset from "
            "keras_pose.data"
        )
    path = os.fspath(path)
    if not path.endswith(".tflite"):
        raise ValueError(f"a LiteRT file name must end with '.tflite', got {path!r}")
    return path


def _convert(saved_model_dir: str, quantize: str | None, calibration: np.ndarray | None) -> bytes:
    """Convert the SavedModel's ``serving_default`` to a TFLite flatbuffer (builtin ops only)."""
    import tensorflow as tf

    if not hasattr(tf, "lite") or not hasattr(tf.lite, "TFLiteConverter"):
        raise ImportError(
            "this TensorFlow has no tf.lite.TFLiteConverter; "
            "LiteRT export needs TF <= 2.21's converter"
        )
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=[SIGNATURE]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: ([crop[None]] for crop in calibration)
    return converter.convert()


def calibration_crops(data: Any, model: PoseModel, limit: int) -> np.ndarray:
    """Up to ``limit`` float32 crops ``(n, H, W, 3)`` from an array or an iterable of batches."""
    expected = (*model.spec.input_size, 3)
    batches = [data] if isinstance(data, np.ndarray) else _batches(data)
    crops, count = [], 0
    for batch in batches:
        batch = np.asarray(batch, dtype=np.float32)
        if batch.shape == expected:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise ValueError(
                f"representative data for {model.name} must be crops (N, {expected[0]}, "
                f"{expected[1]}, 3); got a batch of shape {batch.shape}"
            )
        crops.append(batch[: limit - count])
        count += len(crops[-1])
        if count >= limit:
            break
    if not count:
        raise ValueError("representative data yielded no crops")
    return np.concatenate(crops)


def _batches(data: Iterable[Any]) -> Iterable[Any]:
    """The crops of each element: ``(crops, ...)`` tuples, ``{"image": crops}`` dicts or arrays."""
    for element in data:
        if isinstance(element, (tuple, list)):
            element = element[0]
        if isinstance(element, Mapping):
            if IMAGE_INPUT not in element:
                raise ValueError(
                    f"representative data dicts need an {IMAGE_INPUT!r} key, "
                    f"got {sorted(element)}"
                )
            element = element[IMAGE_INPUT]
        yield element


class LiteRTRunner:
    """Runs a ``.tflite`` file's signature on batches of crops with ``ai_edge_litert``.

    Args:
        model: path or flatbuffer bytes.
        num_threads: CPU threads (XNNPACK, the default CPU delegate).
        signature: the signature to run.
    """

    def __init__(
        self, model: str | os.PathLike | bytes, num_threads: int = 2, signature: str = SIGNATURE
    ):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:  # pragma: no cover - part of the export extra
            raise ImportError("running LiteRT models needs `pip install ai-edge-litert`") from error
        if isinstance(model, bytes):
            self.interpreter = Interpreter(model_content=model, num_threads=num_threads)
        else:
            self.interpreter = Interpreter(model_path=os.fspath(model), num_threads=num_threads)
        signatures = self.interpreter.get_signature_list()
        if signature not in signatures:
            raise ValueError(
                f"no signature {signature!r} in the model; it has {sorted(signatures)}"
            )
        self.input_name = signatures[signature]["inputs"][0]
        self.output_names = list(signatures[signature]["outputs"])
        self.runner = self.interpreter.get_signature_runner(signature)

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """Run every crop of an ``(N, H, W, 3)`` batch (the signature has batch 1)."""
        results = [
            self.runner(**{self.input_name: crop[None].astype(np.float32)}) for crop in crops
        ]
        return {name: np.concatenate([r[name] for r in results]) for name in self.output_names}


def _dark_hint(decode: bool, spec: Any) -> str:
    """What to do when a decode's DARK step (``LOG``, ``DIV``) keeps it off the GPU delegate."""
    if not decode or spec.refine != "dark":
        return ""
    return (" (the model decodes with DARK's step, which needs LOG and DIV: set "
            "model.decode_refine = 'quarter', export with decode=False, or pass "
            "require_gpu_compatible=False)")
