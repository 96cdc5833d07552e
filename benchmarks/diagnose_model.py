"""Two cheap diagnostics of a trained model on the simulated tilted bead slide (1.5°).

- **DPM response**: how far the output moves from the input at small uniform DPMs
  (0, ±0.1, ±0.25, ±0.5 µm), and the output's noise (robust σ of pixel differences) beside
  the input's. A global-residual network trained on pairs that include a plane paired with
  itself learns "DPM exactly 0 → return the input": the in-focus live plane is then the noisy
  input while every other plane is denoised, and the jump shows as a step between 0 and
  0.5 µm.
- **Slide depth bias**: the per-bead focus found by the calibration's bead sweep
  (``estimate_focus_beads``) against the true surface, median signed error per 0.5 µm bin of
  true depth, and the slope of estimate against truth (1 = unbiased; the plane fit's tilt
  scales with it). Beads the input has no light for are counted separately.

Usage: ``python benchmarks/diagnose_model.py --model deepz-sim20x-fast --json out.json``
(about a minute on 2 CPU cores at 512²).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import bench_calibration as bc

from live_deepz import dpm
from live_deepz.normalize import fit_normalization
from live_deepz.optics import Optics
from live_deepz.sim import samples
from live_deepz.training.pairs import noise_sigma

RESPONSE_DPMS_UM = (-0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5)


def dpm_response(refocus: Any, image: np.ndarray) -> list[dict[str, float]]:
    """Mean |output − input| and output noise at each of :data:`RESPONSE_DPMS_UM`."""
    shape = image.shape
    dpms = np.stack([np.full(shape, d, np.float32) for d in RESPONSE_DPMS_UM])
    planes = np.asarray(refocus(image, dpms))
    return [
        {
            "dpm_um": d,
            "mean_abs_change": float(np.mean(np.abs(p - image))),
            "output_noise": noise_sigma(p),
            "input_noise": noise_sigma(image),
        }
        for d, p in zip(RESPONSE_DPMS_UM, planes, strict=True)
    ]


def slide_depth_bias(refocus: Any, image: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    """Per-bead focus against the true surface (see the module docstring)."""
    from live_deepz.calibration import estimate_focus_beads

    px = Optics().pixel_size_um
    fm = estimate_focus_beads(refocus, image, px, offsets_um=bc.SWEEP)
    yx = np.rint(fm.points_yx_px).astype(int)
    zt = true[yx[:, 0], yx[:, 1]]
    err = fm.z_um - zt
    good = np.abs(err) < 1.5  # a bead found at its place; the rest are counted apart
    slope, offset = np.polyfit(zt[good], fm.z_um[good], 1) if good.sum() > 2 else (np.nan,) * 2
    bins = []
    for lo in np.arange(-2.5, 2.5, 0.5):
        s = good & (zt >= lo) & (zt < lo + 0.5)
        if s.any():
            bins.append(
                {
                    "true_um": [float(lo), float(lo + 0.5)],
                    "n": int(s.sum()),
                    "median_signed_error_um": float(np.median(err[s])),
                }
            )
    return {
        "n_beads": len(zt),
        "n_within_1_5_um": int(good.sum()),
        "rejected": fm.info["rejected"],
        "slope": float(slope),
        "offset_um": float(offset),
        "median_abs_error_um": float(np.median(np.abs(err[good]))) if good.any() else None,
        "by_true_depth": bins,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model name or folder")
    p.add_argument("--size", type=int, default=512, help="frame side, px")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    from live_deepz.calibration import engine_refocus_fn

    t0 = time.perf_counter()
    px = Optics().pixel_size_um
    shape = (args.size, args.size)
    sample = samples.beads_tilted(
        args.seed, tilt_deg=1.5, azimuth_deg=0.0, size_um=args.size * px, density_per_100um2=0.5
    )
    true = dpm.tilted_plane(shape, px, 1.5, 0.0)
    src = bc._SimSource(sample, shape, args.seed, z_range_um=(-11.0, 11.0))
    raw = src.camera_frame(0.0, 0.0)
    image = fit_normalization(raw).apply(raw)
    refocus = engine_refocus_fn(args.model, "auto", device="auto", precision="auto")
    out = {
        "benchmark": "diagnose_model",
        "model": args.model,
        "argv": sys.argv[1:] if argv is None else argv,
        "scene": f"beads_tilted 1.5°, {args.size}², seed {args.seed}, 20 ms",
        "dpm_response": dpm_response(refocus, image),
        "slide_depth_bias": slide_depth_bias(refocus, image, true),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for r in out["dpm_response"]:
        print(
            f"DPM {r['dpm_um']:+.2f} µm: mean |out − in| {r['mean_abs_change']:.4f}, "
            f"noise out {r['output_noise']:.4f} (input {r['input_noise']:.4f})"
        )
    b = out["slide_depth_bias"]
    print(
        f"slide: {b['n_within_1_5_um']}/{b['n_beads']} beads within 1.5 µm of the surface, "
        f"slope {b['slope']:.3f}, median |error| {b['median_abs_error_um']:.3f} µm"
    )
    for row in b["by_true_depth"]:
        lo, hi = row["true_um"]
        err = row["median_signed_error_um"]
        print(f"  true {lo:+.1f}…{hi:+.1f} µm: n {row['n']:3d}, median error {err:+.2f} µm")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
