"""Per-output training targets and keypoint weights, read from a model's :class:`PoseSpec`.

For each supervised output ``o`` of ``spec.outputs``:

* the target is ``codec_from_spec(o.codec, spec.input_size, o.stride).encode(...)`` of the crop
  keypoints, with the channels of keypoints whose visibility is below
  ``o.target_min_visibility`` set to zero (never drawn for unlabelled keypoints, v = 0);
* the weights are ``v >= o.weight_min_visibility`` as float32 (all ones when it is 0).

These are exactly the ``y_true`` and ``sample_weight`` the spec's losses expect.
"""

from __future__ import annotations

import functools

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
    visibility = keypoints_crop[:, 2]
    labelled = visibility >= 1
    codecs = output_codecs(spec)
    encoded: dict[int, np.ndarray] = {}  # one encode per distinct codec ...
    masked: dict[tuple[int, int], np.ndarray] = {}  # ... and one masking per visibility rule
    targets, weights = {}, {}
    for out in spec.outputs:
        codec = codecs[out.name]
        if id(codec) not in encoded:
            encoded[id(codec)] = np.asarray(
                codec.encode(keypoints_crop[:, :2], labelled), dtype=np.float32
            )
        key = (id(codec), out.target_min_visibility)
        if key not in masked:
            keep = labelled & (visibility >= out.target_min_visibility)
            full = encoded[id(codec)]
            # the codec already leaves unlabelled keypoints' channels at zero
            masked[key] = full if np.array_equal(keep, labelled) else full * keep.astype(np.float32)
        targets[out.name] = masked[key]
        weights[out.name] = (visibility >= out.weight_min_visibility).astype(np.float32)
    return targets, weights


def target_shapes(spec: PoseSpec) -> dict[str, tuple[int, int, int]]:
    """``{name: (h, w, K)}`` of every output's target."""
    return {
        o.name: (*spec.heatmap_size(o.name), spec.num_keypoints) for o in spec.outputs
    }
