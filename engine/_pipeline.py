"""The live pipeline: camera stream -> frame ring -> inference worker -> plane ring -> consumers.

::

    core (stream mode) --acquisition thread: popNextImageAndMD, copy--> FrameRing
        FrameRing --> subscribe_raw() (raw recorder: every frame, misses named)
        FrameRing --inference thread: normalise -> DPMs -> backend.infer--> PlaneRing
            PlaneRing --> subscribe_latest() (display: newest only)
            PlaneRing --> subscribe_all()    (virtual-plane recorder: every processed frame)

Modes
-----
``"live"``: the worker always takes the *newest* frame; the frames it skips are counted as
``dropped_engine``. The display shows the freshest planes the engine can make.

``"lossless"``: the worker processes every frame in order. The frame ring is *gated*: the
acquisition thread never overwrites a frame the worker has not read. When the ring is full it
stops popping, so the core's own sequence buffer absorbs the burst (hundreds of frames,
``core.getBufferTotalCapacity()``). If the frames waiting there reach ``lossless_max_backlog``
(default 90 % of that capacity, before the core would overwrite any), the run stops with
:class:`EngineTooSlowError` ("engine too slow for lossless at X fps: measured Y fps ..."),
instead of losing frames. :meth:`LivePipeline.estimate_capacity` measures the engine's rate
before a run. On ``stop()`` a lossless run drains the frames already in the core's buffer
(within the stop timeout) and processes them.

Normalisation
-------------
Unless a fixed :class:`~live_deepz.normalize.Normalization` is given, it is fitted once, on
the first frame (:func:`~live_deepz.normalize.fit_normalization`), and that same offset and
scale is applied to every later frame, also across restarts, so brightness in the planes is
stable and comparable over time. :meth:`LivePipeline.refit_normalization` refits on the next
frame.

Errors
------
An exception in the camera (a pop that keeps failing, the sequence ending although nobody
stopped it, a frame of a different size) or in the engine (the backend, the plan, an
out-of-range DPM) puts the pipeline in state ``"error"``: both threads end, the camera
sequence is stopped, :attr:`LivePipeline.error` holds the message and every subscriber raises
:class:`PipelineError` with it (after the frames produced before the failure).

Channels
--------
A camera whose stream interleaves channels frame by frame (the trigger output steps the light
source; the simulated camera's ``ChannelSequence``) names each frame's channel in its
metadata (``channel_key``, default ``live_deepz.channel``). With ``channels=[...]`` (those
metadata values, in recording order) every frame carries its position in that list
(``FrameMeta.channel``, ``RawFrame.channel``, ``PlaneFrame.channel``) and the worker uses
that channel's backend (``backend`` may be one per channel) and normalisation (each fitted
on the channel's own first frame). A dynamic plan's ``update`` sees channel 0's frames only.
In live mode a slow engine serves the channels in turn (the newest frame of the next
channel among the last ``len(channels)`` frames), so no channel goes without live planes.
A frame naming no channel, or another one, stops the run with a clear error.

Frame accounting (``stats()``): ``frames_in = frames_processed + dropped_engine + in_flight``;
``dropped_camera`` counts gaps in the camera's frame numbers.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, Protocol

import numpy as np

from live_deepz.dpm import PlanePlan, check_range
from live_deepz.errors import CameraError, InputError, LiveDeepzError, clause
from live_deepz.microscope import META_CAMERA_TIME_MS, META_CHANNEL, META_FRAME, META_STAGE_Z_UM
from live_deepz.normalize import Normalization, fit_normalization

from ._refocuser import Refocuser
from ._rings import FrameMeta, FrameRing, PlaneMeta, PlaneRing, RingClosed, SlotRing, allocate_host
from ._stats import PipelineStats, StatsCollector
from ._subscribers import (
    EngineTooSlowError,
    LatestSubscriber,
    PipelineError,
    StreamSubscriber,
)

__all__ = ["CapacityEstimate", "LivePipeline"]

logger = logging.getLogger("live_deepz.engine")

Mode = Literal["live", "lossless"]
State = Literal["idle", "running", "stopping", "error"]

_BACKOFF_MIN_S = 0.0002
"""First wait when the core's buffer is empty; doubles up to ``_BACKOFF_MAX_S``."""
_BACKOFF_MAX_S = 0.002
_POLL_S = 0.05
"""Blocking waits re-check stop flags at least this often."""
_POP_FAIL_LIMIT = 500
"""Consecutive failed pops (while the core reports waiting images) that count as a failure."""
_THREAD_PREFIX = "live-deepz-"
_PLANS_KEPT = 16
"""Plans kept by id for the frames still in the rings (a frame whose plan was dropped, after
many quick changes, is refocused with the current plan)."""


class _BackendLike(Protocol):
    """What the pipeline needs from an inference backend (``live_deepz.engine.backends``)."""

    def prepare(self, height: int, width: int, n_planes: int) -> None: ...

    def infer(self, image: np.ndarray, dpms_net: np.ndarray, out: np.ndarray) -> None: ...


@dataclass(frozen=True)
class CapacityEstimate:
    """What :meth:`LivePipeline.estimate_capacity` measured."""

    engine_fps: float
    """Frames per second the backend sustains (all K planes of a frame), median-based."""
    infer_ms: float
    """Median time of one ``backend.infer`` call (K planes)."""
    camera_fps: float
    """Nominal camera rate, ``1000 / exposure`` (NaN if unknown; real cameras may be slower)."""
    n_planes: int
    height: int
    width: int

    @property
    def sustainable(self) -> bool:
        """Whether lossless mode can keep up (True if the camera rate is unknown)."""
        return not math.isfinite(self.camera_fps) or self.engine_fps >= self.camera_fps


