"""The live planes and plan composition without Qt (engine.LivePlans, engine.live setup
helpers, calibration's continue_drift_plan / live_surface_calibration)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from live_deepz.dpm import StaticPlanePlan
from live_deepz.engine import (
    LivePlans,
    SurfaceCalibration,
    clip_to_range,
    is_drift_plan,
    live_error_text,
    model_notices,
    plain_error,
    stop_timeout_s,
)
from live_deepz.errors import CameraError, InputError


class _DriftPlan:
    """What LivePlans needs of a drift plan: offsets, trace/update, an estimator."""

    def __init__(self, offsets: Any, correction: float = 0.0) -> None:
        self.offsets_um = np.asarray(offsets, dtype=float)
        self.estimator = object()
        self._corr = correction

    def trace(self) -> dict[str, Any]:
        return {}

    def update(self, *a: Any) -> None:
        pass

    def correction_um(self) -> float:
        return self._corr


def test_plan_offsets_are_grid_and_depth_and_flat_plan_by_default() -> None:
    plans = LivePlans("-4:4:2", depth_um=1.0)
    np.testing.assert_allclose(plans.plan_offsets(), [-4, -2, 0, 2, 4, 1])  # grid, depth
    np.testing.assert_allclose(LivePlans("1,2", 3.0).drift_offsets(), [1, 2, 3, 0])
    plan = plans.current_plan()
    assert isinstance(plan, StaticPlanePlan) and plan.surface_um is None
    np.testing.assert_allclose(plan.offsets_um, [-4, -2, 0, 2, 4, 1])


def test_surface_calibration_is_applied_unless_drift_is_on() -> None:
    plans = LivePlans("-2:2:2", depth_um=0.0)
    surface = np.full((8, 8), 0.5, np.float32)
    plans.calibration = SurfaceCalibration(surface, None, "plane")
    plan = plans.current_plan()
    assert isinstance(plan, StaticPlanePlan)
    np.testing.assert_allclose(plan.dpms_for_frame(0, 0.0, (8, 8))[0], -2 + 0.5)
    assert plans.surface_note() == ""
    plans.drift_enabled = True  # its plan is not ready: still the surface plan
    assert "applies when drift compensation is off" in plans.surface_note()
    dp = _DriftPlan(plans.drift_offsets())
    plans.drift_plan = dp
    assert plans.current_plan() is dp


def test_new_offsets_continue_the_drift_plan_through_the_given_builder() -> None:
    plans = LivePlans("-2:2:2")
    calls: list[tuple[Any, np.ndarray]] = []
    plans.continue_drift = lambda old, offs: calls.append((old, offs)) or _DriftPlan(offs)
    dp = _DriftPlan(plans.drift_offsets(), correction=1.5)
    plans.drift_enabled, plans.drift_plan = True, dp
    plans.set_grid(np.array([-4.0, 4.0]), "-4,4")
    new = plans.current_plan()
    assert calls and calls[0][0] is dp and new is not dp
    np.testing.assert_allclose(new.offsets_um, [-4, 4, 0])
    assert plans.adopt_plan(new) is dp and plans.drift_plan is new  # old one to close
    assert plans.adopt_plan(new) is None
    assert plans.adopt_plan(StaticPlanePlan([0.0])) is new and plans.drift_plan is None
    plans.drift_plan = None
    plans.continue_drift = None
    plans.drift_plan = dp
    with pytest.raises(InputError, match="no plan builder"):
        plans.current_plan()


def test_a_refused_change_puts_the_old_planes_back() -> None:
    plans = LivePlans("-2:2:2", depth_um=1.0)
    with pytest.raises(RuntimeError), plans.change():
        plans.set_grid(np.array([5.0]), "5")
        plans.depth_um = 3.0
        plans.calibration = SurfaceCalibration(np.zeros((2, 2)), None, "x")
        raise RuntimeError("refused")
    np.testing.assert_allclose(plans.grid_offsets, [-2, 0, 2])
    assert (plans.planes_spec, plans.depth_um, plans.calibration) == ("-2:2:2", 1.0, None)
    with plans.change():
        plans.depth_um = 2.0
    assert plans.depth_um == 2.0


def test_validate_planes_in_plain_words() -> None:
    plans = LivePlans()
    offs, err = plans.validate_planes("-3:3:3", (-10, 10))
    assert err == "" and offs is not None
    np.testing.assert_allclose(offs, [-3, 0, 3])
    assert plans.validate_planes("-20:0:5", (-10, 10))[1].startswith("Planes -20 … +0 µm go")
    assert "Planes" in plans.validate_planes("a:b", (-10, 10))[1]
    assert "too many" in plans.validate_planes("-10:10:0.25", (-10, 10))[1]


def test_clip_to_range_and_adopt_tell_what_was_left_out() -> None:
    grid, depth = clip_to_range(np.array([-20.0, -5.0, 0.0, 5.0]), 12.0, (-10, 10))
    np.testing.assert_allclose(grid, [-5, 0, 5])
    assert depth == 10.0
    assert clip_to_range(np.array([20.0]), 0.0, (-10, 10))[0].tolist() == [0.0]
    assert clip_to_range(np.array([-9.0]), 3.0, (2, 10))[0].tolist() == [2.0]
    plans = LivePlans("-20,-5,0,5")
    assert plans.adopt_clipped(grid, depth) and plans.planes_spec == "-5,0,5"
    assert not plans.adopt_clipped(grid, depth)
    assert is_drift_plan(_DriftPlan([0.0])) and not is_drift_plan(StaticPlanePlan([0.0]))


def test_session_texts() -> None:
    assert "UNTRAINED" in model_notices(True, ["NA"])[0] and model_notices(True, ["NA"])[1] == ""
    assert model_notices(False, []) == ("", "")
    assert model_notices(False, ["NA 0.3 vs 0.8"])[1].startswith("Model mismatch: NA 0.3 vs 0.8.")
    assert plain_error(InputError("bad thing.")) == "bad thing"
    assert plain_error(ValueError("x")) == "ValueError: x"
    assert live_error_text(CameraError("gone"), "gone").startswith("The camera stopped: gone.")
    assert live_error_text(RuntimeError("boom"), "boom").startswith("The refocusing engine")


def test_stop_timeout_follows_the_inference_time() -> None:
    def pipe(ms: float) -> Any:
        return SimpleNamespace(stats=lambda: SimpleNamespace(stage_ms={"infer": ms}))

    assert stop_timeout_s(None) == 30.0
    assert stop_timeout_s(pipe(float("nan"))) == 30.0
    assert stop_timeout_s(pipe(100.0)) == 10.0
    assert stop_timeout_s(pipe(5000.0)) == pytest.approx(22.0)


def test_continue_drift_plan_keeps_estimator_and_correction() -> None:
    from live_deepz.calibration import DriftCompensationPlan, DriftEstimator, continue_drift_plan

    def refocus(image: np.ndarray, dpms: np.ndarray) -> np.ndarray:
        return np.repeat(image[None], len(dpms), axis=0)

    est = DriftEstimator(refocus, z_range_um=(-10.0, 10.0))
    plan = DriftCompensationPlan(est, np.array([-2.0, 0.0, 2.0]), initial_um=0.0)
    new = continue_drift_plan(plan, np.array([-4.0, 0.0, 4.0]), (64, 64), "cpu")
    assert isinstance(new, DriftCompensationPlan) and new.estimator is est
    np.testing.assert_allclose(new.offsets_um, [-4, 0, 4])
    assert new.correction_um() == pytest.approx(plan.correction_um(), abs=1e-6)
    assert est.every_n >= 5  # the CPU budget


def test_keyframe_drift_plan_holds_the_initial_plane_with_a_faster_filter() -> None:
    from live_deepz.calibration import (
        KEYFRAME_ACCEL_UM2_S3,
        MatchDriftEstimator,
        continue_drift_plan,
        drift_compensation_plan,
    )

    def refocus(image: np.ndarray, dpms: np.ndarray) -> np.ndarray:
        return np.repeat(image[None], len(dpms), axis=0)

    refocus.z_range_um = (-10.0, 10.0)  # type: ignore[attr-defined]
    plan = drift_compensation_plan(
        None, "0", (64, 64), refocus_fn=refocus, track="keyframe", warm=False
    )
    assert isinstance(plan.estimator, MatchDriftEstimator) and plan.hold == "initial"
    assert plan.estimator.anchor_um == 0.0 and plan.filter.q == KEYFRAME_ACCEL_UM2_S3
    new = continue_drift_plan(plan, np.array([-2.0, 0.0]), (64, 64), "cpu")
    assert new.hold == "initial" and new.filter.q == KEYFRAME_ACCEL_UM2_S3
    focus = drift_compensation_plan(None, "0", (64, 64), refocus_fn=refocus, warm=False)
    assert focus.hold == "sample" and focus.filter.q == 1.0
    with pytest.raises(InputError, match="unknown drift tracking 'sharp'"):
        drift_compensation_plan(None, "0", (64, 64), refocus_fn=refocus, track="sharp")


def test_live_surface_calibration_checks_the_frame_size() -> None:
    from live_deepz.calibration import live_surface_calibration

    surface = np.full((16, 16), 1.0, np.float32)
    plan = StaticPlanePlan([0.0, 2.0], surface)
    fit = SimpleNamespace(kind="plane", summary=lambda: "fit\nplane: tilt 0.1 µm/px\n")
    wiz: Any = SimpleNamespace(apply_to_plan=lambda offs: plan, surface_fit=fit)
    cal = live_surface_calibration(wiz, np.array([0.0, 2.0]), (16, 16))
    assert isinstance(cal, SurfaceCalibration) and cal.summary == "plane: tilt 0.1 µm/px"
    assert cal.surface_um is plan.surface_um
    with pytest.raises(InputError, match="a 16×16 px surface but the camera's frames are 8×8"):
        live_surface_calibration(wiz, np.array([0.0]), (8, 8))
