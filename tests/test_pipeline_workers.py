"""Worker processes (`build_dataset(workers=N)`): same batches as in-process, TF-free workers,
loud failures, no orphans."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from test_coco_reader import standard_people, write_coco_folder
from test_pipeline import collect, cpn_spec, mspn_spec

from keras_pose.data import build_dataset
from keras_pose.data.coco import load_coco_records, read_dataset_info
from keras_pose.data.samples import SampleMaker
from keras_pose.data.transforms import resolve_augment
from keras_pose.data.workers import _BOOTSTRAP, WorkerDiedError, WorkerPool, _stop_all

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco_workers")
    return write_coco_folder(root, standard_people(np.random.default_rng(5), 4), 4)


def assert_same_batches(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        if isinstance(a, dict):
            assert list(a) == list(b)
            for key in a:
                assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
        else:
            assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("spec, batch_size", [(cpn_spec(), 8), (cpn_spec(), 6), (mspn_spec(), 3)],
                         ids=["cpn-4-copies", "cpn-straddling", "mspn"])
def test_workers_make_bit_identical_batches(coco_folder, spec, batch_size):
    """Crops (cv2.warpAffine in both), targets and weights identical to the in-process path,
    with augmentation and a record's copies split across batches."""
    kwargs = dict(batch_size=batch_size, seed=3, deterministic=True, repeat=2)
    in_process = collect(build_dataset(spec, *coco_folder, workers=0, **kwargs))
    in_workers = collect(build_dataset(spec, *coco_folder, workers=2, **kwargs))
    assert in_process[0].shape[0] == 8 * 2 * resolve_augment(spec, None).copies // batch_size \
        * batch_size
    assert_same_batches(in_process, in_workers)


def test_workers_make_identical_evaluation_crops_and_meta(coco_folder):
    kwargs = dict(batch_size=5, training=False, return_meta=True)
    assert_same_batches(collect(build_dataset(mspn_spec(), *coco_folder, workers=0, **kwargs)),
                        collect(build_dataset(mspn_spec(), *coco_folder, workers=2, **kwargs)))


def test_worker_imports_neither_tensorflow_nor_keras():
    check = _BOOTSTRAP.split("from keras_pose.data.workers")[0] + (
        "import keras_pose.data.samples, keras_pose.data.workers\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", check, ROOT, "0", "1"], capture_output=True,
                         text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def make_pool(coco_folder, num_workers=1, augment=None):
    ann_file, image_dir = coco_folder
    info = read_dataset_info(ann_file)
    records = load_coco_records(ann_file, image_dir, info)
    maker = SampleMaker(mspn_spec(), records, info, augment, False)
    return maker, records, WorkerPool(maker.init_args(), num_workers)


def test_pool_answers_like_the_maker_and_stops_its_processes(coco_folder):
    maker, _, pool = make_pool(coco_folder, 2)
    expected = maker.chunk([0, 3], [11, 12])
    for got, want in zip(pool.run([0, 3], [11, 12]), expected):
        assert np.array_equal(got, want)
    processes = [worker.process for worker in pool._workers]
    assert len(processes) == 2
    pool.close()
    assert all(p.poll() is not None for p in processes)


def test_a_killed_worker_fails_loudly_naming_the_files(coco_folder):
    _, records, pool = make_pool(coco_folder, 2)
    pool.start()
    os.kill(pool.pids[0], signal.SIGKILL)
    name = os.path.basename(records[2].image_path)
    with pytest.raises(WorkerDiedError, match=f"died \\(exit code -9\\).*{name}"):
        pool.run([2], [0])
    with pytest.raises(WorkerDiedError, match=name):  # later calls fail too, never hang
        pool.run([0], [0])
    pool.close()


