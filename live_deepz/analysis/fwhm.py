"""Bead lateral FWHM statistics, as the Deep-Z paper measures them (Methods, Fig. 4).

threshold → connected components → a 30×30 crop around each bead → 2D Gaussian fit
``A·exp(−(x−x0)²/(2σx²) − (y−y0)²/(2σy²)) + B`` → lateral FWHM
``2·sqrt(2 ln 2)·(σx·Δx + σy·Δy)/2`` with Δx = Δy = the pixel size.

The paper does not state its threshold; here the default is the triangle threshold of the
Gaussian-smoothed (σ = 1 px) image — the same rule the paper uses to separate background
from foreground for normalisation — which also keeps defocused (dim, wide) beads, as the
paper's input histograms need. Beads whose crop leaves the image, that share their crop
with another detected bead (``min_separation_px``), or whose fit fails or runs to its bounds
are skipped, and so are components holding two merged beads (two maxima with a dip
between them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from live_deepz.errors import InputError

__all__ = ["FWHM_PER_SIGMA", "BeadFits", "bead_fwhm", "fit_beads", "fwhm_summary"]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
"""FWHM of a Gaussian in units of its σ (≈ 2.3548)."""


@dataclass
class BeadFits:
    """Per-bead 2D Gaussian fits (all arrays ``(N,)`` except ``points_yx_px`` ``(N, 2)``)."""

    points_yx_px: np.ndarray
    """Fitted centres (pixels, full frame)."""
    sigma_x_px: np.ndarray
    sigma_y_px: np.ndarray
    amplitude: np.ndarray
    background: np.ndarray
    fwhm_um: np.ndarray
    """Lateral FWHM, ``2·sqrt(2 ln 2)·(σx·Δx + σy·Δy)/2``."""
    n_candidates: int = 0
    """Components found before the crop/isolation/fit rejections."""

    def __len__(self) -> int:
        return len(self.fwhm_um)


def _gauss2d(params: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, ...]:
    a, y0, x0, sy, sx, b = params
    ey = np.exp(-((yy - y0) ** 2) / (2.0 * sy * sy))
    ex = np.exp(-((xx - x0) ** 2) / (2.0 * sx * sx))
    g = ey * ex
    return a * g + b, g


def fit_gaussian_crop(crop: np.ndarray, max_sigma: float) -> np.ndarray | None:
    from scipy.optimize import least_squares

    n_y, n_x = crop.shape
    yy, xx = np.mgrid[0:n_y, 0:n_x].astype(np.float64)
    yy, xx = yy.ravel(), xx.ravel()
    data = crop.astype(np.float64).ravel()
    edge = np.concatenate([crop[0], crop[-1], crop[1:-1, 0], crop[1:-1, -1]])
    b0 = float(np.median(edge))
    a0 = float(crop.max()) - b0
    if not a0 > 0:
        return None
    w = np.clip(crop - b0, 0, None)
    s = w.sum()
    y0 = float((w.sum(axis=1) * np.arange(n_y)).sum() / s)
    x0 = float((w.sum(axis=0) * np.arange(n_x)).sum() / s)
    # σ from the area above half maximum (robust start even for wide beads)
    s0 = float(
        np.clip(
            math.sqrt(np.count_nonzero(crop - b0 > 0.5 * a0) / math.pi) / 1.1774, 0.6, max_sigma / 2
        )
    )
    start = np.array([a0, y0, x0, s0, s0, b0])

    def resid(p: np.ndarray) -> np.ndarray:
        return np.asarray(_gauss2d(p, yy, xx)[0] - data)

    def jac(p: np.ndarray) -> np.ndarray:
        a, yc, xc, sy, sx, _b = p
        _, g = _gauss2d(p, yy, xx)
        dy, dx = yy - yc, xx - xc
        return np.stack(
            [
                g,
                a * g * dy / sy**2,
                a * g * dx / sx**2,
                a * g * dy**2 / sy**3,
                a * g * dx**2 / sx**3,
                np.ones_like(g),
            ],
            axis=1,
        )

    lo = [0.0, -0.5, -0.5, 0.3, 0.3, -np.inf]
    hi = [np.inf, n_y - 0.5, n_x - 0.5, max_sigma, max_sigma, np.inf]
    try:
        res = least_squares(resid, start, jac=jac, bounds=(lo, hi), x_scale="jac", max_nfev=200)
    except ValueError:
        return None
    p = res.x
    if not res.success or not np.all(np.isfinite(p)):
        return None
    if min(p[3], p[4]) <= 0.3 * 1.01 or max(p[3], p[4]) >= max_sigma * 0.99:
        return None
    return np.asarray(p)


def fit_beads(
    image: Any,
    pixel_size_um: float,
    *,
    crop_px: int = 30,
    threshold: float | None = None,
    smooth_px: float = 1.0,
    min_separation_px: float | None = None,
    max_sigma_px: float | None = None,
    max_beads: int = 5000,
) -> BeadFits:
    """Detect beads and fit a 2D Gaussian to a ``crop_px`` × ``crop_px`` crop around each.

    Parameters
    ----------
    image : ``(H, W)`` image (any real dtype; raw or normalised).
    pixel_size_um : Δx = Δy (µm).
    crop_px : crop size (paper: 30).
    threshold : detection threshold on the smoothed image (default: triangle threshold).
    min_separation_px : skip beads with another detected bead closer than this (default
        ``crop_px / 2``: a neighbour inside the crop biases the fit).
    max_sigma_px : upper bound of σ (default ``crop_px / 4``: the bead must fit its crop).
    """
    img = np.asarray(image)
    if img.ndim != 2 or img.dtype.kind not in "iuf" or img.size == 0:
        raise InputError(f"bead FWHM needs a 2D image of numbers, got shape {img.shape}")
    px = float(pixel_size_um)
    if not px > 0:
        raise InputError(f"pixel_size_um must be > 0, got {pixel_size_um}")
    img = img.astype(np.float64)
    if not np.isfinite(img).all():
        raise InputError("the image contains NaN or inf")
    sm = ndimage.gaussian_filter(img, smooth_px) if smooth_px > 0 else img
    if threshold is None:
        from skimage.filters import threshold_triangle

        if float(sm.max()) == float(sm.min()):
            return _empty(0)
        thr = float(threshold_triangle(sm))
    else:
        thr = float(threshold)
    labels, n = ndimage.label(sm > thr)
    if n == 0:
        return _empty(0)
    peaks = np.array(ndimage.maximum_position(sm, labels, np.arange(1, n + 1)), dtype=int)
    peaks = peaks.reshape(-1, 2)
    merged = _merged_components(sm, labels, n, peaks, thr)
    peaks = peaks[~merged]
    half = crop_px // 2
    sep = crop_px / 2 if min_separation_px is None else float(min_separation_px)
    max_sigma = crop_px / 4 if max_sigma_px is None else float(max_sigma_px)
    isolated = np.ones(len(peaks), dtype=bool)
    if len(peaks) > 1 and sep > 0:
        from scipy.spatial import cKDTree

        pairs = cKDTree(peaks).query_pairs(sep, output_type="ndarray")
        isolated[pairs.ravel()] = False
    h, w = img.shape
    rows = []
    for y, x in peaks[isolated][:max_beads]:
        y0, x0 = int(y) - half, int(x) - half
        if y0 < 0 or x0 < 0 or y0 + crop_px > h or x0 + crop_px > w:
            continue
        p = fit_gaussian_crop(img[y0 : y0 + crop_px, x0 : x0 + crop_px], max_sigma)
        if p is None:
            continue
        rows.append([p[0], p[1] + y0, p[2] + x0, p[3], p[4], p[5]])
    if not rows:
        return _empty(n)
    r = np.array(rows)
    fwhm = FWHM_PER_SIGMA * (r[:, 4] * px + r[:, 3] * px) / 2.0
    return BeadFits(r[:, 1:3], r[:, 4], r[:, 3], r[:, 0], r[:, 5], fwhm, n)


def _merged_components(
    sm: np.ndarray, labels: np.ndarray, n: int, peaks: np.ndarray, thr: float
) -> np.ndarray:
    """``(n,)`` True for components holding two beads: a second local maximum (≥ 3 px away)
    separated from the main one by a dip below 80 % of the lower peak (above threshold)."""
    from skimage.feature import peak_local_max

    cand = peak_local_max(
        sm, min_distance=3, threshold_abs=thr, labels=labels, exclude_border=False
    )
    merged = np.zeros(n, dtype=bool)
    if len(cand) == 0:
        return merged
    lab = labels[cand[:, 0], cand[:, 1]]
    for i in np.unique(lab[np.bincount(lab, minlength=n + 1)[lab] > 1]):
        y1, x1 = peaks[i - 1]
        for y2, x2 in cand[lab == i]:
            if abs(int(y2) - y1) + abs(int(x2) - x1) < 3:
                continue
            m = 2 * max(abs(int(y2) - y1), abs(int(x2) - x1)) + 1
            ys = np.rint(np.linspace(y1, y2, m)).astype(int)
            xs = np.rint(np.linspace(x1, x2, m)).astype(int)
            lower = min(sm[y1, x1], sm[y2, x2]) - thr
            if sm[ys, xs].min() - thr < 0.8 * lower:
                merged[i - 1] = True
                break
    return merged


def _empty(n: int) -> BeadFits:
    z = np.zeros(0)
    return BeadFits(np.zeros((0, 2)), z, z, z, z, z, n)


def bead_fwhm(image: Any, pixel_size_um: float, **kwargs: Any) -> np.ndarray:
    """Lateral FWHM (µm) of every bead :func:`fit_beads` fits (empty when none)."""
    return fit_beads(image, pixel_size_um, **kwargs).fwhm_um


def fwhm_summary(fwhm_um: Any) -> dict[str, float | int | None]:
    """``{"n", "median_um", "mean_um", "p10_um", "p90_um"}`` (None for no beads)."""
    f = np.asarray(fwhm_um, dtype=np.float64).ravel()
    if f.size == 0:
        return {"n": 0, "median_um": None, "mean_um": None, "p10_um": None, "p90_um": None}
    return {
        "n": int(f.size),
        "median_um": float(np.median(f)),
        "mean_um": float(f.mean()),
        "p10_um": float(np.percentile(f, 10)),
        "p90_um": float(np.percentile(f, 90)),
    }
