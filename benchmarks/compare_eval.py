"""Compare two ``live-deepz eval --json`` reports row by row (old vs new model).

Usage::

    python benchmarks/compare_eval.py OLD.json NEW.json [--markdown]

Every row of the eval summary is compared in the direction that is better for it (SSIM and
counts higher, RMSE and localisation errors lower, FWHM and ±d plane correlation closer to
the scanned stack's); the last column says whether NEW is better, equal or worse. Exit
status 0 when NEW is at least as good on every row, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _frac(s: str | None) -> float | None:
    if not s or "/" not in s:
        return None
    a, b = s.split("/")
    return float(a) / float(b) if float(b) else None


def rows(rep: dict[str, Any]) -> dict[str, tuple[float | None, str]]:
    """``{row name: (value, direction)}``; direction ``max``, ``min`` or ``target:<x>``."""
    out: dict[str, tuple[float | None, str]] = {}
    for name, s in rep["samples"].items():
        for key, cur in s["curves"].items():
            p = f"{name} z0={key}"
            out[f"{p} mean SSIM"] = (cur["mean_ssim_model"], "max")
            out[f"{p} mean RMSE"] = (cur["mean_rmse_model"], "min")
            out[f"{p} SSIM>input |dz|>=1"] = (_frac(cur["ssim_above_baseline_abs_dz_ge_1"]), "max")
            out[f"{p} r>smoothed input |dz|>=2"] = (
                _frac(cur.get("pearson_above_smoothed_abs_dz_ge_2")),
                "max",
            )
            pm = cur.get("plus_minus_correlation") or []
            if pm:
                far = max(pm, key=lambda item: item["d_um"])
                truth = far.get("noise_free", far["ground_truth"])
                out[f"{p} r(+{far['d_um']:g},-{far['d_um']:g}) vs noise-free scan"] = (
                    far["model"],
                    f"target:{truth}",
                )
        b = s.get("beads")
        if not b:
            continue
        loc = b["localisation"]
        out[f"{name} localisation median |err|"] = (loc["overall"]["median_abs_error_um"], "min")
        for po in loc["per_offset"]:
            out[f"{name} localisation offset {po['input_offset_um']:g}"] = (
                po["median_abs_error_um"],
                "min",
            )
        for g in loc.get("per_defocus_bin", []):
            if g["n_beads"]:
                hi = g["abs_defocus_um"][1]
                out[f"{name} localisation |defocus| {g['abs_defocus_um'][0]:g}-{hi or ''}"] = (
                    g["median_abs_error_um"],
                    "min",
                )
        sign = loc.get("sign") or {}
        out[f"{name} right sign"] = (sign.get("right_sign_fraction"), "max")
        lat, ax = b["lateral_fwhm_um"], b["axial_fwhm_um"]
        out[f"{name} lateral FWHM median"] = (
            lat["model"]["median"],
            f"target:{lat['ground_truth']['median']}",
        )
        out[f"{name} axial FWHM median"] = (
            ax["model"]["median"],
            f"target:{ax['ground_truth']['median']}",
        )
    t = rep["summary"]["targets"]
    out["targets passed"] = (float(sum(v.get("pass") is True for v in t.values())), "max")
    return out


def verdict(old: float | None, new: float | None, how: str) -> str:
    if old is None or new is None:
        return "n/a"
    if how.startswith("target:"):
        goal = float(how.split(":", 1)[1])
        old, new = -abs(old - goal), -abs(new - goal)
    elif how == "min":
        old, new = -old, -new
    if abs(new - old) <= 1e-9 * max(1.0, abs(old)):
        return "equal"
    return "better" if new > old else "WORSE"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    old, new = (rows(json.loads(Path(p).read_text())) for p in (args.old, args.new))
    worse = 0
    if args.markdown:
        print("| row | old | new | new is |\n|---|---|---|---|")
    for key in old:
        if key not in new:
            continue
        (a, how), (b, _) = old[key], new[key]
        v = verdict(a, b, how)
        worse += v == "WORSE"
        fa = "n/a" if a is None else f"{a:.3f}"
        fb = "n/a" if b is None else f"{b:.3f}"
        goal = f" (scan {float(how.split(':')[1]):.3f})" if how.startswith("target:") else ""
        if args.markdown:
            print(f"| {key}{goal} | {fa} | {fb} | {v} |")
        else:
            print(f"{key + goal:58s} {fa:>8s} {fb:>8s}  {v}")
    print(f"rows where the new model is worse: {worse}")
    return 0 if worse == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
