"""`build_dataset`: a COCO-format folder to batches `model.fit` and evaluation consume.

One element of the underlying dataset is one person record, a ``(record index, seed)`` pair.
The samples — read the image with OpenCV, draw the crop(s) (:mod:`keras_pose.data.transforms`),
warp pixels and keypoints with one affine, encode the targets (:mod:`keras_pose.data.targets`)
— are made by :class:`~keras_pose.data.samples.SampleMaker`:

* by default in worker processes (:mod:`keras_pose.data.workers`): chunks of about one batch
  of records go to the workers, which return crops, targets and weights; ``rebatch`` then cuts
  the chunks into batches exactly as unbatch/batch would (tf-cpn's 4 crops per record stay
  adjacent). This scales with cores: the GIL of the training process is not involved;
* with ``workers=0`` in this process: a parallel ``tf.numpy_function`` per record, unbatch and
  batch of the crops, then one per batch for the targets (the GIL caps this near one core).

Both give bit-identical batches for the same seed. With ``maker_dir`` the dataset can run on
tf.data service workers (:mod:`keras_pose.data.service`).

Bad inputs: missing images raise at load time (:mod:`keras_pose.data.coco`). An image that
fails to decode at run time (corrupt or truncated file) is skipped — its record yields no
sample — and logged once per file with the running count (:data:`SKIPPED_IMAGES` keeps them);
pass ``verify_images=True`` to decode everything up front and raise instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import threading
from collections.abc import Sequence
from typing import Any

import tensorflow as tf
from tensorflow.python.ops import gen_script_ops, script_ops

from keras_pose.data.coco import (
    PersonRecord,
    load_coco,
    load_coco_records,
    load_detection_records,
    read_dataset_info,
)
from keras_pose.data.dataset_info import DatasetInfo
from keras_pose.data.samples import META_FIELDS, SampleMaker
from keras_pose.data.transforms import AugmentConfig, resolve_augment
from keras_pose.data.workers import WorkerPool, default_workers
from keras_pose.spec import PoseSpec

logger = logging.getLogger(__name__)

class SkippedImages:
    """Thread-safe record of image files skipped at run time (logged once per file)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.paths: dict[str, str] = {}

    def add(self, path: str, reason: str) -> None:
        with self._lock:
            if path in self.paths:
                return
            self.paths[path] = reason
            count = len(self.paths)
        logger.warning("skipping an unreadable image (%d skipped so far): %s", count, reason)

    def __len__(self) -> int:
        return len(self.paths)


SKIPPED_IMAGES = SkippedImages()


