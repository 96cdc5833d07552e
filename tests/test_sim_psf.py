"""The vectorial PSF: sign convention, axial asymmetry, energy, caches, sub-pixel kernels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from live_deepz.optics import Optics
from live_deepz.sim import psf as psf_mod
from live_deepz.sim.psf import PSFModel

AIR_WATER = Optics()  # 20x/0.75 air objective into water (the paper's)
MATCHED = Optics(na=0.75, immersion_ri=1.33, sample_ri=1.33)  # water objective into water
OIL_WATER = Optics(na=1.2, immersion_ri=1.515, sample_ri=1.33)


def test_focal_shift_sign_air_into_water() -> None:
    """Air objective into water: a deep emitter looks shallower than it is.

    Geometric optics bounds the stage travel per µm of depth by the marginal-ray ratio
    tan(theta_s)/tan(theta_i) = 0.60 and the paraxial ratio ni/ns = 0.75; with the wrong
    sign for psfmodels' zv the shift would come out negative (or > 1).
    """
    m = PSFModel(AIR_WATER)
    na, ni, ns = AIR_WATER.na, AIR_WATER.immersion_ri, AIR_WATER.sample_ri
    marginal = math.tan(math.asin(na / ns)) / math.tan(math.asin(na / ni))
    paraxial = ni / ns
    ratio = float(m.focus_shift_um(10.0)) / 10.0
    assert marginal < ratio < paraxial
    assert ratio == pytest.approx(0.689, abs=0.01)
    # best-focus positions of emitters inside a water sample (flat interface, reference
    # plane 10 µm deep): deeper emitters are in focus at larger stage positions
    f = m.best_focus_position_um([-4.0, 0.0, 4.0], [6.0, 10.0, 14.0], ref_depth_um=10.0)
    assert f[1] == pytest.approx(0.0, abs=1e-6)
    assert f[0] < 0 < f[2]
    assert f[2] == pytest.approx(4.0 * ratio, rel=0.02)


def test_focal_shift_matched_and_oil() -> None:
    """Matched indices: no focal shift. Oil into water (ni > ns): the shift exceeds 1."""
    assert float(PSFModel(MATCHED).focus_shift_um(8.0)) == pytest.approx(8.0, abs=0.03)
    oil = float(PSFModel(OIL_WATER).focus_shift_um(6.0)) / 6.0
    assert oil > 1.05


def test_surface_emitters_focus_one_to_one() -> None:
    """A tilted/curved slide moves the interface: the focus follows z 1:1."""
    m = PSFModel(AIR_WATER)
    z = np.array([-2.0, 0.0, 3.0])
    f = m.best_focus_position_um(z, np.full(3, 0.15), ref_depth_um=0.15)
    np.testing.assert_allclose(f, z, atol=1e-9)


def test_axial_asymmetry_with_index_mismatch() -> None:
    """Deep emitter under mismatch: the on-axis tail extends toward u > 0 (focus deeper
    than the emitter, toward the paraxial focus); design coverslip and matched indices:
    symmetric."""
    u = [-2.0, 0.0, 2.0]
    ideal = PSFModel(AIR_WATER, coverslip_um=170.0)
    c = ideal.psf(u, depth_um=10.0, nx=31)[:, 15, 15]
    assert c[1] > c[0] and c[1] > c[2]
    assert c[2] / c[0] > 2.0  # measured ~3.8
    shallow = ideal.psf(u, depth_um=0.0, nx=31)[:, 15, 15]
    assert shallow[2] / shallow[0] == pytest.approx(1.0, abs=0.05)
    matched = PSFModel(MATCHED, coverslip_um=170.0).psf(u, depth_um=10.0, nx=31)[:, 15, 15]
    assert matched[2] / matched[0] == pytest.approx(1.0, abs=0.05)


def test_default_coverslip_makes_surface_beads_asymmetric() -> None:
    """The default 185 µm coverslip (designed 170 µm): a bead *on* the coverslip carries the
    sign of its defocus, with the same sense as the index mismatch (measured ratio ~3.6), and
    the focal-shift slope is unchanged (the surface focus offset is subtracted)."""
    m = PSFModel(AIR_WATER)
    assert m.coverslip_um == 185.0
    c = m.psf([-2.0, 0.0, 2.0], depth_um=0.0, nx=31)[:, 15, 15]
    assert c[1] > c[0] and c[1] > c[2]
    assert c[2] / c[0] > 2.0
    assert float(m.focus_shift_um(0.0)) == pytest.approx(0.0, abs=1e-9)
    assert float(m.focus_shift_um(10.0)) / 10.0 == pytest.approx(0.689, abs=0.01)
    assert m.key != PSFModel(AIR_WATER, coverslip_um=170.0).key
    with pytest.raises(ValueError, match="coverslip_um"):
        PSFModel(AIR_WATER, coverslip_um=0.0)


def test_energy_conserved_across_defocus() -> None:
    """Raw (unnormalised) energy in a large window barely changes with defocus, and every
    normalised slice sums to 1."""
    m = PSFModel(AIR_WATER)
    zv0 = m._best_zv(5.0)
    u = np.array([0.0, 3.0, -3.0, 6.0])
    raw = m._raw(zv0 + u, 5.0, 81, AIR_WATER.pixel_size_um, 3)  # 26 µm window
    e = raw.sum(axis=(1, 2))
    np.testing.assert_allclose(e / e[0], 1.0, atol=0.03)
    p = m.psf(u, depth_um=5.0)
    np.testing.assert_allclose(p.sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert p[0].max() > 10 * p[3].max()  # focus is sharp, defocus spreads


def test_kernel_table_and_phases() -> None:
    m = PSFModel(AIR_WATER)
    t = m.table(0.0, 3.0)
    assert t.nodes[0] <= -3.0 and t.nodes[-1] >= 3.0
    np.testing.assert_allclose(t.nodes, -t.nodes[::-1], atol=1e-9)
    i0 = int(np.argmin(np.abs(t.nodes)))
    k = t.kernel(i0)
    assert k.shape[0] % 2 == 1 and k.sum() == pytest.approx(1.0, abs=1e-5)
    ph = t.phase_kernels(i0)
    assert ph is not None and ph.shape[:2] == (3, 3)
    np.testing.assert_allclose(ph[1, 1], k)
    # the (0, +1) phase is the emitter 1/3 px to the right: centroid moves by ~1/3 px
    n = k.shape[0]
    xs = np.arange(n) - n // 2
    cx = float((ph[1, 2].sum(axis=0) * xs).sum() / ph[1, 2].sum())
    cy = float((ph[1, 2].sum(axis=1) * xs).sum() / ph[1, 2].sum())
    assert cx == pytest.approx(1 / 3, abs=0.03)
    assert cy == pytest.approx(0.0, abs=1e-3)
    # far nodes have no phases, bracket interpolates linearly
    far = int(np.argmax(t.nodes))
    assert t.phase_kernels(far) is None
    i, w = t.bracket(0.05)
    assert t.nodes[i] <= 0.05 <= t.nodes[i + 1] and 0 <= w <= 1


def test_disk_cache_roundtrip(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LIVE_DEEPZ_CACHE", str(tmp_path))
    psf_mod.clear_memory_cache()
    m = PSFModel(AIR_WATER)
    a = m.psf([0.0, 1.0], depth_um=2.0, nx=15)
    files = list((tmp_path / "psf").glob("*.npz"))
    assert files, "the PSF should be cached on disk"
    with np.load(files[0], allow_pickle=False) as z:  # plain npz, no pickle
        assert z.files
    psf_mod.clear_memory_cache()
    b = m.psf([0.0, 1.0], depth_um=2.0, nx=15)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (2, 15, 15)
    # another optics: another key, another file
    PSFModel(MATCHED).psf([0.0], depth_um=2.0, nx=15)
    assert len(list((tmp_path / "psf").glob("*.npz"))) == len(files) + 1
    psf_mod.clear_memory_cache()
