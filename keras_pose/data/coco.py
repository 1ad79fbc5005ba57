"""Read COCO-format keypoint annotations and person detections into :class:`PersonRecord` lists.

Ground truth (:func:`load_coco_records`) follows the originals' filtering: crowd instances and
instances with no labelled keypoint (``num_keypoints == 0``) are dropped. Boxes are clipped to
the image (HRNet/MSPN ``clean_bbox``; an image without ``height``/``width`` in the file is
measured from its file); a box of zero area, with a NaN or infinite value, or lying entirely
outside its image, is skipped and counted, with one warning per file giving the counts.

Every problem that would otherwise surface mid-epoch is raised here, at load time: a missing
image file, a keypoint list of the wrong length (naming the annotation id and the file), and, with
``verify_images=True``, an image that does not decode or is truncated.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import io
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from keras_pose.data.dataset_info import COCO17, DatasetInfo
from keras_pose.utils.files import read_json

logger = logging.getLogger(__name__)

PERSON_CATEGORY_ID = 1


@dataclasses.dataclass(frozen=True, eq=False)
class PersonRecord:
    """One person instance: where its image is, its box and its keypoints.

    Attributes:
        image_path: path of the image file.
        image_id: COCO image id.
        annotation_id: COCO annotation id (-1 for a detection).
        box: ``(4,)`` float64 ``x, y, w, h`` in image pixels, clipped to the image.
        keypoints: ``(K, 3)`` float32 ``x, y, v`` (all zero for a detection).
        area: the annotation's segmentation area (box area for a detection).
        score: 1.0 for ground truth, the detector's score for a detection.
        image_size: ``(height, width)`` from the annotation file, or ``None`` if absent.
    """

    image_path: str
    image_id: int
    annotation_id: int
    box: np.ndarray
    keypoints: np.ndarray
    area: float
    score: float = 1.0
    image_size: tuple[int, int] | None = None


class BadImageError(ValueError):
    """An image file exists but cannot be decoded (or is a truncated JPEG)."""


# --------------------------------------------------------------------------------------------
# Annotation file access


def load_coco(ann_file: str | os.PathLike):
    """A ``pycocotools.coco.COCO`` index of ``ann_file``, without pycocotools' prints."""
    from pycocotools.coco import COCO

    path = os.fspath(ann_file)
    dataset = read_json(path, "annotation file")
    if not isinstance(dataset, dict) or not isinstance(dataset.get("images", []), list):
        raise ValueError(f"{path}: a COCO annotation file is an object with 'images', "
                         f"'annotations' and 'categories' lists")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
    return coco


def keypoint_category(coco, ann_file: str | os.PathLike = "", category_id: int | None = None):
    """The COCO ``categories`` entry that carries a ``keypoints`` list."""
    categories = [c for c in coco.dataset.get("categories", []) if "keypoints" in c]
    if category_id is not None:
        categories = [c for c in categories if c["id"] == category_id]
    if len(categories) != 1:
        found = [c.get("name") for c in categories]
        raise ValueError(
            f"{os.fspath(ann_file)}: expected exactly one keypoint category"
            f"{'' if category_id is None else f' with id {category_id}'}, found {found}"
        )
    return categories[0]


def read_dataset_info(
    ann_file: str | os.PathLike, category_id: int | None = None, coco: Any = None
) -> DatasetInfo:
    """The keypoint set of a COCO-format file: :data:`COCO17` if its names are COCO's, else
    :meth:`DatasetInfo.from_coco_category` (flip pairs from ``left``/``right`` names)."""
    coco = coco if coco is not None else load_coco(ann_file)
    category = keypoint_category(coco, ann_file, category_id)
    if tuple(category["keypoints"]) == COCO17.keypoint_names:
        return COCO17
    return DatasetInfo.from_coco_category(category)


# --------------------------------------------------------------------------------------------
# Ground truth