@dataclass(frozen=True)
class _PlanState:
    plan: PlanePlan
    plan_id: int
    n_planes: int
    offsets_um: np.ndarray  # (K,) float64, read-only
    description: Mapping[str, Any]
    feedback: Callable[[np.ndarray, int, float], Any] | None = None
    """A dynamic plan's ``update(image_norm, frame_index, timestamp_ms)`` (drift compensation):
    called with each normalised frame before ``dpms_for_frame``; its ``describe()`` is then
    stored per frame, so recordings hold the DPM timeline."""
    served: Callable[[int], float | None] | None = None
    """A dynamic plan's ``served_um(frame_index)``: the shift it served a frame (stamped in
    the frame's :class:`PlaneMeta`, so readers need not ask the plan)."""


class _Run:
    """Everything one ``start()``..``stop()`` owns."""

    def __init__(
        self,
        token: int,
        mode: Mode,
        shape: tuple[int, int],
        dtype: np.dtype,
        frame_slots: int,
        plane_slots: int,
        max_planes: int,
        pinned: bool,
    ) -> None:
        self.token = token
        self.shape = shape
        self.gated = mode == "lossless"
        self.stats = StatsCollector(mode, frame_slots=frame_slots, plane_slots=plane_slots)
        self.frames = FrameRing(
            frame_slots, *shape, dtype, gated=self.gated, on_drop=self.stats.on_engine_dropped
        )
        self.planes = PlaneRing(plane_slots, max_planes, *shape, pinned=pinned)
        self.max_planes = max_planes
        self.x = allocate_host(shape, np.float32, pinned=pinned)  # normalised frame
        self.dpm_net = np.zeros((max_planes, *shape), np.float32)  # DPMs, network units
        self.dpm_src: np.ndarray | None = None  # µm array dpm_net was converted from
        self.dpm_src_plan = -1
        self.dpm_view: np.ndarray | None = None  # read-only view of dpm_net handed out
        self.k_prepared = 0
        self.next_channel = 0  # live mode: the channel to serve next (interleaved stream)
        self.stop_event = threading.Event()  # orderly stop (lossless: drain)
        self.hard_stop = threading.Event()  # stop now
        self.drain_deadline = math.inf
        self.max_backlog = 0
        self.threads: list[threading.Thread] = []
        self.subscribers: list[StreamSubscriber] = []
        self.error: str | None = None
        self.exception: BaseException | None = None
        self.t0 = time.perf_counter()
        self.joined = False


