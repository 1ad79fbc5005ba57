"""FLOPs of one forward pass, counted by TensorFlow's profiler on the model's inference graph.

``flops(model)`` traces ``model(x, training=False)`` for a batch of the model's input size into
a concrete function and asks ``tf.compat.v1.profiler`` for the ``float_operation`` total of its
graph (Keras layers are inlined into it; freezing the variables gives the same count). What
TensorFlow counts (its registered ``flops`` statistics, with static shapes):

* ``Conv2D``, ``DepthwiseConv2dNative``, ``MatMul``: 2 x multiply-accumulates
  (a k x k conv from Cin to Cout channels on an H x W output: ``2*H*W*k*k*Cin*Cout``);
* element-wise ``Add``/``AddV2``/``Sub``/``Mul``/``RealDiv``/``Rsqrt``/``BiasAdd``...: one per
  output element. Inference BatchNorm lowers to ``x * a + b`` (two per element, plus a few per
  channel to fold ``a`` and ``b``), a conv bias to one ``BiasAdd`` per element, a residual sum
  to one per element;
* ``MaxPool``/``AvgPool``: one per window element per output element;
* ``FusedBatchNormV3`` (keras_pose's ``BatchNorm`` on TensorFlow), for which TensorFlow has no
  statistic: counted here as the ``x * a + b`` it computes at inference, two per output element
  plus five per channel (folding ``a`` and ``b``), as Keras' unfused layer counts;
* nothing for ``Relu``, ``Pad``, ``ConcatV2``, ``ResizeBilinear``, reshapes and casts (TF has
  no flops statistic for them). A bilinear resize costs about 6 per output element, far below
  the convs (CPN-50 at 256x192: ~3.6M resized values, ~0.02 GFLOPs of 14.5).

So the figure is the usual "2 x MAC" convolution count plus the element-wise work of BN,
biases, residual sums and input normalisation. It needs the TensorFlow backend.
"""

from __future__ import annotations

import keras


def flops(model: keras.Model, batch_size: int = 1) -> int:
    """FLOPs of ``model(x, training=False)`` on a batch of ``batch_size`` at its input size."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"flops() profiles a TensorFlow graph; KERAS_BACKEND is {keras.backend.backend()!r}"
        )
    import tensorflow as tf

    input_shape = tuple(model.inputs[0].shape[1:])
    if any(dim is None for dim in input_shape):
        raise ValueError(f"flops() needs a static model input shape, got {input_shape}")
    spec = tf.TensorSpec((batch_size, *input_shape), model.inputs[0].dtype)
    forward = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # the profiler's shape helper logs a TF1 deprecation warning
    try:
        profile = tf.compat.v1.profiler.profile(forward.graph, options=options)
    finally:
        logger.setLevel(level)
    return int(profile.total_float_ops) + _fused_batch_norm_flops(forward.graph)


def _fused_batch_norm_flops(graph) -> int:
    """``2 * elements + 5 * channels`` per fused batch-norm op (TF counts none for them)."""
    total = 0
    for op in graph.get_operations():
        if op.type.startswith("FusedBatchNorm") and "Grad" not in op.type:
            shape = op.outputs[0].shape
            if not shape.is_fully_defined():
                raise ValueError(f"flops() needs static shapes, got {shape} at {op.name}")
            total += 2 * shape.num_elements() + 5 * int(shape[-1])
    return total