def test_a_killed_worker_stops_training_with_an_error_naming_the_files(coco_folder):
    dataset = build_dataset(mspn_spec(), *coco_folder, batch_size=2, workers=2, repeat=True)
    iterator = iter(dataset)
    next(iterator)
    pids = [pid for pid in children_of(os.getpid()) if alive(pid)]
    assert len(pids) >= 2
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(Exception, match=r"data worker process \d+ died .*\.jpg"):
        for _ in range(50):
            next(iterator)


def children_of(pid):
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(c) for c in f.read().split()]
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("ending", ["exits", "is killed"])
def test_no_orphan_workers_when_the_parent_ends(coco_folder, ending):
    """The workers stop when the training process exits, and when it is SIGKILLed (their task
    pipe reaches end-of-file)."""
    ann_file, image_dir = map(str, coco_folder)
    script = _BOOTSTRAP.split("from keras_pose.data.workers")[0] + textwrap.dedent(f"""
        import time
        from keras_pose.data.coco import load_coco_records, read_dataset_info
        from keras_pose.data.samples import SampleMaker
        from keras_pose.data.workers import WorkerPool
        from keras_pose.spec import PoseSpec, megvii_outputs
        outputs = megvii_outputs(["heatmaps"], [5], ["mse"], [1.0])
        spec = PoseSpec("mspn", (64, 48), 17, "BGR", outputs)
        info = read_dataset_info({ann_file!r})
        records = load_coco_records({ann_file!r}, {image_dir!r}, info)
        pool = WorkerPool(SampleMaker(spec, records, info, None, False).init_args(), 2)
        pool.run([0], [0])
        print("ready", flush=True)
        time.sleep({60 if ending == "is killed" else 0})
    """)
    parent = subprocess.Popen([sys.executable, "-c", script, ROOT, "0", "1"],
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "ready"
    workers = children_of(parent.pid)
    assert len(workers) == 2
    if ending == "is killed":
        parent.kill()
    parent.wait(timeout=60)
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)


def test_arrays_a_caller_keeps_are_never_reused(coco_folder):
    """Output buffers are recycled only once nothing else references them."""
    _, _, pool = make_pool(coco_folder, augment=resolve_augment(mspn_spec(), None))
    kept = pool.run([1, 2], [5, 6])
    expected = [a.copy() for a in kept]
    assert not np.array_equal(pool.run([1, 2], [0, 0])[0], expected[0])  # seeds matter
    for seed in range(4):
        pool.run([1, 2], [seed, seed])  # same shapes: would reuse a free buffer
    assert all(np.array_equal(a, b) for a, b in zip(kept, expected))
    recycled = pool.run([1, 2], [7, 8])
    assert not any(np.shares_memory(a, b) for a, b in zip(kept, recycled))
    pool.close()


def test_an_idle_pool_stops_its_processes_and_restarts_on_demand(coco_folder):
    maker, _, pool = make_pool(coco_folder)
    pool.run([0], [0])
    first = pool.pids
    assert not pool.stop_if_idle(60)  # used just now
    assert pool.stop_if_idle(0)
    assert pool.pids == [] and not any(alive(pid) for pid in first)
    for got, want in zip(pool.run([4], [1]), maker.chunk([4], [1])):
        assert np.array_equal(got, want)
    assert pool.pids and pool.pids != first
    pool.close()


def test_the_reaper_and_the_exit_finalizer_stopping_at_once_stop_each_worker_once(coco_folder):
    """The idle reaper thread and the finalizer run at exit may stop the same pool together."""
    _, _, pool = make_pool(coco_folder, num_workers=2)
    pool.run([0], [0])
    workers, pids = list(pool._workers), pool.pids
    barrier, errors = threading.Barrier(4), []

    def stop():
        barrier.wait()
        try:
            _stop_all(pool._workers)
        except Exception as error:  # noqa: BLE001 - any error is the failure
            errors.append(error)

    threads = [threading.Thread(target=stop) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and pool.pids == [] and not any(alive(pid) for pid in pids)
    for worker in workers:  # stopping again (close() after the reaper) is harmless
        worker.stop()
    pool.close()