def build_dataset(
    model_or_spec: Any,
    ann_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    batch_size: int = 32,
    training: bool = True,
    det_file: str | os.PathLike | None = None,
    dataset_info: DatasetInfo | None = None,
    shuffle: bool | None = None,
    deterministic: bool | None = None,
    seed: int | None = None,
    augment: Any = None,
    repeat: bool | int | None = None,
    return_meta: bool | None = None,
    drop_remainder: bool | None = None,
    shard: tuple[int, int] | None = None,
    score_threshold: float = 0.0,
    verify_images: bool = False,
    workers: int | None = None,
) -> tf.data.Dataset:
    """Batches of crops for a pose model, from a COCO-format keypoint file and image folder.

    The general form behind :func:`training_dataset` and :func:`evaluation_dataset`, which
    fix the training and the evaluation settings and yield one element structure each.

    Training (``return_meta=False``) yields ``(images, targets, weights)``:

    * ``images``: ``(N, H, W, 3)`` float32, 0..255, in ``spec.channel_order``;
    * ``targets``: ``{output name: (N, h, w, K) float32}`` for every ``spec.outputs`` entry;
    * ``weights``: ``{output name: (N, K) float32}`` per-keypoint weights,

    which is what ``model.fit(dataset)`` takes (``PoseModel.compile()`` wires the losses).

    Evaluation (``return_meta=True``, the default with ``det_file``) yields ``(images, meta)``,
    ``meta`` a dict of per-crop ``(N, ...)`` tensors:

    * ``image_id``, ``annotation_id`` (-1 for detections), ``record_index`` (int64);
    * ``box`` ``(N, 4)`` xywh of the person box; ``score`` (float32: detector score, 1 for GT);
    * ``center``, ``size`` ``(N, 2)`` float64: the un-augmented window
      (``box_to_center_size(box, W/H, spec.box_extension)``), ``area`` = its ``w * h``;
    * ``matrix`` ``(N, 2, 3)`` float64: the image->crop affine actually used (with any
      augmentation); ``flipped`` (bool): the crop is mirrored (channels already swapped).

    Map crop keypoints back with ``transform_points(kp, invert_matrix(matrix))``.

    Args:
        model_or_spec: a :class:`PoseModel` (or anything with ``.spec``) or a :class:`PoseSpec`.
        ann_file, image_dir: COCO keypoints json and its image folder.
        batch_size: global batch size (split across replicas under ``tf.distribute``).
        training: augment (see ``augment``), shuffle, drop the last partial batch by default.
        det_file: COCO results json of person boxes to crop instead of the GT boxes.
        dataset_info: the keypoint set (default: read from ``ann_file``'s keypoint category).
        shuffle: default ``training``. Reshuffled every epoch.
        deterministic: keep element order in the parallel map (default: on for evaluation
            and whenever a ``seed`` is given, so that a seeded stream, augmentation included,
            is reproducible; off for unseeded training, which lets fast samples overtake).
        seed: seed of the shuffle and of the per-sample augmentation draws.
        augment: training only: ``None`` = the family's original recipe
            (:func:`augment_config_for`); ``False`` = plain test-time crops; an
            :class:`AugmentConfig`; or a dict of field overrides of the family recipe.
        repeat: ``None``/``False`` one pass per epoch; ``True`` forever (give
            ``steps_per_epoch``); an int: that many passes.
        return_meta: yield ``(images, meta)`` instead of targets (default: ``det_file given``).
        drop_remainder: default ``training``.
        shard: ``(num_shards, index)``: keep every ``num_shards``-th record (per-worker input
            with ``distribute_datasets_from_function``); auto-sharding is then turned off.
            Without it the dataset's auto-shard policy is ``DATA``: each worker of a
            multi-worker strategy keeps every n-th batch.
        score_threshold: minimum detector score with ``det_file``.
        verify_images: decode every image at load time and raise on a corrupt one, instead of
            skipping it at run time.
        workers: processes that make the samples (:mod:`keras_pose.data.workers`); default:
            one per CPU this process may use (none if it may use only one). ``0`` makes them
            in this process through ``tf.numpy_function`` (the GIL then caps it near one
            core).
    """
    spec = spec_of(model_or_spec)
    coco = load_coco(ann_file)
    if dataset_info is None:
        dataset_info = read_dataset_info(ann_file, coco=coco)
    if det_file is not None:
        records = load_detection_records(
            det_file, ann_file, image_dir, score_threshold, dataset_info,
            verify_images=verify_images, coco=coco,
        )
    else:
        records = load_coco_records(
            ann_file, image_dir, dataset_info, verify_images=verify_images, coco=coco
        )
    return_meta = det_file is not None if return_meta is None else return_meta
    if det_file is not None and not return_meta:
        raise ValueError("detections carry no keypoints to make targets from: "
                         "use return_meta=True with det_file")
    return dataset_from_records(
        spec,
        records,
        dataset_info,
        batch_size=batch_size,
        augment=resolve_augment(spec, augment) if training else None,
        shuffle=training if shuffle is None else shuffle,
        deterministic=(not training or seed is not None) if deterministic is None
        else deterministic,
        seed=seed,
        repeat=repeat,
        return_meta=return_meta,
        drop_remainder=training if drop_remainder is None else drop_remainder,
        shard=shard,
        workers=workers,
    )


