"""Training-step speed of keras-pose models under ``KERAS_BACKEND=jax`` (GPU or CPU), and where
the step's device time goes.

For each ``model:precision`` of ``--plan`` it builds the registry model, compiles it with the
family's losses and optimizer (``mixed_bfloat16`` for ``bf16``), puts one fixed random batch on
the device, and times ``train_on_batch`` (first call = trace + XLA compile, reported apart; then
the mean of ``--steps`` steps). With ``--profile`` it traces ``--profile-steps`` more steps with
``jax.profiler`` and sums the device's kernel time by kind (convolutions, fusions, reductions,
copies/transposes, sorts...) and by the 15 largest XLA ops. Needs no TensorFlow.

    KERAS_BACKEND=jax python benchmarks/train_speed_jax.py --plan rsn50:bf16,cpn50:bf16 \\
        --batch 64 --steps 20 --profile --out keras_jax.jsonl
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

BUILDERS = {
    "rsn18": ("rsn18", {}),
    "rsn50": ("rsn50", {"use_prm": False}),
    "cpn50": ("cpn50", {}),
    "2xmspn50": ("2xmspn50", {}),
    "hourglass": ("hourglass", {}),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", default="rsn50:bf16,cpn50:bf16,2xmspn50:bf16")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--input", default="256,192", help="height,width")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-steps", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=1e9,
                        help="start no new model after this many seconds")
    parser.add_argument("--out", default=None, help="append one JSON line per model")
    return parser.parse_args()


def kernel_kind(name: str) -> str:
    """A coarse kind for an XLA op / GPU kernel name."""
    lowered = name.lower()
    for kind, words in (
        ("convolution", ("conv", "cudnn", "xmma", "implicit_gemm", "sm90_xmma", "wgrad", "dgrad")),
        ("matmul", ("gemm", "dot", "cublas", "matmul")),
        ("reduction", ("reduce", "reduction")),
        ("sort/top-k", ("sort", "topk", "top_k")),
        ("copy/transpose", ("copy", "transpose", "memcpy", "memset")),
        ("fusion (elementwise)", ("fusion", "loop_", "input_")),
    ):
        if any(word in lowered for word in words):
            return kind
    return "other"


def device_op_times(logdir: str) -> tuple[dict[str, float], dict[str, float]]:
    """Microseconds per op name and per kind, from the device planes of a jax.profiler trace."""
    from jax.profiler import ProfileData

    (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    data = ProfileData.from_file(path)
    per_op: dict[str, float] = collections.defaultdict(float)
    device_planes = [p for p in data.planes if p.name.startswith("/device:")]
    planes = device_planes or [p for p in data.planes if p.name.startswith("/host:CPU")]
    for plane in planes:
        lines = [line for line in plane.lines if line.name == "XLA Ops"]
        if not lines:  # kernels by stream (GPU) or XLA thunks (CPU)
            lines = [line for line in plane.lines
                     if "stream" in line.name.lower() or "xla" in line.name.lower()]
        for line in lines:
            for event in line.events:
                per_op[re.sub(r"[._]\d+$", "", event.name)] += event.duration_ns / 1e3
    per_kind: dict[str, float] = collections.defaultdict(float)
    for name, micros in per_op.items():
        per_kind[kernel_kind(name)] += micros
    return dict(per_op), dict(per_kind)


def fixed_batch(model, batch: int):
    import jax
    import numpy as np

    rng = np.random.default_rng(0)
    height, width = model.spec.input_size
    images = jax.device_put(rng.uniform(0, 255, (batch, height, width, 3)).astype(np.float32))
    targets, weights = {}, {}
    for output in model.spec.outputs:
        shape = (batch, *model.spec.heatmap_size(output.name), model.spec.num_keypoints)
        targets[output.name] = jax.device_put(
            (rng.uniform(0, 1, shape) ** 8 * output.codec.peak).astype(np.float32))
        weights[output.name] = jax.device_put(np.ones(shape[:1] + shape[-1:], np.float32))
    return images, targets, weights


def block(tree) -> None:
    import jax

    jax.tree_util.tree_map(
        lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, tree)


def measure(name: str, precision: str, args) -> dict:
    import jax
    import keras

    from keras_pose.models import build_model

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    registry_name, extra = BUILDERS[name]
    height, width = (int(v) for v in args.input.split(","))
    model = build_model(registry_name, input_shape=(height, width, 3), **extra)
    batch = fixed_batch(model, args.batch)
    start = time.perf_counter()
    block(model.train_on_batch(*batch, return_dict=True))
    compile_s = time.perf_counter() - start
    for _ in range(2):
        logs = model.train_on_batch(*batch, return_dict=True)
    block(logs)
    start = time.perf_counter()
    for _ in range(args.steps):
        logs = model.train_on_batch(*batch, return_dict=True)
    block(logs)
    step_s = (time.perf_counter() - start) / args.steps
    row = {"impl": "keras-pose-jax", "model": name, "precision": precision, "batch": args.batch,
           "input": [height, width], "train_img_s": round(args.batch / step_s, 1),
           "step_ms": round(step_s * 1e3, 2), "compile_s": round(compile_s, 1),
           "loss": float(logs["loss"]), "devices": [str(d) for d in jax.devices()]}
    if args.profile:
        row.update(profile(model, batch, args.profile_steps))
    return row


def profile(model, batch, steps: int) -> dict:
    import jax

    logdir = tempfile.mkdtemp(prefix="kp_jax_prof_")
    with jax.profiler.trace(logdir):
        for _ in range(steps):
            logs = model.train_on_batch(*batch, return_dict=True)
        block(logs)
    per_op, per_kind = device_op_times(logdir)
    total = sum(per_kind.values()) or 1.0
    top = sorted(per_op.items(), key=lambda kv: -kv[1])[:15]
    return {
        "device_ms_per_step": round(total / 1e3 / steps, 2),
        "kinds_pct": {
            k: round(100 * v / total, 1)
            for k, v in sorted(per_kind.items(), key=lambda kv: -kv[1])
        },
        "top_ops_ms": {k: round(v / 1e3 / steps, 2) for k, v in top},
    }


def main() -> None:
    args = parse_args()
    start = time.time()
    for item in args.plan.split(","):
        name, precision = item.split(":")
        if time.time() - start > args.budget_s:
            row = {"model": name, "precision": precision, "skipped": "budget"}
        else:
            try:
                row = measure(name, precision, args)
            except Exception as error:  # one model's failure must not lose the others' rows
                row = {"model": name, "precision": precision,
                       "error": f"{type(error).__name__}: {error}"[:500]}
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
