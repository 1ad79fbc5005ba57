"""tf.data service on 127.0.0.1: a dispatcher, 2 worker processes, a tiny model training on
their batches, and one worker killed mid-run."""

import glob
import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
from test_pipeline import INPUT, TinyPose, write_dot_people
from test_pipeline_workers import children_of

from keras_pose.data.coco import load_coco_records, read_dataset_info
from keras_pose.data.service import PROCESSING_MODE, distribute, start_dispatcher
from keras_pose.spec import PoseSpec, megvii_outputs
from keras_pose.training.data import TrainingInput

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_worker_process(dispatcher_port):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_pose.data.service", "worker",
         "--dispatcher", f"127.0.0.1:{dispatcher_port}", "--worker-address", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    line = process.stdout.readline()
    assert "worker serving at" in line, line
    return process


class KillAt(keras.callbacks.Callback):
    def __init__(self, step, process):
        super().__init__()
        self.step, self.process, self.losses = step, process, []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))
        if batch == self.step:
            self.process.send_signal(signal.SIGKILL)


@pytest.mark.slow
def test_training_on_service_workers_survives_a_killed_worker(tmp_path):
    """Ordering: PROCESSING_MODE is "distributed_epoch": the dispatcher gives each pass over
    the records (one split of the stream) to one worker, so a pass's batches come from one
    worker in its order, but passes made by the two workers interleave in no fixed order
    (unlike the local pipeline, whose step order is a function of the seed). The killed
    worker's unfinished pass is lost; the other worker carries on."""
    assert PROCESSING_MODE == "distributed_epoch"
    ann_file, image_dir = write_dot_people(tmp_path, num_images=8)
    info = read_dataset_info(ann_file)
    records = load_coco_records(ann_file, image_dir, info)
    outputs = megvii_outputs(["coarse", "heatmaps"], [7, 5], ["mse", "ohkm"], [0.5, 1.0])
    spec = PoseSpec("mspn", INPUT, 3, "BGR", outputs)
    dispatcher = start_dispatcher(0, worker_timeout_ms=1000)
    port = int(dispatcher.target.rsplit(":", 1)[1])
    workers = [start_worker_process(port) for _ in range(2)]
    try:
        inputs = TrainingInput(spec, records, info, None, global_batch=4, seed=0)
        dataset = distribute(inputs.dataset(maker_dir=str(tmp_path / "makers")),
                             f"127.0.0.1:{port}", job_name="train")
        model = TinyPose(spec)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        killer = KillAt(30, workers[0])
        model.fit(dataset, steps_per_epoch=60, epochs=2, verbose=0, callbacks=[killer])
        assert workers[0].poll() == -signal.SIGKILL and workers[1].poll() is None
        assert children_of(workers[1].pid), "the surviving worker made samples in its pool"
        assert len(killer.losses) == 120  # every step got a batch after the kill too
        first, last = np.mean(killer.losses[:10]), np.mean(killer.losses[-10:])
        assert last < first / 3, (first, last)
        run_recipe_on_the_service(tmp_path / "run", port)
    finally:
        for process in workers:
            process.kill()
            process.wait()
        dispatcher._stop()


def run_recipe_on_the_service(out, port):
    """recipes/train_coco.py --data-service: the recipe's batches come from the service."""
    command = [
        sys.executable, os.path.join(ROOT, "recipes", "train_coco.py"), "--model", "tiny",
        "--input-size", "64", "48", "--out", str(out), "--synthetic-train", "6",
        "--synthetic-val", "2", "--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "4",
        "--no-export", "--no-draw", "--no-tensorboard", "--verbose", "0",
        "--data-service", f"127.0.0.1:{port}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["global_step"] == 3
    assert glob.glob(str(out / "data_service" / "samples-*.pkl"))
