"""Input-pipeline throughput: training crops + targets per second from `build_dataset`.

Writes ``--images`` generated 640x480 JPEGs (smooth colour fields, shapes and sensor noise,
quality 90) with ``--people`` person boxes each, then times ``build_dataset`` with the family's
original augmentation at 256x192 for

* a CPN spec (5 outputs: GlobalNet kernels 15/11/9/7, RefineNet 7; 4 crops per decoded image),
* an MSPN 2-stage spec (8 outputs: 15/11/9/7 then 11/9/7/5; 1 crop per decoded image),

and, for reference, plain ``cv2.imdecode`` of the same files in one thread. Each run times
``--batches`` batches after ``--warmup`` batches on a fresh iterator; medians of ``--runs``.
Besides crops per wall-clock second it reports crops per CPU-second of the process, which a
shared machine disturbs much less (see :func:`time_pipeline`).

Run (see data_pipeline.md for the figures)::

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \\
    MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 TF_CPP_MIN_LOG_LEVEL=2 \\
        python benchmarks/data_pipeline.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import cv2
import numpy as np

INPUT_SIZE = (256, 192)
IMAGE_HW = (480, 640)


def cpn_spec():
    from keras_pose.spec import PoseSpec, megvii_outputs

    names = ["global_c2", "global_c3", "global_c4", "global_c5", "heatmaps"]
    outputs = megvii_outputs(names, [15, 11, 9, 7, 7], ["mse"] * 4 + ["ohkm"],
                             [0.125] * 4 + [1.0], decode_blur=21, decode_normalize=True)
    return PoseSpec("cpn", INPUT_SIZE, 17, "BGR", outputs, box_extension=(1.2, 1.3))


def mspn_2stage_spec():
    from keras_pose.spec import PoseSpec, megvii_outputs

    names = [f"stage{s}_unit{u}" for s in (1, 2) for u in (1, 2, 3, 4)][:-1] + ["heatmaps"]
    kernels = [15, 11, 9, 7, 11, 9, 7, 5]
    losses = ["mse", "mse", "mse", "ohkm"] * 2
    weights = [0.25, 0.25, 0.25, 1.0] * 2
    outputs = megvii_outputs(names, kernels, losses, weights)
    return PoseSpec("mspn", INPUT_SIZE, 17, "BGR", outputs, box_extension=(1.09, 1.135))


def write_dataset(root: str, num_images: int, people: int, seed: int = 0) -> tuple[str, str]:
    """JPEG images and a COCO keypoints json with ``people`` labelled persons per image."""
    from keras_pose.data import COCO17

    rng = np.random.default_rng(seed)
    image_dir = os.path.join(root, "images")
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        name = f"{image_id:06d}.jpg"
        cv2.imwrite(os.path.join(image_dir, name), _scene(rng), [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append({"id": image_id, "file_name": name,
                       "height": IMAGE_HW[0], "width": IMAGE_HW[1]})
        for _ in range(people):
            annotations.append(_person(rng, len(annotations) + 1, image_id))
    ann_file = os.path.join(root, "annotations.json")
    with open(ann_file, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [COCO17.to_coco_category()]}, f)
    return ann_file, image_dir


def _scene(rng: np.random.Generator) -> np.ndarray:
    h, w = IMAGE_HW
    field = rng.integers(0, 255, (h // 32, w // 32, 3)).astype(np.uint8)
    image = cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(30):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        cv2.circle(image, (x, y), int(rng.integers(5, 60)), colour, -1)
        cv2.rectangle(image, (x, y), (x + int(rng.integers(5, 90)), y + int(rng.integers(5, 90))),
                      colour, int(rng.integers(1, 4)))
    noise = rng.normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _person(rng: np.random.Generator, ann_id: int, image_id: int) -> dict:
    h, w = IMAGE_HW
    bw, bh = rng.uniform(60, 250), rng.uniform(120, 400)
    x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    keypoints = np.stack([rng.uniform(x, x + bw, 17), rng.uniform(y, y + bh, 17),
                          rng.choice([0, 1, 2], 17, p=[0.2, 0.2, 0.6])], axis=1)
    keypoints[keypoints[:, 2] == 0, :2] = 0
    keypoints[0, 2] = 2
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "bbox": [x, y, bw, bh], "area": bw * bh, "keypoints": keypoints.ravel().tolist(),
            "num_keypoints": int((keypoints[:, 2] > 0).sum())}


def time_pipeline(spec, ann_file, image_dir, batch_size, warmup, batches, runs) -> dict:
    """Crops per second (wall clock) and per CPU-second of each run.

    Each run starts a fresh iterator and discards ``warmup`` batches. On a shared machine the
    wall-clock rate depends on the other load; crops per CPU-second of this process does much
    less, and times the core count bounds what an idle machine reaches.
    """
    from keras_pose.data import build_dataset

    dataset = build_dataset(spec, ann_file, image_dir, batch_size=batch_size, repeat=True)
    wall, per_cpu = [], []
    for _ in range(runs):
        iterator = iter(dataset)
        for _ in range(warmup):
            next(iterator)
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(batches):
            next(iterator)
        crops = batches * batch_size
        wall.append(crops / (time.perf_counter() - start))
        per_cpu.append(crops / (time.process_time() - start_cpu))
        del iterator
    return {"crops_per_s": summary(wall), "crops_per_cpu_s": summary(per_cpu)}


def time_decode(image_dir: str, runs: int) -> list[float]:
    """Single-thread ``cv2.imdecode`` images per second (file bytes already in memory)."""
    names = sorted(os.listdir(image_dir))
    blobs = [np.fromfile(os.path.join(image_dir, name), np.uint8) for name in names]
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for blob in blobs:
            cv2.imdecode(blob, cv2.IMREAD_COLOR)
        rates.append(len(blobs) / (time.perf_counter() - start))
    return rates


def summary(rates: list[float]) -> dict:
    return {"median": round(statistics.median(rates), 1), "min": round(min(rates), 1),
            "max": round(max(rates), 1), "runs": [round(r, 1) for r in rates]}


def allocator() -> str:
    preload = os.environ.get("LD_PRELOAD", "")
    if "jemalloc" in preload:
        return f"jemalloc ({preload}; MALLOC_CONF={os.environ.get('MALLOC_CONF', '')})"
    return "glibc malloc"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as root:
        ann_file, image_dir = write_dataset(root, args.images, args.people)
        sizes = [os.path.getsize(os.path.join(image_dir, f)) for f in os.listdir(image_dir)]
        results = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "allocator": allocator(),
            "load_average_1_5_15_min_at_start": [round(v, 2) for v in os.getloadavg()],
            "cv2_threads": cv2.getNumThreads(),
            "mean_jpeg_kB": round(float(np.mean(sizes)) / 1000, 1),
            "records": args.images * args.people,
            "cv2_imdecode_images_per_s_1_thread": summary(time_decode(image_dir, args.runs)),
        }
        for name, spec in (("cpn_5_targets", cpn_spec()), ("mspn_2stage_8_targets",
                                                              mspn_2stage_spec())):
            results[name] = time_pipeline(spec, ann_file, image_dir, args.batch_size,
                                          args.warmup, args.batches, args.runs)
        results["load_average_1_5_15_min_at_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
