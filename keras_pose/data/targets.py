"""Per-output training targets and keypoint weights, read from a model's :class:`PoseSpec`.

For each supervised output ``o`` of ``spec.outputs``:

* the target is ``codec_from_spec(o.codec, spec.input_size, o.stride).encode(...)`` of the crop
  keypoints whose visibility is at least ``o.target_min_visibility`` (never of unlabelled
  keypoints, v = 0): the other channels are zero;
* the weights are ``v >= o.weight_min_visibility`` as float32 (all ones when it is 0).

These are exactly the ``y_true`` and ``sample_weight`` the spec's losses expect.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from keras_pose.spec import CodecSpec, PoseSpec


@functools.lru_cache(maxsize=64)
def _codec(codec_spec: CodecSpec, input_size: tuple[int, int], stride: int):
    from keras_pose.codecs import codec_from_spec

    return codec_from_spec(codec_spec, input_size, stride)


def output_codecs(spec: PoseSpec) -> dict:
    """``{output name: codec}`` for a spec (codecs are cached and shared between outputs)."""
    input_size = tuple(int(v) for v in spec.input_size)
    return {o.name: _codec(o.codec, input_size, int(o.stride)) for o in spec.outputs}


@dataclasses.dataclass(frozen=True)
class TargetGroup:
    """Outputs that share one target array: the same codec and visibility rule."""

    codec: Any
    target_min_visibility: int
    names: tuple[str, ...]


def target_groups(spec: PoseSpec) -> list[TargetGroup]:
    """The distinct targets of a spec, in the order of their first output."""
    codecs = output_codecs(spec)
    groups: dict[tuple[int, int], list[str]] = {}
    for out in spec.outputs:
        key = (id(codecs[out.name]), out.target_min_visibility)
        groups.setdefault(key, []).append(out.name)
    return [
        TargetGroup(codecs[names[0]], min_visibility, tuple(names))
        for (_, min_visibility), names in groups.items()
    ]


def make_targets(
    spec: PoseSpec, keypoints_crop: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Targets ``{name: (h, w, K) float32}`` and weights ``{name: (K,) float32}`` of one crop.

    Args:
        spec: the model's spec.
        keypoints_crop: ``(K, 3)`` keypoints in crop pixels with visibility (0 outside the crop).

    Outputs with the same codec and visibility rule share one array: do not modify in place.
    """
    keypoints_crop = np.asarray(keypoints_crop, dtype=np.float32)
    if keypoints_crop.shape != (spec.num_keypoints, 3):
        raise ValueError(
            f"keypoints_crop must be ({spec.num_keypoints}, 3) for this spec, "
            f"got {keypoints_crop.shape}"
        )
    targets, weights = make_batch_targets(spec, keypoints_crop[None])
    return _first(targets), _first(weights)


def make_batch_targets(
    spec: PoseSpec, keypoints_crop: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """:func:`make_targets` of a batch: ``(N, K, 3)`` crop keypoints -> targets
    ``{name: (N, h, w, K)}`` and weights ``{name: (N, K)}`` (each crop as if alone)."""
    keypoints_crop = np.asarray(keypoints_crop, dtype=np.float32)
    if keypoints_crop.ndim != 3 or keypoints_crop.shape[1:] != (spec.num_keypoints, 3):
        raise ValueError(
            f"keypoints_crop must be (N, {spec.num_keypoints}, 3) for this spec, "
            f"got {keypoints_crop.shape}"
        )
    visibility = keypoints_crop[..., 2]
    targets = {}
    for group in target_groups(spec):
        # never drawn for unlabelled keypoints; a channel depends only on its own keypoint
        drawn = (visibility >= 1) & (visibility >= group.target_min_visibility)
        encoded = np.asarray(group.codec.encode(keypoints_crop[..., :2], drawn), np.float32)
        targets.update(dict.fromkeys(group.names, encoded))
    weights = {
        o.name: (visibility >= o.weight_min_visibility).astype(np.float32) for o in spec.outputs
    }
    return {name: targets[name] for name in spec.output_names}, weights


def _first(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The first sample of each batched array, keeping shared arrays shared."""
    views = {id(a): a[0] for a in batch.values()}
    return {name: views[id(a)] for name, a in batch.items()}


def target_shapes(spec: PoseSpec) -> dict[str, tuple[int, int, int]]:
    """``{name: (h, w, K)}`` of every output's target."""
    return {
        o.name: (*spec.heatmap_size(o.name), spec.num_keypoints) for o in spec.outputs
    }
