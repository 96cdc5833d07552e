"""Drift compensation: the estimator, the filters and the dynamic plane plan."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from live_deepz.calibration import (
    DriftCompensationPlan,
    DriftEstimator,
    FeedbackPlan,
    KalmanDrift,
    MatchDriftEstimator,
    MedianDrift,
    shifted_correlation,
)
from live_deepz.calibration.testing import GaussianBeamScene, worm_scene
from live_deepz.dpm import PlanePlan
from live_deepz.errors import InputError

FRAME_MS = 1000.0 / 3.6  # the paper's worm video rate


@pytest.fixture
def scene() -> GaussianBeamScene:
    return worm_scene((80, 80), n_neurons=24, seed=0, noise_std=0.02, refocus_noise_std=0.02)


def _focus_reference(scene: GaussianBeamScene, est: DriftEstimator) -> float:
    """Where the undrifted worm is in focus under the estimator's measure (≈ its mean depth)."""
    scene.sample_shift_um = 0.0
    m = est.estimate(scene.input_image())
    assert m.ok
    return m.defocus_um


@pytest.mark.parametrize("d", [-4.0, 2.0, 7.3])
def test_estimator_sign_and_accuracy(scene: GaussianBeamScene, d: float) -> None:
    """A sample drifted d µm deeper is found at +d: the correction DPM is +d."""
    est = DriftEstimator(scene, downsample=1)
    ref = _focus_reference(scene, est)
    scene.sample_shift_um = d
    m = est.estimate(scene.input_image())
    assert m.ok and m.message == ""
    assert m.defocus_um - ref == pytest.approx(d, abs=0.1)
    assert m.z_std_um < 0.2
    assert len(m.offsets_um) == est.n_planes_per_estimate == 21 + 9


def test_estimator_range_and_failures(scene: GaussianBeamScene) -> None:
    est = DriftEstimator(scene, downsample=1)
    assert est.sweep_um == (-10.0, 10.0)  # the default ±12 µm is clipped to the model's range
    scene.sample_shift_um = 13.0
    m = est.estimate(scene.input_image())
    assert not m.ok and math.isnan(m.defocus_um) and "beyond the end of the sweep" in m.message
    scene.sample_shift_um = 10.0
    m = est.estimate(scene.input_image())
    assert m.ok and m.defocus_um == pytest.approx(10.0, abs=0.3)
    blank = GaussianBeamScene(
        (64, 64), 0.325, np.zeros((0, 2)), np.zeros(0), refocus_noise_std=0.01
    )
    m = DriftEstimator(blank, downsample=1).estimate(np.zeros((64, 64), np.float32))
    assert not m.ok and "no focus" in m.message
    with pytest.raises(InputError):
        DriftEstimator(scene, roi="middle")
    with pytest.raises(InputError):
        DriftEstimator(scene, sweep_um=(11.0, 12.0))


def test_reduced_frame_auto_roi_follows_the_sample() -> None:
    pts = np.array([[30.0 + 6 * i, 170.0 + 5 * (i % 3)] for i in range(8)])
    scene = GaussianBeamScene((256, 256), 0.325, pts, np.zeros(len(pts)), amplitude=1.0)
    img = scene.input_image()
    est = DriftEstimator(scene, downsample=4)
    y0, x0, h, w = est.crop_window(img)
    assert (h, w) == (64, 64)
    inside = (pts[:, 0] >= y0) & (pts[:, 0] < y0 + h) & (pts[:, 1] >= x0) & (pts[:, 1] < x0 + w)
    assert inside.sum() >= 6
    assert DriftEstimator(scene, downsample=4, roi="center").crop_window(img) == (96, 96, 64, 64)
    scene.sample_shift_um = 4.0
    m = est.estimate(scene.input_image())  # the oracle finds the crop in its frame
    assert m.ok and m.defocus_um == pytest.approx(4.0, abs=0.1)
    assert abs(m.roi[0] - y0) <= 16 and abs(m.roi[1] - x0) <= 16 and m.roi[2:] == (64, 64)


def _track(scene: GaussianBeamScene, truth: np.ndarray, plan: DriftCompensationPlan) -> np.ndarray:
    errors = []
    for i, d in enumerate(truth):
        scene.sample_shift_um = float(d)
        img = scene.input_image()
        t = i * FRAME_MS
        plan.update(img, i, t)
        dpms = plan.dpms_for_frame(i, t, img.shape)
        errors.append(float(dpms[0, 0, 0]) - d)
    return np.array(errors)


