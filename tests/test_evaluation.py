"""``live_deepz.analysis.evaluation`` and ``live-deepz eval``: metrics, bead statistics,
the protocol (with a physics-oracle backend), the CLI end to end on a tiny random model, bad inputs.

Small images (96-128 px), a few Δz, one torch thread.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _recording_support import make_tiny_model

from live_deepz.analysis.evaluation import (
    EvalConfig,
    axial_fwhm,
    axial_peak_z,
    evaluate,
    image_metrics,
    isolated_mask,
    lateral_fwhm_matched,
    match_points,
    parse_sample_list,
    pearson,
    quadratic_peak,
    rmse,
    robust_summary,
    sample_for,
    ssim,
    write_plots,
)
from live_deepz.cli import main
from live_deepz.engine import Refocuser
from live_deepz.errors import DPMRangeError, InputError

pytestmark = pytest.mark.timeout(300)

PX = 0.325
FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models"))


# ----------------------------------------------------------------------------- metrics


def test_metrics_on_known_images() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((64, 64))
    m = image_metrics(a, a)
    assert m["ssim"] == pytest.approx(1.0)
    assert m["rmse"] == 0.0 and m["mae"] == 0.0 and m["mse"] == 0.0
    assert m["pearson"] == pytest.approx(1.0)
    # an offset: RMSE = MAE = the offset, Pearson still 1, SSIM below 1
    m2 = image_metrics(a + 0.1, a)
    assert m2["rmse"] == pytest.approx(0.1) and m2["mae"] == pytest.approx(0.1)
    assert m2["pearson"] == pytest.approx(1.0) and m2["ssim"] < 1.0
    assert pearson(a, -a) == pytest.approx(-1.0)
    assert rmse(np.zeros((8, 8)), np.full((8, 8), 2.0)) == pytest.approx(2.0)
    # SSIM falls with noise
    assert ssim(a + 0.3 * rng.standard_normal(a.shape), a) < ssim(a + 0.05, a) < 1.0
    assert math.isnan(pearson(np.ones((8, 8)), a[:8, :8]))


def test_metrics_refuse_bad_images() -> None:
    with pytest.raises(InputError, match="one shape"):
        image_metrics(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(InputError, match="finite"):
        image_metrics(np.full((8, 8), np.nan), np.zeros((8, 8)))
    with pytest.raises(InputError, match="2D"):
        image_metrics(np.zeros(8), np.zeros(8))


# ----------------------------------------------------------------------------- beads


def _gauss_beads(
    shape: tuple[int, int], rc: np.ndarray, sigma_px: float, amp: float = 1000.0
) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    img = np.full(shape, 100.0)
    for r, c in rc:
        img += amp * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * sigma_px**2))
    return img


def test_quadratic_peak_is_exact_for_a_parabola() -> None:
    x = np.arange(9.0)
    k, edge = quadratic_peak(-((x - 3.3) ** 2))
    assert k == pytest.approx(3.3) and not edge
    k, edge = quadratic_peak(x)  # increasing: the peak is not bracketed
    assert k == 8 and edge


def test_axial_localisation_on_a_synthetic_virtual_stack() -> None:
    """Beads whose brightness peaks at known z (Gaussian in z, σ 1 µm) on a 0.5 µm grid."""
    z = np.arange(-5.0, 5.01, 0.5)
    rc = np.array([[30.2, 30.7], [30.0, 70.0], [70.4, 50.0]])
    z_true = np.array([1.2, -2.35, 0.0])
    stack = np.zeros((len(z), 100, 100))
    for k, zk in enumerate(z):
        for (r, c), zt in zip(rc, z_true):
            w = math.exp(-((zk - zt) ** 2) / (2 * 1.0**2))
            stack[k] += w * (_gauss_beads((100, 100), np.array([[r, c]]), 1.5) - 100.0)
    zp, edge = axial_peak_z(stack, z, rc)
    assert not edge.any()
    np.testing.assert_allclose(zp, z_true, atol=0.06)
    # a peak outside the stack is reported at the edge, flagged
    zp2, edge2 = axial_peak_z(stack[:6], z[:6], rc[:1])
    assert edge2[0] and zp2[0] == pytest.approx(z[5])


def test_lateral_fwhm_reuses_the_calibration_fit_and_matches_truth() -> None:
    rc = np.array([[20.3, 20.6], [20.0, 60.2], [60.5, 40.4], [61.0, 75.0]])
    sigma = 1.6
    img = _gauss_beads((96, 96), rc, sigma)
    truth = np.vstack([rc, [[80.0, 15.0]]])  # a true bead with no signal: NaN
    f = lateral_fwhm_matched(img, PX, truth)
    np.testing.assert_allclose(f[:4], FWHM * sigma * PX, rtol=0.02)
    assert np.isnan(f[4])


def test_axial_fwhm_from_x_z_fits() -> None:
    z = np.arange(-5.0, 5.01, 0.5)
    rc = np.array([[30.0, 30.0], [60.0, 60.0]])
    sz = 1.1  # µm
    stack = np.stack(
        [
            math.exp(-(zk**2) / (2 * sz**2)) * (_gauss_beads((96, 96), rc, 1.5) - 100.0) + 100.0
            for zk in z
        ]
    )
    f = axial_fwhm(stack, z, rc)
    np.testing.assert_allclose(f, FWHM * sz, rtol=0.02)
    with pytest.raises(InputError, match="uniform"):
        axial_fwhm(stack[[0, 1, 3]], z[[0, 1, 3]], rc)


def test_matching_and_isolation() -> None:
    truth = np.array([[10.0, 10.0], [10.0, 40.0], [12.0, 44.0], [50.0, 50.0]])
    pts = np.array([[10.5, 10.4], [49.0, 50.5], [30.0, 30.0]])
    np.testing.assert_array_equal(match_points(pts, truth, 2.0), [0, -1, -1, 1])
    iso = isolated_mask(truth, (64, 64), min_separation_px=15, margin_px=5)
    np.testing.assert_array_equal(iso, [True, False, False, True])
    s = robust_summary([1.0, 2.0, 3.0, np.nan])
    assert s["n"] == 3 and s["median"] == 2.0 and s["iqr"] == pytest.approx(1.0)
    assert robust_summary([])["median"] is None


# ----------------------------------------------------------------------------- protocol


class OracleBackend:
    """Physics oracle: the noise-free plane at ``z0 + Δz`` in the input's units.

    ``z0`` is recognised among ``candidates`` by the best linear fit of the input to the
    noise-free frames; the same fit maps noise-free frames into the input's units.
    """

    def __init__(self, sample: Any, size: int, candidates: list[float], exposure_ms: float) -> None:
        from live_deepz.optics import Optics
        from live_deepz.sim import CameraModel, Renderer

        self.sample = sample
        self.renderer = Renderer(Optics(), (size, size))
        self.cam = CameraModel()
        self.exposure_ms = exposure_ms
        self.candidates = np.array(sorted(set(candidates)))
        self.clean = self._frames(self.candidates)
        self.calls = 0

    def _frames(self, z: np.ndarray) -> np.ndarray:
        rates = self.renderer.render_stack(self.sample, z)
        return np.stack([self.cam.mean_adu(r, self.exposure_ms) for r in rates])

    def infer(self, image: np.ndarray, dpms_net: np.ndarray, out: np.ndarray) -> None:
        self.calls += 1
        best = None
        for z0, c in zip(self.candidates, self.clean):
            a_mat = np.stack([c.ravel(), np.ones(c.size)], axis=1)
            coef, res, *_ = np.linalg.lstsq(a_mat, image.ravel().astype(float), rcond=None)
            r = float(res[0]) if len(res) else 0.0
            if best is None or r < best[0]:
                best = (r, z0, coef)
        assert best is not None
        _, z0, (a, b) = best
        dz = np.round(dpms_net[:, 0, 0].astype(float) * 10.0, 4)
        frames = self._frames(z0 + dz)
        out[...] = a * frames + b


@pytest.mark.parametrize("input_norm", ["stack", "self"])
def test_protocol_with_a_physics_oracle_passes_every_target(
    tmp_path: Path, input_norm: str
) -> None:
    from live_deepz.modelfile import load_model

    size = 128
    cfg = EvalConfig(
        samples=("beads-flat",),
        seed=0,
        size=size,
        dz_um=(-4.0, -2.0, 0.0, 2.0, 4.0),
        input_z_um=(0.0,),
        bead_offsets_um=(-2.0, 3.0),
        bead_half_range_um=3.0,
        bead_search_um=4.0,
        input_norm=input_norm,
        progress=False,
    )
    model = load_model(make_tiny_model(tmp_path))
    sample = sample_for("beads-flat", 0, size, model.card.optics_obj)
    # (the flat slide's PSF is symmetric about focus: offsets -2 and +3, not +-3, so that the
    # oracle can tell its inputs apart)
    oracle = OracleBackend(sample, size, [0.0, -2.0, 3.0], cfg.exposure_ms)
    res = evaluate(model, cfg, Refocuser(model, oracle))
    rep = res.report
    assert oracle.calls == 3
    beads = rep["samples"]["beads-flat"]["beads"]
    assert beads["n_isolated"] >= 4
    loc = beads["localisation"]
    assert loc["overall"]["median_abs_error_um"] < 0.25
    assert [p["input_offset_um"] for p in loc["per_offset"]] == [-2.0, 3.0]
    ratio = beads["lateral_fwhm_um"]["model_over_ground_truth_median"]
    assert ratio == pytest.approx(1.0, abs=0.1)
    assert beads["axial_fwhm_um"]["model_over_ground_truth_median"] == pytest.approx(1.0, abs=0.15)
    # the oracle is the noise-free truth: exact against the noise-free plane
    rows = rep["samples"]["beads-flat"]["curves"]["0"]["per_dz"]
    for r in rows:
        assert r["noise_free"]["model"]["rmse"] < 2e-3
    summary = rep["summary"]
    assert summary["targets"]["a_bead_localisation"]["pass"] is True
    assert summary["targets"]["b_ssim_above_baseline"]["pass"] is True
    assert summary["targets"]["c_lateral_fwhm"]["pass"] is True
    assert summary["targets"]["d_pearson_above_smoothed_input"]["pass"] is True
    assert summary["targets"]["e_sign"]["right_sign_fraction"] == 1.0
    assert summary["all_pass"] is True and summary["not_evaluated"] == []
    bins = loc["per_defocus_bin"]
    assert [b["abs_defocus_um"] for b in bins] == [[0, 3], [3, 6], [6, 10], [10, None]]
    assert sum(b["n_beads"] for b in bins) == 2 * beads["n_isolated"]
    snr = rep["samples"]["beads-flat"]["input_snr"]
    assert snr["bead_photons_median"] > 0 and snr["in_focus_peak_snr_median"] > 10
    json.dumps(rep, allow_nan=False)
    paths = write_plots(rep, res.montages, tmp_path / "plots")
    assert {p.name for p in paths} == {
        "beads-flat_curves.png",
        "beads-flat_montage.png",
        "beads-flat_fwhm.png",
        "beads-flat_localisation.png",
        "beads-flat_xz.png",
    }
    assert len(res.montages["beads-flat"]["bead_xz"]["model"]) == min(6, beads["n_isolated"])


class LookupBackend:
    """Stand-in for a perfect model on a measured stack: returns the stack's own planes."""

    def __init__(self, stack_norm: np.ndarray, z: np.ndarray) -> None:
        self.stack, self.z = stack_norm, z

    def infer(self, image: np.ndarray, dpms_net: np.ndarray, out: np.ndarray) -> None:
        k0 = int(np.argmin([np.abs(p - image).max() for p in self.stack]))
        for i, d in enumerate(dpms_net[:, 0, 0] * 10.0):
            out[i] = self.stack[int(np.argmin(np.abs(self.z - (self.z[k0] + d))))]


