"""benchmarks/sign_by_defocus.py: the right-sign fraction per |defocus| bin."""

from __future__ import annotations

import math

from _benchmarks import load_benchmark


def test_sign_by_bin_counts_right_wrong_and_missing_peaks_per_bin() -> None:
    sb = load_benchmark("sign_by_defocus")
    focus = [-2.0, 4.0, 8.0, 0.5]  # beads' true foci (um)
    report = {
        "samples": {
            "beads": {
                "beads": {
                    "per_bead": {
                        "focus_z_um": focus,
                        "model": {
                            # input at 0: |dz| 2, 4, 8 (right, wrong side, no peak), 0.5 (no bin)
                            "0": {"peak_z_um": [-1.8, -3.0, None, 0.4]},
                            # input at -1: |dz| 1 (no bin), 5 (right), 9 (right), 1.5 (wrong)
                            "-1": {"peak_z_um": [-1.9, 3.5, 7.0, -1.2]},
                        },
                    }
                }
            }
        }
    }
    rows = {(lo, hi): (frac, n) for lo, hi, frac, n in sb.sign_by_bin(report)}
    assert rows[(1.5, 3.0)] == (0.5, 2)  # dz 2 right, dz 1.5 wrong
    assert rows[(3.0, 6.0)] == (0.5, 2)  # dz 4 wrong, dz 5 right
    assert rows[(6.0, 10.0)] == (0.5, 2)  # dz 8 without a peak counts as wrong, dz 9 right
    empty = {"samples": {"beads": {"beads": {"per_bead": {"focus_z_um": [], "model": {}}}}}}
    assert all(math.isnan(frac) and n == 0 for _, _, frac, n in sb.sign_by_bin(empty))
