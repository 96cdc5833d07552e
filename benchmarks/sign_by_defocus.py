"""Right side of focus per |defocus| bin, from the ``per_bead`` entries of ``live-deepz eval``.

The eval reports one right-sign fraction for all beads >= 1.5 um from the input plane; this
splits it by how far each bead's true focus is from the input (1.5-3, 3-6, 6-10 um).

Usage: ``python benchmarks/sign_by_defocus.py REPORT.json [REPORT.json ...]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

BINS_UM = ((1.5, 3.0), (3.0, 6.0), (6.0, 10.0))


def sign_by_bin(report: dict[str, Any]) -> list[tuple[float, float, float, int]]:
    """``(lo, hi, right-sign fraction, beads)`` per bin of |true focus - input plane|; a bead
    the model found no peak for counts as wrong (the eval's own rule, ``right_side``)."""
    from live_deepz.analysis.evaluation import right_side

    per_bead = report["samples"]["beads"]["beads"]["per_bead"]
    focus = np.asarray(per_bead["focus_z_um"], dtype=float)
    true_dz, right = [np.zeros(0)], [np.zeros(0)]
    for offset, entry in per_bead["model"].items():
        z0 = float(offset)
        peaks = np.asarray([np.nan if v is None else v for v in entry["peak_z_um"]], dtype=float)
        true_dz.append(focus - z0)
        right.append(right_side(peaks, z0, focus - z0))
    t, ok = np.concatenate(true_dz), np.concatenate(right)
    rows = []
    for lo, hi in BINS_UM:
        inside = (np.abs(t) >= lo) & (np.abs(t) < hi)
        n = int(inside.sum())
        rows.append((lo, hi, float(ok[inside].mean()) if n else float("nan"), n))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reports", nargs="+", type=Path, help="live-deepz eval --json reports")
    args = p.parse_args()
    for path in args.reports:
        rows = sign_by_bin(json.loads(path.read_text()))
        cells = "; ".join(f"{lo:g}-{hi:g} um: {frac:.0%} of {n}" for lo, hi, frac, n in rows)
        print(f"{path.name}: {cells}")


if __name__ == "__main__":
    main()
