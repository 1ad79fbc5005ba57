"""Object keypoint similarity between predicted poses, OKS-NMS and soft-OKS-NMS.

A detector often returns two boxes on one person; a top-down model then predicts nearly the same
pose twice, and the lower-scored copy is a false positive at every OKS threshold. OKS-NMS (the
SimpleBaseline/HRNet/MMPose test step) removes such duplicates per image; soft-OKS-NMS lowers
their scores instead. The originals of CPN, MSPN and RSN used neither (tf-cpn ``mptest.py``
and MSPN ``test.py`` keep every box), MMPose uses OKS-NMS at 0.9 for CPM and Hourglass.

The similarity follows MMPose's ``oks_iou``: for poses ``a`` and ``b`` with areas ``A_a, A_b``,
``OKS = mean_k exp(-d_k^2 / (2 * s * (2 sigma_k)^2))`` with ``s = (A_a + A_b) / 2``, over the
keypoints both poses score above ``vis_threshold`` (all keypoints when it is ``None``).
Everything is vectorised over the pairs of one image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_THRESHOLD = 0.9
DEFAULT_MAX_DETECTIONS = 20  # pycocotools' maxDets for keypoints


def _as_poses(keypoints: np.ndarray, name: str) -> np.ndarray:
    poses = np.asarray(keypoints, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[2] not in (2, 3):
        raise ValueError(f"{name} must be (N, K, 2) or (N, K, 3), got shape {poses.shape}")
    return poses


def _check_sigmas(sigmas: Sequence[float], num_keypoints: int) -> np.ndarray:
    sigmas = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if len(sigmas) != num_keypoints:
        raise ValueError(f"{len(sigmas)} sigmas for {num_keypoints} keypoints")
    return sigmas


def _check_lengths(n: int, **arrays: np.ndarray) -> None:
    for name, array in arrays.items():
        if len(array) != n:
            raise ValueError(f"{name} has {len(array)} entries for {n} poses")


def oks_matrix(
    poses_a: np.ndarray,
    poses_b: np.ndarray,
    areas_a: np.ndarray,
    areas_b: np.ndarray,
    sigmas: Sequence[float],
    vis_threshold: float | None = None,
) -> np.ndarray:
    """Pairwise OKS ``(A, B)`` between poses ``(A, K, 2|3)`` and ``(B, K, 2|3)``.

    ``vis_threshold`` needs the third column (keypoint scores): only keypoints scored above it
    in both poses count, and a pair with no such keypoint has OKS 0.
    """
    a, b = _as_poses(poses_a, "poses_a"), _as_poses(poses_b, "poses_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"poses_a has {a.shape[1]} keypoints, poses_b {b.shape[1]}")
    areas_a = np.asarray(areas_a, dtype=np.float64).reshape(-1)
    areas_b = np.asarray(areas_b, dtype=np.float64).reshape(-1)
    _check_lengths(len(a), areas_a=areas_a)
    _check_lengths(len(b), areas_b=areas_b)
    variances = (2.0 * _check_sigmas(sigmas, a.shape[1])) ** 2
    squared = ((a[:, None, :, :2] - b[None, :, :, :2]) ** 2).sum(axis=-1)  # (A, B, K)
    scale = (areas_a[:, None] + areas_b[None, :]) / 2.0 + np.spacing(1)
    similarity = np.exp(-squared / variances / scale[..., None] / 2.0)
    if vis_threshold is None:
        return similarity.mean(axis=-1)
    if a.shape[2] != 3 or b.shape[2] != 3:
        raise ValueError("vis_threshold needs poses with a score column (N, K, 3)")
    both = (a[:, None, :, 2] > vis_threshold) & (b[None, :, :, 2] > vis_threshold)
    count = both.sum(axis=-1)
    return np.where(count > 0, (similarity * both).sum(axis=-1) / np.maximum(count, 1), 0.0)


def oks_iou(
    pose: np.ndarray,
    others: np.ndarray,
    area: float,
    other_areas: np.ndarray,
    sigmas: Sequence[float],
    vis_threshold: float | None = None,
) -> np.ndarray:
    """OKS ``(M,)`` of one pose ``(K, 2|3)`` with each of ``others`` ``(M, K, 2|3)``."""
    return oks_matrix(
        np.asarray(pose)[None], others, [area], other_areas, sigmas, vis_threshold
    )[0]


def _prepare(keypoints, scores, areas, sigmas, vis_threshold):
    poses = _as_poses(keypoints, "keypoints")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    _check_lengths(len(poses), scores=scores, areas=areas)
    overlaps = oks_matrix(poses, poses, areas, areas, sigmas, vis_threshold)
    return scores, overlaps


def oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    sigmas: Sequence[float],
    threshold: float = DEFAULT_THRESHOLD,
    vis_threshold: float | None = None,
) -> np.ndarray:
    """Greedy OKS-NMS of one image's poses.

    Takes the best-scored pose, drops every remaining pose whose OKS with it is above
    ``threshold``, and repeats.

    Args:
        keypoints: ``(N, K, 2|3)`` poses in image pixels.
        scores: ``(N,)`` person scores.
        areas: ``(N,)`` the OKS scale of each pose (its box area in pixels^2).
        sigmas: ``(K,)`` the dataset's OKS sigmas.
        threshold: poses with a higher OKS than this with a kept pose are removed.
        vis_threshold: see :func:`oks_matrix`.

    Returns:
        Indices of the kept poses, best score first.
    """
    scores, overlaps = _prepare(keypoints, scores, areas, sigmas, vis_threshold)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while len(order):
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[overlaps[best, order] <= threshold]
    return np.asarray(keep, dtype=np.intp)


def soft_oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    sigmas: Sequence[float],
    threshold: float = DEFAULT_THRESHOLD,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
    vis_threshold: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft-OKS-NMS with Gaussian rescoring.

    Takes the best-scored pose, multiplies the score of every remaining pose by
    ``exp(-oks^2 / threshold)`` (its OKS with the taken pose), re-sorts and repeats, until
    ``max_detections`` poses are taken. MMPose's ``soft_oks_nms`` computes the same order but
    returns only the indices (the written scores stay the original ones); here the lowered
    scores are returned as well, so they can be written, as soft-NMS intends.

    Returns:
        ``(keep, new_scores)``: indices of the kept poses in decreasing order of their new
        score, and those new scores (same length as ``keep``).
    """
    scores, overlaps = _prepare(keypoints, scores, areas, sigmas, vis_threshold)
    if threshold <= 0:
        raise ValueError(f"soft_oks_nms threshold must be > 0, got {threshold}")
    remaining = np.arange(len(scores))
    current = scores.copy()
    keep, kept_scores = [], []
    while len(remaining) and len(keep) < max_detections:
        position = int(np.argmax(current[remaining]))
        best = remaining[position]
        keep.append(best)
        kept_scores.append(current[best])
        remaining = np.delete(remaining, position)
        current[remaining] *= np.exp(-overlaps[best, remaining] ** 2 / threshold)
    return np.asarray(keep, dtype=np.intp), np.asarray(kept_scores, dtype=np.float64)


NMS_MODES = ("none", "oks", "soft_oks")


def suppress(
    mode: str,
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    sigmas: Sequence[float],
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """One image's poses through the NMS named by ``mode``.

    ``"none"`` keeps every pose (the originals of CPN, MSPN, RSN), ``"oks"`` is
    :func:`oks_nms`, ``"soft_oks"`` is :func:`soft_oks_nms`.

    Returns:
        ``(keep, scores)``: indices of the kept poses and their (possibly lowered) scores.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if mode == "none":
        return np.arange(len(scores)), scores
    if mode == "oks":
        keep = oks_nms(keypoints, scores, areas, sigmas, threshold)
        return keep, scores[keep]
    if mode == "soft_oks":
        return soft_oks_nms(keypoints, scores, areas, sigmas, threshold)
    raise ValueError(f"unknown NMS mode {mode!r}; expected one of {NMS_MODES}")
