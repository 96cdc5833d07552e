"""Event-loop latency probe: how late the UI thread serves a 5 ms timer.

A :class:`QTimer` (precise) fires every ``interval_ms``; each time, the probe records how
much later than ``interval_ms`` after the previous firing it ran. A responsive event loop
stays within ~1 ms; a blocking call on the UI thread (inference, disk, a long redraw) shows
up as a late firing of the length of the block. The status bar shows the p99; the UI
benchmark (``benchmarks/bench_ui.py``) writes the distribution.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Qt, QTimer

__all__ = ["EventLoopProbe", "LoopLatency"]


@dataclass(frozen=True)
class LoopLatency:
    """Lateness of the probe timer over the last ``samples`` firings (ms; NaN if none)."""

    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    samples: int
    interval_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class EventLoopProbe(QObject):
    """Measure the lateness of a ``interval_ms`` timer on the thread it lives in.

    Parameters
    ----------
    interval_ms : the probe period (5 ms).
    window : how many recent firings :meth:`stats` summarises.
    """

    def __init__(
        self, interval_ms: int = 5, window: int = 4000, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.interval_ms = int(interval_ms)
        self._late = np.zeros(int(window), dtype=np.float64)
        self._n = 0
        self._last: float | None = None
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(self.interval_ms)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._last = None
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    @property
    def running(self) -> bool:
        return self._timer.isActive()

    def reset(self) -> None:
        """Forget the samples (e.g. after start-up, to measure the steady state)."""
        self._n = 0
        self._last = None

    def _tick(self) -> None:
        now = time.perf_counter()
        last, self._last = self._last, now
        if last is None:
            return
        late_ms = max(0.0, (now - last) * 1e3 - self.interval_ms)
        self._late[self._n % self._late.size] = late_ms
        self._n += 1

    def samples(self) -> np.ndarray:
        """The lateness samples held (ms, unordered copy)."""
        return self._late[: min(self._n, self._late.size)].copy()

    def stats(self) -> LoopLatency:
        s = self.samples()
        if s.size == 0:
            nan = math.nan
            return LoopLatency(nan, nan, nan, nan, 0, float(self.interval_ms))
        p50, p99 = np.percentile(s, (50, 99))
        return LoopLatency(
            p50_ms=float(p50),
            p99_ms=float(p99),
            max_ms=float(s.max()),
            mean_ms=float(s.mean()),
            samples=int(s.size),
            interval_ms=float(self.interval_ms),
        )
