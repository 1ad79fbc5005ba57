"""`PoseInferencer`: person detection, top-down pose, tracking and smoothing on images and videos.

    inferencer = keras_pose.PoseInferencer("rsn50.tflite", detector="rtmdet.onnx")
    for result in inferencer("walk.mp4"):
        print(result.frame.index, result.track_ids, result.keypoints.shape)

The pose model is any form :func:`~keras_pose.inference.pose_models.load_pose` reads; the
detector anything :func:`~keras_pose.inference.detectors.load_detector` reads (without one,
the whole image is one person). Crops of consecutive frames are batched through the
:class:`~keras_pose.inference.Predictor` (crop, flip test per the spec, decode, back to image
pixels). In videos people get track ids (:class:`~keras_pose.inference.tracking.Tracker`) and,
optionally, One-Euro-smoothed keypoints. Frames that cannot be read are skipped, counted and
logged.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from keras_pose.data.dataset_info import DatasetInfo
from keras_pose.inference.detectors import load_detector, xyxy_to_xywh
from keras_pose.inference.pose_models import load_pose
from keras_pose.inference.predictor import Predictor
from keras_pose.inference.smoothing import PoseSmoother
from keras_pose.inference.sources import Frame, open_source
from keras_pose.inference.tracking import Tracker

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PoseResult:
    """The people of one frame.

    Attributes:
        frame: the :class:`~keras_pose.inference.sources.Frame` (index, name, time, image).
        boxes: ``(N, 4)`` person boxes ``x1, y1, x2, y2`` in image pixels.
        box_scores: ``(N,)`` detector scores.
        keypoints: ``(N, K, 3)`` ``x, y, score`` in image pixels.
        track_ids: ``(N,)`` int track ids (videos), else ``None``.
    """

    frame: Frame
    boxes: np.ndarray
    box_scores: np.ndarray
    keypoints: np.ndarray
    track_ids: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        """One JSON Lines record: frame index, name, time and each person's id, box, box score,
        keypoints ``[[x, y, score], ...]`` (rounded to 0.01 px / 1e-4)."""
        people = []
        for i in range(len(self.boxes)):
            people.append({
                "id": None if self.track_ids is None else int(self.track_ids[i]),
                "box": [round(float(v), 2) for v in self.boxes[i]],
                "box_score": round(float(self.box_scores[i]), 4),
                "keypoints": [[round(float(x), 2), round(float(y), 2), round(float(s), 4)]
                              for x, y, s in self.keypoints[i]],
            })
        return {"frame": self.frame.index, "name": self.frame.name,
                "time": round(self.frame.time, 4), "people": people}


@dataclasses.dataclass
class InferenceStats:
    """Counters of the last call: frames done, frames skipped, people, seconds spent in the
    detector and in total."""

    frames: int = 0
    skipped: int = 0
    people: int = 0
    detector_seconds: float = 0.0
    total_seconds: float = 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.total_seconds if self.total_seconds > 0 else 0.0


class PoseInferencer:
    """Detector + top-down pose (+ tracking and smoothing for videos).

    Args:
        pose: a ``PoseModel``, ``.keras``, SavedModel directory, ``.tflite`` or ``.onnx``.
        detector: a callable ``image -> (boxes xyxy, scores)``, a COCO detection-results
            ``.json``, a detector ``.onnx`` or a detector SavedModel; ``None``: the whole image
            is one person.
        dataset_info: the keypoint set (default: the export's, or COCO-17 for 17 keypoints).
        flip_test: average with the mirrored crop (default: the spec's).
        batch_size: crops per pose-model call (across frames).
        score_threshold: least detector score of a person.
        max_people: keep at most this many best-scored people per frame.
        tracking: ``"oks"``, ``"iou"`` or ``None`` (video and camera sources only).
        smoothing: One-Euro smoothing of tracked keypoints: ``False``, ``True`` or the filter's
            settings (``{"min_cutoff": 1.0, "beta": 0.05}``).
        num_threads: CPU threads of LiteRT / ONNX Runtime.
    """

    def __init__(
        self,
        pose: Any,
        detector: Any = None,
        *,
        dataset_info: DatasetInfo | None = None,
        flip_test: bool | None = None,
        batch_size: int = 16,
        score_threshold: float = 0.3,
        max_people: int | None = None,
        tracking: str | None = "oks",
        smoothing: bool | dict = False,
        num_threads: int = 2,
    ) -> None:
        self.pose = load_pose(pose, num_threads=num_threads)
        self.dataset_info = dataset_info or getattr(self.pose, "dataset_info", None)
        self.predictor = Predictor(self.pose, self.dataset_info, flip_test, batch_size)
        self.dataset_info = self.predictor.dataset_info
        self.detector = None if detector is None else load_detector(detector, score_threshold)
        self.score_threshold = float(score_threshold)
        self.max_people = max_people
        if tracking not in ("oks", "iou", None):
            raise ValueError(f"tracking must be 'oks', 'iou' or None, got {tracking!r}")
        self.tracking = tracking
        self.smoothing = {} if smoothing is True else (dict(smoothing) if smoothing else None)
        self.stats = InferenceStats()

    @property
    def spec(self):
        return self.pose.spec

    def detect(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes (xyxy) and scores of a frame, best first, at most ``max_people``."""
        image = frame.image
        if self.detector is None:
            h, w = image.shape[:2]
            return np.array([[0.0, 0.0, w, h]]), np.ones(1)
        boxes, scores = self.detector(image, frame)
        order = np.argsort(-scores, kind="stable")[: self.max_people]
        return boxes[order], scores[order]

    def __call__(self, source: Any, progress: bool = False) -> Iterator[PoseResult]:
        """A :class:`PoseResult` per readable frame of ``source`` (an image path or array, a
        list of them, a folder, a video file or a camera index), in order."""
        frames = open_source(source)
        video = frames.kind in ("video", "camera")
        tracker = None
        if video and self.tracking:
            tracker = Tracker(self.tracking, sigmas=self.dataset_info.sigmas)
        smoother = None
        if tracker and self.smoothing is not None:
            smoother = PoseSmoother(**self.smoothing)
        self.stats = stats = InferenceStats()
        meter = Progress(frames.length) if progress else None
        pending: collections.deque = collections.deque()
        start = time.perf_counter()

        def crops_of_frames():
            for frame in frames:
                if frame.image is None:
                    stats.skipped += 1
                    log.warning("skipped frame %s: %s", frame.name, frame.error)
                    continue
                detect_start = time.perf_counter()
                boxes, scores = self.detect(frame)
                stats.detector_seconds += time.perf_counter() - detect_start
                pending.append((frame, boxes, scores))
                yield frame.image, xyxy_to_xywh(boxes)

        try:
            for keypoints in self.predictor.predict_many(crops_of_frames()):
                frame, boxes, scores = pending.popleft()
                ids = tracker.update(boxes, keypoints) if tracker else None
                if smoother is not None:
                    keypoints = smoother(ids, keypoints, frame.time)
                stats.frames += 1
                stats.people += len(boxes)
                stats.total_seconds = time.perf_counter() - start
                if meter:
                    meter.update(stats)
                yield PoseResult(frame, boxes, scores, keypoints, ids)
        finally:
            frames.close()
            stats.total_seconds = time.perf_counter() - start
            if meter:
                meter.close(stats)

    def predict(self, image: Any, boxes: Any = None) -> PoseResult:
        """One image (array or path); ``boxes`` ``(N, 4)`` xyxy skip the detector."""
        frame = next(iter(open_source(image)))
        if frame.image is None:
            raise ValueError(f"cannot read {frame.name}: {frame.error}")
        if boxes is None:
            boxes, scores = self.detect(frame)
        else:
            boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
            scores = np.ones(len(boxes))
        keypoints = self.predictor(frame.image, xyxy_to_xywh(boxes)) if len(boxes) else np.zeros(
            (0, self.spec.num_keypoints, 3))
        return PoseResult(frame, boxes, scores, keypoints)


class Progress:
    """A one-line progress meter on stderr: frames done (of the total), frames/s, skipped."""

    def __init__(self, total: int | None, interval: float = 0.5, stream=None) -> None:
        self.total = total
        self.interval = interval
        self.stream = stream or sys.stderr
        self.last = 0.0

    def line(self, stats: InferenceStats) -> str:
        done = f"{stats.frames}/{self.total}" if self.total else f"{stats.frames}"
        return (f"frames {done}  {stats.frames_per_second:.1f} frames/s  "
                f"people {stats.people}  skipped {stats.skipped}")

    def update(self, stats: InferenceStats) -> None:
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self.stream.write("\r" + self.line(stats))
            self.stream.flush()

    def close(self, stats: InferenceStats) -> None:
        self.stream.write("\r" + self.line(stats) + "\n")
        self.stream.flush()