def training_dataset(
    model_or_spec: Any,
    ann_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    *,
    batch_size: int = 32,
    dataset_info: DatasetInfo | None = None,
    seed: int | None = None,
    augment: Any = None,
    repeat: bool | int | None = None,
    shard: tuple[int, int] | None = None,
    verify_images: bool = False,
    workers: int | None = None,
) -> tf.data.Dataset:
    """Training input: the family's augmentation, reshuffled every epoch, full batches of
    ``(images, targets, weights)`` (what ``model.fit`` takes). Arguments as in
    :func:`build_dataset`."""
    return build_dataset(
        model_or_spec, ann_file, image_dir, batch_size=batch_size, training=True,
        dataset_info=dataset_info, seed=seed, augment=augment, repeat=repeat,
        return_meta=False, shard=shard, verify_images=verify_images, workers=workers,
    )


def evaluation_dataset(
    model_or_spec: Any,
    ann_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    *,
    batch_size: int = 32,
    det_file: str | os.PathLike | None = None,
    score_threshold: float = 0.0,
    dataset_info: DatasetInfo | None = None,
    shard: tuple[int, int] | None = None,
    verify_images: bool = False,
    workers: int | None = None,
) -> tf.data.Dataset:
    """Evaluation input: plain test-time crops of every person box (ground truth, or
    ``det_file``'s detections above ``score_threshold``) once, in file order, as
    ``(images, meta)`` (see :func:`build_dataset` for ``meta``)."""
    return build_dataset(
        model_or_spec, ann_file, image_dir, batch_size=batch_size, training=False,
        det_file=det_file, dataset_info=dataset_info, return_meta=True, shard=shard,
        score_threshold=score_threshold, verify_images=verify_images, workers=workers,
    )


def spec_of(model_or_spec: Any) -> PoseSpec:
    """The :class:`PoseSpec` of a model, or the spec itself."""
    if isinstance(model_or_spec, PoseSpec):
        return model_or_spec
    spec = getattr(model_or_spec, "spec", None)
    if not isinstance(spec, PoseSpec):
        raise TypeError(f"expected a PoseModel or a PoseSpec, got {type(model_or_spec).__name__}")
    return spec


def dataset_from_records(
    spec: PoseSpec,
    records: Sequence[PersonRecord],
    dataset_info: DatasetInfo,
    batch_size: int = 32,
    augment: AugmentConfig | None = None,
    shuffle: bool = False,
    deterministic: bool = True,
    seed: int | None = None,
    repeat: bool | int | None = None,
    return_meta: bool = False,
    drop_remainder: bool = False,
    shard: tuple[int, int] | None = None,
    workers: int | None = None,
) -> tf.data.Dataset:
    """:func:`build_dataset` from already loaded records (same element structure)."""
    if dataset_info.num_keypoints != spec.num_keypoints:
        raise ValueError(f"dataset has {dataset_info.num_keypoints} keypoints "
                         f"({dataset_info.name}), the model {spec.num_keypoints}")
    if not records:
        raise ValueError("no person records to build a dataset from")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    maker = SampleMaker(spec, records, dataset_info, augment, return_meta)
    indices = tf.data.Dataset.range(len(records))
    if shard is not None:
        indices = indices.shard(*shard)
    if shuffle:
        indices = indices.shuffle(len(records), seed=seed, reshuffle_each_iteration=True)
    if repeat is True:
        indices = indices.repeat()
    elif repeat:
        indices = indices.repeat(int(repeat))
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return batches_from_index_stream(
        maker, tf.data.Dataset.zip((indices, seeds)), batch_size, deterministic,
        drop_remainder, auto_shard=shard is None, workers=workers,
    )


