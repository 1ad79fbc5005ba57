"""Drawing predicted poses: limbs coloured by body side, keypoint dots, optional scores."""

from __future__ import annotations

import os

import cv2
import numpy as np

from keras_pose.data.dataset_info import COCO17, DatasetInfo
from keras_pose.utils.atomic import atomic_path

# BGR colours of the left side, the right side and the centre line (nose, skeleton links
# that join both sides).
LEFT_COLOR = (255, 160, 0)
RIGHT_COLOR = (0, 128, 255)
CENTER_COLOR = (0, 220, 0)
OUTLINE_COLOR = (0, 0, 0)
TEXT_COLOR = (255, 255, 255)


def keypoint_sides(dataset_info: DatasetInfo) -> list[str]:
    """``"left"``, ``"right"`` or ``"center"`` per keypoint, from the ``(left, right)`` pairs."""
    sides = ["center"] * dataset_info.num_keypoints
    for left, right in dataset_info.flip_pairs:
        sides[left], sides[right] = "left", "right"
    return sides


def side_color(*sides: str) -> tuple[int, int, int]:
    """The colour of a keypoint or limb: left/right if all its ends are on that side."""
    if all(side == "left" for side in sides):
        return LEFT_COLOR
    if all(side == "right" for side in sides):
        return RIGHT_COLOR
    return CENTER_COLOR


def draw_skeleton(
    image: np.ndarray,
    keypoints: np.ndarray,
    dataset_info: DatasetInfo = COCO17,
    score_threshold: float = 0.3,
    draw_scores: bool = True,
) -> np.ndarray:
    """A copy of the BGR uint8 ``image`` with poses drawn on it.

    Args:
        image: ``(H, W, 3)`` uint8 BGR.
        keypoints: ``(N, K, 3)`` (or one ``(K, 3)`` pose) ``x, y, score`` in image pixels.
        dataset_info: skeleton and left/right pairs.
        score_threshold: keypoints scoring below it are not drawn, nor limbs touching them.
        draw_scores: write each drawn keypoint's score beside it.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    poses = np.asarray(keypoints, dtype=np.float64)
    if poses.ndim == 2:
        poses = poses[None]
    k = dataset_info.num_keypoints
    if poses.ndim != 3 or poses.shape[1:] != (k, 3):
        raise ValueError(
            f"keypoints must be (N, {k}, 3) for {dataset_info.name!r}, got {poses.shape}"
        )
    canvas = image.copy()
    scale = max(image.shape[:2]) / 640.0
    thickness = max(1, int(round(2 * scale)))
    radius = max(2, int(round(3 * scale)))
    sides = keypoint_sides(dataset_info)
    for pose in poses:
        shown = np.all(np.isfinite(pose), axis=1) & (pose[:, 2] >= score_threshold)
        for a, b in dataset_info.skeleton:
            if shown[a] and shown[b]:
                cv2.line(canvas, _point(pose[a]), _point(pose[b]), side_color(sides[a], sides[b]),
                         thickness, cv2.LINE_AA)
        for i in np.flatnonzero(shown):
            centre = _point(pose[i])
            cv2.circle(canvas, centre, radius + 1, OUTLINE_COLOR, -1, cv2.LINE_AA)
            cv2.circle(canvas, centre, radius, side_color(sides[i]), -1, cv2.LINE_AA)
            if draw_scores:
                _put_text(canvas, f"{pose[i, 2]:.2f}", (centre[0] + radius + 2, centre[1]), scale)
    return canvas


def track_color(track_id: int) -> tuple[int, int, int]:
    """A distinct, stable BGR colour per track id (golden-ratio hues)."""
    hue = int((track_id * 0.618033988749895 % 1.0) * 180)
    pixel = cv2.cvtColor(np.uint8([[[hue, 200, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(int(c) for c in pixel)


def draw_people(
    image: np.ndarray,
    boxes: np.ndarray,
    keypoints: np.ndarray,
    track_ids: np.ndarray | None = None,
    dataset_info: DatasetInfo = COCO17,
    score_threshold: float = 0.3,
) -> np.ndarray:
    """A copy of ``image`` with each person's skeleton, box (``x1, y1, x2, y2``) and track id
    (boxes coloured by id; without ids all boxes are green)."""
    canvas = draw_skeleton(image, keypoints, dataset_info, score_threshold, draw_scores=False)
    scale = max(image.shape[:2]) / 640.0
    thickness = max(1, int(round(2 * scale)))
    for i, box in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        color = CENTER_COLOR if track_ids is None else track_color(int(track_ids[i]))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        if track_ids is not None:
            _put_text(canvas, f"id {int(track_ids[i])}", (x1 + 3, max(y1 - 5, 12)), 1.6 * scale)
    return canvas


def _point(keypoint: np.ndarray) -> tuple[int, int]:
    return int(round(float(keypoint[0]))), int(round(float(keypoint[1])))


def _put_text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    font_scale = max(0.3, 0.4 * scale)
    for color, width in ((OUTLINE_COLOR, 3), (TEXT_COLOR, 1)):
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, color, width,
                    cv2.LINE_AA)


def save_png(path: str | os.PathLike, image: np.ndarray) -> str:
    """Write ``image`` (BGR uint8) as a PNG atomically
    (:func:`keras_pose.utils.atomic.atomic_path`). Returns the path."""
    path = os.fspath(path)
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"cannot write a {image.dtype} image of shape {image.shape} as PNG "
                         f"({path}): need a non-empty (H, W) or (H, W, C) uint8/uint16 array")
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"cv2 could not encode an image of shape {np.shape(image)} as PNG")
    with atomic_path(path, suffix=".png") as tmp:
        with open(tmp, "wb") as f:
            f.write(data.tobytes())
    return path
