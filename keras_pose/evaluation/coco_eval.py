"""COCO keypoint AP/AR with ``pycocotools`` (``COCOeval(iouType="keypoints")``).

The dataset's OKS sigmas are set on ``params.kpt_oks_sigmas`` (pycocotools' default is COCO-17's,
which is wrong for any other keypoint set), only the annotation file's keypoint category is
evaluated, and pycocotools' prints are captured: the summary table comes back as text.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from keras_pose.data.coco import keypoint_category, load_coco, read_dataset_info
from keras_pose.evaluation.results import load_results, validate_results

# COCOeval.stats for iouType="keypoints", in order (maxDets=20; medium/large areas).
METRIC_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def as_coco(annotations: Any):
    """A ``pycocotools.coco.COCO`` from a path or an existing ``COCO`` object."""
    if isinstance(annotations, (str, os.PathLike)):
        return load_coco(annotations)
    if hasattr(annotations, "loadRes") and hasattr(annotations, "dataset"):
        return annotations
    raise TypeError(f"expected an annotation file path or a pycocotools COCO, "
                    f"got {type(annotations).__name__}")


def _detections_coco(coco_gt, results: Sequence[Mapping[str, Any]]):
    """The results as a COCO index (a copy: ``loadRes`` adds fields to the entries it gets)."""
    from pycocotools.coco import COCO

    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes(copy.deepcopy(list(results)))
    empty = COCO()  # loadRes cannot take an empty list: no detections at all
    empty.dataset = {
        "images": list(coco_gt.dataset.get("images", [])),
        "categories": copy.deepcopy(coco_gt.dataset.get("categories", [])),
        "annotations": [],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def coco_keypoint_ap(
    annotations: Any,
    results: str | os.PathLike | Sequence[Mapping[str, Any]],
    sigmas: Sequence[float] | None = None,
    image_ids: Collection[int] | None = None,
) -> dict[str, Any]:
    """COCO keypoint AP of ``results`` against ``annotations``.

    Args:
        annotations: annotation file path or ``pycocotools.coco.COCO``.
        results: results file path or list of entries (see :mod:`keras_pose.evaluation.results`);
            validated first.
        sigmas: per-keypoint OKS sigmas; default the annotation file's keypoint set
            (COCO-17's sigmas when its keypoint names are COCO's).
        image_ids: evaluate only these images (default every image of the annotation file;
            images without any result count as missed people).

    Returns:
        ``{"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}`` as floats
        (pycocotools' -1 where an area range has no ground truth) and ``"table"``, the
        pycocotools summary text.
    """
    from pycocotools.cocoeval import COCOeval

    coco_gt = as_coco(annotations)
    source = os.fspath(annotations) if isinstance(annotations, (str, os.PathLike)) else "COCO"
    category = keypoint_category(coco_gt, source)
    num_keypoints = len(category["keypoints"])
    known_images = set(coco_gt.getImgIds())
    categories = [category["id"]]  # (another category_id would score AP 0 without a word)
    if isinstance(results, (str, os.PathLike)):
        results = load_results(results, num_keypoints, known_images, categories)
    else:
        validate_results(results, num_keypoints, known_images, categories)
    sigmas = _sigmas(coco_gt, sigmas, num_keypoints)

    evaluator = COCOeval(coco_gt, _detections_coco(coco_gt, results), iouType="keypoints")
    evaluator.params.kpt_oks_sigmas = sigmas
    evaluator.params.catIds = [category["id"]]
    if image_ids is not None:
        unknown = sorted(set(image_ids) - known_images)
        if unknown:
            raise ValueError(f"image_ids not in the annotation file: {unknown[:10]}")
        evaluator.params.imgIds = sorted(int(i) for i in image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        evaluator.summarize()
    metrics: dict[str, Any] = {name: float(v) for name, v in zip(METRIC_NAMES, evaluator.stats)}
    metrics["table"] = table.getvalue().rstrip("\n")
    return metrics


def _sigmas(coco_gt, sigmas: Sequence[float] | None, num_keypoints: int) -> np.ndarray:
    if sigmas is None:
        sigmas = read_dataset_info("", coco=coco_gt).oks_sigmas()
    sigmas = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if len(sigmas) != num_keypoints:
        raise ValueError(f"{len(sigmas)} OKS sigmas for the annotation file's "
                         f"{num_keypoints} keypoints")
    if not np.all(sigmas > 0):
        raise ValueError(f"OKS sigmas must be positive, got {sigmas.tolist()}")
    return sigmas


def format_metrics(metrics: Mapping[str, float], digits: int = 3) -> str:
    """The ten numbers as a two-line header/value table (the layout of model-zoo READMEs)."""
    widths = [max(len(name), digits + 3) for name in METRIC_NAMES]
    header = " | ".join(name.rjust(w) for name, w in zip(METRIC_NAMES, widths))
    values = " | ".join(f"{metrics[name]:.{digits}f}".rjust(w)
                        for name, w in zip(METRIC_NAMES, widths))
    return f"{header}\n{values}"
