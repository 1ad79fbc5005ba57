"""`evaluate_coco`: a pose model's COCO keypoint AP, end to end.

Person boxes (the ground truth's, score 1, or a detector's) -> :class:`Predictor` (crop, model,
optional flip test, decode, back to image pixels) -> person score -> per-image NMS -> results
json -> ``pycocotools`` COCOeval with the dataset's sigmas.

Faithful defaults per family (``nms="auto"``, ``keypoint_threshold="auto"``), from the
family's :class:`~keras_pose.profiles.FamilyProfile`:

* CPN, MSPN, RSN: no NMS of any kind and person score = box score x plain mean of the
  keypoint scores, as tf-cpn ``mptest.py`` and MSPN/RSN ``test.py`` do (MMPose's MSPN/RSN
  configs also set ``nms_mode='none'``);
* CPM, Hourglass (no COCO protocol in their originals): MMPose's ``CocoMetric`` defaults,
  OKS-NMS at 0.9 and the mean of the keypoint scores above 0.2.
"""

from __future__ import annotations

import collections
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from keras_pose.data.coco import (
    PERSON_CATEGORY_ID,
    BadImageError,
    PersonRecord,
    keypoint_category,
    load_coco,
    load_coco_records,
    load_detection_records,
    read_dataset_info,
    read_image,
)
from keras_pose.data.dataset_info import DatasetInfo
from keras_pose.data.transforms import box_to_center_size
from keras_pose.evaluation.coco_eval import coco_keypoint_ap
from keras_pose.evaluation.nms import DEFAULT_THRESHOLD, NMS_MODES, suppress
from keras_pose.evaluation.rescoring import instance_scores
from keras_pose.evaluation.results import make_results, write_results
from keras_pose.profiles import MMPOSE_KEYPOINT_THRESHOLD, MMPOSE_NMS, PROFILES
from keras_pose.spec import PoseSpec

logger = logging.getLogger(__name__)

AUTO = "auto"
DEFAULT_BATCH_SIZE = 32
RESULTS_FILE_NAME = "person_keypoints_results.json"


def default_nms(family: str) -> str:
    """The family profile's NMS: ``"none"`` for CPN/MSPN/RSN (their originals), ``"oks"``
    for the others (MMPose); ``"oks"`` for a family without a profile."""
    profile = PROFILES.get(family)
    return profile.evaluation.nms if profile else MMPOSE_NMS


def default_keypoint_threshold(family: str) -> float | None:
    """The family profile's rescoring threshold: ``None`` (plain mean) for CPN/MSPN/RSN,
    MMPose's 0.2 for the others and for a family without a profile."""
    profile = PROFILES.get(family)
    return profile.evaluation.keypoint_threshold if profile else MMPOSE_KEYPOINT_THRESHOLD


def crop_areas(boxes: np.ndarray, spec: PoseSpec) -> np.ndarray:
    """OKS-NMS scale of each person: the area of its crop window in image pixels (the box
    extended by ``spec.box_extension`` and widened to the input's aspect ratio), as HRNet's
    ``s[0] * s[1] * 200^2`` and MMPose's ``bbox_scales``."""
    aspect = spec.input_size[1] / spec.input_size[0]
    return np.array([np.prod(box_to_center_size(b, aspect, spec.box_extension)[1])
                     for b in np.reshape(boxes, (-1, 4))])


