"""Learning-rate schedules and optimizers of the family recipes.

The recipes themselves (optimizer, rate, schedule shape, crops seen, published AP) live in
each family's :class:`~keras_pose.profiles.FamilyProfile`; ``RECIPES`` and ``PUBLISHED`` are
views of the profiles. A recipe keeps the *shape* of the original schedule and scales its
*length* to the run: warm-up and milestones are fractions of the run's total steps, so the
defaults (whose number of epochs reproduces the original's number of training samples) give
the original curve, and a shorter run gets the same curve compressed.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_pose.profiles import PROFILES, Published, TrainingRecipe, profile_for
from keras_pose.training.schedules import WarmupLinearDecay, WarmupMultiStep

SCHEDULES = ("family", "constant", "warmup_linear", "multistep")

FamilyRecipe = TrainingRecipe  # the name before the profiles held the recipes

RECIPES: dict[str, TrainingRecipe] = {
    family: profile.training for family, profile in PROFILES.items()
}

PUBLISHED: dict[str, Published] = {
    name: published
    for profile in PROFILES.values()
    for name, published in profile.published.items()
}


def recipe_for(family: str) -> TrainingRecipe:
    """The training recipe of ``family`` (a ValueError names the known families)."""
    return profile_for(family).training


def make_schedule(
    recipe: FamilyRecipe,
    total_steps: int,
    global_batch: int,
    learning_rate: float | None = None,
    schedule: str = "family",
    decay_fraction: float | None = None,
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The learning rate (a constant or a schedule) of a run of ``total_steps`` steps.

    Args:
        recipe: the family recipe (warm-up, milestones, base rate and its batch scaling).
        total_steps: the run's length in optimizer steps.
        global_batch: crops per step over all replicas (for ``lr_batch`` scaling).
        learning_rate: the base (peak) rate instead of the recipe's scaled one.
        schedule: ``"family"`` (the recipe's), ``"constant"``, ``"warmup_linear"`` or
            ``"multistep"`` (the recipe's warm-up and milestones, or none).
        decay_fraction: a ``"warmup_linear"`` schedule holds its peak and decays over this
            last fraction of the run only (``None``: from the warm-up's end, the originals').
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    kind = recipe.schedule if schedule == "family" else schedule
    if decay_fraction is not None and kind != "warmup_linear":
        raise ValueError(f"decay_fraction applies to the warmup_linear schedule, not {kind!r}")
    rate = recipe.learning_rate_for(global_batch) if learning_rate is None else learning_rate
    total_steps = max(1, int(total_steps))
    warmup = min(int(round(recipe.warmup * total_steps)), total_steps - 1)
    if kind == "constant":
        return float(rate)
    if kind == "warmup_linear":
        factor = recipe.warmup_factor if recipe.warmup else 0.1
        return WarmupLinearDecay(rate, total_steps, warmup, factor,
                                 decay_length(total_steps, warmup, decay_fraction))
    boundaries = sorted({int(round(m * total_steps)) for m in recipe.milestones} - {0})
    return WarmupMultiStep(rate, boundaries, recipe.decay, warmup, recipe.warmup_factor)


def decay_length(total_steps: int, warmup_steps: int, decay_fraction: float | None) -> int | None:
    """The steps of a decay over the last ``decay_fraction`` of a run (at least one, at most
    the steps after the warm-up); ``None`` for none given."""
    if decay_fraction is None:
        return None
    if not 0.0 < decay_fraction <= 1.0:
        raise ValueError(f"decay_fraction must be in (0, 1], got {decay_fraction}")
    return min(max(1, int(round(decay_fraction * total_steps))), total_steps - warmup_steps)


def make_optimizer(
    model: Any,
    total_steps: int,
    global_batch: int,
    learning_rate: float | None = None,
    schedule: str = "family",
    decay_fraction: float | None = None,
) -> keras.optimizers.Optimizer:
    """The family's optimizer (``model.default_optimizer``) with its learning-rate schedule."""
    recipe = recipe_for(model.spec.family)
    rate = make_schedule(recipe, total_steps, global_batch, learning_rate, schedule,
                         decay_fraction)
    return model.default_optimizer(learning_rate=rate)


def learning_rate_schedule(optimizer: Any) -> Any:
    """The learning rate ``optimizer`` was given: a schedule object, or its rate variable."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return optimizer._learning_rate  # noqa: SLF001  (the schedule object, not its value)


def readme_table() -> str:
    """A markdown table of the defaults and the published AP of every model (README)."""
    lines = [
        "| model | input | optimizer and schedule (original) | crops seen | published AP "
        "| source |",
        "|---|---|---|---|---|---|",
    ]
    for profile in PROFILES.values():
        recipe = profile.training
        for name, published in profile.published.items():
            ap = "-" if published.ap is None else f"{published.ap:.1f}"
            size = "x".join(str(v) for v in published.input_size)
            lines.append(
                f"| {name} | {size} | {recipe.description} | {recipe.samples / 1e6:.1f}M "
                f"| {ap} ({published.split}) | {published.source}; {recipe.source} |"
            )
    return "\n".join(lines)
