"""Stack-to-stack helpers shared by WFCON-Net training, inference and evaluation.

* :func:`unit_normalize`: a stack to [0, 1] by its low / high percentiles (the paper
  normalises every patch to [0, 1]; per-stack percentiles keep patches of one stack on one
  scale and ignore hot pixels).
* :func:`interpolate_planes`: a stack sampled every ``factor`` planes back to the full
  plane spacing (linear in z), the paper's Fig. 9 input for axially sub-sampled stacks.
* :func:`subsample_planes`: keep every ``factor``-th plane (to make such inputs from a full
  stack).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InputError

__all__ = [
    "NORMALIZATION",
    "interpolate_planes",
    "subsample_planes",
    "unit_normalize",
]

NORMALIZATION = {"method": "unit-percentile", "low_percentile": 0.1, "high_percentile": 99.9}
"""The card's ``normalization`` for WFCON-Net models (input and target alike)."""


def _as_stack(stack: ArrayLike, what: str = "stack") -> NDArray[np.float32]:
    s = np.asarray(stack)
    if s.ndim != 3:
        raise InputError(f"a {what} must be (Z, Y, X), got shape {s.shape}")
    s = s.astype(np.float32, copy=False)
    if not np.isfinite(s).all():
        raise InputError(f"the {what} holds NaN or Inf values")
    return s


def unit_normalize(
    stack: ArrayLike,
    low_percentile: float = NORMALIZATION["low_percentile"],  # type: ignore[assignment]
    high_percentile: float = NORMALIZATION["high_percentile"],  # type: ignore[assignment]
) -> NDArray[np.float32]:
    """``(s - p_low) / (p_high - p_low)`` (not clipped above 1), float32."""
    s = _as_stack(stack)
    lo, hi = np.percentile(s, [low_percentile, high_percentile])
    if not hi > lo:
        raise InputError("the stack is (nearly) constant; there is nothing to normalise")
    return ((s - np.float32(lo)) / np.float32(hi - lo)).astype(np.float32)


def subsample_planes(stack: ArrayLike, factor: int) -> NDArray[np.float32]:
    """Planes ``0, factor, 2·factor, ...`` of a stack."""
    if factor < 1:
        raise InputError(f"the z sub-sampling factor must be >= 1, got {factor}")
    return _as_stack(stack)[::factor].copy()


def interpolate_planes(
    stack: ArrayLike, factor: int, n_planes: int | None = None
) -> NDArray[np.float32]:
    """A stack with planes every ``factor`` steps → every step (linear in z).

    The result has ``(Z - 1) * factor + 1`` planes, or ``n_planes`` (planes beyond the last
    measured one repeat it).
    """
    s = _as_stack(stack)
    if factor < 1:
        raise InputError(f"the z sub-sampling factor must be >= 1, got {factor}")
    n = n_planes or (len(s) - 1) * factor + 1
    zq = np.minimum(np.arange(n, dtype=np.float64) / factor, len(s) - 1)
    i0 = np.floor(zq).astype(int)
    i1 = np.minimum(i0 + 1, len(s) - 1)
    t = (zq - i0).astype(np.float32)[:, None, None]
    return (s[i0] * (1 - t) + s[i1] * t).astype(np.float32)
