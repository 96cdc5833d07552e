"""Application entry points: the Qt application, the dark theme, running the window, and the
headless screenshot mode used by ``live-deepz demo --screenshot``.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtpy.QtCore import QElapsedTimer, QEventLoop, QTimer, qInstallMessageHandler
from qtpy.QtGui import QColor, QPalette
from qtpy.QtWidgets import QApplication

from ._main_window import MainWindow
from ._session import SessionConfig
from ._settings import Settings

__all__ = [
    "AppOptions",
    "apply_settings",
    "apply_theme",
    "ensure_app",
    "has_display",
    "run_app",
    "wait_for",
]

STYLE = """
QMainWindow, QDockWidget { font-size: 10pt; }
QDockWidget::title { background: #23272b; padding: 4px 6px; font-weight: bold; }
QGroupBox { border: 1px solid #3a3f44; border-radius: 4px; margin-top: 10px; padding-top: 6px; }
QGroupBox::title { subcontrol-origin: margin; left: 8px; padding: 0 4px; color: #8fc7ff;
                   font-weight: bold; }
QLabel#dim, QLabel#viewInfo { color: #9aa4ad; }
QLabel#error { color: #ff8a80; font-weight: bold; }
QLabel#warning { color: #ffcc66; font-weight: bold; }
QPushButton#liveButton { font-size: 12pt; font-weight: bold; background: #1f5f3a;
                         border: 1px solid #2e8b57; border-radius: 4px; }
QPushButton#liveButton[live="true"] { background: #7a2b2b; border-color: #b34040; }
QPushButton#liveButton:disabled { background: #2b2f33; color: #777; }
QPushButton#recordButton { font-weight: bold; background: #3a2b2b; border: 1px solid #8b3a3a;
                           border-radius: 4px; }
QPushButton#recordButton[recording="true"] { background: #c62828; color: white; }
QFrame#banner { border-radius: 4px; }
QFrame#banner[level="error"] { background: #7f1d1d; border: 1px solid #ef5350; }
QFrame#banner[level="warning"] { background: #6b4f00; border: 1px solid #ffb300; }
QFrame#banner[level="info"] { background: #173a5e; border: 1px solid #42a5f5; }
QFrame#banner QLabel { color: #ffffff; font-size: 11pt; }
QLabel#bannerIcon { font-size: 14pt; font-weight: bold; }
QLabel#status_state[state="running"] { color: #69f0ae; font-weight: bold; }
QLabel#status_state[state="error"] { color: #ff5252; font-weight: bold; }
QStatusBar { background: #1b1e21; }
QStatusBar QLabel { font-family: monospace; }
QPlainTextEdit#summary { font-family: monospace; font-size: 9pt; }
"""


def has_display() -> bool:
    """Whether a Qt window can be shown here (a display server, or a platform such as
    ``offscreen`` that needs none)."""
    from live_deepz.display import display_available

    return display_available()


def ensure_app() -> QApplication:
    """The running :class:`QApplication` (created with the dark theme if there is none)."""
    app = QApplication.instance()
    if app is None:
        _quiet_qt_messages()
        app = QApplication([sys.argv[0] if sys.argv else "live-deepz"])
        app.setApplicationName("live-deepz")
        app.setOrganizationName("live-deepz")
        apply_theme(app)
    assert isinstance(app, QApplication)
    return app


_QUIET = ("propagateSizeHints",)
"""Qt messages that are noise here (the offscreen platform's "does not support ...")."""


def _quiet_qt_messages() -> None:
    def handler(mode: Any, context: Any, message: str) -> None:
        if not any(q in message for q in _QUIET):
            sys.stderr.write(message + "\n")

    qInstallMessageHandler(handler)


def apply_theme(app: QApplication) -> None:
    """Fusion with a dark palette: images read better on a dark surround."""
    app.setStyle("Fusion")
    pal = QPalette()
    dark, base, text = QColor(32, 35, 38), QColor(22, 24, 26), QColor(230, 230, 230)
    roles = {
        QPalette.ColorRole.Window: dark,
        QPalette.ColorRole.WindowText: text,
        QPalette.ColorRole.Base: base,
        QPalette.ColorRole.AlternateBase: dark,
        QPalette.ColorRole.ToolTipBase: QColor(50, 54, 58),
        QPalette.ColorRole.ToolTipText: text,
        QPalette.ColorRole.Text: text,
        QPalette.ColorRole.Button: QColor(45, 49, 53),
        QPalette.ColorRole.ButtonText: text,
        QPalette.ColorRole.BrightText: QColor(255, 80, 80),
        QPalette.ColorRole.Highlight: QColor(42, 130, 218),
        QPalette.ColorRole.HighlightedText: QColor(255, 255, 255),
        QPalette.ColorRole.PlaceholderText: QColor(130, 136, 142),
    }
    for role, color in roles.items():
        pal.setColor(role, color)
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(120, 120, 120))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(120, 120, 120))
    app.setPalette(pal)
    app.setStyleSheet(STYLE)


SWITCH_INTERVAL_S = 0.001
"""The interpreter's thread switch interval in the app (Python's default is 5 ms)."""


def tune_for_latency() -> None:
    """Let the UI thread get the GIL back within ~1 ms (instead of 5 ms) when the camera,
    recorder or display-worker threads run Python code; measured with
    ``benchmarks/bench_ui.py`` (the engine's compute releases the GIL and is unaffected)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def freeze_gc() -> None:
    """Collect once, then move every object alive now out of the garbage collector's reach.

    The models, Qt/pyqtgraph objects and the simulator built at start-up are hundreds of
    thousands of long-lived objects; without this, each full collection walks them all and
    stalls every Python thread (the UI included) for 50-400 ms. Called once the session is
    open; later garbage is collected as usual.
    """
    gc.collect()
    gc.freeze()


def wait_for(cond: Any, timeout_s: float, poll_ms: int = 20) -> bool:
    """Run the Qt event loop until ``cond()`` is true or ``timeout_s`` passed.

    A real :class:`QEventLoop` (not a ``processEvents`` polling loop), so timers, redraws
    and the latency probe behave exactly as under ``app.exec()``.
    """
    if cond():
        return True
    loop = QEventLoop()
    timer = QElapsedTimer()
    timer.start()
    poll = QTimer()
    poll.setInterval(poll_ms)

    def check() -> None:
        if cond() or timer.elapsed() >= timeout_s * 1000:
            loop.quit()

    poll.timeout.connect(check)
    poll.start()
    loop.exec()
    poll.stop()
    return bool(cond())


@dataclass
class AppOptions:
    """How to run the window (besides what to open, a :class:`SessionConfig`)."""

    screenshot: str | None = None
    """Save a screenshot of the whole window here after ``seconds`` of streaming, then exit."""
    seconds: float | None = None
    """Stream this long, then exit (with ``screenshot``: then take it)."""
    settings_path: str | None = None
    """An INI file for the settings instead of the user's (tests, screenshots)."""
    size: tuple[int, int] = (1600, 1000)
    startup_timeout_s: float = 120.0


def apply_settings(config: SessionConfig, settings: Settings | None) -> None:
    """Fill what ``config`` leaves open (``planes=""``, ``depth_um=None``, ``backend=""``,
    ``precision=""``) from the settings, else from the defaults."""
    from ._session import DEFAULT_PLANES

    st = settings
    if not config.planes:
        config.planes = (st.planes if st is not None else "") or DEFAULT_PLANES
    if config.depth_um is None:
        config.depth_um = st.depth_um if st is not None else 0.0
    if not config.backend:
        config.backend = st.backend if st is not None else "auto"
    if not config.precision:
        config.precision = st.precision if st is not None else "auto"


def run_app(config: SessionConfig, options: AppOptions | None = None) -> int:
    """Open the window on ``config``; returns the exit status.

    Interactive: runs until the window is closed. With ``options.screenshot``: waits for the
    session to start, lets frames flow for ``options.seconds``, makes sure the plane views
    got a frame, saves ``window.grab()`` and exits (0 on success).
    """
    options = options or AppOptions()
    app = ensure_app()
    tune_for_latency()
    headless = options.screenshot is not None
    if headless and options.settings_path is None:
        settings = None  # a screenshot shows the defaults, and never changes the user's
    else:
        settings = Settings(options.settings_path)
    apply_settings(config, settings)
    win = MainWindow(settings=settings)
    win.resize(*options.size)
    win.show()
    win.session.opened.connect(freeze_gc)
    win.open(config)
    if options.screenshot is None and options.seconds is None:
        code = app.exec()
        win.shutdown()
        return int(code)
    try:
        return _timed_run(app, win, options)
    finally:
        win.close()
        win.deleteLater()
        app.processEvents()


def _timed_run(app: QApplication, win: MainWindow, options: AppOptions) -> int:
    s = win.session
    ok = wait_for(
        lambda: s.state == "running" or s.state == "error" or _failed(win),
        options.startup_timeout_s,
    )
    if not ok or _failed(win) or s.state == "error":
        print(f"live-deepz: the session did not start:\n{win.messages.text()}", file=sys.stderr)
        return 1
    win.probe.reset()
    st0 = s.pipeline.stats() if s.pipeline is not None else None
    t0 = time.perf_counter()
    wait_for(lambda: False, options.seconds or 0.0)
    st1 = s.pipeline.stats() if s.pipeline is not None else None
    window_s = time.perf_counter() - t0
    # a slow CPU engine may not have finished its first frame yet: give it time
    if not wait_for(lambda: win.grid.frames_shown > 0 and win.mip.frames_shown > 0, 60.0):
        print("live-deepz: warning: no refocused planes were displayed yet", file=sys.stderr)
    if options.screenshot is None:
        return 0
    wait_for(lambda: False, 0.2)  # one more redraw of everything
    path = Path(options.screenshot).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not win.grab().save(str(path)):
        print(f"live-deepz: could not write the screenshot {path}", file=sys.stderr)
        return 1
    loop = win.probe.stats()
    print("regions " + json.dumps(window_regions(win)))
    # processed frames per second over the whole --seconds window (not the last 2 s)
    fps = "? fps"
    if st0 is not None and st1 is not None and window_s > 0:
        n = st1.frames_processed - st0.frames_processed
        fps = f"{n / window_s:.1f} fps ({n} frames in {window_s:.0f} s)"
    print(
        f"screenshot: {path} ({win.width()}×{win.height()}); processed {fps}; UI loop "
        f"lateness p50 {loop.p50_ms:.1f} ms, p99 {loop.p99_ms:.1f} ms"
    )
    return 0


def window_regions(win: MainWindow) -> dict[str, list[int]]:
    """``name -> [x, y, w, h]`` of the main views in window pixels (screenshot checks)."""
    out = {}
    for name, w in (
        ("raw", win.raw_view.canvas),
        ("grid", win.grid.canvas),
        ("single", win.single.canvas),
        ("mip", win.mip.canvas),
        ("status", win.status),
        ("messages", win.messages),
    ):
        if w.isVisible():
            tl = w.mapTo(win, w.rect().topLeft())
            out[name] = [tl.x(), tl.y(), w.width(), w.height()]
    return out


def _failed(win: MainWindow) -> bool:
    return win.messages.has("startup-error")
