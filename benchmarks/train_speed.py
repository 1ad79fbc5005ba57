"""keras-pose against MMPose, side by side on this CPU: seconds per training step.

Two worker processes stay alive, one per library, each with the same model, batch and thread
count, under the same allocator (whatever ``LD_PRELOAD`` the parent got); the parent asks them
for one step at a time, alternately, so both see the same machine. keras-pose's step is
``train_on_batch`` with the family's own losses (OHKM and L2) and optimizer; MMPose's is the
model its wheel's config builds (run by the GPU harness' ``mmpose_models.py``, found through
``--refbench``), MSE over every output, backward and Adam, the harness' own step. Precision
``bf16`` is Keras' ``mixed_bfloat16`` against ``torch.autocast("cpu", torch.bfloat16)``.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \\
    MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 TF_CPP_MIN_LOG_LEVEL=2 \\
        python benchmarks/train_speed.py --precision fp32 bf16 --runs 5 \\
        --torch-python MMPOSE_VENV/bin/python --refbench ../shared/bench/gpu

``--keras-tree DIR`` times another checkout's keras_pose (e.g. the code before a change) as a
third worker, in the same rotation; ``--keras-env NAME=VALUE[,NAME=VALUE]`` this checkout under
other environment settings (e.g. ``TF_NUM_INTEROP_THREADS=1``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

MMPOSE_NAMES = {"rsn50": "RSN50_256x192", "rsn18": "RSN18_256x192",
                "2xmspn50": "MSPN50_2stage_256x192", "cpn50": "CPN50_256x192"}
KERAS_EXTRA = {"rsn50": {"use_prm": False}}


def keras_worker(model_name: str, batch: int, precision: str):
    import keras
    import numpy as np

    from keras_pose.models import build_model

    if precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = build_model(model_name, input_shape=(256, 192, 3), **KERAS_EXTRA.get(model_name, {}))
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, 256, 192, 3)).astype(np.float32)
    targets, weights = {}, {}
    for output in model.spec.outputs:
        shape = (batch, *model.spec.heatmap_size(output.name), model.spec.num_keypoints)
        targets[output.name] = (
            rng.uniform(0, 1, shape) ** 8 * output.codec.peak
        ).astype(np.float32)
        weights[output.name] = np.ones((batch, model.spec.num_keypoints), np.float32)
    return lambda: model.train_on_batch(images, targets, weights)


def torch_worker(model_name: str, batch: int, precision: str, refbench: str):
    import torch

    sys.path.insert(0, refbench)
    from mmpose_models import build  # the harness' builder of MMPose's own configs

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count())))
    net, (height, width), _ = build(MMPOSE_NAMES[model_name])
    net = net.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4)
    x = torch.rand(batch, 3, height, width).to(memory_format=torch.channels_last) * 255

    def outputs():
        out = net(x)
        while (
            isinstance(out, (list, tuple)) and len(out) == 1 and isinstance(out[0], (list, tuple))
        ):
            out = out[0]
        flat = []
        stack = [out]
        while stack:
            item = stack.pop()
            if isinstance(item, (list, tuple)):
                stack.extend(item)
            else:
                flat.append(item)
        return flat

    targets = [torch.zeros_like(o) for o in outputs()]

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = sum(((o.float() - t) ** 2).mean() for o, t in zip(outputs(), targets))
        loss.backward()
        optimizer.step()

    return step


def serve(step) -> None:
    """Answer each 'step' line on stdin with the step's wall and CPU seconds."""
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu]), flush=True)


class Worker:
    def __init__(self, label: str, command: list[str], env: dict[str, str]) -> None:
        self.label = label
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"{label} worker did not start (exit {self.process.poll()})")

    def step(self) -> tuple[float, float]:
        self.process.stdin.write("step\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label} worker died (exit {self.process.poll()})")
        return tuple(json.loads(line))

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def start_workers(args, precision: str) -> list[Worker]:
    here = os.path.abspath(__file__)
    env = dict(os.environ, BENCH_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    common = ["--model", args.model, "--batch", str(args.batch), "--precision", precision]
    trees = [("keras-pose", os.path.dirname(os.path.dirname(here)))]
    trees += [(f"keras-pose@{os.path.basename(os.path.normpath(t))}", t) for t in args.keras_tree]
    variants = [(label, tree, {}) for label, tree in trees]
    variants += [(f"keras-pose[{setting}]", trees[0][1], dict(pair.split("=", 1) for pair in
                                                             setting.split(",")))
                 for setting in args.keras_env]
    workers = []
    for label, tree, extra in variants:
        tree_env = dict(env, PYTHONPATH=os.path.abspath(tree), **extra)
        command = [sys.executable, here, "--worker", "keras", *common]
        workers.append(Worker(label, command, tree_env))
    if args.torch_python:
        workers.append(Worker("mmpose", [args.torch_python, here, "--worker", "torch",
                                         "--refbench", args.refbench, *common], env))
    return workers


def compare(args, precision: str) -> list[dict]:
    workers = start_workers(args, precision)
    try:
        for _ in range(args.warmup):
            for worker in workers:
                worker.step()
        samples = {w.label: [] for w in workers}
        for _ in range(args.runs):
            for worker in workers:  # alternate, so every library sees the same load
                samples[worker.label].append(worker.step())
    finally:
        for worker in workers:
            worker.close()
    return [row(label, precision, args, values) for label, values in samples.items()]


def row(label: str, precision: str, args, values) -> dict:
    walls = [w for w, _ in values]
    return {"impl": label, "model": args.model, "batch": args.batch, "precision": precision,
            "step_s_median": round(statistics.median(walls), 3), "step_s_min": round(min(walls), 3),
            "step_s_max": round(max(walls), 3),
            "cpu_s_median": round(statistics.median(c for _, c in values), 3),
            "load_average": [round(v, 2) for v in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="rsn50", choices=sorted(MMPOSE_NAMES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--torch-python", help="python of the MMPose environment")
    parser.add_argument("--refbench", default=os.path.join("..", "shared", "bench", "gpu"))
    parser.add_argument("--keras-tree", action="append", default=[],
                        help="another keras-pose checkout to time in the same rotation")
    parser.add_argument("--keras-env", action="append", default=[], metavar="NAME=VALUE,...",
                        help="also time this checkout with these environment settings")
    parser.add_argument("--out", help="append one JSON line per row")
    parser.add_argument("--worker", choices=["keras", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "keras":
        return serve(keras_worker(args.model, args.batch, args.precision[0]))
    if args.worker == "torch":
        return serve(torch_worker(args.model, args.batch, args.precision[0],
                                  os.path.abspath(args.refbench)))
    print(json.dumps({"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                      "allocator": "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "")
                      else "glibc malloc"}), flush=True)
    for precision in args.precision:
        for result in compare(args, precision):
            print(json.dumps(result), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
