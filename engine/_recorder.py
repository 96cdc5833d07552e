"""The live recorder: every raw frame and every processed frame's planes of a pipeline, to disk.

::

    pipeline.subscribe_raw()  --raw thread-->   RecordingWriter.append_frame  (every frame)
    pipeline.subscribe_all()  --planes thread-> RecordingWriter.write_planes  (processed ones)
    stop(): the planes the engine skipped are computed from the raw frames (completion)

Use it around a :class:`~live_deepz.engine.LivePipeline` in ``"live"`` mode (the engine may
skip frames; the raw stream never does)::

    rec = Recorder(pipeline, "run.ome.tif", model=loaded_model)
    rec.start()            # before pipeline.start(): subscribes from the first frame
    pipeline.start()
    ...
    summary = rec.stop()   # stops the pipeline, closes the files, completes the planes

A dynamic plan's per-frame DPMs (drift compensation) are journaled as they are served
(:class:`PlanTimeline`), so completion rebuilds each skipped frame's own DPMs. A pipeline
with ``channels`` (an interleaved multi-channel stream) gives a recording with a C axis:
each camera frame goes to the slot (time point, channel) its frame number says
(:class:`ChannelClock`), so a dropped frame leaves its slot empty and nothing shifts.

Nothing is lost silently: raw frames the recorder could not keep up with (the frame ring
lapped it) are named in the journal and in :class:`RecordingSummary` (``raw_lost``); a
write error (disk full, ...) stops the recording with a
:class:`~live_deepz.recording.RecordingError` whose message says what is safe and what to
do, and calls ``on_error`` so the caller can stop the camera.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from live_deepz.recording import (
    CompletionReport,
    FrameInfo,
    RecordingError,
    RecordingWriter,
    complete_recording,
)

from ._subscribers import PipelineError

__all__ = [
    "ChannelClock",
    "PlanTimeline",
    "Recorder",
    "RecordingSummary",
    "model_metadata",
    "recorder_metadata",
]

logger = logging.getLogger("live_deepz.engine")

_BUFFER_MB = 256
"""Default memory the pipeline's rings may hold for each of the recorder's subscriptions."""


@dataclass
class RecordingSummary:
    """What a recording ended with (the CLI prints it, tests check it)."""

    path: str
    format: str
    frames_acquired: int = 0
    """Frames the pipeline popped from the camera."""
    frames_recorded: int = 0
    """Raw frames written to the file (with channels: time points, one frame per channel)."""
    processed_live: int = 0
    """Frames whose planes the engine computed live and the recorder wrote."""
    completed_after: int = 0
    """Frames whose planes were computed after stop from the raw frames."""
    incomplete: int = 0
    """Frames still without planes (``live-deepz complete`` finishes them)."""
    dropped_by_camera: int = 0
    """Gaps in the camera's frame numbers (never reached the computer)."""
    skipped_by_engine: int = 0
    """Frames the live engine skipped (their planes are completed after stop)."""
    raw_lost: int = 0
    """Raw frames the recorder missed (the ring overwrote them first); should be 0."""
    planes_missed: int = 0
    """Processed frames whose planes the ring overwrote before the recorder stored them
    (disk slower than the engine); completed after stop like skipped ones."""
    not_recorded_after_limit: int = 0
    """Frames that arrived after ``max_frames`` were recorded."""
    discarded_at_stop: int = 0
    channels: list[str] | None = None
    """The channels of an interleaved multi-channel recording."""
    channel_frames_missing: int = 0
    """Channel slots of recorded time points whose camera frame never came (dropped by the
    camera or lost): left empty, marked not acquired; nothing shifted."""
    duration_s: float = 0.0
    error: str | None = None
    pipeline_error: str | None = None
    completion_s: float = 0.0
    completes_after_stop: bool = True
    """Whether skipped planes are computed after stop (False: ``--no-complete``)."""
    completion_estimate_s: float | None = None
    """The completion's estimated duration, from the live inference time per frame."""
    events: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.incomplete == 0 and self.error is None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        fps = self.frames_recorded / self.duration_s if self.duration_s > 0 else math.nan
        after = "completed after stop" if self.completes_after_stop else "left for complete"
        out = [
            f"recording: {self.path} ({self.format})",
            f"  frames acquired      {self.frames_acquired}",
            f"  frames written       {self.frames_recorded} ({fps:.1f} fps over "
            f"{self.duration_s:.1f} s)",
            f"  planes live          {self.processed_live}",
            f"  planes completed     {self.completed_after} after stop"
            + (f" in {self.completion_s:.1f} s" if self.completed_after else ""),
            f"  planes incomplete    {self.incomplete}",
            f"  dropped by camera    {self.dropped_by_camera}",
            f"  skipped by engine    {self.skipped_by_engine} ({after})",
            f"  planes not stored    {self.planes_missed} (recorder lapped; {after})",
            f"  raw frames lost      {self.raw_lost}",
        ]
        if self.channels:
            out[2:2] = [
                f"  channels             {len(self.channels)} ({', '.join(self.channels)}): "
                "frames are time points, one camera frame per channel",
                f"  channel frames missing {self.channel_frames_missing} (dropped; slot "
                "left empty)",
            ]
        if self.not_recorded_after_limit:
            out.append(f"  after --frames limit {self.not_recorded_after_limit} (not recorded)")
        if self.pipeline_error:
            out.append(f"  pipeline stopped on: {self.pipeline_error}")
        if self.error:
            out.append(f"  ERROR: {self.error}")
        return out


