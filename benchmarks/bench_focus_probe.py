"""Do a model's last features say on which side of focus an object lies? A linear probe (issue 14).

The trained models read the side of focus right for 79–86 % of beads 6–10 µm from the input
plane (``live-deepz eval``), where an ideal observer reaches ≥ 97.5 % (RESULTS.md, session
11). This benchmark asks whether the generator's features hold that side and the output path
fails to use it, or the features lack it: it freezes each model, trains only a 1×1
convolution on the features entering the output conv (the training-only head of
``train --focus-map-weight``, :class:`~live_deepz.training.focus_head.FocusMapHead`) to
predict, at each object, the DPM that brings it into focus, on the training stacks' training
regions, and reports on their validation regions, per |distance to focus| bin, the fraction of
objects whose predicted side is right and the median error of the predicted distance.

Usage::

    python benchmarks/bench_focus_probe.py --model deepz-sim20x-fast --model runs/A \\
        --data runs/default_data/*.ome.tif --json benchmarks/results/focus_probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_defocus_direction import start  # this folder, on sys.path

BINS_UM = ((1.5, 3.0), (3.0, 6.0), (6.0, 10.0), (10.0, 30.0))
"""|Distance to focus| bins (µm); objects nearer than 1.5 µm have no side to read."""


def build_data(paths: list[str], region: int, crop: int, cache: Path) -> Any:
    """The training data of ``live-deepz train --no-align --z-half-range 10
    --target-half-range 15`` for ``paths`` (Deep-Z pairs, one exposure)."""
    from live_deepz.training import PairConfig, build_pairs
    from live_deepz.training.pairs import load_stacks

    stacks = load_stacks(paths)
    cfg = PairConfig(patch=region, z_half_range_um=10.0, target_half_range_um=15.0, align=False)
    return build_pairs(stacks, cfg, cache)


def probe(model: Any, data: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Train a focus-map head on the frozen ``model`` and score it on validation objects."""
    from live_deepz.training import FocusSampler, SamplingConfig
    from live_deepz.training.focus_head import FocusMapHead, focus_map_loss

    g = model.generator.eval().requires_grad_(False)
    head = FocusMapHead(g)
    opt = torch.optim.Adam(head.parameters(), lr=args.lr)
    cfg = SamplingConfig(crop=args.crop)
    train = FocusSampler(data, cfg, seed=args.seed)
    t0 = time.perf_counter()
    for k in range(args.steps):
        x, _z, _w, maps = train.batch_with_focus_maps(k, args.batch)
        with torch.no_grad():
            g(x)
        loss, _ = focus_map_loss(head(), maps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - t0
    val = FocusSampler(data, cfg, seed=args.seed + 1, split="val")
    pred, true = [], []
    with torch.no_grad():
        for k in range(args.val_batches):  # radius 0: one pixel per object
            x, _z, _w, maps = val.batch_with_focus_maps(k, args.batch, radius_px=0)
            g(x)
            p, m = head()[:, 0], maps[:, 1] > 0
            pred.append(p[m].numpy())
            true.append(maps[:, 0][m].numpy())
    head.detach_hook()
    scale = data.cfg.dpm_scale_um
    pred_um, true_um = np.concatenate(pred) * scale, np.concatenate(true) * scale
    bins = {}
    for lo, hi in BINS_UM:
        sel = (np.abs(true_um) >= lo) & (np.abs(true_um) < hi)
        n = int(sel.sum())
        bins[f"{lo:g}-{hi:g}"] = {
            "objects": n,
            "right_side": float(np.mean(np.sign(pred_um[sel]) == np.sign(true_um[sel])))
            if n
            else None,
            "median_abs_error_um": float(np.median(np.abs(pred_um[sel] - true_um[sel])))
            if n
            else None,
        }
    return {"bins": bins, "train_s": round(train_s, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True)
    p.add_argument("--data", nargs="+", required=True, help="training z-stacks (OME-TIFF)")
    p.add_argument("--steps", type=int, default=1500, help="probe training steps")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--region", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--val-batches", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--cache", type=Path, default=Path("runs/probe_cache"))
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    models, _optics = start(args)
    data = build_data(args.data, args.region, args.crop, args.cache)
    report: dict[str, Any] = {
        "command": "python benchmarks/bench_focus_probe.py "
        + " ".join(a if " " not in a else repr(a) for a in (argv or sys.argv[1:])),
        "steps": args.steps,
        "crop": args.crop,
        "models": {},
    }
    for name, model in models.items():
        torch.manual_seed(args.seed)
        report["models"][name] = res = probe(model, data, args)
        row = "  ".join(
            f"{b}: {v['right_side']:.3f} ({v['objects']}), {v['median_abs_error_um']:.2f} um"
            for b, v in res["bins"].items()
            if v["objects"]
        )
        print(f"{name}: right side / median error per |distance| bin  {row}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
