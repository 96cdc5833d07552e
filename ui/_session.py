"""The live session: microscope core + model + live pipeline + recorder, driven from the UI.

:class:`Session` owns the objects the window shows and does every slow step (building the
simulated scene or loading a Micro-Manager configuration, loading a model, creating a
backend, stopping threads, finishing a recording) on worker threads (:class:`TaskRunner`),
so the UI thread never waits on them. It reports what happens through Qt signals, with
messages in plain words (``notice``) that the window shows in its message bar.

The pipeline's plan is the grid's planes plus the depth slider's plane::

    plan = StaticPlanePlan(grid_offsets ∪ {depth_um})

so every frame carries both, computed from the same camera frame. Two calibrations change
how that plan is built (:meth:`Session.current_plan`):

- a **surface** from the calibration wizard (:meth:`Session.apply_calibration`): the planes
  become ``surface + offsets`` (``CalibrationWizardModel.apply_to_plan``);
- **drift compensation** (:meth:`Session.set_drift_compensation`): a
  :class:`~live_deepz.calibration.DriftCompensationPlan` (flat planes at the offsets, plus 0
  for the drift-corrected feed, around the tracked focus), built by
  :func:`live_deepz.calibration.drift_compensation_plan` — the estimator runs on a second
  eager engine of the same model, every ``every_n``-th frame (>= 5 on the CPU). While it is
  on, the surface is not applied (the two are not combined yet); moving the focus by hand
  resets the tracking.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QCoreApplication, QObject, Signal

from live_deepz.dpm import StaticPlanePlan, check_range, parse_planes
from live_deepz.engine import optics_mismatch, pick_model, scope_na, standin_model
from live_deepz.errors import CameraError, DPMRangeError, InputError, LiveDeepzError, clause

from ._tasks import TaskRunner

__all__ = [
    "CoreEvents",
    "Session",
    "SessionConfig",
    "optics_mismatch",
    "pick_model",
    "standin_model",
]

logger = logging.getLogger("live_deepz.ui")

DEFAULT_PLANES = "-10:10:2"


@dataclass
class SessionConfig:
    """What to open. ``source``: ``"sim"``, a Micro-Manager ``.cfg`` path or a core object."""

    source: Any = "sim"
    sample: str = "beads"
    """Simulated sample (``open_core("sim", sample=...)``)."""
    size: int = 512
    """Simulated frame size (px)."""
    seed: int = 0
    model: str | None = None
    """Model name or folder; ``None``: the last one used, the default, the first installed,
    or (demo only) an untrained stand-in with a warning."""
    planes: str = DEFAULT_PLANES
    """The grid's planes; ``""``: from the settings (``run_app``) or the default."""
    depth_um: float | None = 0.0
    """The depth slider's plane; ``None``: from the settings or 0."""
    backend: str = "auto"
    """Inference backend (``""``: from the settings or auto)."""
    precision: str = "auto"
    device: str = "auto"
    exposure_ms: float | None = None
    autostart: bool = True
    allow_standin: bool = True
    remembered_model: str = ""
    """The model used last time (from the settings), tried when ``model`` is None."""

    def describe_source(self) -> str:
        src = self.source
        if isinstance(src, str) and src.strip().lower() == "sim":
            return f"simulated microscope ({self.sample}, {self.size}×{self.size} px)"
        if isinstance(src, str | Path):
            return f"Micro-Manager configuration {Path(src).name}"
        return "microscope"

    @property
    def is_sim(self) -> bool:
        return isinstance(self.source, str) and self.source.strip().lower() == "sim"


# --------------------------------------------------------------------------- models


# --------------------------------------------------------------------------- core events


