"""Every unreadable image (empty, not an image, damaged) names its file: a counted skip in
training and evaluation, an error naming the file where one image was asked for (prediction)."""

import logging
import os

import numpy as np
import pytest

from keras_pose.data.coco import BadImageError, read_image


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    from keras_pose.data.synthetic import make_coco_layout

    return make_coco_layout(tmp_path_factory.mktemp("coco"), 3, 3)


@pytest.fixture(scope="module")
def tiny_model():
    from keras_pose.models import TinyPoseNet

    return TinyPoseNet(input_shape=(32, 24, 3), num_keypoints=17, width=4)


def first_image(split):
    return os.path.join(split["image_dir"], sorted(os.listdir(split["image_dir"]))[0])


@pytest.mark.parametrize("content, reason", [
    (b"", "empty image file"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "does not decode"),
    (b"GIF89a nothing else", "does not decode"),
])
def test_read_image_names_the_file_of_any_unreadable_image(tmp_path, content, reason):
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(BadImageError, match=f"{reason}.*broken.jpg"):
        read_image(str(path))


def test_training_input_skips_and_counts_a_zero_byte_image(tmp_path, layout, tiny_model, caplog):
    import shutil

    from keras_pose.data import build_dataset
    from keras_pose.data.pipeline import SKIPPED_IMAGES

    train = layout["train2017"]
    image_dir = tmp_path / "images"
    shutil.copytree(train["image_dir"], image_dir)
    empty = first_image({"image_dir": str(image_dir)})
    open(empty, "wb").close()
    people = len(__import__("json").load(open(train["annotation_file"]))["annotations"])
    with caplog.at_level(logging.WARNING):
        dataset = build_dataset(tiny_model, train["annotation_file"], str(image_dir),
                                batch_size=1, training=False, return_meta=True)
        seen = sum(int(batch[0].shape[0]) for batch in dataset)
    assert empty in SKIPPED_IMAGES.paths and "empty image file" in SKIPPED_IMAGES.paths[empty]
    assert 0 < seen < people  # that image's people skipped, the others kept
    assert any(os.path.basename(empty) in r.getMessage() for r in caplog.records)


def test_evaluation_skips_counts_and_names_an_unreadable_image(tmp_path, layout, tiny_model,
                                                               caplog):
    import shutil

    from keras_pose.evaluation import evaluate_coco

    val = layout["val2017"]
    image_dir = tmp_path / "images"
    shutil.copytree(val["image_dir"], image_dir)
    broken = first_image({"image_dir": str(image_dir)})
    with open(broken, "wb") as f:
        f.write(b"not an image")
    with caplog.at_level(logging.WARNING):
        metrics = evaluate_coco(tiny_model, val["annotation_file"], str(image_dir),
                                flip_test=False, progress=False,
                                results_file=str(tmp_path / "results.json"))
    assert metrics["skipped_images"] == [broken]
    assert any(os.path.basename(broken) in r.getMessage() for r in caplog.records)
    assert metrics["num_results"] > 0  # the other images were evaluated


def test_prediction_of_an_unreadable_image_is_an_error_naming_it(tmp_path, tiny_model):
    from keras_pose.inference import Predictor

    path = tmp_path / "photo.jpg"
    path.write_bytes(b"")
    with pytest.raises(BadImageError, match="empty image file.*photo.jpg"):
        Predictor(tiny_model)(str(path), np.array([[0, 0, 10, 20]]))


# -- boxes and results that would otherwise be silent garbage ---------------------------------


def test_nan_and_huge_boxes_are_counted_skips_or_clipped(tmp_path, layout, caplog):
    import json

    from keras_pose.data.coco import load_coco_records

    val = layout["val2017"]
    data = json.load(open(val["annotation_file"]))
    first = data["annotations"][0]
    first["bbox"] = [float("nan"), 5, 40, 70]
    second = data["annotations"][1]
    second["bbox"] = [10, 10, 1e12, float("inf")]
    third = data["annotations"][2]
    third["bbox"] = [10, 12, 1e12, 1e12]  # no image size in the file: read from the image
    for image in data["images"]:
        if image["id"] == third["image_id"]:
            height, width = image.pop("height"), image.pop("width")
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))  # (json writes NaN and Infinity, as users' tools do)
    with caplog.at_level(logging.WARNING):
        records = load_coco_records(str(path), val["image_dir"])
    dropped = (first["id"], second["id"])
    assert [r.annotation_id for r in records if r.annotation_id in dropped] == []
    assert "2 non-finite box" in caplog.text
    clipped = next(r for r in records if r.annotation_id == third["id"])
    assert clipped.box.tolist() == [10, 12, width - 10, height - 12]
    assert clipped.image_size == (height, width)


def test_results_with_another_category_id_are_refused_not_scored_zero(layout):
    from keras_pose.evaluation import ResultsError, coco_keypoint_ap

    val = layout["val2017"]
    import json

    annotation = json.load(open(val["annotation_file"]))["annotations"][0]
    result = {"image_id": annotation["image_id"], "category_id": 2,
              "keypoints": annotation["keypoints"], "score": 1.0}
    with pytest.raises(ResultsError, match="category_id: 2 is not one of \\[1\\]"):
        coco_keypoint_ap(val["annotation_file"], [result])
