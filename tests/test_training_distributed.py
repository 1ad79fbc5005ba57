"""Distributed training on CPU: MirroredStrategy over 2 logical CPU devices, and
MultiWorkerMirroredStrategy with 2 local worker processes. Each run must really train (the
loss on a fixed batch falls) and end with identical weights on every replica and worker."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

TIMEOUT = 420

# Runs in a fresh process (logical devices and collectives must be set up before TensorFlow
# starts). argv: the TrainConfig fields as json, the result file.
WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    from keras_pose.training.config import TrainConfig
    from keras_pose.training.trainer import execute, prepare

    config, result_file = json.loads(sys.argv[1]), sys.argv[2]
    run = prepare(TrainConfig(**config).resolved())
    images, targets, _ = next(iter(run.inputs.dataset(0)))

    def heatmap_error():
        twin = type(run.model).from_config(run.model.get_config())
        twin.set_weights(run.model.get_weights())
        predicted = twin.predict_on_batch(images.numpy())["heatmaps"]
        return float(np.mean((predicted - targets["heatmaps"].numpy()) ** 2))

    before = heatmap_error()
    summary = execute(run)
    replica_gap = 0.0
    for variable in run.model.variables:
        values = [np.asarray(v) for v in getattr(variable.value, "values", [variable.value])]
        replica_gap = max([replica_gap] + [float(np.abs(v - values[0]).max()) for v in values])
    weights = np.concatenate([np.ravel(w) for w in run.model.get_weights()])
    np.save(result_file + ".npy", weights)
    json.dump({"before": before, "after": heatmap_error(), "replica_gap": replica_gap,
               "replicas": run.strategy.num_replicas_in_sync,
               "local_replicas": len(run.strategy.extended.worker_devices),
               "global_step": run.state.global_step, "summary": "metrics" in summary},
              open(result_file, "w"))
""")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from keras_pose.data.synthetic import make_coco_layout

    return make_coco_layout(tmp_path_factory.mktemp("coco"), 12, 2)["root"]


def config(data_dir, out, **overrides):
    return {
        "model": "tiny", "input_size": [32, 24], "model_kwargs": {"width": 8},
        "data_dir": str(data_dir), "out_dir": str(out), "augment": False,
        "epochs": 2, "steps_per_epoch": 5, "batch_size": 8, "learning_rate": 1e-2,
        "schedule": "constant", "backup_every": 3, "eval_every": 0, "export": False,
        "draw": False, "tensorboard": False, "verbose": 0, **overrides,
    }


def start(script, settings, result, env=None):
    return subprocess.Popen(
        [sys.executable, str(script), json.dumps(settings), str(result)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )


def finish(processes):
    """Wait for all processes (bounded); kill every one of them on failure or timeout."""
    try:
        logs = [p.communicate(timeout=TIMEOUT)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log[-4000:]
    return logs


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def check_trained(result):
    assert result["global_step"] == 10
    assert result["after"] < 0.8 * result["before"], result
    assert result["replica_gap"] == 0.0, result


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus(tmp_path, data_dir):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    result = tmp_path / "result.json"
    finish([start(script, config(data_dir, tmp_path / "out", cpu_replicas=2), result)])
    outcome = json.loads(result.read_text())
    assert outcome["replicas"] == 2 and outcome["local_replicas"] == 2
    assert outcome["summary"]
    check_trained(outcome)
    assert (tmp_path / "out" / "model.keras").exists()


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_with_two_local_workers(tmp_path, data_dir):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    out = tmp_path / "out"
    processes, results = [], []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        results.append(tmp_path / f"result{index}.json")
        processes.append(start(script, config(data_dir, out), results[-1],
                               env={"TF_CONFIG": json.dumps(tf_config)}))
    finish(processes)
    outcomes = [json.loads(r.read_text()) for r in results]
    for outcome in outcomes:
        assert outcome["replicas"] == 2 and outcome["local_replicas"] == 1
        check_trained(outcome)
    assert [o["summary"] for o in outcomes] == [True, False]  # only the chief finishes up
    weights = [np.load(f"{r}.npy") for r in results]
    np.testing.assert_array_equal(weights[0], weights[1])
    assert sorted(os.listdir(out / "backup")) == ["state.json", "step-000000010.weights.h5"]