def batches_from_index_stream(
    maker: SampleMaker,
    stream: tf.data.Dataset,
    batch_size: int,
    deterministic: bool = True,
    drop_remainder: bool = False,
    auto_shard: bool = True,
    workers: int | None = None,
    maker_dir: str | os.PathLike | None = None,
) -> tf.data.Dataset:
    """Decode, crop and batch a dataset of ``(record index, seed)`` int64 pairs.

    The tail of :func:`dataset_from_records`, for callers that choose the visiting order
    themselves (:mod:`keras_pose.training` visits records in a resumable order and skips the
    already-seen ones here, before anything is decoded). ``auto_shard=False`` turns the
    dataset's auto-sharding off (the stream is already one worker's share). ``workers``: see
    :func:`build_dataset`; both ways yield the same batches.

    ``maker_dir``: make the dataset runnable by tf.data service workers
    (:mod:`keras_pose.data.service`) — the sample maker is saved to a file in this folder
    (which the service workers must be able to read) and named in the graph, instead of a
    Python callback only this process knows.
    """
    workers = _auto_workers() if workers is None else int(workers)
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if maker.on_skip is None:
        maker.on_skip = SKIPPED_IMAGES.add
    if maker_dir is not None:
        dataset = _worker_batches(maker, stream, batch_size, deterministic, drop_remainder,
                                  _service_call(write_maker_file(maker, maker_dir)), workers)
    elif workers == 0:
        dataset = _in_process_batches(maker, stream, batch_size, deterministic, drop_remainder)
    else:
        pool = WorkerPool(maker.init_args(), workers, SKIPPED_IMAGES.add)
        dataset = _worker_batches(maker, stream, batch_size, deterministic, drop_remainder,
                                  _local_call(pool), workers)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
        if auto_shard
        else tf.data.experimental.AutoShardPolicy.OFF
    )
    # No autotuning: deleting an iterator waited for tf.data's autotuning thread (the stack:
    # ~RootDataset::Iterator joining its thread), 0-5 s after a 40-step ``fit`` and 20-57 s
    # after the main job's longer ones, in three runs of four; never without it. AUTOTUNE
    # parallelism then takes TensorFlow's default (the cores, at most 16) and the prefetch
    # buffer still grows when the consumer waits; steps ran as fast (RSN-18 128x96 bf16 on 2
    # cores, 5 fits of 40 steps each, alternating: 0.420 s against 0.417 with autotuning).
    options.autotune.enabled = False
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def _auto_workers() -> int:
    """One worker process per usable CPU; none with a single CPU, where processes would only
    add hand-offs to the same core (measured 10-20 % slower, benchmarks/data_pipeline.md)."""
    cpus = default_workers()
    return cpus if cpus > 1 else 0


def _in_process_batches(maker, stream, batch_size, deterministic, drop_remainder):
    """One ``numpy_function`` per record, unbatch/batch, then one per batch for the targets
    (so the heatmaps never pass through unbatch/batch)."""
    dataset = stream.map(
        lambda index, seed: _numpy_call(maker, [index, seed], maker.signature(), "load_crops"),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic,
    )
    dataset = dataset.unbatch().batch(batch_size, drop_remainder=drop_remainder)

    def structure(images, *rest):
        if maker.return_meta:
            return _images(images), dict(zip(META_FIELDS, rest))
        arrays = _numpy_call(maker.batch_targets, [rest[0]], maker.chunk_signature()[2:],
                             "encode_targets")
        return _images(images), *_targets_and_weights(maker, arrays, images.shape[0])

    return dataset.map(structure, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=deterministic)


