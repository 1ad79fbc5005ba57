"""Input-pipeline throughput: training crops + targets per second from `build_dataset`.

Writes ``--images`` generated 640x480 JPEGs (smooth colour fields, shapes and sensor noise,
quality 90) with ``--people`` person boxes each, then times ``build_dataset`` with the family's
original augmentation for the specs the models carry (``keras_pose.models``):

* ``cpn``: CPN at 256x192, 5 targets (GlobalNet kernels 15/11/9/7, RefineNet 7), tf-cpn's
  4 crops per decoded image;
* ``mspn2``: MSPN 2-stage at 256x192, 8 targets (15/11/9/7, then 11/9/7/5), one decode per crop;
* ``hourglass``: Stacked Hourglass (8 stacks) at 256x256, MSRA targets (sigma 1.75), colour
  jitter, RGB crops;
* ``cpm``: CPM (6 stages) at 368x368, MSRA targets at stride 8 (sigma 0.875).

and, for reference, plain ``cv2.imdecode`` of the same files in one thread. Each run times
``--batches`` batches after ``--warmup`` batches on a fresh iterator; medians of ``--runs``.
Besides crops per wall-clock second it reports crops per CPU-second of the process, which a
shared machine disturbs much less (see :func:`time_pipeline`). ``--profile`` adds the CPU
milliseconds per crop of each step, run one after another in one thread (:func:`profile_steps`).

Run (see data_pipeline.md for the figures)::

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \\
    MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 TF_CPP_MIN_LOG_LEVEL=2 \\
        python benchmarks/data_pipeline.py --runs 7 --profile
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

IMAGE_HW = (480, 640)


def specs() -> dict:
    """The benchmarked specs, as the models build them."""
    from keras_pose.models.cpm import cpm_spec
    from keras_pose.models.cpn import cpn_spec
    from keras_pose.models.hourglass import hourglass_spec
    from keras_pose.models.mspn import multi_stage_spec

    return {
        "cpn": cpn_spec((256, 192)),
        "mspn2": multi_stage_spec("mspn", (256, 192), 17, 2),
        "hourglass": hourglass_spec((256, 256), 17, 8),
        "cpm": cpm_spec((368, 368), 17, 6),
    }


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


def time_pipeline(spec, ann_file, image_dir, batch_size, warmup, batches, runs,
                  deterministic=None, workers=None) -> dict:
    """Crops per second (wall clock) and per CPU-second of each run.

    Each run starts a fresh iterator and discards ``warmup`` batches. On a shared machine the
    wall-clock rate depends on the other load; crops per CPU-second of this process does much
    less, and times the core count bounds what an idle machine reaches. With worker processes
    (``workers`` > 0) the CPU-seconds are this process's plus its children's, sampled from
    ``/proc`` (:func:`cpu_seconds`).
    """
    from keras_pose.data import build_dataset

    dataset = build_dataset(spec, ann_file, image_dir, batch_size=batch_size, repeat=True,
                            deterministic=deterministic, workers=workers)
    wall, per_cpu = [], []
    for _ in range(runs):
        iterator = iter(dataset)
        for _ in range(warmup):
            next(iterator)
        start, start_cpu = time.perf_counter(), cpu_seconds()
        for _ in range(batches):
            next(iterator)
        crops = batches * batch_size
        wall.append(crops / (time.perf_counter() - start))
        per_cpu.append(crops / (cpu_seconds() - start_cpu))
        del iterator
    return {"crops_per_s": summary(wall), "crops_per_cpu_s": summary(per_cpu)}


def cpu_seconds() -> float:
    """CPU seconds of this process and of its live child processes (the data workers)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            for pid in f.read().split():
                try:
                    with open(f"/proc/{pid}/stat") as stat:
                        fields = stat.read().rsplit(") ", 1)[1].split()
                except FileNotFoundError:
                    continue
                total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return total


