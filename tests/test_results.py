"""Keypoint results: building, validation of every malformed class, atomic writing."""

import json
import os

import numpy as np
import pytest

from keras_pose.evaluation.results import (
    ResultsError,
    load_results,
    make_results,
    validate_results,
    write_results,
)

K = 4


def good_entry(**changes):
    entry = {"image_id": 7, "category_id": 1, "keypoints": [1.0, 2.0, 0.9] * K, "score": 0.8}
    entry.update(changes)
    return entry


def without(key):
    entry = good_entry()
    del entry[key]
    return entry


def test_make_results_round_trips_through_a_file(tmp_path):
    keypoints = np.random.default_rng(0).uniform(0, 100, (3, K, 3)).astype(np.float32)
    results = make_results(np.array([5, 5, 9]), keypoints, np.array([0.9, 0.5, 0.7]))
    path = write_results(results, tmp_path / "sub" / "results.json", K, image_ids={5, 9})
    loaded = load_results(path, K, image_ids={5, 9})
    assert [r["image_id"] for r in loaded] == [5, 5, 9]
    assert all(type(r["image_id"]) is int for r in loaded)
    np.testing.assert_allclose([r["keypoints"] for r in loaded], keypoints.reshape(3, -1),
                               rtol=0, atol=5e-4)  # rounded to 1/1000 px
    np.testing.assert_allclose([r["score"] for r in loaded], [0.9, 0.5, 0.7])
    assert os.listdir(tmp_path / "sub") == ["results.json"]  # no temp file left behind


def test_numpy_scalars_are_accepted_and_written_as_plain_numbers(tmp_path):
    entry = good_entry(image_id=np.int64(7), score=np.float32(0.5),
                       keypoints=list(np.ones(3 * K, np.float32)))
    write_results([entry], tmp_path / "r.json", K)
    assert json.loads((tmp_path / "r.json").read_text())[0]["score"] == 0.5


@pytest.mark.parametrize(
    "entry, field, reason",
    [
        ("not a dict", "entry", "expected a dict"),
        (without("score"), "score", "missing"),
        (without("keypoints"), "keypoints", "missing"),
        (without("image_id"), "image_id", "missing"),
        (good_entry(image_id="7"), "image_id", "expected an integer"),
        (good_entry(image_id=7.0), "image_id", "expected an integer"),
        (good_entry(image_id=99), "image_id", "not an image of the annotation file"),
        (good_entry(category_id=None), "category_id", "expected an integer"),
        (good_entry(keypoints=[1.0, 2.0, 0.9] * (K - 1)), "keypoints",
         f"9 values, expected {3 * K}"),
        (good_entry(keypoints=[1.0, 2.0, 0.9] * K + [1.0]), "keypoints", "13 values"),
        (good_entry(keypoints=[1.0, float("nan"), 0.9] * K), "keypoints", "y of keypoint 0"),
        (good_entry(keypoints=[1.0, 2.0, 0.9] * (K - 1) + [float("inf"), 2.0, 0.9]),
         "keypoints", "x of keypoint 3"),
        (good_entry(keypoints=[1.0, 2.0, None] * K), "keypoints", "score of keypoint 0"),
        (good_entry(keypoints="1 2 3"), "keypoints", "expected a flat list"),
        (good_entry(score=float("nan")), "score", "finite number"),
        (good_entry(score="high"), "score", "finite number"),
    ],
)
def test_validation_names_entry_and_field(entry, field, reason):
    results = [good_entry(), good_entry(), entry]
    with pytest.raises(ResultsError) as error:
        validate_results(results, K, image_ids={7})
    message = str(error.value)
    assert message.startswith(f"results entry 2: {field}"), message
    assert reason in message, message


def test_negative_scores_are_valid():
    # Megvii's keypoint score raw / 255 + 0.5 is negative for a young network's heatmaps
    # below -127.5; a training run's first evaluations write such scores
    validate_results([good_entry(score=-3.6), good_entry(score=0.2)], K, image_ids={7})


def test_validation_of_the_container_and_category_ids():
    with pytest.raises(ResultsError, match="expected a list"):
        validate_results({"image_id": 7}, K)
    with pytest.raises(ResultsError, match="results entry 0: category_id: 2 is not one of"):
        validate_results([good_entry(category_id=2)], K, category_ids={1})
    validate_results([], K)  # no detections is a valid result


def test_invalid_results_are_never_written(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("[]")
    with pytest.raises(ResultsError, match="results entry 1: keypoints"):
        write_results([good_entry(), good_entry(keypoints=[0.0] * 5)], path, K)
    assert path.read_text() == "[]"  # the old file is untouched
    assert os.listdir(tmp_path) == ["results.json"]


def test_load_results_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([good_entry(score=float("nan"))]))
    with pytest.raises(ResultsError, match=r"bad\.json: results entry 0: score"):
        load_results(path, K)
    path.write_text("[{")
    with pytest.raises(ResultsError, match="not valid json"):
        load_results(path, K)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_results(tmp_path / "missing.json", K)
