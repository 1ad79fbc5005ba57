"""Optimizers of the family recipes, with a fused update on TensorFlow.

Keras 3's ``Adam`` writes each variable's update as about a dozen small ops (casts, powers,
``m``, ``v``, the square root and the division); on TensorFlow that is ~12 graph nodes per
variable (RSN-18: 5,500 nodes, 16 s of Python tracing out of a 28 s first step, and ~3% of
every CPU step spent scheduling them). :class:`Adam` computes the same update with TensorFlow's
fused ``ResourceApplyAdam`` kernel, one node per variable (and ``beta^t`` once per step):

    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    m += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2)
    w -= m * alpha / (sqrt(v) + epsilon)

which is Keras' formula term for term (only ``1 - beta`` is rounded in float32 by the kernel
instead of in float64 by Python: a relative 2e-7 on ``1 - beta_1`` and 1.3e-5 on ``1 - beta_2``,
~1e-5 of each update). Weight decay,
gradient clipping, accumulation, EMA and loss scaling stay Keras' (the base class applies
them around ``update_step``); ``amsgrad``, other backends and variables without a resource
handle keep Keras' own update. Same variables and config as ``keras.optimizers.Adam``, so
checkpoints and backups of either load into the other.
"""

from __future__ import annotations

import weakref
from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_pose")
class Adam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` whose update is one fused kernel per variable on TensorFlow."""

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        handle = _resource_handle(variable)
        if self.amsgrad or handle is None:
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        dtype = variable.dtype
        index = self._get_variable_index(variable)
        momentum, velocity = self._momentums[index], self._velocities[index]
        beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        beta1_power, beta2_power = self._beta_powers(index, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=handle, m=_resource_handle(momentum), v=_resource_handle(velocity),
            beta1_power=beta1_power, beta2_power=beta2_power,
            lr=ops.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=ops.cast(self.epsilon, dtype), grad=ops.cast(gradient, dtype),
            use_locking=False,
        )

    def _beta_powers(self, index: int, dtype: Any) -> tuple[Any, Any]:
        """``(beta_1^t, beta_2^t)`` of this step, computed once per step and dtype in a traced
        graph (not once per variable: 4 scalar ops x every variable). A step updates each
        variable once, so a variable seen again starts the next step's powers."""
        import tensorflow as tf

        graph = tf.compat.v1.get_default_graph() if tf.inside_function() else None
        steps = _POWERS.setdefault(graph, {}) if graph is not None else {}
        key = (id(self), dtype)
        seen, powers = steps.get(key, (set(), None))
        if powers is None or index in seen:
            local_step = ops.cast(self.iterations + 1, dtype)
            powers = (ops.power(ops.cast(self.beta_1, dtype), local_step),
                      ops.power(ops.cast(self.beta_2, dtype), local_step))
            seen = set()
        seen.add(index)
        steps[key] = (seen, powers)
        return powers


# per traced graph: (optimizer id, dtype) -> (variables updated, beta powers of their step)
_POWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _resource_handle(variable: Any) -> Any:
    """The TensorFlow resource handle behind a Keras variable (``None`` on other backends)."""
    if keras.backend.backend() != "tensorflow":
        return None
    return getattr(variable, "handle", None)


OPTIMIZERS = {"Adam": Adam}


def optimizer_class(name: str) -> type[keras.optimizers.Optimizer]:
    """The optimizer a recipe names: this module's fused version where there is one, else
    ``keras.optimizers.<name>``."""
    return OPTIMIZERS.get(name) or getattr(keras.optimizers, name)
