"""The MSRA (analytic Gaussian) heatmap codec of CPM and Stacked Hourglass.

Encode: an unnormalised Gaussian of ``sigma`` cells, value ``peak`` (1) at the keypoint's cell
``(floor(y / s), floor(x / s))``, cut to the square of half-width ``floor(3 sigma)`` cells.
Centre conventions of the originals, for comparison:

* Hourglass pastes a 7x7 ``image.gaussian(7)`` (sigma 1.75) at the integer-truncated joint:
  the same cell as here; its patch ends at 3 cells (1.7 sigma) where ours ends at 3 sigma.
* CPM samples ``exp(-d^2 / 2 sigma^2)`` (sigma 7 px) at the grid centres ``3.5 + 8 g`` with
  the exact joint position (sub-cell, truncated below 0.01). Centring on the cell instead
  moves the peak by at most half a cell; sigma 7 px is 0.875 cells at stride 8.

Decode ``refine="quarter"`` (Hourglass ``postprocess``): arg-max, then
``+ 0.25 * sign(h[x+1] - h[x-1])`` per axis when the peak is not on the map's border; crop
pixels ``= p * s + s / 2`` (Hourglass's ``+ 0.5``); score = maximum / ``peak``.
``refine="dark"``: DARK's Taylor step instead (see :mod:`keras_pose.codecs.dark`).
``refine=None``: the plain arg-max cell.

``convention="mmpose"``: MMPose's ``MSRAHeatmap`` encode and decode instead (rounded cell, no
half-cell offset; :mod:`keras_pose.codecs.mmpose`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from keras_pose.codecs import _common, dark, mmpose
from keras_pose.spec import CONVENTIONS, MMPOSE, ORIGINAL, check_refine


class MSRACodec:
    """Targets and decoding of CPM/Hourglass heatmaps.

    Args:
        sigma: Gaussian sigma in heatmap cells.
        input_size: ``(H, W)`` of the crop.
        stride: crop pixels per heatmap cell.
        peak: target maximum (1).
        refine: default sub-cell refinement of :meth:`decode`: ``"quarter"`` (the originals),
            ``"dark"`` or ``None``.
        dark_blur: DARK's blur kernel (odd); by default the OpenCV kernel whose sigma matches.
        convention: ``"original"`` or ``"mmpose"`` (MMPose's encode and decode).
    """

    def __init__(
        self,
        sigma: float,
        input_size: Sequence[int],
        stride: int = 4,
        peak: float = 1.0,
        refine: str | None = "quarter",
        dark_blur: int | None = None,
        convention: str = ORIGINAL,
    ) -> None:
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        check_refine(refine)
        self.sigma = float(sigma)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.stride = int(stride)
        self.heatmap_size = _common.heatmap_size(self.input_size, self.stride)
        self.peak = float(peak)
        self.refine = refine
        self.dark_blur = int(dark_blur) if dark_blur else _common.kernel_for_sigma(self.sigma)
        self.radius = int(math.floor(3.0 * self.sigma))
        self.convention = convention

    def __repr__(self) -> str:
        return (
            f"MSRACodec(sigma={self.sigma}, input_size={self.input_size}, stride={self.stride}, "
            f"peak={self.peak}, refine={self.refine!r}, dark_blur={self.dark_blur}, "
            f"convention={self.convention!r})"
        )

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """``(h, w, K)`` float32 targets of ``(K, 2)`` crop keypoints; a batch ``(N, K, 2)``
        (with ``visible`` ``(N, K)``) gives ``(N, h, w, K)``.

        Keypoints not ``visible`` or outside the crop give an all-zero channel (MMPose's
        convention: those whose Gaussian misses the map).
        """
        if self.convention == MMPOSE:
            return mmpose.encode_msra(
                keypoints, visible, self.heatmap_size, self.stride, self.sigma, self.peak
            )
        cells, drawn = _common.keypoint_cells(keypoints, visible, self.input_size, self.stride)
        h, w = self.heatmap_size
        dx = np.arange(w, dtype=np.float64)[:, None] - cells[..., None, :, 0]  # (..., w, K)
        dy = np.arange(h, dtype=np.float64)[:, None] - cells[..., None, :, 1]  # (..., h, K)
        gx = np.exp(-(dx**2) / (2 * self.sigma**2)) * (np.abs(dx) <= self.radius)
        gy = np.exp(-(dy**2) / (2 * self.sigma**2)) * (np.abs(dy) <= self.radius)
        scale = (self.peak * drawn)[..., None, None, :]
        maps = gy[..., :, None, :] * gx[..., None, :, :] * scale
        return maps.astype(np.float32)

    def decode(
        self, heatmaps: np.ndarray, refine: str | None | bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints ``(N, K, 2)`` in crop pixels and scores ``(N, K)`` of ``(N, h, w, K)`` maps.

        ``refine`` overrides the codec's default (``True`` keeps it). A single ``(h, w, K)`` map
        is decoded as a batch of one.
        """
        refine = self.refine if refine is True else refine
        check_refine(refine)
        maps = _common.check_heatmaps(heatmaps, self.heatmap_size)
        if self.convention == MMPOSE:
            keypoints, scores = mmpose.decode_msra(maps, self.stride, refine, self.dark_blur)
            return keypoints, scores / np.float32(self.peak)
        rows, cols = _common.argmax_cells(np.moveaxis(maps, -1, 1))
        n, k = np.indices(rows.shape)
        scores = maps[n, rows, cols, k] / self.peak
        cells = np.stack([cols, rows], axis=-1).astype(np.float64)
        if refine == "quarter":
            cells = cells + quarter_offsets(maps, rows, cols)
        elif refine == "dark":
            cells = cells + dark.dark_offsets(maps, rows, cols, self.dark_blur)
        keypoints = _common.cells_to_pixels(cells, self.stride)
        return keypoints.astype(np.float32), scores.astype(np.float32)

    def confidence(self, scores: np.ndarray) -> np.ndarray:
        """The decode's scores (heatmap maximum / peak) clipped to [0, 1], the scale of
        :meth:`MegviiCodec.confidence`."""
        return np.clip(np.asarray(scores, np.float64), 0.0, 1.0)


def quarter_offsets(maps: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Hourglass's ``0.25 * sign(neighbour difference)`` per axis, ``(N, K, 2)`` x/y.

    Applied only where the peak has neighbours on both axes (``0 < x < w-1 and 0 < y < h-1``),
    as ``pose-hg-train``'s ``postprocess``.
    """
    _, h, w, _ = maps.shape
    n, k = np.indices(rows.shape)
    interior = (cols > 0) & (cols < w - 1) & (rows > 0) & (rows < h - 1)
    r, c = np.clip(rows, 1, h - 2), np.clip(cols, 1, w - 2)
    diff_x = maps[n, r, c + 1, k] - maps[n, r, c - 1, k]
    diff_y = maps[n, r + 1, c, k] - maps[n, r - 1, c, k]
    offsets = 0.25 * np.stack([np.sign(diff_x), np.sign(diff_y)], axis=-1)
    return offsets * interior[..., None]
