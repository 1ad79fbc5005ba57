"""Worker processes that make samples outside the main process (and outside its GIL).

A :class:`WorkerPool` starts ``N`` plain Python processes that import only numpy, OpenCV and
the TensorFlow-free part of :mod:`keras_pose.data` (the package's ``__init__``, which imports
Keras, is bypassed). Each receives the :class:`~keras_pose.data.samples.SampleMaker`'s
arguments once, then answers tasks — a chunk of ``(record index, seed)`` pairs — with the
arrays of :meth:`SampleMaker.chunk`. The arrays travel through memory the two processes share
(an anonymous ``memfd``, grown by the worker as needed and freed by the kernel when both ends
close it): the worker writes them there and the pipe carries only a small header.
:meth:`WorkerPool.run` copies them out once, into recycled 64-byte aligned arrays (warm
memory, and ``tf.numpy_function`` wraps such arrays in tensors without a further copy).

Lifetime: the processes start on the first task and stop after :data:`IDLE_SECONDS` without
one (to start again on the next: a dataset nobody iterates any more keeps no processes), on
:meth:`WorkerPool.close`, when the pool is garbage-collected, at interpreter exit, or by
themselves when the parent dies (their task pipe reaches end-of-file). A worker that dies
makes the task it held fail with an error naming the worker and the image files of that task;
the pool is then broken: every later task fails the same way (none waits forever).
"""

from __future__ import annotations

import collections
import mmap
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection

import numpy as np

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Runs in the worker: a stand-in for the top-level package, so that importing
# keras_pose.data.* does not execute keras_pose/__init__.py (Keras, TensorFlow).
_BOOTSTRAP = """
import os, sys, types
parent, task_fd, result_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
package = types.ModuleType("keras_pose")
package.__path__ = [os.path.join(parent, "keras_pose")]
sys.modules["keras_pose"] = package
from keras_pose.data.workers import serve
serve(task_fd, result_fd, int(sys.argv[4]))
"""
_ALIGN = 64  # byte alignment of each array in the shared memory
IDLE_SECONDS = 10.0  # a pool without tasks for this long stops its processes


