"""Frames from an image (path or array), a list of them, a folder of images, a video file or a
camera, read with OpenCV.

:func:`open_source` returns a :class:`FrameSource`: iterate it for :class:`Frame` objects. A frame
that cannot be read (a corrupt image file, a broken video frame) comes with ``image=None`` and
its ``error``, so the caller skips and counts it; a video keeps going after a broken frame.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import Any

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
# A video whose reads fail this many times in a row has ended (or the device is gone).
MAX_CONSECUTIVE_FAILURES = 25


@dataclasses.dataclass
class Frame:
    """One frame: ``index`` in the source, ``name`` (file path, or ``"<video>#<index>"``),
    ``kind`` (``"image"``, ``"video"`` or ``"camera"``), the BGR uint8 ``image`` (``None`` if it
    could not be read, with ``error`` saying why) and ``time`` in seconds (videos)."""

    index: int
    name: str
    kind: str
    image: np.ndarray | None
    time: float = 0.0
    error: str = ""


class FrameSource:
    """Base of the sources: ``len()`` when known (else ``None`` from :attr:`length`) and ``fps``."""

    kind = "image"
    fps: float = 0.0
    length: int | None = None

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ImageSource(FrameSource):
    """Arrays and image files, in the given order."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = list(items)
        self.length = len(self.items)

    def __iter__(self) -> Iterator[Frame]:
        for index, item in enumerate(self.items):
            if isinstance(item, np.ndarray):
                yield Frame(index, f"array#{index}", "image", *_check_array(item))
                continue
            path = os.fspath(item)
            image = cv2.imread(path, cv2.IMREAD_COLOR) if os.path.isfile(path) else None
            error = "" if image is not None else (
                "unreadable image" if os.path.isfile(path) else "file not found")
            yield Frame(index, path, "image", image, error=error)


class VideoSource(FrameSource):
    """A video file or a camera (``cv2.VideoCapture``)."""

    def __init__(self, source: str | int) -> None:
        self.source = source
        self.kind = "camera" if isinstance(source, int) else "video"
        self.capture = cv2.VideoCapture(source)
        if not self.capture.isOpened():
            what = f"camera {source}" if self.kind == "camera" else f"video {source}"
            raise OSError(f"OpenCV cannot open {what}")
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.length = count if self.kind == "video" and count > 0 else None

    def __iter__(self) -> Iterator[Frame]:
        """Frames in order. A failed read followed by a good one is a broken frame (yielded
        with ``image=None``); failed reads with no good frame after them are the end."""
        index, failed = 0, []
        name = str(self.source)
        while len(failed) < MAX_CONSECUTIVE_FAILURES:
            if self.length is not None and index >= self.length:
                break
            ok, image = self.capture.read()
            if not (ok and image is not None and image.ndim == 3 and image.size > 0):
                failed.append(index)
                index += 1
                continue
            for broken in failed:
                yield Frame(broken, f"{name}#{broken}", self.kind, None, self._time(broken),
                            "unreadable video frame")
            failed = []
            if image.shape[2] == 4:
                image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
            yield Frame(index, f"{name}#{index}", self.kind, image, self._time(index))
            index += 1

    def _time(self, index: int) -> float:
        return index / self.fps if self.fps > 0 else float(index)

    def close(self) -> None:
        self.capture.release()


def _check_array(image: np.ndarray) -> tuple[np.ndarray | None, float, str]:
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and image.size:
        return image, 0.0, ""
    return None, 0.0, f"not a (H, W, 3) uint8 BGR image: {image.shape} {image.dtype}"


def open_source(source: Any) -> FrameSource:
    """A frame source for an image path or array, a list of them, a folder of images, a video
    file or a camera index (an ``int`` or a string of digits)."""
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, np.ndarray):
        return ImageSource([source])
    if isinstance(source, (list, tuple)):
        return ImageSource(source)
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return VideoSource(int(source))
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path, an image array, a list or a camera index, "
                        f"got {type(source).__name__}")
    path = os.fspath(source)
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
        return ImageSource([os.path.join(path, f) for f in files])
    if not os.path.isfile(path):
        raise FileNotFoundError(f"source not found: {path}")
    if path.lower().endswith(VIDEO_EXTENSIONS):
        return VideoSource(path)
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return ImageSource([path])
    raise ValueError(f"{path}: not an image ({', '.join(IMAGE_EXTENSIONS)}) or video "
                     f"({', '.join(VIDEO_EXTENSIONS)}) file")
