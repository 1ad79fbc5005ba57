"""Flip test: mirror crops, run the model, mirror its heatmaps back and average.

``flip_heatmaps`` undoes a horizontal flip of the input on the heatmaps: it mirrors the width
axis, swaps left/right channels (``flip_indices``) and, for MSRA codecs, shifts the result one
cell to the right (``shift=True``, MMPose's ``shift_heatmap``; the Megvii codecs' originals
don't shift). The first column keeps its value when shifted.

One numpy version of each, and one ``keras.ops`` version (``*_graph``) for graphs: the
SavedModel's in-graph flip test (``predict_image``, :mod:`keras_pose.export.saved_model`) uses
the latter.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def flip_images(crops: np.ndarray) -> np.ndarray:
    """Mirror ``(N, H, W, C)`` (or ``(H, W, C)``) crops horizontally."""
    crops = np.asarray(crops)
    if crops.ndim not in (3, 4):
        raise ValueError(f"crops must be (N, H, W, C) or (H, W, C), got shape {crops.shape}")
    return np.ascontiguousarray(crops[..., ::-1, :])


def flip_heatmaps(
    heatmaps: np.ndarray, flip_indices: Sequence[int], shift: bool = False
) -> np.ndarray:
    """Heatmaps of a mirrored input brought back to the original's frame.

    Args:
        heatmaps: ``(N, h, w, K)`` or ``(h, w, K)``.
        flip_indices: ``flip_indices[k]`` = the channel keypoint ``k`` becomes when mirrored
            (:attr:`keras_pose.data.dataset_info.DatasetInfo.flip_indices`).
        shift: move the result one cell to the right (MSRA codecs).
    """
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim not in (3, 4):
        raise ValueError(f"heatmaps must be (N, h, w, K) or (h, w, K), got shape {heatmaps.shape}")
    indices = check_flip_indices(flip_indices, heatmaps.shape[-1])
    flipped = heatmaps[..., ::-1, :][..., indices]
    if shift:
        flipped[..., 1:, :] = flipped[..., :-1, :].copy()
    return np.ascontiguousarray(flipped)


# ------------------------------------------------------------------------------------------
# keras.ops versions (for exported graphs): only STRIDED_SLICE and CONCATENATION, exact.


def flip_images_graph(crops):
    """Mirror ``(N, H, W, C)`` crops horizontally (a reversed ``STRIDED_SLICE``)."""
    return crops[:, :, ::-1, :]


def flip_heatmaps_graph(heatmaps, flip_indices: Sequence[int], shift: bool = False):
    """:func:`flip_heatmaps` of ``(N, h, w, K)`` tensors in ``keras.ops``.

    The channel swap concatenates slices (runs of consecutive channels), not a gather.
    """
    from keras import ops

    indices = check_flip_indices(flip_indices, heatmaps.shape[-1])
    mirrored = heatmaps[:, :, ::-1, :]
    pieces, start = [], 0
    for i in range(1, len(indices) + 1):
        if i == len(indices) or indices[i] != indices[i - 1] + 1:
            pieces.append(mirrored[..., indices[start] : indices[i - 1] + 1])
            start = i
    swapped = pieces[0] if len(pieces) == 1 else ops.concatenate(pieces, axis=-1)
    if shift:
        swapped = ops.concatenate([swapped[:, :, :1, :], swapped[:, :, :-1, :]], axis=2)
    return swapped


def check_flip_indices(flip_indices: Sequence[int], channels: int) -> list[int]:
    """``flip_indices`` as ints, if they permute the ``channels`` keypoints (else ValueError)."""
    indices = [int(i) for i in flip_indices]
    if sorted(indices) != list(range(channels)):
        raise ValueError(
            f"flip_indices must be a permutation of the {channels} channels, got {indices}"
        )
    return indices
