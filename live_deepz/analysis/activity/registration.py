"""Rigid registration of virtual stacks against the body's motion (scikit-image).

Each time point's nuclei stack ``(Z, Y, X)`` is compared with a reference stack by
:func:`skimage.registration.phase_cross_correlation` (3D, sub-voxel) with
``normalization=None``, i.e. plain cross-correlation: the phase-only (whitened) variant
weights the highest frequencies as much as the blobs and, on smooth nuclei with few planes,
locks onto the stack's edges (it was off by more than a voxel on a known 3D shift). The
shift that maps it onto the reference is applied to every channel by linear interpolation
with nearest-value edges (:func:`apply_shift`: separable, computed as weighted sums of
index-shifted copies; equal to ``scipy.ndimage.shift(order=1, mode="nearest")`` and ~3x
faster). Shifts are in voxels ``(dz, dy, dx)``: ``shifted = moving`` displaced by ``shift``,
so ``moving ≈ reference`` displaced by ``-shift``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from skimage.registration import phase_cross_correlation

__all__ = ["ShiftEstimator", "apply_shift", "estimate_shift"]

UPSAMPLE = 4
"""Sub-voxel precision of the phase correlation (1/4 voxel: 0.08 µm laterally, 0.125 µm
axially at the paper's 0.325 µm pixels and 0.5 µm planes)."""


def _prepare(stack: NDArray[np.floating]) -> NDArray[np.float32]:
    """Finite float32 with its median removed (NaN → median: an incomplete plane)."""
    a = np.asarray(stack, dtype=np.float32)
    med = float(np.nanmedian(a)) if np.isfinite(a).any() else 0.0
    return np.nan_to_num(a - med, nan=0.0, posinf=0.0, neginf=0.0)


class ShiftEstimator:
    """:func:`estimate_shift` against one fixed ``reference`` (its FFT computed once)."""

    def __init__(self, reference: NDArray[np.floating], upsample: int = UPSAMPLE) -> None:
        from scipy import fft

        ref = _prepare(reference)
        self.ndim = ref.ndim
        self.upsample = int(upsample)
        self._empty = not ref.any()
        self._ref_fft = fft.fftn(ref)

    def __call__(self, moving: NDArray[np.floating]) -> NDArray[np.float64]:
        from scipy import fft

        mov = _prepare(moving)
        if self._empty or not mov.any():
            return np.zeros(self.ndim)
        shift, _, _ = phase_cross_correlation(
            self._ref_fft, fft.fftn(mov), upsample_factor=self.upsample, space="fourier",
            normalization=None,
        )  # fmt: skip
        return np.asarray(shift, dtype=np.float64)


def estimate_shift(
    reference: NDArray[np.floating], moving: NDArray[np.floating], upsample: int = UPSAMPLE
) -> NDArray[np.float64]:
    """Shift ``(dz, dy, dx)`` in voxels that registers ``moving`` onto ``reference``.

    Works for 2D ``(Y, X)`` images as well (two components). A featureless pair (all
    constant) gives zeros.
    """
    return ShiftEstimator(reference, upsample)(moving)


def apply_shift(stack: NDArray[np.floating], shift: NDArray[np.floating]) -> NDArray[np.float32]:
    """``stack`` displaced by ``shift`` voxels (linear interpolation, nearest-value edges):
    ``out[i] = stack[i - shift]``, as ``scipy.ndimage.shift(order=1, mode="nearest")``."""
    out = np.array(stack, dtype=np.float32)
    s = np.asarray(shift, dtype=np.float64).ravel()
    for axis, d in enumerate(s):
        if abs(d) < 1e-3:
            continue
        n = out.shape[axis]
        k = int(np.floor(d))
        f = np.float32(d - k)
        base = np.arange(n) - k
        lo = np.take(out, np.clip(base, 0, n - 1), axis=axis)
        if f > 0:
            hi = np.take(out, np.clip(base - 1, 0, n - 1), axis=axis)
            lo *= np.float32(1.0) - f
            hi *= f
            lo += hi
        out = lo
    return out
