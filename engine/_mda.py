"""Deep-Z inside pymmcore-plus multi-dimensional acquisitions: :class:`MDAProcessor`.

Attach it to a ``CMMCorePlus`` / ``UniMMCore`` and every frame of every ``useq.MDASequence``
run on it (``core.run_mda(seq, output="run.ome.zarr")``, from a script, pymmcore-widgets'
``MDAWidget``, napari-micromanager, ...) is refocused into the configured virtual planes::

    proc = MDAProcessor(core, backend, StaticPlanePlan("-4:4:2"), dpm_scale_um=10.0,
                        output="run.ome.zarr")
    with proc:                                   # attach() ... detach()
        core.mda.run(seq, output="run.ome.zarr")  # pymmcore-plus writes the raw frames
    summary = proc.wait()                        # planes completed, files closed

Threads. pymmcore-plus emits ``frameReady`` in its acquisition thread. The processor's
handler there only copies the frame into a fixed-slot :class:`~live_deepz.engine.FrameRing`
(free-running: it never waits) and notes its event index; one worker thread takes the
newest frame from the ring, normalises it (per position and channel), builds its
position's DPMs, runs the channel's backend and writes the planes. Why not pymmcore-plus'
``mda_listeners_connected`` relay: its deque holds a reference to every frame until the
handler gets to it (memory grows without bound behind a slow engine) and it polls every
5 ms; the ring bounds memory and counts exactly what the engine skipped.

Lossless rule. pymmcore-plus' own writer keeps every raw frame (in its thread, as without
live-deepz). Frames the engine could not keep up with are skipped live and their planes
are computed from the raw files when the sequence ends
(:func:`~live_deepz.recording.complete_mda_recording`); the summary counts both.

Per-position and per-channel state is keyed by the event's index ``(p, t, c)``:
normalisation per (position, channel) (fitted on its first processed frame), backend per
channel, plane plan per position (``plan`` may be a factory ``position -> plan``; a
dynamic plan such as drift compensation is fed its position's frames of the first
channel).

A camera error mid-sequence: pymmcore-plus logs "Failed to snap image" and goes on with
the next event (its writer would then put later frames into the failed frame's slot). The
processor watches for that message, journals the event as missing and cancels the MDA
(``cancel_on_camera_error``), so the files hold exactly what was acquired.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from live_deepz.dpm import PlanePlan
from live_deepz.errors import InputError, LiveDeepzError
from live_deepz.normalize import Normalization, fit_normalization
from live_deepz.recording import MDAPlaneWriter, complete_mda_recording, event_key, mda_sizes

from ._offline import _model_meta
from ._refocuser import Refocuser
from ._rings import FrameMeta, FrameRing, RingClosed

__all__ = ["MDAPlanes", "MDAProcessor", "MDASummary"]

Key = tuple[int, int, int]
_POLL_S = 0.05
_RING_MAX_BYTES = 512 * 2**20
_SNAP_FAILED = "Failed to snap image"


@dataclass(frozen=True)
class MDAPlanes:
    """The latest refocused frame (what a live view shows)."""

    key: Key
    """``(p, t, c)`` of the event."""
    planes: np.ndarray
    """``(Z, Y, X)`` float32, normalised intensity."""
    raw: np.ndarray
    offsets_um: np.ndarray
    seq: int
    """Increments with every refocused frame."""


@dataclass
class MDASummary:
    """What one MDA run gave (counts in = written)."""

    frames_acquired: int = 0
    """Frames pymmcore-plus delivered (``frameReady``)."""
    frames_expected: int = 0
    """Events of the sequence (P x T x C)."""
    frames_missing: int = 0
    """Events that produced no frame (camera error)."""
    planes_live: int = 0
    """Frames refocused live."""
    planes_skipped_live: int = 0
    """Frames the engine could not keep up with (their planes were left to completion)."""
    planes_completed: int = 0
    """Of those, refocused from the raw files after the sequence ended."""
    cancelled: bool = False
    camera_error: str | None = None
    error: str | None = None
    """The processor failed (the raw frames are unaffected)."""
    acquisition_s: float = math.nan
    completion_s: float = 0.0
    planes_path: str | None = None
    raw_path: str | None = None
    infer_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def incomplete(self) -> int:
        """Acquired frames without planes."""
        return self.frames_acquired - self.planes_live - self.planes_completed

    def lines(self) -> list[str]:
        med = float(np.median(self.infer_ms)) if self.infer_ms else math.nan
        out = [
            f"MDA recording: raw {self.raw_path or '(not saved)'}, "
            f"planes {self.planes_path or '(not saved)'}",
            f"  events             {self.frames_expected}",
            f"  frames acquired    {self.frames_acquired}",
            f"  refocused live     {self.planes_live} (median {med:.1f} ms per frame)",
            f"  not refocused live {self.planes_skipped_live} (the acquisition did not pause, "
            "or the engine is slower)",
            f"  completed after    {self.planes_completed} in {self.completion_s:.1f} s",
            f"  without planes     {self.incomplete}",
        ]
        if self.frames_missing:
            out.append(f"  missing (no frame) {self.frames_missing}")
        if self.cancelled:
            out.append("  (the MDA was cancelled)")
        if self.camera_error:
            out.append(f"  camera error: {self.camera_error}")
        if self.error:
            out.append(f"  error: {self.error}")
        return out

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "infer_ms"}
        d["incomplete"] = self.incomplete
        d["infer_ms_median"] = float(np.median(self.infer_ms)) if self.infer_ms else None
        return d


class _SnapFailureWatch(logging.Handler):
    """Sees pymmcore-plus' "Failed to snap image" warning (its only sign of a camera error)."""

    def __init__(self, on_failure: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self._on_failure = on_failure

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if _SNAP_FAILED in msg:
            self._on_failure(msg)


class _Run:
    """One sequence: ring, arrivals, worker, writer, summary."""

    def __init__(self, sequence: Any, shape: tuple[int, int], dtype: Any, slots: int) -> None:
        self.sequence = sequence
        self.sizes = mda_sizes(sequence)
        self.shape = shape
        self.summary = MDASummary(frames_expected=int(np.prod(self.sizes)))
        per_frame = int(np.prod(shape)) * np.dtype(dtype).itemsize
        # room for two time points of every position and channel (the worker refocuses them
        # while the MDA waits for the next one), within _RING_MAX_BYTES
        want = max(int(slots), 2 * self.sizes[0] * self.sizes[2])
        self.ring = FrameRing(max(2, min(want, _RING_MAX_BYTES // per_frame)), *shape, dtype)
        self.acquiring = False  # between eventStarted and the next wait / the end
        self.keys: list[Key] = []  # ring sequence number -> event key (producer appends)
        self.arrivals: list[tuple[Key, dict[str, Any]]] = []
        self.pages: dict[int, int] = {}  # raw frames so far per position (TIFF page)
        self.missing: list[tuple[Key, str]] = []
        self.current: Key | None = None
        self.got_frame = False
        self.t0 = time.perf_counter()
        self.done = threading.Event()
        self.worker: threading.Thread | None = None


class MDAProcessor:
    """Refocuses every frame of the MDAs run on ``core`` (see the module docstring).

    Parameters
    ----------
    core
        A ``CMMCorePlus`` (or ``UniMMCore``).
    backends
        A backend (``infer(image, dpms_net, out)``, ``prepare(h, w, k)``) for all channels,
        a list (one per channel of the sequence) or a mapping channel name -> backend.
    plan
        A plane plan for all positions, or a factory ``position -> plan`` (needed for a
        dynamic plan such as drift compensation: one per position).
    dpm_scale_um, z_range_um
        From the model card (``model.card.dpm_scale_um`` / ``z_range_um``).
    output
        The path pymmcore-plus writes the raw frames to (``NAME.ome.zarr`` /
        ``NAME.ome.tiff``); the planes go to ``NAME.planes.zarr``. ``None``: nothing saved
        (live view only).
    ring_slots
        At least this many frames in the ring (default: two time points of every position
        and channel, within 512 MB; the acquisition never waits for the ring).
    complete_on_finish
        Compute the planes the engine skipped when the sequence ends (from the raw files).
    models
        ``LoadedModel`` per channel (or one), for the files' metadata (name, sha256, card).
    burst_live_interval_s
        While the acquisition is busy (between an event's start and the next wait), refocus
        only the newest frame every this many seconds (for the live view); everything
        else is refocused in order while the MDA waits for its next time point, or completed
        from the raw files at the end. 0: refocus as fast as possible, competing with the
        acquisition for the CPU.
    worker_nice
        Linux: the worker thread's nice increment (the acquisition thread gets the CPU
        first when both want it; 0: unchanged).
    """

    def __init__(
        self,
        core: Any,
        backends: Any,
        plan: PlanePlan | Callable[[int], PlanePlan],
        *,
        dpm_scale_um: float,
        z_range_um: tuple[float, float] | None = None,
        output: str | Path | None = None,
        ring_slots: int = 8,
        complete_on_finish: bool = True,
        cancel_on_camera_error: bool = True,
        allow_out_of_range: bool = False,
        models: Any = None,
        metadata: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        worker_nice: int = 10,
        burst_live_interval_s: float = 0.5,
    ) -> None:
        self.core = core
        self.worker_nice = int(worker_nice)
        self.burst_live_interval_s = float(burst_live_interval_s)
        self._backends = backends
        self._plan = plan
        self.dpm_scale_um = float(dpm_scale_um)
        self.z_range_um = z_range_um
        self.output = None if output is None else Path(output)
        self.ring_slots = int(ring_slots)
        self.complete_on_finish = complete_on_finish
        self.cancel_on_camera_error = cancel_on_camera_error
        self.allow_out_of_range = allow_out_of_range
        self.models = models
        self.metadata = dict(metadata or {})
        self.overwrite = overwrite
        # the card's rules (range check, µm -> network units); the backends run per channel
        self._converter = Refocuser.from_range(
            z_range_um, self.dpm_scale_um, allow_out_of_range=allow_out_of_range
        )
        self._run: _Run | None = None
        self._last: _Run | None = None
        self._attached = False
        self._watch = _SnapFailureWatch(self._on_snap_failed)
        self._latest: MDAPlanes | None = None
        self._latest_lock = threading.Lock()
        self._n_refocused = 0
        self.on_planes: Callable[[MDAPlanes], None] | None = None
        """Called (in the worker thread) after every refocused frame."""

    # ------------------------------------------------------------------ attach
    def attach(self) -> MDAProcessor:
        """Connect to ``core.mda.events`` (every following MDA is processed)."""
        if self._attached:
            return self
        ev = self.core.mda.events
        _connect_direct(ev.sequenceStarted, self._on_sequence_started)
        _connect_direct(ev.eventStarted, self._on_event_started)
        _connect_direct(ev.awaitingEvent, self._on_awaiting)
        _connect_direct(ev.frameReady, self._on_frame)
        _connect_direct(ev.sequenceCanceled, self._on_canceled)
        _connect_direct(ev.sequenceFinished, self._on_sequence_finished)
        logging.getLogger("pymmcore-plus").addHandler(self._watch)
        self._attached = True
        return self

    def detach(self) -> None:
        """Disconnect (a running sequence's worker finishes on its own)."""
        if not self._attached:
            return
        ev = self.core.mda.events
        for sig, fn in (
            (ev.sequenceStarted, self._on_sequence_started),
            (ev.eventStarted, self._on_event_started),
            (ev.awaitingEvent, self._on_awaiting),
            (ev.frameReady, self._on_frame),
            (ev.sequenceCanceled, self._on_canceled),
            (ev.sequenceFinished, self._on_sequence_finished),
        ):
            with contextlib.suppress(Exception):  # already gone (core closed)
                sig.disconnect(fn)
        logging.getLogger("pymmcore-plus").removeHandler(self._watch)
        self._attached = False

    def __enter__(self) -> MDAProcessor:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # ------------------------------------------------------------------ results
    @property
    def running(self) -> bool:
        return self._run is not None and not self._run.done.is_set()

    def set_plan(self, plan: PlanePlan | Callable[[int], PlanePlan]) -> None:
        """The plan (or per-position factory) for the next sequence."""
        self._plan = plan

    @property
    def summary(self) -> MDASummary | None:
        """The counts of the current (or last) sequence, None before the first."""
        run = self._run or self._last
        return None if run is None else run.summary

    @property
    def frames_acquired(self) -> int:
        """Frames of the current (or last) sequence so far."""
        run = self._run or self._last
        return 0 if run is None else run.summary.frames_acquired

    def latest(self) -> MDAPlanes | None:
        """The most recently refocused frame (any position), or None."""
        with self._latest_lock:
            return self._latest

    def wait(self, timeout: float | None = None) -> MDASummary:
        """Wait until the last sequence's planes are done (completed, files closed)."""
        run = self._run or self._last
        if run is None:
            raise InputError("no MDA has run on this processor yet")
        if not run.done.wait(timeout):
            raise TimeoutError(f"the MDA processor did not finish within {timeout} s")
        return run.summary

    # ------------------------------------------------------------------ producer side
    # (called in pymmcore-plus' acquisition thread: only O(1) work and one frame copy)
    def _on_sequence_started(self, sequence: Any, meta: Any = None) -> None:
        if self._run is not None and not self._run.done.is_set():
            self._run.ring.close()
        info = (meta or {}).get("image_infos") or [{}]
        h = int(info[0].get("height") or self.core.getImageHeight())
        w = int(info[0].get("width") or self.core.getImageWidth())
        dtype = np.dtype(info[0].get("dtype") or f"uint{8 * self.core.getBytesPerPixel()}")
        try:
            if type(sequence).__name__ == "GeneratorMDASequence":
                raise InputError(
                    "an MDA run from an iterable of events has no known shape (positions, time "
                    "points, channels): run a useq.MDASequence to have its frames refocused"
                )
            run = _Run(sequence, (h, w), dtype, self.ring_slots)
        except InputError as exc:  # a sequence we cannot place: say so, leave the MDA alone
            logging.getLogger("live-deepz").error("live-deepz MDA processor: %s", exc)
            self._last, self._run = self._run, None
            return
        self._run = run
        run.worker = threading.Thread(
            target=self._work, args=(run,), name="live-deepz-mda", daemon=True
        )
        run.worker.start()

    def _on_event_started(self, event: Any) -> None:
        run = self._run
        if run is None:
            return
        run.current = event_key(event.index)
        run.got_frame = False
        run.acquiring = True

    def _on_awaiting(self, event: Any = None, remaining: float = 0.0) -> None:
        run = self._run
        if run is not None:
            run.acquiring = False

    def _on_snap_failed(self, message: str) -> None:
        run = self._run
        if run is None or run.current is None or run.got_frame:
            return
        run.missing.append((run.current, message))
        if run.summary.camera_error is None:
            run.summary.camera_error = message
        if self.cancel_on_camera_error:
            self.core.mda.cancel()

    def _on_frame(self, img: np.ndarray, event: Any, meta: Any = None) -> None:
        run = self._run
        if run is None:
            return
        key = event_key(event.index)
        run.got_frame = True
        p = key[0]
        page = run.pages.get(p, 0)
        run.pages[p] = page + 1
        m = meta or {}
        pos = m.get("position") or {}
        run.arrivals.append(
            (
                key,
                {
                    "index": dict(event.index),
                    "page": page,
                    "runner_time_ms": m.get("runner_time_ms"),
                    "exposure_ms": m.get("exposure_ms"),
                    "x_um": pos.get("x"),
                    "y_um": pos.get("y"),
                    "z_um": pos.get("z"),
                    "arrival_s": time.perf_counter() - run.t0,
                },
            )
        )
        run.summary.frames_acquired += 1
        ring = run.ring
        if img.shape != ring.shape:  # e.g. the ROI changed mid-sequence: raw kept, no planes
            return
        try:
            slot = ring.claim(0)
            if slot is None:
                return
            np.copyto(slot.arrays["image"], img, casting="unsafe")
            run.keys.append(key)
            ring.publish(
                slot,
                FrameMeta(
                    index=len(run.keys) - 1,
                    camera_frame=-1,
                    camera_time_ms=float(m.get("runner_time_ms") or math.nan),
                    arrival_s=time.perf_counter(),
                    stage_z_um=math.nan if (z := pos.get("z")) is None else float(z),
                    metadata={},
                    channel=key[2],
                ),
            )
        except RingClosed:
            pass

    def _on_canceled(self, sequence: Any = None) -> None:
        if self._run is not None:
            self._run.summary.cancelled = True

    def _on_sequence_finished(self, sequence: Any = None) -> None:
        run = self._run
        if run is None:
            return
        run.summary.acquisition_s = time.perf_counter() - run.t0
        run.acquiring = False
        run.ring.close()
        self._last = run

    # ------------------------------------------------------------------ worker
    def _backend_for(self, c: int, names: Sequence[str]) -> Any:
        b = self._backends
        if isinstance(b, Mapping):
            name = names[c] if c < len(names) else str(c)
            if name not in b:
                raise InputError(f"no backend for channel {name!r} (given: {sorted(b)})")
            return b[name]
        if isinstance(b, Sequence) and not isinstance(b, str | bytes):
            if len(b) == 1:
                return b[0]
            if c >= len(b):
                raise InputError(f"{len(b)} backends for a sequence of {c + 1}+ channels")
            return b[c]
        return b

    def _plan_for(self, p: int) -> PlanePlan:
        plan = self._plan
        if callable(plan) and not hasattr(plan, "dpms_for_frame"):
            return plan(p)  # type: ignore[operator]
        return plan  # type: ignore[return-value]

    def _work(self, run: _Run) -> None:
        _lower_priority(self.worker_nice)
        s = run.summary
        writer: MDAPlaneWriter | None = None
        names = [str(ch.config) for ch in getattr(run.sequence, "channels", ())]
        plans: dict[int, PlanePlan] = {}
        norms: dict[tuple[int, int], Normalization] = {}
        nets: dict[tuple[int, int], tuple[Any, np.ndarray]] = {}  # (p, c) -> (dpms, net)
        prepared: set[int] = set()
        journaled = 0
        x = np.empty(run.shape, np.float32)
        done_live: set[Key] = set()
        fed: dict[int, int] = {}  # position -> last time point a dynamic plan was fed

        def journal_arrivals() -> None:
            nonlocal journaled
            while journaled < len(run.arrivals):
                key, info = run.arrivals[journaled]
                if writer is not None:
                    writer.frame(key, info)
                journaled += 1
            while run.missing:
                key, msg = run.missing.pop(0)
                s.frames_missing += 1
                if writer is not None:
                    writer.missing(key, msg)

        made: dict[int, PlanePlan | None] = {}  # position 0's plan, made first for the offsets

        def plan_of(p: int) -> PlanePlan:
            if p not in plans:
                pl = plans[p] = made.pop(p, None) or self._plan_for(p)
                if writer is not None:
                    writer.set_plan(
                        p,
                        dict(pl.describe()),
                        [float(v) for v in np.ravel(pl.offsets_um)],
                        getattr(pl, "surface_um", None),
                    )
            return plans[p]

        try:
            first = made[0] = self._plan_for(0)  # a factory is called once per position
            offsets = np.asarray(first.offsets_um, np.float64).reshape(-1)
            if self.output is not None:
                writer = MDAPlaneWriter(
                    self.output,
                    sequence=run.sequence,
                    frame_shape=run.shape,
                    offsets_um=[float(v) for v in offsets],
                    raw_dtype=run.ring.dtype,
                    pixel_size_um=_pixel_size(self.core),
                    channel_names=names or None,
                    metadata=self._metadata(),
                    overwrite=self.overwrite,
                )
                s.planes_path = str(writer.paths.planes)
                s.raw_path = str(writer.paths.raw)
            k = offsets.size
            out = np.empty((k, *run.shape), np.float32)
            for c in range(run.sizes[2]):  # off the acquisition thread, before the frames
                backend = self._backend_for(c, names)
                prep = getattr(backend, "prepare", None)
                if id(backend) not in prepared and callable(prep):
                    prep(run.shape[0], run.shape[1], k)
                prepared.add(id(backend))
            ring = run.ring
            nxt = 0  # the next ring sequence number to refocus in order (idle time)
            last_peek = -math.inf
            while True:
                journal_arrivals()
                if run.acquiring and self.burst_live_interval_s > 0:
                    # the acquisition is busy: only a sample for the live view, now and then
                    newest = ring.next_seq - 1
                    now = time.perf_counter()
                    if (
                        newest < 0
                        or now - last_peek < self.burst_live_interval_s
                        or run.keys[newest] in done_live
                    ):
                        time.sleep(0.01)
                        continue
                    seq, last_peek, display_only = newest, now, True
                else:  # idle (waiting for the next time point) or finished: every frame, in order
                    if nxt >= ring.next_seq:
                        if ring.closed:
                            break
                        ring.wait_readable(nxt, timeout=_POLL_S)
                        continue
                    seq = nxt = max(nxt, ring.oldest_seq())  # lapped: left to completion
                    nxt += 1
                    display_only = False
                    if run.keys[seq] in done_live:
                        continue
                got = ring.view(seq)
                if got is None:  # overwritten before we got to it: completed later
                    continue
                slot, gen, meta = got
                key = run.keys[seq]
                p, t, c = key
                np.copyto(x, slot.arrays["image"], casting="unsafe")
                if not ring.still_valid(slot, gen):
                    continue
                t0 = time.perf_counter()
                norm = norms.get((p, c))
                if norm is None:
                    try:
                        norm = norms[(p, c)] = fit_normalization(x)
                    except InputError as exc:
                        raise InputError(
                            f"could not fit the intensity normalisation at position {p}, "
                            f"channel {c} (frame {key}): {exc}"
                        ) from exc
                    if writer is not None:
                        writer.set_normalization(p, c, norm.background, norm.scale)
                norm.apply(x, out=x)
                plan = plan_of(p)
                update = getattr(plan, "update", None)
                if callable(update) and c == 0 and not display_only and t > fed.get(p, -1):
                    update(x, t, float(meta.camera_time_ms))
                    fed[p] = t
                dpms = plan.dpms_for_frame(t, float(meta.camera_time_ms), run.shape)
                cached = nets.get((p, c))
                if cached is None or cached[0] is not dpms or dpms.flags.writeable:
                    if dpms.shape != (k, *run.shape):
                        raise InputError(
                            f"the plan of position {p} gave DPMs of shape {dpms.shape}; "
                            f"expected {(k, *run.shape)}"
                        )
                    net = self._converter.network_dpms(dpms, what=f"the DPMs of position {p}")
                    net.flags.writeable = False
                    cached = nets[(p, c)] = (dpms, net)
                backend = self._backend_for(c, names)
                backend.infer(x, cached[1], out)
                s.infer_ms.append((time.perf_counter() - t0) * 1e3)
                if display_only:  # a burst's live-view sample: no disk I/O during the burst
                    self._publish(key, out, slot_raw=x, offsets=offsets)
                    continue
                corr = getattr(plan, "correction_um", None)
                journal_arrivals()  # the frame's own line before its planes
                if writer is not None:
                    writer.write_planes(
                        key,
                        out,
                        source="live",
                        correction_um=float(corr()) if callable(corr) else None,
                    )
                done_live.add(key)
                s.planes_live += 1
                self._publish(key, out, slot_raw=x, offsets=offsets)
            journal_arrivals()
            s.planes_skipped_live = s.frames_acquired - s.planes_live
            if writer is not None and self.complete_on_finish:
                t_c = time.perf_counter()
                writer.close({"phase": "acquired", **s.to_dict()})
                report = complete_mda_recording(
                    writer.paths.raw,
                    [
                        Refocuser.from_range(
                            self.z_range_um,
                            self.dpm_scale_um,
                            self._backend_for(c, names),
                            allow_out_of_range=self.allow_out_of_range,
                        )
                        for c in range(run.sizes[2])
                    ],
                    plans={
                        p: pl
                        for p, pl in plans.items()
                        if not callable(getattr(pl, "update", None))
                    },
                    summary={**s.to_dict(), "phase": "completed"},
                )
                s.planes_completed = report.completed
                s.completion_s = time.perf_counter() - t_c
                writer = None
        except (LiveDeepzError, OSError, ValueError) as exc:
            s.error = f"{type(exc).__name__}: {exc}"
            logging.getLogger("live-deepz").error("live-deepz MDA processor: %s", s.error)
        except Exception as exc:  # never let the worker die silently
            s.error = f"{type(exc).__name__}: {exc}"
            logging.getLogger("live-deepz").exception("live-deepz MDA processor failed")
        finally:
            run.ring.close()
            with contextlib.suppress(LiveDeepzError):
                journal_arrivals()
            if writer is not None:
                try:
                    writer.close({"phase": "acquired", **s.to_dict()})
                except LiveDeepzError as exc:
                    s.error = s.error or str(exc)
            if self._run is run:
                self._last = run
            run.done.set()

    def _publish(
        self, key: Key, planes: np.ndarray, slot_raw: np.ndarray, offsets: np.ndarray
    ) -> None:
        self._n_refocused += 1
        item = MDAPlanes(
            key=key,
            planes=planes.copy(),
            raw=slot_raw.copy(),
            offsets_um=offsets,
            seq=self._n_refocused,
        )
        with self._latest_lock:
            self._latest = item
        cb = self.on_planes
        if cb is not None:
            cb(item)

    def _metadata(self) -> dict[str, Any]:
        meta = dict(self.metadata)
        models = self.models
        if models is not None:
            ms = list(models) if isinstance(models, Sequence) else [models]
            described = [_model_meta(m) for m in ms]
            meta["model"] = described[0]
            if len(described) > 1:
                meta["models"] = described
        meta["engine"] = _describe(self._backends)
        meta["dpm_scale_um"] = self.dpm_scale_um
        meta["z_range_um"] = None if self.z_range_um is None else list(self.z_range_um)
        return meta


def _lower_priority(nice: int) -> None:
    """Lower the calling thread's scheduling priority (Linux: per-thread nice; elsewhere a
    no-op)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except OSError:
        pass


def _connect_direct(signal: Any, slot: Callable[..., Any]) -> None:
    """Connect so that ``slot`` runs in the emitting (acquisition) thread.

    With a Qt application running, pymmcore-plus' MDA signals are Qt signals, and a plain
    Python slot would be queued to the UI thread: frames would wait for the event loop and
    ``sequenceFinished`` for a UI thread that may be blocked waiting for the planes. The
    Qt module is taken from the signal itself (this package imports no Qt).
    """
    top = type(signal).__module__.split(".")[0]
    if top in ("PySide6", "PyQt6", "PySide2", "PyQt5"):
        qtcore = sys.modules[f"{top}.QtCore"]
        signal.connect(slot, qtcore.Qt.ConnectionType.DirectConnection)
    else:
        signal.connect(slot)


def _describe(backends: Any) -> Any:
    if isinstance(backends, Mapping):
        return {k: _describe(v) for k, v in backends.items()}
    if isinstance(backends, Sequence) and not isinstance(backends, str | bytes):
        return [_describe(b) for b in backends]
    d = getattr(backends, "describe", None)
    return d() if callable(d) else type(backends).__name__


def _pixel_size(core: Any) -> float | None:
    try:
        px = float(core.getPixelSizeUm())
    except Exception:
        return None
    return px if px > 0 else None
