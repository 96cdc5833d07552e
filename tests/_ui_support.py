"""Helpers for the Qt tests: a tiny model, a small simulated microscope, an open window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

try:  # skip the Qt tests cleanly where qtpy finds no binding
    import qtpy  # noqa: F401
    from qtpy.QtWidgets import QApplication  # noqa: F401
except Exception as exc:  # qtpy raises its own error types when no binding is installed
    pytest.skip(f"no Qt binding: {exc}", allow_module_level=True)

SIZE = 128
PLANES = "-4:4:2"


def save_tiny_model(folder: Path, name: str = "tiny", pixel_size_um: float | None = None) -> Path:
    """A width-0.125 generator (random weights) saved as a model folder."""
    import torch

    from live_deepz.modelfile import ModelCard, save_model
    from live_deepz.network import DeepZConfig, DeepZGenerator
    from live_deepz.optics import Optics

    torch.manual_seed(0)
    gen = DeepZGenerator(DeepZConfig(width=0.125))
    optics = Optics() if pixel_size_um is None else Optics(pixel_size_um=pixel_size_um)
    card = ModelCard.for_generator(name, gen, optics, (-10.0, 10.0))
    return save_model(folder / name, gen, card)


def noise_core(exposure_ms: float = 20.0) -> Any:
    from live_deepz.microscope import NoiseFrameSource, open_core

    return open_core("sim", scene=NoiseFrameSource((SIZE, SIZE)), exposure_ms=exposure_ms)


_OPEN: list[Any] = []
"""Windows opened by :func:`open_window`, closed by the ``close_windows`` fixture (pytest-qt
only keeps a weak reference; a window collected without ``close()`` would leave its camera
and engine threads running)."""


@pytest.fixture(autouse=True)
def close_windows() -> Any:
    yield
    while _OPEN:
        win = _OPEN.pop()
        try:  # normally pytest-qt closed it already (it held only a weak reference)
            win.close()
            win.deleteLater()
        except RuntimeError:  # "Internal C++ object already deleted"
            pass


def open_window(
    qtbot: Any,
    model: Path,
    core: Any = None,
    planes: str = PLANES,
    settings: Any = None,
    autostart: bool = True,
    track: bool = True,
) -> Any:
    """A shown MainWindow whose session is opened (and live, with ``autostart``)."""
    from live_deepz.ui import MainWindow, SessionConfig

    core = core if core is not None else noise_core()
    win = MainWindow(settings=settings)
    if track:  # closed after the test (a test that closes it itself passes track=False)
        qtbot.addWidget(win)
        _OPEN.append(win)
    win.resize(1600, 1000)
    win.show()
    win.open(SessionConfig(source=core, model=str(model), planes=planes, autostart=autostart))
    qtbot.waitUntil(lambda: win.session.ready, timeout=60_000)
    if autostart:
        qtbot.waitUntil(lambda: win.session.state in ("running", "error"), timeout=30_000)
    return win
