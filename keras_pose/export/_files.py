"""Write an export next to its destination, check it, then move it into place in one step."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, directory: bool) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``.

    If the body raises (a failed parity check, a converter error), the temporary file or
    directory is deleted and whatever was at ``path`` before is left untouched. A directory
    that already exists at ``path`` is replaced (renamed aside, then deleted).
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    prefix = f".{os.path.basename(path)}.tmp-"
    if directory:
        tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    else:
        fd, tmp = tempfile.mkstemp(prefix=prefix, dir=parent, suffix=os.path.splitext(path)[1])
        os.close(fd)
    try:
        yield tmp
        if directory:
            _replace_directory(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _replace_directory(source: str, destination: str) -> None:
    old = None
    if os.path.exists(destination):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(destination)}.old-", dir=os.path.dirname(destination))
        os.rmdir(old)
        os.replace(destination, old)
    os.replace(source, destination)
    if old is not None:
        _remove(old)


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


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
