"""TF Serving SavedModel with two signatures: batches of crops, and whole images with boxes.

* ``serving_default(image)``: ``image`` float32 ``(N, H, W, 3)`` crops of the model's input size,
  0..255 in the model's channel order -> the named heatmaps, ``keypoints`` ``(N, K, 2)`` in crop
  pixels and ``scores`` ``(N, K)`` (the codec's decode, in the graph).
* ``predict_image(image, boxes)``: one uint8 ``(h, w, 3)`` image (RGB by default) and ``(N, 4)``
  person boxes ``x, y, w, h`` in image pixels -> ``keypoints`` ``(N, K, 2)`` in image pixels and
  ``scores`` ``(N, K)``. Crop (``keras_pose.data.transforms`` geometry with the spec's box
  extension), optional flip test, decode and back-projection all run in the graph.

``assets.extra/keras_pose.json`` holds the spec (:mod:`keras_pose.export.metadata`). The
directory is written (and checked) beside its destination, then renamed into place, so TF
Serving watching ``<base>/<name>/`` never sees a half-written version.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_pose.codecs.flip import check_flip_indices, flip_heatmaps_graph, flip_images_graph
from keras_pose.export._archive import write_saved_model
from keras_pose.export._model import (
    KEYPOINTS,
    SCORES,
    crop_signature,
    heatmap_model,
    keras_outputs,
    resolve_outputs,
)
from keras_pose.export.metadata import metadata_for, write_saved_model_metadata
from keras_pose.export.parity import ExportParityError, heatmap_errors, parity_crops, require
from keras_pose.models.base import IMAGE_INPUT, PoseModel
from keras_pose.utils.atomic import atomic_path

CROPS_SIGNATURE = "serving_default"
IMAGE_SIGNATURE = "predict_image"
BOXES_INPUT = "boxes"


def saved_model(
    model: PoseModel,
    path: str | os.PathLike,
    *,
    version: int | None = None,
    outputs: str | Sequence[str] = "final",
    flip_test: bool | None = None,
    flip_indices: Sequence[int] | None = None,
    image_channel_order: str = "RGB",
    check: bool = True,
    atol: float = 1e-4,
    flip: bool | None = None,
) -> str:
    """Write ``model`` as a TF Serving SavedModel (see the module docstring for the signatures).

    Args:
        model: a keras-pose model (TensorFlow backend).
        path: the SavedModel directory, or with ``version`` the model's base directory
            (``savedmodels/<name>``), in which ``<version>/`` is written.
        version: TF Serving version number (a positive integer).
        outputs: heatmap outputs ``serving_default`` returns: ``"final"`` (``heatmaps``, the
            default), ``"all"`` or a list of output names.
        flip_test: flip test in ``predict_image`` (default: ``model.spec.flip_test``).
        flip_indices: left/right channel permutation for the flip; COCO-17's by default when
            the model has 17 keypoints.
        image_channel_order: channel order of ``predict_image``'s uint8 image (``"RGB"``,
            what image decoders give, or ``"BGR"``); converted to the model's in the graph.
        check: load the written directory and compare ``serving_default``'s heatmaps with
            Keras (``atol`` on heatmaps divided by the output's peak, see
            :mod:`keras_pose.export.parity`) and its keypoints with the in-graph decode of the
            Keras heatmaps; run ``predict_image`` once.
        flip: the former name of ``flip_test`` (deprecated).

    Returns:
        The directory written. Raises ``ExportParityError`` (writing nothing) if a check fails.
    """
    if image_channel_order not in ("RGB", "BGR"):
        raise ValueError(f"image_channel_order must be 'RGB' or 'BGR', got {image_channel_order!r}")
    path = os.fspath(path)
    if version is not None:
        if int(version) < 1 or int(version) != version:
            raise ValueError(f"TF Serving versions are positive integers, got {version!r}")
        path = os.path.join(path, str(int(version)))
    names = resolve_outputs(model, outputs)
    spec = model.spec
    if flip is not None:
        warnings.warn("saved_model(flip=...) is deprecated; use flip_test=...",
                      DeprecationWarning, stacklevel=2)
        flip_test = flip if flip_test is None else flip_test
    flip = spec.flip_test if flip_test is None else bool(flip_test)
    graph = ServingGraph(
        model, names, flip, _flip_indices(spec, flip, flip_indices), image_channel_order
    )
    with atomic_path(path, directory=True) as tmp:
        write_saved_model(
            tmp,
            graph.export_model,
            {
                CROPS_SIGNATURE: (graph.predict_crops, [crop_signature(model)]),
                IMAGE_SIGNATURE: (graph.predict_image, graph.image_signature()),
            },
        )
        write_saved_model_metadata(tmp, metadata_for(spec))
        if check:
            _check(tmp, model, graph, atol)
    return path


def _flip_indices(spec, flip: bool, flip_indices: Sequence[int] | None) -> list[int] | None:
    if not flip:
        return None
    if flip_indices is None:
        if spec.num_keypoints != 17:
            raise ValueError(
                f"flip test needs flip_indices for {spec.num_keypoints} keypoints "
                "(DatasetInfo.flip_indices), or flip=False"
            )
        from keras_pose.data.dataset_info import COCO17

        flip_indices = COCO17.flip_indices
    return check_flip_indices(flip_indices, spec.num_keypoints)


class ServingGraph:
    """The traced functions of the two signatures (TensorFlow ops around the Keras model)."""

    def __init__(
        self,
        model: PoseModel,
        names: Sequence[str],
        flip: bool,
        flip_indices: Sequence[int] | None,
        image_channel_order: str,
    ) -> None:
        from keras_pose.codecs import codec_from_spec
        from keras_pose.data.transforms import border_value_for

        self.spec = model.spec
        self.names = list(names)
        final = self.spec.final_output
        model_names = self.names if final in self.names else [*self.names, final]
        self.export_model = heatmap_model(model, model_names)
        self._model_function = None
        self.codec = codec_from_spec(
            self.spec.final.codec, self.spec.input_size, self.spec.final.stride
        )
        self.flip = flip
        self.flip_indices = flip_indices
        self.reverse_channels = image_channel_order != self.spec.channel_order
        self.border_value = border_value_for(self.spec)

    def run_model(self, crops):
        """The heatmaps of ``crops``, through one ``tf.function`` that both signatures call, so
        the model is traced (and stored in the SavedModel) once."""
        if self._model_function is None:
            import tensorflow as tf

            spec = tf.TensorSpec((None, *self.spec.input_size, 3), tf.float32)
            self._model_function = tf.function(
                lambda batch: self.export_model(batch, training=False),
                input_signature=[spec],
                autograph=False,
            )
        return self._model_function(crops)

    def image_signature(self) -> list:
        import tensorflow as tf

        return [
            tf.TensorSpec((None, None, 3), tf.uint8, name=IMAGE_INPUT),
            tf.TensorSpec((None, 4), tf.float32, name=BOXES_INPUT),
        ]

    def decode(self, heatmaps):
        from keras_pose.codecs.graph import decode_graph

        return decode_graph(heatmaps, self.codec)

    def check_crops(self, image):
        """``image``, after in-graph checks that it is ``(N, H, W, 3)`` crops of the model's
        input size (TF Serving feeds tensors without checking the signature's shape)."""
        h, w = self.spec.input_size
        ok = _has_shape(image, [None, h, w, 3])
        message = (f"{CROPS_SIGNATURE} input '{IMAGE_INPUT}' must be (N, {h}, {w}, 3) float "
                   f"crops (the model's input size, 3 channels)")
        return _checked(image, [ok], [message])

    def check_image_and_boxes(self, image, boxes):
        """``image, boxes`` after in-graph checks: one ``(height, width, 3)`` image (not a
        batch) and ``(N, 4)`` boxes ``x, y, w, h`` with finite values and ``w, h > 0``, as
        :func:`keras_pose.inference.predictor.check_boxes` requires."""
        import tensorflow as tf

        image_ok = _has_shape(image, [None, None, 3])
        image_ok = tf.logical_and(image_ok, tf.reduce_all(tf.shape(image)[:2] > 0))
        shape_ok = _has_shape(boxes, [None, 4])
        values_ok = tf.cond(shape_ok, lambda: tf.reduce_all(
            tf.logical_and(tf.math.is_finite(boxes), tf.concat(
                [tf.ones_like(boxes[:, :2], tf.bool), boxes[:, 2:] > 0], axis=1))),
            lambda: tf.constant(True))
        messages = [
            f"{IMAGE_SIGNATURE} input '{IMAGE_INPUT}' must be one (height, width, 3) uint8 image "
            "(not a batch, 3 channels, not empty)",
            f"{IMAGE_SIGNATURE} input '{BOXES_INPUT}' must be (N, 4) boxes x, y, w, h",
            f"{IMAGE_SIGNATURE} input '{BOXES_INPUT}': every box needs finite x, y, w, h and "
            "w, h > 0",
        ]
        image = _checked(image, [image_ok], messages[:1])
        return image, _checked(boxes, [shape_ok, values_ok], messages[1:])

    def predict_crops(self, image):
        """``serving_default``: crops -> named heatmaps, crop-pixel keypoints and scores."""
        image = self.check_crops(image)

        def compute():
            outputs = self.run_model(image)
            keypoints, scores = self.decode(outputs[self.spec.final_output])
            result = {name: outputs[name] for name in self.names}
            result.update({KEYPOINTS: keypoints, SCORES: scores})
            return result

        return self._unless_empty(image, compute, self.names)

    def _unless_empty(self, batch, compute, heatmap_names):
        """``compute()``, or empty outputs for an empty batch (zero-sized batches break some
        CPU kernels, and a request may hold no person)."""
        import tensorflow as tf

        k = self.spec.num_keypoints

        def empty():
            result = {
                n: tf.zeros((0, *self.export_model.output[n].shape[1:])) for n in heatmap_names
            }
            result.update({KEYPOINTS: tf.zeros((0, k, 2)), SCORES: tf.zeros((0, k))})
            return result

        return tf.cond(tf.shape(batch)[0] > 0, compute, empty)

    def final_heatmaps(self, crops):
        """Heatmaps of ``crops``; with flip test, averaged with the un-flipped mirror's."""
        import tensorflow as tf

        if not self.flip:
            return self.run_model(crops)[self.spec.final_output]
        # One batch of the crops and their mirrors (as tf-cpn's test does), then split.
        count = tf.shape(crops)[0]
        both = tf.concat([crops, flip_images_graph(crops)], axis=0)
        heatmaps = self.run_model(both)[self.spec.final_output]
        heatmaps, mirrored = heatmaps[:count], heatmaps[count:]
        shift = self.spec.final.codec.flip_shift
        return 0.5 * (heatmaps + flip_heatmaps_graph(mirrored, self.flip_indices, shift=shift))

    def predict_image(self, image, boxes):
        """``predict_image``: uint8 image + ``x, y, w, h`` boxes -> image-pixel keypoints,
        scores."""
        import tensorflow as tf

        from keras_pose.export._crop import crop_image, crop_points_to_image, crop_to_image_affines

        image, boxes = self.check_image_and_boxes(image, boxes)

        def compute():
            pixels = tf.cast(image, tf.float32)
            if self.reverse_channels:
                pixels = tf.reverse(pixels, axis=[-1])
            affines = crop_to_image_affines(boxes, self.spec.input_size, self.spec.box_extension)
            crops = crop_image(pixels, affines, self.spec.input_size, self.border_value)
            keypoints, scores = self.decode(self.final_heatmaps(crops))
            return {KEYPOINTS: crop_points_to_image(keypoints, affines), SCORES: scores}

        return self._unless_empty(boxes, compute, [])


def _has_shape(tensor, shape: Sequence[int | None]):
    """A boolean tensor: ``tensor`` has ``len(shape)`` dimensions, equal to ``shape``'s where
    not ``None`` (computed at run time: TF Serving does not check a signature's shape)."""
    import tensorflow as tf

    actual = tf.shape(tensor)
    fixed = [i for i, size in enumerate(shape) if size is not None]

    def sizes_match():
        wanted = tf.constant([shape[i] for i in fixed], tf.int32)
        return tf.reduce_all(tf.equal(tf.gather(actual, fixed), wanted))

    rank_ok = tf.equal(tf.size(actual), len(shape))
    return tf.cond(rank_ok, sizes_match, lambda: tf.constant(False)) if fixed else rank_ok


def _checked(tensor, conditions, messages):
    """``tensor`` once every condition holds; else an ``InvalidArgumentError`` with the
    message of the first that does not."""
    import tensorflow as tf

    asserts = []
    for condition, message in zip(conditions, messages):
        with tf.control_dependencies(asserts):
            asserts.append(tf.debugging.Assert(condition, [message]))
    with tf.control_dependencies(asserts):
        return tf.identity(tensor)


def _check(directory: str, model: PoseModel, graph: ServingGraph, atol: float) -> None:
    import tensorflow as tf

    what = f"SavedModel export of {model.name}"
    loaded = tf.saved_model.load(directory)
    crops = parity_crops(model.spec)
    outputs = loaded.signatures[CROPS_SIGNATURE](image=tf.constant(crops))
    served = {k: v.numpy() for k, v in outputs.items()}
    expected = keras_outputs(model, crops, graph.names)
    require(heatmap_errors(expected, served, model.spec, what), "scaled", atol, what)
    keypoints, scores = (np.asarray(t) for t in graph.decode(expected[model.spec.final_output]))
    for name, reference in ((KEYPOINTS, keypoints), (SCORES, scores)):
        if served[name].shape != reference.shape or not np.allclose(
            served[name], reference, atol=1e-3
        ):
            raise ExportParityError(f"{what}: {name} differ from the decode of Keras' heatmaps")
    h, w = model.spec.input_size
    image = np.random.default_rng(0).integers(0, 256, (2 * h, 2 * w, 3), dtype=np.uint8)
    boxes = np.array([[0.25 * w, 0.25 * h, w, h]], np.float32)
    result = loaded.signatures[IMAGE_SIGNATURE](image=tf.constant(image), boxes=tf.constant(boxes))
    shape = (1, model.spec.num_keypoints)
    if tuple(result[KEYPOINTS].shape) != (*shape, 2) or tuple(result[SCORES].shape) != shape:
        shapes = {k: v.shape for k, v in result.items()}
        raise ExportParityError(f"{what}: predict_image returned shapes {shapes}")
    if not np.all(np.isfinite(result[KEYPOINTS].numpy())):
        raise ExportParityError(f"{what}: predict_image returned non-finite keypoints")


# ------------------------------------------------------------------------------------------
# What TF Serving sees


def signature_defs(directory: str | os.PathLike) -> dict[str, dict[str, dict[str, tuple]]]:
    """The ``serve`` MetaGraph's signature defs, as TF Serving reads them from ``saved_model.pb``.

    ``{signature: {"inputs"|"outputs": {name: (dtype name, shape with -1 for unknown)}}}``.
    """
    import tensorflow as tf
    from tensorflow.python.saved_model import loader_impl

    saved = loader_impl.parse_saved_model(os.fspath(directory))
    meta_graphs = [m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags]
    if not meta_graphs:
        raise ValueError(f"{directory}: no MetaGraph tagged 'serve'")
    result = {}
    for key, signature in meta_graphs[0].signature_def.items():
        if key.startswith("__"):
            continue
        result[key] = {
            part: {
                name: (
                    tf.dtypes.as_dtype(info.dtype).name,
                    tuple(
                        -1 if info.tensor_shape.unknown_rank else d.size
                        for d in info.tensor_shape.dim
                    ),
                )
                for name, info in getattr(signature, part).items()
            }
            for part in ("inputs", "outputs")
        }
    return result


def rest_request(inputs: Mapping[str, Any], signature_name: str = CROPS_SIGNATURE) -> str:
    """The JSON body of a TF Serving REST ``POST /v1/models/<name>:predict`` call.

    Uses the columnar ``"inputs"`` format, which allows inputs of different batch sizes
    (``predict_image``'s image has no batch dimension, its boxes do).
    """
    body = {
        "signature_name": signature_name,
        "inputs": {name: np.asarray(value).tolist() for name, value in inputs.items()},
    }
    return json.dumps(body)
