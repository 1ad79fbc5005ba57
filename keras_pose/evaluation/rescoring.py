"""Person-level scores: how confident is a whole predicted pose.

COCO keypoint AP ranks every predicted person of the dataset by one score, so the ranking decides
the AP as much as the keypoint positions do. Top-down methods combine the detector's box score
with the keypoint scores:

* **plain mean** (``keypoint_threshold=None``), the originals' rule (tf-cpn ``mptest.py``,
  MSPN/RSN ``test.py``): ``box score x mean of all K keypoint scores``;
* **thresholded mean** (``keypoint_threshold=0.2``), MMPose's ``score_mode='bbox_keypoint'``
  with ``keypoint_score_thr=0.2``: ``box score x mean of the keypoint scores above 0.2``.
  MMPose uses 0 as the mean when no keypoint is above the threshold; here the mean of all
  keypoints is used instead, so that such low-confidence poses still rank among themselves.

With the Megvii codecs (CPN, MSPN, RSN) keypoint scores are ``heatmap/255 + 0.5``, almost always
above 0.5, so both rules give the same scores there.
"""

from __future__ import annotations

import numpy as np

from keras_pose.profiles import MMPOSE_KEYPOINT_THRESHOLD as DEFAULT_KEYPOINT_THRESHOLD


def mean_keypoint_scores(
    keypoint_scores: np.ndarray, keypoint_threshold: float | None = DEFAULT_KEYPOINT_THRESHOLD
) -> np.ndarray:
    """``(N, K)`` keypoint scores -> ``(N,)`` mean of the scores above ``keypoint_threshold``.

    Rows with no score above the threshold get the mean of all their scores; with
    ``keypoint_threshold=None`` every row is the plain mean.
    """
    scores = np.asarray(keypoint_scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"keypoint_scores must be (N, K), got shape {scores.shape}")
    plain = scores.mean(axis=1) if scores.shape[1] else np.zeros(len(scores))
    if keypoint_threshold is None:
        return plain
    above = scores > keypoint_threshold
    count = above.sum(axis=1)
    thresholded = np.where(above, scores, 0.0).sum(axis=1) / np.maximum(count, 1)
    return np.where(count > 0, thresholded, plain)


def instance_scores(
    box_scores: np.ndarray,
    keypoint_scores: np.ndarray,
    keypoint_threshold: float | None = DEFAULT_KEYPOINT_THRESHOLD,
) -> np.ndarray:
    """Person scores ``(N,)`` = box score x :func:`mean_keypoint_scores`.

    Args:
        box_scores: ``(N,)`` detector scores (1 for ground-truth boxes).
        keypoint_scores: ``(N, K)`` per-keypoint confidences.
        keypoint_threshold: ``None`` for the originals' plain mean, a number (MMPose: 0.2) to
            average only the keypoints scoring above it.
    """
    box = np.asarray(box_scores, dtype=np.float64).reshape(-1)
    kp = np.asarray(keypoint_scores)
    if kp.ndim != 2 or len(kp) != len(box):
        raise ValueError(
            f"expected box_scores (N,) and keypoint_scores (N, K) with the same N, got "
            f"{box.shape} and {kp.shape}"
        )
    return box * mean_keypoint_scores(kp, keypoint_threshold)