def _warm_up_fit() -> None:
    """Run :func:`fit_normalization` once on a tiny synthetic image.

    Its first call loads scikit-image lazily (~0.2 s); done in ``start()`` it does not stall
    the engine on the first camera frame (live mode would skip ~20 frames at 100 fps).
    """
    ref = np.zeros((16, 16), np.float32)
    ref[4:8, 4:8] = 1.0
    with contextlib.suppress(InputError):
        fit_normalization(ref)


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return -1


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class LivePipeline:
    """Camera frames in, K refocused planes per frame out, in real time.

    Parameters
    ----------
    core
        A pymmcore-plus core (``CMMCorePlus`` or ``UniMMCore``) with a camera; the pipeline
        runs ``startContinuousSequenceAcquisition`` on it and pops every frame.
    backend
        An inference backend (``prepare``/``infer``, see ``live_deepz.engine.backends``), or
        one per channel (with ``channels``).
    plan
        The plane plan (``live_deepz.dpm.PlanePlan``); change it live with :meth:`set_plan`.
    z_range_um, dpm_scale_um
        The model card's trained axial range and DPM scale (DPM µm / scale = network units).
    mode
        ``"live"`` (newest frame, skips counted) or ``"lossless"`` (every frame or a clear
        error); see the module docstring.
    ring_slots
        Raw frames the frame ring holds (at least the largest ``subscribe_raw`` maxsize).
    plane_slots
        Plane frames the plane ring holds (at least the largest ``subscribe_all`` maxsize).
    max_planes
        Room for this many planes per frame (default: the plan's K), so that
        :meth:`set_plan` can switch to a plan with up to that many planes while running.
    normalization
        A fixed normalisation; ``None`` fits one on the first frame.
    allow_out_of_range
        Extrapolate beyond ``z_range_um`` (one warning) instead of refusing the plan.
    frame_number_key
        Metadata key of the camera's frame counter; default: ``live_deepz.frame`` if the
        camera sends it, else the core's ``ImageNumber``.
    lossless_max_backlog
        Lossless mode: frames allowed to wait in the core's buffer before the run stops with
        :class:`EngineTooSlowError` (default: 90 % of ``getBufferTotalCapacity()``).
    pin_memory
        Page-locked host buffers (default: when ``backend.device`` is a CUDA device).
    channels
        An interleaved multi-channel stream: the values of each frame's ``channel_key``
        metadata, in order (see the module docstring). ``None``: one channel.
    channel_key
        The metadata key naming a frame's channel.
    """

    def __init__(
        self,
        core: Any,
        backend: _BackendLike | Sequence[_BackendLike],
        plan: PlanePlan,
        *,
        z_range_um: tuple[float, float],
        dpm_scale_um: float,
        mode: Mode = "live",
        ring_slots: int = 32,
        plane_slots: int = 8,
        max_planes: int | None = None,
        normalization: Normalization | None = None,
        allow_out_of_range: bool = False,
        frame_number_key: str | None = None,
        lossless_max_backlog: int | None = None,
        pin_memory: bool | None = None,
        channels: Sequence[Any] | None = None,
        channel_key: str = META_CHANNEL,
    ) -> None:
        if mode not in ("live", "lossless"):
            raise InputError(f"mode must be 'live' or 'lossless', got {mode!r}")
        if ring_slots < 2 or plane_slots < 2:
            raise InputError("ring_slots and plane_slots must be >= 2")
        if normalization is not None and not isinstance(normalization, Normalization):
            raise InputError(f"normalization must be a Normalization, got {normalization!r}")
        self._channels = None if channels is None else tuple(str(c) for c in channels)
        n_c = 1 if self._channels is None else len(self._channels)
        if n_c < 1 or (self._channels is not None and len(set(self._channels)) != n_c):
            raise InputError(f"channels must be distinct and at least one, got {channels!r}")
        self._channel_key = channel_key
        backends = list(backend) if isinstance(backend, Sequence) else [backend]
        if len(backends) == 1:
            backends *= n_c
        if len(backends) != n_c:
            raise InputError(f"{len(backends)} backends for {n_c} channels; give one or one each")
        self._core = core
        self._backends: list[_BackendLike] = backends
        self._backend = backends[0]
        self._z_range_um = (float(z_range_um[0]), float(z_range_um[1]))
        self._dpm_scale_um = float(dpm_scale_um)
        if not self._dpm_scale_um > 0:
            raise InputError(f"dpm_scale_um must be > 0, got {dpm_scale_um!r}")
        # the card's rules (range check, µm -> network units) around each channel's backend
        made: dict[int, Refocuser] = {}
        self._refocusers = [
            made.setdefault(
                id(b),
                Refocuser.from_range(
                    self._z_range_um,
                    self._dpm_scale_um,
                    b,
                    allow_out_of_range=bool(allow_out_of_range),
                ),
            )
            for b in backends
        ]
        self._mode: Mode = mode
        self._ring_slots = int(ring_slots)
        self._plane_slots = int(plane_slots)
        self._max_planes = max_planes
        self._norms: dict[int, Normalization] = (
            {} if normalization is None else dict.fromkeys(range(n_c), normalization)
        )
        self._norm_version = 0
        """+1 per ``refit_normalization``; stamped on each frame at the pop."""
        self._norm_fitted: dict[int, int] = dict.fromkeys(self._norms, 0)
        """Channel -> the version its normalisation was fitted for."""
        self._allow_oor = bool(allow_out_of_range)
        self._frame_number_key = frame_number_key
        self._max_backlog = lossless_max_backlog
        if pin_memory is None:
            pin_memory = str(getattr(self._backend, "device", "cpu")).startswith("cuda")
        self._pinned = bool(pin_memory)

        self._lock = threading.RLock()
        self._state: State = "idle"
        self._run: _Run | None = None
        self._tokens = 0
        self._pending: list[StreamSubscriber] = []
        self._n_subs = 0
        self._stage_z = math.nan
        self._stage_cb: Callable[..., None] | None = None
        self._plan_state = self._make_plan_state(plan, 0)
        self._check_plan(self._plan_state, self._camera_shape(), None)
        self._plan_states: dict[int, _PlanState] = {0: self._plan_state}
        """Every plan by id: a frame is refocused with the plan stamped on it at the pop."""

    @classmethod
    def from_model(
        cls,
        core: Any,
        model: Any,
        plan: PlanePlan,
        *,
        backend: str | _BackendLike = "torch",
        precision: str | None = None,
        device: str | None = None,
        **kwargs: Any,
    ) -> LivePipeline:
        """A pipeline for a ``LoadedModel``: its card gives ``z_range_um``/``dpm_scale_um``.

        ``backend`` is a backend name for ``live_deepz.engine.backends.create_backend``
        (with ``precision``/``device``) or a ready backend object.
        """
        engine: _BackendLike
        if isinstance(backend, str):
            from .backends import create_backend

            opts = {k: v for k, v in (("precision", precision), ("device", device)) if v}
            engine = create_backend(backend, model.generator, **opts)
        else:
            engine = backend
        card = model.card
        return cls(
            core,
            engine,
            plan,
            z_range_um=card.z_range_um,
            dpm_scale_um=card.dpm_scale_um,
            **kwargs,
        )

    # ------------------------------------------------------------------ properties
    @property
    def state(self) -> State:
        """``"idle"``, ``"running"``, ``"stopping"`` or ``"error"``."""
        return self._state

    @property
    def error(self) -> str | None:
        """The message of the error that stopped the current/last run, else ``None``."""
        run = self._run
        return None if run is None else run.error

    @property
    def exception(self) -> BaseException | None:
        run = self._run
        return None if run is None else run.exception

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def core(self) -> Any:
        return self._core

    @property
    def backend(self) -> _BackendLike:
        """The backend (channel 0's with several channels, see :attr:`backends`)."""
        return self._backend

    @property
    def backends(self) -> list[_BackendLike]:
        """One backend per channel (the same object where channels share a model)."""
        return list(self._backends)

    @property
    def refocusers(self) -> list[Refocuser]:
        """One :class:`Refocuser` per channel (the card's range and DPM scale around the
        channel's backend); recording completion refocuses with them."""
        return list(self._refocusers)

    @property
    def z_range_um(self) -> tuple[float, float]:
        return self._z_range_um

    @property
    def dpm_scale_um(self) -> float:
        return self._dpm_scale_um

    @property
    def allow_out_of_range(self) -> bool:
        return self._allow_oor

    @property
    def channels(self) -> tuple[str, ...] | None:
        """The channels of an interleaved stream (``channel_key`` values), else ``None``."""
        return self._channels

    def _unique_backends(self) -> list[_BackendLike]:
        return list({id(b): b for b in self._backends}.values())

    @property
    def plan(self) -> PlanePlan:
        return self._plan_state.plan

    @property
    def plan_id(self) -> int:
        return self._plan_state.plan_id

    def plan_of(self, plan_id: int) -> PlanePlan | None:
        """The plan object of ``plan_id`` (None: unknown id)."""
        ps = self._plan_states.get(int(plan_id))
        return None if ps is None else ps.plan

    @property
    def normalization(self) -> Normalization | None:
        """The normalisation in use (``None`` until fitted on the first frame); with several
        channels channel 0's (see :attr:`normalizations`)."""
        return self._norms.get(0)

    @property
    def normalizations(self) -> dict[int, Normalization]:
        """Channel position -> its normalisation (those fitted so far)."""
        return dict(self._norms)

    # ------------------------------------------------------------------ plans
    def _make_plan_state(self, plan: PlanePlan, plan_id: int) -> _PlanState:
        offsets = np.array(plan.offsets_um, dtype=np.float64).reshape(-1)
        if offsets.size < 1:
            raise InputError("the plane plan has no planes")
        offsets.flags.writeable = False
        return _PlanState(
            plan=plan,
            plan_id=plan_id,
            n_planes=int(offsets.size),
            offsets_um=offsets,
            description=MappingProxyType(dict(plan.describe())),
            feedback=update if callable(update := getattr(plan, "update", None)) else None,
            served=served if callable(served := getattr(plan, "served_um", None)) else None,
        )

    def _camera_shape(self) -> tuple[int, int] | None:
        try:
            h, w = int(self._core.getImageHeight()), int(self._core.getImageWidth())
        except Exception:
            return None
        return (h, w) if h > 0 and w > 0 else None

    def _check_plan(self, ps: _PlanState, shape: tuple[int, int] | None, run: _Run | None) -> None:
        if run is not None and ps.n_planes > run.max_planes:
            raise InputError(
                f"the new plan has {ps.n_planes} planes but the running pipeline has room for "
                f"{run.max_planes}; stop and start again, or create the pipeline with "
                f"max_planes={ps.n_planes}"
            )
        plan_check = getattr(ps.plan, "check_range", None)
        if shape is not None and callable(plan_check):
            plan_check(self._z_range_um, shape, allow=self._allow_oor)
        elif self._allow_oor:  # dynamic plans are not checked per frame then: say so once
            check_range(ps.offsets_um, self._z_range_um, allow=True, what="plane offsets")
        else:
            check_range(ps.offsets_um, self._z_range_um, allow=False, what="plane offsets")

    def set_plan(self, plan: PlanePlan) -> int:
        """Use ``plan`` from the next frame on; returns its ``plan_id`` (frames record it).

        The plan is checked at once against the model's axial range (``DPMRangeError``) and,
        while running, against ``max_planes`` (``InputError``).
        """
        with self._lock:
            ps = self._make_plan_state(plan, self._plan_state.plan_id + 1)
            run = self._run if self._state in ("running", "stopping") else None
            shape = run.shape if run is not None else self._camera_shape()
            self._check_plan(ps, shape, run)
            self._plan_states[ps.plan_id] = ps
            for old_id in sorted(self._plan_states)[:-_PLANS_KEPT]:  # (a plan caches arrays)
                del self._plan_states[old_id]
            self._plan_state = ps
            return ps.plan_id

    def refit_normalization(self) -> None:
        """Fit the normalisation again on the next frame popped from the camera (of each
        channel; then keep it): frames carry the version in force when they were popped."""
        self._norm_version += 1

    # ------------------------------------------------------------------ subscribers
    def subscribe_latest(self, kind: Literal["planes", "raw"] = "planes") -> LatestSubscriber:
        """Display handle: ``get_latest()`` returns the newest frame or ``None``, never waits."""
        if kind not in ("planes", "raw"):
            raise InputError(f"kind must be 'planes' or 'raw', got {kind!r}")

        def source() -> tuple[int, SlotRing[Any]] | None:
            run = self._run
            if run is None:
                return None
            return run.token, (run.planes if kind == "planes" else run.frames)

        return LatestSubscriber(kind, source)

    def subscribe_all(self, maxsize: int | None = None, name: str = "") -> StreamSubscriber:
        """Recorder handle for every processed frame (:class:`PlaneFrame`), in order.

        ``maxsize``: frames it may lag without missing any (default and upper limit while
        running: ``plane_slots``; before ``start()`` the ring is made large enough).
        """
        return self._subscribe("planes", maxsize, name)

    def subscribe_raw(self, maxsize: int | None = None, name: str = "") -> StreamSubscriber:
        """Recorder handle for every camera frame (:class:`RawFrame`), in order."""
        return self._subscribe("raw", maxsize, name)

    def _subscribe(self, kind: str, maxsize: int | None, name: str) -> StreamSubscriber:
        if maxsize is not None and maxsize < 1:
            raise InputError(f"maxsize must be >= 1, got {maxsize}")
        with self._lock:
            self._n_subs += 1
            name = name or f"{kind}-{self._n_subs}"
            default = self._plane_slots if kind == "planes" else self._ring_slots
            run = self._run if self._state in ("running", "stopping") else None
            if run is None:
                sub = StreamSubscriber(kind, maxsize or default, name)
                self._pending.append(sub)
                return sub
            ring: SlotRing[Any] = run.planes if kind == "planes" else run.frames
            size = maxsize or ring.capacity
            if size > ring.capacity:
                warnings.warn(
                    f"subscriber {name!r}: maxsize {size} exceeds the running ring "
                    f"({ring.capacity} slots); it may miss frames after a lag of "
                    f"{ring.capacity}. Subscribe before start() for a larger ring.",
                    stacklevel=3,
                )
                size = ring.capacity
            sub = StreamSubscriber(kind, size, name)
            with ring.cond:
                sub._attach(ring, ring.next_seq)
            run.subscribers.append(sub)
            return sub

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the camera stream and both threads (from ``"idle"`` or ``"error"``)."""
        if self._state == "error":
            self.stop()  # join what the failed run left (outside the lock: threads take it)
        with self._lock:
            if self._state in ("running", "stopping"):
                raise RuntimeError(f"the pipeline is already {self._state}")
            core = self._core
            if not core.getCameraDevice():
                raise CameraError("no camera device is selected in the core")
            if core.isSequenceRunning():
                raise CameraError(
                    "a sequence acquisition is already running on this core; stop it first"
                )
            shape = self._camera_shape()
            if shape is None:
                raise CameraError("the camera reports no image size")
            n_comp = int(getattr(core, "getNumberOfComponents", lambda: 1)())
            bpp = int(core.getBytesPerPixel())
            if n_comp != 1 or bpp not in (1, 2, 4):
                raise CameraError(
                    f"only grayscale cameras are supported (got {n_comp} components, "
                    f"{bpp} bytes per pixel)"
                )
            dtype = np.dtype({1: np.uint8, 2: np.uint16, 4: np.uint32}[bpp])
            ps = self._plan_state
            self._check_plan(ps, shape, None)
            max_planes = max(self._max_planes or 0, ps.n_planes)
            pending = [s for s in self._pending if not s.closed]
            frame_slots = max([self._ring_slots] + [s.maxsize for s in pending if s.kind == "raw"])
            plane_slots = max(
                [self._plane_slots] + [s.maxsize for s in pending if s.kind == "planes"]
            )
            self._tokens += 1
            run = _Run(
                self._tokens,
                self._mode,
                shape,
                dtype,
                frame_slots,
                plane_slots,
                max_planes,
                self._pinned,
            )
            for b in self._unique_backends():
                b.prepare(shape[0], shape[1], ps.n_planes)
            run.k_prepared = ps.n_planes
            run.max_backlog = self._default_backlog()
            if len(self._norms) < len(self._backends):
                _warm_up_fit()
            self._connect_stage_events()
            try:
                core.startContinuousSequenceAcquisition(0)
            except Exception as e:
                self._disconnect_stage_events()
                raise CameraError(f"the camera did not start streaming: {e}") from e
            # the run starts for good: recorders made before start() get it from frame 0
            self._pending = []
            for sub in pending:
                sub._attach(run.planes if sub.kind == "planes" else run.frames, 0)
                run.subscribers.append(sub)
            run.threads = [
                threading.Thread(
                    target=self._acquire, args=(run,), name=_THREAD_PREFIX + "acquire", daemon=True
                ),
                threading.Thread(
                    target=self._work, args=(run,), name=_THREAD_PREFIX + "infer", daemon=True
                ),
            ]
            self._run = run
            self._state = "running"
            for t in run.threads:
                t.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the camera and join both threads (lossless: process what the camera sent).

        Safe to call in any state; keeps ``"error"`` (with its message) if the run failed.
        """
        with self._lock:
            run = self._run
            if run is None or run.joined:
                return
            if self._state == "running":
                self._state = "stopping"
        t_end = time.perf_counter() + timeout
        run.drain_deadline = time.perf_counter() + 0.6 * timeout
        run.stop_event.set()
        for t in run.threads:
            t.join(max(0.0, t_end - time.perf_counter()))
        if any(t.is_alive() for t in run.threads):
            run.hard_stop.set()
            run.frames.close()
            run.planes.close()
            for t in run.threads:
                t.join(1.0)
        alive = [t.name for t in run.threads if t.is_alive()]
        try:
            if self._core.isSequenceRunning():
                self._core.stopSequenceAcquisition()
        except Exception as e:  # the camera is gone: nothing more to stop
            logger.warning("stopSequenceAcquisition failed: %s", e)
        self._disconnect_stage_events()
        if alive:
            self._fail(run, PipelineError(f"threads did not stop within {timeout} s: {alive}"))
        run.frames.close()
        run.planes.close()
        run.stats.mark_stopped()
        with self._lock:
            run.joined = not alive
            self._state = "error" if run.error is not None else "idle"

    def restart(self, timeout: float = 5.0) -> None:
        """``stop()`` then ``start()`` (counters start from zero; normalisation is kept)."""
        self.stop(timeout)
        self.start()

    def __enter__(self) -> LivePipeline:
        if self._state != "running":
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> PipelineStats:
        """A consistent snapshot of the counters of the current (or last) run."""
        run = self._run
        if run is None:
            return StatsCollector(self._mode).snapshot(self._state)
        subs = tuple(s.stats() for s in run.subscribers)
        return run.stats.snapshot(self._state, run.error, subs)

    # ------------------------------------------------------------------ helpers
    def _default_backlog(self) -> int:
        if self._max_backlog is not None:
            return max(1, int(self._max_backlog))
        try:
            total = int(self._core.getBufferTotalCapacity())
        except Exception:
            total = 0
        return max(1, int(0.9 * total)) if total > 0 else 1000

    def _nominal_camera_fps(self) -> float:
        try:
            exposure = float(self._core.getExposure())
        except Exception:
            return math.nan
        return 1000.0 / exposure if exposure > 0 else math.nan

    def _connect_stage_events(self) -> None:
        core = self._core
        try:
            focus = core.getFocusDevice()
            self._stage_z = float(core.getPosition()) if focus else math.nan
        except Exception:
            focus, self._stage_z = "", math.nan
        events = getattr(core, "events", None)
        if not focus or events is None:
            return

        def on_stage(label: str, pos: float) -> None:
            if label == focus:
                self._stage_z = float(pos)

        events.stagePositionChanged.connect(on_stage)
        self._stage_cb = on_stage

    def _disconnect_stage_events(self) -> None:
        cb, self._stage_cb = self._stage_cb, None
        if cb is not None:
            with contextlib.suppress(Exception):
                self._core.events.stagePositionChanged.disconnect(cb)

    def _fail(self, run: _Run, exc: BaseException) -> None:
        """Put the run in the error state (first error wins) and wake everybody."""
        msg = str(exc) if isinstance(exc, LiveDeepzError) else f"{type(exc).__name__}: {exc}"
        with self._lock:
            if run.error is not None:
                return
            run.error, run.exception = msg, exc
            if self._run is run:
                self._state = "error"
        logger.error("live pipeline stopped: %s", msg)
        run.stop_event.set()
        run.hard_stop.set()
        run.frames.close(msg)
        run.planes.close(msg)

    def _camera_error_detail(self) -> str:
        core = self._core
        try:
            cam = core.getCameraDevice()
            if core.hasProperty(cam, "LastError"):
                return str(core.getProperty(cam, "LastError"))
        except Exception:
            pass
        return ""

    # ------------------------------------------------------------------ acquisition
    def _acquire(self, run: _Run) -> None:
        """Acquisition thread: pop every frame from the core into the frame ring."""
        core = self._core
        ring = run.frames
        pop = _Popper(self, run)
        backoff = _BACKOFF_MIN_S
        try:
            while not run.stop_event.is_set():
                if ring.gated and not ring.has_room():
                    self._check_backlog(run)
                    ring.wait_room(_POLL_S)
                    continue
                if core.getRemainingImageCount() > 0 and pop.one():
                    backoff = _BACKOFF_MIN_S
                    continue
                # empty: the camera ended on its own, or the next frame is not there yet
                if not core.isSequenceRunning() and core.getRemainingImageCount() == 0:
                    if run.stop_event.is_set():
                        break
                    detail = self._camera_error_detail()
                    raise CameraError(
                        f"the camera stopped streaming after {run.stats.frames_in} frames "
                        "although the pipeline did not stop it"
                        + (f": {detail}" if detail else " (see the log for the camera's error)")
                    )
                run.stop_event.wait(backoff)  # no busy spin: 0.2 ms doubling to 2 ms
                backoff = min(2 * backoff, _BACKOFF_MAX_S)
            if run.error is None and core.isSequenceRunning():
                core.stopSequenceAcquisition()
            if ring.gated and run.error is None:  # lossless: what the camera sent is processed
                while not run.hard_stop.is_set() and time.perf_counter() < run.drain_deadline:
                    if not ring.has_room():
                        ring.wait_room(_POLL_S)
                    elif core.getRemainingImageCount() == 0:
                        break
                    elif not pop.one():  # the pop race: retry shortly
                        run.hard_stop.wait(_BACKOFF_MAX_S)
        except RingClosed:
            pass
        except LiveDeepzError as e:
            self._fail(run, e)
        except Exception as e:
            err = CameraError(f"camera acquisition failed: {type(e).__name__}: {e}")
            err.__cause__ = e
            self._fail(run, err)
        finally:
            try:
                if core.isSequenceRunning():
                    core.stopSequenceAcquisition()
                left = int(core.getRemainingImageCount())
            except Exception as e:
                logger.warning("stopping the camera failed: %s", e)
                left = 0
            run.stats.on_discarded_at_stop(left)
            ring.close()

    def _check_backlog(self, run: _Run) -> None:
        backlog = int(self._core.getRemainingImageCount())
        if backlog < run.max_backlog:
            return
        _, fps_out, cam = run.stats.rates()
        if not math.isfinite(cam):
            cam = self._nominal_camera_fps()
        raise EngineTooSlowError(
            f"engine too slow for lossless at {cam:.1f} fps: measured {fps_out:.1f} fps "
            f"({backlog} frames wait in the camera buffer, limit {run.max_backlog}). Use "
            "mode='live' (skips frames, counted), a lower frame rate, fewer planes or a "
            "faster backend; or record the raw stream and compute the planes afterwards."
        )

    # ------------------------------------------------------------------ inference
    def _work(self, run: _Run) -> None:
        """Inference thread: frame ring -> normalise -> DPMs -> backend -> plane ring.

        Drop accounting lives in the frame ring (``take_newest`` / overwrites / ``drop_rest``);
        here only a frame taken and then not processed is counted.
        """
        frames = run.frames
        seq = -1
        taken = False  # `seq` was taken and is neither processed nor counted dropped yet
        n_c = len(self._backends)

        def next_channel(meta: FrameMeta) -> bool:  # live: serve the channels in turn
            return meta.channel == run.next_channel

        try:
            while not run.hard_stop.is_set():
                if frames.gated:  # lossless: every frame, in order, until drained
                    got = frames.take_next(_POLL_S)
                else:  # live: the newest frame; stop at once when asked
                    if run.stop_event.is_set():
                        break
                    if n_c > 1:
                        got = frames.take_newest(_POLL_S, prefer=next_channel, within=n_c)
                    else:
                        got = frames.take_newest(_POLL_S)
                if got is None:
                    if frames.drained:
                        break
                    continue
                seq, taken = got, True
                self._process(run, seq)
                taken = False
        except RingClosed:
            pass
        except LiveDeepzError as e:
            self._fail(run, e)
        except Exception as e:
            err = PipelineError(f"inference failed on frame {seq}: {type(e).__name__}: {e}")
            err.__cause__ = e
            self._fail(run, err)
        finally:
            run.planes.close(run.error)
            if taken:
                run.stats.on_engine_dropped(1)
            frames.wait_closed(2.0)  # the acquisition thread publishes no more
            frames.drop_rest()

    def _process(self, run: _Run, seq: int) -> None:
        stats, frames, x = run.stats, run.frames, run.x
        t0 = time.perf_counter()
        got = frames.view(seq)
        if got is None:  # live mode: overwritten before we got to it
            stats.on_engine_dropped(1)
            return
        slot, gen, meta = got
        image = slot.arrays["image"]
        c = meta.channel
        norm = self._norms.get(c)
        if norm is None or meta.norm_version > self._norm_fitted.get(c, -1):
            np.copyto(x, image, casting="unsafe")
            if not frames.still_valid(slot, gen):
                stats.on_engine_dropped(1)
                return
            try:
                norm = fit_normalization(x)
            except InputError as e:
                which = f" (channel {self._channels[c]})" if self._channels else ""
                raise InputError(
                    f"could not fit the intensity normalisation on frame {meta.index}{which}: "
                    f"{clause(e)}. Pass a fixed normalization=..., or start when the sample is "
                    "visible."
                ) from e
            self._norms[c] = norm
            self._norm_fitted[c] = meta.norm_version
            norm.apply(x, out=x)
        else:
            norm.apply(image, out=x)
            if not frames.still_valid(slot, gen):  # overwritten while we read it (live)
                stats.on_engine_dropped(1)
                return
        frames.release(seq)
        t1 = time.perf_counter()

        ps = self._plan_states.get(meta.plan_id, self._plan_state)  # the frame's own plan
        dpm_net = self._dpms(run, ps, meta, x)
        served = None if ps.served is None else ps.served(meta.index)  # (this thread's value)
        t2 = time.perf_counter()

        pslot = run.planes.claim()
        assert pslot is not None
        out = pslot.arrays["planes"][: ps.n_planes]
        self._backends[c].infer(x, dpm_net, out)
        run.next_channel = (c + 1) % len(self._backends)
        t3 = time.perf_counter()
        run.planes.publish(
            pslot,
            PlaneMeta(
                frame=meta,
                ready_s=t3,
                n_planes=ps.n_planes,
                offsets_um=ps.offsets_um,
                plan_id=ps.plan_id,
                plan=ps.description if ps.feedback is None else dict(ps.plan.describe()),
                normalization=norm,
                served_um=served,
            ),
            index=meta.index,
        )
        stages = {"normalize": t1 - t0, "dpm": t2 - t1, "infer": t3 - t2}
        stages["publish"] = time.perf_counter() - t3
        stats.on_processed(meta.arrival_s, t3, stages)

    def _dpms(
        self, run: _Run, ps: _PlanState, meta: FrameMeta, image_norm: np.ndarray
    ) -> np.ndarray:
        """This frame's ``(K, H, W)`` DPMs in network units, converted once per plan array.

        A static plan returns the same read-only array every frame: it is range-checked and
        converted once, and the backend gets the same read-only view object every frame (so
        it uploads the DPMs once). A dynamic plan's arrays are checked and converted into
        the preallocated buffer every frame (a fresh view, so the backend sees the change).
        """
        k = ps.n_planes
        if k != run.k_prepared:
            for b in self._unique_backends():
                b.prepare(run.shape[0], run.shape[1], k)
            run.k_prepared = k
        t_ms = meta.camera_time_ms
        if not math.isfinite(t_ms):
            t_ms = (meta.arrival_s - run.t0) * 1e3
        if ps.feedback is not None and meta.channel == 0:  # e.g. drift: sees the frame first
            ps.feedback(image_norm, meta.index, t_ms)
        dpms = ps.plan.dpms_for_frame(meta.index, t_ms, run.shape)
        if (
            dpms is run.dpm_src
            and run.dpm_src_plan == ps.plan_id
            and not dpms.flags.writeable
            and run.dpm_view is not None
        ):
            return run.dpm_view
        if dpms.shape != (k, *run.shape):
            raise InputError(
                f"plan {ps.plan_id} returned DPMs of shape {dpms.shape}, expected "
                f"{(k, *run.shape)} (K planes, frame height, width)"
            )
        view = run.dpm_net[:k]  # a new view object of the preallocated buffer
        # allowed out-of-range plans warned once at set_plan: not checked per frame then
        self._refocusers[0].network_dpms(
            dpms, out=view, what=f"the DPMs of plan {ps.plan_id}", checked=not self._allow_oor
        )
        view.flags.writeable = False
        run.dpm_src, run.dpm_src_plan, run.dpm_view = dpms, ps.plan_id, view
        return view

    # ------------------------------------------------------------------ capacity
    def estimate_capacity(self, n_frames: int = 5, warmup: int = 1) -> CapacityEstimate:
        """Time ``backend.infer`` on a synthetic frame of the camera's size and the plan's K.

        Call it while stopped (it uses the backend). ``sustainable`` tells whether lossless
        mode can keep up with the nominal camera rate.
        """
        if self._state in ("running", "stopping"):
            raise RuntimeError("estimate_capacity() needs a stopped pipeline")
        shape = self._camera_shape()
        if shape is None:
            raise CameraError("the camera reports no image size")
        ps = self._plan_state
        k = ps.n_planes
        rng = np.random.default_rng(0)
        x = rng.random(shape, dtype=np.float32)
        dpms = ps.plan.dpms_for_frame(0, 0.0, shape)
        net = self._refocusers[0].network_dpms(dpms, checked=False)
        out = np.empty((k, *shape), np.float32)
        self._backend.prepare(shape[0], shape[1], k)
        times = []
        for i in range(warmup + max(1, n_frames)):
            t0 = time.perf_counter()
            self._backend.infer(x, net, out)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        infer_s = float(np.median(times))
        return CapacityEstimate(
            engine_fps=1.0 / infer_s if infer_s > 0 else math.inf,
            infer_ms=infer_s * 1e3,
            camera_fps=self._nominal_camera_fps(),
            n_planes=k,
            height=shape[0],
            width=shape[1],
        )


