"""Batch-1 CPU latency and size of every export path, per model family.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \\
    MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \\
    python benchmarks/export_latency.py [--models cpn50 mspn rsn18 cpm hourglass]
        [--runs 9] [--warmup 3] [--threads 2] [--input-size H W] [--markdown FILE]

For each model (the family's default input size, random weights: latency does not depend on
them) it writes every export with ``keras_pose.export`` (each checked against Keras) and times one
batch-1 call of: Keras ``model.predict``, Keras ``predict_on_batch``, the SavedModel's
``serving_default`` (which also decodes keypoints), LiteRT fp32/fp16/int8 (``ai_edge_litert``,
XNNPACK, ``--threads`` threads) and ONNX Runtime (CPU, ``--threads`` intra-op threads).
Runs alternate between the paths (one call each per round) so machine noise hits all of them
alike; the table gives the median of ``--runs`` rounds after ``--warmup`` rounds, with min and max.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATHS = ("keras predict", "keras predict_on_batch", "SavedModel", "LiteRT fp32", "LiteRT fp16",
         "LiteRT int8", "ONNX Runtime")  # fmt: skip


def _recipe_builders() -> dict[str, Callable]:
    spec = importlib.util.spec_from_file_location("export_recipe", os.path.join(ROOT, "recipes", "export.py"))
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    return recipe._builders()


def allocator() -> str:
    preload = os.environ.get("LD_PRELOAD", "")
    if "jemalloc" in preload:
        return f"jemalloc ({preload}, MALLOC_CONF={os.environ.get('MALLOC_CONF', '')})"
    return "glibc malloc" + (f" (LD_PRELOAD={preload})" if preload else "")


def export_all(model, folder: str, threads: int) -> tuple[dict[str, Callable], dict[str, int]]:
    """Write every export of ``model``; return batch-1 callables and file sizes per path."""
    import numpy as np
    import tensorflow as tf

    from keras_pose import export
    from keras_pose.export._files import directory_size

    spec = model.spec
    calibration = np.random.default_rng(1).uniform(0, 255, (16, *spec.input_size, 3)).astype("float32")
    saved = export.saved_model(model, os.path.join(folder, "saved_model"), flip=False)
    with export.LiteRTConverter(model) as converter:
        files = {
            quantize or "fp32": converter.write(
                os.path.join(folder, f"{quantize or 'fp32'}.tflite"), quantize,
                calibration if quantize == "int8" else None, require_gpu_compatible=False,
            )
            for quantize in (None, "float16", "int8")
        }  # fmt: skip
    files["onnx"] = export.onnx(model, os.path.join(folder, "model.onnx"), outputs="final")
    serving = tf.saved_model.load(saved).signatures["serving_default"]
    runners = {k: export.LiteRTRunner(files[k], num_threads=threads) for k in ("fp32", "float16", "int8")}
    onnx_runner = export.OnnxRunner(files["onnx"], num_threads=threads)
    calls = {
        "keras predict": lambda x: model.predict(x, verbose=0),
        "keras predict_on_batch": model.predict_on_batch,
        "SavedModel": lambda x: serving(image=tf.constant(x)),
        "LiteRT fp32": runners["fp32"],
        "LiteRT fp16": runners["float16"],
        "LiteRT int8": runners["int8"],
        "ONNX Runtime": onnx_runner,
    }
    sizes = {
        "SavedModel": directory_size(saved),
        "LiteRT fp32": directory_size(files["fp32"]),
        "LiteRT fp16": directory_size(files["float16"]),
        "LiteRT int8": directory_size(files["int8"]),
        "ONNX Runtime": directory_size(files["onnx"]),
    }
    return calls, sizes


def time_paths(calls: dict[str, Callable], x, runs: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call, one call per path per round, paths alternating within a round."""
    times = {name: [] for name in calls}
    for round_index in range(warmup + runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call(x)
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[name].append(elapsed)
    return times


def benchmark(name: str, builder: Callable, args: argparse.Namespace) -> dict:
    import keras
    import numpy as np

    from keras_pose.utils.flops import flops

    keras.utils.set_random_seed(0)
    kwargs = {"compile": False}
    if args.input_size:
        kwargs["input_shape"] = (*args.input_size, 3)
    model = builder(**kwargs)
    x = np.random.default_rng(0).uniform(0, 255, (1, *model.spec.input_size, 3)).astype("float32")
    with tempfile.TemporaryDirectory(prefix=f"latency_{name}_") as folder:
        start = time.perf_counter()
        calls, sizes = export_all(model, folder, args.threads)
        export_seconds = time.perf_counter() - start
        times = time_paths(calls, x, args.runs, args.warmup)
    result = {
        "model": name,
        "input_size": list(model.spec.input_size),
        "params": int(model.count_params()),
        "gflops": flops(model) / 1e9,
        "export_seconds": export_seconds,
        "sizes": sizes,
        "latency_ms": {
            path: {
                "median": 1e3 * statistics.median(t),
                "min": 1e3 * min(t),
                "max": 1e3 * max(t),
            }
            for path, t in times.items()
        },
    }
    print(json.dumps(result), flush=True)
    return result


def markdown(results: Sequence[dict], args: argparse.Namespace) -> str:
    lines = [
        f"Allocator: {allocator()}; threads: {args.threads}; {args.runs} rounds after "
        f"{args.warmup} warm-up rounds; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} logical CPUs.",
        "",
        "| model | input | GFLOPs | path | median ms | min-max ms | size MB | vs predict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        base = r["latency_ms"]["keras predict"]["median"]
        for path in PATHS:
            t = r["latency_ms"][path]
            size = r["sizes"].get(path)
            lines.append(
                f"| {r['model']} | {r['input_size'][0]}x{r['input_size'][1]} | {r['gflops']:.2f} | "
                f"{path} | {t['median']:.1f} | {t['min']:.1f}-{t['max']:.1f} | "
                f"{'' if size is None else f'{size / 2**20:.1f}'} | {base / t['median']:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cpn50", "mspn", "rsn18", "cpm", "hourglass"])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"))
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be at least 5 (medians of >= 5 runs)")
    builders = _recipe_builders()
    results = [benchmark(name, builders[name], args) for name in args.models]
    table = markdown(results, args)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
