"""Training at scale: strategies, the originals' schedules, resumable runs, periodic COCO AP.

``train(TrainConfig(...))`` is what ``recipes/train_coco.py`` runs. The learning-rate schedules
are registered Keras objects: importing this package lets ``.keras`` files with compiled
optimizers load.
"""

from keras_pose.training import plan
from keras_pose.training.config import SYNTHETIC_DEFAULTS, TrainConfig
from keras_pose.training.recipes import (
    PUBLISHED,
    RECIPES,
    FamilyRecipe,
    make_optimizer,
    make_schedule,
    readme_table,
)
from keras_pose.training.schedules import WarmupLinearDecay, WarmupMultiStep
from keras_pose.training.trainer import train

__all__ = [
    "PUBLISHED",
    "RECIPES",
    "SYNTHETIC_DEFAULTS",
    "FamilyRecipe",
    "TrainConfig",
    "WarmupLinearDecay",
    "WarmupMultiStep",
    "make_optimizer",
    "make_schedule",
    "plan",
    "readme_table",
    "train",
]
