"""The x–z section looks like the planes it is cut from (their contrast levels), its level
text is short enough for its header, and Auto gives it levels of its own (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qtpy")


@pytest.fixture(scope="module")
def app() -> object:
    from qtpy.QtWidgets import QApplication

    return QApplication.instance() or QApplication([])


def _section() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    sec = (0.02 + 0.005 * rng.standard_normal((5, 200))).astype(np.float32)  # background
    sec[2, 90:95] = 0.5  # a nucleus
    return sec, np.array([-4.0, -2.0, 0.0, 2.0, 4.0])


def test_section_follows_the_planes_levels_until_auto(app: object) -> None:
    from live_deepz.ui._views import XZSectionView

    view = XZSectionView()
    planes_levels = (-0.015, 0.34)
    sec, z = _section()
    levels = view.wanted_levels(planes_levels)
    assert levels == planes_levels
    view.show_section_data(sec, z, 133.1, levels)
    # background (0.02) sits near the bottom of the planes' levels: dark, as in the planes
    lo, hi = view.levels or (0.0, 1.0)
    assert (0.02 - lo) / (hi - lo) < 0.15 and (0.5 - lo) / (hi - lo) >= 1.0
    text = view.header.info.text()
    assert len(text) <= 40 and "0.34" in text, text  # fits the dock's header
    assert "levels" in view.header.info.toolTip()
    view.auto_contrast()
    assert view.wanted_levels(planes_levels) is None  # its own from the next frame
    view.show_section_data(sec, z, 133.1, (0.0, 0.5))
    assert view.levels == (0.0, 0.5)
    assert view.wanted_levels(planes_levels) == (0.0, 0.5)
