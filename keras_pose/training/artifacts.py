"""What a finished run leaves besides its ``.keras`` files: a SavedModel and two pictures
(predicted skeletons, the learning curve)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import cv2
import numpy as np

logger = logging.getLogger(__name__)

TILE_HEIGHT = 320
NUM_IMAGES = 6
COLUMNS = 3
SCORE_THRESHOLD = 0.3  # on the 0..1 confidence scale of every family (Predictor.confidences)


def export_saved_model(model: Any, path: str) -> str:
    """The final model as a TF Serving SavedModel (checked against Keras by the exporter)."""
    from keras_pose.export import saved_model

    return saved_model(model, path)


def draw_predictions(
    model: Any,
    ann_file: str,
    image_dir: str,
    path: str,
    results_file: str | None = None,
    num_images: int = NUM_IMAGES,
) -> str:
    """A grid of the first ``num_images`` validation images with their predicted skeletons,
    written atomically as a PNG. Poses come from the evaluation's ``results_file`` when given,
    else from a :class:`~keras_pose.inference.Predictor` on the ground-truth boxes."""
    from keras_pose.data.coco import load_coco, read_dataset_info
    from keras_pose.inference import Predictor, draw_skeleton, save_png

    coco = load_coco(ann_file)
    info = read_dataset_info(ann_file, coco=coco)
    image_ids = sorted(coco.getImgIds())[:num_images]
    predictor = Predictor(model, dataset_info=info)
    poses = (_poses_from_results(results_file, image_ids, info.num_keypoints)
             if results_file and os.path.exists(results_file)
             else _poses_from_model(predictor, coco, image_ids, image_dir))
    tiles = []
    for image_id in image_ids:
        image = cv2.imread(_image_path(coco, image_dir, image_id))
        if image is None:
            continue
        kept = predictor.confidences(poses.get(image_id, np.zeros((0, info.num_keypoints, 3))))
        tiles.append(draw_skeleton(image, kept, info, score_threshold=SCORE_THRESHOLD,
                                   draw_scores=False))
    if not tiles:
        raise FileNotFoundError(f"no readable validation image in {image_dir}")
    return save_png(path, grid(tiles))


def _poses_from_results(results_file: str, image_ids, num_keypoints: int) -> dict[int, np.ndarray]:
    with open(results_file) as f:
        results = json.load(f)
    wanted = set(image_ids)
    poses: dict[int, list[np.ndarray]] = {}
    for entry in results:
        if entry["image_id"] in wanted:
            poses.setdefault(entry["image_id"], []).append(
                np.reshape(np.asarray(entry["keypoints"], np.float64), (num_keypoints, 3)))
    return {k: np.stack(v) for k, v in poses.items()}


def _poses_from_model(predictor, coco, image_ids, image_dir) -> dict[int, np.ndarray]:
    poses = {}
    for image_id in image_ids:
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False))
                if a.get("num_keypoints", 0) > 0]
        if anns:
            boxes = np.array([a["bbox"] for a in anns], np.float64)
            poses[image_id] = predictor(_image_path(coco, image_dir, image_id), boxes)
    return poses


def _image_path(coco, image_dir: str, image_id: int) -> str:
    return os.path.join(image_dir, coco.loadImgs(image_id)[0]["file_name"])


def grid(tiles: list[np.ndarray], columns: int = COLUMNS, height: int = TILE_HEIGHT) -> np.ndarray:
    """Images scaled to one height, padded to one width, laid out in rows of ``columns``."""
    scaled = [cv2.resize(t, (max(1, round(t.shape[1] * height / t.shape[0])), height))
              for t in tiles]
    width = max(t.shape[1] for t in scaled)
    padded = [np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0))) for t in scaled]
    while len(padded) % columns and len(padded) > columns:
        padded.append(np.zeros_like(padded[0]))
    rows = [np.concatenate(padded[i:i + columns], axis=1) for i in range(0, len(padded), columns)]
    return np.concatenate(rows, axis=0)


CURVE_SIZE = (720, 540)  # width, height of learning_curve.png
CURVE_MARGIN = 60


def draw_learning_curve(history: list[dict[str, float]], path: str) -> str:
    """``learning_curve.png``: the training loss (top) and the validation COCO AP (bottom)
    against training time (minutes; seconds for a run under two minutes), one point per
    epoch (AP where it was evaluated), from
    a run's history (:class:`~keras_pose.training.callbacks.RecordHistory`); written
    atomically."""
    from keras_pose.inference import save_png

    timed = [h for h in history if "seconds" in h]
    if not timed:
        raise ValueError("the run's history has no timed epoch to draw a learning curve from")
    longest = max(h["seconds"] for h in timed)
    unit, scale = ("minutes", 60.0) if longest >= 120 else ("seconds", 1.0)
    loss = [(h["seconds"] / scale, h["loss"]) for h in timed if "loss" in h]
    ap = [(h["seconds"] / scale, h["val_AP"]) for h in timed if "val_AP" in h]
    x_max = longest / scale
    width, height = CURVE_SIZE
    canvas = np.full((height, width, 3), 255, np.uint8)
    half = height // 2
    _panel(canvas[:half], loss, x_max, unit, "training loss", (200, 80, 30), zero_based=False)
    _panel(canvas[half:], ap, x_max, unit, "validation AP", (40, 40, 200), zero_based=True)
    return save_png(path, canvas)


def _panel(area: np.ndarray, points: list[tuple[float, float]], x_max: float, unit: str,
           title: str, colour: tuple[int, int, int], zero_based: bool) -> None:
    """One curve with axes, ticks and labels drawn into ``area`` (in place)."""
    height, width = area.shape[:2]
    left, right, top, bottom = CURVE_MARGIN, width - 20, 30, height - 40
    black, font = (0, 0, 0), cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(area, title, (left, 20), font, 0.55, colour, 1, cv2.LINE_AA)
    cv2.line(area, (left, bottom), (right, bottom), black, 1)
    cv2.line(area, (left, top), (left, bottom), black, 1)
    cv2.putText(area, unit, (right - 60, height - 8), font, 0.45, black, 1, cv2.LINE_AA)
    values = [v for _, v in points]
    low = 0.0 if zero_based or not values else min(values)
    high = max(values) if values else 1.0
    if high <= low:
        high = low + (abs(low) or 1.0)
    x_span = x_max or 1.0

    def to_pixel(x: float, y: float) -> tuple[int, int]:
        return (round(left + (right - left) * x / x_span),
                round(bottom - (bottom - top) * (y - low) / (high - low)))

    for i in range(5):
        x, y = x_span * i / 4, low + (high - low) * i / 4
        px, _ = to_pixel(x, low)
        _, py = to_pixel(0, y)
        cv2.putText(area, f"{x:.3g}", (px - 12, bottom + 18), font, 0.4, black, 1, cv2.LINE_AA)
        cv2.putText(area, f"{y:.3g}", (4, py + 4), font, 0.4, black, 1, cv2.LINE_AA)
        cv2.line(area, (left - 4, py), (left, py), black, 1)
    pixels = [to_pixel(x, y) for x, y in points]
    if len(pixels) > 1:
        cv2.polylines(area, [np.array(pixels, np.int32)], False, colour, 2, cv2.LINE_AA)
    for pixel in pixels:
        cv2.circle(area, pixel, 4, colour, -1, cv2.LINE_AA)
    if not pixels:
        cv2.putText(area, "not evaluated", (left + 20, (top + bottom) // 2), font, 0.5, black,
                    1, cv2.LINE_AA)
