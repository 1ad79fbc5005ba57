"""keras-pose: top-down human pose estimation in Keras 3, faithful to CPN, MSPN, RSN, CPM and
Stacked Hourglass.

    import keras_pose
    model = keras_pose.CPN50()                     # compiled with tf-cpn's losses and optimizer
    model.fit(keras_pose.data.build_dataset(model, ann_file, image_dir), epochs=...)

The package is lazy (PEP 562, as keras-hub and SciPy do): ``import keras_pose`` imports
nothing heavy, and each submodule or name is imported on first use. So the numpy parts of
``keras_pose.data``, ``keras_pose.evaluation``, ``keras_pose.codecs`` and
``keras_pose.profiles`` import without TensorFlow or Keras; ``keras_pose.CPN50`` and the other
model names import Keras when first touched.
"""

from __future__ import annotations

import importlib
from typing import Any

from keras_pose.version import __version__ as __version__

SUBMODULES = (
    "backbones",
    "codecs",
    "convert",
    "data",
    "evaluation",
    "export",
    "inference",
    "layers",
    "losses",
    "models",
    "profiles",
    "spec",
    "training",
    "utils",
)

# public name -> the module that defines it
_ATTRIBUTES = {
    **{
        name: "keras_pose.models"
        for name in (
            "CPM", "CPN50", "CPN101", "Hourglass52", "MSPN50", "RSN18", "RSN50",
            "StackedHourglass", "TinyPose", "CPMModel", "CPNModel", "Hourglass52Model",
            "MSPNModel", "RSNModel", "StackedHourglassModel", "TinyPoseModel", "PoseModel",
            "build_model", "load_model", "MODELS", "FAMILIES",
        )
    },
    "COCO17": "keras_pose.data.dataset_info",
    "DatasetInfo": "keras_pose.data.dataset_info",
    "CodecSpec": "keras_pose.spec",
    "OutputSpec": "keras_pose.spec",
    "PoseSpec": "keras_pose.spec",
    "FamilyProfile": "keras_pose.profiles",
    "Predictor": "keras_pose.inference",
    "PoseInferencer": "keras_pose.inference",
    "load_pose": "keras_pose.inference",
    "draw_skeleton": "keras_pose.inference",
    "visualize": "keras_pose.inference",
    "evaluate_coco": "keras_pose.evaluation.evaluate",
}
# former names, kept one release (the models package warns when they are used)
_DEPRECATED = {name: "keras_pose.models" for name in ("CPN", "MSPN", "RSN")}


def __getattr__(name: str) -> Any:
    if name in SUBMODULES:
        return importlib.import_module(f"keras_pose.{name}")
    if name in _DEPRECATED:
        return getattr(importlib.import_module(_DEPRECATED[name]), name)
    if name in _ATTRIBUTES:
        value = getattr(importlib.import_module(_ATTRIBUTES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_pose' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *SUBMODULES, *_ATTRIBUTES})


# what ``from keras_pose import *`` binds: not the subpackages with optional dependencies
__all__ = sorted(
    {"__version__", *_ATTRIBUTES, *(set(SUBMODULES) - {"convert", "export", "training"})}
)
