"""`Predictor`: keypoints of the people in an image, given their boxes.

For each box: the crop window of :func:`keras_pose.data.transforms.box_to_center_size` (the
box extended by ``spec.box_extension``, short side widened to the input's aspect ratio),
``cv2.warpAffine`` into the model's input (the family's border fill), channel order
``spec.channel_order``, batched model calls on the ``"heatmaps"`` output, optional flip test
(the mirrored crop's heatmaps mirrored back, left/right swapped, averaged with the plain
ones), the family's codec decode, and the inverse crop matrix back to image pixels.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Iterator
from typing import Any, Union

import numpy as np

from keras_pose.codecs import codec_from_spec, flip_heatmaps, flip_images
from keras_pose.data.dataset_info import COCO17, DatasetInfo
from keras_pose.data.transforms import (
    border_value_for,
    box_to_center_size,
    crop_matrix,
    invert_matrix,
    warp_image,
)
from keras_pose.spec import PoseSpec

ImageLike = Union[np.ndarray, str, os.PathLike]


class Predictor:
    """Top-down pose prediction with a keras-pose model.

    Args:
        model: a :class:`keras_pose.models.PoseModel` (anything with a ``spec`` and Keras'
            ``predict_on_batch``).
        dataset_info: the keypoint set (its flip pairs drive the flip test). Defaults to
            :data:`COCO17` for 17-keypoint models; required otherwise.
        flip_test: average with the mirrored crop; defaults to ``model.spec.flip_test``.
        batch_size: crops per model call (the flip test makes a second call of the mirrored
            crops).
        refine: the decode's sub-cell step (``"quarter"``, ``"dark"`` or ``None``); by default
            the model's own (``model.spec.refine``: the originals' quarter step unless set).

    ``predictor(image, boxes)`` returns ``(N, K, 3)`` keypoints ``x, y, score`` in image pixels;
    :meth:`predict_many` batches crops across many images.
    """

    def __init__(
        self,
        model: Any,
        dataset_info: DatasetInfo | None = None,
        flip_test: bool | None = None,
        batch_size: int = 32,
        refine: str | None | bool = True,
    ) -> None:
        spec = getattr(model, "spec", None)
        if not isinstance(spec, PoseSpec):
            raise TypeError(
                f"model must carry a PoseSpec as .spec (a PoseModel), got {type(model)}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.spec = spec
        self.dataset_info = _resolve_dataset_info(dataset_info, spec)
        self.flip_test = spec.flip_test if flip_test is None else bool(flip_test)
        self.batch_size = int(batch_size)
        final = spec.final
        self.codec = codec_from_spec(final.codec, spec.input_size, final.stride, refine=refine)
        self.flip_shift = final.codec.flip_shift
        self.border_value = border_value_for(spec)

    def __call__(self, image: ImageLike, boxes: Any) -> np.ndarray:
        """``(N, K, 3)`` float64 keypoints ``x, y, score`` in image pixels of ``(N, 4)`` xywh
        ``boxes`` in ``image`` (a BGR uint8 ``(H, W, 3)`` array as ``cv2.imread`` gives, or an
        image file path)."""
        return next(self.predict_many([(image, boxes)]))

    def predict_many(self, items: Iterable[tuple[ImageLike, Any]]) -> Iterator[np.ndarray]:
        """Keypoints of each ``(image, boxes)`` pair, in order, batching crops across images.

        Yields one ``(N_i, K, 3)`` array per pair (``(0, K, 3)`` for an image without boxes)
        as soon as all its crops are decoded. ``items`` is consumed lazily: at most one batch
        of crops (plus one image's) is held in memory.
        """
        waiting: collections.deque[np.ndarray] = collections.deque()  # matrices per image
        crops: list[np.ndarray] = []
        decoded: list[np.ndarray] = []  # (n, K, 3) crop-pixel keypoints, in order
        for image, boxes in items:
            image_crops, matrices = self.crops(image, boxes)
            waiting.append(matrices)
            crops.append(image_crops)
            while sum(len(c) for c in crops) >= self.batch_size:
                batch, crops = _take(crops, self.batch_size)
                decoded.append(self.decode_crops(batch))
                yield from self._finished(waiting, decoded)
        if sum(len(c) for c in crops):  # (no model call for images without boxes)
            decoded.append(self.decode_crops(np.concatenate(crops)))
        yield from self._finished(waiting, decoded)

    def crops(self, image: ImageLike, boxes: Any) -> tuple[np.ndarray, np.ndarray]:
        """The model's float32 input crops ``(N, H, W, 3)`` (``spec.channel_order``) and their
        ``(N, 2, 3)`` image-to-crop matrices."""
        image = load_image(image)
        boxes = check_boxes(boxes)
        height, width = self.spec.input_size
        aspect = width / height
        matrices = np.zeros((len(boxes), 2, 3), dtype=np.float64)
        crops = np.zeros((len(boxes), height, width, 3), dtype=np.float32)
        for i, box in enumerate(boxes):
            center, size = box_to_center_size(box, aspect, self.spec.box_extension)
            matrices[i] = crop_matrix(center, size, self.spec.input_size)
            crops[i] = warp_image(image, matrices[i], self.spec.input_size, self.border_value)
        if self.spec.channel_order == "RGB":
            crops = crops[..., ::-1]
        return np.ascontiguousarray(crops), matrices

    def confidences(self, poses: np.ndarray) -> np.ndarray:
        """``poses`` (``(..., K, 3)`` as returned) with the scores on the 0..1 scale of every
        family (:meth:`MegviiCodec.confidence`): what a score threshold should compare."""
        result = np.array(poses, dtype=np.float64, copy=True)
        result[..., 2] = self.codec.confidence(result[..., 2])
        return result

    def heatmaps(self, crops: np.ndarray) -> np.ndarray:
        """The final output's ``(N, h, w, K)`` heatmaps of model-ready crops, flip-averaged if
        the flip test is on."""
        heatmaps = self._run(crops)
        if self.flip_test:
            mirrored = self._run(flip_images(crops))
            back = flip_heatmaps(mirrored, self.dataset_info.flip_indices, shift=self.flip_shift)
            heatmaps = 0.5 * (heatmaps + back)
        return heatmaps

    def decode_crops(self, crops: np.ndarray) -> np.ndarray:
        """``(N, K, 3)`` keypoints in crop pixels (x, y, score) of model-ready crops."""
        keypoints, scores = self.codec.decode(self.heatmaps(crops))
        return np.concatenate([keypoints, scores[..., None]], axis=-1).astype(np.float64)

    def _run(self, crops: np.ndarray) -> np.ndarray:
        outputs = self.model.predict_on_batch(crops)
        if isinstance(outputs, dict):
            if self.spec.final_output not in outputs:
                raise KeyError(
                    f"model returned outputs {sorted(outputs)}, no {self.spec.final_output!r}"
                )
            outputs = outputs[self.spec.final_output]
        heatmaps = np.asarray(outputs, dtype=np.float32)
        expected = (len(crops), *self.codec.heatmap_size, self.spec.num_keypoints)
        if heatmaps.shape != expected:
            raise ValueError(f"model heatmaps are {heatmaps.shape}, the spec implies {expected}")
        return heatmaps

    def _finished(
        self, waiting: collections.deque, decoded: list[np.ndarray]
    ) -> Iterator[np.ndarray]:
        """Pop and yield, in order, every waiting image whose crops are all decoded."""
        while waiting and sum(len(d) for d in decoded) >= len(waiting[0]):
            matrices = waiting.popleft()
            if len(matrices) == 0:
                yield np.zeros((0, self.spec.num_keypoints, 3))
                continue
            joined = np.concatenate(decoded)
            decoded[:] = [joined[len(matrices) :]] if len(joined) > len(matrices) else []
            yield self._to_image(joined[: len(matrices)], matrices)

    def _to_image(self, keypoints: np.ndarray, matrices: np.ndarray) -> np.ndarray:
        """Crop-pixel ``(n, K, 3)`` keypoints -> image pixels through each crop's inverse."""
        result = keypoints.copy()
        for i, matrix in enumerate(matrices):
            inverse = invert_matrix(matrix)
            result[i, :, :2] = keypoints[i, :, :2] @ inverse[:, :2].T + inverse[:, 2]
        return result


def load_image(image: ImageLike) -> np.ndarray:
    """A ``(H, W, 3)`` uint8 BGR array, or an image file read with ``cv2``."""
    if isinstance(image, (str, os.PathLike)):
        from keras_pose.data.coco import read_image

        path = os.fspath(image)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image file not found: {path}")
        return read_image(path)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array or a file path, got {type(image)}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be (H, W, 3) BGR, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (as cv2.imread gives), got {image.dtype}")
    return image


def check_boxes(boxes: Any) -> np.ndarray:
    """``(N, 4)`` float64 ``x, y, w, h`` boxes (a single ``(4,)`` box is one row)."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.shape == (4,):
        array = array[None]
    if array.size == 0:
        return np.zeros((0, 4))
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) x, y, w, h, got shape {np.shape(boxes)}")
    bad = ~np.all(np.isfinite(array), axis=1) | (array[:, 2] <= 0) | (array[:, 3] <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"box {i} is {array[i].tolist()}: need finite x, y and w, h > 0")
    return array


def _resolve_dataset_info(dataset_info: DatasetInfo | None, spec: PoseSpec) -> DatasetInfo:
    if dataset_info is None:
        if spec.num_keypoints != COCO17.num_keypoints:
            raise ValueError(
                f"the model predicts {spec.num_keypoints} keypoints: pass its dataset_info "
                f"(COCO-17 is only the default for 17-keypoint models)"
            )
        return COCO17
    if dataset_info.num_keypoints != spec.num_keypoints:
        raise ValueError(
            f"dataset_info {dataset_info.name!r} has {dataset_info.num_keypoints} keypoints, "
            f"the model predicts {spec.num_keypoints}"
        )
    return dataset_info


def _take(chunks: list[np.ndarray], count: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The first ``count`` rows of the concatenated ``chunks``, and the rest as chunks."""
    joined = np.concatenate(chunks)
    return joined[:count], [joined[count:]] if len(joined) > count else []
