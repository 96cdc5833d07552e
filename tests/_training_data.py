"""Tiny synthetic z-stacks for the training tests (fast: Gaussian PSFs, 64-128 px)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.signal import fftconvolve

from live_deepz.sim.confocal import confocal_psf_stack
from live_deepz.training import SamplingConfig
from live_deepz.training.pairs import FieldStack, PairConfig, PairData, build_pairs
from live_deepz.training.trainer import TrainConfig


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny networks run as fast on one thread, and far faster when the cores are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def bead_object(size: int, n_beads: int, seed: int, blobs: int = 0) -> np.ndarray:
    """A 2D object: point beads (and optionally larger blobs), float32."""
    rng = np.random.default_rng(seed)
    obj = np.zeros((size, size), np.float32)
    ys, xs = rng.integers(4, size - 4, n_beads), rng.integers(4, size - 4, n_beads)
    obj[ys, xs] = rng.uniform(0.5, 1.0, n_beads)
    for _ in range(blobs):
        blob = np.zeros_like(obj)
        y, x = rng.integers(8, size - 8, 2)
        blob[y, x] = rng.uniform(5, 15)
        obj += ndimage.gaussian_filter(blob, rng.uniform(1.5, 4.0))
    return obj


def gaussian_psf_stack(
    z_um: np.ndarray, sigma0_px: float = 1.0, zr_um: float = 0.8, half: int = 12
) -> np.ndarray:
    """Wide-field-like PSF slices: a Gaussian beam, each slice summing to 1."""
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    out = []
    for z in z_um:
        s = sigma0_px * np.sqrt(1 + (z / zr_um) ** 2)
        k = np.exp(-(xx**2 + yy**2) / (2 * s * s))
        out.append(k / k.sum())
    return np.stack(out).astype(np.float32)


def render(obj: np.ndarray, psf: np.ndarray, photons: float, background: float, seed: int):
    """``(Z, Y, X)`` uint16 camera stack of a 2D object seen through each PSF slice."""
    rng = np.random.default_rng(seed)
    planes = [fftconvolve(obj, k, mode="same") for k in psf]
    st = np.clip(np.stack(planes), 0, None) * photons + background
    return np.clip(rng.poisson(st), 0, 65535).astype(np.uint16)


def synth_stack(
    n_planes: int = 9,
    size: int = 64,
    z_step: float = 0.5,
    seed: int = 0,
    n_beads: int = 12,
    focus: float | None = None,
    shifts: np.ndarray | None = None,
    blobs: int = 0,
    photons: float = 2000.0,
    noise_seed: int | None = None,
) -> np.ndarray:
    """A bead layer imaged at ``n_planes`` focus positions (best focus at plane ``focus``).

    ``shifts`` ``(Z, 2)`` moves each plane laterally (stage drift) by (dy, dx) px;
    ``noise_seed`` draws another exposure of the same beads.
    """
    focus = (n_planes - 1) / 2 if focus is None else focus
    z = (np.arange(n_planes) - focus) * z_step
    obj = bead_object(size, n_beads, seed, blobs)
    noise = seed + 1 if noise_seed is None else 1000 + noise_seed
    stack = render(obj, gaussian_psf_stack(z), photons=photons, background=100.0, seed=noise)
    if shifts is not None:
        stack = (
            np.stack(
                [
                    ndimage.shift(p.astype(np.float32), s, order=3, mode="nearest")
                    for p, s in zip(stack, shifts, strict=True)
                ]
            )
            .round()
            .astype(np.uint16)
        )
    return stack


def modality_pair(seed: int, shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A wide-field stack (focus at plane 4) and a confocal one of the same beads, laterally
    shifted and with its focus at plane 5.5 (another axial zero)."""
    z = np.arange(11) * 0.5
    obj = bead_object(96, 50, seed=seed, blobs=12)
    wf = render(obj, gaussian_psf_stack(z - 2.0), 3000.0, 100.0, seed)
    conf_psf = confocal_psf_stack(gaussian_psf_stack(z - 2.75))
    conf = render(ndimage.shift(obj, shift, order=1), conf_psf, 3000.0, 20.0, seed + 1)
    return wf, conf


TINY_FAST = TrainConfig(
    width=0.0625,
    batch_size=4,
    val_every=2,
    max_val_pairs=8,
    progress=False,
    recipe="fast",
    residual=True,
    loss="mse",
    lr_g=1e-3,
    lr_schedule="cosine",
    warmup_steps=2,
    select_on="val_balanced_mae",
    sampling=SamplingConfig(crop=16, jitter_px=4),
    min_useful_steps=100,
)
"""A tiny fast-recipe configuration (16 px crops) for :func:`small_bead_data`."""


def small_bead_data(cache: Path, seed: int) -> PairData:
    """Training pairs of two 64 px bead stacks (20 beads, seeds ``seed``, ``seed + 1``)."""
    stacks = [
        FieldStack(synth_stack(size=64, seed=seed + i, n_beads=20), 0.5, 0.325, name=f"s{i}.tif")
        for i in range(2)
    ]
    cfg = PairConfig(patch=32, z_half_range_um=2.0, align=False)
    return build_pairs(stacks, cfg, cache)
