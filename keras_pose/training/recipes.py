"""Per-family training recipes of the originals, and the published COCO AP of each model.

A recipe keeps the *shape* of the original schedule and scales its *length* to the run: warm-up
and milestones are fractions of the run's total steps, so the defaults (whose number of epochs
reproduces the original's number of training samples) give the original curve, and a shorter
run gets the same curve compressed. The optimizer itself (Adam, or RMSprop for Hourglass, with
its constants) is the model's ``default_optimizer()``; the recipe sets its learning rate.

Sources: ``/work/shared/reference/originals.md`` §1.7 (tf-cpn), §2.5 (MSPN, and RSN which
shares its solver), §4.4 (CPM), §5.4 (Hourglass), §6 (published results), and MMPose's CPM
config for the CPM schedule (peers.md §1.3).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras

from keras_pose.training.schedules import WarmupLinearDecay, WarmupMultiStep

SCHEDULES = ("family", "constant", "warmup_linear", "multistep")


@dataclasses.dataclass(frozen=True)
class FamilyRecipe:
    """How the original trained one family.

    Args:
        family: ``spec.family``.
        optimizer: what the model's ``default_optimizer()`` is (for the README).
        learning_rate: base (peak) learning rate.
        lr_batch: the learning rate is for this global batch and scales linearly with it
            (MSPN/RSN: 5e-4 per GPU of 32 crops); ``None``: independent of the batch.
        schedule: ``"warmup_linear"``, ``"multistep"`` or ``"constant"``.
        warmup: warm-up length as a fraction of the run; ``warmup_factor`` its start.
        milestones: fractions of the run at which a multistep schedule multiplies by ``decay``.
        samples: training crops the original processed; the default number of epochs repeats
            it on any data set.
        batch_per_replica: crops per GPU in the original.
        description: the schedule in words.
        source: where the facts come from.
    """

    family: str
    optimizer: str
    learning_rate: float
    lr_batch: int | None
    schedule: str
    warmup: float = 0.0
    warmup_factor: float = 1.0
    milestones: tuple[float, ...] = ()
    decay: float = 0.1
    samples: int = 0
    batch_per_replica: int = 32
    description: str = ""
    source: str = ""

    def learning_rate_for(self, global_batch: int) -> float:
        if self.lr_batch is None:
            return self.learning_rate
        return self.learning_rate * global_batch / self.lr_batch

    def default_epochs(self, samples_per_epoch: int) -> int:
        """Epochs of ``samples_per_epoch`` crops that see as many samples as the original."""
        return max(1, math.ceil(self.samples / max(1, samples_per_epoch)))


# tf-cpn: an "epoch" is 60,000 crops; x0.5 every 60 of 400 epochs; 8 GPUs x 32. Adam is
# invariant to the summed (not averaged) tower gradients, so the rate does not scale.
_TFCPN_EPOCH = 60_000
_TFCPN_EPOCHS = 400
# MSPN/RSN: 96,000 iterations of 8 x 32 crops, warm-up 2,400 iterations from 0.1x.
_MEGVII_ITERS = 96_000
_MEGVII_BATCH = 256
# MMPose CPM: 210 epochs of COCO train2017 (149,813 people), warm-up 500 of its 293-iteration
# epochs (batch 8 x 64), x0.1 at epochs 170 and 200.
_COCO_TRAIN_PEOPLE = 149_813
_CPM_ITERS = 210 * math.ceil(_COCO_TRAIN_PEOPLE / 512)

RECIPES: dict[str, FamilyRecipe] = {
    "cpn": FamilyRecipe(
        family="cpn",
        optimizer="Adam",
        learning_rate=5e-4,
        lr_batch=None,
        schedule="multistep",
        milestones=tuple(e / _TFCPN_EPOCHS for e in range(60, _TFCPN_EPOCHS, 60)),
        decay=0.5,
        samples=_TFCPN_EPOCH * _TFCPN_EPOCHS,
        batch_per_replica=32,
        description="Adam 5e-4, halved every 60 'epochs' of 60,000 crops, 400 such epochs "
                    "(24M crops, 4 per person); weight decay 1e-5 (L2)",
        source="tf-cpn config.py, tfflat/base.py, issue #17 (originals.md §1.7)",
    ),
    "mspn": FamilyRecipe(
        family="mspn",
        optimizer="Adam",
        learning_rate=5e-4,
        lr_batch=32,
        schedule="warmup_linear",
        warmup=2_400 / _MEGVII_ITERS,
        warmup_factor=0.1,
        samples=_MEGVII_ITERS * _MEGVII_BATCH,
        batch_per_replica=32,
        description="Adam 5e-4 x GPUs (32 crops each), linear warm-up over 2,400 of 96,000 "
                    "iterations from 0.1x, then linear decay to 0; weight decay 1e-5",
        source="MSPN config.py, solver.py, train.py (originals.md §2.5)",
    ),
    "hourglass": FamilyRecipe(
        family="hourglass",
        optimizer="RMSprop (rho 0.99, no momentum)",
        learning_rate=2.5e-4,
        lr_batch=None,
        schedule="constant",
        samples=100 * 8_000 * 6,
        batch_per_replica=6,
        description="RMSprop 2.5e-4 constant, batch 6, 100 epochs of 8,000 iterations; "
                    "no weight decay",
        source="pose-hg-train opts.lua, train.lua (originals.md §5.4)",
    ),
    "cpm": FamilyRecipe(
        family="cpm",
        optimizer="Adam",
        learning_rate=5e-4,
        lr_batch=None,
        schedule="multistep",
        warmup=500 / _CPM_ITERS,
        warmup_factor=0.001,
        milestones=(170 / 210, 200 / 210),
        decay=0.1,
        samples=210 * _COCO_TRAIN_PEOPLE,
        batch_per_replica=64,
        description="Adam 5e-4 (MMPose's COCO recipe; the Caffe original used SGD 8e-5 with "
                    "a summed loss), warm-up 500 iterations from 0.001x, x0.1 at epochs 170 "
                    "and 200 of 210",
        source="MMPose td-hm_cpm_8xb64-210e_coco-256x192.py (peers.md §1.3); "
               "originals.md §4.4 for the Caffe solver",
    ),
}
RECIPES["rsn"] = dataclasses.replace(
    RECIPES["mspn"], family="rsn",
    source="RSN shares MSPN's solver byte for byte (originals.md §3.1, §2.5)",
)


@dataclasses.dataclass(frozen=True)
class Published:
    """A published COCO keypoint AP of the original (or, where marked, a peer's) model."""

    input_size: tuple[int, int]
    ap: float | None
    split: str
    source: str


PUBLISHED: dict[str, Published] = {
    "cpn50": Published((256, 192), 69.7, "COCO minival, detector human AP 55.3",
                       "tf-cpn README (originals.md §6.1)"),
    "cpn101": Published((384, 288), 72.9, "COCO minival, detector human AP 55.3",
                        "tf-cpn README; no 256x192 number (originals.md §6.1)"),
    "mspn50": Published((256, 192), 71.5, "COCO minival", "MSPN README (originals.md §6.2)"),
    "2xmspn50": Published((256, 192), 74.5, "COCO minival", "MSPN README (originals.md §6.2)"),
    "3xmspn50": Published((256, 192), 75.2, "COCO minival", "MSPN README (originals.md §6.2)"),
    "4xmspn50": Published((256, 192), 75.9, "COCO minival", "MSPN README (originals.md §6.2)"),
    "rsn18": Published((256, 192), 70.4, "COCO val, the public PyTorch code (73.6 MegBrain)",
                       "RSN README (originals.md §6.3)"),
    "rsn50": Published((256, 192), 74.7, "COCO val (MegBrain version)",
                       "RSN README (originals.md §6.3)"),
    "2xrsn50": Published((256, 192), 77.2, "COCO val (MegBrain version)",
                         "RSN README (originals.md §6.3)"),
    "3xrsn50": Published((256, 192), 78.2, "COCO val (MegBrain version)",
                         "RSN README (originals.md §6.3)"),
    "4xrsn50": Published((256, 192), 79.0, "COCO val (MegBrain version)",
                         "RSN README (originals.md §6.3)"),
    "cpm": Published((256, 192), 62.7, "COCO val2017, MMPose's CPM (BatchNorm, no centre "
                     "map); the original has no COCO result", "MMPose (peers.md §1.2)"),
    "hourglass": Published((256, 256), None, "no COCO result for Newell's 8-stack network "
                           "(MPII PCKh 90.9); MMPose's 72.6 is a different Hourglass-52",
                           "originals.md §6.4, §6.5"),
    "hourglass52": Published((256, 256), 72.6, "COCO val2017, MMPose's one-stack "
                             "Hourglass-52", "MMPose (peers.md §1.2)"),
}


def recipe_for(family: str) -> FamilyRecipe:
    if family not in RECIPES:
        raise ValueError(f"no training recipe for family {family!r} (known: {sorted(RECIPES)})")
    return RECIPES[family]


def make_schedule(
    recipe: FamilyRecipe,
    total_steps: int,
    global_batch: int,
    learning_rate: float | None = None,
    schedule: str = "family",
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The learning rate (a constant or a schedule) of a run of ``total_steps`` steps.

    Args:
        recipe: the family recipe (warm-up, milestones, base rate and its batch scaling).
        total_steps: the run's length in optimizer steps.
        global_batch: crops per step over all replicas (for ``lr_batch`` scaling).
        learning_rate: the base (peak) rate instead of the recipe's scaled one.
        schedule: ``"family"`` (the recipe's), ``"constant"``, ``"warmup_linear"`` or
            ``"multistep"`` (the recipe's warm-up and milestones, or none).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    kind = recipe.schedule if schedule == "family" else schedule
    rate = recipe.learning_rate_for(global_batch) if learning_rate is None else learning_rate
    total_steps = max(1, int(total_steps))
    warmup = min(int(round(recipe.warmup * total_steps)), total_steps - 1)
    if kind == "constant":
        return float(rate)
    if kind == "warmup_linear":
        factor = recipe.warmup_factor if recipe.warmup else 0.1
        return WarmupLinearDecay(rate, total_steps, warmup, factor)
    boundaries = sorted({int(round(m * total_steps)) for m in recipe.milestones} - {0})
    return WarmupMultiStep(rate, boundaries, recipe.decay, warmup, recipe.warmup_factor)


def make_optimizer(
    model: Any,
    total_steps: int,
    global_batch: int,
    learning_rate: float | None = None,
    schedule: str = "family",
) -> keras.optimizers.Optimizer:
    """The model's ``default_optimizer()`` with the family's learning-rate schedule."""
    recipe = recipe_for(model.spec.family)
    rate = make_schedule(recipe, total_steps, global_batch, learning_rate, schedule)
    base = model.default_optimizer()
    config = base.get_config()
    config["learning_rate"] = rate
    return type(base).from_config(config)


def readme_table() -> str:
    """A markdown table of the defaults and the published AP of every model."""
    from keras_pose.models import FAMILIES

    lines = [
        "| model | input | optimizer and schedule (original) | crops seen | published AP "
        "| source |",
        "|---|---|---|---|---|---|",
    ]
    for name, family in FAMILIES.items():
        if name not in PUBLISHED:
            continue
        recipe, published = RECIPES[family], PUBLISHED[name]
        ap = "-" if published.ap is None else f"{published.ap:.1f}"
        size = "x".join(str(v) for v in published.input_size)
        lines.append(
            f"| {name} | {size} | {recipe.description} | {recipe.samples / 1e6:.1f}M "
            f"| {ap} ({published.split}) | {published.source}; {recipe.source} |"
        )
    return "\n".join(lines)
