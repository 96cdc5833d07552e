"""Camera noise: photons -> electrons (QE, shot noise) -> read noise -> gain/offset -> uint16.

Noise model, per pixel, with ``lam = photon_rate * exposure * QE`` expected photo-electrons:

* **shot noise**: ``Poisson(lam)``. numpy's Poisson sampler costs 30-70 ns per pixel
  (10-20 ms for a 512² frame), too slow for 100 fps on two cores. Pixels with
  ``lam >= gaussian_threshold_e`` (20 e-) therefore use the normal approximation
  ``lam + sqrt(lam) * Z`` (same mean and variance; skewness 1/sqrt(lam) <= 0.22 is lost);
  pixels below it get Poisson draws by table inversion (:func:`poisson_table_draw`: the
  mean randomly rounded to a 0.1 e- grid, exact mean, variance off by < 0.0025 e-²,
  quantiles exact to 2^-16).
* **read noise**: Gaussian, ``read_noise_e`` RMS, added in electrons. For normal-approximated
  pixels shot and read noise are one draw, ``lam + sqrt(lam + read²) * Z``.
* **full well**: electrons are clipped at ``full_well_e``.
* **conversion**: ``ADU = round(e / gain_e_per_adu + offset_adu)``, clipped to
  ``[0, 2**bit_depth - 1]``.

``Z`` comes from an inverse-CDF table of 65,536 equiprobable standard-normal quantiles indexed
by 16 random bits of the caller's ``np.random.Generator`` (4 values per 64-bit draw): the exact
normal distribution quantised to 2^16 levels and truncated at ±4.3 σ. That is ~5x faster than
``standard_normal`` and far below what the rounding to ADU can resolve.

``expose`` is fast at 512² (~1-2 ms): it reuses per-shape scratch buffers, so one
:class:`CameraModel` instance must not be used from two threads at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtri

__all__ = ["CameraModel", "normal_table_draw", "poisson_table_draw"]

_NORMAL_TABLE = ndtri((np.arange(65536, dtype=np.float64) + 0.5) / 65536.0)
_NORMAL_TABLE /= _NORMAL_TABLE.std()  # unit variance exactly (truncation costs ~1e-4)
_NORMAL_TABLE_F32 = _NORMAL_TABLE.astype(np.float32)


def normal_table_draw(rng: np.random.Generator, out: NDArray[np.float32]) -> NDArray[np.float32]:
    """Fill ``out`` (contiguous float32) with standard-normal draws via the quantile table."""
    flat = out.reshape(-1)
    n = flat.size
    raw = rng.bit_generator.random_raw((n + 3) // 4)
    idx = np.asarray(raw, dtype=np.uint64).view(np.uint16)[:n]
    np.take(_NORMAL_TABLE_F32, idx, out=flat)
    return out


_POISSON_STEP = 0.1
_POISSON_KMAX = 256
_POISSON_TABLES: dict[float, NDArray[np.uint8]] = {}
_POISSON_LOCK = threading.Lock()


def _poisson_table(lam_max: float) -> NDArray[np.uint8]:
    """``(n_lam, 65536)`` inverse CDFs of Poisson(j * 0.1) at the 65,536 quantile midpoints."""
    with _POISSON_LOCK:
        t = _POISSON_TABLES.get(lam_max)
        if t is None:
            from scipy.stats import poisson

            lams = np.arange(0.0, lam_max + 2 * _POISSON_STEP, _POISSON_STEP)
            ks = np.arange(_POISSON_KMAX - 1)
            q = (np.arange(65536, dtype=np.float64) + 0.5) / 65536.0
            t = np.empty((len(lams), 65536), dtype=np.uint8)
            for j, lam in enumerate(lams):
                cdf = poisson.cdf(ks, lam)
                t[j] = np.minimum(np.searchsorted(cdf, q, side="right"), _POISSON_KMAX - 1)
            _POISSON_TABLES[lam_max] = t
        return t


def poisson_table_draw(
    lam: NDArray[np.float32], rng: np.random.Generator, lam_max: float = 20.0
) -> NDArray[np.float32]:
    """Poisson draws for means ``0 <= lam <= lam_max`` by table inversion.

    Each mean is randomly rounded to one of its two neighbours on a 0.1 grid (mean exact,
    variance + < 0.0025) and a 16-bit uniform picks the quantile: Poisson to 2^-16 in
    probability, ~20x faster than ``Generator.poisson`` for small means.
    """
    if lam_max > 100.0:  # the table would be large; numpy's sampler is fine then
        return rng.poisson(np.asarray(lam, dtype=np.float64)).astype(np.float32)
    table = _poisson_table(float(lam_max)).reshape(-1)
    n = lam.size
    raw = np.asarray(rng.bit_generator.random_raw((n + 1) // 2), dtype=np.uint64)
    bits = raw.view(np.uint16).reshape(-1, 2)[:n]
    a = np.minimum(lam, np.float32(lam_max)) * np.float32(1.0 / _POISSON_STEP)
    j = a.astype(np.int64)
    frac = a - j
    j += bits[:, 0] * np.float32(1.0 / 65536.0) < frac  # random rounding of the mean
    j <<= 16
    j |= bits[:, 1]
    return np.take(table, j).astype(np.float32)


@dataclass
class CameraModel:
    """An sCMOS-like camera (defaults: QE 0.8, 1.5 e- read noise, 0.5 e-/ADU, offset 100)."""

    qe: float = 0.8
    """Quantum efficiency at the emission wavelength."""
    read_noise_e: float = 1.5
    """RMS read noise, electrons."""
    offset_adu: float = 100.0
    """Camera offset (bias), ADU."""
    gain_e_per_adu: float = 0.5
    """Electrons per ADU."""
    bit_depth: int = 16
    full_well_e: float = 30000.0
    """Saturation, electrons."""
    gaussian_threshold_e: float = 20.0
    """Expected electrons above which shot noise uses the normal approximation."""
    _scratch: dict[tuple[int, ...], tuple[NDArray[np.float32], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )
    _mask: NDArray[np.bool_] = field(
        default_factory=lambda: np.empty(0, dtype=bool), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not 0 < self.qe <= 1:
            raise ValueError(f"qe must be in (0, 1], got {self.qe}")
        if self.gain_e_per_adu <= 0 or self.read_noise_e < 0 or self.full_well_e <= 0:
            raise ValueError("gain and full well must be > 0, read noise >= 0")
        if not 1 <= self.bit_depth <= 16:
            raise ValueError("bit_depth must be within 1..16 (uint16 output)")

    @property
    def max_adu(self) -> int:
        return int(2**self.bit_depth - 1)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    def electrons(self, photon_rate: ArrayLike, exposure_ms: float) -> NDArray[np.float64]:
        """Expected photo-electrons for a photon rate (photons/s) and exposure."""
        return np.asarray(photon_rate, dtype=np.float64) * (exposure_ms * 1e-3 * self.qe)

    def mean_adu(self, photon_rate: ArrayLike, exposure_ms: float) -> NDArray[np.float64]:
        """Noise-free expected ADU (before rounding), with the same clipping as ``expose``."""
        e = np.minimum(self.electrons(photon_rate, exposure_ms), self.full_well_e)
        return np.asarray(
            np.clip(e / self.gain_e_per_adu + self.offset_adu, 0, self.max_adu), dtype=np.float64
        )

    def expected_frame(
        self, photon_rate: ArrayLike, exposure_ms: float, out: NDArray[np.uint16] | None = None
    ) -> NDArray[np.uint16]:
        """The noise-free frame (expected ADU, rounded) as uint16."""
        m = self.mean_adu(photon_rate, exposure_ms)
        if out is None:
            out = np.empty(m.shape, dtype=np.uint16)
        np.copyto(out, np.floor(m + 0.5), casting="unsafe")
        return out

    def _buffers(self, shape: tuple[int, ...]) -> tuple[NDArray[np.float32], ...]:
        b = self._scratch.get(shape)
        if b is None:
            b = tuple(np.empty(shape, dtype=np.float32) for _ in range(3))
            self._scratch.clear()  # keep one shape
            self._scratch[shape] = b
            self._mask = np.empty(shape, dtype=bool)
        return b

    def expose(
        self,
        photon_rate: ArrayLike,
        exposure_ms: float,
        rng: np.random.Generator,
        out: NDArray[np.uint16] | None = None,
    ) -> NDArray[np.uint16]:
        """One noisy frame: ``photon_rate`` (photons/s/pixel) integrated over ``exposure_ms``.

        Returns uint16 ``out`` (allocated when not given). See the module docstring.
        """
        rate = np.asarray(photon_rate)
        shape = rate.shape
        if out is None:
            out = np.empty(shape, dtype=np.uint16)
        elif out.shape != shape or out.dtype != np.uint16:
            raise ValueError(f"out must be uint16 of shape {shape}")
        with self._lock:
            lam, sd, z = self._buffers(shape)
            np.multiply(rate, np.float32(exposure_ms * 1e-3 * self.qe), out=lam, casting="unsafe")
            np.maximum(lam, 0.0, out=lam)
            rn2 = np.float32(self.read_noise_e**2)
            np.add(lam, rn2, out=sd)
            np.sqrt(sd, out=sd)
            normal_table_draw(rng, z)
            low = np.less(lam, np.float32(self.gaussian_threshold_e), out=self._mask)
            nlow = int(np.count_nonzero(low))
            if nlow:
                # dim pixels: exact Poisson shot noise plus the read noise
                idx = np.flatnonzero(low)
                e_low = z.reshape(-1)[idx]
                e_low *= np.float32(self.read_noise_e)
                e_low += poisson_table_draw(lam.reshape(-1)[idx], rng, self.gaussian_threshold_e)
            # bright pixels: e = lam + sqrt(lam + read²) * Z
            z *= sd
            z += lam
            if nlow:
                z.reshape(-1)[idx] = e_low
            np.minimum(z, np.float32(self.full_well_e), out=z)
            z *= np.float32(1.0 / self.gain_e_per_adu)
            z += np.float32(self.offset_adu + 0.5)
            np.clip(z, 0.0, np.float32(self.max_adu + 0.49), out=z)
            np.copyto(out, z, casting="unsafe")  # truncation of values >= 0 = rounding
        return out