def test_evaluate_stack_on_a_measured_stack(tmp_path: Path) -> None:
    from scipy import ndimage

    from live_deepz.analysis.evaluation import evaluate_stack
    from live_deepz.modelfile import load_model
    from live_deepz.normalize import extended_depth_of_field, fit_normalization

    rng = np.random.default_rng(1)
    obj = np.zeros((64, 64))
    obj[rng.integers(8, 56, 30), rng.integers(8, 56, 30)] = 1.0
    z = np.arange(11) * 0.5
    stack = np.stack(
        [ndimage.gaussian_filter(obj, 1.0 + abs(zk - 2.5)) * 5000 + 100 for zk in z]
    ).astype(np.uint16)
    norm = fit_normalization(extended_depth_of_field(stack))
    model = load_model(make_tiny_model(tmp_path))
    res = evaluate_stack(
        model,
        stack,
        z,
        input_z_um=[2.5, 4.0],
        dz_um=[-2.0, -1.0, 0.0, 1.0, 2.0],
        refocuser=Refocuser(model, LookupBackend(norm.apply(stack), z)),
    )
    rep = res.report
    assert rep["stack"]["shape"] == [11, 64, 64]
    rows = rep["curves"]["2.5"]["per_dz"]
    assert [r["dz_um"] for r in rows] == [-2.0, -1.0, 0.0, 1.0, 2.0]
    for r in rows:
        assert r["model"]["ssim"] == pytest.approx(1.0) and r["model"]["rmse"] < 1e-6
        assert "noise_free" not in r
    base = {r["dz_um"]: r["baseline"]["ssim"] for r in rows}
    assert base[0.0] == pytest.approx(1.0) and base[2.0] < 0.99
    # input at 4.0 µm: the target 6.0 µm is not a plane of the stack, that Δz is skipped
    assert [r["dz_um"] for r in rep["curves"]["4"]["per_dz"]] == [-2.0, -1.0, 0.0, 1.0]
    assert rep["summary"]["ssim_above_baseline"]["2.5"]["failing_dz_um"] == []
    with pytest.raises(InputError, match="not a plane"):
        evaluate_stack(
            model, stack, z, [0.25], [0.0], refocuser=Refocuser(model, LookupBackend(stack, z))
        )


