"""DPM builders, plane parsing, network units, range checks, smoothness and plane plans."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import tifffile

from live_deepz import dpm
from live_deepz.errors import DPMRangeError, InputError, LiveDeepzError

PX = 0.325


# --------------------------------------------------------------------------- builders


def test_uniform() -> None:
    d = dpm.uniform((4, 5), -2.5)
    assert d.shape == (4, 5) and d.dtype == np.float32
    assert np.all(d == -2.5)
    with pytest.raises(InputError):
        dpm.uniform((4, 5), float("nan"))
    with pytest.raises(InputError):
        dpm.uniform((0, 5), 1.0)


def test_tilted_plane_matches_paper_tilt() -> None:
    # 1.5° across 512 px of 0.325 µm: the ends differ by tan(1.5°)·Δx.
    d = dpm.tilted_plane((512, 512), PX, tilt_deg=1.5, offset_um=2.0)
    assert d.dtype == np.float32 and d.shape == (512, 512)
    dx = 511 * PX
    assert d[100, 511] - d[100, 0] == pytest.approx(math.tan(math.radians(1.5)) * dx, rel=1e-5)
    assert d[0, 300] == pytest.approx(d[511, 300], abs=1e-5)  # no change along y
    # Through offset at the centre (between pixels 255 and 256 for an even size).
    assert 0.5 * (d[0, 255] + d[0, 256]) == pytest.approx(2.0, abs=1e-5)
    # Deeper to the right: +x is the direction of increasing DPM at azimuth 0.
    assert d[0, 511] > 2.0 > d[0, 0]


def test_tilted_plane_azimuth_direction() -> None:
    shape = (64, 64)
    d90 = dpm.tilted_plane(shape, PX, tilt_deg=2.0, azimuth_deg=90)
    assert d90[63, 10] > d90[0, 10]  # deeper towards +y (larger row index)
    assert d90[30, 0] == pytest.approx(d90[30, 63], abs=1e-5)
    d180 = dpm.tilted_plane(shape, PX, tilt_deg=2.0, azimuth_deg=180)
    assert d180[5, 0] > d180[5, 63]
    d45 = dpm.tilted_plane(shape, PX, tilt_deg=2.0, azimuth_deg=45)
    assert d45[63, 63] > d45[0, 0]
    assert d45[0, 63] == pytest.approx(d45[63, 0], abs=1e-5)


def test_tilted_plane_gradient_form_equals_angle_form() -> None:
    tilt, az = 1.5, 30.0
    t = math.tan(math.radians(tilt))
    a = dpm.tilted_plane((40, 60), PX, tilt_deg=tilt, azimuth_deg=az, offset_um=-1.0)
    g = (t * math.sin(math.radians(az)), t * math.cos(math.radians(az)))  # (dz/dy, dz/dx)
    b = dpm.tilted_plane((40, 60), PX, gradient=g, offset_um=-1.0)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_tilted_plane_center_and_errors() -> None:
    d = dpm.tilted_plane((20, 30), PX, gradient=(0.0, 0.1), offset_um=1.0, center=(0, 0))
    assert d[0, 0] == pytest.approx(1.0)
    assert d[0, 10] == pytest.approx(1.0 + 0.1 * 10 * PX)
    with pytest.raises(InputError, match="exactly one"):
        dpm.tilted_plane((8, 8), PX)
    with pytest.raises(InputError, match="exactly one"):
        dpm.tilted_plane((8, 8), PX, tilt_deg=1.0, gradient=(0.0, 0.0))
    with pytest.raises(InputError):
        dpm.tilted_plane((8, 8), PX, tilt_deg=90.0)
    with pytest.raises(InputError):
        dpm.tilted_plane((8, 8), 0.0, tilt_deg=1.0)


def test_cylinder_sag() -> None:
    r = 3600.0  # the paper's 7.2 mm diameter tube
    d = dpm.cylinder((65, 201), PX, r, axis_deg=0.0, offset_um=0.5)
    # Horizontal axis through row 32: the sag grows with the row distance.
    row_dist = 32 * PX
    expected = r - math.sqrt(r * r - row_dist**2)
    assert d[0, 100] - 0.5 == pytest.approx(expected, rel=1e-4)
    assert d[32, 7] == pytest.approx(0.5)
    np.testing.assert_allclose(d[:, 0], d[:, 200])  # constant along the axis
    concave = dpm.cylinder((65, 201), PX, r, offset_um=0.5, convex_towards_objective=False)
    np.testing.assert_allclose(concave - 0.5, -(d - 0.5), atol=1e-6)
    # Axis at 90°: the sag grows with the column distance.
    v = dpm.cylinder((11, 11), 1.0, 20.0, axis_deg=90.0)
    assert v[5, 0] == pytest.approx(20 - math.sqrt(400 - 25), rel=1e-5)
    assert v[0, 5] == pytest.approx(0.0, abs=1e-6)


def test_cylinder_beyond_radius_is_an_error() -> None:
    with pytest.raises(InputError, match="radius"):
        dpm.cylinder((101, 101), 1.0, radius_um=30.0)


def test_sinusoid_period_and_amplitude() -> None:
    period = 10.0
    d = dpm.sinusoid((8, 400), PX, period, 4.0, offset_um=-5.0)
    assert d.min() >= -9.0 - 1e-5 and d.max() <= -1.0 + 1e-5
    assert d.max() - d.min() == pytest.approx(8.0, abs=0.05)
    row = d[0].astype(np.float64) + 5.0
    spectrum = np.abs(np.fft.rfft(row - row.mean()))
    k = int(np.argmax(spectrum))
    assert 400 * PX / k == pytest.approx(period, rel=0.05)
    # The analytic form, origin at the image centre (column 199.5).
    u = (np.arange(400) - 199.5) * PX
    np.testing.assert_allclose(row, 4.0 * np.sin(2 * np.pi * u / period), atol=1e-5)
    shifted = dpm.sinusoid((8, 400), PX, period, 4.0, offset_um=-5.0, phase_deg=90.0)
    np.testing.assert_allclose(shifted[0] + 5.0, 4.0 * np.cos(2 * np.pi * u / period), atol=1e-5)
    dy = dpm.sinusoid((50, 3), PX, period, 1.0, direction_deg=90)
    np.testing.assert_allclose(dy[:, 0], dy[:, 2])  # varies along y only


def test_from_surface_array_and_tiff(tmp_path) -> None:
    surf = np.linspace(-1, 1, 12, dtype=np.float64).reshape(3, 4)
    out = dpm.from_surface(surf, shape=(3, 4))
    assert out.dtype == np.float32 and out is not surf
    np.testing.assert_allclose(out, surf, atol=1e-7)
    path = tmp_path / "surf.tif"
    # A (1, H, W) TIFF is accepted.
    tifffile.imwrite(path, surf[None].astype(np.float32), photometric="minisblack")
    np.testing.assert_allclose(dpm.from_surface(path, shape=(3, 4)), surf, atol=1e-7)
    np.testing.assert_allclose(dpm.from_surface(str(path)), surf, atol=1e-7)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((3, 4, 2)), "2D"),
        (np.array([[1.0, np.nan]]), "non-finite"),
        (np.zeros((2, 2), dtype=bool), "real numbers"),
        (np.zeros((2, 2), dtype=complex), "real numbers"),
        (np.zeros((0, 3)), "empty"),
    ],
)
def test_from_surface_rejects(bad: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        dpm.from_surface(bad)


def test_from_surface_shape_mismatch_and_missing_file(tmp_path) -> None:
    with pytest.raises(InputError, match=r"3×4 px but the frames are 4×4"):
        dpm.from_surface(np.zeros((3, 4)), shape=(4, 4))
    with pytest.raises(InputError, match="does not exist"):
        dpm.from_surface(tmp_path / "nope.tif")
    junk = tmp_path / "junk.tif"
    junk.write_text("not a tiff")
    with pytest.raises(InputError, match="cannot read"):
        dpm.from_surface(junk)


# --------------------------------------------------------------------------- parse_planes


def test_parse_planes_range_inclusive() -> None:
    p = dpm.parse_planes("-10:10:0.5")
    assert p.shape == (41,) and p[0] == -10.0 and p[-1] == 10.0
    assert p[20] == 0.0
    np.testing.assert_allclose(np.diff(p), 0.5)
    # Float rounding must neither drop nor add the last plane.
    q = dpm.parse_planes("0:0.3:0.1")
    assert q.tolist() == [0.0, 0.1, 0.2, 0.3]
    assert dpm.parse_planes("0:1:0.3").tolist() == [0.0, 0.3, 0.6, 0.9]
    assert dpm.parse_planes("2:2:1").tolist() == [2.0]


def test_parse_planes_other_forms() -> None:
    assert dpm.parse_planes("3").tolist() == [3.0]
    assert dpm.parse_planes(" -2, 0 ,2.5").tolist() == [-2.0, 0.0, 2.5]
    assert dpm.parse_planes("-4:-2:1,0,2:4:1").tolist() == [-4, -3, -2, 0, 2, 3, 4]
    assert dpm.parse_planes([1, -1.5, 0]).tolist() == [1.0, -1.5, 0.0]
    assert dpm.parse_planes((2.0,)).tolist() == [2.0]
    assert dpm.parse_planes(np.array([0.5, 1.0])).tolist() == [0.5, 1.0]
    assert dpm.parse_planes(-1.25).tolist() == [-1.25]
    assert dpm.parse_planes("1e-1").tolist() == [0.1]
    # Duplicates are dropped, first occurrence kept, order kept.
    assert dpm.parse_planes("2,0,2,-1,0").tolist() == [2.0, 0.0, -1.0]
    assert dpm.parse_planes("-0").tolist() == [0.0]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "  ",
        "a",
        "1,,2",
        "1:2",
        "0:10:0",
        "0:10:-1",
        "10:0:1",
        "nan",
        "inf",
        "1,nan",
        [],
        [1.0, float("nan")],
        [float("inf")],
        "1:2:3:4",
        [[1, 2]],
        ["x"],
        True,
        "0:1000:0.0001",
    ],
)
def test_parse_planes_rejects(bad: object) -> None:
    with pytest.raises(InputError) as info:
        dpm.parse_planes(bad)  # type: ignore[arg-type]
    msg = str(info.value)
    assert "planes" in msg
    if not (isinstance(bad, str) and bad.startswith("0:1000")):
        assert "accepted forms" in msg and "-10:10:0.5" in msg


# --------------------------------------------------------------------------- units / range


def test_network_units_round_trip() -> None:
    d = np.array([[-10.0, 0.0, 10.0, 2.5]], dtype=np.float32)
    n = dpm.to_network_units(d)
    assert n.dtype == np.float32
    np.testing.assert_allclose(n, [[-1.0, 0.0, 1.0, 0.25]])
    np.testing.assert_allclose(dpm.from_network_units(n), d)
    np.testing.assert_allclose(dpm.to_network_units(d, dpm_scale_um=4.0), d / 4.0)
    out = np.empty_like(d)
    assert dpm.to_network_units(d, out=out) is out
    with pytest.raises(InputError):
        dpm.to_network_units(d, dpm_scale_um=0.0)


def test_check_range_accepts_inside_with_tolerance() -> None:
    assert dpm.check_range(dpm.uniform((4, 4), 10.0), (-10, 10)) is True
    assert dpm.check_range(np.array([-10.0000001, 10.0000001]), (-10, 10)) is True
    assert dpm.check_range(3.0, (-10, 10)) is True


def test_check_range_refuses_outside() -> None:
    d = dpm.tilted_plane((32, 32), PX, gradient=(0.0, 2.0), offset_um=5.0)
    lo, hi = float(d.min()), float(d.max())
    with pytest.raises(DPMRangeError) as info:
        dpm.check_range(d, (-10, 10))
    msg = str(info.value)
    assert f"{hi:+.4g}" in msg and f"{lo:+.4g}" in msg
    assert "[-10, +10]" in msg
    assert "--allow-out-of-range" in msg and "choose planes within" in msg
    assert isinstance(info.value, LiveDeepzError)
    with pytest.raises(DPMRangeError, match=r"min -12 µm < -10"):
        dpm.check_range(np.array([-12.0, 0.0]), (-10, 10), what="planes")


def test_check_range_allowed_warns() -> None:
    with pytest.warns(dpm.OutOfRangeWarning, match="outside the model's trained axial range"):
        assert dpm.check_range(np.array([0.0, 12.0]), (-10, 10), allow=True) is False
    assert issubclass(dpm.OutOfRangeWarning, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dpm.check_range(np.array([0.0, 1.0]), (-10, 10), allow=True) is True


def test_check_range_rejects_nan_and_bad_range() -> None:
    with pytest.raises(InputError, match="NaN"):
        dpm.check_range(np.array([0.0, np.nan]), (-10, 10))
    with pytest.raises(InputError, match="NaN"):
        dpm.check_range(np.array([0.0, np.nan]), (-10, 10), allow=True)
    with pytest.raises(InputError):
        dpm.check_range(np.zeros(0), (-10, 10))
    with pytest.raises(InputError):
        dpm.check_range(np.zeros(3), (10, -10))
    with pytest.raises(InputError):
        dpm.check_range(np.zeros(3), (0.0,))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- smoothness


def test_smoothness_flags_short_period_and_passes_long() -> None:
    shape = (256, 512)
    fast = dpm.sinusoid(shape, PX, 10.0, 4.0, offset_um=-5.0)
    assert dpm.smoothness_period_um(fast, PX) == pytest.approx(10.0, rel=0.05)
    warning = dpm.check_smoothness(fast, PX)
    assert warning is not None and "32" in warning and "ripple" in warning
    slow = dpm.sinusoid((128, 1024), PX, 100.0, 4.0, offset_um=-5.0, direction_deg=5)
    assert dpm.smoothness_period_um(slow, PX) == pytest.approx(100.0, rel=0.05)
    assert dpm.check_smoothness(slow, PX) is None
    assert dpm.check_smoothness(slow, PX, min_period_um=200.0) is not None
    # Fewer than 2 cycles across the field: a smooth bend, never flagged.
    assert dpm.check_smoothness(dpm.sinusoid(shape, PX, 100.0, 4.0), PX) is None


def test_smoothness_smooth_surfaces_pass() -> None:
    shape = (128, 128)
    assert dpm.smoothness_period_um(dpm.uniform(shape, 3.0), PX) == math.inf
    tilt = dpm.tilted_plane(shape, PX, tilt_deg=20.0, azimuth_deg=33.0)
    assert dpm.smoothness_period_um(tilt, PX) == math.inf
    cyl = dpm.cylinder(shape, PX, radius_um=100.0, axis_deg=15.0)
    assert dpm.check_smoothness(cyl, PX) is None


def test_smoothness_flags_steps_and_noise_not_small_ripple() -> None:
    shape = (128, 128)
    step = np.zeros(shape, dtype=np.float32)
    step[:, 64:] = 5.0
    assert dpm.check_smoothness(step, PX) is not None
    rng = np.random.default_rng(1)
    noisy = rng.normal(0.0, 0.5, shape)
    assert dpm.check_smoothness(noisy, PX) is not None
    tiny = dpm.sinusoid(shape, PX, 5.0, 0.02)  # 0.02 µm ripple: far below the DOF
    assert dpm.check_smoothness(tiny, PX) is None
    with pytest.raises(InputError):
        dpm.smoothness_period_um(np.array([[0.0, np.nan]]), PX)


# --------------------------------------------------------------------------- plans


def test_static_plan_uniform_planes_cached_read_only() -> None:
    plan = dpm.StaticPlanePlan("-1:1:1")
    assert isinstance(plan, dpm.PlanePlan)
    assert plan.offsets_um.tolist() == [-1.0, 0.0, 1.0]
    a = plan.dpms_for_frame(0, 0.0, (6, 7))
    assert a.shape == (3, 6, 7) and a.dtype == np.float32 and a.flags.c_contiguous
    np.testing.assert_array_equal(a[:, 2, 3], [-1.0, 0.0, 1.0])
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[0, 0, 0] = 5.0
    assert plan.dpms_for_frame(1, 33.3, (6, 7)) is a
    b = plan.dpms_for_frame(2, 66.6, (4, 4))
    assert b.shape == (3, 4, 4)
    assert plan.dpms_for_frame(3, 99.9, (6, 7)) is a


def test_static_plan_with_surface() -> None:
    shape = (16, 20)
    surf = dpm.tilted_plane(shape, PX, tilt_deg=1.5)
    plan = dpm.StaticPlanePlan([0.0, 2.0], surf)
    d = plan.dpms_for_frame(0, 0.0, shape)
    np.testing.assert_allclose(d[0], surf)
    np.testing.assert_allclose(d[1], surf + 2.0)
    assert plan.describe()["surface"] == {"kind": "array"}
    with pytest.raises(InputError, match="rebuild the plan"):
        plan.dpms_for_frame(1, 0.0, (8, 8))


def test_static_plan_describe_round_trip() -> None:
    shape, spec = (24, 32), {"kind": "tilted_plane", "tilt_deg": 1.5, "azimuth_deg": 30}
    plan = dpm.StaticPlanePlan.from_spec("-2:2:1", spec, shape, PX)
    desc = plan.describe()
    assert desc == {"type": "static", "offsets_um": [-2.0, -1.0, 0.0, 1.0, 2.0], "surface": spec}
    desc = json.loads(json.dumps(desc))
    again = dpm.StaticPlanePlan.from_spec(desc["offsets_um"], desc["surface"], shape, PX)
    np.testing.assert_array_equal(
        again.dpms_for_frame(0, 0.0, shape), plan.dpms_for_frame(0, 0.0, shape)
    )
    np.testing.assert_allclose(
        plan.dpms_for_frame(0, 0.0, shape)[2],
        dpm.tilted_plane(shape, PX, tilt_deg=1.5, azimuth_deg=30),
    )
    flat = dpm.StaticPlanePlan.from_spec([0.5], None, shape, PX)
    assert flat.describe() == {"type": "static", "offsets_um": [0.5], "surface": None}


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "uniform", "offset_um": 1.0},
        {"kind": "cylinder", "radius_um": 3600.0, "axis_deg": 10.0},
        {"kind": "sinusoid", "period_um": 50.0, "amplitude_um": 1.0},
        {"kind": "tilted_plane", "gradient": [0.01, 0.02], "center": [0, 0]},
    ],
)
def test_surface_from_spec_dispatches(spec: dict) -> None:
    s = dpm.surface_from_spec(spec, (10, 12), PX)
    assert s.shape == (10, 12) and s.dtype == np.float32


def test_surface_from_spec_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="unknown surface kind"):
        dpm.surface_from_spec({"kind": "sphere"}, (4, 4), PX)
    with pytest.raises(InputError, match="does not take"):
        dpm.surface_from_spec({"kind": "uniform", "offset_um": 1, "tilt": 2}, (4, 4), PX)
    with pytest.raises(InputError, match="radius_um"):
        dpm.surface_from_spec({"kind": "cylinder"}, (4, 4), PX)
    with pytest.raises(InputError, match="carries no values"):
        dpm.surface_from_spec({"kind": "array"}, (4, 4), PX)
    with pytest.raises(InputError, match="'kind'"):
        dpm.surface_from_spec({"tilt_deg": 1}, (4, 4), PX)
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, np.ones((4, 4), dtype=np.float32))
    spec = {"kind": "array", "path": str(path)}
    plan = dpm.StaticPlanePlan.from_spec([0.0], spec, (4, 4), PX)
    assert plan.describe()["surface"] == spec
    np.testing.assert_array_equal(plan.dpms_for_frame(0, 0.0, (4, 4)), 1.0)


def test_static_plan_check_range() -> None:
    shape = (32, 32)
    surf = dpm.tilted_plane(shape, PX, gradient=(0.0, 0.2))  # ±~1 µm across the field
    plan = dpm.StaticPlanePlan("-10:10:0.5", surf)
    with pytest.raises(DPMRangeError, match="surface \\+ offsets"):
        plan.check_range((-10, 10), shape)
    with pytest.warns(dpm.OutOfRangeWarning):
        assert plan.check_range((-10, 10), shape, allow=True) is False
    assert dpm.StaticPlanePlan("-8:8:0.5", surf).check_range((-10, 10), shape) is True
    lo, hi = plan.bounds_um(shape)
    d = plan.dpms_for_frame(0, 0.0, shape)
    assert lo == pytest.approx(float(d.min()), abs=1e-5)
    assert hi == pytest.approx(float(d.max()), abs=1e-5)
    assert dpm.StaticPlanePlan("-10:10:0.5").check_range((-10, 10), (8, 8)) is True
    with pytest.raises(DPMRangeError):
        dpm.StaticPlanePlan("0:12:1").check_range((-10, 10), (8, 8))


def test_static_plan_smoothness_and_bad_inputs() -> None:
    shape = (64, 64)
    assert dpm.StaticPlanePlan([0.0]).check_smoothness(PX) is None
    rough = dpm.StaticPlanePlan([0.0], dpm.sinusoid(shape, PX, 5.0, 2.0))
    assert rough.check_smoothness(PX) is not None
    with pytest.raises(InputError):
        dpm.StaticPlanePlan("nope")
    with pytest.raises(InputError):
        dpm.StaticPlanePlan([0.0], np.array([[np.nan]]))
    with pytest.raises(InputError):
        dpm.StaticPlanePlan([0.0], surface_spec={"kind": "uniform", "offset_um": 1})
