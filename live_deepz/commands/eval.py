"""``live-deepz eval``: evaluate a model on freshly simulated, held-out samples.

Examples::

    live-deepz eval --json eval.json --plots eval_plots
    live-deepz eval --model runs/mine --samples beads,worm --dz=-10:10:0.5 --json eval.json

For each sample, a mechanical scan (noisy camera frames) is simulated with the model's
optics; a separate exposure at each input position is refocused by the model over ``--dz``
and compared (SSIM, RMSE, MAE, MSE, Pearson r) with the scanned plane at ``z0 + Δz``, side by
side with the unrefocused input as the baseline and the input smoothed by a σ = 1 px Gaussian
(so that denoising alone does not count as refocusing). Bead samples add lateral/axial FWHM
statistics and the axial localisation error of each bead from a single image, searched over
the input ± 10 µm (the whole trained range), per |defocus| bin (0–3, 3–6, 6–10 µm) and with a
sign check. Each sample's input SNR (bead photons, background, in-focus peak SNR) is
reported. The summary checks five targets: (a) bead localisation median |error| ≤ 0.5 µm,
(b) SSIM above the baseline at every |Δz| ≥ 1 µm for beads and worm, (c) median lateral FWHM
within 15 % of the scanned ground truth, (d) Pearson r above the smoothed input at every
|Δz| ≥ 2 µm for beads and worm, (e) ≥ 90 % of the beads ≥ 1.5 µm from the input placed on the
right side of it. A target whose sample was not evaluated says so, and "all targets: PASS"
needs every one of them evaluated. ``beads`` is a bead *volume* (its PSF carries the sign of
a defocus through the index mismatch under the air objective); on a slide (``beads-flat``)
the simulated PSF is only weakly asymmetric about focus (residual spherical aberration of the
185 µm coverslip under a 170 µm design), so the sign is harder to tell there. See
``live_deepz.analysis.evaluation._run`` for the protocol.

Bead brightness: at the default 20 ms the simulated in-focus bead peak SNR ((peak −
background) / background noise σ) is ~100–170 (the training stacks; each evaluated sample
reports its own as ``input_snr``); the measured bead PSF in the project's real data
(``psf_wl520nm_z300nm_x130nm_na0.85_n1.0.tif`` from pyotf: peak 46120 ADU over a 252 ADU
background with σ 16.6 ADU) reaches ~2800, so the simulated beads are the dimmer, harder
case. ``--exposure-ms 5`` evaluates at 4× fewer photons.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputError

EXIT_TARGETS_FAILED = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..analysis.evaluation import SAMPLES

    parser.add_argument(
        "--model", default=None, help="model name or folder (default: the bundled model)"
    )
    parser.add_argument(
        "--samples",
        default="beads,worm,dense",
        help=f"comma-separated samples: {', '.join(SAMPLES)} (default beads,worm,dense; "
        "beads = 300 nm beads in an 8 µm gel, dense = filaments, beads-flat = beads on a "
        "slide, whose simulated PSF is only weakly asymmetric about focus)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="sample seed offset: samples use 1000 + SEED (0)"
    )
    parser.add_argument("--size", type=int, default=256, help="image side, pixels (256)")
    parser.add_argument(
        "--dz",
        default="-10:10:1",
        help="refocus distances Δz, µm: 'start:stop:step' or a comma list (default -10:10:1; "
        "write --dz=-10:10:1)",
    )
    parser.add_argument(
        "--input-z",
        default="-5,0,5",
        help="stage positions of the single input images for the curves, µm (default -5,0,5)",
    )
    parser.add_argument(
        "--bead-offsets",
        default="-6,-3,0,3,6",
        help="bead samples: input positions relative to the bead plane, µm (default -6,-3,0,3,6)",
    )
    parser.add_argument(
        "--bead-search",
        type=float,
        default=10.0,
        metavar="UM",
        help="bead samples: each input's virtual stack spans the input ± this (default 10: the "
        "whole trained range)",
    )
    parser.add_argument(
        "--bead-thickness",
        type=float,
        default=8.0,
        metavar="UM",
        help="beads: thickness of the gel slab, µm (default 8; 10 = a ±5 µm slab)",
    )
    parser.add_argument(
        "--exposure-ms",
        type=float,
        default=20.0,
        help="camera exposure of the simulated scan and inputs, ms (default 20; 5 = 4x dimmer)",
    )
    parser.add_argument(
        "--input-norm",
        choices=("stack", "self"),
        default="stack",
        help="normalise the network input with the scanned stack's fit (stack, the paper's "
        "test protocol; default) or with a fit on the input image (self, as `refocus` does)",
    )
    parser.add_argument("--backend", default="auto", help="inference backend (default auto)")
    parser.add_argument(
        "--precision", default="fp32", help="fp32 (default: measure the model), bf16, fp16, auto"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for PyTorch (default: unchanged)"
    )
    parser.add_argument("--json", default=None, metavar="OUT.json", help="write the report here")
    parser.add_argument("--plots", default=None, metavar="DIR", help="write PNG plots here")
    parser.add_argument(
        "--montage-z",
        type=float,
        default=None,
        metavar="UM",
        help="input position shown in the montage plot, one of --input-z (default: nearest 0)",
    )
    parser.add_argument(
        "--fail-on-targets",
        action="store_true",
        help=f"exit with status {EXIT_TARGETS_FAILED} when an evaluated target fails",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def _verdict(p: Any) -> str:
    return "not evaluated" if p is None else ("PASS" if p else "FAIL")


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A short human-readable summary of an evaluation report."""
    m = report["model"]
    lines = [
        f"model {m['name']} ({m['path']}), range {m['z_range_um'][0]:g}..{m['z_range_um'][1]:g} µm"
    ]
    for name, rep in report["samples"].items():
        lines.append(f"{name}:")
        for key, cur in rep["curves"].items():
            lines.append(
                f"  input z0={key} µm: mean SSIM {cur['mean_ssim_model']:.3f} (baseline "
                f"{cur['mean_ssim_baseline']:.3f}), mean RMSE {cur['mean_rmse_model']:.4f} "
                f"(baseline {cur['mean_rmse_baseline']:.4f}), SSIM > baseline at |Δz| >= 1: "
                f"{cur['ssim_above_baseline_abs_dz_ge_1']}, Pearson > smoothed input at "
                f"|Δz| >= 2: {cur.get('pearson_above_smoothed_abs_dz_ge_2', 'n/a')}"
            )
            pm = cur.get("plus_minus_correlation") or []
            if pm:
                far = max(pm, key=lambda item: item["d_um"])
                lines.append(
                    f"    virtual planes at ±{far['d_um']:g} µm correlate r = "
                    f"{_fmt(far['model'])} (scan {_fmt(far['ground_truth'])}, noise-free "
                    f"{_fmt(far.get('noise_free'))})"
                )
        snr = rep.get("input_snr") or {}
        if snr:
            bead = (
                f"bead {snr['bead_photons_median']:.0f} photons, "
                if "bead_photons_median" in snr
                else ""
            )
            peak = snr.get("in_focus_peak_snr_median", snr.get("in_focus_peak_snr"))
            lines.append(
                f"  input ({snr['exposure_ms']:g} ms): {bead}background "
                f"{snr['background_e_per_px']:.1f} e-/px, in-focus peak SNR {_fmt(peak, '.0f')}"
            )
        b = rep.get("beads")
        if b:
            lat, ax, loc = b["lateral_fwhm_um"], b["axial_fwhm_um"], b["localisation"]
            lines.append(
                f"  beads: {b['n_isolated']} isolated of {b['n_beads_in_field']}; lateral FWHM "
                f"median {_fmt(lat['model']['median'])} µm "
                f"(scan {_fmt(lat['ground_truth']['median'])}); "
                f"axial FWHM median {_fmt(ax['model']['median'])} µm (scan "
                f"{_fmt(ax['ground_truth']['median'])})"
            )
            per = ", ".join(
                f"{p['input_offset_um']:g}: {_fmt(p['median_abs_error_um'], '.2f')}"
                for p in loc["per_offset"]
            )
            lines.append(
                f"  localisation median |error| {_fmt(loc['overall']['median_abs_error_um'])} µm "
                f"(per input offset µm → µm: {per}; scanned stack "
                f"{_fmt(loc['scanned_stack']['median_abs_error_um'])})"
            )
            bins = "; ".join(
                f"{g['abs_defocus_um'][0]:g}-"
                + (f"{g['abs_defocus_um'][1]:g}" if g["abs_defocus_um"][1] is not None else "")
                + f" µm: {_fmt(g['median_abs_error_um'], '.2f')} (n {g['n_beads']}, "
                f"{_fmt(g['within_0_5_um_fraction'], '.0%')} within 0.5)"
                for g in loc.get("per_defocus_bin", [])
                if g["n_beads"]
            )
            sign = loc.get("sign") or {}
            lines.append(f"  by |true defocus from the input|: {bins}")
            lines.append(
                f"  right side of focus (beads >= 1.5 µm from the input): "
                f"{_fmt(sign.get('right_sign_fraction'), '.0%')} of {sign.get('n', 0)}"
            )
    t = report["summary"]["targets"]
    lines.append("targets:")
    a = t["a_bead_localisation"]
    lines.append(
        f"  (a) bead localisation median |error| {_fmt(a.get('median_abs_error_um'))} µm <= "
        f"0.5: {_verdict(a['pass'])}"
    )
    b_ = t["b_ssim_above_baseline"]
    fails = {n: v["failing_dz_um"] for n, v in b_["per_sample"].items() if v["failing_dz_um"]}
    lines.append(
        f"  (b) SSIM above baseline at every |Δz| >= 1 µm (beads, worm; z0={b_['input_z_um']:g}): "
        f"{_verdict(b_['pass'])}" + (f" failing Δz {fails}" if fails else "")
    )
    c = t["c_lateral_fwhm"]
    lines.append(
        f"  (c) lateral FWHM median within 15 % of the scan (ratio "
        f"{_fmt(c.get('model_over_ground_truth_median'))}): {_verdict(c['pass'])}"
    )
    d = t.get("d_pearson_above_smoothed_input")
    if d is not None:
        fails = {n: v["failing_dz_um"] for n, v in d["per_sample"].items() if v["failing_dz_um"]}
        lines.append(
            "  (d) Pearson r above the σ=1 px smoothed input at every |Δz| >= 2 µm (beads, "
            f"worm): {_verdict(d['pass'])}" + (f" failing Δz {fails}" if fails else "")
        )
    e = t.get("e_sign")
    if e is not None:
        lines.append(
            f"  (e) right side of focus >= 90 % (beads >= 1.5 µm from the input): "
            f"{_fmt(e.get('right_sign_fraction'), '.0%')}: {_verdict(e['pass'])}"
        )
    summ = report["summary"]
    missing = summ.get("not_evaluated") or []
    if missing:
        lines.append(
            f"targets evaluated: {len(summ.get('evaluated', []))} of "
            f"{len(summ.get('evaluated', [])) + len(missing)}, "
            f"{_verdict(summ.get('evaluated_pass'))}; not evaluated: {', '.join(missing)} "
            "(an overall verdict needs every target evaluated)"
        )
    else:
        lines.append(f"all targets: {_verdict(summ['all_pass'])}")
    return lines


