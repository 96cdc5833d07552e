"""Sample generators: seeded, geometry as advertised, worm channels and activity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from live_deepz.sim import samples
from live_deepz.sim.samples import (
    beads_cylinder,
    beads_flat,
    beads_tilted,
    beads_volume,
    filaments,
    worm,
)

SMALL = {"size_um": 60.0}


@pytest.mark.parametrize(
    "gen",
    [
        lambda s: beads_flat(s, **SMALL),
        lambda s: beads_tilted(s, **SMALL),
        lambda s: beads_cylinder(s, **SMALL),
        lambda s: beads_volume(s, thickness_um=6.0, **SMALL),
        lambda s: worm(s, n_neurons=12, **SMALL),
        lambda s: filaments(s, n_filaments=5, **SMALL),
    ],
)
def test_seeded_reproducible(gen) -> None:  # type: ignore[no-untyped-def]
    a, b, c = gen(3), gen(3), gen(4)
    np.testing.assert_array_equal(a.points_zyx_um, b.points_zyx_um)
    np.testing.assert_array_equal(a.brightness, b.brightness)
    assert a.key() == b.key() != c.key()
    assert a.n_points > 0 and len(a.brightness) == len(a.channel) == len(a.depth_um)
    assert np.all(a.depth_um >= 0)
    t = a.truth()
    assert t["name"] == a.name and "objects" in t


def test_tilted_beads_on_plane() -> None:
    s = beads_tilted(1, tilt_deg=1.5, azimuth_deg=30.0, size_um=100.0)
    c = np.asarray(s.objects["centres_zyx_um"])
    t, az = math.tan(math.radians(1.5)), math.radians(30.0)
    np.testing.assert_allclose(
        c[:, 0], t * (c[:, 2] * math.cos(az) + c[:, 1] * math.sin(az)), atol=1e-4
    )
    assert np.ptp(c[:, 0]) > 1.0
    # surface beads keep their depth below the (tilted) glass: the bead radius
    np.testing.assert_allclose(s.objects["depth_um"], 0.15)
    assert s.point_like and s.n_points == 6 * len(c)  # 6-point ball cubature


def test_cylinder_beads_on_tube() -> None:
    r = 3600.0
    s = beads_cylinder(2, radius_um=r, size_um=200.0)
    c = np.asarray(s.objects["centres_zyx_um"])
    d = c[:, 2]  # axis along y (axis_deg = 90): the distance from it is |x|
    np.testing.assert_allclose(c[:, 0], r - np.sqrt(r**2 - d**2), atol=2e-5)
    assert np.all(c[:, 0] >= 0) and c[:, 0].max() > 1.0  # sag ~ x²/2R


def test_volume_and_filaments_inside_slab() -> None:
    v = beads_volume(0, thickness_um=10.0, size_um=50.0, gap_um=1.0)
    c = np.asarray(v.objects["centres_zyx_um"])
    assert np.all(np.abs(c[:, 0]) <= 5.0)
    assert v.ref_depth_um == pytest.approx(6.0)
    np.testing.assert_allclose(v.objects["depth_um"], 6.0 + c[:, 0], atol=1e-4)
    f = filaments(0, n_filaments=6, thickness_um=4.0, size_um=50.0)
    assert np.all(np.abs(f.points_zyx_um[:, 0]) <= 2.0 + 1e-9)
    steps = np.linalg.norm(np.diff(f.points_zyx_um[f.object_id == 0], axis=0), axis=1)
    assert np.median(steps) == pytest.approx(0.15, rel=0.05)


def test_worm_channels_and_activity() -> None:
    w = worm(5, n_neurons=30, size_um=120.0)
    assert w.n_channels == 2 and w.channel_names == ("nuclei", "calcium")
    n = len(w.objects["centres_zyx_um"])
    assert 20 <= n <= 30
    ts = np.arange(0.0, 60.0, 0.5)
    act = np.array([w.activity(t) for t in ts])  # (T, n_neurons)
    assert act.shape == (len(ts), n)
    assert np.all(act >= 0) and act.max() > 0.3
    active = np.asarray(w.objects["active"])
    assert np.all(act[:, ~active] == 0)
    assert np.any(act[:, active].std(axis=0) > 0.05)  # traces vary in time
    # channel 0 is static, channel 1 follows the activity
    e0a, e0b = w.emitters(0, 0.0), w.emitters(0, 30.0)
    np.testing.assert_array_equal(e0a.weight, e0b.weight)
    t_peak = ts[int(np.argmax(act.max(axis=1)))]
    e1 = w.emitters(1, t_peak)
    base = w.emitters(1, None)
    assert e1.weight.sum() > base.weight.sum()
    # neurons are balls of 1-1.5 µm radius spread in depth around the mid-plane
    c = np.asarray(w.objects["centres_zyx_um"])
    assert np.ptp(c[:, 0]) > 5.0
    assert min(w.objects["radius_um"]) >= 1.0
    assert max(w.objects["radius_um"]) <= 1.5


def test_worm_motion_and_generators_map() -> None:
    w = worm(0, n_neurons=5, size_um=60.0, motion=True)
    assert w.offset_um(0.0) != w.offset_um(1.0)
    e = w.emitters(0, 1.0)
    dz, _, dx = w.offset_um(1.0)
    base = w.emitters(0, None)
    np.testing.assert_allclose(e.x_um - base.x_um, dx)
    np.testing.assert_allclose(e.depth_um - base.depth_um, dz)  # embedded: depth follows z
    assert set(samples.GENERATORS) >= {"beads", "beads-tilted", "worm", "filaments"}
