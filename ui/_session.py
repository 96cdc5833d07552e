"""The live session's Qt adapter (ndv's model/controller/view split, like the wizard).

:class:`Session` drives an engine :class:`~live_deepz.engine.LiveSession`; the Qt-free logic
is in the engine (:class:`~live_deepz.engine.LivePlans`: planes and plan composition;
:func:`~live_deepz.engine.open_live_setup`: core, model, pipeline) and in calibration (the
drift plan, the surface). It runs slow steps on worker threads (:class:`TaskRunner`) so the
UI thread never waits, and reports through Qt signals, with messages in plain words
(``notice``) for the window's message bar.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from live_deepz.engine import (
    DEFAULT_PLANES,
    LivePlans,
    LiveSetup,
    SessionConfig,
    SurfaceCalibration,
    describe_backend,
    grab_frame,
    live_error_text,
    model_notices,
    open_error_text,
    open_live_setup,
    optics_mismatch,
    pick_model,
    pixel_size_of,
    plain_error,
    rebuild_live_session,
    standin_model,
    stop_timeout_s,
)
from live_deepz.errors import DPMRangeError, InputError, LiveDeepzError

from ._core_events import CoreEvents, adopt_core_events
from ._tasks import TaskRunner

__all__ = [
    "DEFAULT_PLANES",
    "CoreEvents",
    "Session",
    "SessionConfig",
    "SurfaceCalibration",
    "optics_mismatch",
    "pick_model",
    "standin_model",
]

_plain = plain_error


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
        self.plans = LivePlans(DEFAULT_PLANES)
        """The planes, the surface calibration and the drift plan (Qt-free)."""
        self.plans.continue_drift = self._continue_drift
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
        self.drift_refocus_fn: Callable[[Any], Any] | None = None
        """``model -> RefocusFn`` for the drift estimator instead of the model's engine
        (tests and demos with an oracle)."""
        self.drift_track = "focus"
        """How drift compensation tracks (``calibration.DRIFT_TRACKS``): ``"focus"`` (the
        sample's sharpest plane) or ``"keyframe"`` (hold the plane in view when it starts);
        read when compensation is switched on."""
        self._drift_model: Any = None

    # ------------------------------------------------------------------ properties
    grid_offsets = property(lambda self: self.plans.grid_offsets)
    planes_spec = property(lambda self: self.plans.planes_spec)
    depth_um = property(lambda self: self.plans.depth_um)
    calibration = property(lambda self: self.plans.calibration)
    """The applied :class:`SurfaceCalibration`, or None."""
    drift_enabled = property(lambda self: self.plans.drift_enabled)
    """Drift compensation wanted (its plan may still be being prepared)."""
    drift_plan = property(lambda self: self.plans.drift_plan)
    """The :class:`DriftCompensationPlan` in use, or None."""

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
        return pixel_size_of(self.core)

    def plan_offsets(self) -> np.ndarray:
        """The offsets the pipeline computes: the grid's plus the depth slider's."""
        return self.plans.plan_offsets()

    @property
    def frame_shape(self) -> tuple[int, int]:
        return int(self.core.getImageHeight()), int(self.core.getImageWidth())

    # ------------------------------------------------------------------ open
    def open(self, config: SessionConfig) -> None:
        """Build the core, load the model and make the pipeline on a worker thread."""
        self.config = config
        warning = self.plans.reset(config.planes or DEFAULT_PLANES, config.depth_um or 0.0)
        if warning:
            self.notice.emit("plan", "warning", warning)
        what = f"Starting the {config.describe_source()}"
        if config.is_sim and config.sample == "worm":
            what += " (building the worm scene takes ~15 s)"
        grid, depth = self.grid_offsets, self.depth_um

        def build() -> LiveSetup:
            return open_live_setup(config, grid, depth, adopt_core=adopt_core_events)

        self.tasks.submit(what, build, self._on_built, self._on_open_failed)

    def _on_built(self, built: LiveSetup) -> None:
        if self._closed:  # the window was closed while loading: release what was built
            with contextlib.suppress(Exception):
                built.live.stop()
            return
        self.core = built.core
        self.na = built.na
        self.events = CoreEvents(built.core, self)
        self.events.focusChanged.connect(self._on_focus_moved)
        self._adopt_plan(built.grid, built.depth)
        self._install(built.model, built.standin, built.live)
        self.opened.emit()
        if self.config.autostart:
            self.start_live()

    def _on_open_failed(self, exc: BaseException) -> None:
        self.notice.emit("startup-error", "error", open_error_text(exc))

    def _adopt_plan(self, grid: np.ndarray, depth: float) -> None:
        warning = self.plans.adopt_clipped(grid, depth)
        if warning:
            self.notice.emit("plan", "warning", warning)

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
            self._close_plan_later(self.plans.take_drift_plan())
            self.driftChanged.emit(False)
            self.set_drift_compensation(True)
        elif self.calibration is not None:
            err = self._apply_plan()
            if err:
                self.plans.calibration = None
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
        problems = [] if self.model_is_standin else self.optics_problems()
        model_text, mismatch_text = model_notices(self.model_is_standin, problems)
        self.notice.emit("model", "error", model_text)
        self.notice.emit("mismatch", "warning", mismatch_text)

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
        except Exception as exc:
            self.notice.emit("live", "error", f"Live could not start: {_plain(exc)}")
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
        """How long to wait for the engine to finish its frame when stopping."""
        return stop_timeout_s(self.pipeline)

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
                self.notice.emit("live", "error", live_error_text(p.exception, p.error))
                if self.recorder is not None and not self.busy:
                    self.stop_recording()
        rec = self.recorder
        if rec is not None and rec.error is not None and not self.busy:
            self.stop_recording(complete=False, restart_live=False)

    # ------------------------------------------------------------------ planes
    def validate_planes(self, spec: str) -> tuple[np.ndarray | None, str]:
        """``(offsets, "")`` if ``spec`` is usable with the current model, else
        ``(None, message)`` in plain words."""
        return self.plans.validate_planes(spec, self.z_range_um)

    def set_planes(self, spec: str) -> str:
        """Use ``spec`` for the grid; returns an error message ("" when applied)."""
        offsets, err = self.validate_planes(spec)
        if offsets is None:
            return err
        if self.recording:
            return "The planes cannot change while recording (the file keeps one plane set)."
        return self._change_plan(lambda: self.plans.set_grid(offsets, spec))

    def set_depth(self, depth_um: float) -> str:
        """Move the single-plane view to ``depth_um``; returns an error message or ""."""
        lo, hi = self.z_range_um
        depth = float(min(max(depth_um, lo), hi))
        if self.recording:
            return "The depth cannot change while recording (the file keeps one plane set)."
        if abs(depth - self.depth_um) < 1e-9:
            return ""
        return self._change_plan(lambda: setattr(self.plans, "depth_um", depth))

    def _change_plan(
        self, change: Callable[[], None], apply: bool = True, emit: bool = True
    ) -> str:
        """Change :attr:`plans` and apply the plan; on an error the old state stays and the
        error is returned. ``emit``: ``planChanged`` when done."""
        try:
            with self.plans.change():
                change()
                err = self._apply_plan() if apply else ""
                if err:
                    raise _Refused(err)
        except _Refused as exc:
            return str(exc)
        if emit:
            self.planChanged.emit()
        return ""

    def current_plan(self) -> Any:
        """The plan for the current planes (:meth:`LivePlans.current_plan`)."""
        return self.plans.current_plan()

    def _continue_drift(self, plan: Any, offsets: np.ndarray) -> Any:
        from live_deepz.calibration import continue_drift_plan

        p = self.pipeline
        device = str(getattr(p.backend, "device", "cpu")) if p is not None else "cpu"
        return continue_drift_plan(plan, offsets, self.frame_shape, device)

    def _apply_plan(self) -> str:
        p = self.pipeline
        if p is None:
            return ""
        plan, live = self.current_plan(), self.live
        try:
            applied = live.try_set_plan(plan)  # from the next camera frame on
        except (DPMRangeError, InputError) as exc:
            return _plain(exc)
        if not applied:  # more planes than the running pipeline has room for
            timeout = self.stop_timeout_s()
            self.tasks.submit(
                "Restarting live for more planes",
                lambda: live.set_plan_stopped(plan, timeout),
                lambda _: self._restart_after(),
                self._task_error,
            )
        self._adopt_drift_plan(plan)
        return ""

    def _adopt_drift_plan(self, plan: Any) -> None:
        if plan is self.drift_plan:
            return
        old = self.plans.adopt_plan(plan)
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

        QTimer.singleShot(delay_ms, self, later)

    # ------------------------------------------------------------------ calibrations
    def grab_frame(self, timeout_s: float = 5.0) -> tuple[np.ndarray, str]:
        """The current camera frame and where it came from (:func:`engine.grab_frame`;
        call it on a worker thread)."""
        return grab_frame(self.core, self.pipeline, timeout_s)

    def apply_calibration(self, wizard_model: Any) -> str:
        """Refocus the live planes onto the wizard's fitted surface
        (:func:`~live_deepz.calibration.live_surface_calibration`); returns an error message
        or ""."""
        from live_deepz.calibration import live_surface_calibration

        if self.pipeline is None:
            return "The microscope is not ready yet."
        if self.recording:
            return "The planes cannot change while recording: stop the recording first."
        try:
            cal = live_surface_calibration(wizard_model, self.plan_offsets(), self.frame_shape)
        except LiveDeepzError as exc:
            return _plain(exc)
        return self._set_calibration(cal)

    def clear_calibration(self) -> str:
        """Back to flat planes; returns an error message or ""."""
        if self.calibration is None:
            return ""
        if self.recording:
            return "The planes cannot change while recording: stop the recording first."
        return self._set_calibration(None)

    def _set_calibration(self, cal: SurfaceCalibration | None) -> str:
        change = lambda: setattr(self.plans, "calibration", cal)  # noqa: E731
        err = self._change_plan(change, apply=not self.drift_enabled, emit=False)
        if err:
            return err
        self.notice.emit("calibration", "info", self.plans.surface_note())
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
            err = self._change_plan(lambda: setattr(self.plans, "drift_enabled", False), emit=False)
            if not err:
                self.notice.emit("drift", "info", "")
            return err
        self.plans.drift_enabled = True
        model, p = self.model, self.pipeline
        shape, offsets = self.frame_shape, self.plans.drift_offsets()
        factory, track = self.drift_refocus_fn, self.drift_track

        def build() -> Any:
            from live_deepz.calibration import drift_plan_for_backend

            fn = None if factory is None else factory(model)
            return drift_plan_for_backend(model, offsets, shape, p.backend, fn, track)

        def done(plan: Any) -> None:
            if not self.drift_enabled or self.model is not model or self.pipeline is not p:
                self._close_plan_later(plan)  # switched off / replaced meanwhile
                return
            self._drift_model = model
            self.plans.drift_plan = plan
            err = self._apply_plan()
            if err:
                self.plans.take_drift_plan()
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
            self.plans.drift_enabled = False
            self.notice.emit("drift", "error", f"Drift compensation could not start: {_plain(exc)}")
            self.driftChanged.emit(False)

        self.tasks.submit("Preparing drift compensation", build, done, failed)
        return ""

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
        args = (old, self.core, self.model, self.grid_offsets, self.depth_um)
        engine = (self.config.backend, self.config.precision, self.config.device)
        standin, timeout = self.model_is_standin, self.stop_timeout_s()

        def work() -> LiveSetup:
            return rebuild_live_session(
                *args, engine, model_path=model_path, standin=standin, timeout=timeout
            )

        def done(setup: LiveSetup) -> None:
            self.notice.emit("engine", "error", "")
            self._adopt_plan(setup.grid, setup.depth)
            self._install(setup.model, setup.standin, setup.live)
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
        return describe_backend(None if self.pipeline is None else self.pipeline.backend)

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
            if live.record(rec, timeout):  # attached while live; else the stream started
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
            return live.finish_recording(complete, stop_stream=stop_stream, timeout=timeout)

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
        dp = self.plans.take_drift_plan()
        if dp is not None and callable(getattr(dp, "close", None)):
            with contextlib.suppress(Exception):
                dp.close()
        rec, self.recorder = self.recorder, None
        if rec is not None and self.live is not None:
            self.live.abandon_recording(rec)
        for sub in (self.planes_sub, self.raw_sub):
            if sub is not None:
                sub.close()
        if self.events is not None:
            self.events.disconnect_all()
        self.tasks.shutdown(timeout)


class _Refused(Exception):
    """The pipeline refused a plan (its message is for the caller)."""
