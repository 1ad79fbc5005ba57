"""Reading COCO keypoint files and detections into records; every bad-input class.

``write_coco_folder`` (also used by the pipeline tests) writes a small COCO-format dataset.
"""

import json
import logging
import os

import cv2
import numpy as np
import pytest

from keras_pose.data import COCO17, DatasetInfo
from keras_pose.data.coco import (
    BadImageError,
    load_coco_records,
    load_detection_records,
    read_dataset_info,
    read_image,
)

IMAGE_HW = (120, 160)


def person(ann_id, image_id, box, keypoints, **fields):
    """A COCO annotation dict; ``keypoints`` is ``(K, 3)``."""
    keypoints = np.asarray(keypoints, float)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "bbox": list(box),
        "area": float(box[2] * box[3]),
        "keypoints": keypoints.ravel().tolist(),
        "num_keypoints": int((keypoints[:, 2] > 0).sum()),
        **fields,
    }


def random_keypoints(rng, box, num_keypoints=17, labelled=True):
    """Keypoints inside ``box``: all visible if ``labelled``, else all unlabelled."""
    x, y, w, h = box
    keypoints = np.zeros((num_keypoints, 3))
    if labelled:
        keypoints[:, 0] = rng.uniform(x + 2, x + w - 2, num_keypoints)
        keypoints[:, 1] = rng.uniform(y + 2, y + h - 2, num_keypoints)
        keypoints[:, 2] = 2
    return keypoints


def write_image(path, rng, hw=IMAGE_HW):
    """A smooth random colour image as a JPEG."""
    small = rng.integers(0, 255, (hw[0] // 8, hw[1] // 8, 3)).astype(np.uint8)
    cv2.imwrite(str(path), cv2.resize(small, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC))


def write_coco_folder(root, annotations, num_images, category=None, seed=0, hw=IMAGE_HW):
    """``root/images/{i}.jpg`` for image ids 1..num_images and ``root/ann.json``."""
    rng = np.random.default_rng(seed)
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    images = []
    for image_id in range(1, num_images + 1):
        name = f"{image_id:04d}.jpg"
        write_image(image_dir / name, rng, hw)
        images.append({"id": image_id, "file_name": name, "height": hw[0], "width": hw[1]})
    dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [category or COCO17.to_coco_category()],
    }
    ann_file = root / "ann.json"
    ann_file.write_text(json.dumps(dataset))
    return str(ann_file), str(image_dir)


def standard_people(rng, num_images=3):
    """Two good people per image."""
    annotations = []
    for image_id in range(1, num_images + 1):
        for box in ([10, 10, 50, 90], [80, 20, 60, 80]):
            annotations.append(person(len(annotations) + 1, image_id, box,
                                      random_keypoints(rng, box)))
    return annotations


# ---------------------------------------------------------------------------------------------


def test_records_drop_crowd_and_keypointless_instances(tmp_path, caplog):
    rng = np.random.default_rng(0)
    annotations = standard_people(rng, 2)
    box = [20, 20, 40, 40]
    annotations.append(person(100, 1, box, random_keypoints(rng, box), iscrowd=1))
    annotations.append(person(101, 2, box, random_keypoints(rng, box, labelled=False)))
    ann_file, image_dir = write_coco_folder(tmp_path, annotations, 2)
    with caplog.at_level(logging.WARNING, logger="keras_pose.data.coco"):
        records = load_coco_records(ann_file, image_dir)
    (message,) = [r.getMessage() for r in caplog.records]
    assert "kept 4" in message and "1 crowd" in message and "1 no labelled keypoints" in message
    assert [r.annotation_id for r in records] == [1, 2, 3, 4]
    first = records[0]
    assert first.image_path == os.path.join(image_dir, "0001.jpg") and first.image_id == 1
    assert first.box.dtype == np.float64 and first.box.tolist() == [10, 10, 50, 90]
    assert first.keypoints.dtype == np.float32 and first.keypoints.shape == (17, 3)
    np.testing.assert_allclose(first.keypoints.ravel(), annotations[0]["keypoints"], rtol=1e-6)
    assert first.score == 1.0 and first.area == 50 * 90 and first.image_size == IMAGE_HW


def test_min_keypoints_filter(tmp_path):
    rng = np.random.default_rng(1)
    box = [10, 10, 50, 90]
    keypoints = random_keypoints(rng, box)
    keypoints[3:, 2] = 0  # three labelled keypoints
    ann_file, image_dir = write_coco_folder(tmp_path, [person(1, 1, box, keypoints)], 1)
    assert len(load_coco_records(ann_file, image_dir, min_keypoints=3)) == 1
    assert len(load_coco_records(ann_file, image_dir, min_keypoints=4)) == 0


def test_bad_boxes_are_counted_skips_with_one_warning(tmp_path, caplog):
    rng = np.random.default_rng(2)
    annotations = standard_people(rng, 1)
    keypoints = random_keypoints(rng, [10, 10, 50, 90])
    annotations.append(person(10, 1, [10, 10, 0, 90], keypoints))  # zero width
    annotations.append(person(11, 1, [10, 10, 50, -3], keypoints))  # negative height
    annotations.append(person(12, 1, [200, 10, 50, 90], keypoints))  # right of the image
    annotations.append(person(13, 1, [-5, 100, 30, 40], keypoints))  # partly outside: clipped
    ann_file, image_dir = write_coco_folder(tmp_path, annotations, 1)
    with caplog.at_level(logging.WARNING, logger="keras_pose.data.coco"):
        records = load_coco_records(ann_file, image_dir)
    assert [r.annotation_id for r in records] == [1, 2, 13]
    assert records[-1].box.tolist() == [0, 100, 25, 20]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "2 zero-area box" in warnings[0] and "1 box outside the image" in warnings[0]
    assert "ann.json" in warnings[0] and "kept 3" in warnings[0]


def test_keypoint_count_mismatch_names_annotation_and_file(tmp_path):
    rng = np.random.default_rng(3)
    box = [10, 10, 50, 90]
    annotations = standard_people(rng, 1) + [person(77, 1, box, random_keypoints(rng, box, 14))]
    ann_file, image_dir = write_coco_folder(tmp_path, annotations, 1)
    with pytest.raises(ValueError, match=r"ann\.json: annotation id 77 has 42 values; expected 51"):
        load_coco_records(ann_file, image_dir)


def test_missing_image_raises_at_load_naming_the_file(tmp_path):
    rng = np.random.default_rng(4)
    ann_file, image_dir = write_coco_folder(tmp_path, standard_people(rng, 2), 2)
    os.remove(os.path.join(image_dir, "0002.jpg"))
    with pytest.raises(FileNotFoundError, match=r"1 image file\(s\) not found: .*0002\.jpg"):
        load_coco_records(ann_file, image_dir)


def test_corrupt_images_are_detected(tmp_path):
    rng = np.random.default_rng(5)
    ann_file, image_dir = write_coco_folder(tmp_path, standard_people(rng, 2), 2)
    path = os.path.join(image_dir, "0002.jpg")
    assert read_image(path).shape == (*IMAGE_HW, 3)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])  # truncated download
    with pytest.raises(BadImageError, match="truncated JPEG.*0002.jpg"):
        read_image(path)
    assert len(load_coco_records(ann_file, image_dir)) == 4  # not decoded by default
    with pytest.raises(BadImageError, match="0002.jpg"):
        load_coco_records(ann_file, image_dir, verify_images=True)
    open(path, "wb").write(b"not an image at all")
    with pytest.raises(BadImageError, match="does not decode.*0002.jpg"):
        read_image(path)