def _worker_batches(maker, stream, batch_size, deterministic, drop_remainder, call, workers):
    """Chunks of records (about one batch each) made by worker processes, targets included,
    then cut into batches exactly as unbatch/batch would. ``call(indices, seeds,
    signature)`` makes the tensors of one chunk."""
    copies = maker.augment.copies if maker.augment is not None else 1
    records_per_task = max(1, -(-batch_size // copies))
    dataset = stream.batch(records_per_task).map(
        lambda indices, seeds: call(indices, seeds, maker.chunk_signature()),
        num_parallel_calls=2 * max(1, workers), deterministic=deterministic,
    )
    dataset = dataset.rebatch(batch_size, drop_remainder=drop_remainder)

    def structure(images, *rest):
        if maker.return_meta:
            return _images(images), dict(zip(META_FIELDS, rest))
        return _images(images), *_targets_and_weights(maker, rest[1:], images.shape[0])

    return dataset.map(structure, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=deterministic)


def _local_call(pool: WorkerPool):
    def call(indices, seeds, signature):
        return _numpy_call(pool.run, [indices, seeds], signature, "make_samples")

    return call


# -- tf.data service --------------------------------------------------------------------------
# A tf.data service worker runs the dataset graph in its own process, where the client's
# tf.numpy_function callbacks do not exist. Service datasets therefore call one callback that
# every process importing this module registers under a fixed name, with the path of a saved
# sample maker as input; each process builds (and caches) its own worker pool for that file.

SERVICE_CALLBACK = "keras_pose.data.pipeline.make_samples_from_file"
_SERVICE_POOLS: dict[str, WorkerPool] = {}
_SERVICE_LOCK = threading.Lock()


def write_maker_file(maker: SampleMaker, directory: str | os.PathLike) -> str:
    """Save ``maker``'s arguments to ``directory/samples-<hash>.pkl`` (atomically); its path."""
    data = pickle.dumps(maker.init_args(), protocol=pickle.HIGHEST_PROTOCOL)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(os.fspath(directory),
                        f"samples-{hashlib.sha1(data).hexdigest()[:16]}.pkl")
    if not os.path.exists(path):
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    return path


def make_samples_from_file(path: bytes, indices, seeds) -> list:
    """The :data:`SERVICE_CALLBACK`: ``SampleMaker.chunk`` of the maker saved at ``path``, by
    this process's worker pool for it."""
    path = path.decode() if isinstance(path, bytes) else str(path)
    with _SERVICE_LOCK:
        pool = _SERVICE_POOLS.get(path)
        if pool is None:
            if not os.path.exists(path):
                raise FileNotFoundError(f"sample maker file not found on this tf.data service "
                                        f"worker: {path} (the maker_dir must be shared)")
            with open(path, "rb") as f:
                pool = WorkerPool(pickle.load(f), default_workers(), SKIPPED_IMAGES.add)
            _SERVICE_POOLS[path] = pool
    return pool.run(indices, seeds)


def _register_service_callback() -> None:
    # FuncRegistry holds weak references; the module keeps the function alive.
    script_ops._py_funcs._funcs[SERVICE_CALLBACK] = make_samples_from_file


_register_service_callback()


def _service_call(path: str):
    def call(indices, seeds, signature):
        outputs = gen_script_ops.py_func_stateless(
            input=[tf.constant(path), indices, seeds], token=SERVICE_CALLBACK,
            Tout=[tf.as_dtype(dt) for dt, _ in signature], name="make_samples_from_file",
        )
        for tensor, (_, shape) in zip(outputs, signature):
            tensor.set_shape((None, *shape))
        return tuple(outputs)

    return call


def _numpy_call(func, inputs, signature, name) -> tuple[tf.Tensor, ...]:
    """``tf.numpy_function`` with the per-sample shapes of ``signature`` set (batch unknown)."""
    outputs = tf.numpy_function(func, inputs, [tf.as_dtype(dt) for dt, _ in signature],
                                stateful=False, name=name)
    for tensor, (_, shape) in zip(outputs, signature):
        tensor.set_shape((None, *shape))
    return tuple(outputs)


def _images(images: tf.Tensor) -> tf.Tensor:
    return tf.cast(images, tf.float32)


def _targets_and_weights(maker: SampleMaker, arrays, batch: int | None) -> tuple[dict, dict]:
    """Per-group targets then per-output weights -> ``{output name: tensor}`` dicts; outputs
    of one target group share a tensor."""
    names = maker.spec.output_names
    groups = maker.target_groups
    for tensor in arrays:
        tensor.set_shape((batch, *tensor.shape[1:]))
    by_name = {}
    for tensor, group in zip(arrays, groups):
        by_name.update(dict.fromkeys(group.names, tensor))
    return {name: by_name[name] for name in names}, dict(zip(names, arrays[len(groups):]))
