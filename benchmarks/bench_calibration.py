"""Calibration quality on the paper's Fig. 4 cases and its drift demonstration.

Scenarios (ground truth from the simulator, ``live_deepz.sim``):

- ``tilt``: 300 nm beads on a slide tilted 1.5° (paper: median lateral FWHM 2.14 → 0.96 µm
  over a 2048² field). Virtual focus sweep −10…+10 µm / 0.5 µm → per-bead focus → robust
  plane fit. Reports the tilt/azimuth error, the residual RMS, the points used, and the
  median lateral FWHM of the input, of the input refocused onto the *fitted* surface, and onto
  the *true* surface.
- ``cylinder``: beads on a 7.2 mm diameter tube (paper: 2.41 → 0.91 µm); cylinder fit;
  reports the radius/axis error and the FWHM medians.
- ``drift``: a worm drifting 2–10 µm out of focus (``DriftTrajectory.paper``) at 3.6 fps;
  :class:`DriftEstimator` + :class:`KalmanDrift` in a :class:`DriftCompensationPlan`.
  Reports the tracking error of the served correction vs the true drift (RMSE, bias, RMSE
  after removing the bias — the worm's own focus under the focus measure), the raw
  estimates' RMSE, the planes refocused per estimate, and the sharpness (Brenner gradient) of
  the corrected vs uncorrected frames relative to the frame focused on the worm's reference
  plane (noise-free frames with the oracle; the model's output with ``--model``).
  ``--measure match`` tracks with :class:`MatchDriftEstimator` (each frame's refocused planes
  matched with the first frame) and ``--hold initial`` serves the change since the start;
  ``change_rmse_um`` (served change vs true change since the first frame) is reported for
  every mode.

The refocus function is either the **physics oracle** (``--oracle``, the default without
``--model``: the simulator re-renders the sample at every requested plane — a noisy camera
frame at that focus, like a mechanically scanned stack, or noise-free with
``--noiseless-oracle`` — an *ideal* Deep-Z, so the numbers measure the calibration logic)
or a trained model (``--model PATH``; then the numbers include the model's refocusing
quality). Inputs are noisy camera frames
(``CameraModel``), normalised as the paper does.

Usage::

    python benchmarks/bench_calibration.py --oracle                 # ~1-2 min on 2 cores
    python benchmarks/bench_calibration.py --model models/deepz-sim20x --size 256
    python benchmarks/bench_calibration.py --scenarios tilt --size 1024 --json out.json
    python benchmarks/bench_calibration.py --model deepz-sim20x-fast --size 256 \
        --scenarios drift --measure match --hold initial   # keyframe tracking
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from live_deepz import dpm
from live_deepz.calibration import (
    DriftCompensationPlan,
    DriftEstimator,
    KalmanDrift,
    MatchDriftEstimator,
    estimate_focus_beads,
    fit_beads,
    fit_surface,
    focus_measure,
    fwhm_summary,
)
from live_deepz.calibration.testing import PlaneRenderOracle
from live_deepz.normalize import fit_normalization
from live_deepz.optics import Optics

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "calibration.json"
EXPOSURE_MS = 20.0
SWEEP = "-10:10:0.5"


def _angle_err(a: float, b: float, period: float = 360.0) -> float:
    d = (a - b) % period
    return min(d, period - d)


class _SimSource:
    """A SimScene plus the oracle that re-renders it, in normalised camera units."""

    def __init__(self, sample: Any, shape: tuple[int, int], seed: int, **scene_kw: Any) -> None:
        from live_deepz.sim.scene import SimScene

        t0 = time.perf_counter()
        self.scene = SimScene(sample, Optics(), shape, seed=seed, **scene_kw)
        self.build_s = time.perf_counter() - t0
        self.t_s = 0.0
        self.norm = None
        self.shape = shape

    def camera_frame(self, t_s: float, stage_z_um: float = 0.0) -> np.ndarray:
        self.t_s = t_s
        return self.scene.render_frame(t_s, stage_z_um, exposure_ms=EXPOSURE_MS)

    def mean_frame(self, t_s: float, stage_z_um: float) -> np.ndarray:
        photons = self.scene.expected_frame(t_s, stage_z_um)
        return self.scene.camera.mean_adu(photons, EXPOSURE_MS).astype(np.float32)

    def noisy_frame(self, t_s: float, stage_z_um: float) -> np.ndarray:
        return self.scene.render_frame(t_s, stage_z_um, exposure_ms=EXPOSURE_MS).astype(np.float32)

    def oracle(self, noisy: bool = True) -> PlaneRenderOracle:
        assert self.norm is not None
        norm = self.norm
        render = self.noisy_frame if noisy else self.mean_frame
        return PlaneRenderOracle(
            lambda z: render(self.t_s, z),
            self.shape,
            Optics().pixel_size_um,
            normalize=norm.apply,
            z_range_um=(-10.0, 10.0),
        )


def _refocus_fn(args: argparse.Namespace, src: _SimSource) -> Any:
    if args.model is None:
        return src.oracle(noisy=not args.noiseless_oracle)
    from live_deepz.calibration import engine_refocus_fn

    return engine_refocus_fn(args.model, args.backend, device=args.device, precision=args.precision)


def _fwhm(img: np.ndarray, px: float) -> dict[str, Any]:
    return fwhm_summary(fit_beads(img, px).fwhm_um)


def bench_surface(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    from live_deepz.sim import samples

    px = Optics().pixel_size_um
    shape = (args.size, args.size)
    size_um = args.size * px
    if kind == "tilt":
        sample = samples.beads_tilted(
            args.seed,
            tilt_deg=1.5,
            azimuth_deg=args.azimuth,
            size_um=size_um,
            density_per_100um2=args.density,
        )
        true_dpm = dpm.tilted_plane(shape, px, 1.5, args.azimuth)
        fit_kind = "plane"
    else:
        sample = samples.beads_cylinder(
            args.seed,
            radius_um=3600.0,
            axis_deg=90.0,
            size_um=size_um,
            density_per_100um2=args.density,
        )
        true_dpm = dpm.cylinder(shape, px, 3600.0, 90.0)
        fit_kind = "cylinder"
    src = _SimSource(sample, shape, args.seed, z_range_um=(-11.0, 11.0))
    raw = src.camera_frame(0.0, 0.0)
    norm = fit_normalization(raw)
    src.norm = norm  # type: ignore[assignment]
    image = norm.apply(raw)
    refocus = _refocus_fn(args, src)
    if isinstance(refocus, PlaneRenderOracle):
        refocus.set_input(image)
    t0 = time.perf_counter()
    fmap = estimate_focus_beads(refocus, image, px, offsets_um=SWEEP)
    t_est = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = fit_surface(fmap, fit_kind)
    t_fit = time.perf_counter() - t0
    warnings = fit.check((-10.0, 10.0))
    corrected = np.asarray(refocus(image, fit.dpm()[None]))[0]
    ideal = np.asarray(refocus(image, true_dpm[None]))[0]
    row: dict[str, Any] = {
        "scenario": kind,
        "shape": list(shape),
        "field_um": size_um,
        "n_beads_sample": int(sample.params.get("n", 0)),
        "true_surface_range_um": [float(true_dpm.min()), float(true_dpm.max())],
        "sweep": SWEEP,
        "planes_refocused": len(dpm.parse_planes(SWEEP)),
        "n_detected": int(fmap.info["n_candidates"]),
        "rejected": fmap.info["rejected"],
        "fit": fit.to_json() | {"points": None},
        "n_points": fit.n_points,
        "n_inliers": fit.n_inliers,
        "residual_rms_um": fit.residual_rms_um,
        "dpm_max_error_um": float(np.abs(fit.dpm() - true_dpm).max()),
        "fwhm_input": _fwhm(image, px),
        "fwhm_corrected": _fwhm(corrected, px),
        "fwhm_true_surface": _fwhm(ideal, px),
        "estimate_s": t_est,
        "fit_s": t_fit,
        "scene_build_s": src.build_s,
        "warnings": warnings,
    }
    if kind == "tilt":
        row["tilt_deg"] = {"true": 1.5, "fit": fit.tilt_deg, "error": fit.tilt_deg - 1.5}
        row["azimuth_deg"] = {
            "true": args.azimuth,
            "fit": fit.azimuth_deg,
            "error": _angle_err(fit.azimuth_deg, args.azimuth),
        }
    else:
        r = fit.radius_um or math.nan
        row["radius_um"] = {"true": 3600.0, "fit": r, "rel_error": r / 3600.0 - 1.0}
        row["axis_deg"] = {
            "true": 90.0,
            "fit": fit.axis_deg,
            "error": _angle_err(fit.axis_deg or 0.0, 90.0, 180.0),
        }
        row["convex_towards_objective"] = fit.convex_towards_objective
    return row


def bench_drift(args: argparse.Namespace) -> dict[str, Any]:
    from live_deepz.sim import samples
    from live_deepz.sim.scene import DriftTrajectory

    shape = (args.size, args.size)
    drift = DriftTrajectory.paper(args.seed, 2.0, 10.0, period_s=20.0)
    src = _SimSource(samples.worm(args.seed), shape, args.seed, drift=drift)
    raw0 = src.camera_frame(0.0, 0.0)
    norm = fit_normalization(raw0)  # one normalisation per field of view (paper)
    src.norm = norm  # type: ignore[assignment]
    refocus = _refocus_fn(args, src)
    est_kw: dict[str, Any] = {"downsample": args.downsample, "smooth_px": args.smooth_px}
    est: DriftEstimator
    if args.measure == "match":
        anchor = None if args.anchor_um is None else float(args.anchor_um)
        est = MatchDriftEstimator(
            refocus, anchor_um=anchor, match_smooth_px=args.match_smooth_px, **est_kw
        )
    else:
        est = DriftEstimator(refocus, measure=args.measure, **est_kw)
    plan = DriftCompensationPlan(
        est, drift_filter=KalmanDrift(accel_um2_s3=args.kalman_accel), hold=args.hold
    )
    fps = 3.6
    served, truth, raw_err, sharp, ssim_rows = [], [], [], [], []
    first_roi: tuple[int, int, int, int] | None = None  # where the estimator measures
    t_est = []
    for i in range(args.drift_frames):
        t = i / fps
        raw = src.camera_frame(t, 0.0)
        image = norm.apply(raw)
        if isinstance(refocus, PlaneRenderOracle):
            refocus.set_input(image)
        t0 = time.perf_counter()
        m = plan.update(image, i, t * 1000.0)
        if first_roi is None and m is not None and m.ok:
            first_roi = m.roi
        t_est.append(time.perf_counter() - t0)
        d = plan.dpms_for_frame(i, t * 1000.0, shape)
        c = float(d[0, 0, 0])
        z = drift.z_um(t)
        served.append(c)
        truth.append(z)
        raw_err.append((m.defocus_um - z) if m is not None and m.ok else math.nan)
        if i % args.sharpness_every == 0:
            # sharpness on noise-free frames (camera noise dominates a gradient measure):
            # the uncorrected focal plane and the served plane vs the worm's reference plane
            ref = focus_measure(norm.apply(src.mean_frame(t, z)))
            if isinstance(refocus, PlaneRenderOracle):
                corrected = norm.apply(src.mean_frame(t, c))
            else:
                corrected = np.asarray(refocus(image, d[:1]))[0]
            uncorrected = norm.apply(src.mean_frame(t, 0.0))
            sharp.append((focus_measure(uncorrected) / ref, focus_measure(corrected) / ref))
            # the feeds a user sees (compared after the loop, once the sample's own focus is
            # known): the input frame (uncorrected) and the plane served at the correction
            if isinstance(refocus, PlaneRenderOracle):
                feed = norm.apply(src.noisy_frame(t, c))
            else:
                feed = corrected
            ssim_rows.append((i, t, z, image, feed))
    served_a, truth_a = np.array(served), np.array(truth)
    err = served_a - truth_a
    content = _content_focus_offset(src, float(truth_a[0]), est.measure, args.smooth_px, first_roi)
    err_c = served_a - (truth_a + content)
    settle = 3
    bias = float(np.median(err[settle:]))
    raw_e = np.array(raw_err)
    sh = np.array(sharp)
    # SSIM against the noise-free frame focused on the sample's own focus (what compensation
    # holds: the reference plane + the content offset) and against the reference plane
    rows = []
    for i, t, z, image, feed in ssim_rows:
        own = norm.apply(src.mean_frame(t, z + content))
        ref = norm.apply(src.mean_frame(t, z))
        rows.append(
            (i, t, z, _ssim(image, own), _ssim(feed, own), _ssim(image, ref), _ssim(feed, ref))
        )
    ss = np.array(rows)
    period_s = 1.0 / fps
    return {
        "scenario": "drift",
        "shape": list(shape),
        "frames": args.drift_frames,
        "fps": fps,
        "drift": drift.to_dict(),
        "true_defocus_um": [float(truth_a.min()), float(truth_a.max())],
        "estimator": est.describe(),
        "planes_per_estimate": est.n_planes_per_estimate,
        "estimate_s_median": float(np.median(t_est)),
        "tracking_rmse_um": float(np.sqrt(np.mean(err[settle:] ** 2))),
        "tracking_bias_um": bias,
        "tracking_rmse_debiased_um": float(np.sqrt(np.mean((err[settle:] - bias) ** 2))),
        "content_focus_offset_um": content,
        "tracking_rmse_vs_content_focus_um": float(np.sqrt(np.mean(err_c[settle:] ** 2))),
        "tracking_max_abs_error_um": float(np.max(np.abs(err[settle:]))),
        # what hold="initial" promises: the served correction follows the *change* of the
        # drift since tracking started (independent of any focus definition)
        "hold": args.hold,
        "change_rmse_um": float(
            np.sqrt(np.mean(((served_a - served_a[0]) - (truth_a - truth_a[0]))[settle:] ** 2))
        ),
        "raw_rmse_um": float(np.sqrt(np.nanmean(raw_e**2))),
        "raw_rmse_debiased_um": float(np.sqrt(np.nanmean((raw_e - np.nanmedian(raw_e)) ** 2))),
        "raw_failed": int(np.count_nonzero(np.isnan(raw_e))),
        "sharpness_vs_in_focus": {
            "uncorrected_median": float(np.median(sh[:, 0])),
            "corrected_median": float(np.median(sh[:, 1])),
            "n_frames": len(sh),
        },
        "ssim_vs_in_focus": {
            "truth": "noise-free frame at the sample's own focus (reference plane + "
            "content_focus_offset_um); *_vs_reference_plane: at the reference plane",
            "uncorrected_median": float(np.median(ss[:, 3])),
            "corrected_median": float(np.median(ss[:, 4])),
            "corrected_better_frames": int(np.count_nonzero(ss[:, 4] > ss[:, 3])),
            "uncorrected_median_vs_reference_plane": float(np.median(ss[:, 5])),
            "corrected_median_vs_reference_plane": float(np.median(ss[:, 6])),
            "n_frames": len(ss),
            "per_frame": [
                {
                    "frame": int(r[0]),
                    "t_s": r[1],
                    "true_defocus_um": r[2],
                    "uncorrected": r[3],
                    "corrected": r[4],
                    "uncorrected_vs_reference_plane": r[5],
                    "corrected_vs_reference_plane": r[6],
                }
                for r in ss.tolist()
            ],
        },
        "camera_period_s": period_s,
        "keeps_camera_rate": bool(np.median(t_est) < period_s),
        "trace": {
            "t_s": [i / fps for i in range(len(served))],
            "true_defocus_um": truth_a.tolist(),
            "served_correction_um": served_a.tolist(),
        },
        "counters": plan.describe()["counters"],
        "filter": plan.describe()["filter"],
        "scene_build_s": src.build_s,
    }


def _content_focus_offset(
    src: _SimSource,
    z0: float,
    measure: str,
    smooth_px: float,
    roi: tuple[int, int, int, int] | None,
) -> float:
    """Where a noise-free mechanical scan at t = 0 peaks under the estimator's focus measure
    in the estimator's window (``roi``, full frame if None), relative to the drift's
    reference plane: the in-focus plane of what the estimator looks at, measured without
    it (a thick worm's neurons need not centre on z = 0, and a gradient measure is pulled
    toward the ring-dominated side of an aberrated PSF)."""
    y0, x0, h, w = roi if roi is not None else (0, 0, *src.shape)
    from scipy import ndimage

    def value(z: float) -> float:
        full = src.norm.apply(src.mean_frame(0.0, z))  # type: ignore[union-attr]
        img = full[y0 : y0 + h, x0 : x0 + w]
        if smooth_px > 0:
            img = ndimage.gaussian_filter(img, smooth_px)
        return focus_measure(img, measure)

    zs = z0 + np.arange(-6.0, 6.0001, 0.1)
    f = np.array([value(z) for z in zs])
    i = int(np.clip(np.argmax(f), 1, len(f) - 2))
    y0, y1, y2 = f[i - 1 : i + 2]
    den = y0 - 2 * y1 + y2
    frac = 0.5 * (y0 - y2) / den if den < 0 else 0.0
    return float(zs[i] + 0.1 * frac - z0)


def _ssim(a: np.ndarray, ref: np.ndarray) -> float:
    """The evaluation's SSIM (the paper's Gaussian window), over the reference's range."""
    from live_deepz.analysis.evaluation import ssim

    return ssim(a, ref, data_range=float(ref.max() - ref.min()))


