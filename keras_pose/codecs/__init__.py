"""Heatmap codecs: training targets (``encode``) and keypoint read-out (``decode``).

:func:`codec_from_spec` turns a :class:`keras_pose.spec.CodecSpec` into a
:class:`MegviiCodec` (CPN, MSPN, RSN) or :class:`MSRACodec` (CPM, Hourglass). Both have

* ``encode(keypoints (K, 2) crop px, visible (K,) bool) -> (h, w, K) float32``;
* ``decode(heatmaps (N, h, w, K)) -> (keypoints (N, K, 2) crop px, scores (N, K))``;
* ``confidence(scores) -> (N, K)`` the scores on one 0..1 scale for every family (Megvii's
  original score is ``raw / 255 + 0.5``, so a blank crop scores above 0.5 there).

:mod:`keras_pose.codecs.graph` has the same decodes in ``keras.ops`` for exported graphs;
:mod:`keras_pose.codecs.flip` the flip test; :mod:`keras_pose.codecs.mmpose` MMPose's conventions
(``CodecSpec.convention == "mmpose"``).
"""

from __future__ import annotations

from collections.abc import Sequence

from keras_pose.codecs._common import opencv_sigma
from keras_pose.codecs.flip import flip_heatmaps, flip_images
from keras_pose.codecs.megvii import MegviiCodec
from keras_pose.codecs.msra import MSRACodec
from keras_pose.spec import MEGVII, MSRA, CodecSpec


def codec_from_spec(
    codec_spec: CodecSpec,
    input_size: Sequence[int],
    stride: int,
    refine: str | None | bool = True,
) -> MegviiCodec | MSRACodec:
    """The codec of one output, decoding with ``refine`` (``"quarter"``, ``"dark"``, ``None``;
    ``True``: the spec's own ``refine``)."""
    refine = codec_spec.refine if refine is True else refine
    if codec_spec.type == MEGVII:
        return MegviiCodec(
            codec_spec.kernel_size,
            input_size,
            stride,
            peak=codec_spec.peak,
            decode_blur=codec_spec.decode_blur,
            decode_normalize=codec_spec.decode_normalize,
            convention=codec_spec.convention,
            refine=refine,
        )
    if codec_spec.type == MSRA:
        return MSRACodec(
            codec_spec.sigma,
            input_size,
            stride,
            peak=codec_spec.peak,
            refine=refine,
            convention=codec_spec.convention,
        )
    raise ValueError(f"unknown codec type {codec_spec.type!r}")


__all__ = [
    "MSRACodec",
    "MegviiCodec",
    "codec_from_spec",
    "flip_heatmaps",
    "flip_images",
    "opencv_sigma",
]
