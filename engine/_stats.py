"""Counters, rolling latency windows and the frozen statistics snapshot of the live pipeline.

One :class:`StatsCollector` per pipeline run. The acquisition and inference threads update it
under one lock (a few integer/float stores per frame); :meth:`StatsCollector.snapshot` returns
a frozen :class:`PipelineStats` that the UI, the CLI and the benchmarks read while the pipeline
runs, so that all of them show the same numbers.

Accounting (every camera frame ends up in exactly one bucket)::

    frames_in = frames_processed + dropped_engine + in_flight

``frames_in`` counts frames popped from the core; ``dropped_camera`` counts frames the camera
numbered but that never reached the pipeline (gaps in the camera's frame counter, including
frames the core's own buffer overwrote); ``discarded_at_stop`` counts frames still in the
core's buffer when the run stopped.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "STAGES",
    "PipelineStats",
    "RollingWindow",
    "StatsCollector",
    "SubscriberStats",
]

#: The timed stages of one frame, in order (acquisition thread: ``pop``; worker: the rest).
STAGES = ("pop", "normalize", "dpm", "infer", "publish")

_FPS_WINDOW_S = 2.0


class RollingWindow:
    """The last ``capacity`` float samples in a preallocated array (not thread-safe)."""

    def __init__(self, capacity: int = 1000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._data = np.zeros(capacity, dtype=np.float64)
        self._n = 0  # samples ever added

    def add(self, value: float) -> None:
        self._data[self._n % self._data.size] = value
        self._n += 1

    def __len__(self) -> int:
        return min(self._n, self._data.size)

    def values(self) -> np.ndarray:
        """Copy of the samples held (unordered)."""
        return self._data[: len(self)].copy()

    def percentile(self, q: float) -> float:
        """``q``-th percentile of the samples held, NaN when empty."""
        n = len(self)
        return float(np.percentile(self._data[:n], q)) if n else math.nan

    def clear(self) -> None:
        self._n = 0


@dataclass(frozen=True)
class SubscriberStats:
    """What one recorder-style subscriber received."""

    name: str
    kind: str
    """``"planes"`` or ``"raw"``."""
    delivered: int
    """Frames handed out by ``get()``."""
    missed: int
    """Frames it was told it missed (overwritten before it read them)."""
    written: int
    """Frames the subscriber reported written with ``mark_written()``."""
    closed: bool


@dataclass(frozen=True)
class PipelineStats:
    """A consistent snapshot of the pipeline's counters (times in ms, rates in frames/s)."""

    state: str
    mode: str
    frames_in: int
    """Frames popped from the camera's core buffer into the frame ring."""
    frames_processed: int
    """Frames turned into planes and published."""
    dropped_camera: int
    """Frames missing from the camera's frame numbering (never reached the pipeline)."""
    dropped_engine: int
    """Frames the engine skipped (live mode: a newer frame was waiting; or discarded at stop)."""
    in_flight: int
    """Frames received but not yet processed or dropped."""
    discarded_at_stop: int
    """Frames left in the core's buffer when the run stopped."""
    written: int
    """Sum of ``mark_written()`` over all recorder subscribers."""
    missed_by_subscribers: int
    """Sum of the frames recorder subscribers were told they missed."""
    latency_p50_ms: float
    """Frame arrival -> planes ready, median of the last ``window`` frames (NaN if none)."""
    latency_p99_ms: float
    latency_max_ms: float
    stage_ms: Mapping[str, float]
    """Median time per stage (see ``STAGES``) over the last ``window`` frames."""
    fps_in: float
    """Frames popped per second over the last ~2 s."""
    fps_out: float
    """Frames processed per second over the last ~2 s."""
    camera_fps: float
    """The camera's own rate from its frame numbers and timestamps (NaN if unknown)."""
    elapsed_s: float
    subscribers: tuple[SubscriberStats, ...] = ()
    error: str | None = None
    window: int = 1000
    frame_ring_slots: int = 0
    """Slots of the raw frame ring (``in_flight`` never exceeds it + 2)."""
    plane_ring_slots: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["stage_ms"] = dict(self.stage_ms)
        d["subscribers"] = [asdict(s) for s in self.subscribers]
        return d


@dataclass
class _Rate:
    """Event times in a preallocated ring; the rate over the last ``_FPS_WINDOW_S``."""

    capacity: int = 1024
    _t: np.ndarray = field(init=False)
    _n: int = 0

    def __post_init__(self) -> None:
        self._t = np.zeros(self.capacity, dtype=np.float64)

    def add(self, t: float) -> None:
        self._t[self._n % self.capacity] = t
        self._n += 1

    def rate(self, now: float, start: float) -> float:
        n = min(self._n, self.capacity)
        if n == 0:
            return 0.0
        t = self._t[:n]
        recent = t[t > now - _FPS_WINDOW_S]
        if recent.size == 0:
            return 0.0
        if recent.size == n and self._n > n:  # more events than the ring holds in the window
            span = now - float(recent.min())
        else:
            span = min(_FPS_WINDOW_S, now - start)
        return float(recent.size / span) if span > 0 else 0.0


