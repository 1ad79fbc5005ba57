"""Temporal smoothing of tracked keypoints with the One-Euro filter (Casiez, Roussel and Vogel,
CHI 2012): a low-pass filter whose cut-off rises with the speed, so slow jitter is smoothed and
fast moves are followed without lag.
"""

from __future__ import annotations

import math

import numpy as np


class OneEuroFilter:
    """One-Euro filter of an array signal sampled at times ``t`` (seconds).

    Args:
        min_cutoff: cut-off frequency (Hz) at rest; lower = smoother.
        beta: how fast the cut-off rises with the speed; higher = less lag.
        d_cutoff: cut-off of the speed estimate.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("One-Euro needs min_cutoff > 0, d_cutoff > 0 and beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.previous: np.ndarray | None = None
        self.speed: np.ndarray | None = None
        self.time = 0.0

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, value: np.ndarray, t: float) -> np.ndarray:
        value = np.asarray(value, np.float64)
        if self.previous is None or self.previous.shape != value.shape:
            self.previous, self.speed, self.time = value.copy(), np.zeros_like(value), float(t)
            return value.copy()
        dt = max(float(t) - self.time, 1e-6)
        speed = (value - self.previous) / dt
        self.speed = self.speed + self._alpha(self.d_cutoff, dt) * (speed - self.speed)
        cutoff = self.min_cutoff + self.beta * np.abs(self.speed)
        self.previous = self.previous + self._alpha(cutoff, dt) * (value - self.previous)
        self.time = float(t)
        return self.previous.copy()


class PoseSmoother:
    """One One-Euro filter of the ``x, y`` of each track's keypoints; scores pass through.
    Filters of tracks that are gone are dropped."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        self.settings = dict(min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)
        OneEuroFilter(**self.settings)  # checks the settings
        self.filters: dict[int, OneEuroFilter] = {}

    def __call__(self, ids: np.ndarray, keypoints: np.ndarray, t: float) -> np.ndarray:
        smoothed = np.array(keypoints, np.float64, copy=True)
        for i, track in enumerate(np.asarray(ids).tolist()):
            filter_ = self.filters.setdefault(track, OneEuroFilter(**self.settings))
            smoothed[i, :, :2] = filter_(smoothed[i, :, :2], t)
        live = set(np.asarray(ids).tolist())
        self.filters = {k: v for k, v in self.filters.items() if k in live}
        return smoothed