def plot_drift(row: dict[str, Any], path: Path) -> None:
    """Drift trace (true vs served) and per-frame SSIM of both feeds, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a0, a1) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    tr = row["trace"]
    off = row["content_focus_offset_um"]
    a0.plot(tr["t_s"], tr["true_defocus_um"], "k-", label="true drift (reference plane)")
    own = [v + off for v in tr["true_defocus_um"]]
    a0.plot(tr["t_s"], own, "k--", label=f"sample's own focus ({off:+.2f} µm)")
    a0.plot(tr["t_s"], tr["served_correction_um"], "r.-", ms=3, label="served correction")
    title = (
        f"tracking RMSE vs own focus {row['tracking_rmse_vs_content_focus_um']:.2f} µm, "
        f"vs reference plane {row['tracking_rmse_um']:.2f} µm"
    )
    if row.get("hold") == "initial":  # the promise is the change since the start
        z0 = tr["true_defocus_um"][0]
        change = [v - z0 for v in tr["true_defocus_um"]]
        a0.plot(tr["t_s"], change, "b:", label="true change since the start (hold initial)")
        title = f"hold initial: change RMSE {row['change_rmse_um']:.2f} µm; " + title
    a0.set_ylabel("defocus (µm)")
    a0.legend(fontsize=8)
    a0.set_title(title, fontsize=9)
    pf = row["ssim_vs_in_focus"]["per_frame"]
    t = [r["t_s"] for r in pf]
    a1.plot(t, [r["uncorrected"] for r in pf], "o-", color="0.5", label="uncorrected feed")
    a1.plot(t, [r["corrected"] for r in pf], "o-", color="C3", label="drift-corrected feed")
    a1.set_ylabel("SSIM vs the sample's\nown in-focus plane")
    a1.set_xlabel("time (s)")
    a1.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--oracle", action="store_true", help="physics oracle (default)")
    src.add_argument("--model", help="trained model (name or folder)")
    p.add_argument(
        "--noiseless-oracle",
        action="store_true",
        help="oracle planes without camera noise (default: each refocused plane is a noisy "
        "camera frame at that focus, like a mechanically scanned stack)",
    )
    p.add_argument("--scenarios", default="tilt,cylinder,drift")
    p.add_argument("--size", type=int, default=512, help="frame size (px); 512 ≈ 166 µm")
    p.add_argument("--azimuth", type=float, default=0.0, help="tilt azimuth (paper: 0)")
    p.add_argument("--density", type=float, default=0.5, help="beads per 100 µm²")
    p.add_argument("--drift-frames", type=int, default=72, help="frames at 3.6 fps")
    p.add_argument("--downsample", type=int, default=4, help="drift reduced-frame factor")
    p.add_argument("--sharpness-every", type=int, default=6)
    p.add_argument(
        "--measure",
        default="brenner",
        help="drift: focus measure (brenner, variance, normvar) or 'match' (keyframe match)",
    )
    p.add_argument(
        "--anchor-um",
        type=float,
        default=None,
        help="drift, match: the first frame's defocus (default: estimated by a Brenner sweep)",
    )
    p.add_argument(
        "--match-smooth-px", type=float, default=1.5, help="drift, match: blur before matching"
    )
    p.add_argument(
        "--kalman-accel", type=float, default=1.0, help="drift: KalmanDrift accel_um2_s3"
    )
    p.add_argument(
        "--hold", choices=("sample", "initial"), default="sample", help="drift plan's hold mode"
    )
    p.add_argument("--smooth-px", type=float, default=0.0, help="drift: blur before measure")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = p.parse_args(argv)
    try:
        import live_deepz.sim.scene  # noqa: F401
    except ImportError as exc:
        print(f"the simulator is needed for the ground truth: {exc}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {
        "benchmark": "calibration",
        "refocus": (
            args.model
            if args.model is not None
            else "physics oracle (simulator re-render"
            + (", noise-free)" if args.noiseless_oracle else ", camera noise per plane)")
        ),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "argv": sys.argv[1:] if argv is None else argv,
        "scenarios": {},
    }
    for name in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
        t0 = time.perf_counter()
        if name in ("tilt", "cylinder"):
            row = bench_surface(args, name)
        elif name == "drift":
            row = bench_drift(args)
            png = args.json.with_name(args.json.stem + "_drift.png")
            png.parent.mkdir(parents=True, exist_ok=True)
            plot_drift(row, png)
            row["plot"] = png.name
        else:
            print(f"unknown scenario {name!r}", file=sys.stderr)
            return 2
        row["wall_s"] = time.perf_counter() - t0
        results["scenarios"][name] = row
        _print_row(name, row)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, allow_nan=False, default=str))
    print(f"wrote {args.json}")
    return 0


def _med(s: dict[str, Any]) -> str:
    return "-" if s["median_um"] is None else f"{s['median_um']:.2f} µm (n={s['n']})"


def _print_row(name: str, r: dict[str, Any]) -> None:
    print(f"\n== {name} ({r['shape'][0]}×{r['shape'][1]}) ==")
    if name == "drift":
        lo, hi = r["true_defocus_um"]
        print(
            f"  true defocus {lo:.1f}…{hi:.1f} µm, {r['frames']} frames, "
            f"{r['planes_per_estimate']} planes/estimate"
        )
        print(
            f"  tracking RMSE {r['tracking_rmse_um']:.3f} µm "
            f"(bias {r['tracking_bias_um']:+.3f}, debiased {r['tracking_rmse_debiased_um']:.3f}, "
            f"max {r['tracking_max_abs_error_um']:.3f}); vs the focus of the estimator's window "
            f"({r['content_focus_offset_um']:+.2f} µm from the reference plane, noise-free scan) "
            f"{r['tracking_rmse_vs_content_focus_um']:.3f} µm; raw RMSE {r['raw_rmse_um']:.3f} µm "
            f"(debiased {r['raw_rmse_debiased_um']:.3f}), {r['raw_failed']} failed"
        )
        s = r["sharpness_vs_in_focus"]
        print(
            f"  sharpness vs in focus: uncorrected {s['uncorrected_median']:.2f}, "
            f"corrected {s['corrected_median']:.2f}"
        )
        q = r["ssim_vs_in_focus"]
        print(
            f"  SSIM vs in-focus truth (median of {q['n_frames']} frames): uncorrected "
            f"{q['uncorrected_median']:.3f}, corrected {q['corrected_median']:.3f} "
            f"(corrected better in {q['corrected_better_frames']}); vs the reference plane "
            f"{q['uncorrected_median_vs_reference_plane']:.3f} → "
            f"{q['corrected_median_vs_reference_plane']:.3f}"
        )
        print(
            f"  compensation cost {1000 * r['estimate_s_median']:.0f} ms/frame vs camera period "
            f"{1000 * r['camera_period_s']:.0f} ms: "
            f"{'keeps' if r['keeps_camera_rate'] else 'does NOT keep'} the camera rate"
        )
        return
    if name == "tilt":
        t, a = r["tilt_deg"], r["azimuth_deg"]
        print(
            f"  tilt {t['fit']:.3f}° (true 1.5°, error {t['error']:+.3f}°), "
            f"azimuth {a['fit']:.1f}° (error {a['error']:.1f}°)"
        )
    else:
        print(
            f"  radius {r['radius_um']['fit'] / 1000:.2f} mm (true 3.6, "
            f"{100 * r['radius_um']['rel_error']:+.1f} %), axis {r['axis_deg']['fit']:.1f}° "
            f"(error {r['axis_deg']['error']:.1f}°)"
        )
    lo, hi = r["true_surface_range_um"]
    print(
        f"  residual RMS {r['residual_rms_um']:.3f} µm over {r['n_inliers']}/{r['n_points']} "
        f"beads; DPM max error {r['dpm_max_error_um']:.3f} µm; surface {lo:+.2f}…{hi:+.2f} µm"
    )
    print(
        f"  median lateral FWHM: input {_med(r['fwhm_input'])} → fitted surface "
        f"{_med(r['fwhm_corrected'])} (true surface {_med(r['fwhm_true_surface'])})"
    )
    print(
        f"  estimate {r['estimate_s']:.1f} s ({r['planes_refocused']} planes), "
        f"fit {r['fit_s']:.2f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
