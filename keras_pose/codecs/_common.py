"""Helpers shared by the heatmap codecs: keypoint cells, OpenCV's Gaussian, arg-max.

**Cell convention** (every codec): a heatmap cell ``(i, j)`` of a stride-``s`` output covers
crop pixels ``[j*s, (j+1)*s) x [i*s, (i+1)*s)``. A keypoint is drawn in the cell
``(floor(y / s), floor(x / s))`` -- tf-cpn's and MSPN's ``int(y * h / H)`` and Hourglass's
integer truncation -- and a decoded cell position ``c`` (fractional after refinement) maps back
to the cell's centre, ``c * s + s / 2`` crop pixels (tf-cpn/MSPN's ``x * 4 + 2``, Hourglass's
``+ 0.5`` before the inverse transform).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def heatmap_size(input_size: Sequence[int], stride: int) -> tuple[int, int]:
    """``(h, w)`` of a stride-``stride`` output for an ``input_size = (H, W)`` crop."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    height, width = (int(v) for v in input_size)
    if height < stride or width < stride:
        raise ValueError(f"input_size {tuple(input_size)} is smaller than the stride {stride}")
    return height // stride, width // stride


def opencv_sigma(kernel_size: int) -> float:
    """The sigma ``cv2.GaussianBlur(k, k, 0)`` derives: ``0.3 * ((k - 1) / 2 - 1) + 0.8``.

    For ``k <= 7`` OpenCV ignores it and uses fixed binomial tables (true std 1.0 for k=5,
    1.37 for k=7).
    """
    return 0.3 * ((kernel_size - 1) * 0.5 - 1.0) + 0.8


# OpenCV 3/4 (what tf-cpn and MSPN ran) use fixed tables for odd k <= 7 when sigma is 0;
# OpenCV 5 extended the table to k = 9. Passing the formula's sigma explicitly for k > 7 gives
# the OpenCV 3/4 kernel on every version.
OPENCV4_TABLE_MAX = 7


def cv2_sigma_argument(kernel_size: int) -> float:
    """The sigma to pass to cv2 so that ``(k, k)`` blurs as ``GaussianBlur(k, k, 0)`` did in
    OpenCV 3/4: 0 (the fixed table) for ``k <= 7``, the formula's sigma above."""
    return 0.0 if kernel_size <= OPENCV4_TABLE_MAX else opencv_sigma(kernel_size)


def kernel_for_sigma(sigma: float) -> int:
    """The smallest odd kernel whose :func:`opencv_sigma` reaches ``sigma``."""
    size = int(np.ceil(((sigma - 0.8) / 0.3 + 1.0) * 2.0 + 1.0))
    size = max(size, 3)
    return size if size % 2 == 1 else size + 1


def gaussian_kernel_1d(kernel_size: int) -> np.ndarray:
    """The 1-D kernel of :func:`blur_planes` (OpenCV 3/4's for ``(k, k), 0``), float64."""
    return cv2.getGaussianKernel(int(kernel_size), cv2_sigma_argument(kernel_size)).ravel()


def blur_planes(planes: np.ndarray, kernel_size: int) -> np.ndarray:
    """``cv2.GaussianBlur((k, k), 0)`` as OpenCV 3/4 computed it, of each 2-D plane of a
    C-contiguous ``(..., h, w)`` array, in place (BORDER_REFLECT_101, OpenCV's default, as the
    originals). Returns ``planes``."""
    if kernel_size <= 1:
        return planes
    if not planes.flags.c_contiguous:
        raise ValueError("blur_planes needs a C-contiguous array")
    size = (int(kernel_size), int(kernel_size))
    sigma = cv2_sigma_argument(kernel_size)
    for plane in planes.reshape(-1, *planes.shape[-2:]):
        cv2.GaussianBlur(plane, size, sigma, dst=plane)
    return planes


def to_planes(maps: np.ndarray, dtype=np.float64, border: int = 0) -> np.ndarray:
    """``(N, h, w, K)`` maps as a new C-contiguous ``(N, K, h + 2b, w + 2b)`` array, zero-padded
    by ``border`` cells."""
    n, h, w, k = maps.shape
    planes = np.zeros((n, k, h + 2 * border, w + 2 * border), dtype=dtype)
    planes[:, :, border : border + h, border : border + w] = np.moveaxis(maps, -1, 1)
    return planes


def keypoint_cells(
    keypoints: np.ndarray,
    visible: np.ndarray,
    input_size: Sequence[int],
    stride: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Integer cells ``(..., K, 2)`` = ``(col, row)`` of keypoints and which of them are drawn.

    ``keypoints`` is ``(..., K, 2)`` (leading batch axes optional), ``visible`` ``(..., K)``.
    A keypoint is drawn if it is visible, finite and inside the crop ``[0, W) x [0, H)``;
    coordinates are clamped to ``<= W - 1, H - 1`` first (tf-cpn), then floored by the stride.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    visible = np.asarray(visible).astype(bool)
    if keypoints.ndim < 2 or keypoints.shape[-1] < 2:
        raise ValueError(f"keypoints must be (..., K, 2) crop pixels, got shape {keypoints.shape}")
    if visible.shape != keypoints.shape[:-1]:
        raise ValueError(f"visible must be {keypoints.shape[:-1]}, got shape {visible.shape}")
    height, width = (int(v) for v in input_size)
    h, w = heatmap_size(input_size, stride)
    xy = keypoints[..., :2]
    finite = np.all(np.isfinite(xy), axis=-1)
    xy = np.where(finite[..., None], xy, -1.0)
    x, y = xy[..., 0], xy[..., 1]
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    clamped = np.minimum(xy, [width - 1, height - 1])
    cells = np.floor(clamped / stride).astype(np.int64)
    cells = np.clip(cells, 0, [w - 1, h - 1])
    return cells, visible & finite & inside


def check_heatmaps(heatmaps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``heatmaps`` as float32 ``(N, h, w, K)``; a single ``(h, w, K)`` map gets a batch axis.

    Raises on a wrong shape and on NaN/inf values (they would decode to arbitrary cells).
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    if heatmaps.ndim == 3:
        heatmaps = heatmaps[None]
    if heatmaps.ndim != 4 or tuple(heatmaps.shape[1:3]) != tuple(size):
        raise ValueError(
            f"heatmaps must be (N, {size[0]}, {size[1]}, K) for this codec, got {heatmaps.shape}"
        )
    if not np.all(np.isfinite(heatmaps)):
        raise ValueError("heatmaps contain NaN or inf values (a diverged model?)")
    return heatmaps


def argmax_cells(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column ``(N, K)`` of each maximum of ``(N, K, h, w)`` planes.

    Ties go to the first cell in row-major order (``np.argmax`` of the flattened map, as the
    originals do).
    """
    n, k, h, w = planes.shape
    index = np.argmax(planes.reshape(n, k, h * w), axis=-1)
    return index // w, index % w


def cells_to_pixels(cells: np.ndarray, stride: int) -> np.ndarray:
    """Cell positions (fractional, heatmap units) -> crop pixels: ``c * stride + stride / 2``."""
    return cells * float(stride) + 0.5 * float(stride)
