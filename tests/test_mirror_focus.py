"""benchmarks/bench_mirror_focus.py: bead peaks and the isolated-bead selection."""

from __future__ import annotations

from types import ModuleType

import numpy as np
from _benchmarks import load_benchmark


def _module() -> ModuleType:
    return load_benchmark("bench_mirror_focus")


def test_bead_peak_sees_a_point_above_the_background_and_not_elsewhere() -> None:
    mf = _module()
    img = np.full((40, 40), 0.1, dtype=np.float32)
    img[20, 20] = 1.1
    s = mf.smoothed(img)
    assert mf.peak_above_median(s, 20, 20) > 0.1
    assert abs(mf.peak_above_median(s, 5, 5)) < 1e-6


def test_isolated_beads_drop_neighbours_border_beads_and_beads_outside_the_field() -> None:
    mf = _module()
    truth = {
        "sample": {
            "objects": {
                "pixel_rc": [[50, 50], [50, 55], [80, 80], [5, 60], [60, 100]],
                "focus_z_um": [0.0, 1.0, 2.0, 3.0, 4.0],
                "in_field": [True, True, True, True, False],
            }
        }
    }
    rows, cols, focus = mf.isolated_beads(truth, (128, 128))
    assert list(zip(rows, cols, focus, strict=True)) == [(80, 80, 2.0)]
