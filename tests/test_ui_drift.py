"""Drift compensation in the live window (offscreen, 128² simulated beads, a tiny model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _ui_support import (  # noqa: F401  (close_windows: an autouse fixture)
    SIZE,
    close_windows,
    open_window,
    save_tiny_model,
)

from live_deepz.calibration import DriftCompensationPlan, DriftEstimator, drift_every_n
from live_deepz.dpm import StaticPlanePlan

pytestmark = [pytest.mark.qt, pytest.mark.timeout(180)]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: two OpenMP threads per op are erratic
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models"))


def test_drift_toggle_on_the_sim(qtbot: Any, model_path: Path) -> None:
    from live_deepz.microscope import open_core

    core = open_core("sim", sample="beads", size=SIZE)
    win = open_window(qtbot, model_path, core=core, planes="-4:4:2")
    s, panel, toggle = win.session, win.drift, win.calibration_controls.drift
    qtbot.waitUntil(lambda: win.grid.frames_shown > 0, timeout=60_000)
    assert isinstance(s.pipeline.plan, StaticPlanePlan) and panel.note.isVisibleTo(panel)
    assert toggle.isEnabled() and win.drift_action.isEnabled()

    with qtbot.waitSignal(s.driftChanged, timeout=60_000) as blocker:
        toggle.setChecked(True)
    assert blocker.args == [True]
    plan = s.pipeline.plan
    assert isinstance(plan, DriftCompensationPlan) and plan is s.drift_plan
    assert win.drift_action.isChecked()
    np.testing.assert_allclose(plan.offsets_um, [-4, -2, 0, 2, 4])
    est = plan.estimator
    assert est.every_n >= 5  # CPU: at most one frame in 5 carries a sweep
    assert plan.describe()["estimator"]["every_n"] == est.every_n
    # the trace reaches the panel; the corrected feed shows the plan's offset-0 plane
    qtbot.waitUntil(lambda: panel.n_trace_points >= 2, timeout=60_000)
    assert len(plan.trace()["t_ms"]) >= 2
    assert panel.status.isVisibleTo(panel) and "estimates" in panel.status.text()
    qtbot.waitUntil(lambda: panel.frames_shown > 0, timeout=30_000)
    assert "drift-corrected" in panel.feed.overlay.textItem.toPlainText()
    qtbot.waitUntil(
        lambda: win.last_planes is not None and win.last_planes.plan.get("type") == "drift",
        timeout=30_000,
    )
    assert len(win.grid.tiles) == 5  # the grid keeps its planes, now around the focus

    # moving the focus by hand restarts the tracking
    resets: list[int] = []
    orig = plan.reset
    plan.reset = lambda: (resets.append(1), orig())  # type: ignore[method-assign]
    win.scope_controls.z_spin.setValue(3.0)
    qtbot.waitUntil(lambda: bool(resets), timeout=5_000)

    # new planes: still a drift plan, continuing from the current correction
    corr = plan.correction_um()
    assert s.set_planes("-2:2:2") == ""
    plan2 = s.pipeline.plan
    assert isinstance(plan2, DriftCompensationPlan) and plan2 is not plan
    assert plan2.estimator is est and s.drift_plan is plan2
    assert plan2.correction_um() == pytest.approx(corr, abs=0.02)
    np.testing.assert_allclose(plan2.offsets_um, [-2, 0, 2])

    # off: the static plan again, the panel says so
    with qtbot.waitSignal(s.driftChanged, timeout=10_000) as blocker:
        toggle.setChecked(False)
    assert blocker.args == [False]
    assert isinstance(s.pipeline.plan, StaticPlanePlan) and s.drift_plan is None
    np.testing.assert_allclose(s.pipeline.plan.offsets_um, [-2, 0, 2])
    assert panel.plan is None and panel.note.isVisibleTo(panel)
    assert not win.drift_action.isChecked()
    qtbot.waitUntil(lambda: s.state == "running", timeout=10_000)


def test_drift_every_n_budget() -> None:
    est = DriftEstimator(lambda img, d: np.repeat(img[None], len(d), 0), z_range_um=(-10, 10))
    # 30 sweep planes of a 128² crop vs 12 planes of 512²: ~16 % -> the CPU minimum, 5
    assert drift_every_n(est, (512, 512), 12, "cpu") == 5
    assert drift_every_n(est, (512, 512), 12, "cuda:0") == 1
    # a 128² frame with 5 planes: the 64² crop sweep costs 1.5 frames -> rarely
    assert drift_every_n(est, (128, 128), 5, "cpu") == 15
    assert drift_every_n(est, (64, 64), 1, "cpu") == 100  # capped


def test_drift_track_choice_reaches_the_plan(qtbot: Any, model_path: Path) -> None:
    """'plane in view' builds a keyframe-matching plan that holds the initial plane; the
    choice is locked while compensation is on."""
    from live_deepz.calibration import MatchDriftEstimator
    from live_deepz.microscope import open_core

    core = open_core("sim", sample="beads", size=SIZE)
    win = open_window(qtbot, model_path, core=core, planes="-2:2:2")
    s, controls = win.session, win.calibration_controls
    qtbot.waitUntil(lambda: win.grid.frames_shown > 0, timeout=60_000)
    assert s.drift_track == "focus" and controls.drift_track.isEnabled()
    controls.drift_track.setCurrentIndex(controls.drift_track.findData("keyframe"))
    assert s.drift_track == "keyframe"
    with qtbot.waitSignal(s.driftChanged, timeout=60_000):
        controls.drift.setChecked(True)
    plan = s.drift_plan
    assert isinstance(plan.estimator, MatchDriftEstimator) and plan.hold == "initial"
    assert not controls.drift_track.isEnabled()
    qtbot.waitUntil(lambda: "change since the start" in controls.drift_status.text(), timeout=5_000)
    with qtbot.waitSignal(s.driftChanged, timeout=10_000):
        controls.drift.setChecked(False)
    assert controls.drift_track.isEnabled()
