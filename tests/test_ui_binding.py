"""The Qt binding keeps Python's reference counts straight (PySide6 6.12.0 on Python < 3.12
does not: every void call drops a reference to None and the app aborts after a while)."""

from __future__ import annotations

import sys

import pytest
from _ui_support import SIZE  # noqa: F401  (skips the module without a Qt binding)

pytestmark = pytest.mark.qt


def test_void_calls_keep_the_refcount_of_none(qtbot: object) -> None:
    from qtpy.QtWidgets import QLabel

    label = QLabel("x")
    before = sys.getrefcount(None)
    for _ in range(200):
        label.setText("y")  # returns void
        label.update()
    lost = before - sys.getrefcount(None)
    label.deleteLater()
    assert lost < 50, (
        f"the Qt binding dropped {lost} references to None in 400 void calls: this "
        "PySide6 build is broken on this Python (PySide6 6.12.0 on Python < 3.12); install "
        "'PySide6-Essentials<6.12' (pip install -e '.[ui]' does)"
    )
