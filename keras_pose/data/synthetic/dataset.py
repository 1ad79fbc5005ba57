"""The synthetic set written as a COCO layout: images, keypoint annotations, detections.

Every example, test and the end-to-end job can run on a fresh machine with
:func:`make_coco_layout`, which writes ``train2017/``, ``val2017/``,
``annotations/person_keypoints_{train,val}2017.json`` and
``person_detection_results/{train,val}2017_detections.json`` exactly the way real COCO is laid
out, so the same loaders, evaluators and exporters run on it.

Annotation fields: ``keypoints`` ``[x, y, v] * 17`` (pixel centres at integer coordinates,
the OpenCV convention the crop geometry uses), ``num_keypoints`` (count of ``v > 0``),
``bbox`` = tight extent of the person's whole body as drawn, including parts later covered by
others, clipped to the image (so every labelled keypoint is inside it, which top-down crops
rely on; COCO's own boxes follow the visible mask instead), ``segmentation`` = RLE of the
visible pixels and ``area`` = its pixel count (COCO's definition, used as the OKS scale).
People left with fewer than 3 labelled or 2 visible keypoints, or less than 20% of their body
visible, are removed from the scene (not drawn), so there are no unannotated people; a scene
left empty is sampled again, so every image holds at least one annotated person.

The images come from :mod:`keras_pose.data.synthetic.render`; this module writes them as a COCO
layout (atomically, reusing a complete one) with detections derived from the ground truth.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from keras_pose.data.dataset_info import COCO17
from keras_pose.data.synthetic.render import (
    GENERATOR_VERSION,
    SyntheticExample,
    check_image_size,
    example_rng,
    render_example,
)
from keras_pose.utils.atomic import fsync_tree, write_json

__all__ = ["MANIFEST_NAME", "VAL_IMAGE_ID_OFFSET", "main", "make_coco_dataset", "make_coco_layout"]

MANIFEST_NAME = "synthetic_manifest.json"
VAL_IMAGE_ID_OFFSET = 10_000_000

# ---------------------------------------------------------------------------------------------
# Detections (COCO results format) from the ground truth
# ---------------------------------------------------------------------------------------------


def _detections(rng: np.random.Generator, example: SyntheticExample, image_id: int
                ) -> list[dict[str, Any]]:
    """A detector's output: jittered true boxes, spread scores, misses, duplicates, false alarms."""
    h, w = example.image.shape[:2]
    boxes_scores = []
    for box, area in zip(example.boxes, example.areas):
        shown = float(area) / float(box[2] * box[3])  # thin or hidden people score lower
        if rng.random() < 0.03 + 0.25 * max(0.0, 0.35 - shown):
            continue  # missed
        score = rng.uniform(0.55, 1.0) * (0.75 + 0.25 * min(1.0, shown / 0.35))
        boxes_scores.append((_jitter(rng, box, 0.05), score))
        if rng.random() < 0.1:
            boxes_scores.append((_jitter(rng, box, 0.15), score * rng.uniform(0.2, 0.6)))
    clutter = list(example.distractor_boxes)
    for _ in range(int(rng.poisson(0.4))):
        bw = rng.uniform(0.08, 0.35) * w
        bh = min(bw * rng.uniform(1.2, 3.0), h * 0.9)
        clutter.append(np.array([rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh]))
    for box in clutter:
        if rng.random() < 0.5:
            boxes_scores.append((_jitter(rng, box, 0.1), rng.uniform(0.02, 0.5)
                                 if rng.random() < 0.9 else rng.uniform(0.5, 0.85)))
    results = []
    for box, score in boxes_scores:
        x0, y0 = np.clip(box[:2], 0, [w - 1, h - 1])
        x1, y1 = np.clip(box[:2] + box[2:], [x0 + 1, y0 + 1], [w, h])
        results.append({"image_id": image_id, "category_id": 1,
                        "bbox": [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                        "score": round(float(score), 4)})
    return results


def _jitter(rng: np.random.Generator, box: np.ndarray, amount: float) -> np.ndarray:
    x, y, bw, bh = (float(v) for v in box)
    cx = x + bw / 2 + rng.normal(0, amount) * bw
    cy = y + bh / 2 + rng.normal(0, amount) * bh
    bw, bh = bw * np.exp(rng.normal(0, amount * 1.5)), bh * np.exp(rng.normal(0, amount * 1.5))
    return np.array([cx - bw / 2, cy - bh / 2, bw, bh])


# ---------------------------------------------------------------------------------------------
# Files: one split, the COCO layout, manifest
# ---------------------------------------------------------------------------------------------


def _split_paths(root: Path, split: str) -> dict[str, str]:
    return {
        "root": str(root),
        "image_dir": str(root / split),
        "annotation_file": str(root / "annotations" / f"person_keypoints_{split}.json"),
        "detection_file": str(root / "person_detection_results" / f"{split}_detections.json"),
    }


def _annotation_records(example: SyntheticExample, image_id: int) -> list[dict[str, Any]]:
    records = []
    for j, (kpts, box, mask) in enumerate(zip(example.keypoints, example.boxes, example.masks)):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        flat = [float(v) if i % 3 < 2 else int(v) for i, v in enumerate(kpts.reshape(-1))]
        records.append({
            "id": image_id * 100 + j + 1,
            "image_id": image_id,
            "category_id": 1,
            "keypoints": flat,
            "num_keypoints": int((kpts[:, 2] > 0).sum()),
            "bbox": [float(v) for v in box],
            "area": float(mask.sum()),
            "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
            "iscrowd": 0,
        })
    return records


def _write_split(staging: Path, params: dict[str, Any]) -> None:
    """Render every image of a split into ``staging`` (same layout as the final folder)."""
    split, seed, (h, w) = params["split"], params["seed"], params["image_size"]
    q_lo, q_hi = params["jpeg_quality"]
    (staging / split).mkdir(parents=True)
    images, annotations, detections = [], [], []
    for index in range(params["num_images"]):
        image_id = params["image_id_offset"] + index + 1
        example = render_example(seed, index, split, (h, w), params["max_people"])
        quality = int(example_rng(seed, split, index, 3).integers(q_lo, q_hi + 1))
        ok, data = cv2.imencode(".jpg", example.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for synthetic image {image_id}")
        file_name = f"{image_id:012d}.jpg"
        (staging / split / file_name).write_bytes(data.tobytes())
        images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
        annotations.extend(_annotation_records(example, image_id))
        detections.extend(_detections(example_rng(seed, split, index, 4), example, image_id))
    coco = {
        "info": {"description": "keras-pose synthetic person keypoints",
                 "version": str(GENERATOR_VERSION)},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [COCO17.to_coco_category()],
    }
    paths = _split_paths(staging, split)
    for key, content in (("annotation_file", coco), ("detection_file", detections)):
        Path(paths[key]).parent.mkdir(parents=True, exist_ok=True)
        with open(paths[key], "w") as f:
            json.dump(content, f, separators=(",", ":"))


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_NAME
    if not path.exists():
        return {"generator": "keras_pose.data.synthetic", "splits": {}}
    with open(path) as f:
        return json.load(f)


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    write_json(manifest, root / MANIFEST_NAME, indent=1, sort_keys=True)


def _is_complete(root: Path, params: dict[str, Any]) -> bool:
    entry = _read_manifest(root)["splits"].get(params["split"])
    if entry != {"status": "complete", "params": params}:
        return False
    paths = _split_paths(root, params["split"])
    if not (os.path.isfile(paths["annotation_file"]) and os.path.isfile(paths["detection_file"])):
        return False
    image_dir = Path(paths["image_dir"])
    return image_dir.is_dir() and sum(1 for _ in image_dir.glob("*.jpg")) == params["num_images"]


def _claim(root: Path, split: str) -> None:
    """Mark ``split`` as being (re)written by us; refuse to replace data we did not make."""
    manifest = _read_manifest(root)
    if split not in manifest["splits"]:
        for path in _split_paths(root, split).values():
            if path != str(root) and os.path.exists(path):
                raise FileExistsError(
                    f"{path} exists and was not written by make_coco_dataset "
                    f"(no '{split}' entry in {root / MANIFEST_NAME}); refusing to overwrite it")
    manifest["splits"][split] = {"status": "writing"}
    _write_manifest(root, manifest)


def _install(staging: Path, root: Path, split: str) -> None:
    new, old = _split_paths(staging, split), _split_paths(root, split)
    if os.path.isdir(old["image_dir"]):
        shutil.rmtree(old["image_dir"])
    os.replace(new["image_dir"], old["image_dir"])
    for key in ("annotation_file", "detection_file"):
        Path(old[key]).parent.mkdir(parents=True, exist_ok=True)
        os.replace(new[key], old[key])


def make_coco_dataset(
    out_dir: str | os.PathLike,
    num_images: int,
    seed: int = 0,
    split: str = "train2017",
    image_size: tuple[int, int] = (240, 320),
    max_people: int = 3,
    image_id_offset: int = 0,
    jpeg_quality: tuple[int, int] = (60, 95),
) -> dict[str, str]:
    """Write (or reuse) one split of a synthetic COCO-format person keypoint dataset.

    Writes ``out_dir/<split>/<image_id:012d>.jpg``,
    ``out_dir/annotations/person_keypoints_<split>.json`` and
    ``out_dir/person_detection_results/<split>_detections.json`` (COCO results format).
    The split is rendered in a temporary folder and moved into place; a manifest
    (``synthetic_manifest.json``) records the parameters, so a second call with the same ones
    returns at once. Existing files that the manifest does not claim are never overwritten.

    Returns:
        ``{"root", "image_dir", "annotation_file", "detection_file"}`` as strings.
    """
    h, w = check_image_size(image_size)
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if not 1 <= max_people <= 99:
        raise ValueError(f"max_people must be in 1..99, got {max_people}")
    if not 1 <= jpeg_quality[0] <= jpeg_quality[1] <= 100:
        raise ValueError(f"jpeg_quality must be (low, high) within 1..100, got {jpeg_quality}")
    params = {"version": GENERATOR_VERSION, "split": split, "num_images": int(num_images),
              "seed": int(seed), "image_size": [h, w], "max_people": int(max_people),
              "image_id_offset": int(image_id_offset), "jpeg_quality": list(jpeg_quality)}
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    if _is_complete(root, params):
        return _split_paths(root, split)
    _claim(root, split)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".synthetic-{split}-"))
    try:
        _write_split(staging, params)
        fsync_tree(str(staging))
        _install(staging, root, split)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest = _read_manifest(root)
    manifest["splits"][split] = {"status": "complete", "params": params}
    _write_manifest(root, manifest)
    return _split_paths(root, split)


