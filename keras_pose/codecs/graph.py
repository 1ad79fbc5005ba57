"""The codecs' decodes in ``keras.ops``, for exported graphs (SavedModel, TFLite, ONNX).

``decode_graph(heatmaps (N, h, w, K), codec) -> (keypoints (N, K, 2) crop px, scores (N, K))``
computes what :meth:`MegviiCodec.decode` / :meth:`MSRACodec.decode` compute in numpy, with
ops that lower to TFLite builtins the GPU delegate runs:

* blur: zero padding (``PAD``), the BORDER_REFLECT_101 rows cv2 would read (``STRIDED_SLICE`` +
  ``CONCATENATION``, only when the blur reaches past the zero border), two ``DEPTHWISE_CONV_2D``
  with OpenCV's own 1-D kernel (cv2's blur is separable);
* arg-max with first-in-row-major tie breaking, without ``ARG_MAX``: ``MAX_POOL_2D`` over the
  whole map, rows and columns; "equals the maximum" as ``RELU(1 - (max - x) * 1e30)``; the first
  row (then column) holding a maximum as ``H - max(hit * (H - row))``;
* reading a map at a cell: one-hot ``RELU(1 - (grid - index)^2)`` masks and a masked
  ``MAX_POOL_2D``;
* the Megvii 0.25 step needs ``1 / |p2 - p1|``: Newton iterations of the inverse square root
  (``MUL``/``SUB``) from a start below every possible value, so no ``SQRT``/``DIV``;
* ``sign`` as ``clip(d * 1e30, -1, 1)`` (``MAXIMUM``/``MINIMUM``), ``ADD``, ``SUB``, ``MUL``,
  ``RESHAPE``.

The CPN per-map normalisation is left out: dividing a map by its positive maximum changes
neither arg-max, and the score is read from the raw map. ``refine="dark"`` (either codec)
also uses ``LOG`` and ``DIV`` (not GPU-delegate ops). Exact equality tests need float32
arithmetic (the GPU delegate's fp16 mode can merge near ties).

MMPose's convention (``codec.convention == "mmpose"``, :mod:`keras_pose.codecs.mmpose`) uses the
same blocks: the per-axis quarter step under MMPose's conditions as ``clip`` products, no
half-cell offset (Megvii: ``+0.5`` cell inside the map's interior), ``(-1, -1) * stride`` for a
map whose maximum is not positive. Its Megvii decode needs one ``DIV`` per map (MMPose rescales
the blur by ``map max / blur max``), which is not on the GPU delegate's list: a LiteRT export
with ``decode=True`` of an MMPose-variant MSPN/RSN needs ``require_gpu_compatible=False``.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_pose.codecs import _common, dark
from keras_pose.codecs.megvii import MegviiCodec
from keras_pose.codecs.msra import MSRACodec
from keras_pose.spec import MMPOSE, check_refine

BIG = 1e30


def decode_graph(heatmaps, codec, refine: str | None | bool = True):
    """Decode ``(N, h, w, K)`` heatmaps in the graph the way ``codec.decode`` does in numpy.

    ``refine`` overrides the codec's default as in ``codec.decode`` (``True`` keeps it).
    Returns ``keypoints (N, K, 2)`` float32 crop pixels and ``scores (N, K)``.
    """
    heatmaps = ops.cast(heatmaps, "float32")
    shape = tuple(heatmaps.shape)
    if len(shape) != 4 or tuple(shape[1:3]) != tuple(codec.heatmap_size) or shape[3] is None:
        raise ValueError(
            f"heatmaps must be (N, {codec.heatmap_size[0]}, {codec.heatmap_size[1]}, K) with a "
            f"known K for {codec!r}, got {shape}"
        )
    if not isinstance(codec, (MegviiCodec, MSRACodec)):
        raise TypeError(f"decode_graph needs a MegviiCodec or MSRACodec, got {type(codec)}")
    mmpose = codec.convention == MMPOSE
    megvii = isinstance(codec, MegviiCodec)
    refine = codec.refine if refine is True else refine
    check_refine(refine, megvii and mmpose)
    if megvii and mmpose:
        x, y, scores = _megvii_mmpose(heatmaps, codec)
    elif megvii:
        x, y, scores = _megvii(heatmaps, codec, refine)
    else:
        x, y, scores = (_msra_mmpose if mmpose else _msra)(heatmaps, codec, refine)
    num_keypoints = shape[3]
    half = 0.0 if mmpose else 0.5 * codec.stride
    keypoints = ops.concatenate(
        [ops.reshape(x * codec.stride + half, (-1, num_keypoints, 1)),
         ops.reshape(y * codec.stride + half, (-1, num_keypoints, 1))],
        axis=-1,
    )
    return keypoints, ops.reshape(scores, (-1, num_keypoints))


# ------------------------------------------------------------------------------------------
# Megvii


def _megvii(heatmaps, codec: MegviiCodec, refine):
    h, w = codec.heatmap_size
    border = codec.border
    blurred = gaussian_blur(heatmaps, codec.decode_blur, border=border)
    row1, col1, _ = argmax_cells(blurred)
    if refine == "quarter":
        dx, dy = _megvii_quarter_step(blurred, row1, col1, codec)
    elif refine == "dark":
        dx, dy = _dark_offsets(heatmaps, row1 - border, col1 - border, h, w, codec.dark_blur)
    else:
        dx = dy = 0.0
    x = ops.clip(col1 - border + dx, 0.0, w - 1.0)
    y = ops.clip(row1 - border + dy, 0.0, h - 1.0)
    score_row = ops.clip(row1 - border, 0.0, h - 1.0)
    score_col = ops.clip(col1 - border, 0.0, w - 1.0)
    scores = value_at(heatmaps, score_row, score_col) * (1.0 / codec.peak) + 0.5
    return x, y, scores


def _megvii_quarter_step(blurred, row1, col1, codec: MegviiCodec):
    """The 0.25-cell step from ``p1`` towards the second maximum of the padded, blurred map."""
    h, w = codec.heatmap_size
    border = codec.border
    p1 = cell_mask(blurred, row1, col1)
    row2, col2, _ = argmax_cells(blurred * (1.0 - p1))
    dx, dy = col2 - col1, row2 - row1
    length2 = dx * dx + dy * dy
    max_length2 = float((h + 2 * border - 1) ** 2 + (w + 2 * border - 1) ** 2)
    step = codec.shift * inverse_sqrt(length2, max_length2) * ops.minimum(length2, 1.0)
    return dx * step, dy * step


def inverse_sqrt(values, max_value: float, dtype=np.float32):
    """``1 / sqrt(values)`` for ``1 <= values <= max_value`` by Newton steps (MUL/SUB only).

    Starting at ``1 / sqrt(max_value)`` (below every root) the iteration rises monotonically;
    the number of steps is what ``values = 1`` (the slowest) needs to converge in float32.
    """
    start = dtype(1.0 / np.sqrt(max_value))
    steps, estimate = 0, start
    while steps < 60:
        steps += 1
        updated = dtype(estimate * (dtype(1.5) - dtype(0.5) * estimate * estimate))
        if updated == estimate:
            break
        estimate = updated
    result = values * 0.0 + float(start)
    for _ in range(steps):
        result = result * (1.5 - 0.5 * values * result * result)
    return result


# ------------------------------------------------------------------------------------------
# MSRA


def _msra(heatmaps, codec: MSRACodec, refine):
    h, w = codec.heatmap_size
    row, col, peak = argmax_cells(heatmaps)
    scores = peak * (1.0 / codec.peak)
    if refine == "quarter":
        dx, dy = _quarter_offsets(heatmaps, row, col, h, w)
    elif refine == "dark":
        dx, dy = _dark_offsets(heatmaps, row, col, h, w, codec.dark_blur)
    else:
        dx = dy = 0.0
    return col + dx, row + dy, scores


def _quarter_offsets(heatmaps, row, col, h, w):
    interior = (
        ops.minimum(col, 1.0) * ops.minimum(w - 1.0 - col, 1.0)
        * ops.minimum(row, 1.0) * ops.minimum(h - 1.0 - row, 1.0)
    )
    diff_x = value_at(heatmaps, row, col + 1.0) - value_at(heatmaps, row, col - 1.0)
    diff_y = value_at(heatmaps, row + 1.0, col) - value_at(heatmaps, row - 1.0, col)
    return 0.25 * sign(diff_x) * interior, 0.25 * sign(diff_y) * interior


def _dark_offsets(heatmaps, row, col, h, w, kernel_size):
    """DARK's Newton step (see :mod:`keras_pose.codecs.dark`), with ``LOG`` and ``DIV``."""
    border = (kernel_size - 1) // 2
    blurred = gaussian_blur(heatmaps, kernel_size, border=border)[
        :, border : border + h, border : border + w, :
    ]
    original_max = global_max(heatmaps)
    blurred_max = global_max(blurred)
    positive = ops.cast(blurred_max > 0, "float32")
    scale = positive * original_max / ops.where(blurred_max > 0, blurred_max, 1.0) + 1.0 - positive
    log_maps = ops.log(ops.maximum(blurred * scale, dark.LOG_FLOOR))
    r, c = ops.clip(row, 2.0, h - 3.0), ops.clip(col, 2.0, w - 3.0)

    def at(dr: float, dc: float):
        return value_at(log_maps, r + dr, c + dc)

    centre = at(0, 0)
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2.0 * centre + at(0, -2))
    dyy = 0.25 * (at(2, 0) - 2.0 * centre + at(-2, 0))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = dxx * dyy - dxy * dxy
    usable = ops.logical_and(
        ops.logical_and(ops.not_equal(det, 0.0), ops.equal(r, row)), ops.equal(c, col)
    )
    safe_det = ops.where(usable, det, 1.0)
    offset_x = ops.where(usable, -(dyy * dx - dxy * dy) / safe_det, 0.0)
    offset_y = ops.where(usable, -(dxx * dy - dxy * dx) / safe_det, 0.0)
    return offset_x, offset_y


