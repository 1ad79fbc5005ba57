"""`PoseModel`: a functional Keras model with named heatmap outputs and a :class:`PoseSpec`.

Each family subclasses it (KerasHub style): the constructor builds the functional graph from
its own arguments, ``get_config`` returns those arguments, so a ``.keras`` file rebuilds the
same graph and the spec travels with the weights.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import keras

from keras_pose.spec import PoseSpec

IMAGE_INPUT = "image"


class PoseModel(keras.Model):
    """Base class of every keras-pose model.

    Subclasses call ``super().__init__(inputs=..., outputs={name: tensor}, spec=...)`` and
    implement ``get_config`` (their constructor arguments) and ``default_optimizer``.
    The last layer of each output carries the output's name, so exported signatures use it.

    The model takes the raw crop, 0..255 float (or uint8), in ``spec.channel_order``, and
    returns a dict ``{output name: (N, h, w, K) heatmaps}``.
    """

    def __init__(self, *args: Any, spec: PoseSpec, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pose_spec = spec

    @property
    def spec(self) -> PoseSpec:
        return self._pose_spec

    def default_optimizer(self) -> keras.optimizers.Optimizer:
        """The optimizer (and learning rate) the original trained this family with."""
        return keras.optimizers.Adam(5e-4)

    def default_losses(self) -> tuple[dict[str, keras.losses.Loss], dict[str, float]]:
        """Per-output losses and loss weights from the spec."""
        from keras_pose.losses import loss_for_output

        top_k = min(8, self.spec.num_keypoints)
        losses = {o.name: loss_for_output(o, top_k) for o in self.spec.outputs}
        weights = {o.name: float(o.loss_weight) for o in self.spec.outputs}
        return losses, weights

    def compile(
        self,
        optimizer: Any = None,
        loss: Any = None,
        loss_weights: Any = None,
        **kwargs: Any,
    ) -> None:
        """``keras.Model.compile`` with the family's optimizer and losses as defaults."""
        if loss is None:
            loss, default_weights = self.default_losses()
            loss_weights = default_weights if loss_weights is None else loss_weights
        super().compile(
            optimizer=optimizer if optimizer is not None else self.default_optimizer(),
            loss=loss,
            loss_weights=loss_weights,
            **kwargs,
        )

    def compile_from_config(self, config: Mapping[str, Any]) -> None:
        """Recompile from a ``.keras`` file's compile config (optimizer state then loads)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _ensure_compiled(self) -> None:
        """Compile with the family defaults if the user has not compiled the model yet."""
        if self.compiled:
            return
        strategy = getattr(self, "distribute_strategy", None)
        if strategy is None:
            self.compile()
            return
        with strategy.scope():
            self.compile()

    def fit(self, *args: Any, **kwargs: Any):
        """``keras.Model.fit``; an uncompiled model is first compiled with the family defaults."""
        self._ensure_compiled()
        return super().fit(*args, **kwargs)

    def evaluate(self, *args: Any, **kwargs: Any):
        """``keras.Model.evaluate``; compiles with the family defaults first if needed."""
        self._ensure_compiled()
        return super().evaluate(*args, **kwargs)

    def train_on_batch(self, *args: Any, **kwargs: Any):
        self._ensure_compiled()
        return super().train_on_batch(*args, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], custom_objects: Any = None) -> "PoseModel":
        config = dict(config)
        trainable = config.pop("trainable", True)
        model = cls(**config)
        model.trainable = trainable
        return model


def finish_builder(model: PoseModel, weights: str | os.PathLike | None, compile: bool) -> PoseModel:
    """Shared tail of every builder: load saved weights, then compile with the family defaults."""
    if weights is not None:
        path = os.fspath(weights)
        if not os.path.exists(path):
            raise FileNotFoundError(f"weights file not found: {path}")
        model.load_weights(path)
    if compile:
        model.compile()
    return model
