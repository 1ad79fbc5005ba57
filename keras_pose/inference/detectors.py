"""Person detectors for top-down pose: anything that gives person boxes for an image.

A detector is called ``detector(image, frame)`` with a BGR uint8 ``(H, W, 3)`` image and its
:class:`~keras_pose.inference.sources.Frame` and returns ``(boxes, scores)``: ``(N, 4)`` float
``x1, y1, x2, y2`` image pixels and ``(N,)`` scores. :func:`load_detector` makes one from

* a callable ``image -> (boxes xyxy, scores)`` (:class:`CallableDetector`);
* a COCO detection-results ``.json`` (:class:`CocoDetections`);
* an ONNX file (:class:`OnnxDetector`): MMDeploy's RTMDet/YOLOX ``dets`` + ``labels`` outputs
  or an Ultralytics YOLO detect export ``(1, 4 + classes, anchors)``;
* a TensorFlow Object-Detection-API / TF-Hub style SavedModel (:class:`SavedModelDetector`).

Nothing is downloaded: the user passes the file. Only the person class is kept, with a score
threshold and (for raw outputs) greedy box NMS.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

DEFAULT_SCORE_THRESHOLD = 0.3
DEFAULT_NMS_IOU = 0.65


# ------------------------------------------------------------------------------------------
# Boxes


def check_detections(
    boxes: Any, scores: Any, what: str = "detector"
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 4)`` float64 xyxy boxes and ``(N,)`` scores, checked (finite, x2 > x1, y2 > y1)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) if np.size(boxes) else np.zeros((0, 4))
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(scores) != len(boxes):
        raise ValueError(f"{what} returned {len(boxes)} boxes and {len(scores)} scores")
    if not np.all(np.isfinite(boxes)) or not np.all(np.isfinite(scores)):
        raise ValueError(f"{what} returned non-finite boxes or scores")
    return boxes, scores


def keep_valid(boxes: np.ndarray, scores: np.ndarray, image_shape: Sequence[int],
               min_size: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the image, without those narrower or lower than ``min_size`` pixels."""
    h, w = image_shape[:2]
    boxes = boxes.copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
    ok = (boxes[:, 2] - boxes[:, 0] >= min_size) & (boxes[:, 3] - boxes[:, 1] >= min_size)
    return boxes[ok], scores[ok]


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``(A, B)`` of xyxy boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy NMS (highest score first)."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while len(order):
        best, order = order[0], order[1:]
        keep.append(int(best))
        if len(order):
            order = order[box_iou(boxes[best], boxes[order])[0] <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def select_people(boxes, scores, labels, person_label: int, score_threshold: float,
                  nms_iou: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Person-class boxes scoring at least ``score_threshold``, after NMS (if ``nms_iou``)."""
    boxes, scores = check_detections(boxes, scores)
    labels = np.asarray(labels).reshape(-1)
    keep = (labels == person_label) & (scores >= score_threshold)
    boxes, scores = boxes[keep], scores[keep]
    if nms_iou is not None and len(boxes):
        kept = nms(boxes, scores, nms_iou)
        boxes, scores = boxes[kept], scores[kept]
    return boxes, scores


# ------------------------------------------------------------------------------------------
# Detectors


class CallableDetector:
    """Wraps ``fn(image) -> (boxes xyxy, scores)``, checking what it returns and applying
    ``score_threshold``."""

    def __init__(self, fn: Callable, score_threshold: float = 0.0) -> None:
        self.fn = fn
        self.score_threshold = float(score_threshold)

    def __call__(self, image: np.ndarray, frame: Any = None) -> tuple[np.ndarray, np.ndarray]:
        result = self.fn(image)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise ValueError("a detector callable must return (boxes xyxy (N, 4), scores (N,))")
        boxes, scores = check_detections(*result, what=repr(self.fn))
        keep = scores >= self.score_threshold
        return keep_valid(boxes[keep], scores[keep], image.shape)


class CocoDetections:
    """Person boxes from a COCO detection-results ``.json`` (``[{"image_id", "category_id",
    "bbox": [x, y, w, h], "score"}, ...]``, what ``recipes/eval_coco.py`` reads).

    A frame is looked up by its image id: ``image_ids[frame.name]`` when given (file name ->
    id), else the digits of an image file's name (COCO's ``000000397133.jpg`` -> 397133), else
    the frame index (videos). Frames without detections give no boxes.
    """

    def __init__(self, path: str | os.PathLike, score_threshold: float = 0.0,
                 category_id: int = 1, image_ids: dict[str, int] | None = None) -> None:
        path = os.fspath(path)
        with open(path) as f:
            records = json.load(f)
        if not isinstance(records, list):
            raise ValueError(f"{path}: COCO detection results are a JSON list of detections")
        self.path = path
        self.score_threshold = float(score_threshold)
        self.image_ids = dict(image_ids or {})
        self.by_image: dict[int, list] = collections.defaultdict(list)
        for i, record in enumerate(records):
            try:
                if int(record.get("category_id", category_id)) != category_id:
                    continue
                x, y, w, h = (float(v) for v in record["bbox"])
                box = (x, y, x + w, y + h, float(record["score"]))
                self.by_image[int(record["image_id"])].append(box)
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(
                    f"{path}: detection {i} is malformed ({error!r}): {record}"
                ) from error

    def image_id(self, frame: Any) -> int:
        name = os.path.basename(str(getattr(frame, "name", "")))
        if name in self.image_ids:
            return self.image_ids[name]
        digits = "".join(ch for ch in os.path.splitext(name)[0] if ch.isdigit())
        if getattr(frame, "kind", "") == "image" and digits:
            return int(digits)
        return int(getattr(frame, "index", 0))

    def __call__(self, image: np.ndarray, frame: Any = None) -> tuple[np.ndarray, np.ndarray]:
        rows = np.array(self.by_image.get(self.image_id(frame), []), np.float64).reshape(-1, 5)
        rows = rows[rows[:, 4] >= self.score_threshold]
        return keep_valid(rows[:, :4], rows[:, 4], image.shape)


def letterbox(image: np.ndarray, size: tuple[int, int], centre: bool, pad_value: float
              ) -> tuple[np.ndarray, float, tuple[float, float]]:
    """``image`` resized to fit ``size = (H, W)`` keeping its aspect ratio and padded; returns
    it, the scale and the ``(x, y)`` offset of the resized image in the padded one."""
    h, w = image.shape[:2]
    scale = min(size[0] / h, size[1] / w)
    new_h, new_w = int(round(h * scale)), int(round(w * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top = (size[0] - new_h) // 2 if centre else 0
    left = (size[1] - new_w) // 2 if centre else 0
    canvas = np.full((*size, 3), pad_value, np.float32)
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas, scale, (float(left), float(top))


# Preprocessing of the exported detectors: channel order, mean, std, pad value, centred pad.
PRESETS = {
    "rtmdet": dict(rgb=False, mean=(103.53, 116.28, 123.675), std=(57.375, 57.12, 58.395),
                   pad_value=114.0, centre=False),
    "yolox": dict(rgb=False, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), pad_value=114.0,
                  centre=False),
    "ultralytics": dict(rgb=True, mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0),
                        pad_value=114.0, centre=True),
}


class OnnxDetector:
    """A detector exported to ONNX, run with ONNX Runtime.

    Layouts (found from the outputs):

    * ``"mmdeploy"``: outputs ``dets`` ``(1, N, 5)`` (``x1, y1, x2, y2, score`` in input pixels)
      and ``labels`` ``(1, N)`` (MMDeploy's RTMDet / YOLOX end-to-end exports; NMS is in the
      graph). Preprocessing preset ``"rtmdet"`` (default) or ``"yolox"``.
    * ``"ultralytics"``: one output ``(1, 4 + classes, anchors)`` of ``cx, cy, w, h`` and class
      scores (``yolo export format=onnx``); RGB / 255, centred letterbox; NMS here.

    Args:
        path: the ``.onnx`` file.
        score_threshold: minimum person score.
        nms_iou: IoU above which a lower-scored box is suppressed (raw outputs; MMDeploy's
            in-graph NMS already ran, but a second pass at this IoU changes nothing it kept).
        person_label: the person class (0 for COCO-trained MMDet and Ultralytics models).
        preset: preprocessing (``"rtmdet"``, ``"yolox"``, ``"ultralytics"``); by layout.
        input_size: ``(H, W)`` when the model's input is dynamic (default 640x640).
    """

    def __init__(self, path: str | os.PathLike, score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                 nms_iou: float = DEFAULT_NMS_IOU, person_label: int = 0,
                 preset: str | None = None, input_size: Sequence[int] | None = None,
                 num_threads: int = 2) -> None:
        import onnxruntime as ort

        self.path = os.fspath(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        outputs = [o.name for o in self.session.get_outputs()]
        self.layout = self._layout(outputs)
        self.preset = preset or ("ultralytics" if self.layout == "ultralytics" else "rtmdet")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        shape = list(model_input.shape)
        if len(shape) != 4 or shape[1] != 3:
            raise ValueError(f"{self.path}: expected an NCHW image input (1, 3, H, W), got {shape}")
        static = all(isinstance(d, int) and d > 0 for d in shape[2:])
        self.input_size = tuple(
            int(v) for v in (input_size or (shape[2:] if static else (640, 640)))
        )
        self.score_threshold = float(score_threshold)
        self.nms_iou = nms_iou
        self.person_label = int(person_label)
        self.output_names = outputs

    def _layout(self, outputs: list[str]) -> str:
        if "dets" in outputs and "labels" in outputs:
            return "mmdeploy"
        if len(outputs) == 1:
            return "ultralytics"
        raise ValueError(
            f"{self.path}: unknown detector outputs {outputs}; expected MMDeploy's 'dets' + "
            "'labels' or one Ultralytics (1, 4 + classes, anchors) output"
        )

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float]]:
        preset = PRESETS[self.preset]
        pixels = image[..., ::-1] if preset["rgb"] else image
        canvas, scale, offset = letterbox(
            pixels, self.input_size, preset["centre"], preset["pad_value"]
        )
        canvas = (canvas - np.float32(preset["mean"])) / np.float32(preset["std"])
        return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], np.float32), scale, offset

    def __call__(self, image: np.ndarray, frame: Any = None) -> tuple[np.ndarray, np.ndarray]:
        blob, scale, offset = self.preprocess(image)
        results = dict(zip(self.output_names, self.session.run(None, {self.input_name: blob})))
        if self.layout == "mmdeploy":
            dets = np.asarray(results["dets"], np.float64).reshape(-1, 5)
            labels = np.asarray(results["labels"]).reshape(-1)
            boxes, scores = dets[:, :4], dets[:, 4]
        else:
            boxes, scores, labels = self._ultralytics(next(iter(results.values())))
        boxes, scores = select_people(boxes, scores, labels, self.person_label,
                                      self.score_threshold, self.nms_iou)
        boxes = (boxes - np.array([*offset, *offset])) / scale
        return keep_valid(boxes, scores, image.shape)

    def _ultralytics(self, output: np.ndarray):
        output = np.asarray(output, np.float64)
        if output.ndim != 3 or output.shape[0] != 1 or output.shape[1] < 5:
            raise ValueError(f"{self.path}: Ultralytics output must be (1, 4 + classes, anchors), "
                             f"got {output.shape}")
        table = output[0]
        centre, size, classes = table[:2].T, table[2:4].T, table[4:].T
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        return boxes, classes.max(axis=1), classes.argmax(axis=1)


class SavedModelDetector:
    """A TensorFlow Object-Detection-API / TF-Hub style detector SavedModel.

    Called with a uint8 RGB batch of one image; reads ``detection_boxes`` (normalised ``ymin,
    xmin, ymax, xmax``), ``detection_classes`` (person = 1), ``detection_scores`` and, when
    present, ``num_detections``.
    """

    def __init__(self, path: str | os.PathLike, score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                 person_class: int = 1, signature: str = "serving_default") -> None:
        import tensorflow as tf

        self.path = os.fspath(path)
        self._tf = tf
        loaded = tf.saved_model.load(self.path)
        self._loaded = loaded
        signatures = getattr(loaded, "signatures", {})
        if signature in signatures:
            function = signatures[signature]
            names = list(function.structured_input_signature[1])
            if len(names) != 1:
                raise ValueError(
                    f"{self.path}: signature {signature!r} takes {names}, expected one image"
                )
            self._call = lambda batch: function(**{names[0]: batch})
        elif callable(loaded):
            self._call = loaded
        else:
            raise ValueError(f"{self.path}: no {signature!r} signature and not callable")
        self.score_threshold = float(score_threshold)
        self.person_class = int(person_class)

    def __call__(self, image: np.ndarray, frame: Any = None) -> tuple[np.ndarray, np.ndarray]:
        rgb = np.ascontiguousarray(image[..., ::-1])
        outputs = self._call(self._tf.constant(rgb[None], self._tf.uint8))
        missing = {"detection_boxes", "detection_classes", "detection_scores"} - set(outputs)
        if missing:
            raise ValueError(f"{self.path}: outputs {sorted(outputs)} lack {sorted(missing)}")
        boxes = np.asarray(outputs["detection_boxes"], np.float64).reshape(-1, 4)
        classes = np.asarray(outputs["detection_classes"]).reshape(-1)
        scores = np.asarray(outputs["detection_scores"], np.float64).reshape(-1)
        if "num_detections" in outputs:
            count = int(np.asarray(outputs["num_detections"]).reshape(-1)[0])
            boxes, classes, scores = boxes[:count], classes[:count], scores[:count]
        h, w = image.shape[:2]
        xyxy = boxes[:, [1, 0, 3, 2]] * np.array([w, h, w, h], np.float64)
        labels = np.rint(classes).astype(np.int64)
        boxes, scores = select_people(
            xyxy, scores, labels, self.person_class, self.score_threshold, None
        )
        return keep_valid(boxes, scores, image.shape)


def load_detector(detector: Any, score_threshold: float = DEFAULT_SCORE_THRESHOLD, **kwargs: Any):
    """A detector from a callable, a ``.json`` of COCO detections, an ``.onnx`` file or a
    SavedModel directory (``kwargs`` go to the detector class)."""
    if isinstance(detector, (CallableDetector, CocoDetections, OnnxDetector, SavedModelDetector)):
        return detector
    if callable(detector) and not isinstance(detector, (str, os.PathLike)):
        return CallableDetector(detector, score_threshold)
    if not isinstance(detector, (str, os.PathLike)):
        raise TypeError(f"detector must be a callable or a path, got {type(detector).__name__}")
    path = os.fspath(detector)
    if not os.path.exists(path):
        raise FileNotFoundError(f"detector not found: {path}")
    if os.path.isdir(path):
        return SavedModelDetector(path, score_threshold, **kwargs)
    if path.endswith(".json"):
        return CocoDetections(path, score_threshold, **kwargs)
    if path.endswith(".onnx"):
        return OnnxDetector(path, score_threshold, **kwargs)
    raise ValueError(f"{path}: a detector is a callable, a COCO results .json, an .onnx file or "
                     "a SavedModel directory")
