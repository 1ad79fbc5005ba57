"""Sizes of exported files (atomic writes live in :mod:`keras_pose.utils.atomic`)."""

from __future__ import annotations

import os


def directory_size(path: str | os.PathLike) -> int:
    """Total bytes of the files under ``path`` (or the size of a single file)."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, files in os.walk(path)
        for name in files
    )
