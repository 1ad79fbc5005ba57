"""Which ``tf.distribute`` strategy a run uses, and what that implies (chief, XLA).

* ``TF_CONFIG`` naming more than one task: :class:`tf.distribute.MultiWorkerMirroredStrategy`
  (one process per machine, every GPU of each; the same command on every worker).
* otherwise, two or more visible GPUs: :class:`tf.distribute.MirroredStrategy` over all of them.
* otherwise: the default strategy (one GPU, or the CPU).

The multi-worker strategy must be created before TensorFlow runs anything else, so
:func:`make_strategy` is the first thing :func:`keras_pose.training.train` does.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import tensorflow as tf

logger = logging.getLogger(__name__)

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def cluster_size(tf_config: str | None = None) -> int:
    """Number of tasks (chief + workers) in ``TF_CONFIG`` (1 without it)."""
    raw = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not raw.strip():
        return 1
    try:
        cluster = json.loads(raw).get("cluster", {})
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid json: {error}") from None
    return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))


def make_strategy(kind: str = "auto", devices: list[str] | None = None) -> tf.distribute.Strategy:
    """The strategy for ``kind`` (see :data:`STRATEGIES` and the module docstring).

    Args:
        kind: ``"auto"``, ``"default"`` (no distribution), ``"mirrored"`` (all local GPUs,
            or ``devices``) or ``"multi_worker"`` (from ``TF_CONFIG``).
        devices: devices of a mirrored strategy (e.g. ``["/cpu:0", "/cpu:1"]`` with logical
            CPUs); default: every GPU.
    """
    if kind not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {kind!r}")
    if kind == "auto":
        if cluster_size() > 1:
            kind = "multi_worker"
        elif devices or len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices)
    else:
        strategy = tf.distribute.get_strategy()
    logger.info("strategy %s with %d replica(s)", type(strategy).__name__,
                strategy.num_replicas_in_sync)
    return strategy


def logical_cpus(count: int) -> list[str]:
    """Split the CPU into ``count`` logical devices (for a mirrored strategy on one machine
    without GPUs, e.g. to test distribution) and return their names. Must run before
    TensorFlow initialises its devices."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )
    return [f"/cpu:{i}" for i in range(count)]


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the one process that writes files (always, unless multi-worker)."""
    return bool(strategy.extended.should_checkpoint)


def local_model(model: Any, copy: Any = None) -> Any:
    """``model`` if it lives on one device; else an undistributed copy (``copy``, reused when
    given) holding its current weights, whose predictions need no other replica or worker."""
    strategy = model.distribute_strategy
    if strategy.num_replicas_in_sync == 1 and not is_multi_worker(strategy):
        return model
    if copy is None:
        copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def worker_name(strategy: tf.distribute.Strategy) -> str:
    """``"<task type>-<task id>"`` of this process in a multi-worker cluster."""
    resolver = strategy.cluster_resolver
    return f"{resolver.task_type}-{resolver.task_id}"


def has_gpu() -> bool:
    return bool(tf.config.list_logical_devices("GPU"))


def resolve_jit_compile(requested: Any, strategy: tf.distribute.Strategy) -> bool:
    """XLA on or off. ``None``/``"auto"``: on with a GPU, off on CPU (XLA measured slower
    there). Always off for a CPU-only mirrored strategy, where XLA fails with
    "Trying to access resource ... located in device CPU:1 from device CPU:0"."""
    cpu_mirrored = not has_gpu() and strategy.num_replicas_in_sync > 1
    if requested in (None, "auto"):
        return has_gpu() and not cpu_mirrored
    requested = bool(requested)
    if requested and cpu_mirrored:
        logger.warning("jit_compile turned off: XLA fails under a CPU MirroredStrategy")
        return False
    return requested


def prepare_fit(model: Any, element_spec: Any) -> None:
    """Build what ``fit`` would otherwise build inside its first traced step, and work around
    two places where Keras 3.15's ``fit`` fails under ``MultiWorkerMirroredStrategy``
    (tensorflow/tensorflow#72388).

    * Without a strategy, Keras creates the compiled losses' ``Mean`` trackers while tracing the
      first training step; a ``tf.function`` that creates variables is traced a second time,
      which doubled the first step (RSN-18 128x96: 32 s -> 22 s once built here).
    * Under a strategy it builds them from a batch pulled from the distributed input and
      averaged with ``strategy.reduce``, which fails for a nested batch ("Attempt to convert a
      value (PerReplica ...) to a Tensor"). Shapes are all it needs: the input's
      ``element_spec`` is used here and that step is skipped (which also spares decoding a
      batch for nothing under ``MirroredStrategy``).
    * It averages each step's scalar logs over workers with ``strategy.reduce("MEAN", v,
      axis=0)``, which fails on scalars ("Invalid reduction dimension 0 for input with 0
      dimensions"): the model's ``train_step`` gets wrapped to return them with that axis.
    """
    strategy = getattr(model, "_distribute_strategy", None)  # noqa: SLF001
    if strategy is None:
        model._symbolic_build(data_batch=element_spec)  # noqa: SLF001
        return
    with strategy.scope():
        model._symbolic_build(data_batch=element_spec)  # noqa: SLF001
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None  # noqa: SLF001
    if is_multi_worker(strategy):
        step = model.train_step

        def train_step(data):
            return {name: tf.reshape(value, [1]) for name, value in step(data).items()}

        model.train_step = train_step
