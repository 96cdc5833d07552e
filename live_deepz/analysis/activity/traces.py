"""Activity traces: F(t) from each neuron's brightest voxels, ΔF/F0 with a robust baseline.

As the paper's Methods: ``F_i(t)`` is the mean of the ``n_brightest`` (100) brightest voxels
of the activity channel inside neuron ``i``'s voxel mask at time ``t``; ``ΔF = F − F0``.
The paper takes F0 as the time average of F; sparse transients pull a mean up, so here F0 is
a low percentile of F over time (``baseline_percentile``, 20 by default) after subtracting
the activity channel's background level (its median over the volume: the dark space around
the body), which makes ``ΔF/F0`` the neuron's own relative change.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from live_deepz.errors import InputError

__all__ = ["TraceExtractor", "activity_snr", "delta_f_over_f"]


class TraceExtractor:
    """``F`` per neuron from a stack, for one voxel mask (labels ``1..N``) reused per frame."""

    def __init__(self, labels: NDArray[np.integer], n_brightest: int = 100) -> None:
        if n_brightest < 1:
            raise InputError(f"n_brightest must be >= 1, got {n_brightest}")
        lab = np.asarray(labels)
        self.shape = lab.shape
        flat = lab.ravel()
        order = np.argsort(flat, kind="stable")
        n = int(flat.max()) if flat.size else 0
        bounds = np.searchsorted(flat[order], np.arange(1, n + 2))
        self.voxels = [order[bounds[i] : bounds[i + 1]] for i in range(n)]
        self.n_brightest = int(n_brightest)

    @property
    def n_neurons(self) -> int:
        return len(self.voxels)

    @property
    def voxels_used(self) -> NDArray[np.int64]:
        """Voxels averaged per neuron (``min(n_brightest, mask size)``)."""
        return np.array([min(len(v), self.n_brightest) for v in self.voxels], dtype=np.int64)

    def __call__(self, stack: NDArray[np.floating]) -> NDArray[np.float64]:
        a = np.asarray(stack)
        if a.shape != self.shape:
            raise InputError(f"stack of shape {a.shape}, the masks are {self.shape}")
        flat = a.ravel()
        out = np.full(self.n_neurons, np.nan)
        for i, vox in enumerate(self.voxels):
            if len(vox) == 0:
                continue
            v = flat[vox].astype(np.float64)
            v = v[np.isfinite(v)]
            if len(v) == 0:
                continue
            k = min(self.n_brightest, len(v))
            out[i] = float(np.partition(v, len(v) - k)[len(v) - k :].mean())
        return out


def delta_f_over_f(
    f: NDArray[np.floating], background: float = 0.0, baseline_percentile: float = 20.0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(ΔF/F0 (N, T), F0 (N,))`` from ``F`` ``(N, T)``; F0 after background subtraction.

    A neuron whose baseline is not above the background (F0 <= 0) gets NaN ΔF/F0.
    """
    a = np.asarray(f, dtype=np.float64) - float(background)
    if a.ndim != 2:
        raise InputError(f"F must be (neurons, time points), got shape {a.shape}")
    f0 = np.nanpercentile(a, baseline_percentile, axis=1) if a.shape[1] else np.zeros(len(a))
    with np.errstate(divide="ignore", invalid="ignore"):
        dff = (a - f0[:, None]) / np.where(f0 > 0, f0, np.nan)[:, None]
    return dff, f0


def activity_snr(dff: NDArray[np.floating]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(activity, snr)`` per neuron: the standard deviation of ΔF/F0 over time (the
    paper's activity measure) and that divided by a robust noise level (1.4826 · MAD of the
    frame-to-frame differences / √2, which sparse transients barely move). NaN traces give
    NaN."""
    a = np.asarray(dff, dtype=np.float64)
    act = np.nanstd(a, axis=1) if a.shape[1] else np.full(len(a), np.nan)
    if a.shape[1] < 3:
        return act, np.full(len(a), np.nan)
    d = np.diff(a, axis=1)
    mad = np.nanmedian(np.abs(d - np.nanmedian(d, axis=1, keepdims=True)), axis=1)
    noise = 1.4826 * mad / np.sqrt(2.0)
    with np.errstate(divide="ignore", invalid="ignore"):  # noise-free: any activity counts
        snr = np.where(act > 0, act / np.maximum(noise, 1e-12), 0.0)
    return act, np.where(np.isfinite(act), snr, np.nan)
