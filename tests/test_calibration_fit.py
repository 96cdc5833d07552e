"""Surface fits: planes/quadratics/cylinders with noise and 20 % outliers, bad inputs, files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from live_deepz import dpm
from live_deepz.calibration import (
    FocusMap,
    SurfaceFit,
    fit_points,
    fit_surface,
    load_calibration,
    save_calibration,
)
from live_deepz.errors import DPMRangeError, InputError

PX = 0.325
SHAPE = (512, 512)  # ~166 µm field, like the paper's crops


def _sample(surface: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.asarray(ndimage.map_coordinates(surface.astype(np.float64), pts.T, order=1))


def _points(
    surface: np.ndarray,
    n: int = 150,
    noise: float = 0.1,
    outliers: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = surface.shape
    pts = rng.uniform([0, 0], [h - 1, w - 1], (n, 2))
    z = _sample(surface, pts) + rng.normal(0, noise, n)
    bad = rng.random(n) < outliers
    z[bad] += rng.choice([-1, 1], bad.sum()) * rng.uniform(1.5, 6.0, bad.sum())
    return pts, z, bad


def _angle_diff(a: float, b: float, period: float = 360.0) -> float:
    d = (a - b) % period
    return min(d, period - d)


@pytest.mark.parametrize(("tilt", "az"), [(1.5, 30.0), (1.5, 200.0), (0.7, -60.0)])
def test_plane_tilt_azimuth_with_noise_and_outliers(tilt: float, az: float) -> None:
    surface = dpm.tilted_plane(SHAPE, PX, tilt, az, offset_um=0.8)
    pts, z, bad = _points(surface, seed=int(tilt * 10 + az) % 997)
    fit = fit_points(pts, z, "plane", shape=SHAPE, pixel_size_um=PX)
    assert abs(fit.tilt_deg - tilt) < 0.05
    assert _angle_diff(fit.azimuth_deg, az % 360.0) < 2.0
    assert abs(fit.offset_um - 0.8) < 0.05
    assert fit.n_points == 150
    assert not fit.inliers[bad].any()  # every 1.5-6 µm outlier rejected
    assert fit.n_inliers >= 0.95 * (~bad).sum()
    assert fit.residual_rms_um == pytest.approx(0.1, rel=0.3)
    assert fit.tilt_std_deg is not None and fit.tilt_std_deg < 0.05
    # the fitted DPM is the true surface, and the spec rebuilds it through dpm
    d = fit.dpm()
    assert d.shape == SHAPE and d.dtype == np.float32
    assert np.abs(d - surface).max() < 0.1
    spec = fit.surface_spec
    assert spec is not None and spec["kind"] == "tilted_plane"
    np.testing.assert_allclose(dpm.surface_from_spec(spec, SHAPE, PX), d, atol=1e-5)


def test_plane_azimuth_convention_matches_dpm() -> None:
    """Deeper towards +y (rows grow) is azimuth 90°: z grows with the row index."""
    h, w = SHAPE
    pts = np.array([[0, 0], [0, w - 1], [h - 1, 0], [h - 1, w - 1], [h / 2, w / 2]], float)
    cy = (h - 1) / 2
    z = (pts[:, 0] - cy) * PX * math.tan(math.radians(1.0))
    fit = fit_points(pts, z, "plane", shape=SHAPE, pixel_size_um=PX)
    assert fit.tilt_deg == pytest.approx(1.0, abs=1e-6)
    assert fit.azimuth_deg == pytest.approx(90.0, abs=1e-6)


def test_quadratic_recovers_coefficients() -> None:
    h, w = SHAPE
    yy, xx = np.mgrid[0:h, 0:w]
    x, y = (xx - (w - 1) / 2) * PX, (yy - (h - 1) / 2) * PX
    true = dict(c0=-0.5, x=0.01, y=-0.02, xx=1e-4, xy=-5e-5, yy=2e-4)
    surface = (
        true["c0"]
        + true["x"] * x
        + true["y"] * y
        + true["xx"] * x * x
        + true["xy"] * x * y
        + true["yy"] * y * y
    )
    pts, z, bad = _points(surface, n=200, noise=0.05, seed=3)
    fit = fit_points(pts, z, "quadratic", shape=SHAPE, pixel_size_um=PX)
    assert not fit.inliers[bad].any()
    assert np.abs(fit.dpm() - surface).max() < 0.1
    for k in ("xx", "xy", "yy"):
        assert fit.coefficients[k] == pytest.approx(true[k], abs=1.5e-5)
    assert fit.curvature_per_um is not None
    assert max(fit.curvature_per_um, key=abs) == pytest.approx(4e-4, rel=0.1)
    assert fit.surface_spec is None  # not an analytic dpm builder


@pytest.mark.parametrize(
    ("radius", "axis", "convex", "center"),
    [
        (3600.0, 20.0, True, (200.0, 300.0)),
        (3600.0, 95.0, True, None),
        (1500.0, 140.0, False, None),
    ],
)
def test_cylinder_radius_axis_convexity(
    radius: float, axis: float, convex: bool, center: tuple[float, float] | None
) -> None:
    """A 7.2 mm tube over a 166 µm field sags only ~1 µm; the fit still gets R within 10 %."""
    surface = dpm.cylinder(SHAPE, PX, radius, axis, -1.0, convex, center)
    pts, z, bad = _points(surface, n=200, noise=0.05, seed=int(axis))
    fit = fit_points(pts, z, "cylinder", shape=SHAPE, pixel_size_um=PX)
    assert fit.radius_um == pytest.approx(radius, rel=0.1)
    assert _angle_diff(fit.axis_deg or 0.0, axis, 180.0) < 3.0
    assert fit.convex_towards_objective is convex
    assert not fit.inliers[bad].any()
    assert not fit.warnings
    assert np.abs(fit.dpm() - surface).max() < 0.1
    spec = fit.surface_spec
    assert spec is not None and spec["kind"] == "cylinder"
    np.testing.assert_allclose(dpm.surface_from_spec(spec, SHAPE, PX), fit.dpm(), atol=1e-5)
    assert "radius" in fit.summary()


def test_cylinder_on_flat_sample_warns() -> None:
    surface = dpm.tilted_plane(SHAPE, PX, 0.5, 10.0)
    pts, z, _ = _points(surface, n=100, noise=0.1, outliers=0.0)
    fit = fit_points(pts, z, "cylinder", shape=SHAPE, pixel_size_um=PX)
    assert any("curvature is not significant" in w for w in fit.warnings)


def test_smooth_fit_follows_topography_and_smoothness_warning() -> None:
    h, w = 256, 256
    yy, xx = np.mgrid[0:h, 0:w]
    surface = 1.5 * np.sin(2 * np.pi * xx * PX / 80.0) + 0.5 * np.cos(2 * np.pi * yy * PX / 60.0)
    pts, z, bad = _points(surface, n=250, noise=0.05, outliers=0.1, seed=5)
    fit = fit_points(pts, z, "smooth", shape=(h, w), pixel_size_um=PX, smoothing=0.01)
    assert not fit.inliers[bad & (np.abs(z - _sample(surface, pts)) > 1.5)].any()
    err = fit.dpm() - surface
    assert np.sqrt(np.mean(err[20:-20, 20:-20] ** 2)) < 0.15
    assert fit.check((-10.0, 10.0)) == []
    # a rippled surface (period ~10 µm) interpolated exactly breaks the 32 µm limit
    ripple = 0.6 * np.sin(2 * np.pi * xx * PX / 10.0)
    rng = np.random.default_rng(1)
    pts = rng.uniform([0, 0], [h - 1, w - 1], (600, 2))
    rough = fit_points(
        pts, _sample(ripple, pts), "smooth", shape=(h, w), pixel_size_um=PX, smoothing=0.0
    )
    msgs = rough.check((-10.0, 10.0))
    assert len(msgs) == 1 and "period" in msgs[0] and "32" in msgs[0]
    assert msgs[0] in rough.warnings


def test_too_few_points_and_degenerate() -> None:
    with pytest.raises(InputError, match="at least 3 focus points, got 2"):
        fit_points(np.zeros((2, 2)), np.zeros(2), "plane", shape=SHAPE, pixel_size_um=PX)
    pts = np.random.default_rng(0).uniform(0, 500, (5, 2))
    with pytest.raises(InputError, match="quadratic fit needs at least 6"):
        fit_points(pts, np.zeros(5), "quadratic", shape=SHAPE, pixel_size_um=PX)
    with pytest.raises(InputError, match="cylinder fit needs at least 6"):
        fit_points(pts, np.zeros(5), "cylinder", shape=SHAPE, pixel_size_um=PX)
    line = np.stack([np.arange(10.0), np.arange(10.0)], 1) * 20
    with pytest.raises(InputError, match="collinear"):
        fit_points(line, np.zeros(10), "plane", shape=SHAPE, pixel_size_um=PX)
    with pytest.raises(InputError, match="unknown surface fit"):
        fit_points(pts, np.zeros(5), "sphere", shape=SHAPE, pixel_size_um=PX)
    with pytest.raises(InputError, match="NaN"):
        fit_points(pts, np.full(5, np.nan), "plane", shape=SHAPE, pixel_size_um=PX)
    empty = FocusMap(np.zeros((0, 2)), [], [], "beads", SHAPE, PX)
    with pytest.raises(InputError, match="empty"):
        fit_surface(empty)
    exact = fit_points(pts[:3], [0.0, 1.0, 2.0], "plane", shape=SHAPE, pixel_size_um=PX)
    assert any("exactly 3 points" in w for w in exact.warnings)


def test_surface_outside_model_range() -> None:
    surface = dpm.tilted_plane(SHAPE, PX, 3.0, 0.0, offset_um=8.0)  # reaches ~12.4 µm
    pts, z, _ = _points(surface, n=60, noise=0.05, outliers=0.0)
    with pytest.raises(DPMRangeError, match="outside the model's trained axial range") as err:
        fit_points(pts, z, "plane", shape=SHAPE, pixel_size_um=PX, z_range_um=(-10, 10))
    assert "fitted plane surface" in str(err.value) and "level the sample" in str(err.value)
    with pytest.warns(dpm.OutOfRangeWarning):
        fit = fit_points(
            pts,
            z,
            "plane",
            shape=SHAPE,
            pixel_size_um=PX,
            z_range_um=(-10, 10),
            allow_out_of_range=True,
        )
    assert any("outside the model" in w for w in fit.warnings)


def test_dpm_refuses_other_shape() -> None:
    pts, z, _ = _points(dpm.tilted_plane(SHAPE, PX, 1.0, 0.0), n=20, outliers=0.0)
    fit = fit_points(pts, z, "plane", shape=SHAPE, pixel_size_um=PX)
    with pytest.raises(InputError, match="calibrated on 512×512"):
        fit.dpm((256, 256))


def test_weights_follow_confidence() -> None:
    """Low-confidence points pull the fit less than confident ones."""
    surface = dpm.tilted_plane(SHAPE, PX, 1.0, 45.0)
    pts, z, _ = _points(surface, n=80, noise=0.02, outliers=0.0, seed=2)
    rng = np.random.default_rng(3)
    noisy = rng.random(80) < 0.3
    z = z + np.where(noisy, rng.normal(0, 0.4, 80), 0.0)
    conf = np.where(noisy, 0.01, 1.0)
    weighted = fit_points(
        pts, z, "plane", shape=SHAPE, pixel_size_um=PX, confidence=conf, inlier_threshold_um=5.0
    )
    plain = fit_points(pts, z, "plane", shape=SHAPE, pixel_size_um=PX, inlier_threshold_um=5.0)
    assert abs(weighted.tilt_deg - 1.0) < abs(plain.tilt_deg - 1.0)
    assert abs(weighted.tilt_deg - 1.0) < 0.02


def test_json_roundtrip_and_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import tifffile

    surface = dpm.tilted_plane(SHAPE, PX, 1.5, 30.0)
    pts, z, _ = _points(surface, n=50)
    fit = fit_points(pts, z, "plane", shape=SHAPE, pixel_size_um=PX)
    d = fit.to_json()
    text = json.dumps(d, allow_nan=False)
    for key in (
        "fit",
        "tilt_deg",
        "azimuth_deg",
        "coefficients",
        "residual_rms_um",
        "n_points",
        "n_inliers",
        "offset_um",
        "radius_um",
        "axis_deg",
        "pixel_size_um",
        "shape",
        "surface_spec",
    ):
        assert key in d
    back = SurfaceFit.from_json(json.loads(text))
    np.testing.assert_allclose(back.dpm(), fit.dpm())
    assert back.n_inliers == fit.n_inliers

    # quadratic: saved with a TIFF, its spec names the TIFF and dpm rebuilds it
    quad = fit_points(pts, z, "quadratic", shape=SHAPE, pixel_size_um=PX)
    out = save_calibration(tmp_path / "cal.json", quad, dpm_path=tmp_path / "dpm.tif")
    assert out["surface_spec"]["kind"] == "array"
    tif = tifffile.imread(tmp_path / "dpm.tif")
    assert tif.dtype == np.float32 and tif.shape == SHAPE
    np.testing.assert_allclose(dpm.surface_from_spec(out["surface_spec"], SHAPE, PX), quad.dpm())
    loaded = load_calibration(tmp_path / "cal.json")
    np.testing.assert_allclose(loaded.dpm(), quad.dpm(), atol=1e-6)
    with pytest.raises(InputError, match="does not exist"):
        load_calibration(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"format": "something-else"}')
    with pytest.raises(InputError, match="not a live-deepz calibration"):
        load_calibration(tmp_path / "bad.json")
