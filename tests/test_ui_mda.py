"""The MDA panel (pymmcore-widgets' MDAWidget + live Deep-Z planes), offscreen, on the sim."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import useq

pytest.importorskip("pymmcore_widgets")
pytestmark = [pytest.mark.qt, pytest.mark.slow, pytest.mark.timeout(120)]

from _recording_support import FakeBackend  # noqa: E402

from live_deepz.microscope import NoiseFrameSource, open_core  # noqa: E402
from live_deepz.recording import open_recording  # noqa: E402


@pytest.fixture
def panel(qtbot: Any) -> Any:
    from live_deepz.ui._mda_widget import MDAPanel

    core = open_core("sim", scene=NoiseFrameSource((48, 64), seed=2), exposure_ms=2.0)
    p = MDAPanel(core, FakeBackend(), dpm_scale_um=10.0, model_name="stand-in", planes="-2:2:2")
    qtbot.addWidget(p)
    p.resize(1200, 700)
    p.show()
    yield p
    p.shutdown()


def test_panel_shows_planes_after_an_mda_starts(panel: Any, qtbot: Any, tmp_path: Path) -> None:
    seq = useq.MDASequence(
        stage_positions=[(0, 0, 0), (30, 0, 0)],
        channels=["pattern", "bright pattern"],
        time_plan={"interval": 0.1, "loops": 4},
        axis_order="tpcz",
    )
    out = tmp_path / "panel.ome.zarr"
    panel.run(seq, output=out)
    qtbot.waitUntil(lambda: panel.frames_shown > 0, timeout=30000)
    assert len(panel.grid.tiles) == 3  # one tile per virtual plane
    assert "position" in panel.view_title.text()
    qtbot.waitUntil(lambda: not panel.core.mda.is_running(), timeout=30000)
    qtbot.waitUntil(lambda: not panel.processor.running, timeout=30000)
    summary = panel.processor.wait(1)
    qtbot.waitUntil(lambda: "done" in panel.status.text(), timeout=5000)
    assert "16/16 frames" in panel.status.text()
    with open_recording(out) as rec:
        assert rec.planes.shape == (2, 4, 2, 3, 48, 64) and rec.complete.all()
        assert rec.metadata["metadata"]["source"] == "live-deepz MDA panel"
    assert summary.incomplete == 0
    # the position filter: only position 1's frames are drawn
    panel.position_combo.setCurrentIndex(panel.position_combo.findData(1))
    assert panel.position_combo.count() == 3


def test_panel_planes_edit_applies_to_next_run(panel: Any) -> None:
    panel.planes_edit.setText("-1,0,1,2")
    panel.planes_edit.editingFinished.emit()
    assert len(panel.grid.tiles) == 4
    np.testing.assert_array_equal(panel.processor_offsets(), [-1, 0, 1, 2])
    panel.planes_edit.setText("nonsense")
    panel.planes_edit.editingFinished.emit()
    assert "planes" in panel.status.text()


def test_main_window_docks_the_mda_panel(qtbot: Any, tmp_path: Path) -> None:
    from _ui_support import open_window, save_tiny_model

    win = open_window(qtbot, save_tiny_model(tmp_path), autostart=False)
    panel = win.open_mda_panel()
    assert panel is not None and "mda" in win.docks and win.open_mda_panel() is panel
    assert "tiny" in panel.model_label.text() and panel.drift_box.isEnabled()
    assert len(panel.grid.tiles) == 5  # the session's planes, -4:4:2
    seq = useq.MDASequence(time_plan={"interval": 0.05, "loops": 3})
    panel.run(seq, output=tmp_path / "win.ome.tiff")
    qtbot.waitUntil(lambda: panel.frames_shown > 0, timeout=60000)
    qtbot.waitUntil(lambda: not panel.processor.running, timeout=60000)
    with open_recording(tmp_path / "win.ome.tiff") as rec:
        assert rec.complete.all() and rec.planes.shape[:4] == (1, 3, 1, 5)
        assert rec.metadata["metadata"]["model"]["name"] == "tiny"
