"""What consumers of the live pipeline get: frames, and the two kinds of subscription.

* :class:`LatestSubscriber` (display): :meth:`~LatestSubscriber.get_latest` returns the newest
  frame not yet returned, or ``None``; it may skip frames (counted in ``skipped``) and never
  holds up the pipeline. It follows the pipeline across restarts.
* :class:`StreamSubscriber` (recorders): :meth:`~StreamSubscriber.get` returns every frame of
  one run, in order. It reads the pipeline's ring by sequence number, so a slow recorder never
  blocks the camera or the engine; if it falls so far behind that frames are overwritten
  before it reads them, the next frame it gets names them (``frame.missed_before``, frame
  indices) and :meth:`~StreamSubscriber.missed_frames` lists all of them. Nothing is lost
  silently.

Returned arrays live in a buffer owned by the handle and stay valid until the handle's next
call (no allocation per frame); pass ``copy=True`` to get arrays of your own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from live_deepz.errors import LiveDeepzError

from ._rings import FrameMeta, PlaneMeta, PlaneRing, SlotRing
from ._stats import SubscriberStats

__all__ = [
    "EngineTooSlowError",
    "LatestSubscriber",
    "PipelineError",
    "PlaneFrame",
    "RawFrame",
    "StreamSubscriber",
]


class PipelineError(LiveDeepzError):
    """The live pipeline stopped on an error; the message says what failed and what to do."""


class EngineTooSlowError(PipelineError):
    """Lossless mode: the engine cannot keep up with the camera."""


@dataclass(slots=True)
class RawFrame:
    """One camera frame as the pipeline received it."""

    index: int
    """Pipeline frame index (0, 1, 2, ... per run, every frame popped from the core)."""
    camera_frame: int
    """The camera's frame number (-1 unknown); gaps are camera drops."""
    camera_time_ms: float
    arrival_s: float
    """``time.perf_counter()`` when popped from the core."""
    stage_z_um: float
    image: np.ndarray
    """``(H, W)`` raw pixels, the camera's dtype."""
    metadata: Mapping[str, str]
    missed_before: tuple[int, ...] = ()
    """Frame indices this subscriber missed just before this frame (overwritten unread)."""
    channel: int = 0
    """Position of the frame's channel in the pipeline's channel list (0: one channel)."""
    plan_id: int = 0
    """The plan in force when the frame was popped from the camera."""
    plan: Any = None
    """That plan object (``PlanePlan``)."""
    norm_version: int = 0
    """The normalisation version in force when the frame was popped (+1 per
    ``refit_normalization``): a frame popped after a refit request is refocused with a
    normalisation fitted on it or a later frame, never with the one before."""


@dataclass(slots=True)
class PlaneFrame:
    """The K refocused planes of one camera frame (one timestamp for all planes)."""

    index: int
    """Pipeline frame index of the raw frame (gaps: the engine skipped frames)."""
    camera_frame: int
    camera_time_ms: float
    arrival_s: float
    ready_s: float
    """``time.perf_counter()`` when the planes were ready."""
    stage_z_um: float
    planes: np.ndarray
    """``(K, H, W)`` float32, in normalised intensity units."""
    offsets_um: np.ndarray
    """``(K,)`` nominal offsets of the plan used (read-only)."""
    plan_id: int
    """Which plan produced the planes (0 = the first; +1 per ``set_plan``)."""
    plan: Mapping[str, Any]
    """``describe()`` of that plan."""
    missed_before: tuple[int, ...] = ()
    """Frame indices this subscriber missed just before this frame (processed, overwritten
    unread). Frames the engine skipped are not "missed": they never had planes."""
    channel: int = 0
    """Position of the frame's channel in the pipeline's channel list (0: one channel)."""
    normalization: Any = None
    """The ``Normalization`` the frame was refocused with."""
    norm_version: int = 0
    """The normalisation version stamped when the raw frame was popped (``FrameMeta``)."""
    served_um: float | None = None
    """A dynamic plan's shift of its planes for this frame (µm; e.g. the drift correction
    served), stamped by the inference thread; None for static plans."""

    @property
    def latency_ms(self) -> float:
        """Frame arrival -> planes ready."""
        return (self.ready_s - self.arrival_s) * 1e3


Frame = TypeVar("Frame", RawFrame, PlaneFrame)


