"""Fixed-slot ring buffers with sequence numbers: raw camera frames and refocused planes.

A ring holds ``capacity`` slots of arrays allocated once (optionally page-locked "pinned"
host memory for fast GPU copies). One producer writes slot ``seq % capacity`` in place and
publishes it with the next sequence number; any number of readers follow by sequence number:

* **Writes never tear a read.** Claiming a slot invalidates it and bumps its generation under
  the ring's lock; a reader copies a slot's arrays *outside* the lock and then checks that the
  generation did not change (a seqlock). A read that raced an overwrite is reported as lost
  (``None``), never returned half old, half new.
* **Gated or free-running.** A *gated* ring (lossless mode) never overwrites a slot that its
  gating consumer (the inference worker) has not released: :meth:`SlotRing.claim` waits
  instead. A free-running ring (live mode) overwrites the oldest slot; readers that fall
  behind by more than ``capacity`` are told exactly which sequence numbers they lost.
* **One main consumer, exact drop accounting.** The inference worker takes frames with
  :meth:`SlotRing.take_next` (in order) or :meth:`SlotRing.take_newest` (skipping). Every
  sequence number is either taken or reported once to ``on_drop``: when the worker skips it,
  when the producer overwrites it before the worker got to it, or by :meth:`SlotRing.drop_rest`
  at the end. All under the ring's lock, so the count is exact at any moment.
* **End of stream.** :meth:`SlotRing.close` wakes every waiter; with an error message the
  readers raise it once they have read what is left.

:class:`FrameRing` holds raw frames plus their metadata (camera frame number and timestamp,
arrival time, stage z, the camera's metadata); :class:`PlaneRing` holds the K refocused planes
of a frame plus that frame's metadata and the DPM plan used. Sequence number ``s`` of a
:class:`FrameRing` is the pipeline's frame index; a :class:`PlaneRing` remembers the frame
index of each of its last ``history`` sequence numbers so that lost plane frames can be named
by frame index.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import DTypeLike

__all__ = [
    "FrameMeta",
    "FrameRing",
    "PlaneMeta",
    "PlaneRing",
    "RingClosed",
    "Slot",
    "SlotRing",
    "allocate_host",
]

M = TypeVar("M")


def allocate_host(shape: Sequence[int], dtype: DTypeLike, *, pinned: bool = False) -> np.ndarray:
    """Zeroed host array; page-locked when ``pinned`` (via the backends' ``pinned_host_array``,
    which falls back to ordinary memory without CUDA)."""
    if pinned:
        from .backends import pinned_host_array  # lazy: imports torch

        arr = pinned_host_array(tuple(shape), dtype)
        arr.fill(0)
        return arr
    return np.zeros(tuple(shape), dtype=dtype)


class RingClosed(Exception):
    """Raised by producers that claim a slot in a closed ring."""


class Slot(Generic[M]):
    """One ring slot: preallocated arrays, the metadata of its frame, ``seq`` and ``gen``."""

    __slots__ = ("arrays", "gen", "index", "meta", "seq")

    def __init__(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        self.index = index
        self.arrays = arrays
        self.meta: M | None = None
        self.seq = -1  # sequence number of the data held; -1 while empty or being written
        self.gen = 0  # bumped on every claim: readers detect overwrites


class SlotRing(Generic[M]):
    """Single-producer, multi-reader ring of preallocated slots (see module docstring).

    Parameters
    ----------
    capacity
        Number of slots.
    arrays
        ``name -> (shape, dtype)`` of the arrays every slot holds.
    gated
        If True, the producer never overwrites a slot its gating consumer has not released
        (:meth:`release`); :meth:`claim` waits instead.
    history
        How many past sequence numbers keep their frame index (for naming lost frames);
        0 means "the sequence number is the frame index".
    pinned
        Allocate the slot arrays in page-locked memory (only with CUDA; see
        :func:`allocate_host`).
    on_drop
        Called (under the ring's lock) with the number of frames the main consumer will
        never take.
    """

    def __init__(
        self,
        capacity: int,
        arrays: Mapping[str, tuple[Sequence[int], DTypeLike]],
        *,
        gated: bool = False,
        history: int = 0,
        pinned: bool = False,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        if capacity < 2:
            raise ValueError(f"a ring needs at least 2 slots, got {capacity}")
        self.capacity = int(capacity)
        self.gated = gated
        self.cond = threading.Condition(threading.Lock())
        self._slots: list[Slot[M]] = [
            Slot(i, {k: allocate_host(s, d, pinned=pinned) for k, (s, d) in arrays.items()})
            for i in range(self.capacity)
        ]
        self._next = 0  # sequence number the next publish gets
        self._writing = False  # a claimed slot is being written
        self._released = 0  # gated: every seq < _released may be overwritten
        self._taken = 0  # every seq < _taken was taken by the main consumer or dropped
        self.on_drop = on_drop
        self._closed = False
        self._error: str | None = None
        self._history = np.full(history, -1, dtype=np.int64) if history else None

    # ------------------------------------------------------------------ state
    @property
    def next_seq(self) -> int:
        """Sequence number the next published slot gets (= number published so far)."""
        return self._next

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def error(self) -> str | None:
        return self._error

    def oldest_seq(self) -> int:
        """Oldest sequence number still readable (call with ``cond`` held for consistency)."""
        return max(0, self._next - self.capacity + (1 if self._writing else 0))

    def index_of(self, seq: int) -> int:
        """Frame index of a published sequence number (-1 if older than the history)."""
        if self._history is None:
            return seq
        if seq < 0 or seq >= self._next or seq < self._next - self._history.size:
            return -1
        return int(self._history[seq % self._history.size])

    # --------------------------------------------------------------- producer
    def claim(self, timeout: float | None = None) -> Slot[M] | None:
        """Invalidate and return the slot for :attr:`next_seq`; ``None`` on timeout.

        On a gated ring this waits while that slot still holds an unreleased frame. Raises
        :class:`RingClosed` if the ring is closed.
        """
        with self.cond:
            if self.gated:
                deadline = None if timeout is None else time.perf_counter() + timeout
                while not self._closed and self._full():
                    remaining = None if deadline is None else deadline - time.perf_counter()
                    if remaining is not None and remaining <= 0:
                        return None
                    self.cond.wait(remaining)
            if self._closed:
                raise RingClosed("ring closed")
            overwritten = self._next - self.capacity  # the seq this slot held
            if overwritten >= self._taken:  # never taken by the main consumer: lost to it
                self._drop(overwritten + 1 - self._taken)
                self._taken = overwritten + 1
            slot = self._slots[self._next % self.capacity]
            slot.seq = -1
            slot.gen += 1
            slot.meta = None
            self._writing = True
            return slot

    def _full(self) -> bool:
        """Gated and the next slot still holds an unreleased frame (call with ``cond`` held)."""
        return self.gated and self._next - self._released >= self.capacity

    def has_room(self) -> bool:
        """Whether :meth:`claim` would return at once."""
        with self.cond:
            return self._closed or not self._full()

    def wait_room(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`has_room` (or the ring closes); False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: self._closed or not self._full(), timeout)

    def publish(self, slot: Slot[M], meta: M, index: int | None = None) -> int:
        """Make the claimed ``slot`` readable with ``meta``; returns its sequence number.

        Raises :class:`RingClosed` if the ring was closed meanwhile.
        """
        with self.cond:
            if self._closed:
                raise RingClosed("ring closed")
            seq = self._next
            if slot is not self._slots[seq % self.capacity] or not self._writing:
                raise RuntimeError("publish() without a matching claim()")
            slot.meta = meta
            slot.seq = seq
            if self._history is not None:
                self._history[seq % self._history.size] = seq if index is None else index
            self._next = seq + 1
            self._writing = False
            self.cond.notify_all()
            return seq

    def close(self, error: str | None = None) -> None:
        """End of stream (with an error message if the producer failed); wakes all waiters."""
        with self.cond:
            if not self._closed:
                self._closed = True
                self._writing = False
                if error is not None:
                    self._error = error
            elif error is not None and self._error is None:
                self._error = error
            self.cond.notify_all()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the ring is closed; False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: self._closed, timeout)

    # ------------------------------------------------------------ main consumer
    def _drop(self, n: int) -> None:
        if n > 0 and self.on_drop is not None:
            self.on_drop(n)

    def take_next(self, timeout: float | None = None) -> int | None:
        """Take the next sequence number in order; ``None`` on timeout or closed and drained."""
        with self.cond:
            if not self.cond.wait_for(lambda: self._next > self._taken or self._closed, timeout):
                return None
            if self._next <= self._taken:
                return None
            self._taken += 1
            return self._taken - 1

    def take_newest(
        self,
        timeout: float | None = None,
        prefer: Callable[[M], bool] | None = None,
        within: int = 1,
    ) -> int | None:
        """Take the newest sequence number; the ones skipped go to ``on_drop``.

        ``prefer``: take the newest of the last ``within`` untaken ones whose metadata it
        accepts instead (the newer ones stay for the next take), e.g. the next channel of an
        interleaved stream so that a slow engine serves every channel in turn.
        """
        with self.cond:
            if not self.cond.wait_for(lambda: self._next > self._taken or self._closed, timeout):
                return None
            if self._next <= self._taken:
                return None
            newest = self._next - 1
            if prefer is not None:
                for seq in range(newest, max(self._taken, newest - within + 1) - 1, -1):
                    slot = self._slots[seq % self.capacity]
                    if slot.seq == seq and slot.meta is not None and prefer(slot.meta):
                        newest = seq
                        break
            self._drop(newest - self._taken)
            self._taken = newest + 1
            return newest

    @property
    def drained(self) -> bool:
        """Closed, and the main consumer took (or dropped) everything published."""
        with self.cond:
            return self._closed and self._next <= self._taken

    def drop_rest(self) -> int:
        """Report every published sequence number not taken yet as dropped; returns how many."""
        with self.cond:
            n = self._next - self._taken
            self._drop(n)
            self._taken = self._next
            return n

    def release(self, seq: int) -> None:
        """Gated ring: the main consumer is done with every sequence number ``<= seq``."""
        with self.cond:
            if seq + 1 > self._released:
                self._released = seq + 1
                self.cond.notify_all()

    # ------------------------------------------------------------------ readers

    def wait_readable(
        self,
        seq: int,
        timeout: float | None = None,
        abort: Callable[[], bool] | None = None,
    ) -> tuple[str, int]:
        """Wait for ``seq`` on behalf of an in-order reader.

        Returns ``("ok", seq)`` when it is readable, ``("lapped", oldest)`` when it (and
        every sequence number up to ``oldest``) was overwritten, ``("closed", next_seq)``
        when the ring closed with nothing left from ``seq`` on, ``("timeout", seq)`` on
        timeout or when ``abort()`` became true.
        """
        with self.cond:
            self.cond.wait_for(
                lambda: self._next > seq or self._closed or (abort is not None and abort()),
                timeout,
            )
            if self._next > seq:
                if self._slots[seq % self.capacity].seq == seq:
                    return "ok", seq
                return "lapped", max(seq + 1, self.oldest_seq())
            if self._closed:
                return "closed", self._next
            return "timeout", seq

    def view(self, seq: int) -> tuple[Slot[M], int, M] | None:
        """Zero-copy access: ``(slot, gen, meta)`` if ``seq`` is still held, else ``None``.

        ``meta`` is taken under the lock (the slot's own attribute may change at any time).
        Read ``slot.arrays`` without the lock, then confirm with :meth:`still_valid` before
        trusting what was read.
        """
        with self.cond:
            slot = self._slots[seq % self.capacity]
            if slot.seq != seq or slot.meta is None:
                return None
            return slot, slot.gen, slot.meta

    def still_valid(self, slot: Slot[M], gen: int) -> bool:
        """Whether ``slot`` was not claimed again since :meth:`view` returned ``gen``."""
        with self.cond:
            return slot.gen == gen

    def read(self, seq: int, out: Mapping[str, np.ndarray]) -> M | None:
        """Copy slot ``seq``'s arrays into ``out`` (same names and shapes).

        Returns the slot's metadata, or ``None`` if ``seq`` was overwritten before or during
        the copy (then ``out`` holds garbage).
        """
        got = self.view(seq)
        if got is None:
            return None
        slot, gen, meta = got
        for name, dst in out.items():
            np.copyto(dst, slot.arrays[name])
        if not self.still_valid(slot, gen):
            return None
        return meta


@dataclass(frozen=True, slots=True)
class FrameMeta:
    """Metadata of one raw frame."""

    index: int
    """Pipeline frame index (0, 1, 2, ... per run; = the frame ring's sequence number)."""
    camera_frame: int
    """The camera's frame number (``ImageNumber`` or the camera's own counter); -1 unknown."""
    camera_time_ms: float
    """The camera's/core's timestamp (``ElapsedTime-ms``), NaN if absent."""
    arrival_s: float
    """``time.perf_counter()`` when the frame was popped from the core."""
    stage_z_um: float
    """Focus stage position (metadata or last stage event), NaN if unknown."""
    metadata: Mapping[str, str]
    """The core's metadata of the frame."""
    channel: int = 0
    """Position of the frame's channel in the pipeline's channel list (0: one channel)."""
    plan_id: int = 0
    """The plan in force when the frame was popped from the camera (it is refocused, and
    completed after a recording, with this plan)."""
    plan: Any = None
    """That plan object (``PlanePlan``)."""
    norm_version: int = 0
    """The normalisation version in force when the frame was popped (+1 per
    ``refit_normalization``): a frame popped after a refit request is refocused with a
    normalisation fitted on it or a later frame, never with the one before."""


@dataclass(frozen=True, slots=True)
class PlaneMeta:
    """Metadata of one refocused frame: its raw frame's metadata plus the plan used."""

    frame: FrameMeta
    ready_s: float
    """``time.perf_counter()`` when the planes were ready."""
    n_planes: int
    offsets_um: np.ndarray
    """(K,) nominal plane offsets of the plan used (read-only)."""
    plan_id: int
    """Increments with every ``set_plan``; 0 for the plan given at construction."""
    plan: Mapping[str, Any]
    """``plan.describe()`` of the plan used (read-only)."""
    normalization: Any = None
    """The ``Normalization`` the frame was refocused with."""
    served_um: float | None = None
    """A dynamic plan's shift of its planes for this frame (µm, before the offsets; drift
    compensation's served correction, clamped to the range), from the plan's
    ``served_um(frame_index)`` on the inference thread; None for static plans."""


class FrameRing(SlotRing[FrameMeta]):
    """Raw camera frames ``(H, W)`` of one dtype, slot array name ``"image"``."""

    def __init__(
        self,
        capacity: int,
        height: int,
        width: int,
        dtype: DTypeLike,
        *,
        gated: bool = False,
        pinned: bool = False,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(
            capacity,
            {"image": ((height, width), dtype)},
            gated=gated,
            history=0,
            pinned=pinned,
            on_drop=on_drop,
        )
        self.shape = (height, width)
        self.dtype = np.dtype(dtype)


class PlaneRing(SlotRing[PlaneMeta]):
    """Up to ``max_planes`` float32 planes ``(K, H, W)`` per frame, slot array ``"planes"``.

    A frame with fewer planes (``meta.n_planes``) uses the leading ``[:n_planes]`` part.
    """

    def __init__(
        self,
        capacity: int,
        max_planes: int,
        height: int,
        width: int,
        *,
        history: int = 1 << 16,
        pinned: bool = False,
    ) -> None:
        super().__init__(
            capacity,
            {"planes": ((max_planes, height, width), np.float32)},
            history=max(history, 4 * capacity),
            pinned=pinned,
        )
        self.max_planes = max_planes
        self.shape = (height, width)
