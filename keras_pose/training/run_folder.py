"""Run folders are never clobbered: a unique default folder, a refusal to start a new run over an
old one, and a lock that keeps two live runs out of one folder.

* :func:`default_run_folder`: ``work_dirs/<model>/<YYYYmmdd-HHMMSS>`` (a suffix if taken), with
  ``work_dirs/<model>/latest`` pointing at the newest run (what ``--resume`` without ``--out``
  continues).
* :func:`claim_run_folder`: a folder holding another run's products is refused unless the run
  resumes it or ``overwrite`` is asked for (which deletes those products first); then
  :class:`RunLock` takes ``run.lock``. A lock left by a killed run (its process is gone on this
  host) is stale and replaced, with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time

logger = logging.getLogger(__name__)

WORK_DIRS = "work_dirs"
LATEST = "latest"
LOCK_FILE = "run.lock"
# What a run writes (the synthetic data set beside them is reusable input, not a run).
RUN_PRODUCTS = ("backup", "checkpoints", "model.keras", "best.keras", "summary.json", "logs",
                "eval", "saved_model", "predictions.png")
RUN_MARKERS = ("backup", "checkpoints", "model.keras", "best.keras", "summary.json")


class RunFolderError(RuntimeError):
    """A run folder cannot be used as asked (holds another run, is locked, is not writable)."""


def default_run_folder(model: str, root: str = WORK_DIRS) -> str:
    """A new folder name ``<root>/<model>/<timestamp>`` that does not exist yet."""
    base = os.path.join(root, model, time.strftime("%Y%m%d-%H%M%S"))
    folder, n = base, 1
    while os.path.lexists(folder):
        n += 1
        folder = f"{base}-{n}"
    return folder


def latest_run_folder(model: str, root: str = WORK_DIRS) -> str:
    """The folder ``<root>/<model>/latest`` points at (for ``--resume`` without ``--out``)."""
    link = os.path.join(root, model, LATEST)
    if not os.path.isdir(link):
        raise RunFolderError(f"--resume without --out continues {link}, which does not exist: "
                             "pass the run folder with --out")
    return os.path.realpath(link)


def point_latest(folder: str) -> None:
    """Make ``latest`` beside ``folder`` point at it (replaced atomically)."""
    parent, name = os.path.split(os.path.abspath(folder))
    tmp = os.path.join(parent, f".{LATEST}.tmp-{os.getpid()}")
    if os.path.lexists(tmp):
        os.remove(tmp)
    try:
        os.symlink(name, tmp)
        os.replace(tmp, os.path.join(parent, LATEST))
    except OSError as error:  # (no symlinks on this file system: the pointer is a convenience)
        logger.warning("could not point %s at %s: %s", os.path.join(parent, LATEST), name, error)


def point_latest_if_default(folder: str, model: str, root: str = WORK_DIRS) -> None:
    """:func:`point_latest` for a run in ``<root>/<model>/`` (not for a user's own ``--out``)."""
    parent = os.path.dirname(os.path.abspath(folder))
    if parent == os.path.abspath(os.path.join(root, model)):
        point_latest(folder)


def run_markers(folder: str) -> list[str]:
    """The products of a run found in ``folder`` (empty: no run there)."""
    return [name for name in RUN_MARKERS if os.path.lexists(os.path.join(folder, name))]


def claim_run_folder(folder: str, resume: bool, overwrite: bool) -> RunLock:
    """Check that a run may write ``folder``, clear it with ``overwrite``, and lock it.

    Raises:
        RunFolderError: the folder holds another run (and neither ``resume`` nor
            ``overwrite``), is locked by a live run, or is not writable.
    """
    if resume and overwrite:
        raise RunFolderError("--resume continues the run in the folder, --overwrite deletes "
                             "it: give one of them")
    found = run_markers(folder)
    if found and not (resume or overwrite):
        raise RunFolderError(
            f"{folder} holds another run ({', '.join(found)}); continue it with --resume, or "
            "pass another --out (or --overwrite to delete that run)")
    lock = RunLock(folder)
    lock.acquire()
    if found and overwrite:
        logger.warning("--overwrite: deleting the run in %s (%s)", folder, ", ".join(found))
        clear_run(folder)
    return lock


def clear_run(folder: str) -> None:
    for name in RUN_PRODUCTS:
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)


class RunLock:
    """``<folder>/run.lock``, created exclusively, naming the process that holds it."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.path = os.path.join(folder, LOCK_FILE)
        self.held = False

    def acquire(self) -> None:
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as error:
            raise RunFolderError(f"cannot create the run folder {self.folder}: {error}") from None
        if not self._create() and self._remove_if_stale() and not self._create():
            raise RunFolderError(f"{self.path}: another run took the lock just now")
        self.held = True

    def release(self) -> None:
        if self.held and _lock_owner(self.path).get("pid") == os.getpid():
            os.remove(self.path)
        self.held = False

    def _create(self) -> bool:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as error:
            raise RunFolderError(f"the run folder {self.folder} is not writable: {error}") from None
        with os.fdopen(fd, "w") as f:
            json.dump(owner, f)
        return True

    def _remove_if_stale(self) -> bool:
        """Remove a lock whose process is gone; raise if a live run holds it."""
        owner = _lock_owner(self.path)
        pid, host = owner.get("pid"), owner.get("host")
        if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
            logger.warning("%s: removing the stale lock of process %d (no longer running)",
                           self.path, pid)
            os.remove(self.path)
            return True
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("since", 0)))
        raise RunFolderError(
            f"{self.folder} is in use by another run (process {pid} on {host}, since {since}); "
            f"wait for it, use another --out, or delete {self.path} if no run is using it")


def _lock_owner(path: str) -> dict:
    try:
        with open(path) as f:
            owner = json.load(f)
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