class StatsCollector:
    """Thread-safe counters of one run; cheap ``on_*`` calls from the pipeline threads."""

    def __init__(
        self, mode: str, window: int = 1000, frame_slots: int = 0, plane_slots: int = 0
    ) -> None:
        self._lock = threading.Lock()
        self.mode = mode
        self.window = window
        self.frame_slots = frame_slots
        self.plane_slots = plane_slots
        self._start = time.perf_counter()
        self._stop: float | None = None
        self.frames_in = 0
        self.frames_processed = 0
        self.dropped_camera = 0
        self.dropped_engine = 0
        self.discarded_at_stop = 0
        self._latency = RollingWindow(window)
        self._stages = {s: RollingWindow(window) for s in STAGES}
        self._rate_in = _Rate()
        self._rate_out = _Rate()
        # camera clock: (camera frame number, camera time ms) of the first and last frame seen
        self._cam_first: tuple[int, float] | None = None
        self._cam_last: tuple[int, float] | None = None

    # -- acquisition thread
    def on_frame_in(
        self, arrival_s: float, pop_s: float, camera_frame: int, camera_time_ms: float
    ) -> None:
        with self._lock:
            self.frames_in += 1
            self._rate_in.add(arrival_s)
            self._stages["pop"].add(pop_s * 1e3)
            if camera_frame >= 0 and math.isfinite(camera_time_ms):
                if self._cam_first is None:
                    self._cam_first = (camera_frame, camera_time_ms)
                self._cam_last = (camera_frame, camera_time_ms)

    def on_camera_dropped(self, n: int) -> None:
        with self._lock:
            self.dropped_camera += n

    def reset_camera_clock(self) -> None:
        """The camera's frame counter restarted: forget the rate reference."""
        with self._lock:
            self._cam_first = None

    def on_discarded_at_stop(self, n: int) -> None:
        with self._lock:
            self.discarded_at_stop += n

    # -- inference thread
    def on_engine_dropped(self, n: int) -> None:
        if n:
            with self._lock:
                self.dropped_engine += n

    def on_processed(self, arrival_s: float, ready_s: float, stage_s: Mapping[str, float]) -> None:
        with self._lock:
            self.frames_processed += 1
            self._rate_out.add(ready_s)
            self._latency.add((ready_s - arrival_s) * 1e3)
            for name, seconds in stage_s.items():
                self._stages[name].add(seconds * 1e3)

    def mark_stopped(self) -> None:
        with self._lock:
            if self._stop is None:
                self._stop = time.perf_counter()

    # -- readers
    def rates(self) -> tuple[float, float, float]:
        """``(fps_in, fps_out, camera_fps)`` now."""
        with self._lock:
            return self._rates_locked()

    def _rates_locked(self) -> tuple[float, float, float]:
        now = self._stop if self._stop is not None else time.perf_counter()
        cam = math.nan
        if self._cam_first is not None and self._cam_last is not None:
            dn = self._cam_last[0] - self._cam_first[0]
            dt = self._cam_last[1] - self._cam_first[1]
            if dn > 0 and dt > 0:
                cam = dn / (dt / 1e3)
        return self._rate_in.rate(now, self._start), self._rate_out.rate(now, self._start), cam

    def snapshot(
        self,
        state: str,
        error: str | None = None,
        subscribers: tuple[SubscriberStats, ...] = (),
    ) -> PipelineStats:
        with self._lock:
            fps_in, fps_out, cam = self._rates_locked()
            end = self._stop if self._stop is not None else time.perf_counter()
            return PipelineStats(
                state=state,
                mode=self.mode,
                frames_in=self.frames_in,
                frames_processed=self.frames_processed,
                dropped_camera=self.dropped_camera,
                dropped_engine=self.dropped_engine,
                in_flight=self.frames_in - self.frames_processed - self.dropped_engine,
                discarded_at_stop=self.discarded_at_stop,
                written=sum(s.written for s in subscribers),
                missed_by_subscribers=sum(s.missed for s in subscribers),
                latency_p50_ms=self._latency.percentile(50),
                latency_p99_ms=self._latency.percentile(99),
                latency_max_ms=(
                    float(self._latency.values().max()) if len(self._latency) else math.nan
                ),
                stage_ms=MappingProxyType(
                    {name: w.percentile(50) for name, w in self._stages.items()}
                ),
                fps_in=fps_in,
                fps_out=fps_out,
                camera_fps=cam,
                elapsed_s=end - self._start,
                subscribers=subscribers,
                error=error,
                window=self.window,
                frame_ring_slots=self.frame_slots,
                plane_ring_slots=self.plane_slots,
            )
