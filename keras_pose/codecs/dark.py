"""DARK sub-cell refinement (Zhang et al. 2020, "Distribution-Aware Coordinate Representation").

An option beyond the originals for MSRA heatmaps: blur each map (keeping its maximum), take
``log(max(h, 1e-10))``, and move the arg-max cell by one Newton step ``-H^-1 g`` of the
log-map, with the gradient ``g`` and Hessian ``H`` from central differences (MMPose's
``refine_keypoints_dark``). Applied where the peak is at least two cells from every border and
the Hessian is invertible.
"""

from __future__ import annotations

import numpy as np

from keras_pose.codecs import _common

LOG_FLOOR = 1e-10


def modulate(maps: np.ndarray, kernel_size: int) -> np.ndarray:
    """Zero-padded ``cv2.GaussianBlur`` of ``(N, h, w, K)`` maps, rescaled to each map's maximum."""
    border = (kernel_size - 1) // 2
    planes = _common.blur_planes(_common.to_planes(maps, border=border), kernel_size)
    h, w = maps.shape[1:3]
    blurred = np.moveaxis(planes[:, :, border : border + h, border : border + w], 1, -1)
    original_max = maps.max(axis=(1, 2), keepdims=True)
    blurred_max = blurred.max(axis=(1, 2), keepdims=True)
    safe = np.where(blurred_max > 0, blurred_max, 1.0)
    return np.where(blurred_max > 0, blurred * original_max / safe, blurred)


def dark_offsets(
    maps: np.ndarray, rows: np.ndarray, cols: np.ndarray, kernel_size: int
) -> np.ndarray:
    """DARK's ``(N, K, 2)`` x/y offsets of the arg-max cells ``rows, cols`` of ``(N, h, w, K)``."""
    log_maps = np.log(np.maximum(modulate(maps, kernel_size), LOG_FLOOR))
    _, h, w, _ = maps.shape
    n, k = np.indices(rows.shape)
    r, c = np.clip(rows, 2, h - 3), np.clip(cols, 2, w - 3)

    def at(dr: int, dc: int) -> np.ndarray:
        return log_maps[n, r + dr, c + dc, k]

    centre = at(0, 0)
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    dyy = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = dxx * dyy - dxy**2
    usable = (det != 0) & (rows >= 2) & (rows <= h - 3) & (cols >= 2) & (cols <= w - 3)
    safe_det = np.where(usable, det, 1.0)
    offset_x = -(dyy * dx - dxy * dy) / safe_det
    offset_y = -(-dxy * dx + dxx * dy) / safe_det
    offsets = np.stack([offset_x, offset_y], axis=-1)
    return np.where(usable[..., None], offsets, 0.0)
