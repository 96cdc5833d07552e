"""Image similarity metrics the Deep-Z paper reports: MSE, RMSE, MAE, Pearson r, SSIM.

All metrics compare two images **in the same normalised intensity units**. The evaluation
puts every image (network output, unrefocused input, ground-truth plane) into the units of
the paper's normalisation of the ground-truth z-stack (:func:`live_deepz.normalize.
normalize_stack`: triangle-threshold background of the stack's extended-depth-of-field image
subtracted, scaled so that 1 % of its foreground pixels exceed 1.0), so 0 is the background
and 1 is bright in-focus signal; see :mod:`live_deepz.analysis.evaluation._run`.

SSIM is Wang et al. (2004) as :func:`skimage.metrics.structural_similarity` computes it with
``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` (the reference
implementation's 11×11 Gaussian window) and a **fixed** ``data_range`` of 1.0 (the
normalised scale), not each image's own min–max: the stabilising constants then mean the
same for every image and every model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from live_deepz.errors import InputError

__all__ = [
    "DEFAULT_DATA_RANGE",
    "METRIC_NAMES",
    "image_metrics",
    "mae",
    "mse",
    "pearson",
    "rmse",
    "ssim",
]

DEFAULT_DATA_RANGE = 1.0
"""SSIM ``data_range`` for normalised images (background 0, bright foreground ~1)."""

METRIC_NAMES = ("ssim", "rmse", "mae", "mse", "pearson")
"""Keys of :func:`image_metrics`; SSIM and Pearson: higher is better; the others lower."""


def _pair(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a)
    y = np.asarray(b)
    for name, arr in (("image", x), ("reference", y)):
        if arr.dtype.kind not in "iuf":
            raise InputError(f"metrics need real-valued images; the {name} is {arr.dtype}")
        if arr.ndim != 2 or arr.size == 0:
            raise InputError(f"metrics need 2D (Y, X) images; the {name} has shape {arr.shape}")
    if x.shape != y.shape:
        raise InputError(f"metrics need images of one shape, got {x.shape} and {y.shape}")
    x = x.astype(np.float64, copy=False)
    y = y.astype(np.float64, copy=False)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError("metrics need finite images (NaN or inf found)")
    return x, y


def mse(a: ArrayLike, b: ArrayLike) -> float:
    """Mean squared error."""
    x, y = _pair(a, b)
    return float(np.mean((x - y) ** 2))


def rmse(a: ArrayLike, b: ArrayLike) -> float:
    """Root-mean-square error."""
    return float(np.sqrt(mse(a, b)))


def mae(a: ArrayLike, b: ArrayLike) -> float:
    """Mean absolute error."""
    x, y = _pair(a, b)
    return float(np.mean(np.abs(x - y)))


def pearson(a: ArrayLike, b: ArrayLike) -> float:
    """Pearson correlation coefficient of the pixel values (NaN if either is constant)."""
    x, y = _pair(a, b)
    xc = x - x.mean()
    yc = y - y.mean()
    den = float(np.sqrt(np.sum(xc * xc) * np.sum(yc * yc)))
    if den == 0.0:
        return float("nan")
    return float(np.sum(xc * yc) / den)


def ssim(a: ArrayLike, b: ArrayLike, data_range: float = DEFAULT_DATA_RANGE) -> float:
    """Structural similarity (Gaussian 11×11 window, σ 1.5; fixed ``data_range``)."""
    from skimage.metrics import structural_similarity

    x, y = _pair(a, b)
    if min(x.shape) < 7:
        raise InputError(f"SSIM needs images of at least 7×7 px, got {x.shape}")
    if not data_range > 0:
        raise InputError(f"SSIM data_range must be > 0, got {data_range}")
    return float(
        structural_similarity(
            x,
            y,
            data_range=float(data_range),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def image_metrics(
    image: ArrayLike, reference: ArrayLike, data_range: float = DEFAULT_DATA_RANGE
) -> dict[str, Any]:
    """``{"ssim", "rmse", "mae", "mse", "pearson"}`` of ``image`` against ``reference``."""
    x, y = _pair(image, reference)
    d = x - y
    m = float(np.mean(d * d))
    return {
        "ssim": ssim(x, y, data_range),
        "rmse": float(np.sqrt(m)),
        "mae": float(np.mean(np.abs(d))),
        "mse": m,
        "pearson": pearson(x, y),
    }
