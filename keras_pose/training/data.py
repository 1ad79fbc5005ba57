"""The training input: a resumable, shardable stream of records and the batches made from it.

Training visits records in an order that is a pure function of ``(seed, epoch)``: the records
of pass ``e`` are a permutation drawn from the stateless seed ``(seed, e)``, each with its own
augmentation seed. The passes are concatenated into one endless stream, so step ``g`` of a run
always sees the same crops, whoever runs it: a resumed run starts the stream at the first record
it has not seen (:meth:`RecordOrder.stream` jumps straight to that pass and skips within it on
the index level, before anything is decoded), and the replicas of a distributed run share each
pass (worker ``i`` of ``n`` takes every ``n``-th record of it).

A step of ``B`` crops consumes ``B / copies`` records (``copies`` = crops drawn per record: 4
for tf-cpn's scheme, 1 otherwise). An image that fails to decode yields no crops, which shifts
the later batches of that run by its crops (the data pipeline logs each such image).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import tensorflow as tf

from keras_pose.data.coco import PersonRecord
from keras_pose.data.dataset_info import DatasetInfo
from keras_pose.data.pipeline import SampleMaker, batches_from_index_stream
from keras_pose.data.transforms import AugmentConfig
from keras_pose.spec import PoseSpec
from keras_pose.training.distribute import is_multi_worker


@dataclasses.dataclass(frozen=True)
class RecordOrder:
    """Which record, with which augmentation seed, each position of the stream visits.

    Args:
        num_records: records in one pass.
        seed: the run's data seed.
    """

    num_records: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_records < 1:
            raise ValueError(f"num_records must be >= 1, got {self.num_records}")

    def shard_size(self, num_shards: int = 1, shard_index: int = 0) -> int:
        """Records of one pass that shard ``shard_index`` of ``num_shards`` visits."""
        if not 0 <= shard_index < num_shards:
            raise ValueError(f"shard_index must be in [0, {num_shards}), got {shard_index}")
        return len(range(shard_index, self.num_records, num_shards))

    def epoch(self, epoch) -> tuple[tf.Tensor, tf.Tensor]:
        """``(record indices, augmentation seeds)`` of pass ``epoch``, int64 ``(num_records,)``."""
        epoch = tf.cast(epoch, tf.int64)
        seed = tf.constant(self.seed, tf.int64)
        keys = tf.random.stateless_uniform(
            [self.num_records], seed=tf.stack([seed, 2 * epoch]), dtype=tf.float32
        )
        indices = tf.argsort(keys, stable=True)
        seeds = tf.random.stateless_uniform(
            [self.num_records], seed=tf.stack([seed, 2 * epoch + 1]),
            minval=None, maxval=None, dtype=tf.int64,
        )
        return tf.cast(indices, tf.int64), seeds

    def stream(self, start: int = 0, num_shards: int = 1, shard_index: int = 0) -> tf.data.Dataset:
        """The endless ``(record index, seed)`` stream of one shard, from its ``start``-th
        element on (``start`` counts this shard's elements, over all passes)."""
        per_pass = self.shard_size(num_shards, shard_index)
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        first_pass, offset = divmod(int(start), per_pass)

        def one_pass(epoch):
            indices, seeds = self.epoch(epoch)
            return tf.data.Dataset.from_tensor_slices(
                (indices[shard_index::num_shards], seeds[shard_index::num_shards])
            )

        passes = tf.data.Dataset.range(first_pass, tf.int64.max)
        return passes.flat_map(one_pass).skip(offset)


@dataclasses.dataclass(frozen=True)
class TrainingInput:
    """Everything needed to make the training batches of any step, on any worker.

    Args:
        spec: the model's spec.
        records: the training records.
        dataset_info: their keypoint set.
        augment: the augmentation recipe (``None``: plain test-time crops).
        global_batch: crops per step over all replicas.
        seed: the data seed (:class:`RecordOrder`).
    """

    spec: PoseSpec
    records: Sequence[PersonRecord]
    dataset_info: DatasetInfo
    augment: AugmentConfig | None
    global_batch: int
    seed: int = 0

    @property
    def copies(self) -> int:
        """Crops drawn per record."""
        return self.augment.copies if self.augment is not None else 1

    @property
    def order(self) -> RecordOrder:
        return RecordOrder(len(self.records), self.seed)

    def steps_per_pass(self) -> int:
        """Steps of one pass over the records (at least 1)."""
        return max(1, len(self.records) * self.copies // self.global_batch)

    def check_batch(self, num_replicas: int) -> int:
        """The per-replica batch; raises unless the global batch splits into whole records
        per replica."""
        per_replica, left = divmod(self.global_batch, num_replicas)
        if left or per_replica < 1:
            raise ValueError(f"global batch {self.global_batch} does not split evenly over "
                             f"{num_replicas} replicas")
        if per_replica % self.copies:
            raise ValueError(f"the batch of each replica ({per_replica}) must be a multiple of "
                             f"the {self.copies} crops drawn per person by "
                             f"{self.spec.family}'s augmentation")
        return per_replica

    def dataset(
        self,
        start_step: int = 0,
        num_pipelines: int = 1,
        pipeline_id: int = 0,
        num_replicas: int = 1,
        maker_dir: str | None = None,
    ) -> tf.data.Dataset:
        """Per-replica batches of pipeline ``pipeline_id`` of ``num_pipelines`` (one per
        worker), from global step ``start_step`` on. Each step takes ``num_replicas /
        num_pipelines`` consecutive batches of a pipeline. ``maker_dir``: for tf.data service
        (:func:`keras_pose.data.pipeline.batches_from_index_stream`)."""
        per_replica = self.check_batch(num_replicas)
        replicas_per_pipeline = num_replicas // num_pipelines
        records_per_step = replicas_per_pipeline * per_replica // self.copies
        stream = self.order.stream(start_step * records_per_step, num_pipelines, pipeline_id)
        maker = SampleMaker(self.spec, self.records, self.dataset_info, self.augment,
                            return_meta=False)
        return batches_from_index_stream(maker, stream, per_replica, deterministic=True,
                                         drop_remainder=True, auto_shard=False,
                                         maker_dir=maker_dir)

    def distributed(self, strategy: tf.distribute.Strategy, start_step: int = 0):
        """The input of ``model.fit`` under ``strategy`` from ``start_step`` on: the plain
        dataset without distribution, else one pipeline per worker
        (``distribute_datasets_from_function``)."""
        if strategy.num_replicas_in_sync == 1 and not is_multi_worker(strategy):
            return self.dataset(start_step)

        def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
            return self.dataset(start_step, context.num_input_pipelines,
                                context.input_pipeline_id, context.num_replicas_in_sync)

        return strategy.distribute_datasets_from_function(per_worker)

    def on_service(self, address: str, start_step: int, maker_dir: str) -> tf.data.Dataset:
        """The plain dataset from ``start_step`` on, made by the tf.data service at
        ``address`` (:mod:`keras_pose.data.service`; passes interleave in no fixed order)."""
        from keras_pose.data.service import distribute

        return distribute(self.dataset(start_step, maker_dir=maker_dir), address)