def test_config_and_sample_names_are_checked() -> None:
    assert parse_sample_list("beads, filaments,worm") == ("beads", "dense", "worm")
    assert parse_sample_list("beads-volume,beads_flat") == ("beads", "beads-flat")
    with pytest.raises(InputError, match="unknown sample 'cells'"):
        parse_sample_list("beads,cells")
    with pytest.raises(InputError, match="--size"):
        EvalConfig(size=8)
    with pytest.raises(InputError, match="dz_um"):
        EvalConfig(dz_um="a:b")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="normalisation"):
        EvalConfig(input_norm="edf")
    with pytest.raises(InputError, match="--bead-thickness"):
        EvalConfig(bead_thickness_um=0.0)
    from live_deepz.optics import Optics

    optics = Optics()
    thin = sample_for("beads", 0, 64, optics)
    slab = sample_for("beads", 0, 64, optics, bead_thickness_um=10.0)
    assert thin.params["thickness_um"] == 8.0 and slab.params["thickness_um"] == 10.0


# ----------------------------------------------------------------------------- CLI


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(["eval", *argv])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def test_eval_cli_end_to_end_on_a_tiny_model(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    plots = tmp_path / "plots"
    rc, text = _run(
        capsys,
        "--model",
        str(tiny_model),
        "--samples",
        "beads,worm,dense",
        "--size",
        "96",
        "--seed",
        "3",
        "--dz=-2:2:2",
        "--input-z=0",
        "--bead-offsets=-3,3",
        "--backend",
        "torch",
        "--json",
        str(out),
        "--plots",
        str(plots),
        "--quiet",
    )
    assert rc == 0, text
    assert "targets:" in text and "(a) bead localisation" in text
    rep = json.loads(out.read_text())
    assert rep["format"] == "live-deepz-eval"
    assert rep["model"]["name"] == "tiny" and rep["model"]["weights_sha256"]
    assert set(rep["samples"]) == {"beads", "worm", "dense"}
    assert rep["protocol"]["sample_seed"] == 1003
    for name, s in rep["samples"].items():
        rows = s["curves"]["0"]["per_dz"]
        assert [r["dz_um"] for r in rows] == [-2.0, 0.0, 2.0]
        for r in rows:
            for who in ("model", "baseline"):
                assert set(r[who]) == {"ssim", "rmse", "mae", "mse", "pearson"}
            assert set(r["noise_free"]) == {"model", "baseline", "baseline_smoothed"}
        assert ("beads" in s) == (name == "beads")
    b = rep["samples"]["beads"]["beads"]
    for key in ("lateral_fwhm_um", "axial_fwhm_um", "localisation", "per_bead"):
        assert key in b
    assert set(rep["summary"]["targets"]) == {
        "a_bead_localisation",
        "b_ssim_above_baseline",
        "c_lateral_fwhm",
        "d_pearson_above_smoothed_input",
        "e_sign",
    }
    # a random network does not refocus: target (b) fails, and the report says where
    assert rep["summary"]["targets"]["b_ssim_above_baseline"]["pass"] is False
    assert rep["summary"]["all_pass"] is False
    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert "beads_curves.png" in pngs and "worm_montage.png" in pngs
    assert "dense_curves.png" in pngs and "beads_localisation.png" in pngs
    assert "worm_xz.png" not in pngs
    assert all((plots / p).stat().st_size > 1000 for p in pngs)
    # --fail-on-targets turns failed targets into exit status 3
    rc, _ = _run(
        capsys,
        "--model",
        str(tiny_model),
        "--samples",
        "worm",
        "--size",
        "64",
        "--dz=-2,2",
        "--input-z=0",
        "--backend",
        "torch",
        "--quiet",
        "--fail-on-targets",
    )
    assert rc == 3


def test_eval_cli_refuses_bad_inputs(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, text = _run(capsys, "--model", str(tiny_model), "--samples", "beads,cells", "--quiet")
    assert rc == 1 and "unknown sample 'cells'" in text and "beads, worm, dense" in text
    rc, text = _run(capsys, "--model", str(tiny_model), "--dz=-15:15:5", "--quiet")
    assert rc == 1
    assert "outside the model's trained axial range" in text and "give --dz within" in text
    rc, text = _run(capsys, "--model", str(tiny_model), "--size", "8", "--quiet")
    assert rc == 1 and "--size" in text
    rc, text = _run(capsys, "--model", str(tiny_model), "--dz=", "--quiet")
    assert rc == 1 and "dz" in text
    rc, text = _run(capsys, "--model", "no-such-model", "--quiet")
    assert rc == 1 and "no model named" in text


def test_evaluate_refuses_out_of_range_dz(tmp_path: Path) -> None:
    from live_deepz.modelfile import load_model

    model = load_model(make_tiny_model(tmp_path))
    with pytest.raises(DPMRangeError, match=r"within \[-10, \+10\]"):
        evaluate(model, EvalConfig(dz_um=(-12.0, 0.0), progress=False))


def test_summary_never_says_all_pass_when_a_target_was_not_evaluated() -> None:
    from live_deepz.analysis.evaluation._run import _summary
    from live_deepz.commands.eval import summary_lines

    # a worm-only evaluation whose one evaluated target passes: the bead targets are not
    # evaluated, so the summary must not claim that all targets pass
    row = {"dz_um": 2.0, "model": {"ssim": 0.9, "pearson": 0.9}}
    row["baseline"] = {"ssim": 0.5, "pearson": 0.5}
    row["baseline_smoothed"] = {"ssim": 0.6, "pearson": 0.6}
    curves = {"0": {"per_dz": [row], "pearson_not_above_smoothed_dz_um": []}}
    summary = _summary(
        {"worm": {"curves": curves}}, EvalConfig(samples=("worm",), input_z_um=(0.0,))
    )
    assert summary["targets"]["b_ssim_above_baseline"]["pass"] is True
    assert summary["targets"]["a_bead_localisation"]["pass"] is None
    assert summary["all_pass"] is not True and summary["evaluated_pass"] is True
    assert "a_bead_localisation" in summary["not_evaluated"]
    report = {"model": {"name": "m", "path": "p", "z_range_um": [-10, 10]}, "samples": {}}
    report["summary"] = summary
    text = "\n".join(summary_lines(report))
    assert "all targets: PASS" not in text and "not evaluated" in text


def test_montage_shows_the_chosen_input_beside_the_noise_free_scan(tmp_path: Path) -> None:
    from live_deepz.engine import create_backend
    from live_deepz.modelfile import load_model

    model = load_model(make_tiny_model(tmp_path))
    cfg = EvalConfig(
        samples=("dense",),
        size=64,
        dz_um=(-2.0, 0.0, 2.0),
        input_z_um=(-2.0, 2.0),
        montage_z_um=2.0,
        progress=False,
    )
    backend = create_backend("torch", model.generator, precision="fp32", device="cpu")
    res = evaluate(model, cfg, Refocuser(model, backend))
    mont = res.montages["dense"]
    assert mont["input_z_um"] == 2.0 and mont["dz_um"] == [-2.0, 0.0, 2.0]
    assert mont["noise_free"].shape == mont["model"].shape == mont["ground_truth"].shape
    # the noise-free planes are the scan's without its camera noise
    assert np.std(mont["noise_free"] - mont["ground_truth"]) > 0
    paths = write_plots(res.report, res.montages, tmp_path / "plots")
    assert "dense_montage.png" in {p.name for p in paths}
    with pytest.raises(InputError, match="--montage-z 1 is not one of the input positions"):
        EvalConfig(montage_z_um=1.0)
