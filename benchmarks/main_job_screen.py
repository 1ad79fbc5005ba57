"""Screen one lever of the main job: the main job's model and data for a fixed number of steps
(default 4 x 150 of 16, bf16), one COCO AP evaluation at the end; appends a line to
``results.jsonl`` in the working folder. See benchmarks/main_job.md.

    python benchmarks/main_job_screen.py NAME '{"learning_rate": 2e-2, "augment": "short"}'
"""
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from keras_pose.training import TrainConfig, train  # noqa: E402

name = sys.argv[1]
over = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
cfg = dict(out_dir=f"screen_runs/{name}", overwrite=True, synthetic_dir="screen_runs/synthetic",
           epochs=4, steps_per_epoch=150, eval_every=0, export=False, draw=False,
           tensorboard=False, verbose=2, precision="bf16", time_budget=None)
cfg.update(over)
t = time.time()
summary = train(TrainConfig(**cfg))
m = summary["metrics"]
line = dict(name=name, over=over, AP=round(m["AP"], 4), AP50=round(m["AP50"], 4),
            AR=round(m["AR"], 4), loss=round(summary["history"][-1]["loss"], 2),
            seconds=round(time.time() - t))
print("RESULT", json.dumps(line))
with open("results.jsonl", "a") as f:
    f.write(json.dumps(line) + "\n")
