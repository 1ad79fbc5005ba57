"""`PoseModel`: a functional Keras model with named heatmap outputs and a :class:`PoseSpec`.

Each family subclasses it (KerasHub style): the constructor builds the functional graph from
its own arguments, ``get_config`` returns those arguments, so a ``.keras`` file rebuilds the
same graph and the spec travels with the weights. What a family is beyond its graph (optimizer,
augmentation, evaluation protocol) is its :class:`~keras_pose.profiles.FamilyProfile`, found
through ``spec.family``.

Also here, what every family's builder shares: the argument checks (:func:`check_input_shape`,
:func:`check_variant`, :func:`check_positive`), :func:`finish_builder` (weights, compile),
:func:`keyword_builder` and the deprecation helpers for the former names.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras

from keras_pose.optimizers import optimizer_class
from keras_pose.profiles import FamilyProfile, profile_for
from keras_pose.spec import PoseSpec

IMAGE_INPUT = "image"
VARIANTS = ("original", "mmpose")


def check_input_shape(
    input_shape: Sequence[int], family: str, multiple: int = 1, minimum: int = 1
) -> tuple[int, int, int]:
    """``input_shape`` as ints ``(height, width, 3)``; a ValueError names ``family`` and the rule
    broken (static shape, 3 channels, sides multiples of ``multiple`` and >= ``minimum``)."""
    shape = tuple(input_shape)
    if len(shape) != 3 or any(v is None for v in shape) or int(shape[2]) != 3:
        raise ValueError(
            f"{family}: input_shape must be a static (height, width, 3), got {shape}: the "
            "model is built for one crop size (its weights load into the same model of any size)"
        )
    height, width, channels = (int(v) for v in shape)
    if height % multiple or width % multiple:
        raise ValueError(
            f"{family}: input height and width must be multiples of {multiple}, "
            f"got {height}x{width}"
        )
    if height < minimum or width < minimum:
        raise ValueError(
            f"{family}: input height and width must be >= {minimum}, got {height}x{width}"
        )
    return height, width, channels


def check_variant(variant: str, family: str, allowed: Sequence[str] = VARIANTS) -> str:
    """``variant`` if ``family`` builds it (``"original"``, ``"mmpose"``), else a ValueError."""
    if variant not in allowed:
        raise ValueError(f"{family}: variant must be one of {tuple(allowed)}, got {variant!r}")
    return variant


def check_positive(family: str, **values: int) -> None:
    """A ValueError naming the first argument below 1."""
    for label, value in values.items():
        if value < 1:
            raise ValueError(f"{family}: {label} must be >= 1, got {value}")


class PoseModel(keras.Model):
    """Base class of every keras-pose model.

    Subclasses call ``super().__init__(inputs=..., outputs={name: tensor}, spec=...)`` and
    implement ``get_config`` (their constructor arguments). ``variant`` says which graph
    was built (``"original"``, or ``"mmpose"`` for MMPose's port).
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

    @property
    def decode_refine(self) -> str | None:
        """The decode's sub-cell step (``"quarter"``: the originals', ``"dark"``, ``None``),
        which the Predictor, the evaluation and the exports use; saved with the model."""
        return self._pose_spec.refine

    @decode_refine.setter
    def decode_refine(self, refine: str | None) -> None:
        self._pose_spec = self._pose_spec.with_refine(refine)

    variant = "original"

    @property
    def profile(self) -> FamilyProfile:
        """The family's profile (optimizer, augmentation, evaluation protocol, results)."""
        return profile_for(self.spec.family)

    def default_optimizer(self, learning_rate: Any = None) -> keras.optimizers.Optimizer:
        """The optimizer the family's profile names, at its base learning rate (or at
        ``learning_rate``, a float or a schedule)."""
        recipe = self.profile.training
        rate = recipe.learning_rate if learning_rate is None else learning_rate
        optimizer = optimizer_class(recipe.optimizer)
        return optimizer(learning_rate=rate, **recipe.optimizer_options)

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
        return {"name": self.name, "trainable": self.trainable, "decode_refine": self.decode_refine}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], custom_objects: Any = None) -> PoseModel:
        config = dict(config)
        trainable = config.pop("trainable", True)
        refine = config.pop("decode_refine", "quarter")  # (files saved before it was kept)
        model = cls(**config)
        model.trainable = trainable
        model.decode_refine = refine
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


def keyword_builder(*legacy_order: str) -> Callable[[Callable[..., PoseModel]], Callable]:
    """Decorates a keyword-only builder so that positional calls in ``legacy_order`` (the
    builder's argument order before every builder took keywords) still work for one release,
    with a DeprecationWarning."""

    def decorate(function: Callable[..., PoseModel]) -> Callable[..., PoseModel]:
        @functools.wraps(function)
        def build(*args: Any, **kwargs: Any) -> PoseModel:
            if args:
                kwargs = _legacy_keywords(function.__name__, args, legacy_order, kwargs)
            return function(**kwargs)

        return build

    return decorate


def _legacy_keywords(
    builder: str, args: tuple, legacy_order: Sequence[str], kwargs: dict[str, Any]
) -> dict[str, Any]:
    if len(args) > len(legacy_order):
        raise TypeError(f"{builder}() takes keyword arguments, got {len(args)} positional")
    names = legacy_order[: len(args)]
    warnings.warn(
        f"{builder}(): positional arguments are deprecated and will be removed in the next "
        f"release; pass {', '.join(names)} by keyword",
        DeprecationWarning,
        stacklevel=3,
    )
    for name, value in zip(names, args):
        if name in kwargs:
            raise TypeError(f"{builder}() got multiple values for argument {name!r}")
        kwargs[name] = value
    return kwargs


def deprecated_alias(module: str, name: str, aliases: Mapping[str, Any]) -> Any:
    """A module ``__getattr__`` body: the new object of an old name, with a DeprecationWarning
    (``aliases``: old name -> new object); an AttributeError for any other name."""
    if name not in aliases:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new = aliases[name]
    warnings.warn(
        f"{module}.{name} is deprecated and will be removed in the next release; use "
        f"{new.__name__}",
        DeprecationWarning,
        stacklevel=3,
    )
    return new


def register_legacy_name(cls: type, old_name: str) -> None:
    """Let ``.keras`` files saved under the class's former name ``old_name`` load."""
    keras.saving.get_custom_objects()[f"keras_pose>{old_name}"] = cls
