"""Intensity normalisation as in the Deep-Z paper (Methods, "Data preparation").

Per field of view, an extended-depth-of-field (EDF) image of the stack is the reference:

1. a triangle threshold separates background from foreground pixels;
2. the mean of the background pixels is the background level, subtracted;
3. the scale is chosen so that 1 % of the foreground pixels exceed 1.0 (are "saturated");
4. every plane of the stack gets the same offset and scale.

For a single test image with no stack, steps 1–3 are fitted on the image itself.

The fitted :class:`Normalization` (two numbers) is stored with models and recordings, and
applied to every live frame with :meth:`Normalization.apply` (which can write into a
preallocated buffer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .errors import InputError

__all__ = [
    "DEFAULT_SATURATE_FRACTION",
    "Normalization",
    "extended_depth_of_field",
    "fit_normalization",
    "normalize_image",
    "normalize_stack",
]

DEFAULT_SATURATE_FRACTION = 0.01
"""Fraction of foreground pixels that end above 1.0 after normalisation (paper: 1 %)."""


def _real_array(
    name: str, x: Any, ndim: int | None = None, check_finite: bool = True
) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "iuf":
        raise InputError(
            f"{name} must hold real numbers (uint8/uint16/int/float), got dtype {arr.dtype}"
        )
    if ndim is not None and arr.ndim != ndim:
        axes = {2: "(Y, X)", 3: "(Z, Y, X)"}.get(ndim, f"{ndim}D")
        raise InputError(f"{name} must be a {axes} array, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape})")
    if check_finite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise InputError(f"{name} has {bad} non-finite value(s) (NaN/inf)")
    return arr


@dataclass(frozen=True)
class Normalization:
    """``y = (x − background) / scale``, the same for every plane of a field of view."""

    background: float
    """Background level subtracted (raw intensity units)."""
    scale: float
    """Divisor (raw intensity units), > 0: the 99th percentile of foreground − background."""

    def __post_init__(self) -> None:
        for name in ("background", "scale"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float | np.floating | np.integer):
                raise InputError(f"normalization {name} must be a number, got {v!r}")
            if not math.isfinite(float(v)):
                raise InputError(f"normalization {name} must be finite, got {v!r}")
            object.__setattr__(self, name, float(v))
        if not self.scale > 0:
            raise InputError(f"normalization scale must be > 0, got {self.scale!r}")

    def apply(self, x: ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
        """``(x − background) / scale`` as float32, any real input dtype, any shape.

        ``out`` (float32, same shape) avoids an allocation in a live loop; it may be ``x``
        itself when ``x`` is float32. Values are not checked for NaN here (hot path).
        """
        arr = np.asarray(x)
        if arr.dtype.kind not in "iuf":
            raise InputError(f"cannot normalise an array of dtype {arr.dtype}; need real numbers")
        res = np.subtract(arr, np.float32(self.background), out=out, dtype=np.float32)
        return np.divide(res, np.float32(self.scale), out=res)

    def invert(self, y: ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
        """``y · scale + background`` as float32: back to raw intensity units."""
        arr = np.asarray(y)
        if arr.dtype.kind not in "iuf":
            raise InputError(f"cannot invert an array of dtype {arr.dtype}; need real numbers")
        res = np.multiply(arr, np.float32(self.scale), out=out, dtype=np.float32)
        return np.add(res, np.float32(self.background), out=res)

    def to_dict(self) -> dict[str, float]:
        return {"background": self.background, "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        try:
            return cls(background=d["background"], scale=d["scale"])
        except (KeyError, TypeError):
            raise InputError(
                f"a normalization needs numbers 'background' and 'scale', got {d!r}"
            ) from None


def fit_normalization(
    reference: ArrayLike, saturate_fraction: float = DEFAULT_SATURATE_FRACTION
) -> Normalization:
    """Fit the paper's normalisation on a 2D reference (an EDF image, or the image itself).

    The triangle threshold (:func:`skimage.filters.threshold_triangle`, 256 bins) splits the
    pixels: ``<= t`` background, ``> t`` foreground. ``background`` is the mean of the
    background pixels; ``scale`` is the ``(1 − saturate_fraction)`` quantile of
    ``foreground − background``, so that ``saturate_fraction`` of the foreground pixels end
    above 1.0.

    Raises
    ------
    InputError : not 2D, not real, NaN/inf, constant, or no foreground above the threshold.
    """
    ref = _real_array("the normalisation reference", reference, ndim=2)
    f = float(saturate_fraction)
    if not 0.0 < f < 1.0:
        raise InputError(f"saturate_fraction must lie in (0, 1), got {saturate_fraction!r}")
    ref = ref.astype(np.float64, copy=False)
    lo, hi = float(ref.min()), float(ref.max())
    if lo == hi:
        raise InputError(
            f"the normalisation reference is constant ({lo:g}): no foreground to scale by; "
            "check the exposure/illumination, or give a reference image with signal"
        )
    from skimage.filters import threshold_triangle

    t = float(threshold_triangle(ref))
    fg_mask = ref > t
    n_fg = int(np.count_nonzero(fg_mask))
    if n_fg == 0 or n_fg == ref.size:
        raise InputError(
            f"the triangle threshold ({t:g}) leaves no "
            f"{'foreground' if n_fg == 0 else 'background'} in the normalisation reference; "
            "it needs a dark background and some bright signal"
        )
    background = float(ref[~fg_mask].mean())
    scale = float(np.quantile(ref[fg_mask] - background, 1.0 - f))
    if not scale > 0:
        raise InputError(
            f"the foreground of the normalisation reference is not above its background "
            f"(background {background:g}, scale {scale:g}); give an image with signal"
        )
    return Normalization(background=background, scale=scale)


def extended_depth_of_field(
    stack: ArrayLike,
    focus_sigma_px: float = 1.0,
    window_sigma_px: float = 4.0,
    median_px: int = 5,
) -> np.ndarray:
    """An extended-depth-of-field image ``(Y, X)`` float32 from a ``(Z, Y, X)`` stack.

    A simple, standard focus-stacking scheme (the paper used ImageJ's "Extended Depth of
    Field" plugin, a wavelet method; any EDF serves here, it is only the normalisation
    reference):

    1. focus measure per plane: the local energy of the Laplacian of Gaussian,
       ``gaussian_filter(gaussian_laplace(plane, focus_sigma_px)², window_sigma_px)``;
    2. per pixel, the index of the plane with the largest focus measure;
    3. the index map is median-filtered (``median_px`` × ``median_px``) so that isolated
       noisy picks do not make salt-and-pepper artefacts;
    4. each output pixel is the raw value of its selected plane.

    Planes are processed one at a time, so the extra memory is a few ``(Y, X)`` arrays.
    """
    from scipy import ndimage

    arr = _real_array("the EDF stack", stack, ndim=3)
    nz = arr.shape[0]
    if nz == 1:
        return np.array(arr[0], dtype=np.float32)
    best = np.full(arr.shape[1:], -np.inf, dtype=np.float32)
    index = np.zeros(arr.shape[1:], dtype=np.intp)
    for z in range(nz):
        plane = arr[z].astype(np.float32)
        log = ndimage.gaussian_laplace(plane, sigma=focus_sigma_px)
        energy = ndimage.gaussian_filter(log * log, sigma=window_sigma_px)
        better = energy > best
        best[better] = energy[better]
        index[better] = z
    if median_px > 1:
        index = ndimage.median_filter(index, size=int(median_px), mode="nearest")
    edf = np.take_along_axis(arr, index[None], axis=0)[0]
    return edf.astype(np.float32)


def normalize_stack(
    stack: ArrayLike,
    reference: ArrayLike | None = None,
    saturate_fraction: float = DEFAULT_SATURATE_FRACTION,
) -> tuple[np.ndarray, Normalization]:
    """Normalise a ``(Z, Y, X)`` stack with one offset and scale for every plane.

    The normalisation is fitted on ``reference`` when given (a ``(Y, X)`` image), else on
    the stack's :func:`extended_depth_of_field`. Returns the float32 stack and the fit.
    """
    arr = _real_array("the stack", stack, ndim=3)
    if reference is None:
        ref = extended_depth_of_field(arr)
    else:
        ref = _real_array("the reference", reference, ndim=2)
        if ref.shape != arr.shape[1:]:
            raise InputError(
                f"the reference is {ref.shape} but the stack's planes are {arr.shape[1:]}"
            )
    norm = fit_normalization(ref, saturate_fraction)
    return norm.apply(arr), norm


def normalize_image(
    image: ArrayLike, saturate_fraction: float = DEFAULT_SATURATE_FRACTION
) -> tuple[np.ndarray, Normalization]:
    """Normalise a single ``(Y, X)`` image with a fit on itself (the paper's test images).

    Returns the float32 image and the fit.
    """
    norm = fit_normalization(image, saturate_fraction)
    return norm.apply(image), norm