def test_kalman_tracks_sinusoidal_drift(scene: GaussianBeamScene) -> None:
    """The paper's drift: 2-10 µm out of focus; corrected to ≤ 0.5 µm RMS."""
    est = DriftEstimator(scene, downsample=1)
    ref = _focus_reference(scene, est)
    t = np.arange(48) * FRAME_MS / 1000.0
    truth = 6.0 + 4.0 * np.sin(2 * np.pi * t / 10.0)  # 2-10 µm, 10 s period
    plan = DriftCompensationPlan(est, drift_filter=KalmanDrift(), initial_um=0.0)
    err = _track(scene, truth, plan) - ref
    rmse = float(np.sqrt(np.mean(err[2:] ** 2)))
    assert rmse <= 0.5
    assert rmse < 0.15  # in practice
    tr = plan.trace()
    assert len(tr["t_ms"]) == 48 and tr["accepted"].all()
    assert np.all(np.isfinite(tr["filtered_um"]))


def test_kalman_tracks_random_walk_with_outliers(scene: GaussianBeamScene) -> None:
    rng = np.random.default_rng(7)
    truth = np.clip(5.0 + np.cumsum(rng.normal(0, 0.25, 40)), 2.0, 9.5)
    est = DriftEstimator(scene, downsample=1, refine_step_um=0.0)  # coarse sweep only
    ref = _focus_reference(scene, est)
    plan = DriftCompensationPlan(est, drift_filter=KalmanDrift(accel_um2_s3=4.0))
    err = _track(scene, truth, plan) - ref
    assert float(np.sqrt(np.mean(err[2:] ** 2))) <= 0.5


def test_kalman_filter_gates_outliers_and_restarts_after_a_jump() -> None:
    rng = np.random.default_rng(1)
    kf = KalmanDrift(accel_um2_s3=0.5, measurement_std_um=0.3)
    t = np.arange(200) * 100.0
    truth = 3.0 + 0.2 * t / 1000.0  # 0.2 µm/s ramp
    meas = truth + rng.normal(0, 0.3, t.size)
    bad = rng.random(t.size) < 0.05
    meas[bad] += rng.choice([-6.0, 6.0], bad.sum())
    filtered = []
    for ti, zi in zip(t, meas):
        kf.update(ti, zi)
        filtered.append(kf.value(ti))
    f = np.array(filtered)
    assert np.sqrt(np.mean((f[20:] - truth[20:]) ** 2)) < 0.15
    assert kf.n_rejected >= bad[20:].sum() - 1
    assert kf.value(t[-1] + 1000.0) == pytest.approx(truth[-1] + 0.2, abs=0.2)  # extrapolates
    assert kf.value(t[-1] + 60_000.0) == pytest.approx(truth[-1] + 0.4, abs=0.3)  # ≤ 2 s
    for k in range(4):  # the stage moved: a persistent jump re-initialises the filter
        kf.update(t[-1] + 100.0 * (k + 1), 20.0)
    assert kf.value() == pytest.approx(20.0, abs=0.5)
    assert kf.update(0.0, math.nan) is False


def test_median_filter() -> None:
    mf = MedianDrift(window=5, gate_um=1.0)
    assert mf.value() is None
    for z in (2.0, 2.1, 1.9, 2.0, 9.0, 2.05):
        mf.update(0.0, z)
    assert mf.value() == pytest.approx(2.0, abs=0.06)
    assert mf.n_rejected == 1
    for _ in range(3):
        mf.update(0.0, 7.0)
    assert mf.value() == 7.0
    assert mf.describe()["type"] == "median"


