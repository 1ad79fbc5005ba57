"""Greedy multi-person tracking across video frames (the pose tracker of MMPose's inferencer,
simplified): each frame's people are matched to the live tracks by OKS of their keypoints or
IoU of their boxes, best pair first; an unmatched person starts a new track (a new id), a track
unmatched for more than ``max_lost`` frames ends. Ids are never reused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from keras_pose.data.dataset_info import COCO17
from keras_pose.evaluation.nms import oks_matrix
from keras_pose.inference.detectors import box_iou

METRICS = ("oks", "iou")
DEFAULT_THRESHOLDS = {"oks": 0.3, "iou": 0.3}


@dataclasses.dataclass
class Track:
    id: int
    box: np.ndarray  # (4,) xyxy
    keypoints: np.ndarray  # (K, 3)
    lost: int = 0
    length: int = 1


class Tracker:
    """Assigns stable ids to the people of consecutive frames.

    Args:
        metric: ``"oks"`` (keypoints, COCO's OKS with the track's box area) or ``"iou"`` (boxes).
        threshold: the least similarity of a match (0.3 by default).
        max_lost: frames a track survives without a match.
        sigmas: per-keypoint OKS sigmas (COCO-17's by default).
        keypoint_threshold: OKS counts keypoints scored above it in both poses.
    """

    def __init__(self, metric: str = "oks", threshold: float | None = None, max_lost: int = 10,
                 sigmas: Sequence[float] | None = None, keypoint_threshold: float = 0.3) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.metric = metric
        self.threshold = DEFAULT_THRESHOLDS[metric] if threshold is None else float(threshold)
        self.max_lost = int(max_lost)
        self.sigmas = sigmas
        self.keypoint_threshold = keypoint_threshold
        self.tracks: list[Track] = []
        self.next_id = 0
        self.ended: list[int] = []  # ids that ended at the last update

    def similarity(self, boxes: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """``(N, T)`` similarity of the frame's people to the live tracks."""
        track_boxes = np.array([t.box for t in self.tracks]).reshape(-1, 4)
        if self.metric == "iou":
            return box_iou(boxes, track_boxes)
        sigmas = self.sigmas if self.sigmas is not None else _default_sigmas(keypoints.shape[1])
        track_poses = np.stack([t.keypoints for t in self.tracks])
        return oks_matrix(keypoints, track_poses, _areas(boxes), _areas(track_boxes), sigmas,
                          vis_threshold=self.keypoint_threshold)

    def update(self, boxes: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """The ``(N,)`` int64 track ids of a frame's ``(N, 4)`` xyxy boxes and ``(N, K, 3)``
        keypoints."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        keypoints = np.asarray(keypoints, np.float64)
        ids = np.full(len(boxes), -1, np.int64)
        matched_tracks: set[int] = set()
        if len(boxes) and self.tracks:
            for person, slot in greedy_match(self.similarity(boxes, keypoints), self.threshold):
                track = self.tracks[slot]
                track.box, track.keypoints, track.lost = boxes[person], keypoints[person], 0
                track.length += 1
                ids[person] = track.id
                matched_tracks.add(slot)
        for slot, track in enumerate(self.tracks):
            if slot not in matched_tracks:
                track.lost += 1
        self.ended = [t.id for t in self.tracks if t.lost > self.max_lost]
        self.tracks = [t for t in self.tracks if t.lost <= self.max_lost]
        for person in np.flatnonzero(ids < 0):
            ids[person] = self.next_id
            self.tracks.append(Track(self.next_id, boxes[person], keypoints[person]))
            self.next_id += 1
        return ids


def greedy_match(similarity: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """``(row, column)`` pairs, highest similarity first, each row and column used once, all
    at least ``threshold``."""
    pairs = []
    if similarity.size == 0:
        return pairs
    order = np.argsort(-similarity, axis=None, kind="stable")
    used_rows, used_cols = set(), set()
    for flat in order:
        row, col = divmod(int(flat), similarity.shape[1])
        if similarity[row, col] < threshold:
            break
        if row in used_rows or col in used_cols:
            continue
        pairs.append((row, col))
        used_rows.add(row)
        used_cols.add(col)
    return pairs


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)


def _default_sigmas(num_keypoints: int) -> Sequence[float]:
    if num_keypoints != COCO17.num_keypoints:
        raise ValueError(f"OKS tracking of {num_keypoints} keypoints needs their sigmas "
                         "(Tracker(sigmas=dataset_info.sigmas)) or metric='iou'")
    return COCO17.sigmas