def profile_steps(spec, ann_file, image_dir, num_records: int, batch_size: int) -> dict:
    """CPU milliseconds per crop of each step of a training sample, one thread, in sequence.

    ``read+decode`` is per record (shared by tf-cpn's 4 crops); ``targets[kernel/sigma, v>=n]``
    is one target group's ``encode`` over batches of ``batch_size`` crops. What the pipeline
    spends beyond their sum is tf.data: the ``numpy_function`` hand-offs, unbatch/batch copies,
    the float32 cast, threads.
    """
    from keras_pose.data import read_dataset_info
    from keras_pose.data.coco import load_coco_records, read_image
    from keras_pose.data.targets import target_groups
    from keras_pose.data.transforms import apply_crop, draw_crops, jitter_colors, resolve_augment

    info = read_dataset_info(ann_file)
    records = load_coco_records(ann_file, image_dir, info)[:num_records]
    augment = resolve_augment(spec, None)
    rng = np.random.default_rng(0)
    clock = {"read+decode": 0.0, "augmentation draw": 0.0, "warp + keypoints": 0.0}
    keypoints = []
    for record in records:
        start = time.process_time()
        image = read_image(record.image_path)
        middle = time.process_time()
        draws = draw_crops(record.box, record.keypoints, image.shape[1], spec, augment, rng)
        end = time.process_time()
        clock["read+decode"] += middle - start
        clock["augmentation draw"] += end - middle
        for draw in draws:
            start = time.process_time()
            crop, points = apply_crop(image, record.keypoints, draw, spec, info.flip_indices,
                                      augment.border_value)
            if augment.color_jitter > 0:
                crop = jitter_colors(crop, augment.color_jitter, rng)
            clock["warp + keypoints"] += time.process_time() - start
            keypoints.append(points)
    keypoints = np.stack(keypoints)
    for group in target_groups(spec):
        codec = group.codec
        label = (f"kernel {codec.kernel_size}" if hasattr(codec, "kernel_size")
                 else f"sigma {codec.sigma:g}")
        visible = (keypoints[..., 2] >= 1) & (keypoints[..., 2] >= group.target_min_visibility)
        start = time.process_time()
        for first in range(0, len(keypoints), batch_size):
            chunk = slice(first, first + batch_size)
            codec.encode(keypoints[chunk, :, :2], visible[chunk])
        clock[f"targets[{label}, v>={group.target_min_visibility}] x{len(group.names)}"] = (
            time.process_time() - start)
    result = {name: round(1e3 * seconds / len(keypoints), 3) for name, seconds in clock.items()}
    result["sum"] = round(sum(result.values()), 3)
    result["crops"] = len(keypoints)
    return result


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


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--configs", default="cpn,mspn2,hourglass,cpm",
                        help="comma-separated subset of: cpn, mspn2, hourglass, cpm")
    parser.add_argument("--deterministic", action="store_true",
                        help="keep element order (as keras_pose.training does)")
    parser.add_argument("--cv2-threads", type=int, default=None,
                        help="cv2.setNumThreads before timing (default: leave OpenCV's)")
    parser.add_argument("--profile", action="store_true",
                        help="also time each step of a sample in one thread")
    parser.add_argument("--workers", default="0",
                        help="comma-separated worker counts to time; 0 = samples made in the "
                             "training process through tf.numpy_function (the design before "
                             "worker processes); auto = one per usable CPU")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--write-specs", metavar="PATH",
                        help="write the benchmarked specs as JSON (PoseSpec.to_dict) for "
                             "data_scaling_numpy.py, then exit")
    args = parser.parse_args()
    if args.write_specs:
        write_specs(args.write_specs)
        return
    if args.cv2_threads is not None:
        cv2.setNumThreads(args.cv2_threads)
    all_specs = specs()
    chosen = args.configs.split(",")
    unknown = set(chosen) - set(all_specs)
    if unknown:
        parser.error(f"unknown --configs {sorted(unknown)}; choose from {sorted(all_specs)}")

    with tempfile.TemporaryDirectory() as root:
        ann_file, image_dir = write_dataset(root, args.images, args.people)
        sizes = [os.path.getsize(os.path.join(image_dir, f)) for f in os.listdir(image_dir)]
        results = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "allocator": allocator(),
            "load_average_1_5_15_min_at_start": load_average(),
            "cv2_threads": cv2.getNumThreads(),
            "deterministic": args.deterministic,
            "mean_jpeg_kB": round(float(np.mean(sizes)) / 1000, 1),
            "records": args.images * args.people,
            "cv2_imdecode_images_per_s_1_thread": summary(time_decode(image_dir, args.runs)),
        }
        results["usable_cpus"] = len(os.sched_getaffinity(0))
        for name in chosen:
            results[name] = {}
            for workers in args.workers.split(","):
                results[name][f"workers={workers}"] = time_pipeline(
                    all_specs[name], ann_file, image_dir, args.batch_size, args.warmup,
                    args.batches, args.runs, deterministic=True if args.deterministic else None,
                    workers=None if workers == "auto" else int(workers))
                results[name][f"workers={workers}"]["load_average_after"] = load_average()
        if args.profile:
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            for name in chosen:
                results[name]["cpu_ms_per_crop_1_thread"] = profile_steps(
                    all_specs[name], ann_file, image_dir, 96, args.batch_size)
            cv2.setNumThreads(threads)
        results["load_average_1_5_15_min_at_end"] = load_average()
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def write_specs(path: str) -> None:
    """The benchmarked specs as ``{name: PoseSpec.to_dict()}`` JSON."""
    with open(path, "w") as f:
        json.dump({name: spec.to_dict() for name, spec in specs().items()}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
