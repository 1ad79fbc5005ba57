"""Command-line checks shared by the recipes: numbers in range and writable outputs, refused
when the command starts (naming the flag), not after the work."""

from __future__ import annotations

import argparse
import math
import os
import tempfile


def _number(kind, text: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1 (0 is never a silent "default")."""
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(float, text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def finite_float(text: str) -> float:
    value = _number(float, text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def unit_float(text: str) -> float:
    """A number in [0, 1] (a score threshold)."""
    value = _number(float, text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return value


def check_files_exist(flags: dict[str, str | None]) -> None:
    """Raise ``SystemExit`` naming the flag of the first given path that is not a file."""
    for flag, path in flags.items():
        if path is not None and not os.path.isfile(path):
            raise SystemExit(f"error: {flag} {path}: no such file")


def check_writable(path: str | os.PathLike, flag: str, directory: bool = False) -> None:
    """Raise ``SystemExit`` naming ``flag`` unless ``path`` (a file, or with ``directory`` a
    folder) can be written: its folder is created and a file is written into it and removed."""
    path = os.path.abspath(os.fspath(path))
    folder = path if directory else os.path.dirname(path)
    if not directory and os.path.isdir(path):
        raise SystemExit(f"error: {flag} {path} is a folder; give a file name")
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise SystemExit(f"error: {flag} {path} is not writable: {error}") from None
