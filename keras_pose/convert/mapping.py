"""The core of every weight import: a one-to-one, shape-checked assignment of source arrays.

A converter describes, for every variable of a Keras model, which source array it takes and how
that array is laid out (:class:`Layout`). :func:`assign` then checks that the correspondence is
one-to-one in both directions (every model variable gets exactly one source array, every source
array is used exactly once, apart from explicitly ignored keys) and that every shape matches,
and only then writes anything. Any problem raises one :class:`WeightMappingError` that lists all
of them, so a wrong mapping can never load silently.

The source is a plain ``{name: numpy array}`` dict: nothing here needs TensorFlow's checkpoint
reader or PyTorch.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Mapping

import keras
import numpy as np


class WeightMappingError(ValueError):
    """The source weights and the model do not correspond one-to-one (details in the message)."""


class Layout(enum.Enum):
    """How a source array is laid out relative to the Keras variable it fills."""

    SAME = "same"  # identical layout (TF-slim HWIO kernels, vectors)
    TORCH_CONV = "torch_conv"  # PyTorch Conv2d weight (O, I, kH, kW) -> Keras (kH, kW, I, O)
    TORCH_DEPTHWISE = "torch_depthwise"  # (C, 1, kH, kW) -> Keras (kH, kW, C, 1)
    TORCH_LINEAR = "torch_linear"  # PyTorch Linear weight (out, in) -> Keras Dense (in, out)


def to_keras_layout(array: np.ndarray, layout: Layout) -> np.ndarray:
    """Rearrange a source array into the Keras variable's layout."""
    array = np.asarray(array)
    if layout is Layout.SAME:
        return array
    if layout is Layout.TORCH_CONV:
        return array.transpose(2, 3, 1, 0) if array.ndim == 4 else array
    if layout is Layout.TORCH_DEPTHWISE:
        return array.transpose(2, 3, 0, 1) if array.ndim == 4 else array
    if layout is Layout.TORCH_LINEAR:
        return array.T if array.ndim == 2 else array
    raise ValueError(f"unknown layout {layout!r}")


@dataclasses.dataclass(frozen=True)
class Assignment:
    """Keras variable ``variable`` takes source array ``source`` (in ``layout``)."""

    variable: keras.Variable
    source: str
    layout: Layout = Layout.SAME


def _shape(array) -> tuple[int, ...]:
    return tuple(int(s) for s in np.shape(array))


def _problems(
    assignments: list[Assignment],
    source: Mapping[str, np.ndarray],
    ignored: Callable[[str], bool],
    unmapped: list[tuple[str, str]],
) -> list[str]:
    problems = [f"model variable {path} {shape}: {why}" for path, shape, why in unmapped]
    users: dict[str, list[str]] = {}
    for item in assignments:
        users.setdefault(item.source, []).append(item.variable.path)
        if item.source not in source:
            problems.append(
                f"model variable {item.variable.path} {tuple(item.variable.shape)} expects "
                f"{item.source!r}, which the source does not have"
            )
            continue
        got = _shape(to_keras_layout(source[item.source], item.layout))
        if got != tuple(item.variable.shape):
            problems.append(
                f"shape mismatch: {item.source!r} {_shape(source[item.source])} "
                f"({item.layout.value} -> {got}) vs model variable {item.variable.path} "
                f"{tuple(item.variable.shape)}"
            )
    for name, paths in users.items():
        if len(paths) > 1:
            problems.append(f"source {name!r} would fill {len(paths)} variables: {paths}")
    for name in source:
        if name not in users and not ignored(name):
            problems.append(f"source {name!r} {_shape(source[name])} matches no model variable")
    return problems


def assign(
    assignments: Iterable[Assignment],
    source: Mapping[str, np.ndarray],
    *,
    ignored: Callable[[str], bool] = lambda name: False,
    unmapped: Iterable[tuple[str, str, str]] = (),
    description: str = "weights",
) -> int:
    """Check the assignment is one-to-one and shape-exact, then write every value.

    Args:
        assignments: one :class:`Assignment` per model variable.
        source: ``{name: array}``.
        ignored: source names that legitimately have no model counterpart (e.g. PyTorch's
            ``num_batches_tracked``).
        unmapped: ``(variable path, shape, reason)`` of model variables the converter could not
            name a source for; each is reported as a problem.
        description: what is being loaded, for the error message (e.g. the file name).

    Returns:
        The number of variables written.

    Raises:
        WeightMappingError: listing every unmatched name, duplicate and shape mismatch.
    """
    assignments = list(assignments)
    problems = _problems(assignments, source, ignored, list(unmapped))
    if problems:
        listing = "\n  ".join(problems)
        raise WeightMappingError(
            f"{description}: {len(problems)} problem(s) mapping {len(source)} source arrays "
            f"onto {len(assignments)} model variables:\n  {listing}"
        )
    for item in assignments:
        value = to_keras_layout(source[item.source], item.layout)
        item.variable.assign(value.astype(item.variable.dtype))
    return len(assignments)


def layer_of_variable(model: keras.Model) -> dict[int, keras.layers.Layer]:
    """``{id(variable): the innermost layer that owns it}`` for every variable of ``model``."""
    owners: dict[int, keras.layers.Layer] = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for variable in layer.weights:
            owners[id(variable)] = layer  # inner layers come later and overwrite outer ones
    return owners


def torch_layout(layer: keras.layers.Layer) -> Layout:
    """The layout of the PyTorch tensor that fills a variable of ``layer``."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return Layout.TORCH_DEPTHWISE
    if isinstance(layer, keras.layers.Conv2D):
        return Layout.TORCH_CONV
    if isinstance(layer, keras.layers.Dense):
        return Layout.TORCH_LINEAR
    return Layout.SAME


# Keras variable leaf -> PyTorch parameter / buffer leaf.
TORCH_LEAF = {
    "kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def is_torch_bookkeeping(name: str) -> bool:
    """PyTorch buffers that carry no weight (BatchNorm's ``num_batches_tracked``)."""
    return name.endswith("num_batches_tracked")


def torch_assignments(
    model: keras.Model, module_of: Callable[[str], str | None]
) -> tuple[list[Assignment], list[tuple[str, str, str]]]:
    """Assignments of every model variable from a PyTorch state dict.

    ``module_of(keras layer path)`` names the PyTorch module (``backbone.layer1.0.conv1``) of
    the Keras layer that owns a variable (``stage1_layer1_block1/conv1/conv``), or None.
    Returns ``(assignments, unmapped)`` for :func:`assign`.
    """
    owners = layer_of_variable(model)
    assignments, unmapped = [], []
    for variable in model.weights:
        layer_path, leaf = variable.path.rsplit("/", 1)
        module = module_of(layer_path)
        if module is None or leaf not in TORCH_LEAF:
            unmapped.append(
                (variable.path, tuple(variable.shape), "no PyTorch counterpart in this mapping")
            )
            continue
        layout = torch_layout(owners[id(variable)])
        assignments.append(Assignment(variable, f"{module}.{TORCH_LEAF[leaf]}", layout))
    return assignments, unmapped
