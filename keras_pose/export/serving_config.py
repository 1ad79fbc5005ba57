"""TF Serving's ``models.config`` (a ``ModelServerConfig`` text proto) for ``savedmodels/``."""

from __future__ import annotations

import os
import re
from typing import Iterable

from keras_pose.utils.atomic import atomic_path

CONFIG_NAME = "models.config"
CONTAINER_ROOT = "/models"  # where the README's docker command mounts savedmodels/

_NAME = re.compile(r'^\s*name:\s*"([^"]+)"', re.MULTILINE)


def models_config(names: Iterable[str], root: str = CONTAINER_ROOT) -> str:
    """The config text serving every model ``name`` from ``<root>/<name>/<version>/``."""
    entries = "".join(
        f'  config {{\n    name: "{name}"\n    base_path: "{root}/{name}"\n'
        f'    model_platform: "tensorflow"\n  }}\n'
        for name in names
    )
    return f"model_config_list {{\n{entries}}}\n"


def config_names(text: str) -> list[str]:
    """Model names declared in a ``models.config`` text."""
    return _NAME.findall(text)


def add_to_models_config(directory: str | os.PathLike, name: str, root: str = CONTAINER_ROOT) -> str:
    """Make ``<directory>/models.config`` serve ``name`` too (written atomically); return its path.

    Existing entries are kept in order; the file is created if missing.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"model name {name!r}: use letters, digits, '_', '-' or '.'")
    path = os.path.join(os.fspath(directory), CONFIG_NAME)
    names = []
    if os.path.exists(path):
        with open(path) as f:
            names = config_names(f.read())
    if name in names:
        return path
    with atomic_path(path, directory=False) as tmp:
        with open(tmp, "w") as f:
            f.write(models_config([*names, name], root))
    return path
