"""PSF-based (paper Eq. 2-3) and cross-correlation registration of z-stack pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.ndimage import shift as nd_shift

from live_deepz.analysis.registration import apply_shift, register
from live_deepz.cli import main
from live_deepz.errors import InputError


def _pair(move: tuple[float, float, float], seed: int = 0, noise: float = 0.01):
    """x: a sparse 'confocal' volume moved by ``move``; y = known kernel * unmoved x + noise."""
    rng = np.random.default_rng(seed)
    x = np.zeros((20, 48, 48))
    idx = tuple(rng.integers(0, n, 120) for n in x.shape)
    x[idx] = rng.uniform(0.5, 1.0, 120)
    x = gaussian_filter(x, (0.6, 1.0, 1.0), mode="wrap")
    y = gaussian_filter(x, (1.5, 2.0, 2.0), mode="wrap") + 0.02  # the 'wide-field' kernel
    y = y + noise * y.max() * rng.standard_normal(y.shape)
    conf = nd_shift(x, move, order=3, mode="grid-wrap")
    return y, conf


@pytest.mark.parametrize("method", ["psf", "xcorr"])
def test_known_kernel_and_shift(method: str) -> None:
    move = (1.6, -2.3, 3.4)
    wf, conf = _pair(move)
    res = register(wf, conf, method)
    err = np.abs(np.array(res.shift_zyx) + np.array(move))
    assert err[0] <= 0.5 and err[1] <= 0.5 and err[2] <= 0.5, res.shift_zyx
    # the result applied to the confocal stack aligns it (correlation improves)
    aligned = apply_shift(conf, res.shift_zyx)
    assert (
        np.corrcoef(aligned.ravel(), wf.ravel())[0, 1] > np.corrcoef(conf.ravel(), wf.ravel())[0, 1]
    )


def test_psf_kernel_profile_is_sharper_than_xcorr() -> None:
    wf, conf = _pair((0.0, 0.0, 0.0), seed=2)
    p = register(wf, conf, "psf")
    c = register(wf, conf, "xcorr")

    def width(r) -> float:
        prof = (r.profile_z - r.profile_z.min()) / np.ptp(r.profile_z)
        return float((prof > 0.5).sum())

    assert width(p) < width(c)


def test_bad_input() -> None:
    with pytest.raises(InputError, match="shape"):
        register(np.ones((4, 8, 8)), np.ones((4, 8, 9)))
    with pytest.raises(InputError, match="NaN"):
        bad = np.random.default_rng(0).random((4, 8, 8))
        bad[0, 0, 0] = np.nan
        register(bad, np.ones((4, 8, 8)) + bad * 0 + 1)
    with pytest.raises(InputError, match="method"):
        r = np.random.default_rng(1).random((2, 4, 8, 8))
        register(r[0], r[1], "sift")


@pytest.mark.slow
def test_cli_register(tmp_path) -> None:
    import tifffile

    wf, conf = _pair((-1.0, 2.0, 0.0), seed=1)
    tifffile.imwrite(tmp_path / "wf.tif", wf.astype(np.float32))
    tifffile.imwrite(tmp_path / "cf.tif", conf.astype(np.float32))
    out = tmp_path / "r.json"
    rc = main(
        [
            "register",
            str(tmp_path / "wf.tif"),
            str(tmp_path / "cf.tif"),
            "--json",
            str(out),
            "--plots",
            str(tmp_path / "plots"),
        ]
    )
    assert rc == 0
    d = json.loads(out.read_text())
    assert np.allclose(d["shift_zyx"], [1.0, -2.0, 0.0], atol=0.5)
    assert (tmp_path / "plots" / "registration_axial_profiles.png").stat().st_size > 1000
    assert main(["register", str(tmp_path / "wf.tif"), str(tmp_path / "nope.tif")]) == 1


@pytest.mark.slow
def test_simulated_widefield_confocal_pair() -> None:
    """Both modalities of one simulated brain slice, confocal moved by a known shift."""
    from live_deepz.sim.thick import ThickSampleParams, simulate_pair

    p = simulate_pair(ThickSampleParams(size_px=64, n_planes=16), 7, (1.3, -2.2, 1.6))
    truth = np.array(p["truth"]["align_shift_zyx"])
    res = register(p["widefield"], p["confocal"], "psf")
    assert np.all(np.abs(np.array(res.shift_zyx) - truth) <= 0.5), (res.shift_zyx, truth)
