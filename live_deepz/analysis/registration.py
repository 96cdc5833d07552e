"""Registration of a confocal z-stack to a wide-field z-stack of the same sample.

Two methods, one convention: the result ``shift_zyx`` (planes, px, px) is the shift that,
applied to the confocal stack (``scipy.ndimage.shift``), aligns it with the wide-field one.

``psf`` (the Deep-3D paper, Eq. 2-3)
    Treat the confocal stack ``x`` as the sample and the wide-field stack ``y`` as its image
    through an unknown kernel ``f`` (``y = f * x + n``) and solve::

        min_f ||f * x - y||² + λ ||∇f||₁ + μ (Σf - 1)²        (λ = 1, μ = 10)

    with the Chambolle-Pock primal-dual method (K = ∇, isotropic TV; the prox of the
    quadratic part is exact per frequency because both the convolution and ``Σf`` are
    diagonal in Fourier space). The kernel's maximum sits at the aligning shift; a
    three-point parabola per axis gives the sub-voxel position.
``xcorr``
    ``skimage.registration.phase_cross_correlation`` (plain cross-correlation,
    ``normalization=None``, 10× up-sampled) of the same pre-processed stacks.

Pre-processing (both methods): each stack to [0, 1] by its 0.5 / 99.9 percentiles, the mean
removed, a Tukey window along every axis (to keep circular FFT wrap-around from creating a
false match between the top and bottom planes), zero padding of ``max_shift`` per axis.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError

__all__ = [
    "METHODS",
    "RegistrationResult",
    "apply_shift",
    "estimate_kernel",
    "register",
    "register_psf",
    "register_xcorr",
]

METHODS = ("psf", "xcorr")
TV_WEIGHT = 1.0
SUM_WEIGHT = 10.0
ITERATIONS = 60


@dataclass
class RegistrationResult:
    """A registration: the aligning shift and the curves it was read from."""

    method: str
    shift_zyx: tuple[float, float, float]
    """Planes, px, px: applied to the confocal stack, aligns it with the wide-field one."""
    profile_z: NDArray[np.float64]
    """The kernel's (psf) or correlation's (xcorr) axial profile through its peak."""
    profile_shift_z: NDArray[np.float64]
    """Axial shift (planes) of each ``profile_z`` sample."""
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "shift_zyx": [round(float(v), 4) for v in self.shift_zyx],
            "seconds": round(self.seconds, 3),
            "shift_convention": (
                "shift_zyx (planes, px, px), applied to the confocal stack, aligns it with "
                "the wide-field stack"
            ),
            **self.details,
        }


def _check(wf: ArrayLike, conf: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    a = np.asarray(wf, dtype=np.float64)
    b = np.asarray(conf, dtype=np.float64)
    if a.ndim != 3 or b.ndim != 3:
        raise InputError(
            f"registration needs two (Z, Y, X) stacks, got shapes {a.shape} and {b.shape}"
        )
    if a.shape != b.shape:
        raise InputError(
            f"the wide-field {a.shape} and confocal {b.shape} stacks differ in shape; crop or "
            "resample them to the same grid first"
        )
    if min(a.shape) < 3:
        raise InputError(f"stacks of shape {a.shape} are too small to register (>= 3 per axis)")
    for name, s in (("wide-field", a), ("confocal", b)):
        if not np.isfinite(s).all():
            raise InputError(f"the {name} stack holds NaN or Inf values")
        if np.ptp(s) == 0:
            raise InputError(f"the {name} stack is constant; nothing to register")
    return a, b


def _default_max_shift(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (max(1, shape[0] // 4), max(1, shape[1] // 4), max(1, shape[2] // 4))


def _prepare(
    s: NDArray[np.float64], pad: tuple[int, int, int], window: bool = True
) -> NDArray[np.float64]:
    from scipy.signal.windows import tukey

    lo, hi = np.percentile(s, [0.5, 99.9])
    v = (s - lo) / max(hi - lo, 1e-12)
    v = v - v.mean()
    if window:
        for ax, n in enumerate(v.shape):
            shape = [1, 1, 1]
            shape[ax] = n
            v = v * tukey(n, 0.3).reshape(shape)
    return np.pad(v, [(p, p) for p in pad])


def _grad(f: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.stack([np.roll(f, -1, axis=a) - f for a in range(3)])


def _div(g: NDArray[np.float64]) -> NDArray[np.float64]:
    # the negative adjoint of _grad (periodic forward differences)
    return sum(g[a] - np.roll(g[a], 1, axis=a) for a in range(3))  # type: ignore[return-value]


def estimate_kernel(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    tv_weight: float = TV_WEIGHT,
    sum_weight: float = SUM_WEIGHT,
    iterations: int = ITERATIONS,
) -> NDArray[np.float64]:
    """The kernel ``f`` of ``y ≈ f * x`` (circular), Eq. 2 by Chambolle-Pock; index 0 = no shift.

    ``x`` and ``y`` are same-shape 3D arrays (already pre-processed).
    """
    from scipy import fft as sfft

    n = x.size
    xh = sfft.rfftn(x)
    yh = sfft.rfftn(y)
    xy = np.conj(xh) * yh
    x2 = np.abs(xh) ** 2
    dc = np.zeros(xh.shape)
    dc[0, 0, 0] = n * sum_weight
    tau = sigma = 0.99 / math.sqrt(12.0)
    theta = 1.0
    f = np.zeros(x.shape)
    f[0, 0, 0] = 1.0
    fbar = f.copy()
    g = np.zeros((3, *x.shape))
    denom = 1.0 / (2 * tau) + x2 + dc
    for _ in range(iterations):
        g += sigma * _grad(fbar)
        norm = np.sqrt((g**2).sum(axis=0))
        g /= np.maximum(1.0, norm / tv_weight)[None]
        v = f + tau * _div(g)
        f_new = sfft.irfftn((sfft.rfftn(v) / (2 * tau) + xy + dc) / denom, s=x.shape)
        fbar = f_new + theta * (f_new - f)
        f = f_new
    return f


def _parabola(m1: float, m0: float, p1: float) -> float:
    d = m1 - 2 * m0 + p1
    if d >= 0:
        return 0.0
    return float(np.clip(0.5 * (m1 - p1) / d, -0.5, 0.5))


def _peak(vol: NDArray[np.float64], max_shift: tuple[int, int, int]) -> tuple[float, ...]:
    """Sub-voxel signed position of the maximum of a wrapped (index 0 = 0) volume."""
    c = np.fft.fftshift(vol)
    centre = np.array(vol.shape) // 2
    win = tuple(slice(int(k - m), int(k + m + 1)) for k, m in zip(centre, max_shift, strict=True))
    sub = c[win]
    idx = np.array(np.unravel_index(int(np.argmax(sub)), sub.shape))
    pos = idx + np.array([w.start for w in win])
    out = []
    for ax in range(3):
        lo = pos.copy()
        hi = pos.copy()
        lo[ax] = (lo[ax] - 1) % vol.shape[ax]
        hi[ax] = (hi[ax] + 1) % vol.shape[ax]
        frac = _parabola(float(c[tuple(lo)]), float(c[tuple(pos)]), float(c[tuple(hi)]))
        out.append(float(pos[ax] - centre[ax]) + frac)
    return tuple(out)


def _axial_profile(
    vol: NDArray[np.float64], shift: tuple[float, ...], max_z: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    c = np.fft.fftshift(vol)
    centre = np.array(vol.shape) // 2
    y = round(shift[1]) + centre[1]
    x = round(shift[2]) + centre[2]
    zs = np.arange(-max_z, max_z + 1)
    return zs.astype(np.float64), c[zs + centre[0], y, x].astype(np.float64)


def register_psf(
    wf: ArrayLike,
    conf: ArrayLike,
    *,
    tv_weight: float = TV_WEIGHT,
    sum_weight: float = SUM_WEIGHT,
    iterations: int = ITERATIONS,
    max_shift: tuple[int, int, int] | None = None,
) -> RegistrationResult:
    """PSF-based registration (see the module docstring)."""
    a, b = _check(wf, conf)
    t0 = time.perf_counter()
    ms = max_shift or _default_max_shift(a.shape)
    y = _prepare(a, ms)
    x = _prepare(b, ms)
    f = estimate_kernel(x, y, tv_weight, sum_weight, iterations)
    shift = _peak(f, ms)
    zs, prof = _axial_profile(f, shift, ms[0])
    return RegistrationResult(
        "psf",
        (shift[0], shift[1], shift[2]),
        prof,
        zs,
        time.perf_counter() - t0,
        {
            "lambda_tv": tv_weight,
            "mu_sum": sum_weight,
            "iterations": iterations,
            "max_shift_zyx": list(ms),
            "kernel_sum": float(f.sum()),
        },
    )


def register_xcorr(
    wf: ArrayLike,
    conf: ArrayLike,
    *,
    upsample: int = 10,
    max_shift: tuple[int, int, int] | None = None,
) -> RegistrationResult:
    """Cross-correlation registration (skimage ``phase_cross_correlation``, no phase norm)."""
    from skimage.registration import phase_cross_correlation

    a, b = _check(wf, conf)
    t0 = time.perf_counter()
    ms = max_shift or _default_max_shift(a.shape)
    y = _prepare(a, ms)
    x = _prepare(b, ms)
    shift, _, _ = phase_cross_correlation(y, x, upsample_factor=upsample, normalization=None)
    cc = np.real(np.fft.ifftn(np.fft.fftn(y) * np.conj(np.fft.fftn(x))))
    s = tuple(float(v) for v in shift)
    zs, prof = _axial_profile(cc, s, ms[0])
    return RegistrationResult(
        "xcorr",
        (s[0], s[1], s[2]),
        prof,
        zs,
        time.perf_counter() - t0,
        {"upsample": upsample, "max_shift_zyx": list(ms)},
    )


def register(wf: ArrayLike, conf: ArrayLike, method: str = "psf", **kw: Any) -> RegistrationResult:
    """``register_psf`` or ``register_xcorr`` by name."""
    if method == "psf":
        return register_psf(wf, conf, **kw)
    if method == "xcorr":
        return register_xcorr(wf, conf, **kw)
    raise InputError(f"registration method must be one of {METHODS}, got {method!r}")


def apply_shift(stack: ArrayLike, shift_zyx: tuple[float, float, float]) -> NDArray[np.float32]:
    """The stack moved by ``shift_zyx`` (linear interpolation, edges repeated), float32."""
    from scipy.ndimage import shift as nd_shift

    s = np.asarray(stack, dtype=np.float32)
    return np.asarray(nd_shift(s, shift_zyx, order=1, mode="nearest"), dtype=np.float32)
