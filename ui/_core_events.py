"""The core's events re-emitted as Qt signals on the UI thread."""

from __future__ import annotations

import contextlib
from typing import Any

from qtpy.QtCore import QCoreApplication, QObject, Signal

__all__ = ["CoreEvents", "adopt_core_events"]


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


def adopt_core_events(core: Any) -> None:
    """Move Qt-based core signalers created on a worker thread to the UI thread."""
    app = QCoreApplication.instance()
    if app is None:
        return
    for obj in (getattr(core, "events", None), getattr(getattr(core, "mda", None), "events", None)):
        if isinstance(obj, QObject) and obj.thread() is not app.thread():
            obj.moveToThread(app.thread())
