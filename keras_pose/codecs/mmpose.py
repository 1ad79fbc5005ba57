"""MMPose 1.x's heatmap conventions (``CodecSpec.convention == "mmpose"``), in numpy.

The same heatmaps decode to slightly different keypoints in MMPose and in the originals, and
MMPose trains MSRA heatmaps centred differently, so a model imported from MMPose is read with
MMPose's rules (what ``variant="mmpose"`` specs carry):

* ``MSRAHeatmap`` (CPM, Hourglass-52) encode: an unnormalised Gaussian of ``sigma`` cells in a
  ``(2r + 1)`` square patch (``r = 3 sigma``) around the **rounded** cell
  ``trunc(x / s + 0.5)``, kept partly when the keypoint lies near (even outside) the map;
  dropped when the patch misses the map.
* ``MSRAHeatmap`` decode: arg-max; ``+0.25 * sign`` towards the higher neighbour, per axis
  under ``refine_keypoints``' own conditions (x: ``1 < x < w - 1 and 0 < y < h``; y:
  ``1 < y < h - 1 and 0 < x < w``); times the stride with **no** half-cell offset; score =
  the maximum. DARK refinement (MMPose's ``refine_keypoints_dark``) on request.
* ``MegviiHeatmap`` (MSPN, RSN) decode: each map zero-padded, blurred with ``cv2.GaussianBlur``
  and rescaled to its own maximum; arg-max; where ``1 < x < w - 1 and 1 < y < h - 1``,
  ``+0.25 * sign`` per axis and ``+0.5`` cell; times the stride; score = blurred maximum / 255
  + 0.5. Its encode is the originals' (:class:`keras_pose.codecs.megvii.MegviiCodec`).

In every decode a map whose maximum is not positive gives the keypoint ``(-1, -1) * stride``,
as MMPose's ``get_heatmap_maximum``. Heatmaps ``(N, h, w, K)``; keypoints in crop pixels.
"""

from __future__ import annotations

import numpy as np

from keras_pose.codecs import _common, dark


