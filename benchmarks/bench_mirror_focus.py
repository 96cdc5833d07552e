"""Does a model hedge between the two sides of focus? (issue 14, the far-defocus rows)

For each isolated bead of a simulated bead volume (``live-deepz simulate ... -o STACK``, which
writes ``STACK.truth.json`` beside it) and an input plane ``z0``, the model refocuses the input
to the bead's true focus ``f`` and to the focus mirrored about the input plane, ``2·z0 − f``.
A network that cannot tell the side of focus puts light at both (for an MSE-trained one, in
proportion to its belief); the scanned stack has only out-of-focus light at the mirror. The
report gives, per bead, the peak above the median at each of the two planes (Gaussian σ = 1 px,
3×3 px around the bead) for the model and the scanned stack, both in the stack's normalisation.

Usage::

    live-deepz simulate --size 256 --z-range -15 15 --z-step 0.5 --sample beads-volume \\
        --thickness-um 8 --density 1 --seed 2001 -o bv2001.ome.tif
    python benchmarks/bench_mirror_focus.py --model runs/D2 --stack bv2001.ome.tif \\
        --z0 -5 5 --json benchmarks/results/mirror_focus_D2.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def smoothed(img: np.ndarray) -> np.ndarray:
    """The image smoothed by a Gaussian of σ = 1 px."""
    from scipy import ndimage

    return np.asarray(ndimage.gaussian_filter(img, 1.0))


def peak_above_median(s: np.ndarray, r: int, c: int) -> float:
    """Maximum of ``s`` in the 3×3 px around (r, c), above the median of ``s``."""
    return float(s[r - 1 : r + 2, c - 1 : c + 2].max() - np.median(s))


def isolated_beads(truth: dict[str, Any], shape: tuple[int, int], min_gap_px: float = 12.0) -> Any:
    """``(rows, cols, focus_z_um)`` of in-field beads ≥ 20 px from the border and more than
    ``min_gap_px`` from any other bead (:func:`~live_deepz.analysis.evaluation.isolated_mask`)."""
    from live_deepz.analysis.evaluation import isolated_mask

    obj = truth["sample"]["objects"]
    rc = np.asarray(obj["pixel_rc"], dtype=np.float64)
    fz = np.asarray(obj["focus_z_um"], dtype=np.float64)
    keep = np.asarray(obj["in_field"], dtype=bool) & isolated_mask(rc, shape, min_gap_px, 20)
    rc = np.round(rc[keep]).astype(int)
    return rc[:, 0], rc[:, 1], fz[keep]


def main(argv: list[str] | None = None) -> int:
    import torch

    from live_deepz.io import read_stack
    from live_deepz.modelfile import load_model
    from live_deepz.normalize import extended_depth_of_field, fit_normalization

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--stack", type=Path, required=True, help="a simulated bead-volume stack")
    p.add_argument("--z0", type=float, nargs="+", default=[-5.0, 5.0], help="input planes, µm")
    p.add_argument("--min-distance-um", type=float, default=2.0, help="skip beads this close")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    truth_path = args.stack.with_name(args.stack.name.split(".")[0] + ".truth.json")
    truth = json.loads(truth_path.read_text())
    stack = np.asarray(read_stack(args.stack).data, dtype=np.float32).squeeze()
    z_um = np.asarray(truth["stack"]["z_positions_um"], dtype=np.float64)
    a = fit_normalization(extended_depth_of_field(stack)).apply(stack)
    rows_px, cols_px, focus = isolated_beads(truth, a.shape[1:])
    model = load_model(args.model)
    g, scale = model.generator.eval(), model.card.dpm_scale_um

    def refocus(i0: int, k: int) -> np.ndarray:
        """Plane ``k`` refocused from input plane ``i0``, smoothed (cached: beads share planes)."""
        if (i0, k) not in planes:
            x = torch.from_numpy(np.ascontiguousarray(a[i0]))[None, None]
            dpm = torch.full_like(x, float(z_um[k] - z_um[i0]) / scale)
            with torch.no_grad():
                planes[i0, k] = smoothed(g(torch.cat([x, dpm], dim=1))[0, 0].numpy())
        return planes[i0, k]

    planes: dict[tuple[int, int], np.ndarray] = {}
    scan = [smoothed(p) for p in a]

    report: dict[str, Any] = {"model": args.model, "stack": str(args.stack), "inputs": []}
    for z0 in args.z0:
        i0 = int(np.argmin(np.abs(z_um - z0)))
        beads: list[dict[str, Any]] = []
        for r, c, f in zip(rows_px, cols_px, focus, strict=True):
            mirror = 2 * z_um[i0] - f
            if abs(f - z_um[i0]) < args.min_distance_um or abs(mirror - z_um[i0]) > 10:
                continue
            kf, km = int(np.argmin(np.abs(z_um - f))), int(np.argmin(np.abs(z_um - mirror)))
            model_f = peak_above_median(refocus(i0, kf), r, c)
            model_m = peak_above_median(refocus(i0, km), r, c)
            beads.append(
                {
                    "rc_px": [int(r), int(c)],
                    "focus_z_um": float(f),
                    "distance_um": float(abs(f - z_um[i0])),
                    "model_at_focus": model_f,
                    "model_at_mirror": model_m,
                    "scan_at_focus": peak_above_median(scan[kf], r, c),
                    "scan_at_mirror": peak_above_median(scan[km], r, c),
                }
            )
        ratio = [b["model_at_mirror"] / max(b["model_at_focus"], 1e-6) for b in beads]
        scan_ratio = [b["scan_at_mirror"] / max(b["scan_at_focus"], 1e-6) for b in beads]
        far = [b for b in beads if b["distance_um"] >= 6]
        summary = {
            "z0_um": float(z_um[i0]),
            "n_beads": len(beads),
            "median_mirror_over_focus_model": float(np.median(ratio)) if beads else None,
            "median_mirror_over_focus_scan": float(np.median(scan_ratio)) if beads else None,
            "far_beads_model_focus_over_scan_focus": [
                round(b["model_at_focus"] / max(b["scan_at_focus"], 1e-6), 3) for b in far
            ],
            "far_beads_mirror_over_focus_model": [
                round(b["model_at_mirror"] / max(b["model_at_focus"], 1e-6), 3) for b in far
            ],
        }
        print(json.dumps(summary))
        report["inputs"].append({**summary, "beads": beads})
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
