"""benchmarks/bench_sign_oracle.py: the ideal observer's sign error from one bead image."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
from _benchmarks import load_benchmark


def _module() -> ModuleType:
    return load_benchmark("bench_sign_oracle")


def test_separation_is_zero_for_equal_images_and_grows_with_photons() -> None:
    so = _module()
    a = np.full((5, 5), 10.0)
    b = a.copy()
    b[2, 2] = 20.0
    assert so.separation(a, a) == 0.0
    assert so.separation(a, b) == pytest.approx(10 / np.sqrt(15))
    assert so.separation(4 * a, 4 * b) == pytest.approx(2 * so.separation(a, b))


def test_sign_gets_harder_with_defocus_and_with_fewer_photons() -> None:
    pytest.importorskip("psfmodels")
    so = _module()
    d = np.array([2.0, 8.0])
    bright = so.ideal_sign_error(d, 3679.0, 80.0, 5.0, free_flux=False)
    dim = so.ideal_sign_error(d, 920.0, 20.0, 5.0, free_flux=False)
    for rows in (bright, dim):
        err = {r["defocus_um"]: r["ideal_sign_error"] for r in rows}
        assert err[2.0] < err[8.0] and err[-2.0] < err[-8.0]
        assert all(np.sign(r["closest_other_side_um"]) != np.sign(r["defocus_um"]) for r in rows)
    for b, m in zip(
        bright, dim, strict=True
    ):  # 4x fewer photons and background: d' falls (about 2x)
        assert m["dprime"] < b["dprime"]
