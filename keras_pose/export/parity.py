"""Numerical checks of an exported model against the Keras model it came from.

Heatmaps are compared on the scale of the model's targets: Megvii outputs (peak 255) are
divided by 255, MSRA outputs (peak 1) by 1, so one absolute tolerance means the same for every
family. (If a model's heatmaps exceed the target range, as an untrained network's can, the
difference is divided by their largest magnitude instead: float32 rounding grows with it.)
An export whose check fails raises :class:`ExportParityError` and is not written.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from keras_pose.spec import PoseSpec


class ExportParityError(RuntimeError):
    """An exported model disagrees with the Keras model (the export was not written)."""


class ExportCompatibilityError(RuntimeError):
    """An exported graph uses an op its target runtime cannot run (the export was not written)."""


def parity_crops(spec: PoseSpec, batch: int = 2, seed: int = 0) -> np.ndarray:
    """Random 0..255 float32 crops of the model's input size, for fp32/fp16 parity."""
    h, w = spec.input_size
    return np.random.default_rng(seed).uniform(0, 255, (batch, h, w, 3)).astype("float32")


def heatmap_errors(
    expected: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray], spec: PoseSpec, what: str
) -> dict[str, dict[str, float]]:
    """Per output: ``scaled`` = max|diff| / max(peak, max|expected|), ``relative`` =
    max|diff| / max|expected|, ``mean_relative`` = mean|diff| / max|expected|.

    Raises :class:`ExportParityError` if an output is missing, has another shape, or is not finite.
    """
    errors = {}
    for name, reference in expected.items():
        if name not in actual:
            raise ExportParityError(f"{what}: output {name!r} is missing; got {sorted(actual)}")
        got = np.asarray(actual[name], dtype=np.float64)
        reference = np.asarray(reference, dtype=np.float64)
        if got.shape != reference.shape:
            raise ExportParityError(
                f"{what}: output {name!r} has shape {got.shape}, Keras gives {reference.shape}"
            )
        if not np.all(np.isfinite(got)):
            raise ExportParityError(f"{what}: output {name!r} has non-finite values")
        diff = np.abs(got - reference)
        magnitude = max(float(np.abs(reference).max()), 1e-12)
        errors[name] = {
            "scaled": float(diff.max()) / max(spec.output(name).codec.peak, magnitude),
            "relative": float(diff.max()) / magnitude,
            "mean_relative": float(diff.mean()) / magnitude,
        }
    return errors


def require(
    errors: Mapping[str, Mapping[str, float]], measure: str, limit: float, what: str
) -> None:
    """Raise :class:`ExportParityError` naming every output whose ``measure`` exceeds ``limit``."""
    bad = {name: e[measure] for name, e in errors.items() if not e[measure] <= limit}
    if bad:
        details = ", ".join(f"{name}: {value:.3g}" for name, value in bad.items())
        raise ExportParityError(
            f"{what} differs from Keras beyond the {measure} tolerance {limit:g} ({details}); "
            "the export was not written"
        )


def keypoint_agreement(
    expected: np.ndarray,
    actual: np.ndarray,
    stride: float,
    visible: np.ndarray | None = None,
    max_cells: float = 1.0,
) -> float:
    """Fraction of (visible) keypoints within ``max_cells`` heatmap cells of each other.

    ``expected`` / ``actual`` are decoded ``(N, K, 2)`` crop-pixel keypoints (e.g. of the
    float32 and the int8 model), ``stride`` the crop pixels per heatmap cell, ``visible`` an
    optional ``(N, K)`` mask; the distance is Euclidean.
    """
    distance = np.linalg.norm(np.asarray(expected) - np.asarray(actual), axis=-1) / float(stride)
    mask = np.ones(distance.shape, bool) if visible is None else np.asarray(visible, bool)
    if not mask.any():
        raise ValueError("keypoint_agreement: no visible keypoint to compare")
    return float((distance[mask] <= max_cells).mean())