def test_plan_protocol_buffers_and_describe(scene: GaussianBeamScene) -> None:
    est = DriftEstimator(scene, target_offset_um=1.0, downsample=1, every_n=3)
    plan = DriftCompensationPlan(est, offsets_um=[-1.0, 0.0, 2.0], drift_filter=MedianDrift(1))
    protocols = (isinstance(plan, PlanePlan), isinstance(plan, FeedbackPlan))
    assert protocols == (True, True)
    d0 = plan.dpms_for_frame(0, 0.0, (80, 80))
    assert d0.shape == (3, 80, 80) and d0.dtype == np.float32 and not d0.flags.writeable
    np.testing.assert_allclose(d0[:, 0, 0], [0.0, 1.0, 3.0])  # initial 0 + target 1 + offsets
    assert plan.dpms_for_frame(0, 0.0, (80, 80)) is d0  # unchanged: the same array
    scene.sample_shift_um = 4.0
    for i in range(7):
        m = plan.update(scene.input_image(), i, i * FRAME_MS)
        assert (m is not None) == (i % 3 == 0)  # every_n = 3
    d1 = plan.dpms_for_frame(6, 6 * FRAME_MS, (80, 80))
    assert d1 is not d0
    c = plan.correction_um()
    assert c == pytest.approx(5.0, abs=0.15)  # 4 µm drift + 1 µm target
    np.testing.assert_allclose(d1[:, 40, 40], [c - 1, c, c + 2], atol=1e-5)
    assert plan.served_um(6) == pytest.approx(c)
    desc = plan.describe()
    json.dumps(desc, allow_nan=False)
    assert desc["type"] == "drift" and desc["correction_um"] == pytest.approx(c)
    assert desc["counters"]["estimates"] == 3 and desc["target_offset_um"] == 1.0
    assert len(plan.trace()["raw_um"]) == 3
    plan.reset()
    assert len(plan.trace()["raw_um"]) == 0


def test_plan_clamps_to_model_range(scene: GaussianBeamScene) -> None:
    est = DriftEstimator(scene, target_offset_um=0.0, downsample=1)
    plan = DriftCompensationPlan(est, offsets_um=[0.0, 3.0], initial_um=9.0)
    d = plan.dpms_for_frame(0, 0.0, (16, 16))
    assert float(d.max()) <= 10.0 + 1e-6
    np.testing.assert_allclose(d[:, 0, 0], [7.0, 10.0])
    assert plan.describe()["clamped"] is True


def test_plan_asynchronous(scene: GaussianBeamScene) -> None:
    est = DriftEstimator(scene, downsample=1)
    plan = DriftCompensationPlan(est, asynchronous=True)
    try:
        scene.sample_shift_um = 3.0
        img = scene.input_image()
        assert plan.update(img, 0, 0.0) is None
        plan.wait(30)
        assert plan.correction_um() == pytest.approx(3.0, abs=0.15)
        assert plan.describe()["counters"]["estimates"] == 1
    finally:
        plan.close()


def test_prior_follows_the_nearest_layer() -> None:
    """A two-layer sample has two focus peaks; a prior keeps the estimate on its layer."""
    rng = np.random.default_rng(3)
    pts = rng.uniform(8, 72, (40, 2))
    z = np.where(np.arange(40) < 22, 0.0, 5.0)  # the shallow layer is a bit brighter
    scene = GaussianBeamScene((80, 80), 0.325, pts, z, refocus_noise_std=0.005)
    scene.sample_shift_um = 2.0
    img = scene.input_image()
    est = DriftEstimator(scene, downsample=1)
    assert est.estimate(img).defocus_um == pytest.approx(2.0, abs=0.2)
    assert est.estimate(img, prior_um=6.5).defocus_um == pytest.approx(7.0, abs=0.2)
    assert est.estimate(img, prior_um=2.5).defocus_um == pytest.approx(2.0, abs=0.2)


def test_hold_initial_keeps_the_plane_in_view(scene: GaussianBeamScene) -> None:
    est = DriftEstimator(scene, downsample=1)
    plan = DriftCompensationPlan(est, hold="initial", initial_um=0.0)
    scene.sample_shift_um = 3.0  # tracking starts with the sample 3 µm deep: hold that view
    plan.update(scene.input_image(), 0, 0.0)
    assert plan.correction_um() == pytest.approx(0.0, abs=0.01)
    for i, d in enumerate(np.r_[np.linspace(3.25, 5.0, 8), [5.0] * 6], start=1):
        scene.sample_shift_um = float(d)  # it drifts 2 µm deeper: follow the change only
        plan.update(scene.input_image(), i, i * FRAME_MS)
    assert plan.correction_um(14 * FRAME_MS) == pytest.approx(2.0, abs=0.2)
    assert plan.describe()["hold"] == "initial"
    with pytest.raises(InputError):
        DriftCompensationPlan(est, hold="focus")


# --------------------------------------------------------------------------- keyframe match


