"""Whether a window can open here, decided without importing Qt (CLI and ui both ask)."""

from __future__ import annotations

import os
import sys

__all__ = ["NEEDS_SERVER", "display_available"]

NEEDS_SERVER = ("", "xcb", "wayland", "wayland-egl")
"""Qt platforms that need a display server (an X11 DISPLAY or a Wayland socket)."""


def display_available() -> bool:
    """Whether a Qt window can open here (without importing Qt)."""
    if sys.platform in ("win32", "darwin"):
        return True
    platform = os.environ.get("QT_QPA_PLATFORM", "").strip().split(":")[0].lower()
    if platform not in NEEDS_SERVER:
        return True  # offscreen, vnc, eglfs, linuxfb, ...: no display server needed
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
