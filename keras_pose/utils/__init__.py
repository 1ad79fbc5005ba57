"""Small utilities: atomic file writes (:mod:`keras_pose.utils.atomic`), json files that name
themselves in errors (:mod:`keras_pose.utils.files`), recipe flag checks
(:mod:`keras_pose.utils.cli`) and FLOPs counting."""

from keras_pose.utils.atomic import atomic_path, save_atomic, write_json, write_text
from keras_pose.utils.files import read_json

__all__ = ["atomic_path", "flops", "read_json", "save_atomic", "write_json", "write_text"]


def __getattr__(name: str):
    """``flops`` needs Keras: imported on first use, so the file helpers stay light."""
    if name == "flops":
        from keras_pose.utils.flops import flops

        return flops
    raise AttributeError(f"module 'keras_pose.utils' has no attribute {name!r}")
