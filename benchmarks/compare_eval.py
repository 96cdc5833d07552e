"""Compare two ``live-deepz eval --json`` reports row by row (old vs new model).

Usage::

    python benchmarks/compare_eval.py OLD.json NEW.json [--markdown]
    python benchmarks/compare_eval.py OLD_s0.json,OLD_s1.json NEW_s0.json,NEW_s1.json

Every row of the eval summary is compared in the direction that is better for it (SSIM and
counts higher, RMSE and localisation errors lower, FWHM and ±d plane correlation closer to
the scanned stack's); the last column says whether NEW is better, equal or worse. Exit
status 0 when NEW is at least as good on every row, 1 otherwise.

Comma-separated lists compare several reports per model (``live-deepz eval --seed K``: other
samples and noise), paired in order: each row is then judged on its mean over the reports
(for the ±d correlations: the mean distance to each report's scan) and a column says at how
many of the pairs NEW is worse, which separates a real difference from one sample's luck.
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


def score(value: float | None, how: str) -> float | None:
    """``value`` turned so that higher is better (a target row: minus the distance to it)."""
    if value is None:
        return None
    if how.startswith("target:"):
        return -abs(value - float(how.split(":", 1)[1]))
    return -value if how == "min" else value


def verdict(old: float | None, new: float | None, how: str) -> str:
    """``better``, ``equal``, ``WORSE`` (or ``n/a``) for one row's old and new value."""
    a, b = score(old, how), score(new, how)
    if a is None or b is None:
        return "n/a"
    if abs(b - a) <= 1e-9 * max(1.0, abs(a)):
        return "equal"
    return "better" if b > a else "WORSE"


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known and len(known) == len(values) else None


def compare_many(
    olds: list[dict[str, tuple[float | None, str]]],
    news: list[dict[str, tuple[float | None, str]]],
) -> list[tuple[str, float | None, float | None, int, str]]:
    """Per row: (name, old mean score, new mean score, pairs where new is worse, verdict);
    a target row's score is minus its distance to the scan (higher is better)."""
    out = []
    for key in olds[0]:
        if not all(key in r for r in olds + news):
            continue
        a = [score(*r[key]) for r in olds]
        b = [score(*r[key]) for r in news]
        worse = sum(verdict(x, y, "max") == "WORSE" for x, y in zip(a, b, strict=True))
        ma, mb = _mean(a), _mean(b)
        out.append((key, ma, mb, worse, verdict(ma, mb, "max")))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old", help="eval JSON of the old model (comma-separated: several seeds)")
    ap.add_argument("new", help="eval JSON of the new model, as many and in the same order")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    old_paths, new_paths = args.old.split(","), args.new.split(",")
    if len(old_paths) != len(new_paths):
        ap.error(f"{len(old_paths)} old report(s) but {len(new_paths)} new: pair them by seed")
    if len(old_paths) > 1:
        return _main_many(old_paths, new_paths, args.markdown)
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


def _main_many(old_paths: list[str], new_paths: list[str], markdown: bool) -> int:
    olds = [rows(json.loads(Path(p).read_text())) for p in old_paths]
    news = [rows(json.loads(Path(p).read_text())) for p in new_paths]
    n = len(olds)
    table = compare_many(olds, news)
    if markdown:
        print(f"| row (mean of {n}; higher is better) | old | new | worse at | new is |")
        print("|---|---|---|---|---|")
    for key, a, b, k, v in table:
        how = olds[0][key][1]
        name = key + (" (minus distance to the scan)" if how.startswith("target:") else "")
        name += " (negated)" if how == "min" else ""
        fa = "n/a" if a is None else f"{a:.3f}"
        fb = "n/a" if b is None else f"{b:.3f}"
        if markdown:
            print(f"| {name} | {fa} | {fb} | {k}/{n} | {v} |")
        else:
            print(f"{name:70s} {fa:>8s} {fb:>8s} {k}/{n}  {v}")
    worse = sum(v == "WORSE" for *_, v in table)
    print(f"rows where the new model is worse (mean of {n} reports): {worse}")
    print(f"rows where it is worse in every report: {sum(k == n for _, _, _, k, _ in table)}")
    return 0 if worse == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
