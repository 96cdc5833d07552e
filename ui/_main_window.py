"""The main window: views in docks around the plane grid, controls on the left, messages on
top, live numbers at the bottom.

::

    ┌ message bar (errors, warnings, "starting…") ─────────────────────────────────┐
    │ Controls  │  Refocused planes (grid, central)         │ Raw camera          │
    │ live,     │                                           ├─────────────────────┤
    │ stage,    │                                           │ Single plane +      │
    │ planes,   ├───────────────────────┬───────────────────┤ depth slider        │
    │ model,    │ Depth-coded MIP       │ X–Z section │ Drift                     │
    │ recording │ (draw the x–z line)   │                                         │
    └ status: state · camera fps · processed fps · drops · latency · UI loop · backend ┘

The *Calibration* menu (and the Calibration group of the controls) opens the calibration
wizard (:class:`~live_deepz.ui._wizard.CalibrationWizard`, non-modal) and switches drift
compensation; with it on, the Drift dock shows the plane at offset 0 of the compensated plan
each frame and the drift trace (≤ 5 Hz).

A display timer (≤ 60 Hz) pulls the newest raw frame and the newest plane frame from the
pipeline's display subscriptions (``subscribe_latest``: never waits, skips are counted) and
hands them to the views; derived views (MIP, x–z) are computed on a worker thread
(:class:`DerivedWorker`) at ≤ 15 Hz and only while visible. Nothing on this thread waits on
the camera, the engine or the disk.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QAction, QCloseEvent, QKeySequence, QShortcut
from qtpy.QtWidgets import (
    QDockWidget,
    QMainWindow,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ._controls import LiveButton, MicroscopeControls, ModelPanel, PlanEditor
from ._derived import DerivedJob, DerivedResult, DerivedWorker
from ._latency import EventLoopProbe
from ._recording_panel import RecordingPanel
from ._render import match_offsets
from ._session import Session, SessionConfig
from ._settings import Settings
from ._status import MessageBar, StatusBar
from ._views import (
    DepthMipView,
    DriftPanel,
    ImagePane,
    PlaneGridView,
    SinglePlaneView,
    XZSectionView,
)
from ._wizard import CalibrationControls, CalibrationWizard

__all__ = ["MainWindow"]

DISPLAY_INTERVAL_MS = 16
"""The display timer (≤ ~60 redraws per second)."""
DERIVED_INTERVAL_S = 1 / 15
"""Minimum time between MIP / x–z redraws."""
STATUS_INTERVAL_MS = 250


class MainWindow(QMainWindow):
    """The live-deepz window for a :class:`Session` (made here when not given).

    ``open(config)`` starts the microscope and the model off the UI thread; the window is
    usable (and says what it is doing) meanwhile.
    """

    def __init__(
        self,
        session: Session | None = None,
        settings: Settings | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("liveDeepzMainWindow")
        self.setWindowTitle("live-deepz")
        self.settings = settings
        self.session = session if session is not None else Session(self)
        if self.session.parent() is None:
            self.session.setParent(self)
        s = self.session
        cm = (lambda v, d: settings.colormap(v, d)) if settings else (lambda v, d: d)

        # -- views
        self.messages = MessageBar()
        self.grid = PlaneGridView(cm("grid", "gray"))
        self.raw_view = ImagePane(cm("raw", "gray"))
        self.single = SinglePlaneView(cm("single", "gray"))
        self.mip = DepthMipView(cm("mip", "spectrum"))
        self.xz = XZSectionView(cm("xz", "gray"))
        self.drift = DriftPanel()
        central = QWidget()
        cl = QVBoxLayout(central)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(2)
        cl.addWidget(self.messages)
        self.grid_title = ""
        cl.addWidget(self.grid, 1)
        self.setCentralWidget(central)

        # -- controls
        self.live_button = LiveButton(s)
        self.scope_controls = MicroscopeControls(s)
        self.plan_editor = PlanEditor(s)
        self.model_panel = ModelPanel(s)
        self.calibration_controls = CalibrationControls(s)
        self.recording_panel = RecordingPanel(
            s,
            folder=settings.record_folder if settings else "",
            fmt=settings.record_format if settings else "tiff",
        )
        controls = QWidget()
        vl = QVBoxLayout(controls)
        vl.setContentsMargins(6, 6, 6, 6)
        vl.setSpacing(8)
        for w in (
            self.live_button,
            self.scope_controls,
            self.plan_editor,
            self.model_panel,
            self.calibration_controls,
            self.recording_panel,
        ):
            vl.addWidget(w)
        vl.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(controls)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(350)

        # -- docks
        self.docks: dict[str, QDockWidget] = {}
        self._dock("controls", "Controls", scroll, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._dock("raw", "Raw camera", self.raw_view, Qt.DockWidgetArea.RightDockWidgetArea)
        self._dock("single", "Single plane", self.single, Qt.DockWidgetArea.RightDockWidgetArea)
        self._dock("mip", "Depth-coded MIP", self.mip, Qt.DockWidgetArea.BottomDockWidgetArea)
        self._dock("xz", "X–Z section", self.xz, Qt.DockWidgetArea.BottomDockWidgetArea)
        self._dock("drift", "Drift", self.drift, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.tabifyDockWidget(self.docks["xz"], self.docks["drift"])
        self.docks["xz"].raise_()
        self.resizeDocks(
            [self.docks["controls"], self.docks["raw"]], [360, 460], Qt.Orientation.Horizontal
        )
        self.resizeDocks(
            [self.docks["raw"], self.docks["single"]], [420, 480], Qt.Orientation.Vertical
        )
        self.resizeDocks([self.docks["mip"]], [330], Qt.Orientation.Vertical)
        self.resizeDocks(
            [self.docks["mip"], self.docks["xz"]], [520, 420], Qt.Orientation.Horizontal
        )
        self.status = StatusBar()
        self.setStatusBar(self.status)

        # -- calibration menu
        self.wizard: CalibrationWizard | None = None
        menu = self.menuBar().addMenu("&Calibration")
        self.calibrate_action = QAction("Calibrate tilt / curvature…", self)
        self.calibrate_action.triggered.connect(self.open_calibration_wizard)
        self.drift_action = QAction("Drift compensation", self)
        self.drift_action.setCheckable(True)
        self.drift_action.triggered.connect(
            lambda *_: self.calibration_controls.drift.setChecked(self.drift_action.isChecked())
        )
        menu.addAction(self.calibrate_action)
        menu.addAction(self.drift_action)
        acq = self.menuBar().addMenu("&Acquisition")
        self.mda_action = QAction("Multi-dimensional acquisition (MDA)…", self)
        self.mda_action.triggered.connect(lambda *_: self.open_mda_panel())
        acq.addAction(self.mda_action)
        self.mda_panel: Any = None

        # -- timers and the latency probe
        self.derived = DerivedWorker(self)
        self.derived.ready.connect(self._on_derived)
        self.probe = EventLoopProbe(parent=self)
        self.probe.start()
        self._display_timer = QTimer(self)
        self._display_timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._display_timer.setInterval(DISPLAY_INTERVAL_MS)
        self._display_timer.timeout.connect(self.refresh_display)
        self._display_timer.start()
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(STATUS_INTERVAL_MS)
        self._status_timer.timeout.connect(self.refresh_status)
        self._status_timer.start()
        self._last_derived = 0.0
        self._status_ticks = 0
        self._planes_times: list[float] = []
        self._grid_map: tuple[int, np.ndarray, np.ndarray] | None = None
        self.last_planes: Any = None
        self._closed = False

        # -- wiring
        s.notice.connect(self._on_notice)
        s.busyChanged.connect(self._on_busy)
        s.opened.connect(self._on_opened)
        s.planChanged.connect(self._on_plan)
        s.modelChanged.connect(self._on_model)
        s.recordingChanged.connect(self._on_recording)
        s.driftChanged.connect(self._on_drift)
        for sig in (s.busyChanged, s.opened, s.stateChanged, s.modelChanged):
            sig.connect(lambda *_: self._sync_drift_action())
        self.calibration_controls.calibrateRequested.connect(self.open_calibration_wizard)
        self._sync_drift_action()
        self.single.depthRequested.connect(self._on_depth)
        QShortcut(QKeySequence("Ctrl+L"), self, activated=self.live_button.click)
        QShortcut(QKeySequence("Ctrl+R"), self, activated=self.recording_panel.button.click)
        self.live_button.setToolTip("start / stop the camera stream and the refocusing (Ctrl+L)")
        self.recording_panel.button.setToolTip("start / stop recording (Ctrl+R)")
        self.mip.lineChanged.connect(self._redraw_section)
        if s.events is not None:  # a session opened before the window
            self._on_opened()
        self.resize(1600, 1000)
        self._restore()

    def _dock(self, name: str, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> None:
        d = QDockWidget(title, self)
        d.setObjectName(f"dock_{name}")
        d.setWidget(widget)
        d.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(area, d)
        self.docks[name] = d

    # ------------------------------------------------------------------ open / close
    def open(self, config: SessionConfig) -> None:
        """Start the microscope and the model described by ``config`` (asynchronous)."""
        if self.settings is not None and not config.remembered_model:
            config.remembered_model = self.settings.model
        self.setWindowTitle(f"live-deepz — {config.describe_source()}")
        self.session.open(config)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Save the settings, stop the timers and every thread of the session."""
        if self._closed:
            return
        self._closed = True
        self.save_settings()
        self._display_timer.stop()
        self._status_timer.stop()
        if self.wizard is not None:
            self.wizard.close()
        if self.mda_panel is not None:
            self.mda_panel.shutdown()
        self.probe.stop()
        self.derived.close()
        self.session.shutdown()

    # ------------------------------------------------------------------ settings
    def save_settings(self) -> None:
        st = self.settings
        if st is None:
            return
        s = self.session
        st.geometry = self.saveGeometry()
        st.window_state = self.saveState()
        if s.model is not None and not s.model_is_standin:
            st.model = str(s.model.path)
        st.planes = s.planes_spec
        st.depth_um = s.depth_um
        st.record_folder = self.recording_panel.folder.text()
        st.record_format = self.recording_panel.fmt
        st.backend = s.config.backend
        st.precision = s.config.precision
        for name, w in (
            ("grid", self.grid),
            ("raw", self.raw_view),
            ("single", self.single),
            ("mip", self.mip),
            ("xz", self.xz),
        ):
            st.set_colormap(name, w.header.cmap.currentText())
        st.sync()

    def _restore(self) -> None:
        st = self.settings
        if st is None:
            return
        if st.geometry is not None:
            self.restoreGeometry(st.geometry)
        if st.window_state is not None:
            self.restoreState(st.window_state)

    # ------------------------------------------------------------------ session events
    def _on_notice(self, key: str, level: str, text: str) -> None:
        action = None
        if key == "live" and level == "error":
            action = ("Restart live", self.session.start_live)
        self.messages.show_message(key, level, text, action=action)

    def _on_busy(self, what: str) -> None:
        self.messages.show_message("busy", "info", f"{what}…" if what else "", busy=True)

    def _on_opened(self) -> None:
        px = self.session.pixel_size_um
        for pane in (self.raw_view, self.single):
            pane.set_pixel_size(px)
        if self.session.events is not None:
            self.session.events.pixelSizeChanged.connect(self._on_pixel_size)
        self._on_model()
        self._on_plan()

    def _on_pixel_size(self, _: float) -> None:
        px = self.session.pixel_size_um
        for pane in (self.raw_view, self.single):
            pane.set_pixel_size(px)
        self.session.recheck_optics()
        self.model_panel.refresh()

    def _on_model(self) -> None:
        s = self.session
        self.single.set_range(s.z_range_um)
        self._grid_map = None
        self._on_plan()

    def _on_plan(self) -> None:
        s = self.session
        self.grid.set_offsets(s.grid_offsets, highlight=s.depth_um)
        self.single.set_depth(s.depth_um)
        self._grid_map = None

    def _on_depth(self, depth: float) -> None:
        err = self.session.set_depth(depth)
        self.messages.show_message("depth", "warning", err)
        if err:
            self.single.set_depth(self.session.depth_um)

    def _on_recording(self, recording: bool) -> None:
        why = "the depth is fixed while recording" if recording else ""
        self.single.set_enabled_depth(not recording, why)
        self._sync_drift_action()

    # ------------------------------------------------------------------ MDA
    def open_mda_panel(self) -> Any:
        """Dock the MDA panel (pymmcore-widgets' sequence editor + live Deep-Z planes)."""
        if self.mda_panel is not None:
            self.docks["mda"].show()
            self.docks["mda"].raise_()
            return self.mda_panel
        s = self.session
        if s.model is None or s.core is None:
            self.messages.show_message(
                "mda", "warning", "The MDA panel needs the microscope and a model."
            )
            return None
        try:
            from ._mda_widget import panel_for_session

            self.mda_panel = panel_for_session(s, parent=self)
        except ImportError as exc:
            self.messages.show_message(
                "mda",
                "error",
                f"The MDA panel needs pymmcore-widgets ({exc}): pip install pymmcore-widgets",
            )
            return None
        self._dock(
            "mda",
            "Multi-dimensional acquisition",
            self.mda_panel,
            Qt.DockWidgetArea.RightDockWidgetArea,
        )
        return self.mda_panel

    # ------------------------------------------------------------------ calibration
    def open_calibration_wizard(self) -> CalibrationWizard | None:
        """Open (or bring forward) the calibration wizard on the session's model."""
        if self.wizard is not None and self.wizard.isVisible():
            self.wizard.raise_()
            self.wizard.activateWindow()
            return self.wizard
        s = self.session
        if s.model is None or s.pipeline is None:
            self.messages.show_message(
                "calibration", "warning", "The calibration needs the microscope and a model."
            )
            return None
        folder = self.recording_panel.folder.text() if self.recording_panel else ""
        self.wizard = CalibrationWizard(s, parent=self, folder=folder)
        self.wizard.show()
        return self.wizard

    def _on_drift(self, on: bool) -> None:
        s = self.session
        self.drift.set_plan(s.drift_plan if on else None)
        if on:
            self.docks["drift"].show()
            self.docks["drift"].raise_()
        self._sync_drift_action()

    def _sync_drift_action(self) -> None:
        s = self.session
        self.drift_action.setChecked(s.drift_enabled)
        self.drift_action.setEnabled(s.pipeline is not None and not s.recording)
        self.calibrate_action.setEnabled(s.pipeline is not None and s.model is not None)

    # ------------------------------------------------------------------ display
    def refresh_display(self) -> None:
        """Pull the newest frames and draw them (the display timer's slot)."""
        s = self.session
        if s.raw_sub is None or s.planes_sub is None:
            return
        raw = _latest(s.raw_sub)
        if raw is not None:
            z = raw.stage_z_um
            ztxt = f" · Z {z:.2f} µm" if math.isfinite(z) else ""
            self.raw_view.show_image(raw.image, f" frame {raw.camera_frame}{ztxt} ")
        pf = _latest(s.planes_sub)
        if pf is not None:
            self.show_planes(pf)

    def show_planes(self, pf: Any) -> None:
        """Draw a :class:`~live_deepz.engine.PlaneFrame` in the grid, single plane, MIP, x–z."""
        s = self.session
        now = time.perf_counter()
        self.last_planes = pf
        key = pf.plan_id
        gm = self._grid_map
        if gm is None or gm[0] != key:
            grid_idx = match_offsets(pf.offsets_um, s.grid_offsets)
            depth_idx = match_offsets(pf.offsets_um, np.array([s.depth_um]))
            gm = self._grid_map = (key, grid_idx, depth_idx)
        _, grid_idx, depth_idx = gm
        self.grid.show_planes(pf.planes, grid_idx, pf.index)
        k = int(depth_idx[0])
        if k >= 0:
            self.single.show_image(pf.planes[k], f" {pf.offsets_um[k]:+.1f} µm · frame {pf.index} ")
        if s.drift_plan is not None and pf.plan.get("type") == "drift":
            self._show_drift_feed(pf)
        self._planes_times.append(now)
        if now - self._last_derived >= DERIVED_INTERVAL_S:
            self._last_derived = now
            self._draw_derived(pf, grid_idx)

    def _show_drift_feed(self, pf: Any) -> None:
        """The plane at offset 0 of the drift-compensated plan, in the Drift dock."""
        if not _visible(self.docks["drift"]):
            return
        zero = np.flatnonzero(np.abs(np.asarray(pf.offsets_um)) < 1e-9)
        if zero.size == 0:
            return
        corr = pf.served_um  # stamped by the engine when it served the frame (clamped)
        if corr is None:
            corr = pf.plan.get("correction_um")
        ctext = f" · planes at {corr:+.2f} µm" if isinstance(corr, int | float) else ""
        self.drift.show_corrected(
            pf.planes[int(zero[0])], f" drift-corrected focus{ctext} · frame {pf.index} "
        )

    def _draw_derived(self, pf: Any, grid_idx: np.ndarray) -> None:
        """Queue the MIP and the x–z section of the grid's planes on the worker thread."""
        want_mip = _visible(self.docks["mip"])
        want_xz = _visible(self.docks["xz"])
        if not (want_mip or want_xz) or self.derived.busy:
            return  # the worker is still on the previous frame: skip this one (newest wins)
        valid = grid_idx[grid_idx >= 0]
        if valid.size == 0:
            valid = np.arange(pf.planes.shape[0])
        offsets = np.asarray(pf.offsets_um)[valid]
        self.derived.submit(
            DerivedJob(
                planes=pf.planes[valid],  # (K', H, W) a copy: the frame buffer is reused
                offsets_um=offsets,
                colors=self.mip.colors_for(offsets),
                mip_levels=self.mip.wanted_levels(),
                xz_levels=self.xz.wanted_levels(self.grid.levels),
                line=self.mip.line(),
                pixel_size_um=self.session.pixel_size_um or 1.0,
                want_mip=want_mip,
                want_xz=want_xz,
                frame_index=pf.index,
            )
        )

    def _redraw_section(self) -> None:
        """The x–z line moved: recompute the section of the last planes (if any yet)."""
        self.derived.submit(
            DerivedJob(
                planes=None,
                offsets_um=np.zeros(0),
                colors=np.zeros((0, 3)),
                mip_levels=None,
                xz_levels=self.xz.wanted_levels(self.grid.levels),
                line=self.mip.line(),
                pixel_size_um=self.session.pixel_size_um or 1.0,
                want_mip=False,
            )
        )

    def _on_derived(self, r: DerivedResult) -> None:
        if self._closed:
            return
        if r.rgb is not None and r.mip_levels is not None:
            self.mip.show_rgb(r.rgb, r.mip_levels, r.offsets_um)
        if r.section is not None and r.z_um is not None and r.xz_levels is not None:
            (x0, y0), (x1, y1) = r.line
            length = math.hypot(x1 - x0, y1 - y0) * r.pixel_size_um
            self.xz.show_section_data(r.section, r.z_um, length, r.xz_levels)

    def display_fps(self, window_s: float = 5.0) -> float:
        """Plane frames drawn per second over the last ``window_s`` (0 if none)."""
        now = time.perf_counter()
        t = [x for x in self._planes_times if x > now - window_s]
        self._planes_times = t
        if len(t) < 2:
            return len(t) / window_s
        return (len(t) - 1) / max(t[-1] - t[0], now - t[0], 1e-6)

    def refresh_status(self) -> None:
        s = self.session
        s.poll()
        stats = s.pipeline.stats() if s.pipeline is not None else None
        loop = self.probe.stats()
        self.status.show_stats(
            stats,
            display_fps=self.display_fps(),
            loop_p99_ms=loop.p99_ms,
            backend=s.backend_description(),
            state=s.state,
        )
        self._status_ticks += 1
        if self._status_ticks % 4 == 0 or s.recording:  # disk space: once a second
            self.recording_panel.refresh()
        self.drift.refresh()


def _latest(sub: Any) -> Any:
    from live_deepz.engine import PipelineError

    try:
        return sub.get_latest()
    except PipelineError:  # the run failed; the session reports it (poll)
        return None


def _visible(dock: QDockWidget) -> bool:
    return dock.isVisible() and not dock.visibleRegion().isEmpty()