def load_coco_records(
    ann_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    dataset_info: DatasetInfo = COCO17,
    min_keypoints: int = 1,
    category_id: int | None = None,
    verify_images: bool = False,
    coco: Any = None,
) -> list[PersonRecord]:
    """Ground-truth person instances of a COCO keypoint file, for training or validation.

    Args:
        ann_file: COCO keypoints json.
        image_dir: folder holding the ``file_name`` of every image.
        dataset_info: the keypoint set; each annotation must have ``3 * K`` keypoint values.
        min_keypoints: instances with fewer labelled keypoints (v > 0) are dropped (the
            originals use 1, which drops ``num_keypoints == 0``).
        category_id: only annotations of this category (default: the file's keypoint category).
        verify_images: also decode every image now (slow: a full JPEG decode per image), so a
            corrupt file raises here instead of being skipped at run time.
        coco: an already loaded ``pycocotools`` index of ``ann_file`` (saves parsing it again).

    Raises:
        FileNotFoundError: the annotation file or an image file is missing (names the file).
        ValueError: an annotation's keypoint count does not match ``dataset_info``.
        BadImageError: with ``verify_images``, an image does not decode.
    """
    coco = coco if coco is not None else load_coco(ann_file)
    if category_id is None:
        category_id = keypoint_category(coco, ann_file)["id"]
    skipped: collections.Counter[str] = collections.Counter()
    records = []
    for ann in coco.dataset.get("annotations", []):
        if ann.get("category_id") != category_id:
            continue
        record = _annotation_record(ann, coco, ann_file, image_dir, dataset_info, min_keypoints)
        if isinstance(record, str):
            skipped[record] += 1
        else:
            records.append(record)
    _warn_skipped(ann_file, skipped, len(records))
    check_image_files(records, verify=verify_images)
    return records


def _annotation_record(
    ann: Mapping[str, Any],
    coco,
    ann_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    dataset_info: DatasetInfo,
    min_keypoints: int,
) -> PersonRecord | str:
    """A record, or the reason (a short string) the annotation is skipped."""
    if ann.get("iscrowd", 0):
        return "crowd"
    keypoints = _keypoint_array(ann, ann_file, dataset_info.num_keypoints)
    if int(np.count_nonzero(keypoints[:, 2] > 0)) < max(min_keypoints, 1):
        return "no labelled keypoints" if min_keypoints <= 1 else f"< {min_keypoints} keypoints"
    image = _image_entry(coco, ann["image_id"], ann_file)
    path = os.path.join(os.fspath(image_dir), image["file_name"])
    size = _image_size(image, path)
    box = _clean_box(ann.get("bbox"), size)
    if isinstance(box, str):
        return box
    return PersonRecord(
        image_path=path,
        image_id=int(ann["image_id"]),
        annotation_id=int(ann["id"]),
        box=box,
        keypoints=keypoints,
        area=float(ann.get("area", box[2] * box[3])),
        score=1.0,
        image_size=size,
    )


def _keypoint_array(ann: Mapping[str, Any], ann_file, num_keypoints: int) -> np.ndarray:
    values = ann.get("keypoints")
    if values is None or len(values) != 3 * num_keypoints:
        got = "no keypoints" if values is None else f"{len(values)} values"
        raise ValueError(
            f"{os.fspath(ann_file)}: annotation id {ann.get('id')} has {got}; expected "
            f"{3 * num_keypoints} (x, y, v for {num_keypoints} keypoints of the dataset info)"
        )
    return np.asarray(values, dtype=np.float32).reshape(num_keypoints, 3)


def _image_entry(coco, image_id: int, source) -> Mapping[str, Any]:
    try:
        return coco.imgs[image_id]
    except KeyError:
        raise ValueError(f"{os.fspath(source)}: image id {image_id} is not in the annotation "
                         "file's 'images'") from None


def _image_size(image: Mapping[str, Any], path: str | None = None) -> tuple[int, int] | None:
    """``(height, width)`` from the annotation file, else read from the image file (so that
    its boxes can be clipped); ``None`` if neither is available."""
    if "height" in image and "width" in image:
        return int(image["height"]), int(image["width"])
    return None if path is None else _size_from_file(path)


@functools.lru_cache(maxsize=4096)
def _size_from_file(path: str) -> tuple[int, int] | None:
    try:
        return read_image(path).shape[:2]
    except (OSError, BadImageError):
        return None  # (a missing file is reported by check_image_files, a bad one skipped)


