"""COCO keypoint results files: build, validate, write atomically, read.

A results file is the json list COCO's evaluation server and ``pycocotools`` take::

    [{"image_id": int, "category_id": int, "keypoints": [x1, y1, s1, ..., xK, yK, sK],
      "score": float}, ...]

:func:`validate_results` checks every entry before anything is written or evaluated, because
pycocotools either fails deep inside with an unhelpful message or, worse, silently computes a
wrong AP (a NaN coordinate never matches; a short keypoint list is broadcast).
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from keras_pose.utils.atomic import write_json

PERSON_CATEGORY_ID = 1
REQUIRED_KEYS = ("image_id", "category_id", "keypoints", "score")
KEYPOINT_DECIMALS = 3
SCORE_DECIMALS = 8


class ResultsError(ValueError):
    """A keypoint results list (or file) is malformed; the message names entry and field."""


def make_results(
    image_ids: Sequence[int],
    keypoints: np.ndarray,
    scores: Sequence[float],
    category_id: int = PERSON_CATEGORY_ID,
) -> list[dict[str, Any]]:
    """Results entries from ``image_ids (N,)``, ``keypoints (N, K, 3)`` (x, y, score) and
    person ``scores (N,)``, as plain Python numbers (json-ready).

    Keypoint values are rounded to 1/1000 (pixel), scores to 1e-8: a val2017 results file
    stays a few tens of MB instead of ~100, with no effect on OKS.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[2] != 3:
        raise ValueError(f"keypoints must be (N, K, 3), got shape {keypoints.shape}")
    if not len(image_ids) == len(keypoints) == len(scores):
        raise ValueError(
            f"{len(image_ids)} image ids, {len(keypoints)} poses and {len(scores)} scores"
        )
    return [
        {
            "image_id": int(image_id),
            "category_id": int(category_id),
            "keypoints": [round(float(v), KEYPOINT_DECIMALS) for v in pose.reshape(-1)],
            "score": round(float(score), SCORE_DECIMALS),
        }
        for image_id, pose, score in zip(image_ids, keypoints, scores)
    ]


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _entry_problem(
    entry: Any,
    num_keypoints: int,
    image_ids: Collection[int] | None,
    category_ids: Collection[int] | None,
) -> str | None:
    """What is wrong with one entry (``"field: reason"``), or ``None``."""
    if not isinstance(entry, Mapping):
        return f"entry: expected a dict, got {type(entry).__name__}"
    missing = [key for key in REQUIRED_KEYS if key not in entry]
    if missing:
        return f"{', '.join(missing)}: missing key(s); an entry needs {list(REQUIRED_KEYS)}"
    image_id, category_id = entry["image_id"], entry["category_id"]
    if not _is_integer(image_id):
        return f"image_id: expected an integer, got {image_id!r}"
    if image_ids is not None and image_id not in image_ids:
        return f"image_id: {image_id} is not an image of the annotation file"
    if not _is_integer(category_id):
        return f"category_id: expected an integer, got {category_id!r}"
    if category_ids is not None and category_id not in category_ids:
        return f"category_id: {category_id} is not one of {sorted(category_ids)}"
    return _keypoints_problem(entry["keypoints"], num_keypoints) or _score_problem(entry["score"])


def _keypoints_problem(keypoints: Any, num_keypoints: int) -> str | None:
    if isinstance(keypoints, (str, bytes, Mapping)) or not isinstance(keypoints, Iterable):
        return f"keypoints: expected a flat list of {3 * num_keypoints} numbers, got " \
               f"{type(keypoints).__name__}"
    values = list(keypoints)
    if len(values) != 3 * num_keypoints:
        return (f"keypoints: {len(values)} values, expected {3 * num_keypoints} "
                f"(x, y, score for {num_keypoints} keypoints)")
    for i, value in enumerate(values):
        if not _is_finite_number(value):
            what = ("x", "y", "score")[i % 3]
            return f"keypoints: value {i} ({what} of keypoint {i // 3}) is {value!r}, " \
                   "expected a finite number"
    return None


def _score_problem(score: Any) -> str | None:
    """Any finite score ranks; a negative one is legitimate (the originals' keypoint score
    ``raw / 255 + 0.5`` is negative wherever a young network's heatmap is below -127.5)."""
    if not _is_finite_number(score):
        return f"score: expected a finite number, got {score!r}"
    return None


def validate_results(
    results: Any,
    num_keypoints: int,
    image_ids: Collection[int] | None = None,
    category_ids: Collection[int] | None = None,
) -> None:
    """Raise :class:`ResultsError` on the first malformed entry of a keypoint results list.

    Checks: a list of dicts; keys ``image_id, category_id, keypoints, score``; integer ids;
    ``image_id`` in ``image_ids`` and ``category_id`` in ``category_ids`` when given;
    exactly ``3 * num_keypoints`` finite keypoint values; a finite score.
    The message names the entry's index and the field. An empty list is valid (no detections).
    """
    if not isinstance(results, (list, tuple)):
        raise ResultsError(
            f"results: expected a list of entries, got {type(results).__name__}"
        )
    known_images = None if image_ids is None else set(image_ids)
    known_categories = None if category_ids is None else set(category_ids)
    for index, entry in enumerate(results):
        problem = _entry_problem(entry, num_keypoints, known_images, known_categories)
        if problem is not None:
            raise ResultsError(f"results entry {index}: {problem}")


def write_results(
    results: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    num_keypoints: int,
    image_ids: Collection[int] | None = None,
) -> str:
    """Validate ``results`` and write them to ``path`` atomically.

    Returns the path written.
    """
    validate_results(results, num_keypoints, image_ids)
    return write_json([_plain(entry) for entry in results], path, separators=(",", ":"))


def _plain(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A validated entry with numpy scalars turned into Python numbers (json-serialisable)."""
    return {
        **entry,
        "image_id": int(entry["image_id"]),
        "category_id": int(entry["category_id"]),
        "keypoints": [float(v) for v in entry["keypoints"]],
        "score": float(entry["score"]),
    }


def load_results(
    path: str | os.PathLike,
    num_keypoints: int,
    image_ids: Collection[int] | None = None,
    category_ids: Collection[int] | None = None,
) -> list[dict[str, Any]]:
    """Read and validate a keypoint results json file (errors name the file)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"results file not found: {path}")
    with open(path) as f:
        try:
            results = json.load(f)
        except json.JSONDecodeError as error:
            raise ResultsError(f"{path}: not valid json ({error})") from None
    try:
        validate_results(results, num_keypoints, image_ids, category_ids)
    except ResultsError as error:
        raise ResultsError(f"{path}: {error}") from None
    return results
