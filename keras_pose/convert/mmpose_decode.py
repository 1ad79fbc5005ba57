"""MMPose 1.x's heatmap decoding, for predictions identical to MMPose's from imported weights.

keras-pose's codecs (:mod:`keras_pose.codecs`) decode the way the original papers' code did. MMPose
decodes differently, so the same heatmaps give slightly different keypoints:

* ``MegviiHeatmap`` (MSPN, RSN): blur each map (zero border, ``cv2.GaussianBlur``, rescaled to
  the map's own maximum), arg-max, then move ``+0.25`` cell towards the higher neighbour on
  each axis separately (only away from the border) and ``+0.5`` cell; score = blurred max / 255
  + 0.5. The originals move 0.25 px along the direction of the second maximum and read the
  score on the raw map.
* ``MSRAHeatmap`` (CPM, Hourglass-52): arg-max, ``+0.25 * sign`` towards the higher neighbour
  per axis, times the stride, with **no** half-cell offset; score = the map's maximum.

In both, a map whose maximum is not positive gives the keypoint ``(-1, -1) * stride`` as in
MMPose. Input ``(N, h, w, K)`` heatmaps, output keypoints ``(N, K, 2)`` in crop pixels and
scores ``(N, K)``.
"""

from __future__ import annotations

import cv2
import numpy as np


def _maximum(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(K, 2)`` arg-max ``(x, y)`` and ``(K,)`` maxima of ``(K, h, w)`` maps; -1 where max <= 0."""
    k, h, w = maps.shape
    flat = maps.reshape(k, -1)
    index = flat.argmax(axis=1)
    values = flat[np.arange(k), index]
    locations = np.stack([index % w, index // w], axis=-1).astype(np.float32)
    locations[values <= 0] = -1
    return locations, values


def _blur(maps: np.ndarray, kernel: int) -> np.ndarray:
    border = (kernel - 1) // 2
    out = np.empty_like(maps)
    for index, plane in enumerate(maps):
        peak = plane.max()
        padded = np.pad(plane, border).astype(np.float32)
        blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border:-border, border:-border]
        out[index] = blurred * (peak / blurred.max())
    return out


def _neighbour_sign(plane: np.ndarray, x: int, y: int) -> np.ndarray:
    return np.sign([plane[y, x + 1] - plane[y, x - 1], plane[y + 1, x] - plane[y - 1, x]])


def decode_megvii_mmpose(
    heatmaps: np.ndarray, stride: int, kernel: int = 5, peak: float = 255.0
) -> tuple[np.ndarray, np.ndarray]:
    """MMPose's ``MegviiHeatmap.decode`` (no flip) on ``(N, h, w, K)`` heatmaps."""
    keypoints, scores = [], []
    for sample in np.asarray(heatmaps, np.float32):
        maps = _blur(sample.transpose(2, 0, 1).copy(), kernel)
        _, h, w = maps.shape
        locations, values = _maximum(maps)
        for k, plane in enumerate(maps):
            x, y = int(locations[k, 0]), int(locations[k, 1])
            if 1 < x < w - 1 and 1 < y < h - 1:
                locations[k] += _neighbour_sign(plane, x, y) * 0.25 + 0.5
        keypoints.append(locations * stride)
        scores.append(values / peak + 0.5)
    return np.stack(keypoints).astype(np.float32), np.stack(scores).astype(np.float32)


def decode_msra_mmpose(heatmaps: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """MMPose's ``MSRAHeatmap.decode`` (no DARK, no flip) on ``(N, h, w, K)`` heatmaps."""
    keypoints, scores = [], []
    for sample in np.asarray(heatmaps, np.float32):
        maps = sample.transpose(2, 0, 1)
        _, h, w = maps.shape
        locations, values = _maximum(maps)
        for k, plane in enumerate(maps):
            x, y = int(locations[k, 0]), int(locations[k, 1])
            if 1 < x < w - 1 and 1 < y < h - 1:
                locations[k] += _neighbour_sign(plane, x, y) * 0.25
        keypoints.append(locations * stride)
        scores.append(values)
    return np.stack(keypoints).astype(np.float32), np.stack(scores).astype(np.float32)


def decode_like_mmpose(model, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode a ``variant="mmpose"`` model's final heatmaps exactly as MMPose would."""
    output = model.spec.final
    if output.codec.type == "megvii":
        return decode_megvii_mmpose(heatmaps, output.stride, output.codec.decode_blur or 5)
    return decode_msra_mmpose(heatmaps, output.stride)