def default_workers() -> int:
    """The CPUs this process may run on (``taskset`` / cgroup affinity respected)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class WorkerDiedError(RuntimeError):
    """A data worker process exited while it held a task."""


class WorkerPool:
    """``num_workers`` processes running :meth:`SampleMaker.chunk` on ``maker_args``.

    Args:
        maker_args: :meth:`SampleMaker.init_args` of the maker to replicate.
        num_workers: processes to start (on the first :meth:`run`).
        on_skip: called in this process with ``(path, reason)`` for every image a worker
            could not decode.
    """

    def __init__(self, maker_args: tuple, num_workers: int,
                 on_skip: Callable[[str, str], None] | None = None) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.num_workers = num_workers
        self.on_skip = on_skip
        self._init_message = pickle.dumps(maker_args, protocol=pickle.HIGHEST_PROTOCOL)
        self._records = maker_args[1]
        self._idle: queue.Queue = queue.Queue()
        self._buffers = _BufferCache()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._busy = 0  # run() calls in progress
        self._broken = ""  # why, once a worker has died
        self._last_used = time.monotonic()
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)
        _IdleReaper.watch(self)

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers]

    def start(self) -> None:
        """Start the processes now (otherwise the first :meth:`run` does)."""
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._workers:
            return
        self._idle = queue.Queue()
        for _ in range(self.num_workers):
            worker = _Worker.spawn(self._init_message)
            self._workers.append(worker)
            self._idle.put(worker)

    def run(self, indices: Sequence[int], seeds: Sequence[int]) -> list[np.ndarray]:
        """The arrays of ``SampleMaker.chunk(indices, seeds)``, made by a free worker."""
        with self._lock:
            if self._broken:
                raise WorkerDiedError(self._broken)
            self._start_locked()
            self._busy += 1
            idle = self._idle
        try:
            return self._run(idle, indices, seeds)
        finally:
            with self._lock:
                self._busy -= 1
                self._last_used = time.monotonic()

    def stop_if_idle(self, seconds: float) -> bool:
        """Stop the processes if no task came for ``seconds``; whether it did."""
        with self._lock:
            if (not self._workers or self._busy
                    or time.monotonic() - self._last_used < seconds):
                return False
            _stop_all(self._workers)
        self._buffers.clear()
        return True

    def _run(self, idle: queue.Queue, indices, seeds) -> list[np.ndarray]:
        worker = idle.get()
        if worker is None:  # another worker died: wake the next waiter too
            idle.put(None)
            raise WorkerDiedError(self._broken)
        try:
            header, views = worker.run(np.asarray(indices, np.int64),
                                       np.asarray(seeds, np.int64))
        except (EOFError, OSError) as error:
            self._broken = self._death_message(worker, indices)
            idle.put(None)
            raise WorkerDiedError(self._broken) from error
        arrays = [self._buffers.copy(view) for view in views]
        del views
        idle.put(worker)
        for path, reason in header["skipped"]:
            if self.on_skip is not None:
                self.on_skip(path, reason)
        if header["error"]:
            files = self._files(indices)
            raise RuntimeError(f"data worker failed on {files}:\n{header['error']}")
        return arrays

    def close(self) -> None:
        """Stop the processes (idempotent)."""
        self._finalizer()

    def _files(self, indices: Sequence[int]) -> str:
        paths = dict.fromkeys(self._records[int(i)].image_path for i in indices)
        return ", ".join(paths)

    def _death_message(self, worker: _Worker, indices: Sequence[int]) -> str:
        try:
            code = worker.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        return (f"data worker process {worker.process.pid} died (exit code {code}) while "
                f"making the samples of {self._files(indices)}")


class _IdleReaper:
    """One daemon thread that stops the processes of pools idle for :data:`IDLE_SECONDS`."""

    _pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()
    _thread: threading.Thread | None = None
    _lock = threading.Lock()

    @classmethod
    def watch(cls, pool: WorkerPool) -> None:
        with cls._lock:
            cls._pools.add(pool)
            if cls._thread is None:
                cls._thread = threading.Thread(target=cls._loop, name="keras-pose-reaper",
                                               daemon=True)
                cls._thread.start()

    @classmethod
    def _loop(cls) -> None:
        while True:
            time.sleep(min(IDLE_SECONDS, 5.0) / 2)
            for pool in list(cls._pools):
                pool.stop_if_idle(IDLE_SECONDS)


class _Worker:
    """The parent's end of one worker process: its task and result pipes."""

    def __init__(self, process: subprocess.Popen, tasks: Connection, results: Connection,
                 memory_fd: int):
        self.process = process
        self.tasks = tasks
        self.results = results
        self.memory = _SharedMemory(memory_fd)

    @classmethod
    def spawn(cls, init_message: bytes) -> _Worker:
        task_read, task_write = os.pipe()
        result_read, result_write = os.pipe()
        memory_fd = os.memfd_create("keras-pose-data-worker")
        fds = (task_read, result_write, memory_fd)
        process = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, _PACKAGE_PARENT, *map(str, fds)],
            pass_fds=fds, stdin=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        os.close(task_read)
        os.close(result_write)
        worker = cls(process, Connection(task_write, readable=False),
                     Connection(result_read, writable=False), memory_fd)
        worker.tasks.send_bytes(init_message)
        return worker

    def run(self, indices: np.ndarray, seeds: np.ndarray) -> tuple[dict, list[np.ndarray]]:
        self.tasks.send_bytes(pickle.dumps((indices, seeds)))
        header = pickle.loads(self.results.recv_bytes())
        self.memory.ensure(header["memory_size"])
        return header, [self.memory.view(*layout) for layout in header["arrays"]]

    def stop(self) -> None:
        for connection in (self.tasks, self.results):
            connection.close()
        self.memory.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class _BufferCache:
    """Output arrays for :meth:`WorkerPool.run`, reused once nothing else references them.

    Fresh large arrays cost a page fault per 4 KiB on first write; reused ones are warm. An
    array is free when only this cache holds it (``sys.getrefcount``); a new one is made when
    none of that shape is, so a caller that keeps arrays never blocks anything.
    """

    def __init__(self, per_shape: int = 64, shapes: int = 16) -> None:
        self.per_shape = per_shape
        self.shapes = shapes  # the least recently used shape's arrays go beyond this
        self._arrays: collections.OrderedDict[tuple, list[np.ndarray]] = (
            collections.OrderedDict())
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._arrays.clear()

    def copy(self, source: np.ndarray) -> np.ndarray:
        with self._lock:
            target = self._free(source.dtype, source.shape)
        np.copyto(target, source)
        return target

    def _free(self, dtype, shape) -> np.ndarray:
        key = (dtype.str, shape)
        arrays = self._arrays.setdefault(key, [])
        self._arrays.move_to_end(key)
        if len(self._arrays) > self.shapes:
            self._arrays.popitem(last=False)
        for i in range(len(arrays)):
            if sys.getrefcount(arrays[i]) <= 2:  # the list's reference and the argument's
                return arrays[i]
        array = _aligned_empty(dtype, shape)
        if len(arrays) < self.per_shape:
            arrays.append(array)
        return array


