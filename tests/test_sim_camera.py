"""Camera model: shot-noise statistics, read noise, gain/offset, clipping, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from live_deepz.sim.camera import CameraModel


def _electrons(cam: CameraModel, adu: np.ndarray) -> np.ndarray:
    return (adu.astype(np.float64) - cam.offset_adu) * cam.gain_e_per_adu


def test_shot_noise_variance_equals_mean() -> None:
    """Flat fields from 3 to 2000 e-: variance vs mean in electrons has slope 1 and
    intercept read_noise² (+ gain²/12 from rounding to ADU); Poisson and normal paths."""
    cam = CameraModel()
    rng = np.random.default_rng(0)
    exposure_ms = 10.0
    means, variances = [], []
    for lam in (3.0, 12.0, 40.0, 200.0, 2000.0):
        rate = np.full((192, 192), lam / (exposure_ms * 1e-3 * cam.qe), dtype=np.float32)
        e = _electrons(cam, cam.expose(rate, exposure_ms, rng))
        means.append(e.mean())
        variances.append(e.var())
        assert e.mean() == pytest.approx(lam, rel=0.01, abs=0.05)
        expected_var = lam + cam.read_noise_e**2 + cam.gain_e_per_adu**2 / 12
        assert e.var() == pytest.approx(expected_var, rel=0.04)
    slope, intercept = np.polyfit(means, variances, 1)
    assert slope == pytest.approx(1.0, abs=0.03)
    # the intercept is dominated by the largest level's statistical error; check loosely
    assert abs(intercept - cam.read_noise_e**2) < 30


def test_dark_frame_offset_and_read_noise() -> None:
    cam = CameraModel(read_noise_e=1.5, offset_adu=100.0, gain_e_per_adu=0.5)
    adu = cam.expose(np.zeros((256, 256), np.float32), 10.0, np.random.default_rng(1))
    assert adu.dtype == np.uint16
    assert adu.mean() == pytest.approx(100.0, abs=0.05)
    assert adu.std() == pytest.approx(1.5 / 0.5, rel=0.05)


def test_gain_saturation_and_bit_depth() -> None:
    cam = CameraModel(gain_e_per_adu=2.0, offset_adu=50.0, full_well_e=10000.0)
    rng = np.random.default_rng(2)
    rate = np.full((64, 64), 1000.0 / (1e-2 * cam.qe), np.float32)  # 1000 e- in 10 ms
    adu = cam.expose(rate, 10.0, rng).astype(np.float64)
    assert adu.mean() == pytest.approx(50 + 1000 / 2.0, rel=0.01)
    sat = cam.expose(np.full((8, 8), 1e12, np.float32), 10.0, rng)
    assert np.all(sat == 50 + 10000 / 2)
    small = CameraModel(bit_depth=12, full_well_e=1e9)
    assert small.expose(np.full((8, 8), 1e12, np.float32), 10.0, rng).max() == 4095
    assert np.all(cam.expected_frame(np.zeros((4, 4)), 10.0) == 50)


def test_seeded_and_out_buffer() -> None:
    cam = CameraModel()
    rate = np.random.default_rng(3).uniform(0, 1e4, (64, 64)).astype(np.float32)
    a = cam.expose(rate, 10.0, np.random.default_rng(7))
    out = np.zeros((64, 64), np.uint16)
    b = cam.expose(rate, 10.0, np.random.default_rng(7), out=out)
    assert b is out
    np.testing.assert_array_equal(a, b)
    c = cam.expose(rate, 10.0, np.random.default_rng(8))
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError):
        cam.expose(rate, 10.0, np.random.default_rng(7), out=np.zeros((3, 3), np.uint16))
    assert cam.to_dict()["qe"] == 0.8
