"""Bead statistics for the evaluation: lateral/axial FWHM and axial localisation.

Definitions (Deep-Z paper, Methods and Fig. 1b–c; the lateral fit is
:func:`live_deepz.analysis.fwhm.fit_beads`, reused here):

* **lateral FWHM**: threshold → connected components → 30×30 crop → 2D Gaussian fit →
  ``2·sqrt(2 ln 2)·(σx·Δx + σy·Δy)/2``, measured in the plane nearest each bead's focus.
* **axial FWHM**: the x–z slice through each bead (the image row through its centre, 30 px
  wide, every plane of a stack with a uniform z step) is fitted with the same 2D Gaussian
  (``x`` in pixels, ``z`` in planes) → ``2·sqrt(2 ln 2)·σz·Δz``.
* **axial localisation**: per bead, the intensity profile along z (per plane, the maximum
  of the 3×3-box-smoothed image within ``radius_px`` of the bead's true lateral position);
  its peak plane, refined to sub-step precision by the vertex of the parabola through the
  peak and its two neighbours. A peak on the first/last plane is not bracketed: the edge
  plane's z is reported (a conservative error) and counted in ``n_edge``.

**Bead matching.** Beads are identified by the simulator's ground truth: each fitted bead is
matched to the nearest true bead centre within ``max_match_px`` (2 px); only true beads that
are *isolated* (no other bead within ``min_separation_px``, 15 px = half the crop) and at
least ``margin_px`` from the border are used, so every statistic refers to the same beads in
the network's stack and in the scanned stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from live_deepz.errors import InputError

__all__ = [
    "FWHM_PER_SIGMA",
    "BeadTruth",
    "axial_fwhm",
    "axial_peak_z",
    "isolated_mask",
    "lateral_fwhm_matched",
    "match_points",
    "quadratic_peak",
    "robust_summary",
]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
"""FWHM of a Gaussian in units of its σ (≈ 2.3548)."""


@dataclass
class BeadTruth:
    """Ground-truth beads in the field: pixel centres and the stage focus of best focus."""

    rc_px: np.ndarray
    """``(N, 2)`` (row, column) centres in pixels."""
    focus_z_um: np.ndarray
    """``(N,)`` stage focus (µm) at which each bead is sharpest (simulator truth)."""

    def __post_init__(self) -> None:
        self.rc_px = np.asarray(self.rc_px, dtype=np.float64).reshape(-1, 2)
        self.focus_z_um = np.asarray(self.focus_z_um, dtype=np.float64).reshape(-1)
        if len(self.rc_px) != len(self.focus_z_um):
            raise InputError("bead truth: as many centres as focus positions are needed")

    def __len__(self) -> int:
        return len(self.focus_z_um)

    def subset(self, mask: np.ndarray) -> BeadTruth:
        return BeadTruth(self.rc_px[mask], self.focus_z_um[mask])


def isolated_mask(
    rc_px: ArrayLike, shape: tuple[int, int], min_separation_px: float = 15.0, margin_px: int = 16
) -> np.ndarray:
    """``(N,)`` True for centres with no other centre closer than ``min_separation_px`` and at
    least ``margin_px`` from every border of an image of ``shape``."""
    rc = np.asarray(rc_px, dtype=np.float64).reshape(-1, 2)
    h, w = shape
    ok = (
        (rc[:, 0] >= margin_px)
        & (rc[:, 0] <= h - 1 - margin_px)
        & (rc[:, 1] >= margin_px)
        & (rc[:, 1] <= w - 1 - margin_px)
    )
    if len(rc) > 1 and min_separation_px > 0:
        from scipy.spatial import cKDTree

        pairs = cKDTree(rc).query_pairs(float(min_separation_px), output_type="ndarray")
        ok[pairs.ravel()] = False
    return np.asarray(ok)


def match_points(points_rc: ArrayLike, truth_rc: ArrayLike, max_dist_px: float = 2.0) -> np.ndarray:
    """For each true centre, the index of the nearest point within ``max_dist_px`` (-1: none).

    A point is given to one true centre at most (the nearest).
    """
    pts = np.asarray(points_rc, dtype=np.float64).reshape(-1, 2)
    tru = np.asarray(truth_rc, dtype=np.float64).reshape(-1, 2)
    out = np.full(len(tru), -1, dtype=np.int64)
    if len(pts) == 0 or len(tru) == 0:
        return out
    d = np.hypot(tru[:, None, 0] - pts[None, :, 0], tru[:, None, 1] - pts[None, :, 1])
    best = np.argmin(d, axis=1)
    ok = d[np.arange(len(tru)), best] <= max_dist_px
    # a point claimed by two true centres goes to the nearer one
    for j in np.unique(best[ok]):
        claim = np.flatnonzero(ok & (best == j))
        keep = claim[np.argmin(d[claim, j])]
        out[keep] = j
    return out


def lateral_fwhm_matched(
    image: ArrayLike,
    pixel_size_um: float,
    truth_rc: ArrayLike,
    max_match_px: float = 2.0,
    **fit_kwargs: Any,
) -> np.ndarray:
    """``(N,)`` lateral FWHM (µm) of each true bead in ``image`` (NaN: not detected/fitted).

    Beads are detected and fitted by :func:`live_deepz.analysis.fwhm.fit_beads` (the paper's
    procedure) and matched to the true centres with :func:`match_points`.
    """
    from live_deepz.analysis.fwhm import fit_beads

    tru = np.asarray(truth_rc, dtype=np.float64).reshape(-1, 2)
    out = np.full(len(tru), np.nan)
    if len(tru) == 0:
        return out
    fits = fit_beads(np.asarray(image), pixel_size_um, **fit_kwargs)
    if len(fits) == 0:
        return out
    idx = match_points(fits.points_yx_px, tru, max_match_px)
    has = idx >= 0
    out[has] = fits.fwhm_um[idx[has]]
    return out


def _uniform_step(z_um: np.ndarray) -> float:
    if z_um.ndim != 1 or len(z_um) < 3:
        raise InputError(f"a bead z-profile needs >= 3 planes, got {len(z_um)}")
    d = np.diff(z_um)
    if not np.all(d > 0) or np.ptp(d) > 1e-6 * max(1.0, float(np.abs(d).max())):
        raise InputError("the stack's planes must be increasing with a uniform z step")
    return float(d.mean())


def axial_fwhm(
    stack: ArrayLike,
    z_um: ArrayLike,
    rc_px: ArrayLike,
    crop_px: int = 30,
    max_sigma_planes: float | None = None,
) -> np.ndarray:
    """``(N,)`` axial FWHM (µm) from a 2D Gaussian fit of each bead's x–z slice (NaN: failed).

    The slice is ``stack[:, row, col - crop_px/2 : col + crop_px/2]`` at the bead's nearest
    row; the fit is :func:`live_deepz.analysis.fwhm` 's 2D Gaussian (z in planes, x in
    pixels), and the axial FWHM is ``2·sqrt(2 ln 2)·σz·Δz``. Fits that hit their σ bounds
    (e.g. a profile with no peak inside the stack) count as failed.
    """
    from live_deepz.analysis.fwhm import fit_gaussian_crop

    st = np.asarray(stack)
    z = np.asarray(z_um, dtype=np.float64)
    if st.ndim != 3 or st.shape[0] != len(z):
        raise InputError(f"axial FWHM needs a (Z, Y, X) stack with {len(z)} planes")
    dz = _uniform_step(z)
    rc = np.asarray(rc_px, dtype=np.float64).reshape(-1, 2)
    nz, h, w = st.shape
    half = crop_px // 2
    max_sigma = float(max_sigma_planes) if max_sigma_planes else max(nz, crop_px) / 3.0
    out = np.full(len(rc), np.nan)
    for i, (r, c) in enumerate(rc):
        row, c0 = round(r), round(c) - half
        if not (0 <= row < h) or c0 < 0 or c0 + crop_px > w:
            continue
        xz = np.asarray(st[:, row, c0 : c0 + crop_px], dtype=np.float64)
        p = fit_gaussian_crop(xz, max_sigma)
        if p is None:
            continue
        out[i] = FWHM_PER_SIGMA * float(p[3]) * dz
    return out


def quadratic_peak(profile: ArrayLike) -> tuple[float, bool]:
    """Sub-sample position (in samples) of the maximum of a 1D profile, and whether it lies
    on the first/last sample (not bracketed: the edge index is returned)."""
    p = np.asarray(profile, dtype=np.float64).reshape(-1)
    if p.size == 0 or not np.isfinite(p).all():
        raise InputError("a peak needs a non-empty, finite profile")
    k = int(np.argmax(p))
    if k == 0 or k == p.size - 1:
        return float(k), True
    a, b, c = p[k - 1], p[k], p[k + 1]
    den = a - 2.0 * b + c
    frac = 0.0 if den >= 0 else 0.5 * (a - c) / den
    return float(k + np.clip(frac, -0.5, 0.5)), False


def axial_peak_z(
    stack: ArrayLike, z_um: ArrayLike, rc_px: ArrayLike, radius_px: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """``(z_peak_um (N,), at_edge (N,))``: the z of maximum intensity of each bead.

    Per plane the bead's intensity is the maximum of the 3×3-box-smoothed plane within
    ``radius_px`` of its centre (a small lateral search window, robust to a sub-pixel shift
    of the output); the peak plane is refined by :func:`quadratic_peak` and converted to z
    on the stack's uniform grid.
    """
    from scipy import ndimage

    st = np.asarray(stack)
    z = np.asarray(z_um, dtype=np.float64)
    if st.ndim != 3 or st.shape[0] != len(z):
        raise InputError(f"axial localisation needs a (Z, Y, X) stack with {len(z)} planes")
    dz = _uniform_step(z)
    rc = np.asarray(rc_px, dtype=np.float64).reshape(-1, 2)
    nz, h, w = st.shape
    sm = np.empty(st.shape, dtype=np.float32)
    for k in range(nz):
        sm[k] = ndimage.uniform_filter(np.asarray(st[k], dtype=np.float32), size=3)
    zp = np.full(len(rc), np.nan)
    edge = np.zeros(len(rc), dtype=bool)
    r_ = int(radius_px)
    for i, (r, c) in enumerate(rc):
        ri, ci = round(r), round(c)
        y0, y1 = max(ri - r_, 0), min(ri + r_ + 1, h)
        x0, x1 = max(ci - r_, 0), min(ci + r_ + 1, w)
        if y0 >= y1 or x0 >= x1:
            continue
        prof = sm[:, y0:y1, x0:x1].reshape(nz, -1).max(axis=1)
        kf, at_edge = quadratic_peak(prof)
        zp[i] = z[0] + kf * dz
        edge[i] = at_edge
    return zp, edge


def robust_summary(values: ArrayLike) -> dict[str, Any]:
    """``{"n", "median", "q25", "q75", "iqr", "mean", "p90"}`` of the finite values (None
    when there are none)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {k: None for k in ("median", "q25", "q75", "iqr", "mean", "p90")} | {"n": 0}
    q25, med, q75, p90 = np.percentile(v, [25, 50, 75, 90])
    return {
        "n": int(v.size),
        "median": float(med),
        "q25": float(q25),
        "q75": float(q75),
        "iqr": float(q75 - q25),
        "mean": float(v.mean()),
        "p90": float(p90),
    }