def _clean_box(bbox: Sequence[float] | None, size: tuple[int, int] | None) -> np.ndarray | str:
    """The box clipped to the image of ``size`` (as HRNet/MSPN do), or why it is unusable."""
    if bbox is None or len(bbox) != 4:
        return "missing box"
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return "non-numeric box"
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return "non-finite box"
    if not (w > 0 and h > 0):
        return "zero-area box"
    x1, y1, x2, y2 = x, y, x + w, y + h
    if size is not None:
        height, width = size
        x1, y1 = max(x1, 0.0), max(y1, 0.0)
        x2, y2 = min(x2, float(width)), min(y2, float(height))
        if x2 <= x1 or y2 <= y1:
            return "box outside the image"
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float64)


def _warn_skipped(source, skipped: Mapping[str, int], kept: int) -> None:
    if skipped:
        counts = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
        logger.warning("%s: kept %d instances, skipped %s", os.fspath(source), kept, counts)


# --------------------------------------------------------------------------------------------
# Detections


def load_detection_records(
    det_file: str | os.PathLike,
    ann_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    score_threshold: float = 0.0,
    dataset_info: DatasetInfo = COCO17,
    category_id: int = PERSON_CATEGORY_ID,
    verify_images: bool = False,
    coco: Any = None,
) -> list[PersonRecord]:
    """Person boxes of a COCO results json (``[{image_id, category_id, bbox, score}, ...]``).

    Used for validation/test with a detector's boxes. Only ``category_id`` entries (1 = person)
    with ``score >= score_threshold`` are kept; image file names come from ``ann_file``.
    Records carry all-zero keypoints, ``annotation_id = -1`` and the detector's score.
    ``coco``: an already loaded ``pycocotools`` index of ``ann_file``.
    """
    coco = coco if coco is not None else load_coco(ann_file)
    detections = _read_detections(det_file)
    skipped: collections.Counter[str] = collections.Counter()
    records = []
    for det in detections:
        if det.get("category_id", category_id) != category_id:
            continue
        score = float(det.get("score", 1.0))
        if score < score_threshold:
            skipped["below the score threshold"] += 1
            continue
        image = _image_entry(coco, det.get("image_id"), det_file)
        path = os.path.join(os.fspath(image_dir), image["file_name"])
        size = _image_size(image, path)
        box = _clean_box(det.get("bbox"), size)
        if isinstance(box, str):
            skipped[box] += 1
            continue
        records.append(
            PersonRecord(
                image_path=path,
                image_id=int(det["image_id"]),
                annotation_id=-1,
                box=box,
                keypoints=np.zeros((dataset_info.num_keypoints, 3), np.float32),
                area=float(box[2] * box[3]),
                score=score,
                image_size=size,
            )
        )
    _warn_skipped(det_file, skipped, len(records))
    check_image_files(records, verify=verify_images)
    return records


def _read_detections(det_file: str | os.PathLike) -> list[Mapping[str, Any]]:
    path = os.fspath(det_file)
    detections = read_json(path, "detection file")
    if not isinstance(detections, list):
        raise ValueError(f"{path}: a COCO results file is a list of detections, "
                         f"got a {type(detections).__name__}")
    return detections


# --------------------------------------------------------------------------------------------
# Images


def check_image_files(records: Iterable[PersonRecord], verify: bool = False) -> None:
    """Raise now if an image is missing (or, with ``verify``, does not decode)."""
    paths = sorted({r.image_path for r in records})
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise FileNotFoundError(f"{len(missing)} image file(s) not found: {shown}")
    if verify:
        for path in paths:
            read_image(path)


def read_image(path: str) -> np.ndarray:
    """Decode an image file to a ``(H, W, 3)`` uint8 BGR array.

    Raises:
        FileNotFoundError: no such file.
        BadImageError: the file is empty, is not an image OpenCV decodes (OpenCV's own errors
            included), or is a JPEG without its end marker (a truncated download decodes
            silently into a partly grey image otherwise). The message names the file.
    """
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise BadImageError(f"empty image file (0 bytes): {path}")
    if _is_truncated_jpeg(data):
        raise BadImageError(f"truncated JPEG (no end-of-image marker): {path}")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as error:
        raise BadImageError(f"image does not decode ({str(error).strip()}): {path}") from None
    if image is None or image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise BadImageError(f"image does not decode (unknown or damaged format): {path}")
    return image


def _is_truncated_jpeg(data: bytes) -> bool:
    """A JPEG (starts with SOI) whose last KiB holds no EOI marker."""
    return data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:]