class CoreEvents(QObject):
    """The core's events re-emitted on the UI thread (whatever thread the core emits from)."""

    exposureChanged = Signal(float)
    focusChanged = Signal(float)
    xyChanged = Signal(float, float)
    pixelSizeChanged = Signal(float)

    def __init__(self, core: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.core = core
        self._conns: list[tuple[Any, Any]] = []
        ev = core.events
        self._connect(ev.exposureChanged, self._on_exposure)
        self._connect(ev.propertyChanged, self._on_property)
        self._connect(ev.stagePositionChanged, self._on_stage)
        self._connect(ev.XYStagePositionChanged, self._on_xy)
        self._connect(ev.pixelSizeChanged, self._on_pixel)

    def _connect(self, signal: Any, slot: Any) -> None:
        signal.connect(slot)
        self._conns.append((signal, slot))

    def _on_exposure(self, device: str, value: float) -> None:
        self.exposureChanged.emit(float(value))

    def _on_property(self, device: str, prop: str, value: Any) -> None:
        if prop == "Exposure":
            with contextlib.suppress(ValueError, TypeError):
                self.exposureChanged.emit(float(value))

    def _on_stage(self, device: str, pos: float) -> None:
        with contextlib.suppress(Exception):
            if device == self.core.getFocusDevice():
                self.focusChanged.emit(float(pos))

    def _on_xy(self, device: str, x: float, y: float) -> None:
        self.xyChanged.emit(float(x), float(y))

    def _on_pixel(self, value: float) -> None:
        self.pixelSizeChanged.emit(float(value))

    def disconnect_all(self) -> None:
        for signal, slot in self._conns:
            with contextlib.suppress(Exception):
                signal.disconnect(slot)
        self._conns.clear()


def _adopt_core_events(core: Any) -> None:
    """Move Qt-based core signalers created on a worker thread to the UI thread."""
    app = QCoreApplication.instance()
    if app is None:
        return
    for obj in (getattr(core, "events", None), getattr(getattr(core, "mda", None), "events", None)):
        if isinstance(obj, QObject) and obj.thread() is not app.thread():
            obj.moveToThread(app.thread())


# --------------------------------------------------------------------------- session


@dataclass
class SurfaceCalibration:
    """A surface applied from the calibration wizard: the planes are ``surface + offsets``."""

    surface_um: np.ndarray
    """``(H, W)`` µm, read-only."""
    spec: dict[str, Any] | None
    summary: str


@dataclass
class _Built:
    core: Any
    model: Any
    standin: bool
    backend: Any
    pipeline: Any
    na: float | None
    grid: np.ndarray
    depth: float


class Session(QObject):
    """Core + model + pipeline + recorder behind one object; see the module docstring.

    Signals
    -------
    busyChanged(str) : what slow step is running ("" when none).
    opened() : the microscope and the model are ready (``core``, ``model``, ``pipeline``).
    stateChanged(str) : the pipeline's state: idle, running, stopping, error.
    notice(str, str, str) : ``(key, level, text)`` for the message bar; ``text=""`` clears
        ``key``. Levels: ``info``, ``warning``, ``error``.
    modelChanged() : a (new) model is in use.
    planChanged() : the grid planes or the depth changed.
    recordingChanged(bool) : a recording started / stopped.
    recordingFinished(object) : the :class:`RecordingSummary` of the recording that ended.
    driftChanged(bool) : drift compensation switched on (its plan is in use) or off.
    calibrationChanged() : a surface calibration was applied or removed.
    """

    busyChanged = Signal(str)
    opened = Signal()
    stateChanged = Signal(str)
    notice = Signal(str, str, str)
    modelChanged = Signal()
    planChanged = Signal()
    recordingChanged = Signal(bool)
    recordingFinished = Signal(object)
    driftChanged = Signal(bool)
    calibrationChanged = Signal()
    _recorderFailed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.tasks = TaskRunner(self)
        self.tasks.busyChanged.connect(self.busyChanged)
        self.config = SessionConfig()
        self.core: Any = None
        self.model: Any = None
        self.model_is_standin = False
        self.pipeline: Any = None
        self.planes_sub: Any = None
        self.raw_sub: Any = None
        self.events: CoreEvents | None = None
        self.na: float | None = None
        self.grid_offsets: np.ndarray = parse_planes(DEFAULT_PLANES)
        self.planes_spec = DEFAULT_PLANES
        self.depth_um = 0.0
        self.recorder: Any = None
        self.live: Any = None
        """The engine's :class:`~live_deepz.engine.LiveSession` (pipeline, recorder)."""
        self.last_summary: Any = None
        self._state = "idle"
        self._reported_error: tuple[int, str] | None = None
        self._run_counter = 0
        self._closed = False
        self._rec_stopping = False
        self._recorderFailed.connect(self._on_recorder_failed)
        self.calibration: SurfaceCalibration | None = None
        self.drift_enabled = False
        """Drift compensation wanted (its plan may still be being prepared)."""
        self.drift_plan: Any = None
        """The :class:`DriftCompensationPlan` in use, or None."""
        self.drift_refocus_fn: Callable[[Any], Any] | None = None
        """``model -> RefocusFn`` for the drift estimator instead of the model's engine
        (tests and demos with an oracle)."""
        self._drift_model: Any = None

    # ------------------------------------------------------------------ properties
    @property
    def ready(self) -> bool:
        return self.pipeline is not None

    @property
    def busy(self) -> str:
        return self.tasks.busy

    @property
    def state(self) -> str:
        """idle, running, stopping or error (``"loading"`` before the pipeline exists)."""
        if self.pipeline is None:
            return "loading"
        return str(self.pipeline.state)

    @property
    def recording(self) -> bool:
        return self.recorder is not None

    @property
    def z_range_um(self) -> tuple[float, float]:
        if self.model is None:
            return (-10.0, 10.0)
        lo, hi = self.model.card.z_range_um
        return float(lo), float(hi)

    @property
    def pixel_size_um(self) -> float | None:
        if self.core is None:
            return None
        try:
            px = float(self.core.getPixelSizeUm())
        except Exception:
            return None
        return px if px > 0 else None

    def plan_offsets(self) -> np.ndarray:
        """The offsets the pipeline computes: the grid's plus the depth slider's."""
        return parse_planes([*self.grid_offsets.tolist(), self.depth_um])

    # ------------------------------------------------------------------ open
    def open(self, config: SessionConfig) -> None:
        """Build the core, load the model and make the pipeline on a worker thread."""
        self.config = config
        spec = config.planes or DEFAULT_PLANES
        try:
            self.grid_offsets = parse_planes(spec)
            self.planes_spec = spec
        except InputError as exc:
            self.notice.emit("plan", "warning", f"Plane plan {spec!r} ignored: {exc}")
        self.depth_um = float(config.depth_um or 0.0)
        what = f"Starting the {config.describe_source()}"
        if config.is_sim and config.sample == "worm":
            what += " (building the worm scene takes ~15 s)"
        self.tasks.submit(what, lambda: self._build(config), self._on_built, self._on_open_failed)

    def _build(self, config: SessionConfig) -> _Built:
        from live_deepz.microscope import open_core

        source = config.source
        if config.is_sim:
            kw: dict[str, Any] = {"sample": config.sample, "size": config.size, "seed": config.seed}
            if config.exposure_ms:
                kw["exposure_ms"] = config.exposure_ms
            core = open_core("sim", **kw)
        else:
            core = open_core(source)
            if config.exposure_ms:
                core.setExposure(float(config.exposure_ms))
        _adopt_core_events(core)
        model, standin = pick_model(config.model, config.remembered_model, config.allow_standin)
        backend, pipeline, grid, depth = self._make_pipeline(
            core, model, config.backend, config.precision
        )
        na = scope_na(core, config.is_sim)
        return _Built(core, model, standin, backend, pipeline, na, grid, depth)

    def _make_pipeline(
        self, core: Any, model: Any, backend_name: str, precision: str
    ) -> tuple[Any, Any, np.ndarray, float]:
        """Backend (prepared for the camera's frame) + pipeline for the current plan, clipped
        to the model's range; runs on a worker thread. Returns ``(backend, pipeline, grid,
        depth)`` for the UI thread to adopt."""
        from live_deepz.engine import LiveSession, create_backend

        lo, hi = (float(v) for v in model.card.z_range_um)
        grid = self.grid_offsets[(self.grid_offsets >= lo) & (self.grid_offsets <= hi)]
        if grid.size == 0:
            grid = np.array([0.0]) if lo <= 0.0 <= hi else np.array([lo])
        depth = float(min(max(self.depth_um, lo), hi))
        offsets = parse_planes([*grid.tolist(), depth])
        backend = create_backend(
            backend_name, model.generator, precision=precision, device=self.config.device
        )
        h, w = int(core.getImageHeight()), int(core.getImageWidth())
        backend.prepare(h, w, int(offsets.size))
        live = LiveSession(  # the engine's session (record drives one too)
            core,
            model,
            backend,
            StaticPlanePlan(offsets),
            mode="live",
            max_planes=int(grid.size) + 2,  # + the depth plane + 0 (drift-corrected feed)
            reserve_recorder_rings=True,  # a recording attaches without a camera restart
        )
        return backend, live, grid, depth

    def _on_built(self, built: _Built) -> None:
        if self._closed:  # the window was closed while loading: release what was built
            with contextlib.suppress(Exception):
                built.pipeline.stop()
            return
        self.core = built.core
        self.na = built.na
        self.events = CoreEvents(built.core, self)
        self.events.focusChanged.connect(self._on_focus_moved)
        self._adopt_plan(built.grid, built.depth)
        self._install(built.model, built.standin, built.pipeline)
        self.opened.emit()
        if self.config.autostart:
            self.start_live()

    def _on_open_failed(self, exc: BaseException) -> None:
        from live_deepz.errors import ModelFileError

        if isinstance(exc, ModelFileError):
            text = f"No model could be loaded: {_plain(exc)}"
        else:
            text = (
                f"The microscope could not be started: {_plain(exc)}. Check the configuration "
                "and start live-deepz again."
            )
        self.notice.emit("startup-error", "error", text)

    def _adopt_plan(self, grid: np.ndarray, depth: float) -> None:
        if not np.array_equal(grid, self.grid_offsets):
            self.notice.emit(
                "plan",
                "warning",
                "Planes outside the model's trained range were left out of the plan.",
            )
            self.grid_offsets = grid
            self.planes_spec = ",".join(f"{v:g}" for v in grid)
        self.depth_um = depth

    def _install(self, model: Any, standin: bool, live: Any) -> None:
        old = self.pipeline
        self.model, self.model_is_standin = model, standin
        self.live = live
        live.recordingFailed.connect(self._forward_recorder_failed)  # a recorder thread
        pipeline = self.pipeline = live.pipeline
        self.planes_sub = pipeline.subscribe_latest("planes")
        self.raw_sub = pipeline.subscribe_latest("raw")
        self._reported_error = None
        if old is not None and old is not pipeline:
            self._retire(old)
            self._reapply_calibrations()
        self._check_model()
        self.modelChanged.emit()
        self.planChanged.emit()
        self._emit_state()

    def _reapply_calibrations(self) -> None:
        """A new pipeline (model or engine changed) starts with flat planes: put the surface
        back and rebuild the drift estimator for the new model."""
        if self.drift_enabled:
            old, self.drift_plan = self.drift_plan, None
            self._close_plan_later(old)
            self.drift_enabled = False
            self.driftChanged.emit(False)
            self.set_drift_compensation(True)
        elif self.calibration is not None:
            err = self._apply_plan()
            if err:
                self.calibration = None
                self.notice.emit(
                    "calibration", "warning", f"The surface calibration was removed: {err}"
                )
                self.calibrationChanged.emit()

    def _retire(self, pipeline: Any) -> None:
        if pipeline.state in ("running", "stopping"):
            timeout = self.stop_timeout_s()
            self.tasks.submit("Stopping the previous pipeline", lambda: pipeline.stop(timeout))

    # ------------------------------------------------------------------ model checks
    def optics_problems(self) -> list[str]:
        if self.model is None or self.core is None:
            return []
        return optics_mismatch(self.model.card, self.pixel_size_um, self.na)

    def _check_model(self) -> None:
        if self.model_is_standin:
            self.notice.emit(
                "model",
                "error",
                "No trained model installed — showing an UNTRAINED network. The planes below "
                "are NOT refocused images. Open a model folder in the Model panel (written by "
                "`live-deepz train`).",
            )
        else:
            self.notice.emit("model", "error", "")
        problems = [] if self.model_is_standin else self.optics_problems()
        if problems:
            self.notice.emit(
                "mismatch",
                "warning",
                f"Model mismatch: {'; '.join(problems)}. The refocused planes will be wrong: "
                "choose a model trained for this objective and camera.",
            )
        else:
            self.notice.emit("mismatch", "warning", "")

    def recheck_optics(self) -> None:
        """Call when the pixel size changed (the core's pixelSizeChanged event)."""
        self._check_model()

    # ------------------------------------------------------------------ live
    def start_live(self) -> bool:
        """Start the camera stream and the engine; False (and a notice) if it failed."""
        p, live = self.pipeline, self.live
        if p is None or live is None or self.busy or p.state in ("running", "stopping"):
            return False
        try:
            live.start()
        except LiveDeepzError as exc:
            self.notice.emit("live", "error", f"Live could not start: {_plain(exc)}")
            self._emit_state()
            return False
        except Exception as exc:
            self.notice.emit("live", "error", f"Live could not start: {type(exc).__name__}: {exc}")
            self._emit_state()
            return False
        self._run_counter += 1
        self._reported_error = None
        self.notice.emit("live", "error", "")
        self._emit_state()
        return True

    def stop_live(self) -> None:
        """Stop the stream (on a worker thread: the engine may be mid-frame)."""
        p = self.pipeline
        if p is None or p.state not in ("running", "error"):
            return
        if self.recorder is not None:
            self.stop_recording(stop_stream=True)
            return
        timeout, live = self.stop_timeout_s(), self.live
        self.tasks.submit(
            "Stopping live",
            lambda: live.stop(timeout),
            lambda _: self._emit_state(),
            self._task_error,
        )
        self._emit_state()

    def stop_timeout_s(self) -> float:
        """How long to wait for the engine to finish its frame when stopping: a CPU engine
        may need seconds per frame (several times the median inference time, >= 10 s)."""
        p = self.pipeline
        infer_ms = math.nan
        if p is not None:
            with contextlib.suppress(Exception):
                infer_ms = float(p.stats().stage_ms.get("infer", math.nan))
        if not math.isfinite(infer_ms):
            return 30.0
        return max(10.0, 4.0 * infer_ms / 1e3 + 2.0)

    def _emit_state(self) -> None:
        s = self.state
        if s != self._state:
            self._state = s
        self.stateChanged.emit(s)

    def poll(self) -> None:
        """Check the pipeline for an error (the window calls this a few times a second)."""
        p = self.pipeline
        if p is None:
            return
        if p.state != self._state:
            self._emit_state()
        if p.state == "error" and p.error:
            key = (self._run_counter, p.error)
            if self._reported_error != key:
                self._reported_error = key
                self.notice.emit("live", "error", _live_error_text(p.exception, p.error))
                if self.recorder is not None and not self.busy:
                    self.stop_recording()
        rec = self.recorder
        if rec is not None and rec.error is not None and not self.busy:
            self.stop_recording(complete=False, restart_live=False)

    # ------------------------------------------------------------------ planes
    def validate_planes(self, spec: str) -> tuple[np.ndarray | None, str]:
        """``(offsets, "")`` if ``spec`` is usable with the current model, else
        ``(None, message)`` in plain words."""
        try:
            offsets = parse_planes(spec)
        except InputError as exc:
            return None, str(exc).replace("planes ", "Planes ", 1)
        lo, hi = self.z_range_um
        try:
            check_range(offsets, (lo, hi), what="planes")
        except DPMRangeError:
            return None, (
                f"Planes {offsets.min():+g} … {offsets.max():+g} µm go outside the model's "
                f"trained range ({lo:+g} … {hi:+g} µm), where Deep-Z is not valid. Choose "
                "planes within that range."
            )
        if offsets.size + 1 > 64:
            return None, f"{offsets.size} planes are too many for live display (64 at most)."
        return offsets, ""

    def set_planes(self, spec: str) -> str:
        """Use ``spec`` for the grid; returns an error message ("" when applied)."""
        offsets, err = self.validate_planes(spec)
        if offsets is None:
            return err
        if self.recording:
            return "The planes cannot change while recording (the file keeps one plane set)."
        old = (self.grid_offsets, self.planes_spec)
        self.grid_offsets, self.planes_spec = offsets, spec
        err = self._apply_plan()
        if err:
            self.grid_offsets, self.planes_spec = old
            return err
        self.planChanged.emit()
        return ""

    def set_depth(self, depth_um: float) -> str:
        """Move the single-plane view to ``depth_um``; returns an error message or ""."""
        lo, hi = self.z_range_um
        depth = float(min(max(depth_um, lo), hi))
        if self.recording:
            return "The depth cannot change while recording (the file keeps one plane set)."
        if abs(depth - self.depth_um) < 1e-9:
            return ""
        old = self.depth_um
        self.depth_um = depth
        err = self._apply_plan()
        if err:
            self.depth_um = old
            return err
        self.planChanged.emit()
        return ""

    def current_plan(self) -> Any:
        """The plan for the current planes: drift-compensated, on the calibrated surface, or
        flat (see the module docstring)."""
        offsets = self.plan_offsets()
        dp = self.drift_plan
        if self.drift_enabled and dp is not None:
            want = parse_planes([*offsets.tolist(), 0.0])
            if np.array_equal(want, dp.offsets_um):
                return dp
            return self._new_drift_plan(dp.estimator, want, initial_um=dp.correction_um())
        cal = self.calibration
        if cal is not None:
            return StaticPlanePlan(offsets, cal.surface_um, surface_spec=cal.spec)
        return StaticPlanePlan(offsets)

    def _apply_plan(self) -> str:
        p = self.pipeline
        if p is None:
            return ""
        plan = self.current_plan()
        try:
            self.live.set_plan(plan)  # from the next camera frame on (frames carry it)
        except DPMRangeError as exc:
            return _plain(exc)
        except InputError as exc:
            if "room" not in str(exc) or p.state not in ("running", "stopping"):
                return _plain(exc)

            timeout = self.stop_timeout_s()

            def restart() -> None:  # more planes than the running pipeline has room for
                p.stop(timeout)
                p.set_plan(plan)

            self.tasks.submit(
                "Restarting live for more planes",
                restart,
                lambda _: self._restart_after(),
                self._task_error,
            )
        self._adopt_drift_plan(plan)
        return ""

    def _adopt_drift_plan(self, plan: Any) -> None:
        old = self.drift_plan
        if plan is old:
            return
        is_drift = hasattr(plan, "trace") and hasattr(plan, "update")
        self.drift_plan = plan if is_drift else None
        if old is not None:
            self._close_plan_later(old)
        self.driftChanged.emit(self.drift_plan is not None)

    def _close_plan_later(self, plan: Any) -> None:
        """Stop a replaced drift plan's worker once the engine has surely left it (the frame
        in flight may still call it)."""
        close = getattr(plan, "close", None)
        if not callable(close):
            return
        delay_ms = int(1000 * min(30.0, max(1.0, self.stop_timeout_s() / 4)))

        def later() -> None:
            if not self._closed:
                self.tasks.submit("Stopping the drift tracking", close)

        from qtpy.QtCore import QTimer

        QTimer.singleShot(delay_ms, self, later)

    # ------------------------------------------------------------------ calibrations
    def grab_frame(self, timeout_s: float = 5.0) -> tuple[np.ndarray, str]:
        """A copy of the current camera frame and where it came from (call it on a worker
        thread). While live, the newest frame of the stream (live keeps running); otherwise
        one snapped frame (takes one exposure)."""
        p, core = self.pipeline, self.core
        if core is None:
            raise CameraError("the microscope is not ready yet")
        if p is not None and p.state == "running":
            sub = p.subscribe_latest("raw")
            try:
                deadline = time.monotonic() + timeout_s
                while True:
                    f = sub.get_latest(copy=True)
                    if f is not None:
                        return np.array(f.image), (
                            f"the newest live frame (frame {f.camera_frame}; live keeps running)"
                        )
                    if time.monotonic() > deadline:
                        raise CameraError(f"no frame came from the live stream in {timeout_s:g} s")
                    time.sleep(0.01)
            finally:
                sub.close()
        if core.isSequenceRunning():
            raise CameraError("the camera is streaming for another program: stop it first")
        core.snapImage()
        return np.array(core.getImage()), "a snapped frame (live is off)"

    def apply_calibration(self, wizard_model: Any) -> str:
        """Refocus the live planes onto the wizard's fitted surface
        (``wizard_model.apply_to_plan(current offsets)``); returns an error message or ""."""
        if self.pipeline is None:
            return "The microscope is not ready yet."
        if self.recording:
            return "The planes cannot change while recording: stop the recording first."
        try:
            plan = wizard_model.apply_to_plan(self.plan_offsets())
        except LiveDeepzError as exc:
            return _plain(exc)
        surface = plan.surface_um
        shape = (int(self.core.getImageHeight()), int(self.core.getImageWidth()))
        if surface is None or tuple(surface.shape) != shape:
            got = "no" if surface is None else f"a {surface.shape[0]}×{surface.shape[1]} px"
            return (
                f"The calibration has {got} surface but the camera's frames are "
                f"{shape[0]}×{shape[1]} px: calibrate on a live frame (or an image of the "
                "camera's size)."
            )
        sf = getattr(wizard_model, "surface_fit", None)
        summary = ""
        if sf is not None:
            summary = sf.summary().splitlines()[1] if sf.kind != "smooth" else "smooth surface"
        old = self.calibration
        self.calibration = SurfaceCalibration(
            surface, plan.describe().get("surface"), summary or "fitted surface"
        )
        if self.drift_enabled:
            self.notice.emit(
                "calibration",
                "info",
                "Surface calibration stored; it applies when drift compensation is off.",
            )
        else:
            err = self._apply_plan()
            if err:
                self.calibration = old
                return err
            self.notice.emit("calibration", "info", "")
        self.calibrationChanged.emit()
        self.planChanged.emit()
        return ""

    def clear_calibration(self) -> str:
        """Back to flat planes; returns an error message or ""."""
        if self.calibration is None:
            return ""
        if self.recording:
            return "The planes cannot change while recording: stop the recording first."
        old, self.calibration = self.calibration, None
        err = "" if self.drift_enabled else self._apply_plan()
        if err:
            self.calibration = old
            return err
        self.notice.emit("calibration", "info", "")
        self.calibrationChanged.emit()
        self.planChanged.emit()
        return ""

    def set_drift_compensation(self, on: bool) -> str:
        """Switch drift compensation on (the estimator's engine is prepared on a worker
        thread, then the pipeline gets the drift plan) or off (the static plan again).
        Returns an error message or ""; ``driftChanged`` tells when the plan is in use."""
        on = bool(on)
        if on == self.drift_enabled:
            return ""
        if self.recording:
            return "Switch drift compensation before recording, not during it."
        if self.pipeline is None or self.model is None or self.core is None:
            return "The microscope is not ready yet."
        if not on:
            self.drift_enabled = False
            err = self._apply_plan()
            if err:
                self.drift_enabled = True
                return err
            self.notice.emit("drift", "info", "")
            return ""
        self.drift_enabled = True
        model, p = self.model, self.pipeline
        shape = (int(self.core.getImageHeight()), int(self.core.getImageWidth()))
        offsets = parse_planes([*self.plan_offsets().tolist(), 0.0])
        device = str(getattr(p.backend, "device", "cpu"))
        precision = str(getattr(p.backend, "precision", "auto"))
        factory = self.drift_refocus_fn

        def build() -> Any:
            from live_deepz.calibration import drift_compensation_plan

            return drift_compensation_plan(
                model,
                offsets,
                shape,
                device=device,
                precision=precision,
                refocus_fn=None if factory is None else factory(model),
                asynchronous=device.startswith("cuda"),
            )

        def done(plan: Any) -> None:
            if not self.drift_enabled or self.model is not model or self.pipeline is not p:
                self._close_plan_later(plan)  # switched off / replaced meanwhile
                return
            self._drift_model = model
            self.drift_plan = plan
            err = self._apply_plan()
            if err:
                self.drift_enabled = False
                self.drift_plan = None
                self._close_plan_later(plan)
                self.notice.emit("drift", "error", f"Drift compensation failed: {err}")
                self.driftChanged.emit(False)
                return
            self.driftChanged.emit(True)
            if self.calibration is not None:
                self.notice.emit(
                    "drift",
                    "info",
                    "Drift compensation uses flat planes around the tracked focus: the "
                    "surface calibration is not applied while it is on.",
                )

        def failed(exc: BaseException) -> None:
            self.drift_enabled = False
            self.notice.emit("drift", "error", f"Drift compensation could not start: {_plain(exc)}")
            self.driftChanged.emit(False)

        self.tasks.submit("Preparing drift compensation", build, done, failed)
        return ""

    def _new_drift_plan(self, estimator: Any, offsets: np.ndarray, initial_um: float) -> Any:
        """The drift plan for new plane offsets, continuing from the current correction."""
        from live_deepz.calibration import DriftCompensationPlan, drift_every_n

        p = self.pipeline
        device = str(getattr(p.backend, "device", "cpu")) if p is not None else "cpu"
        shape = (int(self.core.getImageHeight()), int(self.core.getImageWidth()))
        estimator.every_n = drift_every_n(estimator, shape, int(offsets.size), device)
        return DriftCompensationPlan(
            estimator,
            offsets,
            initial_um=initial_um - estimator.target_offset_um,
            asynchronous=device.startswith("cuda"),
        )

    def _on_focus_moved(self, _: float) -> None:
        """The focus was moved on purpose: restart the drift tracking (otherwise the filter
        takes the jump for outliers and follows it only after a few estimates)."""
        dp = self.drift_plan
        if dp is not None:
            dp.reset()

    def _restart_after(self) -> None:
        self.start_live()

    # ------------------------------------------------------------------ model / engine
    def change_engine(
        self,
        model_path: str | None = None,
        backend: str | None = None,
        precision: str | None = None,
    ) -> None:
        """Load another model and/or backend/precision and restart live if it was running."""
        if self.core is None or self.recording:
            if self.recording:
                self.notice.emit(
                    "engine", "warning", "Stop the recording before changing the model or engine."
                )
            return
        old = self.pipeline
        was_live = old is not None and old.state == "running"
        if backend:
            self.config.backend = backend
        if precision:
            self.config.precision = precision
        model_before = self.model
        standin_before = self.model_is_standin
        timeout = self.stop_timeout_s()

        def work() -> tuple[Any, bool, Any, np.ndarray, float]:
            if old is not None:
                old.stop(timeout)
            if model_path is not None:
                from live_deepz.modelfile import load_model, resolve_model

                model, standin = load_model(resolve_model(model_path)), False
            else:
                model, standin = model_before, standin_before
            _, pipeline, grid, depth = self._make_pipeline(
                self.core, model, self.config.backend, self.config.precision
            )
            return model, standin, pipeline, grid, depth

        def done(result: tuple[Any, bool, Any, np.ndarray, float]) -> None:
            model, standin, pipeline, grid, depth = result
            self.notice.emit("engine", "error", "")
            self._adopt_plan(grid, depth)
            self._install(model, standin, pipeline)
            if was_live:
                self.start_live()

        def failed(exc: BaseException) -> None:
            what = "model" if model_path is not None else "engine"
            self.notice.emit("engine", "error", f"The {what} could not be loaded: {_plain(exc)}")
            self._emit_state()
            if was_live and old is not None:
                self.start_live()

        what = f"Loading model {Path(model_path).name}" if model_path else "Preparing the engine"
        self.tasks.submit(what, work, done, failed)
        self._emit_state()

    def backend_description(self) -> str:
        p = self.pipeline
        if p is None:
            return ""
        b = p.backend
        name = getattr(b, "name", type(b).__name__)
        return f"{name} · {getattr(b, 'precision', '?')} · {getattr(b, 'device', '?')}"

    # ------------------------------------------------------------------ recording
    def start_recording(
        self, path: str | Path, fmt: str = "tiff", complete_on_stop: bool = True
    ) -> None:
        """Record raw frames + planes to ``path``. While live the recorder attaches to the
        running stream (no camera restart: frame numbers continue); else the stream starts
        with it."""
        p, live = self.pipeline, self.live
        if p is None or live is None or self.recorder is not None or self.busy:
            return
        rec = live.recorder_for(
            path,
            format=fmt,
            model=None if self.model_is_standin else self.model,
            metadata={"app": "live-deepz ui", "untrained_standin": self.model_is_standin},
            complete_on_stop=complete_on_stop,
            progress=False,
        )
        timeout = self.stop_timeout_s()

        def work() -> None:
            if p.state in ("stopping", "error"):
                p.stop(timeout)
            live.start_recording(rec)  # attaches while running: the camera keeps streaming
            if p.state != "running":  # not live: the stream starts with the recorder
                try:
                    p.start()
                except BaseException:
                    live.stop_recording(complete=False)
                    raise
                self._run_counter += 1

        def done(_: Any) -> None:
            self.notice.emit("recording", "info", "")
            self.notice.emit("live", "error", "")
            self._emit_state()

        def failed(exc: BaseException) -> None:
            self.recorder = None
            self.recordingChanged.emit(False)
            self.notice.emit("recording", "error", f"The recording could not start: {_plain(exc)}")
            self._emit_state()

        self.recorder = rec
        self.recordingChanged.emit(True)
        self.tasks.submit(f"Starting the recording {Path(path).name}", work, done, failed)

    def stop_recording(
        self, complete: bool | None = None, restart_live: bool = True, stop_stream: bool = False
    ) -> None:
        """Finish the recording, compute skipped planes. A recorder that attached to the
        running stream detaches (live goes on) unless ``stop_stream``."""
        rec, live = self.recorder, self.live
        if rec is None or live is None or self._rec_stopping:
            return
        self._rec_stopping = True
        p = self.pipeline
        was_live = p is not None and p.state == "running"
        stops_stream = stop_stream or rec.stops_pipeline

        def done(summary: Any) -> None:
            self.recorder = None
            self._rec_stopping = False
            self.last_summary = summary
            self.recordingChanged.emit(False)
            self.recordingFinished.emit(summary)
            if summary.error:
                self.notice.emit("recording", "error", f"Recording stopped: {summary.error}")
            self._emit_state()
            if was_live and restart_live and not stop_stream and not summary.error:
                self.start_live()  # (a no-op when the stream kept running)

        def failed(exc: BaseException) -> None:
            self.recorder = None
            self._rec_stopping = False
            self.recordingChanged.emit(False)
            self.notice.emit("recording", "error", f"Finishing the recording failed: {exc}")
            self._emit_state()

        what = "Finishing the recording" + (
            " (computing the planes the engine skipped)" if complete is not False else ""
        )
        timeout = self.stop_timeout_s()

        def work() -> Any:
            if stops_stream and p is not None and p.state in ("running", "stopping"):
                p.stop(timeout)  # the engine may need seconds to finish its frame
            return live.stop_recording(complete=complete)

        self.tasks.submit(what, work, done, failed)

    def _forward_recorder_failed(self, message: str) -> None:
        self._recorderFailed.emit(message)  # queued to the UI thread

    def _on_recorder_failed(self, message: str) -> None:
        self.notice.emit("recording", "error", f"Recording stopped: {message}")
        if self.recorder is not None and not self.busy:
            self.stop_recording(complete=False, restart_live=False)
        # else: poll() stops it once the running task is done

    # ------------------------------------------------------------------ helpers
    def _task_error(self, exc: BaseException) -> None:
        self.notice.emit("live", "error", _plain(exc))
        self._emit_state()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop everything and join every thread this session started (window close)."""
        if self._closed:
            return
        self._closed = True
        stop_s = self.stop_timeout_s()
        self.tasks.wait(max(timeout, stop_s))
        if self.pipeline is not None:
            with contextlib.suppress(Exception):
                self.pipeline.stop(stop_s)
        dp, self.drift_plan = self.drift_plan, None
        if dp is not None and callable(getattr(dp, "close", None)):
            with contextlib.suppress(Exception):
                dp.close()
        rec, self.recorder = self.recorder, None
        if rec is not None:
            with contextlib.suppress(Exception):
                summary = rec.stop(complete=False)
                logger.warning(
                    "recording %s closed with the window; %d frame(s) without planes: run "
                    "`live-deepz complete %s`",
                    summary.path,
                    summary.incomplete,
                    summary.path,
                )
        for sub in (self.planes_sub, self.raw_sub):
            if sub is not None:
                sub.close()
        if self.events is not None:
            self.events.disconnect_all()
        self.tasks.shutdown(timeout)


def _plain(exc: BaseException) -> str:
    """The message of an error for the window (without the exception class for ours)."""
    if isinstance(exc, LiveDeepzError):
        return clause(exc)
    return f"{type(exc).__name__}: {clause(exc)}"


def _live_error_text(exc: BaseException | None, message: str) -> str:
    if isinstance(exc, CameraError):
        return (
            f"The camera stopped: {clause(message)}. Check the camera (power, cable, Micro-Manager "
            "settings) and press Start live to try again."
        )
    from live_deepz.engine import EngineTooSlowError

    if isinstance(exc, EngineTooSlowError):
        return f"Live stopped: {message}"
    return (
        f"The refocusing engine stopped: {clause(message)}. Press Start live to try again; if it "
        "happens again, choose another backend or model."
    )
