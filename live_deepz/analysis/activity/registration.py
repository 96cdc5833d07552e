"""Rigid registration of virtual stacks against the body's motion (scikit-image).

Each time point's nuclei stack ``(Z, Y, X)`` is compared with a reference stack by
:func:`skimage.registration.phase_cross_correlation` (3D, sub-voxel); the shift that maps it
onto the reference is applied to every channel with :func:`scipy.ndimage.shift` (linear
interpolation, edges filled with the nearest value). Shifts are in voxels ``(dz, dy, dx)``:
``shifted = moving`` displaced by ``shift``, so ``moving ≈ reference`` displaced by ``-shift``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from skimage.registration import phase_cross_correlation

__all__ = ["apply_shift", "estimate_shift"]

UPSAMPLE = 10
"""Sub-voxel precision of the phase correlation (1/10 voxel)."""


def _prepare(stack: NDArray[np.floating]) -> NDArray[np.float32]:
    """Finite float32 with its median removed (NaN → median: an incomplete plane)."""
    a = np.asarray(stack, dtype=np.float32)
    med = float(np.nanmedian(a)) if np.isfinite(a).any() else 0.0
    return np.nan_to_num(a - med, nan=0.0, posinf=0.0, neginf=0.0)


def estimate_shift(
    reference: NDArray[np.floating], moving: NDArray[np.floating], upsample: int = UPSAMPLE
) -> NDArray[np.float64]:
    """Shift ``(dz, dy, dx)`` in voxels that registers ``moving`` onto ``reference``.

    Works for 2D ``(Y, X)`` images as well (two components). A featureless pair (all
    constant) gives zeros.
    """
    ref = _prepare(reference)
    mov = _prepare(moving)
    if not ref.any() or not mov.any():
        return np.zeros(ref.ndim)
    shift, _, _ = phase_cross_correlation(ref, mov, upsample_factor=int(upsample))
    return np.asarray(shift, dtype=np.float64)


def apply_shift(stack: NDArray[np.floating], shift: NDArray[np.floating]) -> NDArray[np.float32]:
    """``stack`` displaced by ``shift`` voxels (linear interpolation, nearest-value edges)."""
    a = np.asarray(stack, dtype=np.float32)
    s = np.asarray(shift, dtype=np.float64)
    if not np.any(np.abs(s) > 1e-3):
        return a.copy()
    return np.asarray(ndimage.shift(a, s, order=1, mode="nearest"), dtype=np.float32)
