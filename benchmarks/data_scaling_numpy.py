"""Crops per second of the per-sample numpy work against the number of worker processes,
without TensorFlow (numpy and OpenCV only).

Each worker runs what a :mod:`keras_pose.data.workers` process runs for ``build_dataset``:
``SampleMaker.chunk`` on chunks of one batch of records (``read_image``, the family's
augmentation draws, ``apply_crop``, colour jitter, then the batch's targets and weights), with
OpenCV on one thread. ``--mode threads`` runs the same work on N threads of one process
instead (what a parallel ``tf.data`` map over ``tf.numpy_function`` amounts to).

The specs are read from ``benchmarks/specs.json`` (``PoseSpec.to_dict`` of the models' specs,
written by ``python benchmarks/data_pipeline.py --write-specs benchmarks/specs.json``); the
images are the generated 640x480 JPEGs of ``data_pipeline.py``. ``keras_pose/__init__.py``
(which imports Keras) is bypassed: the script registers a bare ``keras_pose`` package whose
path is this checkout's and imports ``keras_pose.data.*`` from it, so it runs where
TensorFlow is not installed. Run::

    python benchmarks/data_scaling_numpy.py --workers 1,2,4,8,16 --family cpn --seconds 8 \\
        --json OUT.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import threading
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_keras_pose_without_keras() -> None:
    """A bare ``keras_pose`` package, so ``keras_pose.data.*`` imports without Keras/TF."""
    if "keras_pose" not in sys.modules:
        package = types.ModuleType("keras_pose")
        package.__path__ = [os.path.join(ROOT, "keras_pose")]
        sys.modules["keras_pose"] = package
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


import_keras_pose_without_keras()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from data_pipeline import write_dataset  # noqa: E402

from keras_pose.data.coco import load_coco_records, read_dataset_info  # noqa: E402
from keras_pose.data.samples import SampleMaker  # noqa: E402
from keras_pose.data.transforms import resolve_augment  # noqa: E402
from keras_pose.spec import PoseSpec  # noqa: E402


def load_spec(family: str, specs_file: str) -> PoseSpec:
    with open(specs_file) as f:
        specs = json.load(f)
    if family not in specs:
        raise SystemExit(f"--family {family!r} not in {specs_file}; choose from {sorted(specs)}")
    return PoseSpec.from_dict(specs[family])


def make_maker(spec: PoseSpec, ann_file: str, image_dir: str) -> SampleMaker:
    info = read_dataset_info(ann_file)
    records = load_coco_records(ann_file, image_dir, info)
    return SampleMaker(spec, records, info, resolve_augment(spec, None), return_meta=False)


def work(maker: SampleMaker, worker: int, batch_size: int, start: float, seconds: float) -> int:
    """Chunks of one batch of records from ``start`` for ``seconds``; returns the crops of the
    chunks finished within that window (the time before ``start`` is warm-up)."""
    cv2.setNumThreads(1)
    per_chunk = max(1, batch_size // maker.augment.copies)
    rng = np.random.default_rng(worker)
    crops, end = 0, start + seconds
    while True:
        indices = rng.integers(0, len(maker.records), per_chunk)
        arrays = maker.chunk(indices, rng.integers(0, 2**62, per_chunk))
        now = time.time()
        if now > end:
            return crops
        if now >= start:
            crops += len(arrays[0])


def _process_main(args) -> None:
    maker, worker, batch_size, start, seconds, queue = args
    queue.put(work(maker, worker, batch_size, start, seconds))


def run_processes(maker, workers: int, batch_size: int, seconds: float, warmup: float) -> int:
    context = multiprocessing.get_context("spawn")  # no fork of OpenCV's threads
    queue = context.Queue()
    start = time.time() + warmup
    processes = [context.Process(target=_process_main,
                                 args=((maker, i, batch_size, start, seconds, queue),))
                 for i in range(workers)]
    for process in processes:
        process.start()
    total = sum(queue.get(timeout=seconds + warmup + 120) for _ in processes)
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"worker {process.pid} exited with {process.exitcode}")
    return total


def run_threads(maker, workers: int, batch_size: int, seconds: float, warmup: float) -> int:
    start = time.time() + warmup
    counts = [0] * workers

    def target(i):
        counts[i] = work(maker, i, batch_size, start, seconds)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


def machine() -> dict:
    model = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "")
    return {"cpu": model or platform.processor(), "cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "numpy": np.__version__, "opencv": cv2.__version__,
            "tensorflow_imported": "tensorflow" in sys.modules}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--family", default="cpn", help="a key of --specs (cpn, mspn2, ...)")
    parser.add_argument("--specs", default=os.path.join(ROOT, "benchmarks", "specs.json"))
    parser.add_argument("--mode", default="processes", help="processes, threads or both (a,b)")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed window per count")
    parser.add_argument("--warmup", type=float, default=3.0, help="untimed seconds first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    spec = load_spec(args.family, args.specs)
    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": machine(), "family": args.family, "batch_size": args.batch_size,
               "seconds": args.seconds, "load_average_at_start": os.getloadavg(), "runs": []}
    with tempfile.TemporaryDirectory() as root:
        maker = make_maker(spec, *write_dataset(root, args.images, args.people))
        for mode in args.mode.split(","):
            runner = {"processes": run_processes, "threads": run_threads}[mode]
            for workers in map(int, args.workers.split(",")):
                crops = runner(maker, workers, args.batch_size, args.seconds, args.warmup)
                row = {"mode": mode, "workers": workers,
                       "crops_per_s": round(crops / args.seconds, 1),
                       "load_average": os.getloadavg()[0]}
                results["runs"].append(row)
                print(json.dumps(row), flush=True)
    results["load_average_at_end"] = os.getloadavg()
    results["tensorflow_imported"] = "tensorflow" in sys.modules
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
