"""The numpy side of a training or evaluation sample: record -> crops, keypoints, targets.

TensorFlow-free (numpy and OpenCV only), so that worker processes
(:mod:`keras_pose.data.workers`) can make samples without importing TensorFlow.
:mod:`keras_pose.data.pipeline` wraps it into ``tf.data``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from keras_pose.data.coco import BadImageError, PersonRecord, read_image
from keras_pose.data.dataset_info import DatasetInfo
from keras_pose.data.targets import make_batch_targets, target_groups, target_shapes
from keras_pose.data.transforms import (
    AugmentConfig,
    apply_crop,
    border_value_for,
    box_to_center_size,
    draw_crops,
    eval_crop,
    jitter_colors,
)
from keras_pose.spec import PoseSpec

# name -> (dtype, per-sample shape) of the evaluation metadata; see build_dataset.
META_FIELDS = {
    "image_id": (np.int64, ()),
    "annotation_id": (np.int64, ()),
    "record_index": (np.int64, ()),
    "box": (np.float64, (4,)),
    "center": (np.float64, (2,)),
    "size": (np.float64, (2,)),
    "area": (np.float64, ()),
    "score": (np.float32, ()),
    "matrix": (np.float64, (2, 3)),
    "flipped": (np.bool_, ()),
}

SkipHandler = Callable[[str, str], None]


class SampleMaker:
    """Turns ``(record index, seed)`` into the crops, keypoints (or metadata) of one record.

    ``on_skip(path, reason)`` is called for an image that does not decode (the record then
    yields no crop).
    """

    def __init__(
        self,
        spec: PoseSpec,
        records: Sequence[PersonRecord],
        dataset_info: DatasetInfo,
        augment: AugmentConfig | None,
        return_meta: bool,
        on_skip: SkipHandler | None = None,
    ) -> None:
        self.spec = spec
        self.records = list(records)
        self.dataset_info = dataset_info
        self.flip_indices = dataset_info.flip_indices
        self.augment = augment
        self.return_meta = return_meta
        self.on_skip = on_skip
        self.border_value = augment.border_value if augment else border_value_for(spec)
        self.target_shapes = target_shapes(spec)
        self.target_groups = target_groups(spec)

    def init_args(self) -> tuple:
        """What a worker process needs to build the same maker."""
        return (self.spec, self.records, self.dataset_info, self.augment, self.return_meta)

    def __call__(self, index: int, seed: int) -> list[np.ndarray]:
        index = int(index)
        record = self.records[index]
        try:
            image = read_image(record.image_path)
        except (BadImageError, OSError) as error:
            if self.on_skip is not None:
                self.on_skip(record.image_path, str(error))
            return self._empty()
        rng = np.random.default_rng(int(seed) % (1 << 63))
        if self.augment is None:
            draws = [eval_crop(record.box, self.spec)]
        else:
            draws = draw_crops(record.box, record.keypoints, image.shape[1], self.spec,
                               self.augment, rng)
        samples = [self._sample(image, index, draw, rng) for draw in draws]
        if len(samples) == 1:  # a view, not a copy
            return [part[None] for part in samples[0]]
        return [np.stack(parts) for parts in zip(*samples)]

    def chunk(self, indices: Sequence[int], seeds: Sequence[int]) -> list[np.ndarray]:
        """The samples of several records, concatenated; in training, followed by their
        targets (one array per target group) and weights (one per output), as
        :meth:`batch_targets` makes them."""
        parts = [self(index, seed) for index, seed in zip(indices, seeds)]
        arrays = [np.concatenate(column) for column in zip(*parts)] if parts else self._empty()
        if self.return_meta:
            return arrays
        return arrays + self.batch_targets(arrays[1])

    def _sample(self, image, index, draw, rng) -> list[np.ndarray]:
        record = self.records[index]
        crop, keypoints = apply_crop(image, record.keypoints, draw, self.spec,
                                     self.flip_indices, self.border_value)
        if self.augment is not None and self.augment.color_jitter > 0:
            crop = jitter_colors(crop, self.augment.color_jitter, rng)
        if self.spec.channel_order == "RGB":
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        parts = [crop]
        if self.return_meta:
            return parts + self._meta(index, draw)
        return parts + [keypoints.astype(np.float32)]

    def _meta(self, index: int, draw) -> list[np.ndarray]:
        record = self.records[index]
        aspect = self.spec.input_size[1] / self.spec.input_size[0]
        center, size = box_to_center_size(record.box, aspect, self.spec.box_extension)
        values = {
            "image_id": record.image_id,
            "annotation_id": record.annotation_id,
            "record_index": index,
            "box": record.box,
            "center": center,
            "size": size,
            "area": size[0] * size[1],
            "score": record.score,
            "matrix": draw.matrix,
            "flipped": draw.flipped,
        }
        return [np.asarray(values[k], dtype=dt) for k, (dt, _) in META_FIELDS.items()]

    def _empty(self) -> list[np.ndarray]:
        return [np.zeros((0, *shape), dtype) for dtype, shape in self.signature()]

    def signature(self) -> list[tuple[Any, tuple[int, ...]]]:
        """(dtype, per-sample shape) of every array :meth:`__call__` returns, in order."""
        signature = [(np.uint8, (*self.spec.input_size, 3))]
        if self.return_meta:
            return signature + list(META_FIELDS.values())
        return signature + [(np.float32, (self.spec.num_keypoints, 3))]

    def chunk_signature(self) -> list[tuple[Any, tuple[int, ...]]]:
        """(dtype, per-sample shape) of every array :meth:`chunk` returns, in order."""
        if self.return_meta:
            return self.signature()
        num_keypoints = self.spec.num_keypoints
        return (self.signature()
                + [(np.float32, self.target_shapes[g.names[0]]) for g in self.target_groups]
                + [(np.float32, (num_keypoints,))] * len(self.spec.output_names))

    def batch_targets(self, keypoints: np.ndarray) -> list[np.ndarray]:
        """``(N, K, 3)`` crop keypoints -> one target array per target group, then the weights
        of every output."""
        targets, weights = make_batch_targets(self.spec, keypoints)
        return [targets[group.names[0]] for group in self.target_groups] + [
            weights[name] for name in self.spec.output_names
        ]
