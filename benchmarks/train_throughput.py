"""Training throughput of each family on this CPU: images per second of a full training step
(forward, the family's losses, backward, the family's optimizer and schedule), with XLA
(``jit_compile=True``) and without, at batch 8.

Inputs are fixed random crops and targets (the input pipeline is measured separately in
``data_pipeline.py``). Per model, two copies are compiled (graph mode and XLA) and their steps
alternate, so both see the same machine load (``--sequential``: one mode after the other, for
models too big for two copies in memory); after ``--warmup`` steps each (the first one traces
or compiles, reported separately), ``--runs`` timed steps each give the median, min and max.
Besides wall-clock time it reports CPU seconds per step (process time of all threads), which a
shared machine disturbs much less.

Run (see train_throughput.md for the figures)::

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \\
    MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 TF_CPP_MIN_LOG_LEVEL=2 \\
        python benchmarks/train_throughput.py --models cpn50 2xmspn50 rsn18 rsn50
    (same prefix) python benchmarks/train_throughput.py --models cpm hourglass --sequential
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

# model name -> input size (height, width): 256x192, Hourglass its square 256x256.
MODELS = {
    "cpn50": (256, 192),
    "2xmspn50": (256, 192),
    "rsn18": (256, 192),
    "rsn50": (256, 192),
    "cpm": (256, 192),
    "hourglass": (256, 256),
}
MODES = {"graph": False, "xla": True}


def batch_for(model, batch_size: int, seed: int = 0):
    """Random 0..255 crops, 0..peak targets and all-one keypoint weights."""
    rng = np.random.default_rng(seed)
    spec = model.spec
    images = rng.uniform(0, 255, (batch_size, *spec.input_size, 3)).astype(np.float32)
    targets, weights = {}, {}
    for output in spec.outputs:
        height, width = spec.heatmap_size(output.name)
        shape = (batch_size, height, width, spec.num_keypoints)
        targets[output.name] = (rng.uniform(0, 1, shape) * output.codec.peak).astype(np.float32)
        weights[output.name] = np.ones((batch_size, spec.num_keypoints), np.float32)
    return images, targets, weights


def compiled_copy(name: str, input_size, jit: bool, batch_size: int):
    from keras_pose.models import build_model
    from keras_pose.training import make_optimizer

    model = build_model(name, input_shape=(*input_size, 3), compile=False)
    model.compile(optimizer=make_optimizer(model, total_steps=10_000, global_batch=batch_size),
                  jit_compile=jit)
    model.optimizer.build(model.trainable_variables)
    return model


def timed_step(model, batch) -> tuple[float, float]:
    images, targets, weights = batch
    wall, cpu = time.perf_counter(), time.process_time()
    model.train_on_batch(images, targets, weights)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(name: str, batch_size: int, warmup: int, runs: int, modes: list[str],
            sequential: bool = False) -> list[dict]:
    """Rows of ``name`` for each mode: alternating steps of one copy per mode, or with
    ``sequential`` one mode after the other with a single copy in memory (CPM
    needs that: two compiled copies took more than the machine's 24 GB)."""
    if sequential:
        return [row for mode in modes
                for row in measure(name, batch_size, warmup, runs, [mode])]
    import keras

    keras.backend.clear_session()
    models = {mode: compiled_copy(name, MODELS[name], MODES[mode], batch_size) for mode in modes}
    first = next(iter(models.values()))
    for model in models.values():
        model.set_weights(first.get_weights())
    batch = batch_for(first, batch_size)
    first_step = {mode: timed_step(models[mode], batch)[0] for mode in modes}
    for _ in range(warmup - 1):
        for mode in modes:
            timed_step(models[mode], batch)
    samples = {mode: [] for mode in modes}
    for _ in range(runs):
        for mode in modes:  # alternate, so both modes see the same load
            samples[mode].append(timed_step(models[mode], batch))
    return [row_of(name, first, mode, batch_size, first_step[mode], samples[mode])
            for mode in modes]


def row_of(name, model, mode, batch_size, first_step, samples) -> dict:
    walls = [w for w, _ in samples]
    cpus = [c for _, c in samples]
    median = statistics.median(walls)
    return {
        "model": name,
        "input": list(model.spec.input_size),
        "params": int(model.count_params()),
        "mode": mode,
        "batch": batch_size,
        "first_step_s": round(first_step, 2),
        "step_s_median": round(median, 3),
        "step_s_min": round(min(walls), 3),
        "step_s_max": round(max(walls), 3),
        "images_per_s": round(batch_size / median, 2),
        "images_per_s_min": round(batch_size / max(walls), 2),
        "images_per_s_max": round(batch_size / min(walls), 2),
        "cpu_s_median": round(statistics.median(cpus), 3),
        "images_per_cpu_s": round(batch_size / statistics.median(cpus), 2),
    }


def environment() -> dict:
    import keras
    import tensorflow as tf

    preload = os.environ.get("LD_PRELOAD", "")
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "allocator": "jemalloc" if "jemalloc" in preload else "glibc malloc",
        "load_average": os.getloadavg(),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sequential", action="store_true",
                        help="one mode after the other, one model copy in memory")
    parser.add_argument("--out", help="append one json line per row to this file")
    args = parser.parse_args(argv)
    print(json.dumps(environment()), flush=True)
    for name in args.models:
        rows = measure(name, args.batch_size, args.warmup, args.runs, args.modes,
                       args.sequential)
        for row in rows:
            row["load_average"] = os.getloadavg()
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
