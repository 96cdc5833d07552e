"""The status bar (rates, drops, latency, backend) and the message bar (errors in plain words).

The status bar shows :meth:`LivePipeline.stats` — the same numbers the CLI and the
benchmarks report — plus the display rate and the UI event loop's latency. The message bar
shows one banner per topic (startup, model, mismatch, live, recording, disk …): an error
stays until it is resolved or dismissed, never only in a terminal.
"""

from __future__ import annotations

import collections
import math
import time
from typing import Any, ClassVar

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QStatusBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

__all__ = ["MessageBar", "StatusBar"]

_ICONS = {"info": "ℹ", "warning": "⚠", "error": "✖"}


class _Banner(QFrame):
    closed = Signal(str)

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.setObjectName("banner")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        lay.setSpacing(8)
        self.icon = QLabel("")
        self.icon.setObjectName("bannerIcon")
        lay.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.text, 1)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)  # indeterminate
        self.busy.setMaximumWidth(120)
        self.busy.setMaximumHeight(12)
        self.busy.setTextVisible(False)
        lay.addWidget(self.busy)
        self.action = QPushButton("")
        self.action.setVisible(False)
        lay.addWidget(self.action)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setToolTip("dismiss")
        self.close_button.setAutoRaise(True)
        self.close_button.clicked.connect(lambda: self.closed.emit(self.key))
        lay.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.level = ""

    def set(self, level: str, text: str, busy: bool) -> None:
        self.level = level
        self.setProperty("level", level)
        self.icon.setText(_ICONS.get(level, ""))
        self.text.setText(text)
        self.busy.setVisible(busy)
        self.close_button.setVisible(not busy)
        self.style().unpolish(self)
        self.style().polish(self)


class MessageBar(QWidget):
    """Banners keyed by topic: ``show(key, level, text)``; ``text == ""`` removes ``key``."""

    ORDER: ClassVar[dict[str, int]] = {"error": 0, "warning": 1, "info": 2}

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._lay = QVBoxLayout(self)
        self._lay.setContentsMargins(0, 0, 0, 0)
        self._lay.setSpacing(2)
        self.banners: dict[str, _Banner] = {}
        self._actions: dict[str, Any] = {}
        self.setVisible(False)

    def show_message(
        self,
        key: str,
        level: str,
        text: str,
        busy: bool = False,
        action: tuple[str, Any] | None = None,
    ) -> None:
        if not text:
            self.clear(key)
            return
        b = self.banners.get(key)
        if b is None:
            b = _Banner(key)
            b.closed.connect(self.clear)
            self.banners[key] = b
        b.set(level, text, busy)
        if key in self._actions:
            b.action.clicked.disconnect()
            del self._actions[key]
        if action is not None:
            label, fn = action
            b.action.setText(label)
            b.action.clicked.connect(fn)
            self._actions[key] = fn
        b.action.setVisible(action is not None)
        self._relayout()

    def clear(self, key: str) -> None:
        b = self.banners.pop(key, None)
        self._actions.pop(key, None)
        if b is not None:
            self._lay.removeWidget(b)
            b.deleteLater()
        self._relayout()

    def _relayout(self) -> None:
        items = sorted(self.banners.values(), key=lambda b: self.ORDER.get(b.level, 3))
        for b in items:
            self._lay.removeWidget(b)
        for b in items:
            self._lay.addWidget(b)
        self.setVisible(bool(items))

    def text(self) -> str:
        """All messages shown, one per line (for tests and logs)."""
        return "\n".join(f"{b.level}: {b.text.text()}" for b in self.banners.values())

    def has(self, key: str) -> bool:
        return key in self.banners


def _num(v: float, fmt: str = "{:.1f}") -> str:
    return fmt.format(v) if isinstance(v, int | float) and math.isfinite(v) else "–"


class StatusBar(QStatusBar):
    """Camera fps, processed fps, drops, latency p50/p99, display fps, UI loop, backend."""

    FIELDS = ("state", "camera", "processed", "drops", "latency", "display", "loop", "backend")
    RATE_WINDOW_S = 10.0

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizeGripEnabled(False)
        self.labels: dict[str, QLabel] = {}
        tips = {
            "state": "live pipeline state",
            "camera": "frames per second arriving from the camera",
            "processed": "frames per second refocused by the engine (all planes of a frame), "
            "over the last 10 s",
            "drops": "camera: frames the camera numbered but never delivered; engine: frames "
            "skipped because a newer one was waiting (live mode shows the freshest)",
            "latency": "camera frame arrival → planes ready, median / 99th percentile",
            "display": "frames per second drawn in the plane views",
            "loop": "UI event-loop lateness (99th percentile): the window's responsiveness",
            "backend": "inference backend · precision · device",
        }
        self._hist: collections.deque[tuple[float, int, float]] = collections.deque(maxlen=64)
        for name in self.FIELDS:
            lab = QLabel("–")
            lab.setObjectName(f"status_{name}")
            lab.setToolTip(tips[name])
            lab.setContentsMargins(6, 0, 6, 0)
            self.labels[name] = lab
            if name == "backend":
                self.addPermanentWidget(lab)
            else:
                self.addWidget(lab)

    def show_stats(
        self,
        stats: Any,
        display_fps: float = math.nan,
        loop_p99_ms: float = math.nan,
        backend: str = "",
        state: str | None = None,
    ) -> None:
        """Update from a :class:`~live_deepz.engine.PipelineStats` snapshot (or ``None``)."""
        L = self.labels
        st = state or (stats.state if stats is not None else "loading")
        marker = {"running": "● LIVE", "error": "✖ ERROR", "stopping": "… stopping"}.get(
            st, "○ " + st
        )
        L["state"].setText(marker)
        L["state"].setProperty("state", st)
        L["state"].style().unpolish(L["state"])
        L["state"].style().polish(L["state"])
        if stats is not None:
            cam = stats.camera_fps if math.isfinite(stats.camera_fps) else stats.fps_in
            L["camera"].setText(f"camera {_num(cam)} fps")
            L["processed"].setText(f"processed {_num(self._processed_rate(stats))} fps")
            L["drops"].setText(
                f"drops camera {stats.dropped_camera} · engine {stats.dropped_engine}"
            )
            L["latency"].setText(
                f"latency {_num(stats.latency_p50_ms, '{:.0f}')} / "
                f"{_num(stats.latency_p99_ms, '{:.0f}')} ms"
            )
        L["display"].setText(f"display {_num(display_fps)} fps")
        L["loop"].setText(f"UI loop p99 {_num(loop_p99_ms)} ms")
        L["backend"].setText(backend or "–")

    def _processed_rate(self, stats: Any) -> float:
        """Frames refocused per second over the last ~10 s: steadier than the pipeline's
        2 s window when a CPU engine makes one frame every few seconds."""
        now = time.perf_counter()
        h = self._hist
        if h and (stats.frames_processed < h[-1][1] or stats.elapsed_s < h[-1][2]):
            h.clear()  # a new run
        h.append((now, int(stats.frames_processed), float(stats.elapsed_s)))
        while len(h) > 2 and now - h[0][0] > self.RATE_WINDOW_S:
            h.popleft()
        t0, n0, _ = h[0]
        if now - t0 < 1.0 or stats.state != "running":
            return float(stats.fps_out)
        return (stats.frames_processed - n0) / (now - t0)

    def text(self) -> str:
        return " | ".join(lab.text() for lab in self.labels.values())
