"""SimScene (streaming frames) and drift trajectories."""

from __future__ import annotations

import numpy as np
import pytest

from live_deepz.optics import Optics
from live_deepz.sim.render import Renderer
from live_deepz.sim.samples import beads_flat, worm
from live_deepz.sim.scene import DriftTrajectory, SimScene

PX = Optics().pixel_size_um


@pytest.fixture(scope="module")
def bead_scene() -> SimScene:
    s = beads_flat(0, size_um=40.0, n=40, background=1000.0)
    return SimScene(s, shape=(64, 64), seed=1, z_range_um=(-3.0, 3.0), xy_margin_px=8)


def test_frame_types_out_buffer_and_focus(bead_scene: SimScene) -> None:
    sc = bead_scene
    out = np.zeros((64, 64), np.uint16)
    f = sc.render_frame(0.0, 0.0, (0.0, 0.0), 10.0, out)
    assert f is out and f.dtype == np.uint16 and f.shape == sc.shape == (64, 64)
    sharp = sc.expected_frame(0.0, 0.0)
    blurred = sc.expected_frame(0.0, 2.5)
    assert sharp.max() > 3 * blurred.max()  # moving the stage defocuses the beads
    # energy is conserved (periodic tile): same mean at any focus
    assert sharp.mean() == pytest.approx(blurred.mean(), rel=0.01)
    # frames are noisy around the expected counts
    a = sc.render_frame(0.0, 0.0).astype(float)
    b = sc.render_frame(0.0, 0.0).astype(float)
    assert 0 < np.abs(a - b).mean() < 0.2 * a.mean()


def test_scene_matches_renderer(bead_scene: SimScene) -> None:
    """The table frames equal the renderer's stack (interior; the tile is periodic; the
    table bins emitters in 0.25 µm layers, the renderer in 0.1 µm ones)."""
    sc = bead_scene
    r = Renderer(sc.optics, shape=sc.shape)
    for z in (0.0, 1.25, -2.0):
        ref = r.render_plane(sc.sample, z)
        got = sc.expected_frame(0.0, z)
        np.testing.assert_allclose(got[8:-8, 8:-8], ref[8:-8, 8:-8], rtol=0.04, atol=2.0)
    # between table planes: linear interpolation of the neighbours
    mid = sc.expected_frame(0.0, 0.125)
    lo, hi = sc.expected_frame(0.0, 0.0), sc.expected_frame(0.0, 0.25)
    np.testing.assert_allclose(mid, 0.5 * (lo + hi), rtol=1e-5, atol=1e-3)


def test_xy_stage_and_drift(bead_scene: SimScene) -> None:
    sc = bead_scene
    base = sc.expected_frame(0.0, 0.0)
    # +5 px of stage x: the field moves right, the content moves left by 5 columns
    moved = sc.expected_frame(0.0, 0.0, (5 * PX, 0.0))
    np.testing.assert_allclose(moved[:, :-5], base[:, 5:], rtol=1e-5, atol=1e-3)
    moved_y = sc.expected_frame(0.0, 0.0, (0.0, -3 * PX))
    np.testing.assert_allclose(moved_y[3:], base[:-3], rtol=1e-5, atol=1e-3)
    # a sample drift of +1 µm (deeper) is undone by focusing 1 µm deeper
    drift = DriftTrajectory.constant(z_um=1.0, xy_um=(2 * PX, 0.0))
    sc2 = SimScene(sc.sample, shape=(64, 64), drift=drift, z_range_um=(-3.0, 3.0), xy_margin_px=8)
    np.testing.assert_allclose(
        sc2.expected_frame(0.0, 1.0, (2 * PX, 0.0)), base, rtol=1e-5, atol=1e-3
    )
    assert sc2.focus_um(5.0, 1.0) == pytest.approx(0.0)


def test_focus_outside_table_is_clamped(bead_scene: SimScene) -> None:
    n0 = bead_scene.n_clamped
    with pytest.warns(RuntimeWarning, match="outside the table"):
        bead_scene._warned = False
        bead_scene.expected_frame(0.0, 50.0)
    assert bead_scene.n_clamped == n0 + 1


def test_worm_calcium_channel_changes_with_activity() -> None:
    w = worm(2, n_neurons=10, size_um=50.0)
    sc = SimScene(w, shape=(64, 64), channel=1, z_range_um=(-2.0, 2.0), xy_margin_px=8)
    ts = np.arange(0.0, 40.0, 0.25)
    act = np.array([w.activity(t) for t in ts])
    t_hi = float(ts[int(np.argmax(act.sum(axis=1)))])
    t_lo = float(ts[int(np.argmin(act.sum(axis=1)))])
    hi = sc.expected_frame(t_hi, 0.0)
    lo = sc.expected_frame(t_lo, 0.0)
    assert hi.sum() > lo.sum()
    # the nuclei channel is static
    n0 = sc.expected_frame(t_hi, 0.0, channel=0)
    n1 = sc.expected_frame(t_lo, 0.0, channel=0)
    np.testing.assert_array_equal(n0, n1)
    # the dynamic frame agrees with a direct render at that time (interior)
    ref = Renderer(sc.optics, shape=(64, 64)).render_plane(w, 0.0, channel=1, t_s=t_hi)
    inner = (slice(10, -10), slice(10, -10))
    rel = np.abs(hi[inner] - ref[inner]).sum() / ref[inner].sum()
    assert rel < 0.05


def test_drift_trajectories() -> None:
    assert DriftTrajectory.none().z_um(3.0) == 0.0
    lin = DriftTrajectory.linear(z_rate_um_s=0.5, xy_rate_um_s=(0.1, -0.2), z0_um=1.0)
    assert lin.z_um(4.0) == pytest.approx(3.0)
    assert lin.xy_um(10.0) == pytest.approx((1.0, -2.0))
    assert lin.z_bounds_um() is None
    sin = DriftTrajectory.sinusoidal(z_amplitude_um=2.0, period_s=4.0)
    assert sin.z_um(1.0) == pytest.approx(2.0)
    assert sin.z_bounds_um() == (-2.0, 2.0)
    rw = DriftTrajectory.random_walk(sigma_z_um=0.5, sigma_xy_um=0.2, seed=3)
    rw2 = DriftTrajectory.random_walk(sigma_z_um=0.5, sigma_xy_um=0.2, seed=3)
    zs = [rw.z_um(t) for t in (0.0, 5.0, 100.0, 5.0)]
    assert zs[1] == zs[3] == rw2.z_um(5.0)  # deterministic in t, whatever the query order
    assert rw.z_um(0.0) == 0.0
    ends = np.array([DriftTrajectory.random_walk(0.5, 0.0, seed=s).z_um(100.0) for s in range(40)])
    assert ends.std() == pytest.approx(0.5 * 10.0, rel=0.35)  # sigma * sqrt(t)
    paper = DriftTrajectory.paper(seed=1)
    z = np.array([paper.z_um(t) for t in np.linspace(0, 200, 400)])
    assert z.min() >= 2.0 and z.max() <= 10.0 and np.ptp(z) > 4.0
    # the default table covers stage (-12, 12) minus the drift bounds
    s = beads_flat(0, size_um=30.0, n=5)
    sc = SimScene(s, shape=(32, 32), drift=paper, build=False)
    assert sc.table_z_um[0] == pytest.approx(-22.0) and sc.table_z_um[-1] == pytest.approx(10.0)
