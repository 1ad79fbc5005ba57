"""Batch-1 CPU latency and size of every export path, per model family.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \\
    MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \\
    python benchmarks/export_latency.py [--models cpn50 2xmspn50 rsn18 cpm hourglass]
        [--runs 9] [--warmup 3] [--threads 2] [--input-size H W] [--markdown FILE] [--jsonl FILE]

For each model (the family's default input size, random weights: latency does not depend on
them) a first process writes every export with ``keras_pose.export`` (each checked against Keras,
with the system allocator), then a second process (with the allocator of the command, jemalloc
above) times one batch-1 call of: Keras ``model.predict``, Keras ``predict_on_batch``, the
SavedModel's ``serving_default`` (which also decodes keypoints), LiteRT fp32/fp16/int8
(``ai_edge_litert``, XNNPACK, ``--threads`` threads) and ONNX Runtime (CPU, ``--threads``
intra-op threads). Rounds alternate between the paths (one call each per round) so machine noise
hits all of them alike; the table gives the median of ``--runs`` rounds after ``--warmup``
rounds, with min and max. One process per step keeps memory bounded (a jemalloc that keeps freed
pages ran out of memory converting every model in one process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PATHS = ("keras predict", "keras predict_on_batch", "SavedModel", "LiteRT fp32", "LiteRT fp16",
         "LiteRT int8", "ONNX Runtime")  # fmt: skip
LITERT = {"LiteRT fp32": None, "LiteRT fp16": "float16", "LiteRT int8": "int8"}
RESULT_PREFIX = "RESULT "


def allocator() -> str:
    preload = os.environ.get("LD_PRELOAD", "")
    if "jemalloc" in preload:
        return f"jemalloc ({preload}, MALLOC_CONF={os.environ.get('MALLOC_CONF', '')})"
    return "glibc malloc" + (f" (LD_PRELOAD={preload})" if preload else "")


def build(name: str, input_size: Sequence[int] | None):
    import keras

    from keras_pose.models import build_model

    keras.utils.set_random_seed(0)
    kwargs = {"input_shape": (*input_size, 3)} if input_size else {}
    return build_model(name, compile=False, **kwargs)


def write_exports(model, folder: str) -> tuple[dict[str, str], dict[str, str]]:
    """Write every export of ``model`` into ``folder``: ``{path name: file}`` and failures."""
    import numpy as np

    from keras_pose import export

    files, failures = {}, {}

    def attempt(path_name: str, write: Callable[[], str]) -> None:
        try:
            files[path_name] = write()
        except Exception as error:  # noqa: BLE001 - a failed export is reported, not fatal
            failures[path_name] = f"{type(error).__name__}: {error}"

    shape = (16, *model.spec.input_size, 3)
    calibration = np.random.default_rng(1).uniform(0, 255, shape).astype("float32")
    saved_model_dir = os.path.join(folder, "saved_model")
    attempt("SavedModel", lambda: export.saved_model(model, saved_model_dir, flip_test=False))
    with export.LiteRTConverter(model) as converter:
        for path_name, quantize in LITERT.items():
            # int8 of random weights calibrated on random crops is only timed here; its accuracy
            # is tested on a trained model (tests/test_export_litert.py).
            attempt(path_name, lambda q=quantize: converter.write(
                os.path.join(folder, f"{q or 'float32'}.tflite"), q,
                calibration if q == "int8" else None,
                require_gpu_compatible=False, check=q != "int8",
            ))  # fmt: skip
    onnx_file = os.path.join(folder, "model.onnx")
    attempt("ONNX Runtime", lambda: export.onnx(model, onnx_file, outputs="final"))
    return files, failures


def load_calls(model, files: dict[str, str], threads: int) -> dict[str, Callable]:
    """Batch-1 callables of Keras and of every export that was written."""
    import tensorflow as tf

    from keras_pose import export

    calls = {
        "keras predict": lambda x: model.predict(x, verbose=0),
        "keras predict_on_batch": model.predict_on_batch,
    }
    if "SavedModel" in files:
        serving = tf.saved_model.load(files["SavedModel"]).signatures["serving_default"]
        calls["SavedModel"] = lambda x: serving(image=tf.constant(x))
    for path_name in LITERT:
        if path_name in files:
            calls[path_name] = export.LiteRTRunner(files[path_name], num_threads=threads)
    if "ONNX Runtime" in files:
        calls["ONNX Runtime"] = export.OnnxRunner(files["ONNX Runtime"], num_threads=threads)
    return calls


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


def export_step(name: str, folder: str, args: argparse.Namespace) -> dict:
    from keras_pose.export._files import directory_size
    from keras_pose.utils.flops import flops

    model = build(name, args.input_size)
    start = time.perf_counter()
    files, failures = write_exports(model, folder)
    return {
        "model": name,
        "input_size": list(model.spec.input_size),
        "params": int(model.count_params()),
        "gflops": flops(model) / 1e9,
        "export_seconds": time.perf_counter() - start,
        "files": files,
        "sizes": {path: directory_size(file) for path, file in files.items()},
        "failures": failures,
    }


def timing_step(name: str, files: dict[str, str], args: argparse.Namespace) -> dict:
    import numpy as np

    model = build(name, args.input_size)
    x = np.random.default_rng(0).uniform(0, 255, (1, *model.spec.input_size, 3)).astype("float32")
    times = time_paths(load_calls(model, files, args.threads), x, args.runs, args.warmup)
    return {
        "allocator": allocator(),
        "latency_ms": {
            path: {"median": 1e3 * statistics.median(t), "min": 1e3 * min(t), "max": 1e3 * max(t)}
            for path, t in times.items()
        },
    }


def run_step(step: str, name: str, folder: str, args: argparse.Namespace, env: dict) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--step", step, "--models", name,
               "--folder", folder, "--runs", str(args.runs), "--warmup", str(args.warmup),
               "--threads", str(args.threads)]  # fmt: skip
    if args.input_size:
        command += ["--input-size", *map(str, args.input_size)]
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"{step} step of {name} failed:\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def benchmark(name: str, args: argparse.Namespace) -> dict:
    """Export in one process (system allocator), time in another (this command's allocator)."""
    system_allocator = {
        k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")
    }
    with tempfile.TemporaryDirectory(prefix=f"latency_{name}_") as folder:
        result = run_step("export", name, folder, args, system_allocator)
        with open(os.path.join(folder, "files.json"), "w") as f:
            json.dump(result["files"], f)
        result.update(run_step("time", name, folder, args, dict(os.environ)))
    del result["files"]
    return result


def markdown(results: Sequence[dict], args: argparse.Namespace) -> str:
    lines = [
        f"Allocator: {results[0]['allocator'] if results else allocator()}; "
        f"threads: {args.threads}; "
        f"{args.runs} rounds after {args.warmup} warm-up rounds; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs.",
        "",
        "| model | input | GFLOPs | path | median ms | min-max ms | GFLOP/s | size MB "
        "| vs predict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        base = r["latency_ms"]["keras predict"]["median"]
        for path in PATHS:
            height, width = r["input_size"][0], r["input_size"][1]
            head = f"| {r['model']} | {height}x{width} | {r['gflops']:.2f} | {path} |"
            if path not in r["latency_ms"]:
                failure = r["failures"].get(path, "?")[:120]
                lines.append(f"{head} export failed: {failure} | | | | |")
                continue
            t = r["latency_ms"][path]
            size = r["sizes"].get(path)
            lines.append(
                f"{head} {t['median']:.1f} | {t['min']:.1f}-{t['max']:.1f} | "
                f"{r['gflops'] / (t['median'] / 1e3):.0f} | "
                f"{'' if size is None else f'{size / 2**20:.1f}'} | {base / t['median']:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["cpn50", "2xmspn50", "rsn18", "cpm", "hourglass"]
    )
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"))
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--jsonl", help="append each model's raw result to this file")
    parser.add_argument("--step", choices=("export", "time"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be at least 5 (medians of >= 5 runs)")
    if args.step == "export":
        result = export_step(args.models[0], args.folder, args)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0
    if args.step == "time":
        with open(os.path.join(args.folder, "files.json")) as f:
            files = json.load(f)
        print(RESULT_PREFIX + json.dumps(timing_step(args.models[0], files, args)), flush=True)
        return 0
    results = []
    for name in args.models:
        results.append(benchmark(name, args))
        print(json.dumps(results[-1]), flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(json.dumps(results[-1]) + "\n")
    table = markdown(results, args)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
