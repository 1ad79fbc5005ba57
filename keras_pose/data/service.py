"""Input processing on other processes or machines with tf.data service.

Start a dispatcher, and workers on the machines whose CPUs should make the samples::

    python -m keras_pose.data.service dispatcher --port 5050
    python -m keras_pose.data.service worker --dispatcher HOST:5050 [--port 5051]

then train with ``recipes/train_coco.py --data-service HOST:5050``. A worker runs the
training dataset's graph; its samples are made by a pool of worker processes on that machine
(:mod:`keras_pose.data.workers`), from the image folder and a sample-maker file written by the
trainer (both paths must be readable there: a shared file system).

Ordering: the trainer uses ``processing_mode="distributed_epoch"`` — the dispatcher hands out
the stream's passes over the records (one pass = one split) to the workers, each pass is made
by one worker, and batches of passes made at the same time interleave in no fixed order. So
every record is visited once per pass as without the service, but the step-by-step order, and
with it the exact resume, are not kept. A worker that dies loses the rest of the pass it was
making; training goes on with the others (the dispatcher stops assigning it work).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

import tensorflow as tf

from keras_pose.data import pipeline  # noqa: F401  (registers the service callback)

PROCESSING_MODE = "distributed_epoch"


def distribute(dataset: tf.data.Dataset, address: str, job_name: str | None = None,
               processing_mode: str = PROCESSING_MODE) -> tf.data.Dataset:
    """``dataset`` made by the tf.data service at ``address`` (``host:port``)."""
    return dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=processing_mode, service=_grpc(address), job_name=job_name))


def _grpc(address: str) -> str:
    return address if "://" in address else f"grpc://{address}"


def start_dispatcher(port: int = 0, work_dir: str | None = None,
                     worker_timeout_ms: int = 10_000):
    """A running ``DispatchServer`` (``port`` 0: any free port; see ``.target``). A worker
    silent for ``worker_timeout_ms`` is dropped and its work given to the others."""
    config = tf.data.experimental.service.DispatcherConfig(
        port=port, work_dir=work_dir, fault_tolerant_mode=bool(work_dir),
        worker_timeout_ms=worker_timeout_ms)
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher: str, port: int = 0, worker_address: str | None = None):
    """A running ``WorkerServer`` registered with ``dispatcher`` (``host:port``)."""
    dispatcher = dispatcher.split("://")[-1]
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=dispatcher, port=port,
        worker_address=f"{worker_address}:%port%" if worker_address else None)
    return tf.data.experimental.service.WorkerServer(config)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m keras_pose.data.service",
                                     description="tf.data service dispatcher or worker")
    roles = parser.add_subparsers(dest="role", required=True)
    dispatcher = roles.add_parser("dispatcher", help="the dispatcher (one per job)")
    dispatcher.add_argument("--port", type=int, default=5050)
    dispatcher.add_argument("--work-dir", help="journal folder: a restarted dispatcher "
                                               "resumes its state from it")
    dispatcher.add_argument("--worker-timeout-ms", type=int, default=10_000,
                            help="drop a worker silent for this long")
    worker = roles.add_parser("worker", help="a worker (one per machine)")
    worker.add_argument("--dispatcher", required=True, help="HOST:PORT of the dispatcher")
    worker.add_argument("--port", type=int, default=0, help="0: any free port")
    worker.add_argument("--worker-address", help="host name the trainer reaches this "
                                                 "worker by (default: this host's name)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    if args.role == "dispatcher":
        server = start_dispatcher(args.port, args.work_dir, args.worker_timeout_ms)
    else:
        server = start_worker(args.dispatcher, args.port, args.worker_address)
    address = server.target if args.role == "dispatcher" else server._address
    print(f"keras_pose.data.service {args.role} serving at {address}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
