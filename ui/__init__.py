"""live_deepz.ui: the pyqtgraph/qtpy live application; the only package that imports Qt.

``live-deepz demo`` / ``live-deepz gui`` call :func:`run_app`. The pieces:

- :class:`Session` — core + model + live pipeline + recorder; every slow step on a worker
  thread, messages in plain words (``notice``);
- :class:`MainWindow` — the plane grid, raw feed, single plane with depth slider, depth-coded
  MIP with an x–z section line, drift panel; controls; message bar; status bar;
- :class:`CalibrationWizard` — the tilt / curvature calibration wizard (pages on
  :class:`~live_deepz.calibration.CalibrationWizardModel`); :class:`CalibrationControls` —
  its button, the applied surface and the drift-compensation toggle;
- :class:`EventLoopProbe` — the UI thread's responsiveness (5 ms timer lateness);
- :class:`Settings` — persisted model, planes, layout, record folder;
- :class:`MDAPanel` — Deep-Z inside pymmcore-plus MDAs: pymmcore-widgets' ``MDAWidget`` +
  Deep-Z settings + the live planes of the current position (Acquisition menu).

Display arithmetic that needs no Qt (levels, projections, sections) is in ``_render``.
"""

from ._app import (
    AppOptions,
    apply_settings,
    apply_theme,
    ensure_app,
    freeze_gc,
    has_display,
    run_app,
    tune_for_latency,
    wait_for,
)
from ._controls import LiveButton, MicroscopeControls, ModelPanel, PlanEditor
from ._latency import EventLoopProbe, LoopLatency
from ._main_window import MainWindow
from ._mda_widget import MDAPanel, panel_for_session
from ._recording_panel import RecordingPanel, next_recording_path
from ._session import CoreEvents, Session, SessionConfig, optics_mismatch, pick_model, standin_model
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
from ._wizard import CalibrationControls, CalibrationWizard, wizard_model_for_session

__all__ = [
    "AppOptions",
    "CalibrationControls",
    "CalibrationWizard",
    "CoreEvents",
    "DepthMipView",
    "DriftPanel",
    "EventLoopProbe",
    "ImagePane",
    "LiveButton",
    "LoopLatency",
    "MDAPanel",
    "MainWindow",
    "MessageBar",
    "MicroscopeControls",
    "ModelPanel",
    "PlanEditor",
    "PlaneGridView",
    "RecordingPanel",
    "Session",
    "SessionConfig",
    "Settings",
    "SinglePlaneView",
    "StatusBar",
    "XZSectionView",
    "apply_settings",
    "apply_theme",
    "ensure_app",
    "freeze_gc",
    "has_display",
    "next_recording_path",
    "optics_mismatch",
    "panel_for_session",
    "pick_model",
    "run_app",
    "standin_model",
    "tune_for_latency",
    "wait_for",
    "wizard_model_for_session",
]
