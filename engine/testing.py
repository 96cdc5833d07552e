"""Test doubles for the engine: backends that need no torch (tests, benchmarks, examples).

:class:`FakeBackend` computes ``out[k] = image + dpms_net[k]`` exactly, so a test can check
every plane it gets (the DPM in network units is recoverable as ``plane - image``);
:class:`SlowBackend` wraps any backend and sleeps per call while ``slow`` is set (to make a
pipeline or recorder lag on purpose).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

__all__ = ["FakeBackend", "SlowBackend"]


class FakeBackend:
    """``out[k] = image + dpms_net[k]``; ``delay`` s per frame; raises after ``fail_after``
    frames (``RuntimeError("GPU on fire")``). Counts ``frames`` and records ``prepared``
    shapes."""

    name = "fake"
    precision = "fp32"
    device = "cpu"

    def __init__(self, delay: float = 0.0, fail_after: int | None = None) -> None:
        self.delay = delay
        self.fail_after = fail_after
        self.frames = 0
        self.prepared: list[tuple[int, int, int]] = []

    def prepare(self, height: int, width: int, n_planes: int) -> None:
        self.prepared.append((height, width, n_planes))

    def infer(self, image: np.ndarray, dpms_net: np.ndarray, out: np.ndarray) -> None:
        if self.fail_after is not None and self.frames >= self.fail_after:
            raise RuntimeError("GPU on fire")
        np.add(image[None], dpms_net, out=out)
        if self.delay:
            time.sleep(self.delay)
        self.frames += 1

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class SlowBackend:
    """Wraps a backend; sleeps ``delay`` s per ``infer`` while ``slow`` is True."""

    def __init__(self, inner: Any, delay: float = 0.05) -> None:
        self.inner = inner
        self.delay = delay
        self.slow = True
        self.calls = 0
        self.name = getattr(inner, "name", "slow")
        self.precision = getattr(inner, "precision", "fp32")
        self.device = getattr(inner, "device", "cpu")

    def prepare(self, height: int, width: int, n_planes: int) -> None:
        self.inner.prepare(height, width, n_planes)

    def infer(self, image: np.ndarray, dpms_net: np.ndarray, out: np.ndarray) -> None:
        self.calls += 1
        if self.slow:
            time.sleep(self.delay)
        self.inner.infer(image, dpms_net, out)

    def describe(self) -> dict[str, Any]:
        return {"name": "slow", "inner": getattr(self.inner, "describe", dict)()}