def make_coco_layout(
    out_dir: str | os.PathLike,
    num_train: int,
    num_val: int,
    seed: int = 0,
    **kwargs: Any,
) -> dict[str, Any]:
    """Write (or reuse) ``train2017`` and ``val2017`` the way COCO is laid out.

    ``kwargs`` go to :func:`make_coco_dataset` (``image_size``, ``max_people``,
    ``jpeg_quality``). Validation image ids start at 10,000,001 so ids never clash.

    Returns:
        ``{"root": out_dir, "train2017": paths, "val2017": paths}`` with the per-split paths of
        :func:`make_coco_dataset`.
    """
    if "image_id_offset" in kwargs or "split" in kwargs:
        raise TypeError("make_coco_layout chooses split and image_id_offset itself")
    train = make_coco_dataset(out_dir, num_train, seed, "train2017", image_id_offset=0, **kwargs)
    val = make_coco_dataset(out_dir, num_val, seed, "val2017",
                            image_id_offset=VAL_IMAGE_ID_OFFSET, **kwargs)
    return {"root": str(Path(out_dir)), "train2017": train, "val2017": val}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic COCO-format keypoint dataset.")
    parser.add_argument("out_dir")
    parser.add_argument("--train", type=int, default=1000, help="training images")
    parser.add_argument("--val", type=int, default=200, help="validation images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    parser.add_argument("--max-people", type=int, default=3)
    args = parser.parse_args(argv)
    paths = make_coco_layout(args.out_dir, args.train, args.val, args.seed,
                             image_size=tuple(args.size), max_people=args.max_people)
    print(json.dumps(paths, indent=1))
