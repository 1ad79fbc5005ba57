"""Where inference results go: a drawn video (``cv2.VideoWriter``), drawn images in a folder and
JSON Lines. Each file is written beside its destination and moved into place when complete, so
an interrupted run never leaves a half-written file where a previous one was."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np

from keras_pose.inference.visualize import save_png
from keras_pose.utils.atomic import atomic_path

VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class _Discarded(Exception):
    """Thrown into :func:`atomic_path` to drop the temporary file."""


class _AtomicFile:
    """A temporary file beside ``path`` (:func:`keras_pose.utils.atomic.atomic_path`, for a
    writer that outlives one ``with`` block): :meth:`commit` makes it durable and moves it onto
    ``path``, :meth:`discard` removes it and leaves ``path`` untouched."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self._context = atomic_path(self.path)
        self.tmp = self._context.__enter__()

    def commit(self) -> str:
        self._context.__exit__(None, None, None)
        return self.path

    def discard(self) -> None:
        self._context.__exit__(_Discarded, _Discarded(), None)


class VideoWriter:
    """Writes BGR frames to a video file (size fixed by the first frame; ``mp4v`` for .mp4,
    ``MJPG`` for .avi). Use as a context manager: the file appears when it is closed without an
    error."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        extension = os.path.splitext(os.fspath(path))[1].lower()
        if extension not in VIDEO_CODECS:
            raise ValueError(
                f"video output must end with one of {sorted(VIDEO_CODECS)}, got {path}"
            )
        self.file = _AtomicFile(path)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[extension])
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        size = (image.shape[1], image.shape[0])
        if self.writer is None:
            self.writer = cv2.VideoWriter(self.file.tmp, self.fourcc, self.fps, size)
            if not self.writer.isOpened():
                raise OSError(f"OpenCV cannot write {self.file.path} (codec {self.fourcc})")
            self.size = size
        if size != self.size:
            image = cv2.resize(image, self.size)
        self.writer.write(image)
        self.frames += 1

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        if self.writer is not None:
            self.writer.release()
        if exc_type is None and self.frames:
            self.file.commit()
        else:
            self.file.discard()


class JsonLinesWriter:
    """One JSON object per line; the file appears when closed without an error."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.file = _AtomicFile(path)
        self.stream = open(self.file.tmp, "w")

    def write(self, record: dict) -> None:
        self.stream.write(json.dumps(record) + "\n")

    def __enter__(self) -> JsonLinesWriter:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        self.stream.close()
        if exc_type is None:
            self.file.commit()
        else:
            self.file.discard()


class ImageFolderWriter:
    """Drawn images as ``<folder>/<source file stem>.png`` (``frame_<index>.png`` for arrays)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = os.fspath(folder)
        os.makedirs(self.folder, exist_ok=True)

    def write(self, image: np.ndarray, name: str, index: int) -> str:
        if os.path.isfile(name):
            stem = os.path.splitext(os.path.basename(name))[0]
        else:
            stem = f"frame_{index:06d}"
        return save_png(os.path.join(self.folder, f"{stem}.png"), image)

    def __enter__(self) -> ImageFolderWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        pass