def _write_json(path: Path, report: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=1, allow_nan=False))
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write the report {path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from ..analysis.evaluation import EvalConfig, evaluate, write_plots
    from ..modelfile import load_model, resolve_model

    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    cfg = EvalConfig(
        samples=args.samples,  # type: ignore[arg-type]  # parsed in __post_init__
        seed=args.seed,
        size=args.size,
        dz_um=args.dz,  # type: ignore[arg-type]
        input_z_um=args.input_z,  # type: ignore[arg-type]
        bead_offsets_um=args.bead_offsets,  # type: ignore[arg-type]
        bead_search_um=args.bead_search,
        bead_thickness_um=args.bead_thickness,
        exposure_ms=args.exposure_ms,
        input_norm=args.input_norm,
        montage_z_um=args.montage_z,
        backend=args.backend,
        precision=args.precision,
        device=args.device,
        progress=not args.quiet,
    )
    model = load_model(resolve_model(args.model))
    from ..engine import Refocuser, create_backend

    backend = create_backend(
        cfg.backend, model.generator, precision=cfg.precision, device=cfg.device
    )
    result = evaluate(model, cfg, Refocuser(model, backend))
    report = result.report
    report["cli_args"] = {
        k: v for k, v in vars(args).items() if isinstance(v, str | int | float | bool | None)
    }
    if args.json:
        _write_json(Path(args.json).expanduser(), report)
    paths = write_plots(report, result.montages, args.plots) if args.plots else []
    for line in summary_lines(report):
        print(line)
    if args.json:
        print(f"report: {args.json}")
    if paths:
        print(f"plots: {len(paths)} PNG in {args.plots}")
    if args.fail_on_targets and report["summary"]["all_pass"] is False:
        return EXIT_TARGETS_FAILED
    return 0
