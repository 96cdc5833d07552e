"""Real data: "train on your own microscope" on one half of a measured wide-field z-stack and
evaluate refocusing on the other half against the measured planes; plus a PSF realism check.

Data (read from ``../shared/data/real/``, see its PROVENANCE.md; skipped cleanly when absent):

* ``widefield_dapi_nuclei_z300nm_x130nm_na1.45.tif``: 40 × 201 × 101 uint16, a DAPI nucleus,
  130 nm pixels, 0.3 µm steps, NA 1.45 oil (n 1.512), 461 nm emission.
* ``psf_wl520nm_z300nm_x130nm_na0.85_n1.0.tif``: a measured bead PSF, 25 × 256 × 256,
  NA 0.85 air, 520 nm, 130 nm pixels, 0.3 µm steps, focus at plane 12.

**Training/evaluation split.** The stack is transposed (Y ↔ X; a pure relabelling, the
trainer augments with flips/rotations anyway) so that its long 201 px axis runs along x,
written as an OME-TIFF (0.13 µm pixels, 0.3 µm steps) and trained with the ordinary CLI,
``live-deepz train --holdout-right 0.5`` (patch 32: the 100 × 101 px training half then
holds 6 regions, 5 for training and 1 for validation (patch 64 gives 1 + 1); ±4.5 µm around
each region's sharpest plane, so DPMs up to ±9 µm; width 0.25 and 4000 L1 steps, about
10 min on a CPU with one torch thread). The right half (never seen by training or
validation) is then aligned (the training pipeline's
:func:`~live_deepz.training.pairs.align_planes`) and evaluated with
:func:`live_deepz.analysis.evaluation.evaluate_stack`: the measured planes at the sharpest plane
and ±1.5 µm from it are the single inputs; each is refocused by Δz (multiples of the 0.3 µm
step) and compared with the measured plane at z0 + Δz (SSIM, RMSE, MAE, Pearson), side by
side with the unrefocused input. The normalisation is the paper's, fitted on the EDF image of
the held-out half.

**PSF realism check.** The measured PSF's axial asymmetry, ``A(u) = (p(+u) − p(−u)) /
(p(+u) + p(−u))`` of the on-axis peak of each background-subtracted, sum-normalised slice
about the profile's own (sub-plane) peak, and the same for the RMS radius, against the
simulator's vectorial PSF for the same optics (NA 0.85 air, 520 nm, 130 nm pixels) at
emitter depths 0, 2, 5 and 10 µm in water. The file does not say which way the stage moved,
so only ``|A|`` is compared; the on-axis axial FWHM is reported too.

Results: ``benchmarks/results/real_widefield.json`` and ``real_widefield.png``,
``real_widefield_montage.png``, ``real_psf_asymmetry.png``.

Usage::

    python benchmarks/bench_real_widefield.py                  # ~10-15 min on 2 shared cores
    python benchmarks/bench_real_widefield.py --steps 200      # a quick smoke run
    python benchmarks/bench_real_widefield.py --skip-train --model runs/real_widefield/model
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "real"
STACK = DATA / "widefield_dapi_nuclei_z300nm_x130nm_na1.45.tif"
PSF = DATA / "psf_wl520nm_z300nm_x130nm_na0.85_n1.0.tif"
RESULTS = REPO / "benchmarks" / "results"

PIXEL_UM, Z_STEP_UM = 0.13, 0.3
OPTICS = {
    "na": 1.45,
    "wavelength_um": 0.461,
    "pixel_size_um": PIXEL_UM,
    "immersion_ri": 1.512,
    "sample_ri": 1.512,
}
"""From the deconwolf demo makefile; the sample index is not given (assumed matched)."""


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- training


def train(args: argparse.Namespace, work: Path) -> tuple[Path, dict[str, Any]]:
    import tifffile

    from live_deepz.cli import main
    from live_deepz.io import write_ome_tiff

    raw = np.asarray(tifffile.imread(STACK))
    data = np.ascontiguousarray(raw.transpose(0, 2, 1))  # (Z, 101, 201): long axis along x
    tif = write_ome_tiff(
        work / "dapi_transposed.ome.tif",
        data,
        axes="ZYX",
        pixel_size_um=PIXEL_UM,
        z_step_um=Z_STEP_UM,
        extra_metadata={"source": STACK.name, "note": "transposed (Y <-> X)"},
    )
    out = Path(args.model_dir)
    argv = [
        "train",
        "--data",
        str(tif),
        "-o",
        str(out),
        "--holdout-right",
        "0.5",
        "--patch",
        str(args.patch),
        "--z-half-range",
        str(args.z_half_range),
        "--width",
        str(args.width),
        "--recipe",
        args.recipe,
        "--steps",
        str(args.steps),
        *(["--region", str(args.patch)] if args.recipe == "fast" else []),
        "--batch",
        str(args.batch),
        "--val-every",
        str(args.val_every),
        "--na",
        str(OPTICS["na"]),
        "--wavelength-um",
        str(OPTICS["wavelength_um"]),
        "--pixel-size-um",
        str(PIXEL_UM),
        "--immersion-ri",
        str(OPTICS["immersion_ri"]),
        "--sample-ri",
        str(OPTICS["sample_ri"]),
        "--device",
        "cpu",
        "--seed",
        "0",
        "--cache",
        str(work / "cache"),
        "--overwrite",
    ]
    if args.quiet:
        argv.append("--quiet")
    _say("live-deepz " + " ".join(argv))
    t0 = time.perf_counter()
    rc = main(argv)
    if rc != 0:
        raise SystemExit(f"training failed with status {rc}")
    return out, {"command": "live-deepz " + " ".join(argv), "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- evaluation


def held_out_half() -> tuple[np.ndarray, np.ndarray, int]:
    """The right half (as ``--holdout-right 0.5`` splits it) of the transposed stack, aligned."""
    import tifffile

    from live_deepz.training.pairs import align_planes

    data = np.asarray(tifffile.imread(STACK)).transpose(0, 2, 1)
    w = data.shape[2]
    xb = round(w * (1 - 0.5))
    test = np.ascontiguousarray(data[:, :, xb:])
    aligned, _ = align_planes(test)
    z = np.arange(test.shape[0]) * Z_STEP_UM
    return aligned, z, xb


def evaluate_real(model_path: Path, args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    from live_deepz.analysis.evaluation import evaluate_stack
    from live_deepz.modelfile import load_model

    model = load_model(model_path)
    stack, z, xb = held_out_half()
    sharp = int(np.argmax([stack[k].std() for k in range(stack.shape[0])]))
    lo, hi = (float(v) for v in model.card.z_range_um)
    off = round(args.input_offset_um / Z_STEP_UM)
    inputs = [z[k] for k in (sharp - off, sharp, sharp + off) if 0 <= k < len(z)]
    n = int(np.floor(args.dz_max_um / Z_STEP_UM + 1e-9))
    dz = [round(k * Z_STEP_UM, 6) for k in range(-n, n + 1, args.dz_every)]
    dz = [d for d in dz if lo - 1e-6 <= d <= hi + 1e-6]
    from live_deepz.engine import Refocuser, create_backend

    backend = create_backend("auto", model.generator, precision="fp32", device="cpu")
    res = evaluate_stack(model, stack, z, inputs, dz, refocuser=Refocuser(model, backend))
    rep = res.report
    rep["held_out"] = {
        "columns_of_transposed_stack": [xb, int(xb + stack.shape[2])],
        "rows_of_original_stack": [xb, int(xb + stack.shape[2])],
        "shape": list(stack.shape),
        "sharpest_plane": sharp,
        "sharpest_z_um": float(z[sharp]),
        "inputs_relative_to_sharpest_um": [round(v - z[sharp], 6) for v in inputs],
    }
    return rep, res.montages["stack"]


# --------------------------------------------------------------------------- PSF check


def _profiles(psf: np.ndarray, centre: tuple[int, int], radius_px: int) -> dict[str, np.ndarray]:
    """On-axis peak (3×3 mean) and RMS radius of each sum-normalised slice within a disc."""
    nz, h, w = psf.shape
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2
    disc = r2 <= radius_px**2
    peak, rms = np.zeros(nz), np.zeros(nz)
    cy, cx = centre
    for k in range(nz):
        s = np.clip(psf[k], 0, None) * disc
        s = s / s.sum()
        peak[k] = s[cy - 1 : cy + 2, cx - 1 : cx + 2].mean()
        rms[k] = np.sqrt((s * r2).sum())
    return {"peak": peak, "rms_radius_px": rms}


def _fwhm_1d(z: np.ndarray, p: np.ndarray) -> float:
    """Full width at half maximum of a single-peaked profile (linear interpolation)."""
    k = int(np.argmax(p))
    half = p[k] / 2.0
    lo = k
    while lo > 0 and p[lo - 1] > half:
        lo -= 1
    hi = k
    while hi < len(p) - 1 and p[hi + 1] > half:
        hi += 1
    if lo == 0 or hi == len(p) - 1:
        return float("nan")
    zl = np.interp(half, [p[lo - 1], p[lo]], [z[lo - 1], z[lo]])
    zr = np.interp(half, [p[hi + 1], p[hi]], [z[hi + 1], z[hi]])
    return float(zr - zl)


def _asymmetry(
    z: np.ndarray, p: np.ndarray, u: np.ndarray, zp: float | None = None
) -> tuple[np.ndarray, float]:
    """``A(u) = (p(zp + u) - p(zp - u)) / (p(zp + u) + p(zp - u))`` about ``zp`` (default: the
    sub-plane peak of ``p``, quadratic vertex), by linear interpolation; and ``zp``."""
    from live_deepz.analysis.evaluation import quadratic_peak

    if zp is None:
        k, _ = quadratic_peak(p)
        zp = float(np.interp(k, np.arange(len(z)), z))
    plus = np.interp(zp + u, z, p)
    minus = np.interp(zp - u, z, p)
    return np.asarray((plus - minus) / (plus + minus)), zp


def psf_check() -> dict[str, Any]:
    import tifffile

    from live_deepz.optics import Optics
    from live_deepz.sim.psf import PSFModel

    meas = np.asarray(tifffile.imread(PSF), dtype=np.float64)
    nz = meas.shape[0]
    bg = float(np.median(np.concatenate([meas[:, :16].ravel(), meas[:, -16:].ravel()])))
    meas = meas - bg
    focus = 12  # the file's stated focus plane
    cy, cx = np.unravel_index(int(np.argmax(meas[focus])), meas[focus].shape)
    radius = 40  # px = 5.2 µm: the blur disc at 3.6 µm defocus (NA 0.85) is ~6 µm across
    mp = _profiles(meas, (int(cy), int(cx)), radius)
    zm = (np.arange(nz) - focus) * Z_STEP_UM
    u = np.round(np.arange(1, 12) * Z_STEP_UM, 6)  # 0.3 .. 3.3 µm (inside both ends)
    am, zpm = _asymmetry(zm, mp["peak"], u)
    ar, _ = _asymmetry(zm, mp["rms_radius_px"], u, zpm)
    out: dict[str, Any] = {
        "measured": {
            "file": PSF.name,
            "background": bg,
            "centre_yx_px": [int(cy), int(cx)],
            "peak_z_um_from_plane_12": zpm,
            "axial_fwhm_on_axis_um": _fwhm_1d(zm, mp["peak"]),
            "abs_asymmetry_peak": np.abs(am).tolist(),
            "abs_asymmetry_rms_radius": np.abs(ar).tolist(),
            "z_um": zm.tolist(),
            "peak_profile": (mp["peak"] / mp["peak"].max()).tolist(),
        },
        "defocus_um": u.tolist(),
        "simulated": {},
        "note": "A(u) = (p(zp+u) - p(zp-u)) / (p(zp+u) + p(zp-u)) of the on-axis peak p of each "
        "background-subtracted, sum-normalised slice (3x3 px mean), about the profile's own "
        "peak zp; the stage direction of the measured file is unknown, so |A| is compared. "
        "Depth = emitter depth below the coverslip in water (n 1.33); at depth 0 the "
        "simulator's PSF has only the residual spherical aberration of its 185 µm coverslip "
        "(objective designed for 170 µm; PSFModel.coverslip_um).",
    }
    optics = Optics(
        na=0.85, wavelength_um=0.52, pixel_size_um=PIXEL_UM, immersion_ri=1.0, sample_ri=1.33
    )
    model = PSFModel(optics)
    zz = np.round(np.arange(-12, 13) * Z_STEP_UM, 6)
    for depth in (0.0, 2.0, 5.0, 10.0):
        sim = model.psf(zz, depth_um=depth, nx=2 * radius + 1).astype(np.float64)
        sp = _profiles(sim, (radius, radius), radius)
        a_s, zps = _asymmetry(zz, sp["peak"], u)
        a_r, _ = _asymmetry(zz, sp["rms_radius_px"], u, zps)
        out["simulated"][f"depth_{depth:g}um"] = {
            "peak_z_um": zps,
            "axial_fwhm_on_axis_um": _fwhm_1d(zz, sp["peak"]),
            "abs_asymmetry_peak": np.abs(a_s).tolist(),
            "abs_asymmetry_rms_radius": np.abs(a_r).tolist(),
            "z_um": zz.tolist(),
            "peak_profile": (sp["peak"] / sp["peak"].max()).tolist(),
        }
    out["summary"] = {
        "measured": {
            "mean_abs_asymmetry_peak": float(np.mean(np.abs(am))),
            "mean_abs_asymmetry_rms_radius": float(np.mean(np.abs(ar))),
            "axial_fwhm_on_axis_um": out["measured"]["axial_fwhm_on_axis_um"],
        },
        **{
            f"sim_{k}": {
                "mean_abs_asymmetry_peak": float(np.mean(v["abs_asymmetry_peak"])),
                "mean_abs_asymmetry_rms_radius": float(np.mean(v["abs_asymmetry_rms_radius"])),
                "axial_fwhm_on_axis_um": v["axial_fwhm_on_axis_um"],
            }
            for k, v in out["simulated"].items()
        },
    }
    return out


# --------------------------------------------------------------------------- plots


def plots(rep: dict[str, Any], montage: dict[str, Any], psf: dict[str, Any] | None) -> list[str]:
    from live_deepz.analysis.evaluation._plots import _figure, plot_curves, plot_montage

    RESULTS.mkdir(parents=True, exist_ok=True)
    paths = [
        str(plot_curves("real DAPI stack, held-out half", rep, RESULTS / "real_widefield.png")),
        str(plot_montage("real DAPI stack", montage, RESULTS / "real_widefield_montage.png", 101)),
    ]
    if psf is not None:
        fig = _figure(10.0, 4.0)
        a1, a2 = fig.subplots(1, 2)
        u = psf["defocus_um"]
        a1.plot(u, psf["measured"]["abs_asymmetry_peak"], "-ok", label="measured bead PSF")
        for k, v in psf["simulated"].items():
            a1.plot(u, v["abs_asymmetry_peak"], "--", label=f"simulator, {k.replace('_', ' ')}")
        a1.set_xlabel("|defocus| from the profile's peak (µm)")
        a1.set_ylabel("|A| of the on-axis peak")
        a1.legend(fontsize=7)
        a2.plot(
            psf["measured"]["z_um"],
            psf["measured"]["peak_profile"],
            "-ok",
            ms=3,
            label="measured (z from plane 12)",
        )
        for k, v in psf["simulated"].items():
            a2.plot(v["z_um"], v["peak_profile"], "--", label=k.replace("_", " "))
        a2.set_xlabel("plane offset from focus (µm)")
        a2.set_ylabel("on-axis peak (normalised)")
        a2.legend(fontsize=7)
        fig.suptitle("PSF axial asymmetry: measured (NA 0.85 air, 520 nm) vs simulator")
        fig.tight_layout()
        fig.savefig(RESULTS / "real_psf_asymmetry.png")
        paths.append(str(RESULTS / "real_psf_asymmetry.png"))
    return paths


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--recipe",
        choices=("paper", "fast"),
        default="paper",
        help="training recipe (paper: L1-only on the CPU, as before; fast: residual + MSE + "
        "cosine + object-centred crops, crops = the regions here)",
    )
    ap.add_argument("--steps", type=int, default=4000, help="training steps (4000)")
    ap.add_argument("--width", type=float, default=0.25, help="network width (0.25)")
    ap.add_argument("--patch", type=int, default=32, help="training patch, px (32)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--z-half-range", type=float, default=4.5, help="±µm around focus (4.5)")
    ap.add_argument("--input-offset-um", type=float, default=1.5, help="inputs at focus ± this")
    ap.add_argument("--dz-max-um", type=float, default=4.2, help="evaluate |Δz| <= this (4.2)")
    ap.add_argument("--dz-every", type=int, default=2, help="Δz every N planes (2 = 0.6 µm)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    ap.add_argument("--model-dir", default=str(REPO / "runs" / "real_widefield" / "model"))
    ap.add_argument("--skip-train", action="store_true", help="evaluate --model-dir as it is")
    ap.add_argument("--no-psf", action="store_true", help="skip the PSF realism check")
    ap.add_argument("--json", default=str(RESULTS / "real_widefield.json"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if not STACK.is_file():
        print(f"skipped: {STACK} is absent (the real data lives outside the package)")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    train_info: dict[str, Any] = {"skipped": True}
    with tempfile.TemporaryDirectory(prefix="real_widefield_") as tmp:
        if not args.skip_train:
            _, train_info = train(args, Path(tmp))
    model_path = Path(args.model_dir)
    from live_deepz.modelfile import load_card

    card = load_card(model_path)
    rep, montage = evaluate_real(model_path, args)
    psf = None if args.no_psf or not PSF.is_file() else psf_check()
    paths = plots(rep, montage, psf)
    result = {
        "benchmark": "bench_real_widefield",
        "data": {"stack": STACK.name, "psf": PSF.name, "provenance": "../shared/data/real"},
        "training": {
            **train_info,
            "model": str(model_path),
            "validation_mae": card.validation_mae,
            "initial_validation_mae": card.training.get("initial_validation_mae"),
            "best_step": card.training.get("best_step"),
            "data": card.training.get("data"),
            "z_range_um": list(card.z_range_um),
            "architecture": card.architecture,
            "wall_time_s": card.training.get("wall_time_s"),
        },
        "evaluation": rep,
        "psf_realism": psf,
        "plots": [str(Path(p).relative_to(REPO)) for p in paths],
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, allow_nan=False, default=float))
    for key, cur in rep["curves"].items():
        print(
            f"input z0={key} µm: mean SSIM {cur['mean_ssim_model']:.3f} vs baseline "
            f"{cur['mean_ssim_baseline']:.3f}; mean RMSE {cur['mean_rmse_model']:.4f} vs "
            f"{cur['mean_rmse_baseline']:.4f}; SSIM > baseline at |Δz| >= 1: "
            f"{cur['ssim_above_baseline_abs_dz_ge_1']}"
        )
    if psf is not None:
        print("PSF |A| mean:", json.dumps(psf["summary"]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
