"""Custom keypoint sets are explicit: flip pairs, skeleton and OKS sigmas from a keypoint info
file or the annotation file's category; unpairable names are said once, loudly; missing sigmas
are an error for evaluation unless a default is opted into."""

import json
import logging

import pytest

from keras_pose.data.dataset_info import DatasetInfo, load_keypoint_info, pairs_by_name

HAND = {"name": "hand", "keypoints": ["wrist", "LeftTip", "RightTip", "Thumb"],
        "flip_pairs": [["LeftTip", "RightTip"]], "skeleton": [["wrist", "LeftTip"], [0, 2]],
        "sigmas": [0.03, 0.02, 0.02, 0.025]}


def test_camel_case_and_suffix_sides_are_paired():
    names = ["nose", "LeftHand", "RightHand", "eye_l", "eye_r", "left-knee", "right-knee"]
    assert pairs_by_name(names) == [(1, 2), (3, 4), (5, 6)]


def test_unpairable_sided_names_are_warned_about_once(caplog):
    names = ["wrist", "LeftTip", "RightFinger"]
    with caplog.at_level(logging.WARNING):
        first = DatasetInfo.from_coco_category({"name": "claw", "keypoints": names})
        DatasetInfo.from_coco_category({"name": "claw", "keypoints": names})
    assert first.flip_pairs == () and first.sigmas is None
    warnings = [r.getMessage() for r in caplog.records if "claw" in r.getMessage()]
    assert len(warnings) == 1
    assert "LeftTip" in warnings[0] and "flip_pairs" in warnings[0]


def test_keypoint_info_file(tmp_path):
    path = tmp_path / "hand.json"
    path.write_text(json.dumps(HAND))
    info = load_keypoint_info(path)
    assert info.keypoint_names == tuple(HAND["keypoints"]) and info.name == "hand"
    assert info.flip_pairs == ((1, 2),) and info.flip_indices == [0, 2, 1, 3]
    assert info.skeleton == ((0, 1), (0, 2)) and info.sigmas == (0.03, 0.02, 0.02, 0.025)
    # the same set carried by an annotation file's category (round trip)
    coco = tmp_path / "ann.json"
    coco.write_text(json.dumps({"images": [], "annotations": [],
                                "categories": [info.to_coco_category()]}))
    assert load_keypoint_info(coco) == info


@pytest.mark.parametrize("content, message", [
    ("{not json", "hand.json: keypoint info file is not valid json"),
    (json.dumps({**HAND, "flip_pairs": [["LeftTip", "Pinky"]]}),
     "hand.json.*'Pinky', not a keypoint"),
    (json.dumps({**HAND, "sigmas": [0.03]}), "hand.json.*1 sigmas for 4 keypoints"),
    (json.dumps({"flip_pairs": []}),
     "hand.json: a keypoint info file is an object with 'keypoints'"),
])
def test_bad_keypoint_info_files_name_the_file_and_problem(tmp_path, content, message):
    path = tmp_path / "hand.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_keypoint_info(path)


def test_missing_sigmas_are_an_error_unless_a_default_is_chosen(tmp_path):
    from keras_pose.evaluation import coco_keypoint_ap

    info = DatasetInfo.from_coco_category({"name": "hand", "keypoints": HAND["keypoints"],
                                           "flip_pairs": [[1, 2]]})
    with pytest.raises(ValueError, match="no OKS sigmas.*--default-sigma"):
        info.oks_sigmas()
    assert info.oks_sigmas(default_sigma=0.05) == (0.05,) * 4
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "height": 50, "width": 50}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 100.0,
                         "bbox": [5, 5, 20, 20], "num_keypoints": 1,
                         "keypoints": [10, 10, 2] + [0, 0, 0] * 3}],
        "categories": [{"id": 1, "name": "hand", "keypoints": HAND["keypoints"]}]}))
    result = [{"image_id": 1, "category_id": 1, "keypoints": [10, 10, 1] * 4, "score": 1.0}]
    with pytest.raises(ValueError, match="'hand' has no OKS sigmas"):
        coco_keypoint_ap(str(path), result)
    assert coco_keypoint_ap(str(path), result, sigmas=[0.05] * 4)["AP"] == pytest.approx(1.0)
