"""Atomic, durable writes: a file or folder appears complete or not at all, and survives a crash.

Everything keras-pose writes for a user (models, backups, exports, results, configs, pictures)
goes through :func:`atomic_path`: the content is written to a temporary name beside the
destination, flushed to disk (``fsync`` of every file and folder written), then moved onto the
destination with ``os.replace`` (a folder already there is renamed aside first and deleted
after). If the writer fails, the temporary is removed and the destination is left untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["atomic_path", "fsync_tree", "save_atomic", "write_json", "write_text"]


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, directory: bool = False, suffix: str | None = None
) -> Iterator[str]:
    """Yield a temporary path beside ``path``; when the body succeeds, make it durable and move
    it onto ``path``.

    Args:
        path: the destination file or folder.
        directory: the body fills a (created, empty) temporary folder instead of a file.
        suffix: ending of a temporary file (default: ``path``'s full extension, e.g.
            ``.weights.h5``, as Keras checks it). The file itself does not exist yet when the
            body starts (Keras refuses to overwrite some files).
    """
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    prefix = f".{name}.tmp-"
    if directory:
        tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    else:
        suffix = _full_extension(name) if suffix is None else suffix
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
        os.close(fd)
        os.remove(tmp)
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise FileNotFoundError(f"nothing was written for {path}")
        fsync_tree(tmp)
        _move_onto(tmp, path)
        _fsync_folder(parent)
    finally:
        _remove(tmp)


def save_atomic(
    save: Callable[[str], Any], path: str | os.PathLike, suffix: str | None = None
) -> str:
    """``save(temporary_path)`` (e.g. ``model.save``), then moved onto ``path``; returns it."""
    with atomic_path(path, suffix=suffix) as tmp:
        save(tmp)
    return os.fspath(path)


def write_text(text: str, path: str | os.PathLike) -> str:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
    return os.fspath(path)


def write_json(content: Any, path: str | os.PathLike, **dump_options: Any) -> str:
    """``json.dump(content, **dump_options)`` into ``path``, atomically; returns the path."""
    return write_text(json.dumps(content, **dump_options), path)


def fsync_tree(path: str) -> None:
    """Flush a file, or every file and folder under a folder, to disk."""
    if not os.path.isdir(path):
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        return
    for root, _, files in os.walk(path):
        for name in files:
            file_path = os.path.join(root, name)
            if not os.path.islink(file_path):
                fsync_tree(file_path)
        _fsync_folder(root)


def _fsync_folder(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # (a platform without folder handles)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _move_onto(source: str, destination: str) -> None:
    if not os.path.isdir(destination) or os.path.islink(destination):
        os.replace(source, destination)
        return
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(destination)}.old-",
                           dir=os.path.dirname(destination))
    os.rmdir(old)
    os.replace(destination, old)
    os.replace(source, destination)
    _remove(old)


def _full_extension(name: str) -> str:
    stripped = name.lstrip(".")
    return stripped[stripped.index("."):] if "." in stripped else ""


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)
