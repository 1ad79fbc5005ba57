"""The Megvii heatmap codec of CPN (tf-cpn), MSPN and RSN.

Encode (tf-cpn ``joints_heatmap_gen``, MSPN ``generate_heatmap``): a delta at the keypoint's
cell ``(floor(y / s), floor(x / s))``, ``cv2.GaussianBlur((k, k), 0)`` (BORDER_REFLECT_101),
rescaled so the peak is ``peak`` (255). The blur is OpenCV 3/4's, which the originals ran:
fixed binomial tables for k <= 7, the sigma ``0.3 ((k - 1) / 2 - 1) + 0.8`` above (OpenCV 5
also tabulates k = 9, so that sigma is passed explicitly).

Decode (tf-cpn ``mptest.py``, MSPN/RSN ``test.py``), per map:

1. optionally divide by its maximum (CPN, ``decode_normalize``; only maps with a positive
   maximum -- the original would divide by zero or flip a negative map);
2. zero-pad by ``border`` = 10 cells, ``cv2.GaussianBlur(decode_blur)`` (21 for CPN, 5 for
   MSPN/RSN; 0 or 1 = none) in float64;
3. arg-max ``p1``; set it to zero; arg-max again ``p2``;
4. move ``p1`` 0.25 cell towards ``p2`` if ``|p2 - p1| > 1e-3``; clamp to the map;
5. crop pixels ``= p * s + s / 2`` (the originals' ``x * 4 + 2`` at stride 4: the centre of the
   cell a floored keypoint came from);
6. score = ``raw / peak + 0.5`` at the (clamped) ``p1`` of the raw, un-blurred map (the
   originals read it at the rounded shifted point: the same cell, a step of 0.25 never rounds
   away from ``p1``).

``refine="dark"`` replaces step 4 with DARK's Taylor step (:mod:`keras_pose.codecs.dark`) at
``p1`` on the raw map modulated by the target's own kernel: an option beyond the originals for
coarse heatmaps (at 128x96 input a cell is 4 crop pixels). ``refine=None`` keeps ``p1``.

``convention="mmpose"`` decodes as MMPose's ``MegviiHeatmap`` (:mod:`keras_pose.codecs.mmpose`);
the encode is the same.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from keras_pose.codecs import _common, dark, mmpose
from keras_pose.spec import CONVENTIONS, MMPOSE, ORIGINAL, check_refine

DECODE_BORDER = 10
SHIFT = 0.25


# The originals' keypoint score is ``raw / peak + 0.5``: a blank crop scores about 0.5-0.65.
SCORE_OFFSET = 0.5


class MegviiCodec:
    """Targets and decoding of CPN/MSPN/RSN heatmaps.

    Args:
        kernel_size: odd ``cv2.GaussianBlur`` kernel of the target.
        input_size: ``(H, W)`` of the crop.
        stride: crop pixels per heatmap cell.
        peak: target maximum (255).
        decode_blur: blur kernel before the arg-max (0 = none).
        decode_normalize: rescale each map to max 1 before blurring (CPN).
        convention: ``"original"`` or ``"mmpose"`` (MMPose's decode).
        refine: default sub-cell step of :meth:`decode`: ``"quarter"`` (the originals'),
            ``"dark"`` or ``None``; MMPose's convention has only ``"quarter"``.
        dark_blur: DARK's modulation kernel (odd); by default the target's ``kernel_size``.
    """

    def __init__(
        self,
        kernel_size: int,
        input_size: Sequence[int],
        stride: int = 4,
        peak: float = 255.0,
        decode_blur: int = 5,
        decode_normalize: bool = False,
        convention: str = ORIGINAL,
        refine: str | None = "quarter",
        dark_blur: int | None = None,
    ) -> None:
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        check_refine(refine, convention == MMPOSE)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
        if decode_blur > 1 and decode_blur % 2 == 0:
            raise ValueError(f"decode_blur must be odd (or 0), got {decode_blur}")
        self.kernel_size = int(kernel_size)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.stride = int(stride)
        self.heatmap_size = _common.heatmap_size(self.input_size, self.stride)
        self.peak = float(peak)
        self.decode_blur = int(decode_blur)
        self.decode_normalize = bool(decode_normalize)
        self.border = DECODE_BORDER
        self.shift = SHIFT
        self.convention = convention
        self.refine = refine
        self.dark_blur = int(dark_blur) if dark_blur else self.kernel_size

    @property
    def sigma(self) -> float:
        """The target's Gaussian sigma in cells (OpenCV's formula for ``kernel_size``)."""
        return _common.opencv_sigma(self.kernel_size)

    def __repr__(self) -> str:
        return (
            f"MegviiCodec(kernel_size={self.kernel_size}, input_size={self.input_size}, "
            f"stride={self.stride}, peak={self.peak}, decode_blur={self.decode_blur}, "
            f"decode_normalize={self.decode_normalize}, convention={self.convention!r}, "
            f"refine={self.refine!r}, dark_blur={self.dark_blur})"
        )

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """``(h, w, K)`` float32 targets of ``(K, 2)`` crop keypoints; a batch ``(N, K, 2)``
        (with ``visible`` ``(N, K)``) gives ``(N, h, w, K)``.

        Keypoints not ``visible`` or outside the crop give an all-zero channel. Bit-identical
        to blurring each channel's delta with ``cv2.GaussianBlur`` and rescaling it: a keypoint
        whose blur meets no border gets a copy of the precomputed blurred delta
        (:attr:`stamp`); the others are blurred by OpenCV one by one.
        """
        cells, drawn = _common.keypoint_cells(keypoints, visible, self.input_size, self.stride)
        h, w = self.heatmap_size
        *batch, k = drawn.shape
        maps = np.zeros((*batch, h, w, k), dtype=np.float32)
        flat = maps.reshape(-1, h, w, k)  # a view: one sample per row
        rows, cols = cells[..., 1].reshape(-1, k), cells[..., 0].reshape(-1, k)
        drawn = drawn.reshape(-1, k)
        inner = drawn & self._clear_of_borders(rows, cols)
        r = self.kernel_size // 2
        for n, j, row, col in zip(*(a.tolist() for a in np.nonzero(inner)),
                                  rows[inner].tolist(), cols[inner].tolist()):
            flat[n, row - r : row + r + 1, col - r : col + r + 1, j] = self.stamp
        near = np.nonzero(drawn & ~inner)
        if len(near[0]):
            flat[near[0], :, :, near[1]] = self._blurred_deltas(rows[near], cols[near])
        return maps

    @functools.cached_property
    def stamp(self) -> np.ndarray:
        """``(k, k)`` float32 target around a keypoint whose blur meets no border.

        Away from the borders every cell of the blurred delta is a single kernel product
        (``BORDER_REFLECT_101`` adds nothing), so the target is the same block wherever it sits:
        it is cut from OpenCV's blur of a delta in the central cell of a full-size map. Only
        used when such cells exist (the map is at least ``k + 2`` cells each way).
        """
        h, w = self.heatmap_size
        r = self.kernel_size // 2
        row, col = h // 2, w // 2
        target = self._blurred_deltas(np.array([row]), np.array([col]))[0]
        return target[row - r : row + r + 1, col - r : col + r + 1]

    def _clear_of_borders(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Cells whose ``(k, k)`` blur neither leaves the map nor meets a reflected copy."""
        r = self.kernel_size // 2
        h, w = self.heatmap_size
        return (rows > r) & (rows < h - 1 - r) & (cols > r) & (cols < w - 1 - r)

    def _blurred_deltas(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``(n, h, w)`` tf-cpn targets of deltas at ``(rows, cols)``: one ``cv2.GaussianBlur``
        per plane, then ``plane /= max / peak`` in float32 (tf-cpn's ``hm /= amax / 255``)."""
        h, w = self.heatmap_size
        planes = np.zeros((len(rows), h, w), dtype=np.float32)
        planes[np.arange(len(rows)), rows, cols] = 1.0
        _common.blur_planes(planes, self.kernel_size)
        maxima = planes.max(axis=(1, 2), keepdims=True)  # > 0: every plane holds a delta
        return planes / (maxima / np.float32(self.peak))

    def decode(
        self, heatmaps: np.ndarray, refine: str | None | bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints ``(N, K, 2)`` (crop pixels) and scores ``(N, K)`` of ``(N, h, w, K)`` maps
        (or of one ``(h, w, K)`` map), with ``refine`` or the codec's own (``True``)."""
        refine = self.refine if refine is True else refine
        check_refine(refine, self.convention == MMPOSE)
        raw = _common.check_heatmaps(heatmaps, self.heatmap_size)
        if self.convention == MMPOSE:
            return mmpose.decode_megvii(raw, self.stride, self.decode_blur or 5, self.peak)
        maps = normalize_maps(raw) if self.decode_normalize else raw
        blurred = _common.blur_planes(_common.to_planes(maps, border=self.border), self.decode_blur)
        row1, col1 = _common.argmax_cells(blurred)
        n, k = np.indices(row1.shape)
        if refine == "quarter":
            blurred[n, k, row1, col1] = 0.0
            row2, col2 = _common.argmax_cells(blurred)
            cells = self._shift_and_clamp(row1, col1, row2, col2)
        else:
            cells = self._refine_and_clamp(raw, row1 - self.border, col1 - self.border, refine)
        h, w = self.heatmap_size  # the score: at p1, clamped (where the quarter step rounds to)
        score_rows = np.clip(row1 - self.border, 0, h - 1)
        score_cols = np.clip(col1 - self.border, 0, w - 1)
        scores = raw[n, score_rows, score_cols, k] / self.peak + SCORE_OFFSET
        keypoints = _common.cells_to_pixels(cells, self.stride)
        return keypoints.astype(np.float32), scores.astype(np.float32)

    def confidence(self, scores: np.ndarray) -> np.ndarray:
        """The decode's scores on the 0..1 scale of every codec: ``raw / peak`` (the original
        score less its 0.5 offset), clipped to [0, 1]."""
        return np.clip(np.asarray(scores, np.float64) - SCORE_OFFSET, 0.0, 1.0)

    def _shift_and_clamp(self, row1, col1, row2, col2) -> np.ndarray:
        """``p1`` (unpadded cells, ``(N, K, 2)`` x/y) moved 0.25 towards ``p2``, clamped."""
        dx = (col2 - col1).astype(np.float64)
        dy = (row2 - row1).astype(np.float64)
        length = np.hypot(dx, dy)
        step = np.where(length > 1e-3, self.shift / np.maximum(length, 1e-3), 0.0)
        x = col1 - self.border + dx * step
        y = row1 - self.border + dy * step
        h, w = self.heatmap_size
        return np.stack([np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)], axis=-1)

    def _refine_and_clamp(self, raw, rows, cols, refine) -> np.ndarray:
        """``p1`` (unpadded cells) plus DARK's step (``refine="dark"``), clamped."""
        h, w = self.heatmap_size
        cells = np.stack([cols, rows], axis=-1).astype(np.float64)
        if refine == "dark":
            cells = cells + dark.dark_offsets(raw, rows, cols, self.dark_blur)
        x = np.clip(cells[..., 0], 0, w - 1)
        y = np.clip(cells[..., 1], 0, h - 1)
        return np.stack([x, y], axis=-1)


def normalize_maps(maps: np.ndarray) -> np.ndarray:
    """Each ``(N, h, w, K)`` map divided by its maximum when that maximum is positive."""
    maxima = maps.max(axis=(1, 2), keepdims=True)
    return np.where(maxima > 0, maps / np.where(maxima > 0, maxima, 1), maps)