# ------------------------------------------------------------------------------------------
# MMPose's convention


def _at_least(values, bound: float):
    """1 where the integer-valued ``values >= bound``, else 0 (``clip``)."""
    return ops.clip(values - (bound - 1.0), 0.0, 1.0)


def _at_most(values, bound: float):
    """1 where the integer-valued ``values <= bound``, else 0."""
    return ops.clip((bound + 1.0) - values, 0.0, 1.0)


def _positive(values):
    """1 where ``values > 0`` (``>= 1e-30``), else 0."""
    return ops.clip(values * BIG, 0.0, 1.0)


def _invalid_to_minus_one(x, y, valid):
    """``x, y`` where ``valid`` (1/0), else -1 (MMPose's invalid location)."""
    return x * valid - (1.0 - valid), y * valid - (1.0 - valid)


def _msra_mmpose(heatmaps, codec: MSRACodec, refine):
    h, w = codec.heatmap_size
    row, col, peak = argmax_cells(heatmaps)
    scores = peak * (1.0 / codec.peak)
    if refine == "quarter":
        use_x = _at_least(col, 2.0) * _at_most(col, w - 2.0) * _at_least(row, 1.0)
        use_y = _at_least(row, 2.0) * _at_most(row, h - 2.0) * _at_least(col, 1.0)
        diff_x = value_at(heatmaps, row, col + 1.0) - value_at(heatmaps, row, col - 1.0)
        diff_y = value_at(heatmaps, row + 1.0, col) - value_at(heatmaps, row - 1.0, col)
        dx, dy = 0.25 * sign(diff_x) * use_x, 0.25 * sign(diff_y) * use_y
    elif refine == "dark":
        dx, dy = _dark_offsets(heatmaps, row, col, h, w, codec.dark_blur)
    else:
        dx = dy = 0.0
    x, y = _invalid_to_minus_one(col + dx, row + dy, _positive(peak))
    return x, y, scores


