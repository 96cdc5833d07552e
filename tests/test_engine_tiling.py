"""Tiled inference agrees with untiled inference; tile plans and blend weights are sound.

Measured on the width-0.125 test network (random init, fp32), 200x170 frames, 2 planes
(relative L2 error vs untiled; max / mean absolute error; the output's std is ~0.32):

=========  =======  ========  =======  =======
tile (px)  overlap  rel. err  max      mean
=========  =======  ========  =======  =======
96         32       9.4e-4    7.0e-3   2.6e-4
96         48       4.3e-4    2.9e-3   1.3e-4
128        64       6.0e-5    3.7e-4   2.0e-5
160        64       1.8e-5    1.1e-4   6.0e-6
=========  =======  ========  =======  =======

Without aligning tiles to the generator's 16-px pooling grid the 96/32 error was 0.23
(a U-Net is shift-equivariant only by multiples of its total stride); the remaining error is
the receptive field (radius ~95 px) being cut at interior tile edges. A trained network
may weigh far context differently, so the tolerances below are this network's, with ~3x room.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from live_deepz.engine._tiling import TiledBackend, axis_tiles, axis_weights, infer_tiled
from live_deepz.engine.backends import Backend, create_backend, relative_error
from live_deepz.errors import InputError
from live_deepz.network import DeepZConfig, DeepZGenerator


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: tiny networks on a shared 2-core machine are 10x slower with 2
    OpenMP threads when the other core is busy (spinning barriers)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def generator() -> DeepZGenerator:
    torch.manual_seed(0)
    return DeepZGenerator(DeepZConfig(width=0.125)).eval()


def _frame(h: int = 200, w: int = 170) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    image = rng.random((h, w), dtype=np.float32)
    dpms = np.stack([np.full((h, w), v, np.float32) for v in (-0.8, 0.3)])
    return image, dpms


@pytest.mark.parametrize("length", [32, 95, 96, 161, 176, 208, 512])
def test_axis_plan_covers_and_weights_sum_to_one(length: int) -> None:
    padded = -(-length // 16) * 16
    spans = axis_tiles(padded, 96, 32)
    assert spans[0][0] == 0 and spans[-1][1] == padded
    assert all(s % 16 == 0 and e - s == spans[0][1] - spans[0][0] for s, e in spans)
    for (_, e0), (s1, _) in itertools.pairwise(spans):
        assert e0 - s1 >= 32  # the requested overlap at least
    total = np.zeros(padded)
    for (s, e), w in zip(spans, axis_weights(spans, 8)):
        assert w.shape == (e - s,) and (w >= 0).all()
        total[s:e] += w
    assert np.all(total > 0.99) and np.all(total < 1.01)


@pytest.mark.parametrize(("tile", "overlap", "tol_rel", "tol_max"), [(96, 32, 3e-3, 2e-2)])
def test_tiled_matches_untiled(generator, tile, overlap, tol_rel, tol_max) -> None:
    image, dpms = _frame()
    ref = np.empty_like(dpms)
    create_backend("torch", generator, precision="fp32", device="cpu").infer(image, dpms, ref)
    inner = create_backend("torch", generator, precision="fp32", device="cpu")
    tiled = TiledBackend(inner, tile=tile, overlap=overlap)
    out = np.full_like(dpms, np.nan)
    tiled.infer(image, dpms, out)
    err = np.abs(out - ref)
    rel = relative_error(out, ref)
    print(f"tile {tile}/{overlap}: rel {rel:.2e} max {err.max():.2e} mean {err.mean():.2e}")
    assert rel < tol_rel and err.max() < tol_max
    d = tiled.describe()
    assert d["tiling"]["tiles_y"] == 3 and d["tiling"]["tiles_x"] == 3
    assert d["shape"] == {"height": 200, "width": 170, "n_planes": 2}
    assert inner.describe()["shape"] == {"height": 96, "width": 96, "n_planes": 2}
    assert isinstance(tiled, Backend)
    # larger tiles are closer
    out2 = np.empty_like(dpms)
    infer_tiled(create_backend("torch", generator, precision="fp32"), image, dpms, out2, 128, 64)
    assert relative_error(out2, ref) < rel


def test_frame_smaller_than_tile_is_exact(generator) -> None:
    image, dpms = _frame(70, 90)
    ref = np.empty_like(dpms)
    create_backend("torch", generator, precision="fp32").infer(image, dpms, ref)
    out = np.empty_like(dpms)
    infer_tiled(create_backend("torch", generator, precision="fp32"), image, dpms, out, 128, 32)
    assert relative_error(out, ref) < 1e-6


def test_tiling_rejects_bad_plans_and_inputs(generator) -> None:
    inner = create_backend("torch", generator, precision="fp32")
    with pytest.raises(InputError):
        TiledBackend(inner, tile=16)
    with pytest.raises(InputError):
        TiledBackend(inner, tile=96, overlap=90)
    tiled = TiledBackend(inner, tile=96, overlap=32)
    image, dpms = _frame(120, 130)
    bad = image.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        tiled.infer(bad, dpms, np.empty_like(dpms))
    with pytest.raises(InputError, match="out has shape"):
        tiled.infer(image, dpms, np.empty((1, 120, 130), np.float32))