def test_match_estimator_follows_the_change_since_the_keyframe(scene: GaussianBeamScene) -> None:
    """The keyframe is 3 µm out of focus (anchor given); later frames are found at their own
    defocus, also when the sample moved 3 px sideways."""
    est = MatchDriftEstimator(scene, downsample=1, anchor_um=3.0)
    scene.sample_shift_um = 3.0
    first = est.estimate(scene.input_image())
    assert first.ok and first.defocus_um == 3.0
    for d in (-4.0, 1.0, 6.5):
        scene.sample_shift_um = d
        m = est.estimate(scene.input_image())
        assert m.ok and m.defocus_um == pytest.approx(d, abs=0.15), d
        assert m.message.startswith("match r = ")
    scene.points_yx_px = scene.points_yx_px + np.array([3.0, -2.0])
    scene.sample_shift_um = 5.0
    assert est.estimate(scene.input_image()).defocus_um == pytest.approx(5.0, abs=0.15)
    assert est.refreshes == 0
    d = est.describe()
    assert d["keyframe_defocus_um"] == 3.0 and d["anchor_um"] == 3.0 and d["refreshes"] == 0


def test_match_estimator_anchor_from_the_focus_measure(scene: GaussianBeamScene) -> None:
    """Without an anchor the keyframe's defocus comes from the parent's focus-measure sweep."""
    ref = _focus_reference(scene, DriftEstimator(scene, downsample=1))
    est = MatchDriftEstimator(scene, downsample=1)
    scene.sample_shift_um = 2.0
    assert est.estimate(scene.input_image()).defocus_um - ref == pytest.approx(2.0, abs=0.1)
    scene.sample_shift_um = -3.0
    assert est.estimate(scene.input_image()).defocus_um - ref == pytest.approx(-3.0, abs=0.15)


def test_match_estimator_refreshes_a_keyframe_that_no_longer_matches() -> None:
    """A sample that changes (other emitters) makes the current frame the new keyframe; the
    anchor moves with it and reset() starts a new track."""
    a = worm_scene((80, 80), n_neurons=24, seed=0, noise_std=0.02, refocus_noise_std=0.02)
    est = MatchDriftEstimator(a, downsample=1, anchor_um=0.0, refresh_below=0.9)
    est.estimate(a.input_image())
    b = worm_scene((80, 80), n_neurons=24, seed=5, noise_std=0.02, refocus_noise_std=0.02)
    est.refocus_fn = b
    b.sample_shift_um = 2.0
    m = est.estimate(b.input_image())
    assert m.ok and float(np.max(m.curve)) - 1.0 < 0.9
    assert est.refreshes == 1
    assert est.describe()["keyframe_defocus_um"] == pytest.approx(m.defocus_um)
    b.sample_shift_um = 4.0  # now matched against b's own frame: the change is +2 µm
    assert est.estimate(b.input_image()).defocus_um - m.defocus_um == pytest.approx(2.0, abs=0.15)
    est.reset()
    assert est.describe()["keyframe_defocus_um"] is None
    assert est.estimate(b.input_image()).defocus_um == 0.0  # a new track: the anchor again


def test_match_plan_hold_initial(scene: GaussianBeamScene) -> None:
    est = MatchDriftEstimator(scene, downsample=1, anchor_um=0.0)
    plan = DriftCompensationPlan(est, hold="initial")
    scene.sample_shift_um = 2.0
    plan.update(scene.input_image(), 0, 0.0)
    for i, d in enumerate(np.r_[np.linspace(2.25, 4.0, 8), [4.0] * 6], start=1):
        scene.sample_shift_um = float(d)
        plan.update(scene.input_image(), i, i * FRAME_MS)
    assert plan.correction_um(14 * FRAME_MS) == pytest.approx(2.0, abs=0.2)


def test_match_estimator_bad_arguments(scene: GaussianBeamScene) -> None:
    with pytest.raises(InputError, match="anchor_um"):
        MatchDriftEstimator(scene, anchor_um=float("nan"))
    with pytest.raises(InputError, match="max_shift_px"):
        MatchDriftEstimator(scene, max_shift_px=-1)
    with pytest.raises(InputError, match="refresh_below"):
        MatchDriftEstimator(scene, refresh_below=1.0)
    with pytest.raises(InputError, match="cannot match"):
        shifted_correlation(np.zeros((20, 20)), np.zeros((20, 21)), 2)
    with pytest.raises(InputError, match="leaves less than 8 px"):
        shifted_correlation(np.zeros((20, 20)), np.zeros((20, 20)), 7)
    ramp = np.add.outer(np.arange(32.0), np.arange(32.0) ** 1.5)
    assert shifted_correlation(ramp, ramp, 3) == pytest.approx(1.0)
    assert shifted_correlation(ramp, -ramp, 3) < 0.0