def _aligned_empty(dtype, shape, alignment: int = _ALIGN) -> np.ndarray:
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start:start + nbytes].view(dtype).reshape(shape)


class _SharedMemory:
    """One side's mapping of a worker's memfd, remapped when the file has grown."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.map: mmap.mmap | None = None

    def ensure(self, size: int, grow: bool = False) -> None:
        if self.map is not None and len(self.map) >= size:
            return
        if grow:
            os.ftruncate(self.fd, size)
        self.release()
        self.map = mmap.mmap(self.fd, size) if size else None

    def release(self) -> None:
        """Unmap now, or when the last view of the mapping is gone."""
        if self.map is not None:
            try:
                self.map.close()
            except BufferError:  # views still exist: the mapping goes with the last of them
                pass
            self.map = None

    def view(self, dtype: str, shape: tuple, offset: int) -> np.ndarray:
        count = int(np.prod(shape))
        if not count:
            return np.zeros(shape, dtype)
        return np.frombuffer(self.map, dtype, count, offset).reshape(shape)

    def close(self) -> None:
        self.release()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _stop_all(workers: list[_Worker]) -> None:
    # pop() is atomic: the idle reaper and the exit-time finalizer may both be here at once,
    # and each worker must be stopped (its descriptors closed) exactly once.
    while workers:
        try:
            worker = workers.pop()
        except IndexError:
            return
        worker.stop()


# -- worker side --------------------------------------------------------------------------------


def serve(task_fd: int, result_fd: int, memory_fd: int) -> None:
    """Worker main loop: build the maker, then answer tasks until the task pipe closes."""
    import cv2

    from keras_pose.data.samples import SampleMaker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C, then closes us
    cv2.setNumThreads(1)
    tasks = Connection(task_fd, writable=False)
    results = Connection(result_fd, readable=False)
    memory = _SharedMemory(memory_fd)
    skipped: list[tuple[str, str]] = []
    try:
        maker = SampleMaker(*pickle.loads(tasks.recv_bytes()),
                            on_skip=lambda path, reason: skipped.append((path, reason)))
        while True:
            indices, seeds = pickle.loads(tasks.recv_bytes())
            skipped.clear()
            _answer(results, memory, maker, indices, seeds, skipped)
    except (EOFError, BrokenPipeError):
        return  # the parent closed the pipes or died


def _answer(results: Connection, memory: _SharedMemory, maker, indices, seeds, skipped) -> None:
    try:
        arrays = maker.chunk(indices, seeds)
        error = ""
    except Exception:  # reported to the parent, which raises it with the file names
        arrays, error = [], traceback.format_exc()
    layouts, size = [], 0
    for array in arrays:
        layouts.append((array.dtype.str, array.shape, size))
        size += -(-array.nbytes // _ALIGN) * _ALIGN
    memory.ensure(size, grow=True)
    for array, layout in zip(arrays, layouts):
        memory.view(*layout)[...] = array
    results.send_bytes(pickle.dumps({"arrays": layouts, "memory_size": size,
                                     "skipped": list(skipped), "error": error}))