def completion_estimate_s(stats: Any, n_frames: int) -> float | None:
    """Seconds to compute the planes of ``n_frames`` frames after stop, from the live
    engine's median inference time per frame (None before any frame was processed)."""
    ms = None
    with contextlib.suppress(Exception):
        ms = float(stats.stage_ms["infer"])
    if ms is None or not math.isfinite(ms) or ms <= 0:
        return None
    return n_frames * ms / 1000.0


def model_metadata(model: Any) -> dict[str, Any]:
    """A model's identity for a recording: name, path, weights sha256, card."""
    card = getattr(model, "card", None)
    return {
        "name": getattr(card, "name", None),
        "path": str(getattr(model, "path", "")) or None,
        "weights_sha256": getattr(model, "weights_sha256", None),
        "card": card.to_dict() if card is not None and hasattr(card, "to_dict") else None,
    }


def recorder_metadata(
    pipeline: Any, model: Any = None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Model identity, optics, camera and engine description for a recording's header."""
    meta: dict[str, Any] = {}
    if model is not None:
        card = getattr(model, "card", None)
        meta["model"] = model_metadata(model)
        if card is not None:
            meta["optics"] = dict(getattr(card, "optics", {}) or {})
    else:
        meta["model"] = {
            "card": {
                "dpm_scale_um": getattr(pipeline, "dpm_scale_um", None),
                "z_range_um": list(getattr(pipeline, "z_range_um", ()) or ()) or None,
            }
        }
    backend = getattr(pipeline, "backend", None)
    describe = getattr(backend, "describe", None)
    if callable(describe):
        with contextlib.suppress(Exception):
            meta["engine"] = describe()
    meta["pipeline"] = {"mode": getattr(pipeline, "mode", None)}
    core = getattr(pipeline, "core", None)
    if core is not None:
        cam: dict[str, Any] = {}
        for key, fn in (
            ("device", "getCameraDevice"),
            ("exposure_ms", "getExposure"),
            ("pixel_size_um", "getPixelSizeUm"),
            ("binning", None),
            ("image_height", "getImageHeight"),
            ("image_width", "getImageWidth"),
            ("bytes_per_pixel", "getBytesPerPixel"),
            ("focus_device", "getFocusDevice"),
        ):
            try:
                if fn is None:
                    dev = core.getCameraDevice()
                    cam[key] = core.getProperty(dev, "Binning") if dev else None
                else:
                    cam[key] = getattr(core, fn)()
            except Exception:
                continue
        with contextlib.suppress(Exception):
            cam["roi"] = list(core.getROI())
        meta["camera"] = cam
    if extra:
        meta.update(dict(extra))
    return meta


def _as_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _nums(values: Any) -> list[float | None]:
    return [None if not math.isfinite(float(v)) else round(float(v), 4) for v in values]


class PlanTimeline:
    """The per-frame DPMs of dynamic plans, journaled as events (the DPM timeline).

    A dynamic plan (one with ``update()``, e.g. drift compensation) gives new DPMs every
    frame, so one ``describe()`` per plan does not say which DPMs a frame's planes were
    computed with. The recorder feeds every processed frame here (:meth:`note`) and journals
    what is new about once a second and at stop (:meth:`drain`):

    - a plan with ``served_um(frame_index)`` and ``trace()`` (a
      :class:`~live_deepz.calibration.DriftCompensationPlan`): a ``drift`` event with, per
      processed frame, the correction served (µm; plane k = correction + offset k) and every
      raw / filtered drift estimate since the last event. ``live-deepz complete`` rebuilds
      every frame's DPMs from them (:func:`live_deepz.recording.dpm_timeline`);
    - any other dynamic plan: a ``plan timeline`` event with each frame's ``describe()``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._served: list[tuple[int, float, float]] = []
        self._described: list[tuple[int, float, int, dict[str, Any]]] = []
        self._traced: dict[int, tuple[Any, int]] = {}  # plan id -> (plan, trace entries seen)

    @staticmethod
    def is_dynamic(plan: Any) -> bool:
        return callable(getattr(plan, "update", None))

    @staticmethod
    def is_drift(plan: Any) -> bool:
        return callable(getattr(plan, "served_um", None)) and callable(getattr(plan, "trace", None))

    def note(
        self, frame_index: int, t_ms: float, plan_id: int, plan: Any, description: Any
    ) -> None:
        """A frame processed with the dynamic ``plan`` (``description``: its ``describe()``
        when the frame was processed, as the pipeline hands it along)."""
        with self._lock:
            if self.is_drift(plan):
                v = plan.served_um(frame_index)
                v = math.nan if v is None else float(v)
                self._served.append((int(frame_index), float(t_ms), v))
                self._traced.setdefault(int(plan_id), (plan, 0))
            else:
                desc = dict(description or {})
                self._described.append((int(frame_index), float(t_ms), int(plan_id), desc))

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        """``(message, fields)`` of the events to journal (empty when nothing is new)."""
        with self._lock:
            served, self._served = self._served, []
            described, self._described = self._described, []
            traced = list(self._traced.items())
        out: list[tuple[str, dict[str, Any]]] = []
        est: dict[str, list[Any]] = {
            k: [] for k in ("frame_index", "t_ms", "raw_um", "filtered_um", "accepted")
        }
        for pid, (plan, seen) in traced:
            tr = plan.trace()
            n = len(tr["frame_index"])
            start = seen if seen <= n else 0  # a reset() cleared the trace
            with self._lock:
                self._traced[pid] = (plan, n)
            est["frame_index"] += [int(v) for v in tr["frame_index"][start:]]
            est["t_ms"] += _nums(tr["t_ms"][start:])
            est["raw_um"] += _nums(tr["raw_um"][start:])
            est["filtered_um"] += _nums(tr["filtered_um"][start:])
            est["accepted"] += [bool(v) for v in tr["accepted"][start:]]
        if served or est["frame_index"]:
            out.append(
                (
                    "drift",
                    {
                        "frame_index": [f for f, _, _ in served],
                        "t_ms": _nums([t for _, t, _ in served]),
                        "correction_um": _nums([v for _, _, v in served]),
                        "estimates": est,
                    },
                )
            )
        if described:
            out.append(
                (
                    "plan timeline",
                    {
                        "frame_index": [f for f, _, _, _ in described],
                        "t_ms": _nums([t for _, t, _, _ in described]),
                        "plan_id": [p for _, _, p, _ in described],
                        "plan": [d for _, _, _, d in described],
                    },
                )
            )
        return out


class ChannelClock:
    """Places the frames of an interleaved multi-channel stream: camera frame number and
    channel -> slot ``t * n_channels + c`` of the recording.

    The first frame fixes the phase; after it a frame goes where its camera frame number
    says, so a frame the camera dropped (or the recorder lost) leaves its slot empty and
    nothing after it shifts. A frame whose number and channel disagree, or a counter that
    went back (a restarted sequence), goes to its channel's next free slot.
    """

    def __init__(self, n_channels: int) -> None:
        self.n = int(n_channels)
        self.base: int | None = None
        self.last = -1

    def slot(self, number: int, channel: int) -> int:
        if self.base is None:
            self.base = number - channel
        s = number - self.base
        if s <= self.last or s % self.n != channel:
            s = self.last + 1 + (channel - (self.last + 1)) % self.n
            self.base = number - s
        self.last = s
        return s


class Recorder:
    """Record a :class:`~live_deepz.engine.LivePipeline`'s raw stream and virtual planes.

    Parameters
    ----------
    pipeline
        The pipeline (``subscribe_raw``, ``subscribe_all``, ``plan``, ``plan_id``,
        ``normalization``, ``backend``, ``core``, ``stats()``, ``stop()``).
    path
        ``NAME.ome.tif`` or ``NAME.ome.zarr`` (see :mod:`live_deepz.recording`).
    format
        ``"tiff"`` or ``"zarr"`` (default: from the suffix).
    model
        The ``LoadedModel`` in use (its name, weights sha256 and card go into the file).
    metadata
        Extra JSON-able header entries.
    max_frames
        Record at most this many raw frames (later frames are counted, not written).
    buffer_mb
        Memory the pipeline's rings may hold for each subscription (how far the recorder
        may fall behind before frames are lost): raw frames and plane frames.
    complete_on_stop
        Compute the planes the engine skipped when :meth:`stop` is called.
    on_error
        Called (from a recorder thread) with the :class:`RecordingError` that stopped it.
    channel_names
        Names of the pipeline's channels (an interleaved multi-channel stream, see
        ``LivePipeline(channels=...)``); default: the channel values themselves. The
        recording then has a C axis (raw ``T, C, Y, X``, planes ``T, C, Z, Y, X``), a time
        point is one frame of each channel, ``max_frames`` counts time points.
    units
        Plane intensities: ``"normalized"`` (the network's output) or ``"counts"`` (the
        normalisation undone, the camera's units).
    before_completion
        Called in :meth:`stop` before the skipped planes are computed, with the number of
        frames to complete and the estimated seconds (None when unknown).
    """

    def __init__(
        self,
        pipeline: Any,
        path: str | Path,
        *,
        format: str | None = None,
        model: Any = None,
        metadata: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        max_frames: int | None = None,
        buffer_mb: float = _BUFFER_MB,
        complete_on_stop: bool = True,
        progress: bool = True,
        sync_interval_s: float = 5.0,
        on_error: Callable[[RecordingError], None] | None = None,
        channel_names: Sequence[str] | None = None,
        units: str = "normalized",
        before_completion: Callable[[int, float | None], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.units = units
        self.before_completion = before_completion
        channels = getattr(pipeline, "channels", None)
        self.channels: list[str] | None = None
        if channels is not None:
            names = list(channel_names) if channel_names is not None else list(channels)
            if len(names) != len(channels):
                raise ValueError(f"{len(names)} channel names for {len(channels)} channels")
            self.channels = [str(n) for n in names]
        self._clock = ChannelClock(len(self.channels or ()) or 1)
        self.path = Path(path)
        self.format = format
        self.model = model
        self.extra = dict(metadata or {})
        self.overwrite = overwrite
        self.max_frames = None if max_frames is None else int(max_frames)
        self.buffer_mb = float(buffer_mb)
        self.complete_on_stop = complete_on_stop
        self.progress = progress
        self.sync_interval_s = sync_interval_s
        self.on_error = on_error
        self.writer: RecordingWriter | None = None
        self._cond = threading.Condition()
        self._index_to_t: collections.deque[tuple[int, int]] = collections.deque()
        self._raw_last_index = -1
        self._raw_done = False
        self._threads: list[threading.Thread] = []
        self._error: RecordingError | None = None
        self._pipeline_error: str | None = None
        self._plans: dict[int, Any] = {}
        self._norm_objs: dict[int, Any] = {}
        self._norm_lock = threading.Lock()
        self._raw_lost: list[int] = []
        self._after_limit = 0
        self._planes_live = 0
        self._planes_missed = 0
        self._planes_dropped: collections.Counter[str] = collections.Counter()
        self._timeline = PlanTimeline()
        self._timeline_drained = 0.0
        self._timeline_lock = threading.Lock()
        self._t_start = 0.0
        self._t_stop = 0.0
        self._stopped = False
        self.stops_pipeline = True
        """Whether :meth:`stop` stops the pipeline (it was not running at :meth:`start`)."""
        self._stats_at_start: Any = None
        self.summary: RecordingSummary | None = None
        self.completion: CompletionReport | None = None

    # ------------------------------------------------------------------ state
    @property
    def error(self) -> RecordingError | None:
        """The write error that stopped the recording, if any."""
        return self._error

    @property
    def frames_written(self) -> int:
        """Frames written so far; with channels whole time points (each channel's frame
        written, or dropped: a later frame came)."""
        if self.writer is None:
            return 0
        if self.channels is None:
            return self.writer.n_frames
        return min((self._clock.last + 1) // len(self.channels), self.writer.n_frames)

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        """Open the files and subscribe.

        Called before ``pipeline.start()`` the recording gets the run from its first frame
        and :meth:`stop` stops the pipeline. Called while the pipeline runs it attaches from
        the next frame on (the camera keeps streaming; it may lag as far as the running
        rings hold, see ``LivePipeline(ring_slots=, plane_slots=)``) and :meth:`stop`
        detaches, leaving the pipeline running.
        """
        if self.writer is not None:
            raise RuntimeError("this Recorder was already started; make a new one")
        p = self.pipeline
        running = getattr(p, "state", "idle") in ("running", "stopping")
        self.stops_pipeline = not running
        core = p.core
        h, w = int(core.getImageHeight()), int(core.getImageWidth())
        bpp = int(core.getBytesPerPixel())
        dtype = np.dtype({1: np.uint8, 2: np.uint16, 4: np.uint32}.get(bpp, np.uint16))
        try:
            px = float(core.getPixelSizeUm())
        except Exception:
            px = 0.0
        plan = p.plan
        offsets = np.asarray(plan.offsets_um, dtype=np.float64).reshape(-1)
        meta = recorder_metadata(p, self.model, self.extra)
        meta["plan"] = dict(plan.describe())
        if self.channels is not None:
            meta["camera_channels"] = list(p.channels)  # the frames' channel metadata
        self._exposure_ms = _as_float(getattr(core, "getExposure", lambda: math.nan)())
        self.writer = RecordingWriter(
            self.path,
            frame_shape=(h, w),
            offsets_um=offsets,
            format=self.format,
            raw_dtype=dtype,
            pixel_size_um=px if px > 0 else None,
            metadata=meta,
            overwrite=self.overwrite,
            sync_interval_s=self.sync_interval_s,
            channels=self.channels,
            units=self.units,
        )
        self._note_plan(int(p.plan_id), plan, first_index=0)
        self._note_normalization(first_index=0)
        frame_mb = h * w * dtype.itemsize / 2**20
        planes_mb = offsets.size * h * w * 4 / 2**20
        raw_slots = int(max(32, min(4096, self.buffer_mb / max(frame_mb, 1e-6))))
        plane_slots = int(max(4, min(256, self.buffer_mb / max(planes_mb, 1e-6))))
        if running:  # attach: as far behind as the running rings allow
            self._stats_at_start = p.stats()
            self._raw_sub = p.subscribe_raw(name="recorder-raw")
            self._planes_sub = p.subscribe_all(name="recorder-planes")
        else:
            self._raw_sub = p.subscribe_raw(maxsize=raw_slots, name="recorder-raw")
            self._planes_sub = p.subscribe_all(maxsize=plane_slots, name="recorder-planes")
        self._t_start = time.perf_counter()
        self._threads = [
            threading.Thread(target=self._raw_loop, name="live-deepz-rec-raw", daemon=True),
            threading.Thread(target=self._planes_loop, name="live-deepz-rec-planes", daemon=True),
        ]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ helpers
    def _note_plan(self, pid: int, plan: Any, first_index: int) -> int:
        """Journal plan ``pid`` (a frame's own, stamped when it was acquired) when it is new;
        returns its id."""
        if plan is None:  # a frame source that stamps no plan: the pipeline's current one
            pid, plan = int(self.pipeline.plan_id), self.pipeline.plan
        if pid not in self._plans:
            self._plans[pid] = plan
            assert self.writer is not None
            self.writer.add_plan(
                pid,
                dict(plan.describe()),
                first_index=first_index,
                offsets_um=np.asarray(plan.offsets_um),
                surface_um=getattr(plan, "surface_um", None),
            )
        return pid

    def _note_normalization(
        self, first_index: int, *, first_only: bool = False, used: tuple[int, Any] | None = None
    ) -> None:
        """Journal a normalisation when it changed.

        The planes thread hands in the one each processed frame was refocused with
        (``used``: channel, normalisation; a refit applies from the frame it was fitted on);
        the raw thread only records the pipeline's first one (so a recording whose planes
        were all lapped still has it), hence ``first_only``.
        """
        norms: Any
        if used is not None and used[1] is not None:
            norms = {int(used[0]): used[1]}
        else:
            p = self.pipeline
            norms = getattr(p, "normalizations", None)  # per channel
            if norms is None:
                norm = getattr(p, "normalization", None)
                norms = {} if norm is None else {0: norm}
        with self._norm_lock:
            for c, norm in sorted(norms.items()):
                prev = self._norm_objs.get(c)
                if norm is prev or (first_only and prev is not None):
                    continue
                self._norm_objs[c] = norm
                assert self.writer is not None
                self.writer.set_normalization(
                    norm.background, norm.scale, first_index=first_index, channel=c
                )

    def _plan_object(self, plan_id: int) -> Any:
        """The plan object of ``plan_id`` (noted from the raw frames, which carry it)."""
        return self._plans.get(plan_id)

    def _journal_timeline(self, force: bool = False) -> None:
        """Journal the dynamic plans' per-frame DPMs (:class:`PlanTimeline`), at most about
        once a second unless ``force``."""
        now = time.perf_counter()
        if not force and now - self._timeline_drained < 1.0:
            return
        with self._timeline_lock:
            self._timeline_drained = now
            writer = self.writer
            for message, fields in self._timeline.drain():
                if writer is not None:
                    writer.event(message, **fields)

    def _set_error(self, err: RecordingError) -> None:
        with self._cond:
            if self._error is not None:
                return
            self._error = err
            self._cond.notify_all()
        logger.error("recording stopped: %s", err)
        for sub in (self._raw_sub, self._planes_sub):
            sub.close()
        if self.on_error is not None:
            try:
                self.on_error(err)
            except Exception:  # the callback must not kill the recorder thread
                logger.exception("Recorder on_error callback failed")

    # ------------------------------------------------------------------ threads
    def _raw_loop(self) -> None:
        sub, writer = self._raw_sub, self.writer
        assert writer is not None
        try:
            while self._error is None:
                try:
                    f = sub.get(timeout=0.2)
                except PipelineError as exc:
                    self._pipeline_error = str(exc)
                    break
                if f is None:
                    if sub.ended or sub.closed:
                        break
                    continue
                if f.missed_before:
                    self._raw_lost.extend(f.missed_before)
                    writer.event(
                        f"{len(f.missed_before)} raw frame(s) lost: the recorder fell behind "
                        "the camera by more than the frame ring holds (disk too slow?)",
                        indices=list(f.missed_before)[:1000],
                    )
                if self.channels is None:
                    t, c = writer.n_frames, None
                    slot = t
                else:  # the frame's place: its time point and channel
                    number = f.camera_frame if f.camera_frame >= 0 else f.index
                    slot = self._clock.slot(number, f.channel)
                    t, c = divmod(slot, len(self.channels))
                if self.max_frames is not None and t >= self.max_frames:
                    self._after_limit += 1
                    continue
                pid = self._note_plan(f.plan_id, f.plan, first_index=f.index)
                self._note_normalization(first_index=f.index, first_only=True)
                md = f.metadata
                exposure = _as_float(md.get("live_deepz.exposure_ms", md.get("Exposure-ms")))
                info = FrameInfo(
                    index=f.index,
                    camera_frame=f.camera_frame,
                    camera_time_ms=f.camera_time_ms,
                    core_time_ms=_as_float(md.get("ElapsedTime-ms")),
                    arrival_s=f.arrival_s,
                    stage_z_um=f.stage_z_um,
                    exposure_ms=exposure if math.isfinite(exposure) else self._exposure_ms,
                    plan_id=pid,
                )
                writer.append_frame(f.image, info, channel=c, t=None if c is None else t)
                with self._cond:
                    self._index_to_t.append((f.index, slot))
                    self._raw_last_index = f.index
                    self._cond.notify_all()
                sub.mark_written()
        except RecordingError as exc:
            self._set_error(exc)
        except Exception as exc:  # a bug: keep what was written, say so
            self._set_error(RecordingError(f"the raw recorder failed: {type(exc).__name__}: {exc}"))
        finally:
            self._t_stop = time.perf_counter()
            with self._cond:
                self._raw_done = True
                self._cond.notify_all()

    def _t_of(self, index: int) -> int | None:
        """The slot (``t * n_channels + c``; with one channel the time point ``t``) of
        pipeline frame ``index`` once the raw thread wrote it."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._raw_last_index >= index or self._raw_done or self._error is not None
            )
            q = self._index_to_t
            while q and q[0][0] < index:
                q.popleft()
            if q and q[0][0] == index:
                return q.popleft()[1]
            return None

    def _planes_loop(self) -> None:
        sub, writer = self._planes_sub, self.writer
        assert writer is not None
        k = writer.n_planes
        try:
            while self._error is None:
                try:
                    pf = sub.get(timeout=0.2)
                except PipelineError as exc:
                    self._pipeline_error = self._pipeline_error or str(exc)
                    break
                if pf is None:
                    if sub.ended or sub.closed:
                        break
                    continue
                if pf.missed_before:  # completed after stop from the raw frames
                    self._planes_missed += len(pf.missed_before)
                slot = self._t_of(pf.index)
                if slot is None:
                    self._planes_dropped["no raw frame"] += 1
                    continue
                t, c = divmod(slot, len(self.channels or ()) or 1)
                if pf.planes.shape[0] != k:
                    self._planes_dropped[f"plan with {pf.planes.shape[0]} planes"] += 1
                    continue
                if pf.plan_id not in writer.state.plans:
                    writer.add_plan(
                        pf.plan_id,
                        dict(pf.plan),
                        first_index=pf.index,
                        offsets_um=np.asarray(pf.offsets_um),
                    )
                self._note_normalization(first_index=pf.index, used=(pf.channel, pf.normalization))
                writer.write_planes(
                    t,
                    pf.planes,
                    plan_id=pf.plan_id,
                    source="live",
                    channel=None if self.channels is None else c,
                )
                self._planes_live += 1
                sub.mark_written()
                plan = self._plan_object(pf.plan_id)
                if PlanTimeline.is_dynamic(plan):
                    self._timeline.note(pf.index, pf.camera_time_ms, pf.plan_id, plan, pf.plan)
                    self._journal_timeline()
        except RecordingError as exc:
            self._set_error(exc)
        except Exception as exc:
            self._set_error(
                RecordingError(f"the plane recorder failed: {type(exc).__name__}: {exc}")
            )

    # ------------------------------------------------------------------ stop
    def stop(self, complete: bool | None = None, timeout: float = 30.0) -> RecordingSummary:
        """Stop the pipeline (if running), finish the files, complete the planes.

        Returns the :class:`RecordingSummary`. A write error that stopped the recording is
        in ``summary.error`` (it is not raised here, so the caller always gets a summary;
        the CLI turns it into exit status 1).
        """
        if self._stopped:
            assert self.summary is not None
            return self.summary
        self._stopped = True
        do_complete = self.complete_on_stop if complete is None else complete
        after = "completed after stop" if do_complete else "left for `live-deepz complete`"
        p = self.pipeline
        if not self.stops_pipeline:  # attached to a running pipeline: detach, keep it running
            for sub in (self._raw_sub, self._planes_sub):
                sub.end_here()
        elif getattr(p, "state", "idle") in ("running", "stopping"):
            try:
                p.stop()
            except Exception as exc:  # the camera is gone: record what we have
                self._pipeline_error = self._pipeline_error or f"stop failed: {exc}"
        deadline = time.perf_counter() + timeout
        for th in self._threads:
            th.join(max(0.1, deadline - time.perf_counter()))
        if any(th.is_alive() for th in self._threads):  # never hang on a stuck subscription
            for sub in (self._raw_sub, self._planes_sub):
                sub.close()
            for th in self._threads:
                th.join(2.0)
        writer = self.writer
        assert writer is not None
        stats = None
        with contextlib.suppress(Exception):
            stats = p.stats()
        if stats is not None and self._pipeline_error is None and stats.error:
            self._pipeline_error = stats.error
        s = RecordingSummary(
            path=str(writer.paths.base), format=writer.format, completes_after_stop=do_complete
        )
        if stats is not None:
            base = self._stats_at_start  # attached to a running pipeline: count from there
            s.frames_acquired = int(stats.frames_in)
            span = self._raw_sub.span()
            if base is not None and span is not None:  # the frames between attach and detach
                s.frames_acquired = span[1] - span[0]
            s.dropped_by_camera = int(stats.dropped_camera) - (base.dropped_camera if base else 0)
            s.skipped_by_engine = int(stats.dropped_engine) - (base.dropped_engine if base else 0)
            s.discarded_at_stop = int(stats.discarded_at_stop) if self.stops_pipeline else 0
        s.frames_recorded = writer.n_frames
        s.processed_live = self._planes_live
        if self.channels is not None:
            n_c = len(self.channels)
            s.channels = list(self.channels)
            s.channel_frames_missing = int((~writer.acquired_mask()).sum()) + (
                writer.n_frames * n_c - writer.n_slots  # the last time point's, at close
            )
        s.raw_lost = len(self._raw_lost)
        s.planes_missed = self._planes_missed
        s.not_recorded_after_limit = self._after_limit
        s.duration_s = max(0.0, (self._t_stop or time.perf_counter()) - self._t_start)
        s.pipeline_error = self._pipeline_error
        for what, n in self._planes_dropped.items():
            s.events.append(f"{n} plane frame(s) not stored live ({what}); {after}")
        if self._planes_missed:
            s.events.append(
                f"{self._planes_missed} processed frame(s) were lapped before the recorder "
                f"stored their planes ({after})"
            )
        with contextlib.suppress(RecordingError):
            self._note_normalization(first_index=0, first_only=True)
        self._journal_timeline(force=True)  # the rest of the DPM timeline, before closing
        summary_json = {k: v for k, v in s.as_dict().items() if k != "events"}
        if self._error is not None:
            s.error = str(self._error)
            try:
                writer.close(summary_json)
            except RecordingError:
                writer.abort()
            s.incomplete = len(writer.incomplete())
            self.summary = s
            return s
        try:
            writer.close(summary_json)
        except RecordingError as exc:
            s.error = str(exc)
            s.incomplete = len(writer.incomplete())
            self.summary = s
            return s
        todo = len(writer.incomplete())
        s.completion_estimate_s = completion_estimate_s(stats, todo)
        if todo and do_complete:
            if self.before_completion is not None:
                self.before_completion(todo, s.completion_estimate_s)
            try:
                # plans with a journaled DPM timeline (drift) are rebuilt from it: the live
                # object only knows its current correction, not that of every frame
                static = {i: q for i, q in self._plans.items() if not PlanTimeline.is_drift(q)}
                refocusers = p.refocusers  # one per channel: the card's range and DPM scale
                self.completion = complete_recording(
                    writer.paths.base,
                    refocusers if self.channels is not None else refocusers[0],
                    plans=static,
                    progress=self.progress,
                    summary=summary_json,
                )
                s.completed_after = self.completion.completed
                s.completion_s = self.completion.seconds
                todo = self.completion.n_frames - (
                    self.completion.already_complete + self.completion.completed
                )
            except RecordingError as exc:
                s.error = str(exc)
        s.incomplete = todo
        self.summary = s
        return s
