"""OKS, OKS-NMS, soft-OKS-NMS and person rescoring, checked against hand arithmetic."""

import numpy as np
import pytest

from keras_pose.data.dataset_info import COCO17
from keras_pose.evaluation.nms import oks_iou, oks_matrix, oks_nms, soft_oks_nms
from keras_pose.evaluation.rescoring import instance_scores, mean_keypoint_scores

SIGMAS = np.asarray(COCO17.sigmas)


def standing_person(x0: float, y0: float, scale: float = 1.0) -> np.ndarray:
    """A (17, 3) pose (score column 0.9) roughly shaped like a standing person."""
    rng = np.random.default_rng(7)
    template = np.column_stack([rng.uniform(0, 60, 17), np.linspace(0, 160, 17)])
    xy = template * scale + [x0, y0]
    return np.column_stack([xy, np.full(17, 0.9)])


# ------------------------------------------------------------------------------------------
# OKS


def test_oks_single_keypoint_by_hand():
    # K=1, sigma 0.1 -> variance (2*0.1)^2 = 0.04; areas 80 and 120 -> scale 100; d^2 = 4.
    a = np.array([[[10.0, 10.0]]])
    b = np.array([[[12.0, 10.0]]])
    value = oks_matrix(a, b, [80.0], [120.0], [0.1])[0, 0]
    assert value == pytest.approx(np.exp(-4 / 0.04 / 100 / 2))


def test_oks_of_identical_poses_is_one_and_matrix_is_symmetric():
    poses = np.stack([standing_person(0, 0), standing_person(5, 3), standing_person(200, 0)])
    areas = np.array([9000.0, 8000.0, 9500.0])
    matrix = oks_matrix(poses, poses, areas, areas, SIGMAS)
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    np.testing.assert_allclose(matrix, matrix.T)
    assert matrix[0, 1] > 0.5 > matrix[0, 2]
    np.testing.assert_allclose(oks_iou(poses[0], poses, areas[0], areas, SIGMAS), matrix[0])


def test_oks_vis_threshold_keeps_keypoints_confident_in_both_poses():
    a = np.array([[[0.0, 0.0, 0.9], [0.0, 0.0, 0.9]]])
    b = np.array([[[0.0, 0.0, 0.9], [50.0, 0.0, 0.1]]])  # far keypoint is unconfident in b
    assert oks_matrix(a, b, [100], [100], [0.1, 0.1], vis_threshold=0.5)[0, 0] == 1.0
    assert oks_matrix(a, b, [100], [100], [0.1, 0.1])[0, 0] == pytest.approx(0.5, abs=1e-6)
    nothing = b.copy()
    nothing[..., 2] = 0.0
    assert oks_matrix(a, nothing, [100], [100], [0.1, 0.1], vis_threshold=0.5)[0, 0] == 0.0


def test_oks_rejects_wrong_sigmas_and_lengths():
    poses = np.zeros((2, 17, 3))
    with pytest.raises(ValueError, match="16 sigmas for 17 keypoints"):
        oks_matrix(poses, poses, [1, 1], [1, 1], SIGMAS[:16])
    with pytest.raises(ValueError, match="areas_b has 1 entries for 2 poses"):
        oks_matrix(poses, poses, [1, 1], [1], SIGMAS)


# ------------------------------------------------------------------------------------------
# OKS-NMS


def duplicate_scene():
    """A person, a near-identical copy with a lower score, and a different person."""
    person = standing_person(10, 10)
    duplicate = person.copy()
    duplicate[:, :2] += np.random.default_rng(1).normal(0, 0.5, (17, 2))
    other = standing_person(150, 20)
    poses = np.stack([duplicate, person, other])
    scores = np.array([0.8, 0.9, 0.7])
    areas = np.full(3, 60.0 * 160.0)
    return poses, scores, areas


def test_oks_nms_removes_the_duplicate_and_keeps_the_other_person():
    poses, scores, areas = duplicate_scene()
    keep = oks_nms(poses, scores, areas, SIGMAS, threshold=0.9)
    assert keep.tolist() == [1, 2]  # best first; the lower-scored copy (index 0) is gone


def test_oks_nms_threshold_one_keeps_everything_in_score_order():
    poses, scores, areas = duplicate_scene()
    assert oks_nms(poses, scores, areas, SIGMAS, threshold=1.0).tolist() == [1, 0, 2]


def test_oks_nms_empty_input():
    assert oks_nms(np.zeros((0, 17, 3)), [], [], SIGMAS).tolist() == []


# ------------------------------------------------------------------------------------------
# soft-OKS-NMS


def test_soft_oks_nms_lowers_the_duplicate_by_the_gaussian_factor():
    poses, scores, areas = duplicate_scene()
    keep, new_scores = soft_oks_nms(poses, scores, areas, SIGMAS, threshold=0.9)
    overlaps = oks_matrix(poses, poses, areas, areas, SIGMAS)
    assert keep.tolist() == [1, 2, 0]  # the rescored duplicate drops below the other person
    by_index = dict(zip(keep.tolist(), new_scores.tolist()))
    assert by_index[1] == pytest.approx(0.9)  # the best pose keeps its score
    # the duplicate is rescored by the best pose, then by the other person (OKS ~ 0)
    expected = 0.8 * np.exp(-overlaps[1, 0] ** 2 / 0.9) * np.exp(-overlaps[2, 0] ** 2 / 0.9)
    assert by_index[0] == pytest.approx(expected)
    assert by_index[0] < 0.8 * 0.5  # near-identical: OKS ~ 1 -> factor ~ exp(-1/0.9)
    assert by_index[2] == pytest.approx(0.7, rel=1e-3)  # a distinct person barely moves
    assert np.all(np.diff(new_scores) <= 0)


def test_soft_oks_nms_caps_detections():
    poses = np.stack([standing_person(200.0 * i, 0) for i in range(5)])
    keep, new_scores = soft_oks_nms(poses, np.linspace(1, 0.5, 5), np.full(5, 9600.0), SIGMAS,
                                    max_detections=3)
    assert keep.tolist() == [0, 1, 2] and len(new_scores) == 3


# ------------------------------------------------------------------------------------------
# Person rescoring


def test_instance_score_thresholded_mean_by_hand():
    keypoint_scores = np.array([
        [0.9, 0.5, 0.1, 0.3],  # above 0.2: 0.9, 0.5, 0.3 -> mean 0.5667
        [0.1, 0.15, 0.05, 0.2],  # none above 0.2 (0.2 is not above) -> plain mean 0.125
    ])
    scores = instance_scores([0.8, 0.5], keypoint_scores, keypoint_threshold=0.2)
    np.testing.assert_allclose(scores, [0.8 * (1.7 / 3), 0.5 * 0.125])


def test_instance_score_plain_mean_is_the_originals_rule():
    keypoint_scores = np.array([[0.9, 0.5, 0.1, 0.3]])
    assert instance_scores([0.8], keypoint_scores, None)[0] == pytest.approx(0.8 * 0.45)
    np.testing.assert_allclose(mean_keypoint_scores(keypoint_scores, None), [0.45])


def test_instance_score_shape_errors():
    with pytest.raises(ValueError, match="same N"):
        instance_scores([0.8, 0.7], np.ones((3, 17)))