def _megvii_mmpose(heatmaps, codec: MegviiCodec):
    """MMPose's rescaled blur without rescaling the maps: its factor ``map max / blur max``
    enters as its sign (which cell is the peak, which neighbour is higher) and in the score
    (one ``DIV`` per map)."""
    h, w = codec.heatmap_size
    kernel = codec.decode_blur or 5
    border = (kernel - 1) // 2
    blurred = gaussian_blur(heatmaps, kernel, border=border)
    blurred = blurred[:, border : border + h, border : border + w, :]
    original_max, blurred_max = global_max(heatmaps), global_max(blurred)
    direction = sign(original_max) * sign(blurred_max)
    adjusted = blurred * direction
    row, col, adjusted_max = argmax_cells(adjusted)
    nonzero = sign(blurred_max) * sign(blurred_max)  # 1, or 0 where the blur's maximum is 0
    ratio = original_max / (blurred_max + (1.0 - nonzero))
    peak = adjusted_max * direction * ratio  # the rescaled map's maximum
    interior = (
        _at_least(col, 2.0) * _at_most(col, w - 2.0) * _at_least(row, 2.0) * _at_most(row, h - 2.0)
    )
    diff_x = value_at(adjusted, row, col + 1.0) - value_at(adjusted, row, col - 1.0)
    diff_y = value_at(adjusted, row + 1.0, col) - value_at(adjusted, row - 1.0, col)
    x = col + interior * (0.25 * sign(diff_x) + 0.5)
    y = row + interior * (0.25 * sign(diff_y) + 0.5)
    x, y = _invalid_to_minus_one(x, y, _positive(peak))
    return x, y, peak * (1.0 / codec.peak) + 0.5


# ------------------------------------------------------------------------------------------
# Building blocks


def global_max(maps):
    """``(N, 1, 1, K)`` maximum of each ``(N, h, w, K)`` map (``MAX_POOL_2D``)."""
    h, w = maps.shape[1:3]
    return ops.max_pool(maps, pool_size=(h, w), strides=(h, w), padding="valid")


