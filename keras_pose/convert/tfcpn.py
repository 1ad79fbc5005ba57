"""Import an original tf-cpn (TF1, TF-slim) checkpoint into :class:`keras_pose.models.CPN`.

The checkpoint is read with ``tf.train.load_checkpoint`` (no TF1 graph code); every model variable
is named by :func:`keras_pose.models.cpn.tfcpn_variable_name` (``block2_unit_1/conv2/bn/gamma`` ->
``resnet_v1_50/block2/unit_2/bottleneck_v1/conv2/BatchNorm/gamma``) and must find exactly that
tensor, with exactly its shape. Slim stores conv kernels HWIO like Keras, so values are copied
as they are. Optimizer slots (``.../Adam``, ``.../Adam_1``, ``beta{1,2}_power``, momentum) and
``global_step`` are the only checkpoint entries allowed to stay unused.

The released models ran with a BatchNorm epsilon of 1.001e-5 (TF 1.x raised the 1e-9 the source
asks for; ``docs/provenance.md#tfcpn-graph``). ``CPNModel``'s default ``bn_epsilon`` is that
value; a model built with another epsilon loads the same tensors but does not reproduce the
released outputs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import keras
import numpy as np

from keras_pose.convert.mapping import Assignment, Layout, WeightMappingError, assign

# Checkpoint entries that are training state, not weights.
_TRAINING_STATE = re.compile(
    r"(^|/)(global_step|beta1_power|beta2_power)(_\d+)?$"
    r"|/(Adam|Adam_1|Momentum|RMSProp|RMSProp_1)$"
)


def is_training_state(name: str) -> bool:
    """True for optimizer slots and counters a TF1 ``Saver`` writes beside the weights."""
    return bool(_TRAINING_STATE.search(name))


def read_tf_checkpoint(prefix: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a TF checkpoint (``model.ckpt-350``, no ``.index`` suffix) by name."""
    import tensorflow as tf

    prefix = os.fspath(prefix)
    if prefix.endswith(".index"):
        prefix = prefix[: -len(".index")]
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (ValueError, tf.errors.OpError) as error:
        raise FileNotFoundError(f"cannot read a TF checkpoint at {prefix!r}: {error}") from None
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def tfcpn_assignments(model: keras.Model) -> list[Assignment]:
    """One :class:`Assignment` per CPN variable, named the way tf-cpn's graph names it."""
    from keras_pose.models.cpn import tfcpn_variable_name

    depth = getattr(model, "depth", None)
    if depth is None:
        raise TypeError(f"{model.name} is not a keras_pose CPN (it has no `depth`)")
    return [
        Assignment(variable, tfcpn_variable_name(variable.path, depth), Layout.SAME)
        for variable in model.weights
    ]


def load_tfcpn_weights(
    model: keras.Model, tensors: Mapping[str, np.ndarray], description: str = "tf-cpn weights"
) -> int:
    """Load ``{tf-cpn variable name: array}`` into a CPN; returns the number of variables set.

    Raises:
        WeightMappingError: unmatched names, duplicates or shape mismatches (all listed).
    """
    return assign(
        tfcpn_assignments(model), tensors, ignored=is_training_state, description=description
    )


def load_tfcpn_checkpoint(model: keras.Model, ckpt_prefix: str | os.PathLike) -> int:
    """Load an original tf-cpn checkpoint (e.g. ``snapshot_350.ckpt``) into a CPN50/CPN101.

    Every model variable takes exactly one checkpoint tensor and every checkpoint tensor but
    optimizer state fills exactly one variable; otherwise :class:`WeightMappingError` lists the
    unmatched names and shapes and nothing is written. Returns the number of variables set.
    """
    tensors = read_tf_checkpoint(ckpt_prefix)
    return load_tfcpn_weights(model, tensors, description=os.fspath(ckpt_prefix))


__all__ = [
    "WeightMappingError",
    "is_training_state",
    "load_tfcpn_checkpoint",
    "load_tfcpn_weights",
    "read_tf_checkpoint",
    "tfcpn_assignments",
]