class _Reader(Generic[Frame]):
    """Copies one ring slot into a reusable buffer and builds the frame object."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._buf: np.ndarray | None = None

    def _dst(self, shape: tuple[int, ...], dtype: np.dtype, copy: bool) -> np.ndarray:
        if copy:
            return np.empty(shape, dtype)
        b = self._buf
        if b is None or b.dtype != dtype or b.shape[1:] != shape[1:] or b.shape[0] < shape[0]:
            b = self._buf = np.empty(shape, dtype)
        return b[: shape[0]]

    def read(self, ring: SlotRing[Any], seq: int, copy: bool, missed: tuple[int, ...]) -> Any:
        """The frame ``seq`` or ``None`` if it was overwritten before or during the copy."""
        got = ring.view(seq)
        if got is None:
            return None
        slot, gen, meta = got
        if isinstance(ring, PlaneRing):
            assert isinstance(meta, PlaneMeta)
            src = slot.arrays["planes"][: meta.n_planes]
        else:
            src = slot.arrays["image"]
        dst = self._dst(src.shape, src.dtype, copy)
        np.copyto(dst, src)
        if not ring.still_valid(slot, gen):
            return None
        if isinstance(meta, PlaneMeta):
            f = meta.frame
            return PlaneFrame(
                index=f.index,
                camera_frame=f.camera_frame,
                camera_time_ms=f.camera_time_ms,
                arrival_s=f.arrival_s,
                ready_s=meta.ready_s,
                stage_z_um=f.stage_z_um,
                planes=dst,
                offsets_um=meta.offsets_um,
                plan_id=meta.plan_id,
                plan=meta.plan,
                missed_before=missed,
                channel=f.channel,
                normalization=meta.normalization,
                norm_version=f.norm_version,
                served_um=meta.served_um,
            )
        assert isinstance(meta, FrameMeta)
        return RawFrame(
            index=meta.index,
            camera_frame=meta.camera_frame,
            camera_time_ms=meta.camera_time_ms,
            arrival_s=meta.arrival_s,
            stage_z_um=meta.stage_z_um,
            image=dst,
            metadata=meta.metadata,
            missed_before=missed,
            channel=meta.channel,
            plan_id=meta.plan_id,
            plan=meta.plan,
            norm_version=meta.norm_version,
        )


class LatestSubscriber:
    """Display-style handle: the newest frame only (see module docstring).

    ``source()`` returns ``(run_token, ring)`` of the pipeline's current (or last) run, or
    ``None`` before the first run.
    """

    def __init__(self, kind: str, source: Callable[[], tuple[int, SlotRing[Any]] | None]) -> None:
        self.kind = kind
        self._source = source
        self._reader: _Reader[Any] = _Reader(kind)
        self._token: int | None = None
        self._last = -1
        self._lock = threading.Lock()
        self.received = 0
        """Frames returned so far."""
        self.skipped = 0
        """Frames published that this handle never returned (newer ones were waiting)."""
        self.closed = False

    def get_latest(self, *, copy: bool = False) -> Any:
        """Newest frame not returned yet (a :class:`PlaneFrame` or :class:`RawFrame`), or None.

        Raises :class:`PipelineError` when the run failed and no newer frame is left.
        """
        with self._lock:
            src = self._source()
            if src is None or self.closed:
                return None
            token, ring = src
            if token != self._token:
                self._token, self._last = token, -1
            for _ in range(4):  # a torn read means newer frames exist: try the newest again
                newest = ring.next_seq - 1
                if newest <= self._last:
                    if ring.error is not None:
                        raise PipelineError(ring.error)
                    return None
                frame = self._reader.read(ring, newest, copy, ())
                if frame is not None:
                    self.skipped += newest - self._last - 1
                    self.received += 1
                    self._last = newest
                    return frame
            return None

    def close(self) -> None:
        self.closed = True


class StreamSubscriber:
    """Recorder-style handle: every frame of one run, in order (see module docstring).

    Created by ``LivePipeline.subscribe_all`` (planes) or ``subscribe_raw`` (raw frames).
    Made before ``start()`` it receives the next run from its first frame; made while running,
    from the next frame on. It ends with its run. One thread should consume a handle.
    """

    def __init__(self, kind: str, maxsize: int, name: str) -> None:
        self.kind = kind
        self.maxsize = maxsize
        """Frames it may fall behind without missing any (the ring holds at least these)."""
        self.name = name
        self._reader: _Reader[Any] = _Reader(kind)
        self._cond = threading.Condition()
        self._ring: SlotRing[Any] | None = None
        self._cursor = 0
        self._missed: list[int] = []
        self._pending: list[int] = []
        self.missed_unresolved = 0
        """Missed frames too old for the ring's index history (only after huge lags)."""
        self.delivered = 0
        self.written = 0
        self._ended = False
        self._end_seq: int | None = None
        self._start_seq: int | None = None
        self.closed = False

    # -- wiring (pipeline side)
    def _attach(self, ring: SlotRing[Any], start_seq: int) -> None:
        with self._cond:
            self._ring = ring
            self._cursor = start_seq
            self._start_seq = start_seq
            self._cond.notify_all()

    @property
    def attached(self) -> bool:
        return self._ring is not None

    def _stop_waiting(self) -> bool:
        return self.closed or (self._end_seq is not None and self._cursor >= self._end_seq)

    def span(self) -> tuple[int, int] | None:
        """``(first, end)`` ring sequence numbers of a subscription ended by
        :meth:`end_here` (None otherwise)."""
        if self._end_seq is None or self._start_seq is None:
            return None
        return self._start_seq, self._end_seq

    def end_here(self) -> None:
        """End after the frames the ring has published so far (a recorder detaching from a
        pipeline that keeps running): they are still delivered, later ones are not."""
        ring = self._ring
        if ring is None:
            self.close()
            return
        with ring.cond:
            self._end_seq = ring.next_seq
            ring.cond.notify_all()

    @property
    def ended(self) -> bool:
        """The run ended and every frame was delivered or reported missed."""
        return self._ended or self.closed

    # -- consumer side
    def get(self, timeout: float | None = None, *, copy: bool = False) -> Any:
        """The next frame in order; ``None`` on timeout or at the end (then :attr:`ended`).

        Raises :class:`PipelineError` once the frames produced before a failure are read.
        """
        deadline = None if timeout is None else time.perf_counter() + timeout

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.perf_counter())

        with self._cond:
            if not self._cond.wait_for(lambda: self._ring is not None or self.closed, remaining()):
                return None
        ring = self._ring
        if ring is None or self.closed:
            return None
        while True:
            if self._end_seq is not None and self._cursor >= self._end_seq:
                self._ended = True
                return None
            status, seq = ring.wait_readable(self._cursor, remaining(), self._stop_waiting)
            if status == "lapped":
                self._record_missed(ring, range(self._cursor, seq))
                self._cursor = seq
                continue
            if status == "closed":
                self._ended = True
                if ring.error is not None:
                    raise PipelineError(ring.error)
                return None
            if status == "timeout" or self.closed:
                return None
            if self._end_seq is not None and seq >= self._end_seq:
                self._ended = True
                return None
            missed = tuple(self._pending)
            frame = self._reader.read(ring, seq, copy, missed)
            if frame is None:  # overwritten while copying
                self._record_missed(ring, range(seq, seq + 1))
                self._cursor = seq + 1
                continue
            self._pending.clear()
            self._cursor = seq + 1
            self.delivered += 1
            return frame

    def __iter__(self) -> Iterator[Any]:
        """Frames until the run ends (raises :class:`PipelineError` if it failed)."""
        while True:
            f = self.get(timeout=0.1)
            if f is not None:
                yield f
            elif self.ended:
                return

    def _record_missed(self, ring: SlotRing[Any], seqs: range) -> None:
        indices = [ring.index_of(s) for s in seqs]
        known = [i for i in indices if i >= 0]
        with self._cond:
            self.missed_unresolved += len(indices) - len(known)
            self._missed.extend(known)
        self._pending.extend(known)

    def missed_frames(self) -> list[int]:
        """Frame indices this subscriber missed so far (in order)."""
        with self._cond:
            return list(self._missed)

    @property
    def missed(self) -> int:
        return len(self._missed) + self.missed_unresolved

    def mark_written(self, n: int = 1) -> None:
        """Report ``n`` frames written (feeds the pipeline's ``written`` counter)."""
        self.written += n

    def stats(self) -> SubscriberStats:
        return SubscriberStats(
            name=self.name,
            kind=self.kind,
            delivered=self.delivered,
            missed=self.missed,
            written=self.written,
            closed=self.closed,
        )

    def close(self) -> None:
        """Stop receiving; pending ``get`` calls return ``None``."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        if self._ring is not None:
            with self._ring.cond:
                self._ring.cond.notify_all()
