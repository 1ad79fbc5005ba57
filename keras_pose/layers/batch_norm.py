"""BatchNormalization computed by one fused kernel where the backend has one.

Keras 3's ``BatchNormalization`` builds the normalisation from generic ops (moments, a
subtraction, a product, a square root...) and, under a ``mixed_bfloat16`` policy, first casts its
input to float32. On the TensorFlow backend that is about 15 small ops per layer forward and
more backward; profiled in a CPU training step of RSN-50 they cost about a quarter of the step
(``benchmarks/train_speed.md``). :class:`BatchNorm` is the same layer (same weights, names,
config, moving-statistics update and outputs within float rounding) whose TensorFlow path is one
``FusedBatchNormV3`` op forward and one ``FusedBatchNormGradV3`` backward, as PyTorch's
``batch_norm`` is one kernel. Other backends keep Keras' own code (XLA fuses it there).
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="keras_pose")
class BatchNorm(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` over the last axis, fused on TensorFlow.

    Training normalises with the batch's mean and biased variance and moves the moving
    statistics by ``momentum`` exactly as Keras does; inference uses the moving statistics.
    Masks, renormalisation, synchronised statistics and other axes fall back to Keras' code.
    """

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        return _tf_fused_batch_norm(self, inputs, bool(training) and self.trainable)

    def _fusable(self, inputs, mask) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and keras.backend.standardize_dtype(inputs.dtype) in ("float32", "bfloat16", "float16")
        )


def _tf_fused_batch_norm(layer: BatchNorm, inputs, training: bool):
    """``FusedBatchNormV3`` (NHWC) with Keras' epsilon (no 1.001e-5 floor) and update rule."""
    import tensorflow as tf  # only reached on the TensorFlow backend

    # Like Keras, normalise in float32: oneDNN's float32 kernels are also about 2x faster
    # here than its bfloat16 ones (forward + backward, measured on AVX512-BF16).
    inputs = tf.cast(inputs, tf.float32)
    channels = inputs.shape[-1]
    gamma = layer.gamma if layer.scale else tf.ones([channels], tf.float32)
    beta = layer.beta if layer.center else tf.zeros([channels], tf.float32)
    gamma, beta = tf.cast(gamma, tf.float32), tf.cast(beta, tf.float32)
    if training:
        empty = tf.constant([], tf.float32)
        outputs, mean, unbiased_variance = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=gamma, offset=beta, mean=empty, variance=empty,
            epsilon=layer.epsilon, data_format="NHWC", is_training=True,
        )[:3]
        # The kernel returns the Bessel-corrected variance; Keras moves the biased one.
        count = tf.cast(tf.size(inputs, out_type=tf.int64) // channels, tf.float32)
        variance = unbiased_variance * ((count - 1.0) / tf.maximum(count, 1.0))
        momentum = layer.momentum
        layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
        layer.moving_variance.assign(
            layer.moving_variance * momentum + variance * (1.0 - momentum)
        )
    else:
        outputs = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=gamma, offset=beta,
            mean=tf.cast(layer.moving_mean, tf.float32),
            variance=tf.cast(layer.moving_variance, tf.float32),
            epsilon=layer.epsilon, data_format="NHWC", is_training=False,
        )[0]
    return tf.cast(outputs, layer.compute_dtype)
