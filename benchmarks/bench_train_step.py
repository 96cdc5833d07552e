"""Training speed: seconds per L1 pre-training step and per LS-GAN iteration (6 G + 3 D).

Runs the real :class:`live_deepz.training.Trainer` on a small synthetic bead stack (Gaussian
defocus, made here) with one validation pair, and times the steps between two
validations (after a warm-up) from the trainer's own history, so the number includes batch
assembly from the memory-mapped cache. Each phase is measured ``--repeats`` times; the
median is reported.

Usage::

    python benchmarks/bench_train_step.py                         # width 0.25, patch 128, batch 8
    python benchmarks/bench_train_step.py --width 1 --patch 256 --batch 20 --device cuda --amp on
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from live_deepz.training import FieldStack, PairConfig, TrainConfig, build_pairs
from live_deepz.training.trainer import Trainer

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "train_step.json"


def synthetic_stack(size: int, n_planes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    obj = np.zeros((size, size), np.float32)
    n = size * size // 400
    obj[rng.integers(4, size - 4, n), rng.integers(4, size - 4, n)] = rng.uniform(0.5, 1, n)
    z = (np.arange(n_planes) - n_planes // 2) * 0.5
    planes = [ndimage.gaussian_filter(obj, np.sqrt(1 + (dz / 0.8) ** 2)) for dz in z]
    stack = np.stack(planes) * 2000 + 100
    return rng.poisson(stack).astype(np.uint16)


def time_phase(data: Any, base: TrainConfig, gan: bool, n: int, out: Path) -> float:
    """Seconds per step over the last ``n`` of ``2 n`` steps (the first ``n`` warm up)."""
    cfg = TrainConfig(
        **{
            **base.__dict__,
            "pretrain_steps": 0 if gan else 2 * n,
            "steps": 2 * n if gan else 0,
            "val_every": n,
        }
    )
    res = Trainer(cfg, data, out).fit()
    walls = {h["step"]: h["wall_s"] for h in res.history}
    return (walls[2 * n] - walls[n]) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default="off", help="off, on (CPU: bf16), bf16, fp16")
    ap.add_argument("--l1-steps", type=int, default=4, help="timed L1 steps per repeat")
    ap.add_argument("--gan-steps", type=int, default=2, help="timed GAN iterations per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        size = max(2 * args.patch, 256)
        stacks = [FieldStack(synthetic_stack(size, 11, s), 0.5, 0.325, f"s{s}") for s in (0, 1)]
        data = build_pairs(stacks, PairConfig(patch=args.patch, z_half_range_um=2.5), tmp)
        base = TrainConfig(
            width=args.width,
            batch_size=args.batch,
            max_val_pairs=1,
            device=args.device,
            amp=args.amp,
            progress=False,
        )
        res: dict[str, list[float]] = {"l1_step_s": [], "gan_iteration_s": []}
        for r in range(args.repeats):
            res["l1_step_s"].append(
                time_phase(data, base, False, args.l1_steps, Path(tmp) / f"l1{r}")
            )
            res["gan_iteration_s"].append(
                time_phase(data, base, True, args.gan_steps, Path(tmp) / f"gan{r}")
            )
    report = {
        "what": "seconds per training step (median of repeats)",
        "width": args.width,
        "patch": args.patch,
        "batch": args.batch,
        "device": args.device,
        "amp": args.amp,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "l1_step_s": statistics.median(res["l1_step_s"]),
        "gan_iteration_s": statistics.median(res["gan_iteration_s"]),
        "all": res,
    }
    print(json.dumps(report, indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