def test_detection_records(tmp_path):
    rng = np.random.default_rng(6)
    ann_file, image_dir = write_coco_folder(tmp_path, standard_people(rng, 2), 2)
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [5, 6, 40, 80], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [15, 16, 30, 60], "score": 0.2},
        {"image_id": 2, "category_id": 3, "bbox": [15, 16, 30, 60], "score": 0.99},  # a car
        {"image_id": 2, "category_id": 1, "bbox": [15, 16, 0, 60], "score": 0.8},
    ]
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps(detections))
    records = load_detection_records(det_file, ann_file, image_dir, score_threshold=0.1)
    assert [(r.image_id, r.score) for r in records] == [(1, pytest.approx(0.9)), (2, 0.2)]
    assert records[0].box.tolist() == [5, 6, 40, 80] and records[0].annotation_id == -1
    assert records[0].keypoints.shape == (17, 3) and not records[0].keypoints.any()
    assert len(load_detection_records(det_file, ann_file, image_dir, score_threshold=0.5)) == 1
    det_file.write_text(json.dumps([{"image_id": 9, "category_id": 1, "bbox": [0, 0, 9, 9]}]))
    with pytest.raises(ValueError, match="dets.json: image id 9"):
        load_detection_records(det_file, ann_file, image_dir)


def test_custom_keypoint_category(tmp_path):
    category = {
        "id": 1,
        "name": "hand",
        "keypoints": ["wrist", "left_tip", "right_tip"],
        "skeleton": [[1, 2], [1, 3]],
    }
    rng = np.random.default_rng(7)
    box = [10, 10, 50, 90]
    annotations = [person(1, 1, box, random_keypoints(rng, box, 3))]
    ann_file, image_dir = write_coco_folder(tmp_path, annotations, 1, category=category)
    info = read_dataset_info(ann_file)
    assert isinstance(info, DatasetInfo) and info.num_keypoints == 3
    assert info.flip_pairs == ((1, 2),) and info.skeleton == ((0, 1), (0, 2))
    assert load_coco_records(ann_file, image_dir, info)[0].keypoints.shape == (3, 3)
    with pytest.raises(ValueError, match="annotation id 1 has 9 values; expected 51"):
        load_coco_records(ann_file, image_dir)  # COCO-17 by default


def test_coco_names_give_coco17(tmp_path):
    ann_file, _ = write_coco_folder(tmp_path, [], 1)
    assert read_dataset_info(ann_file) is COCO17
