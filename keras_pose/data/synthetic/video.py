"""A short synthetic video of people moving across a still scene, for tracking tests, demos and
benchmarks.

One scene is rendered by :func:`~keras_pose.data.synthetic.render.render_example`, once with its
people and once without (the identical background). Each frame is that background with every
person's visible pixels pasted at a per-person offset that grows linearly with time, in the
scene's drawing order; keypoints and boxes move with them. (Pixels a person hid of another in
the still scene stay background, foreground objects are left out.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from keras_pose.data.synthetic.render import render_example


@dataclasses.dataclass
class SyntheticVideo:
    """Frames ``(T, H, W, 3)`` uint8 BGR; keypoints ``(T, N, 17, 3)`` and xywh boxes
    ``(T, N, 4)`` of the same N people in every frame (index = person identity)."""

    frames: np.ndarray
    keypoints: np.ndarray
    boxes: np.ndarray

    @property
    def num_people(self) -> int:
        return self.keypoints.shape[1]


def render_video(
    num_frames: int = 12,
    image_size: tuple[int, int] = (240, 320),
    num_people: int = 3,
    velocities: Sequence[tuple[float, float]] | None = None,
    seed: int = 0,
) -> SyntheticVideo:
    """Render a scene with exactly ``num_people`` people (the first seed index that has them)
    and move person ``i`` by ``velocities[i]`` pixels per frame (default: alternately 3 px
    left/right, 1 px down)."""
    for index in range(200):
        example = render_example(seed, index, "video", image_size, max_people=num_people)
        if len(example.keypoints) == num_people:
            break
    else:
        raise ValueError(f"no scene with {num_people} people in 200 tries (image {image_size})")
    background = render_example(seed, index, "video", image_size, num_people,
                                draw_foreground=False).image
    if velocities is None:
        velocities = [((-1) ** i * 3.0, 1.0) for i in range(num_people)]
    velocities = np.asarray(velocities, np.float64).reshape(num_people, 2)
    h, w = image_size
    frames = np.empty((num_frames, h, w, 3), np.uint8)
    keypoints = np.repeat(example.keypoints[None].astype(np.float64), num_frames, axis=0)
    boxes = np.repeat(example.boxes[None].astype(np.float64), num_frames, axis=0)
    for t in range(num_frames):
        frame = background.copy()
        for person, velocity in enumerate(velocities):
            dx, dy = (int(round(v * t)) for v in velocity)
            _paste_shifted(frame, example.image, example.masks[person], dx, dy)
            labelled = keypoints[t, person, :, 2] > 0
            keypoints[t, person, labelled, 0] += dx
            keypoints[t, person, labelled, 1] += dy
            boxes[t, person, :2] += (dx, dy)
        frames[t] = frame
    return SyntheticVideo(frames, keypoints, boxes)


def _paste_shifted(canvas: np.ndarray, source: np.ndarray, mask: np.ndarray, dx: int, dy: int
                   ) -> None:
    """Copy ``source``'s ``mask`` pixels onto ``canvas`` moved by ``(dx, dy)`` (cut at the
    border)."""
    rows, cols = np.nonzero(mask)
    rows, cols = rows + dy, cols + dx
    h, w = canvas.shape[:2]
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    canvas[rows[inside], cols[inside]] = source[rows[inside] - dy, cols[inside] - dx]
