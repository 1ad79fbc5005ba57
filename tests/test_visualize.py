"""Pose drawing and atomic PNG writing."""

import os

import cv2
import numpy as np
import pytest

from keras_pose.data.dataset_info import COCO17
from keras_pose.inference.visualize import (
    CENTER_COLOR,
    LEFT_COLOR,
    RIGHT_COLOR,
    draw_skeleton,
    keypoint_sides,
    save_png,
)

# a standing COCO-17 person facing the camera (its left side on the image's right)
POSE = np.array([
    [180, 80], [190, 70], [170, 70], [205, 75], [155, 75], [220, 130], [140, 130],
    [240, 190], [120, 190], [250, 250], [110, 250], [205, 260], [155, 260],
    [210, 340], [150, 340], [215, 420], [145, 420],
], dtype=np.float64)


def pose_with_scores(scores):
    return np.concatenate([POSE, np.reshape(scores, (17, 1))], axis=1)


def midpoint(a, b):
    x, y = (POSE[a] + POSE[b]) / 2
    return int(round(y)), int(round(x))


def test_sides_come_from_the_flip_pairs():
    sides = keypoint_sides(COCO17)
    assert sides[0] == "center"
    assert sides[5] == "left" and sides[6] == "right"
    assert sides.count("left") == sides.count("right") == 8


def test_limbs_are_drawn_in_their_side_colour():
    image = np.zeros((480, 360, 3), np.uint8)
    drawn = draw_skeleton(image, pose_with_scores(np.ones(17)), draw_scores=False)
    assert image.max() == 0  # the input is not modified
    np.testing.assert_array_equal(drawn[midpoint(13, 15)], LEFT_COLOR)  # left knee - ankle
    np.testing.assert_array_equal(drawn[midpoint(14, 16)], RIGHT_COLOR)  # right knee - ankle
    np.testing.assert_array_equal(drawn[midpoint(5, 6)], CENTER_COLOR)  # shoulder - shoulder
    far_from_limbs = drawn[440:, :100]
    assert far_from_limbs.max() == 0


def test_low_scores_hide_keypoints_and_their_limbs():
    scores = np.ones(17)
    scores[9] = 0.1  # left wrist
    drawn = draw_skeleton(np.zeros((480, 360, 3), np.uint8), pose_with_scores(scores),
                          score_threshold=0.3, draw_scores=False)
    assert drawn[midpoint(7, 9)].max() == 0  # elbow - wrist not drawn
    x, y = POSE[9].astype(int)
    assert drawn[y - 2 : y + 3, x - 2 : x + 3].max() == 0
    assert drawn[midpoint(5, 7)].max() > 0  # shoulder - elbow still drawn


def test_scores_are_written_beside_keypoints_when_asked():
    image = np.zeros((480, 360, 3), np.uint8)
    poses = pose_with_scores(np.full(17, 0.87))[None]
    with_text = draw_skeleton(image, poses, draw_scores=True)
    without = draw_skeleton(image, poses, draw_scores=False)
    x, y = POSE[15].astype(int)  # left ankle: the text is to its right
    region = (slice(y - 12, y + 6), slice(x + 6, x + 40))
    assert without[region].max() == 0
    assert (with_text[region] > 150).all(axis=-1).sum() > 10  # whitish glyph pixels


def test_draw_skeleton_checks_shapes():
    image = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match=r"\(N, 17, 3\)"):
        draw_skeleton(image, np.zeros((2, 16, 3)))
    with pytest.raises(ValueError, match="uint8"):
        draw_skeleton(image.astype(np.float32), np.zeros((1, 17, 3)))


def test_save_png_writes_atomically_and_round_trips(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "sub" / "pose.png"
    assert save_png(path, image) == str(path)
    np.testing.assert_array_equal(cv2.imread(str(path)), image)
    save_png(path, image[::-1].copy())  # replaces an existing file
    np.testing.assert_array_equal(cv2.imread(str(path)), image[::-1])
    assert os.listdir(path.parent) == ["pose.png"]  # no temporary file left
    with pytest.raises(ValueError, match="bad.png"):
        save_png(tmp_path / "bad.png", np.zeros((0, 3, 3), np.uint8))
    assert not os.path.exists(tmp_path / "bad.png")