class _Popper:
    """Pops one frame from the core into the frame ring; tracks camera frame numbers."""

    def __init__(self, pipeline: LivePipeline, run: _Run) -> None:
        self.p = pipeline
        self.run = run
        self.failures = 0
        self.last_cam: int | None = None
        self.frame_key: str | None = pipeline._frame_number_key
        self.keys_chosen = pipeline._frame_number_key is not None

    def one(self) -> bool:
        """Pop and publish one frame; False if the buffer turned out empty (the race)."""
        run, core, ring = self.run, self.p._core, self.run.frames
        t0 = time.perf_counter()
        try:
            img, md = core.popNextImageAndMD(fix=False)
        except (IndexError, RuntimeError) as e:
            # getRemainingImageCount() > 0 and yet "Circular buffer is empty": the core's
            # count and pop race (another reader, a reset). Retry after a short wait; only a
            # long run of failures is an error.
            self.failures += 1
            if self.failures >= _POP_FAIL_LIMIT:
                raise CameraError(
                    f"popNextImageAndMD failed {self.failures} times in a row: {e}"
                ) from e
            return False
        arrival = time.perf_counter()
        self.failures = 0
        if img.shape != ring.shape or img.dtype != ring.dtype:
            raise CameraError(
                f"the camera's frames changed from {ring.shape} {ring.dtype} to {img.shape} "
                f"{img.dtype} while streaming (ROI, binning or pixel type?); restart the "
                "pipeline"
            )
        meta = dict(md)
        if not self.keys_chosen:
            self.frame_key = META_FRAME if META_FRAME in meta else "ImageNumber"
            self.keys_chosen = True
        cam_no = _as_int(meta.get(self.frame_key, -1)) if self.frame_key else -1
        self._count_gap(cam_no)
        cam_t = _as_float(meta.get(META_CAMERA_TIME_MS, meta.get("ElapsedTime-ms")))
        z = meta.get(META_STAGE_Z_UM)
        stage_z = _as_float(z) if z is not None else self.p._stage_z
        channel = self._channel(meta, cam_no)

        slot = ring.claim()
        assert slot is not None
        np.copyto(slot.arrays["image"], img)
        # the plan stamped on the frame and the frame's count are one step for set_plan:
        # every frame counted before set_plan returns has the old plan, every later one the new
        with self.p._lock:
            ps = self.p._plan_state
            fmeta = FrameMeta(
                index=ring.next_seq,
                camera_frame=cam_no,
                camera_time_ms=cam_t,
                arrival_s=arrival,
                stage_z_um=stage_z,
                metadata=MappingProxyType(meta),
                channel=channel,
                plan_id=ps.plan_id,
                plan=ps.plan,
                norm_version=self.p._norm_version,
            )
            run.stats.on_frame_in(arrival, time.perf_counter() - t0, cam_no, cam_t)
        ring.publish(slot, fmeta)
        return True

    def _channel(self, meta: Mapping[str, Any], cam_no: int) -> int:
        """The frame's position in the pipeline's channel list (0 without channels)."""
        channels = self.p._channels
        if channels is None:
            return 0
        key = self.p._channel_key
        value = meta.get(key)
        pos = channels.index(str(value)) if value is not None and str(value) in channels else -1
        if pos < 0:
            raise CameraError(
                f"camera frame {cam_no} "
                + (f"is of channel {value}" if value is not None else f"names no channel ({key})")
                + f", but the pipeline records the channels {list(channels)}; set the camera's "
                "channel sequence to those channels"
            )
        return pos

    def _count_gap(self, cam_no: int) -> None:
        if cam_no < 0:
            return
        last = self.last_cam
        self.last_cam = cam_no
        if last is None:
            return
        if cam_no > last + 1:
            self.run.stats.on_camera_dropped(cam_no - last - 1)
        elif cam_no <= last:  # the counter restarted: new reference, nothing to count
            logger.info("camera frame counter went from %d to %d", last, cam_no)
            self.run.stats.reset_camera_clock()