def maximum(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arg-max ``rows, cols`` ``(N, K)`` (``-1`` where the maximum is not positive) and the
    maxima of ``(N, h, w, K)`` maps (MMPose's ``get_heatmap_maximum``)."""
    rows, cols = _common.argmax_cells(np.moveaxis(maps, -1, 1))
    n, k = np.indices(rows.shape)
    values = maps[n, rows, cols, k]
    invalid = values <= 0
    return np.where(invalid, -1, rows), np.where(invalid, -1, cols), values


def _neighbour_signs(maps, rows, cols, use_x, use_y) -> np.ndarray:
    """``(N, K, 2)`` signs of the x and y neighbour differences where ``use_x`` / ``use_y``."""
    _, h, w, _ = maps.shape
    n, k = np.indices(rows.shape)
    r, c = np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)
    inner_r, inner_c = np.clip(rows, 1, h - 2), np.clip(cols, 1, w - 2)
    diff_x = np.where(use_x, maps[n, r, inner_c + 1, k] - maps[n, r, inner_c - 1, k], 0.0)
    diff_y = np.where(use_y, maps[n, inner_r + 1, c, k] - maps[n, inner_r - 1, c, k], 0.0)
    return np.stack([np.sign(diff_x), np.sign(diff_y)], axis=-1)


def decode_msra(
    maps: np.ndarray, stride: int, refine: str | None = "quarter", dark_blur: int = 11
) -> tuple[np.ndarray, np.ndarray]:
    """MMPose's ``MSRAHeatmap.decode`` (no flip) of checked ``(N, h, w, K)`` float32 maps."""
    _, h, w, _ = maps.shape
    rows, cols, scores = maximum(maps)
    cells = np.stack([cols, rows], axis=-1).astype(np.float64)
    if refine == "quarter":
        use_x = (cols > 1) & (cols < w - 1) & (rows > 0) & (rows < h)
        use_y = (rows > 1) & (rows < h - 1) & (cols > 0) & (cols < w)
        cells += 0.25 * _neighbour_signs(maps, rows, cols, use_x, use_y)
    elif refine == "dark":
        cells += dark.dark_offsets(maps, rows, cols, dark_blur)
    return (cells * stride).astype(np.float32), scores.astype(np.float32)


def blur_like_mmpose(maps: np.ndarray, kernel: int) -> np.ndarray:
    """MMPose's ``gaussian_blur``: each ``(N, h, w, K)`` map zero-padded by ``(k - 1) // 2``,
    ``cv2.GaussianBlur((k, k), 0)`` in float32, cropped back, multiplied by ``map max / blur
    max`` (a negative factor turns the blur's minimum into the peak, as in MMPose; a blur whose
    maximum is 0 becomes all zeros where MMPose's ``0 / 0`` gives NaN)."""
    border = (kernel - 1) // 2
    h, w = maps.shape[1:3]
    planes = _common.blur_planes(_common.to_planes(maps, np.float32, border), kernel)
    blurred = np.moveaxis(planes[:, :, border : border + h, border : border + w], 1, -1)
    blurred_max = blurred.max(axis=(1, 2), keepdims=True)
    nonzero = blurred_max != 0
    maps_max = maps.max(axis=(1, 2), keepdims=True)
    scale = np.where(nonzero, maps_max / np.where(nonzero, blurred_max, 1), 0)
    return np.ascontiguousarray(blurred * scale, dtype=np.float32)


def decode_megvii(
    maps: np.ndarray, stride: int, kernel: int = 5, peak: float = 255.0
) -> tuple[np.ndarray, np.ndarray]:
    """MMPose's ``MegviiHeatmap.decode`` (no flip) of checked ``(N, h, w, K)`` float32 maps."""
    blurred = blur_like_mmpose(maps, kernel)
    _, h, w, _ = maps.shape
    rows, cols, values = maximum(blurred)
    interior = (cols > 1) & (cols < w - 1) & (rows > 1) & (rows < h - 1)
    cells = np.stack([cols, rows], axis=-1).astype(np.float64)
    shift = 0.25 * _neighbour_signs(blurred, rows, cols, interior, interior) + 0.5
    cells += np.where(interior[..., None], shift, 0.0)
    return (cells * stride).astype(np.float32), (values / peak + 0.5).astype(np.float32)


def encode_msra(
    keypoints: np.ndarray,
    visible: np.ndarray,
    heatmap_size: tuple[int, int],
    stride: int,
    sigma: float,
    peak: float = 1.0,
) -> np.ndarray:
    """MMPose's ``generate_gaussian_heatmaps`` of ``(..., K, 2)`` crop keypoints ->
    ``(..., h, w, K)`` float32 (``peak`` at the centre)."""
    keypoints = np.asarray(keypoints, dtype=np.float64)[..., :2]
    visible = np.asarray(visible).astype(bool)
    h, w = heatmap_size
    radius = 3.0 * sigma
    size = 2 * radius + 1
    centre = size // 2
    finite = np.all(np.isfinite(keypoints), axis=-1)
    mu = np.trunc(np.where(finite[..., None], keypoints, -1e9) / stride + 0.5)
    low = np.trunc(mu - radius)
    high = np.trunc(mu + radius + 1)
    reaches = (low[..., 0] < w) & (low[..., 1] < h) & (high[..., 0] >= 0) & (high[..., 1] >= 0)
    drawn = visible & finite & reaches
    width = np.ceil(size)  # len(np.arange(0, size))
    grid_x = np.arange(w, dtype=np.float64)[:, None]  # (w, 1) against (..., K)
    grid_y = np.arange(h, dtype=np.float64)[:, None]
    dx = grid_x - low[..., None, :, 0]  # (..., w, K): position inside the patch
    dy = grid_y - low[..., None, :, 1]
    inside_x = (dx >= 0) & (grid_x < high[..., None, :, 0]) & (dx < width)
    inside_y = (dy >= 0) & (grid_y < high[..., None, :, 1]) & (dy < width)
    gx = np.exp(-((dx - centre) ** 2) / (2 * sigma**2)).astype(np.float32) * inside_x
    gy = np.exp(-((dy - centre) ** 2) / (2 * sigma**2)).astype(np.float32) * inside_y
    maps = gy[..., :, None, :] * gx[..., None, :, :] * (peak * drawn)[..., None, None, :]
    return maps.astype(np.float32)
