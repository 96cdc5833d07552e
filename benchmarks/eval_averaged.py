"""``live-deepz eval`` of an averaged refocuser: test-time flips/rotations, or several models.

Two cheap ways to lower a network's variance without training, measured on the same eval:

* ``--dihedral N``: each plane is the mean of the model's outputs for the first ``N`` of the
  8 flips/rotations of the input (each output rotated back). The simulated PSF is radially
  symmetric, so every transform asks the same question.
* ``--model A --model B``: each plane is the mean of the models' outputs (same trained range).

Usage::

    python benchmarks/eval_averaged.py --model runs/D2 --dihedral 8 --seed 0 --json out.json
    python benchmarks/eval_averaged.py --model runs/D2 --model runs/D2S10 --json out.json

Compare with ``python benchmarks/compare_eval.py plain.json out.json``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: The 8 flips/rotations: (quarter turns, mirrored), identity first.
DIHEDRAL = tuple((k, f) for f in (False, True) for k in range(4))


def _forward(a: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    a = np.rot90(a, turns, axes=(-2, -1))
    return a[..., ::-1] if mirror else a


def _inverse(a: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    a = a[..., ::-1] if mirror else a
    return np.rot90(a, -turns, axes=(-2, -1))


class AveragedRefocuser:
    """``refocus(image, dpms_um)``: the mean over ``refocusers`` and the first ``dihedral``
    transforms of the input (uniform ``(K,)`` offsets or ``(K, H, W)`` DPM maps)."""

    def __init__(self, refocusers: Sequence[Any], dihedral: int = 1) -> None:
        if not refocusers:
            raise ValueError("AveragedRefocuser needs at least one refocuser")
        if not 1 <= dihedral <= len(DIHEDRAL):
            raise ValueError(f"dihedral must be 1..{len(DIHEDRAL)}, got {dihedral}")
        self.refocusers = list(refocusers)
        self.transforms = DIHEDRAL[:dihedral]
        self.backend = getattr(self.refocusers[0], "backend", None)

    def refocus(self, frames: np.ndarray, dpms_um: Any) -> np.ndarray:
        image = np.asarray(frames, dtype=np.float32)
        dpms = np.asarray(dpms_um, dtype=np.float32)
        total: np.ndarray | None = None
        for r in self.refocusers:
            for turns, mirror in self.transforms:
                x = np.ascontiguousarray(_forward(image, turns, mirror))
                d = dpms if dpms.ndim == 1 else np.ascontiguousarray(_forward(dpms, turns, mirror))
                y = _inverse(np.asarray(r.refocus(x, d), dtype=np.float32), turns, mirror)
                total = y.copy() if total is None else total + y
        assert total is not None
        return np.ascontiguousarray(total / (len(self.refocusers) * len(self.transforms)))

    def __call__(self, image: np.ndarray, dpms_um: Any) -> np.ndarray:
        return self.refocus(image, dpms_um)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", action="append", required=True, help="model (repeat to average)")
    p.add_argument("--dihedral", type=int, default=1, help="flips/rotations averaged, 1-8")
    p.add_argument("--seed", type=int, default=0, help="the eval's sample seed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", required=True, metavar="OUT.json")
    args = p.parse_args(argv)

    import torch

    from live_deepz.analysis.evaluation import EvalConfig, evaluate
    from live_deepz.engine import Refocuser, create_backend
    from live_deepz.modelfile import load_model, resolve_model

    torch.set_num_threads(args.threads)
    cfg = EvalConfig(seed=args.seed, progress=False)
    models = [load_model(resolve_model(m)) for m in args.model]
    ranges = {tuple(m.card.z_range_um) for m in models}
    if len(ranges) > 1:
        raise SystemExit(f"the models were trained for different z ranges: {sorted(ranges)}")
    refocusers = [
        Refocuser(
            m,
            create_backend(cfg.backend, m.generator, precision=cfg.precision, device=cfg.device),
        )
        for m in models
    ]
    result = evaluate(models[0], cfg, AveragedRefocuser(refocusers, args.dihedral))
    report = result.report
    report["averaged"] = {"models": args.model, "dihedral": args.dihedral}
    out = Path(args.json)
    out.write_text(json.dumps(report, indent=1, allow_nan=False))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
