"""Where a training step's time goes, per TensorFlow op type, on this CPU.

Builds one registry model, compiles it with the family's losses and optimizer, runs a few warm-up
steps on fixed random crops and targets, then traces ``--steps`` steps with the TensorFlow
profiler and sums the executor's op events by op type (``Conv2DBackpropFilter``,
``FusedBatchNormGradV3``, ``Mul``...). Prints the top op types with their share of the traced
time and writes the full table as JSON.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \\
    MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 TF_CPP_MIN_LOG_LEVEL=2 \\
        python benchmarks/profile_train_step.py --model rsn50 --batch 8 [--bf16] --out prof.json
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import tempfile
import time

from train_throughput import MODELS, batch_for, compiled_copy


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="rsn50", choices=sorted(MODELS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="crop size (default: the model's benchmark size, e.g. 256 192)")
    parser.add_argument("--bf16", action="store_true", help="Keras mixed_bfloat16 policy")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", default=None, help="JSON file for the full table")
    return parser.parse_args()


def op_totals(logdir: str) -> tuple[dict[str, float], dict[str, int]]:
    """Microseconds and counts per op type from the trace's TF-op events (host threads)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    micros: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.defaultdict(int)
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {k: m.name for k, m in plane.event_metadata.items()}
        for line in plane.lines:
            if "tf_data" in line.name or "python" in line.name.lower():
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if ":" not in name or name.startswith("Process"):  # ops are "node:OpType"
                    continue
                op_type = name.rsplit(":", 1)[1]
                micros[op_type] += event.duration_ps / 1e6
                counts[op_type] += 1
    return dict(micros), dict(counts)


def main() -> None:
    args = parse_args()
    import keras
    import tensorflow as tf

    if args.bf16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    input_size = tuple(args.input_size) if args.input_size else MODELS[args.model]
    model = compiled_copy(args.model, input_size, False, args.batch)
    batch = batch_for(model, args.batch)
    for _ in range(args.warmup):
        model.train_on_batch(*batch)
    logdir = tempfile.mkdtemp(prefix="kp_prof_")
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    for _ in range(args.steps):
        model.train_on_batch(*batch)
    wall = (time.perf_counter() - start) / args.steps
    tf.profiler.experimental.stop()
    micros, counts = op_totals(logdir)
    total = sum(micros.values())
    rows = sorted(micros.items(), key=lambda kv: -kv[1])
    print(f"{args.model} b{args.batch} {'bf16' if args.bf16 else 'fp32'}: {wall:.2f} s/step, "
          f"op time {total / 1e6 / args.steps:.2f} s/step (summed over threads)")
    for name, us in rows[: args.top]:
        print(f"{name:32s} {us / 1e3 / args.steps:9.1f} ms/step {100 * us / total:5.1f}%  "
              f"x{counts[name] // args.steps}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"model": args.model, "batch": args.batch, "bf16": args.bf16,
                       "step_s": wall,
                       "ops_ms_per_step": {k: v / 1e3 / args.steps for k, v in rows},
                       "counts_per_step": {k: counts[k] // args.steps for k, _ in rows}},
                      f, indent=1)


if __name__ == "__main__":
    main()