def _grids(maps):
    h, w = maps.shape[1:3]
    rows = ops.convert_to_tensor(np.arange(h, dtype=np.float32).reshape(1, h, 1, 1))
    cols = ops.convert_to_tensor(np.arange(w, dtype=np.float32).reshape(1, 1, w, 1))
    return rows, cols


def one_hot(grid, index):
    """1 where the integer-valued ``grid`` equals ``index``, else 0 (``RELU(1 - d^2)``)."""
    difference = grid - index
    return ops.relu(1.0 - difference * difference)


def argmax_cells(maps):
    """Row, column and value ``(N, 1, 1, K)`` of each map's maximum (first in row-major order)."""
    h, w = maps.shape[1:3]
    rows, cols = _grids(maps)
    peak = global_max(maps)
    hit = ops.relu(1.0 - (peak - maps) * BIG)
    row_hit = ops.max_pool(hit, pool_size=(1, w), strides=(1, w), padding="valid")
    first_row = h - global_max(row_hit * (h - rows))
    in_row = hit * one_hot(rows, first_row)
    col_hit = ops.max_pool(in_row, pool_size=(h, 1), strides=(h, 1), padding="valid")
    first_col = w - global_max(col_hit * (w - cols))
    return first_row, first_col, peak


def cell_mask(maps, row, col):
    """``(N, h, w, K)`` one-hot of cell ``(row, col)`` per map."""
    rows, cols = _grids(maps)
    return one_hot(rows, row) * one_hot(cols, col)


def value_at(maps, row, col):
    """``maps`` at ``(row, col)`` per map, ``(N, 1, 1, K)``; ``-1e30`` where the cell is off
    the map. Exact: a masked ``MAX_POOL_2D``."""
    mask = cell_mask(maps, row, col)
    return global_max(maps * mask - (1.0 - mask) * BIG)


def sign(values):
    """``sign`` as ``clip(values * 1e30, -1, 1)`` (exact for ``|values| >= 1e-30``)."""
    return ops.clip(values * BIG, -1.0, 1.0)


def gaussian_blur(maps, kernel_size: int, border: int = 0):
    """``cv2.GaussianBlur((k, k), 0)`` of ``maps`` zero-padded by ``border`` cells.

    Output ``(N, h + 2 border, w + 2 border, K)``; BORDER_REFLECT_101 at the padded edge like
    cv2, so it equals the numpy decode's blur up to float32 rounding. ``kernel_size <= 1``:
    the zero-padded maps.
    """
    radius = max(int(kernel_size) - 1, 0) // 2
    padded = _reflect101_pad(maps, border, radius, axis=1)
    padded = _reflect101_pad(padded, border, radius, axis=2)
    if radius == 0:
        return padded
    channels = maps.shape[-1]
    taps = _common.gaussian_kernel_1d(kernel_size).astype(np.float32)
    column = np.tile(taps.reshape(-1, 1, 1, 1), (1, 1, channels, 1))
    row = np.tile(taps.reshape(1, -1, 1, 1), (1, 1, channels, 1))
    blurred = ops.depthwise_conv(padded, ops.convert_to_tensor(column), padding="valid")
    return ops.depthwise_conv(blurred, ops.convert_to_tensor(row), padding="valid")


def _reflect101_pad(maps, border: int, radius: int, axis: int):
    """Zero-pad ``axis`` by ``border``, then extend it by ``radius`` with cv2's
    BORDER_REFLECT_101 of the zero-padded map.

    Rows the reflection takes from the zero border stay zero (they come from one ``PAD``); rows
    it takes from the data are sliced and concatenated.
    """
    size = maps.shape[axis]
    pad = border + radius
    widths = [(0, 0)] * 4
    widths[axis] = (pad, pad)
    zeroed = ops.pad(maps, widths) if pad else maps
    sources = _reflect101_sources(size, border, radius)
    if sources == list(range(len(sources))):
        return zeroed
    pieces, start = [], 0
    for i in range(1, len(sources) + 1):
        if i == len(sources) or sources[i] != sources[i - 1] + 1:
            pieces.append(_slice(zeroed, axis, sources[start], sources[i - 1] + 1))
            start = i
    return ops.concatenate(pieces, axis=axis)


def _reflect101_sources(size: int, border: int, radius: int) -> list[int]:
    """For each output index, the index of the ``border + radius`` zero-padded axis it copies."""
    total = size + 2 * border
    offset = border + radius
    sources = []
    for q in range(total + 2 * radius):
        p = q - radius
        if p < 0 or p >= total:
            p = -p if p < 0 else 2 * (total - 1) - p
            data = p - border
            sources.append(data + offset if 0 <= data < size else q)
        else:
            sources.append(q)
    return sources


def _slice(tensor, axis: int, start: int, stop: int):
    index = [slice(None)] * 4
    index[axis] = slice(start, stop)
    return tensor[tuple(index)]
