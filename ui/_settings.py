"""Persistent settings: last model, plane plan, depth, window layout, record folder.

Stored with :class:`QSettings` under ``("live-deepz", "live-deepz")`` (the platform's
usual place); tests and the screenshot mode pass an explicit INI file path instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from qtpy.QtCore import QByteArray, QSettings

__all__ = ["ORGANIZATION", "Settings"]

ORGANIZATION = "live-deepz"
APPLICATION = "live-deepz"


class Settings:
    """Typed access to the app's :class:`QSettings`.

    Parameters
    ----------
    path : an INI file to use instead of the user's settings (tests, screenshots).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            self._q = QSettings(ORGANIZATION, APPLICATION)
        else:
            self._q = QSettings(str(Path(path)), QSettings.Format.IniFormat)
        self.path = path

    # -- generic
    def _get(self, key: str, default: Any = None) -> Any:
        v = self._q.value(key)
        return default if v is None else v

    def _str(self, key: str, default: str = "") -> str:
        v = self._get(key, default)
        return str(v) if v is not None else default

    def _float(self, key: str, default: float) -> float:
        try:
            return float(self._get(key, default))
        except (TypeError, ValueError):
            return default

    def _set(self, key: str, value: Any) -> None:
        self._q.setValue(key, value)

    def sync(self) -> None:
        self._q.sync()

    def clear(self) -> None:
        self._q.clear()

    # -- model and planes
    @property
    def model(self) -> str:
        """Path (or name) of the last model used; ``""`` for none."""
        return self._str("model/path")

    @model.setter
    def model(self, value: str) -> None:
        self._set("model/path", str(value))

    @property
    def planes(self) -> str:
        """The plane plan of the grid, as typed (``"-10:10:2"``)."""
        return self._str("plan/planes")

    @planes.setter
    def planes(self, value: str) -> None:
        self._set("plan/planes", str(value))

    @property
    def depth_um(self) -> float:
        """The depth slider's plane (µm)."""
        return self._float("plan/depth_um", 0.0)

    @depth_um.setter
    def depth_um(self, value: float) -> None:
        self._set("plan/depth_um", float(value))

    @property
    def backend(self) -> str:
        return self._str("engine/backend", "auto") or "auto"

    @backend.setter
    def backend(self, value: str) -> None:
        self._set("engine/backend", str(value))

    @property
    def precision(self) -> str:
        return self._str("engine/precision", "auto") or "auto"

    @precision.setter
    def precision(self, value: str) -> None:
        self._set("engine/precision", str(value))

    # -- recording
    @property
    def record_folder(self) -> str:
        return self._str("record/folder")

    @record_folder.setter
    def record_folder(self, value: str) -> None:
        self._set("record/folder", str(value))

    @property
    def record_format(self) -> str:
        v = self._str("record/format", "tiff")
        return v if v in ("tiff", "zarr") else "tiff"

    @record_format.setter
    def record_format(self, value: str) -> None:
        self._set("record/format", str(value))

    # -- display
    def colormap(self, view: str, default: str) -> str:
        return self._str(f"view/{view}/colormap", default) or default

    def set_colormap(self, view: str, name: str) -> None:
        self._set(f"view/{view}/colormap", name)

    # -- layout
    @property
    def geometry(self) -> QByteArray | None:
        v = self._get("layout/geometry")
        return v if isinstance(v, QByteArray) else None

    @geometry.setter
    def geometry(self, value: QByteArray) -> None:
        self._set("layout/geometry", value)

    @property
    def window_state(self) -> QByteArray | None:
        """``QMainWindow.saveState()``: which docks are where."""
        v = self._get("layout/state")
        return v if isinstance(v, QByteArray) else None

    @window_state.setter
    def window_state(self, value: QByteArray) -> None:
        self._set("layout/state", value)