def image_results(
    image_id: int,
    records: Sequence[PersonRecord],
    poses: np.ndarray,
    spec: PoseSpec,
    sigmas: Sequence[float],
    nms: str,
    nms_threshold: float,
    keypoint_threshold: float | None,
    category_id: int = PERSON_CATEGORY_ID,
) -> list[dict[str, Any]]:
    """Results entries of one image: rescore its ``poses (N, K, 3)``, then NMS them."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.shape != (len(records), spec.num_keypoints, 3):
        raise ValueError(f"image {image_id}: predictor returned {poses.shape}, expected "
                         f"{(len(records), spec.num_keypoints, 3)}")
    scores = instance_scores([r.score for r in records], poses[..., 2], keypoint_threshold)
    areas = crop_areas(np.stack([r.box for r in records]), spec)
    keep, scores = suppress(nms, poses, scores, areas, sigmas, nms_threshold)
    return make_results([image_id] * len(keep), poses[keep], scores, category_id)


def group_by_image(records: Iterable[PersonRecord]) -> list[list[PersonRecord]]:
    """Records grouped per image, images in increasing id, boxes in input order."""
    groups: dict[int, list[PersonRecord]] = {}
    for record in records:
        groups.setdefault(record.image_id, []).append(record)
    return [groups[i] for i in sorted(groups)]


def predict_groups(
    predictor: Any,
    groups: Sequence[Sequence[PersonRecord]],
    progress: bool = True,
    skipped: list[str] | None = None,
) -> Iterator[tuple[Sequence[PersonRecord], np.ndarray]]:
    """``(group, (N_i, K, 3) poses)`` of every image group whose image reads, through
    ``predictor.predict_many``, with a Keras progress bar over images. An image that does not
    read (empty, damaged, not an image) is skipped with a warning naming it, and its path
    appended to ``skipped``."""
    import keras

    bar = keras.utils.Progbar(len(groups), unit_name="image") if progress else None
    readable: collections.deque = collections.deque()

    def items():
        for group in groups:
            try:
                image = read_image(group[0].image_path)
            except BadImageError as error:
                logger.warning("skipping an unreadable image in the evaluation: %s", error)
                if skipped is not None:
                    skipped.append(group[0].image_path)
                continue
            readable.append(group)
            yield image, np.stack([r.box for r in group])

    for done, poses in enumerate(predictor.predict_many(items()), start=1):
        if bar is not None:
            bar.update(done)
        yield readable.popleft(), np.asarray(poses)


def _records(coco, ann_file, image_dir, det_file, dataset_info, det_score_threshold):
    if det_file is None:
        return load_coco_records(ann_file, image_dir, dataset_info, coco=coco)
    return load_detection_records(det_file, ann_file, image_dir, det_score_threshold,
                                  dataset_info, coco=coco)


def _predictor_and_spec(model: Any, dataset_info, flip_test, batch_size):
    """A :class:`Predictor` for a model. An object that already has ``predict_many`` (a
    ``Predictor``, or a test oracle) is used as it is: it carries its own flip test and batch
    size, so passing either here is an error rather than silently ignored."""
    if hasattr(model, "predict_many"):
        given = [n for n, v in (("flip_test", flip_test), ("batch_size", batch_size))
                 if v is not None]
        if given:
            raise ValueError(f"evaluate_coco got a predictor and {', '.join(given)}: set them on "
                             "the Predictor, or pass the model")
        spec = getattr(model, "spec", None) or model.model.spec
        return model, spec
    from keras_pose.inference.predictor import Predictor

    predictor = Predictor(model, dataset_info=dataset_info, flip_test=flip_test,
                          batch_size=DEFAULT_BATCH_SIZE if batch_size is None else batch_size)
    return predictor, model.spec


def _check_keypoints(info: DatasetInfo, spec: PoseSpec, ann_file) -> None:
    if info.num_keypoints != spec.num_keypoints:
        raise ValueError(f"the model predicts {spec.num_keypoints} keypoints, the dataset info "
                         f"of {os.fspath(ann_file)} has {info.num_keypoints}")


def evaluate_coco(
    model: Any,
    ann_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    det_file: str | os.PathLike | None = None,
    flip_test: bool | None = None,
    batch_size: int | None = None,
    dataset_info: DatasetInfo | None = None,
    nms: str = AUTO,
    nms_threshold: float = DEFAULT_THRESHOLD,
    keypoint_threshold: float | None | str = AUTO,
    det_score_threshold: float = 0.0,
    results_file: str | os.PathLike | None = None,
    max_images: int | None = None,
    progress: bool = True,
    default_sigma: float | None = None,
) -> dict[str, Any]:
    """COCO keypoint AP of ``model`` on a COCO-format split.

    Args:
        model: a :class:`~keras_pose.models.base.PoseModel` (or a ready predictor: an object
            with ``predict_many`` and ``spec``, which keeps its own flip test and batch size).
        ann_file: COCO keypoints json of the split (e.g. ``person_keypoints_val2017.json``).
        image_dir: folder of its images.
        det_file: a detector's person boxes (COCO results json); ``None`` uses the ground-truth
            boxes with score 1.
        flip_test: average with the flipped crop; ``None`` (default) follows
            ``model.spec.flip_test``, the family's protocol.
        batch_size: crops per model call (default 32).
        dataset_info: keypoint set (flip pairs, sigmas); default read from ``ann_file``.
        nms: ``"auto"`` (by family, see the module doc), ``"none"``, ``"oks"`` or ``"soft_oks"``.
        nms_threshold: OKS-NMS threshold (soft-OKS-NMS: the Gaussian's ``sigma``).
        keypoint_threshold: person score uses the mean of keypoint scores above it; ``None``
            for the plain mean; ``"auto"`` by family.
        det_score_threshold: detections scored below it are dropped.
        results_file: where the results json goes (default: a new temporary folder).
        max_images: evaluate only the first ``max_images`` images (by id) of the split.
        progress: show a Keras progress bar.
        default_sigma: the OKS sigma of every keypoint when the keypoint set has none (by
            default such a set is an error: AP depends on them).

    Returns:
        The ten COCO numbers (``"AP"`` ... ``"ARl"``), ``"table"`` (pycocotools' summary),
        ``"results_file"``, ``"num_images"``, ``"num_boxes"``, ``"num_results"``, ``"nms"``,
        ``"keypoint_threshold"``, ``"predict_seconds"`` and ``"skipped_images"`` (the files
        that did not read: skipped with a warning, their people count as missed).
    """
    coco = load_coco(ann_file)
    category = keypoint_category(coco, ann_file)
    info = dataset_info or read_dataset_info(ann_file, coco=coco)
    sigmas = info.oks_sigmas(default_sigma)
    predictor, spec = _predictor_and_spec(model, info, flip_test, batch_size)
    _check_keypoints(info, spec, ann_file)
    nms = default_nms(spec.family) if nms == AUTO else nms
    if nms not in NMS_MODES:
        raise ValueError(f"nms must be 'auto' or one of {NMS_MODES}, got {nms!r}")
    if keypoint_threshold == AUTO:
        keypoint_threshold = default_keypoint_threshold(spec.family)

    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1 (or None for all), got {max_images}")
    image_ids = sorted(coco.getImgIds())[:max_images]
    wanted = set(image_ids)
    records = [r for r in _records(coco, ann_file, image_dir, det_file, info,
                                   det_score_threshold) if r.image_id in wanted]
    groups = group_by_image(records)
    start = time.perf_counter()
    results, skipped = [], []
    for group, poses in predict_groups(predictor, groups, progress, skipped):
        results += image_results(group[0].image_id, group, poses, spec, sigmas, nms,
                                 nms_threshold, keypoint_threshold, category["id"])
    seconds = time.perf_counter() - start

    if results_file is None:
        results_file = os.path.join(tempfile.mkdtemp(prefix="keras_pose_eval_"),
                                    RESULTS_FILE_NAME)
    path = write_results(results, results_file, info.num_keypoints, wanted)
    metrics = coco_keypoint_ap(coco, path, sigmas=sigmas, image_ids=image_ids)
    return {
        **metrics,
        "results_file": path,
        "num_images": len(image_ids),
        "num_boxes": len(records),
        "num_results": len(results),
        "skipped_images": skipped,
        "nms": nms,
        "keypoint_threshold": keypoint_threshold,
        "predict_seconds": seconds,
    }
