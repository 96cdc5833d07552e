"""Neuron localisation: local maxima + watershed in a (time-median) 2D image or 3D stack.

As the paper's Methods: local maxima of the median intensity stack mark the neurons'
centroids and a watershed from them gives each neuron's voxel mask. Here the stack is
smoothed first (Gaussian, ``smooth_um`` per axis), maxima must be at least
``min_distance_um`` apart (an ellipsoidal footprint: voxels are not cubic) and above a
threshold ``background + max(k_noise · noise, rel · (p99.9 − background))`` (background =
median, noise = 1.4826 · MAD of the smoothed stack), and each watershed region keeps only
the voxels above ``mask_fraction`` of its own peak over the background.

All sizes are in µm and converted with the per-axis ``spacing_um``; the functions work for
any number of axes (3D stacks ``(Z, Y, X)``, 2D input frames ``(Y, X)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from live_deepz.errors import InputError

__all__ = ["Detections", "LocaliseParams", "ellipsoid_footprint", "localise"]


@dataclass(frozen=True)
class LocaliseParams:
    """Parameters of :func:`localise` (µm per axis, outermost axis first)."""

    smooth_um: tuple[float, ...] = (0.5, 0.4, 0.4)
    min_distance_um: tuple[float, ...] = (1.5, 1.2, 1.2)
    k_noise: float = 5.0
    rel_threshold: float = 0.08
    mask_fraction: float = 0.3

    def for_ndim(self, ndim: int) -> LocaliseParams:
        """The same parameters for ``ndim`` axes (the last ``ndim`` of each tuple)."""
        return LocaliseParams(
            tuple(self.smooth_um[-ndim:]),
            tuple(self.min_distance_um[-ndim:]),
            self.k_noise,
            self.rel_threshold,
            self.mask_fraction,
        )


@dataclass
class Detections:
    """Neurons found in one image or stack."""

    positions_vox: NDArray[np.float64]
    """``(N, ndim)`` sub-voxel centres (voxel index units)."""
    peak: NDArray[np.float64]
    """``(N,)`` smoothed intensity at each maximum."""
    labels: NDArray[np.int32]
    """Voxel masks: label ``i + 1`` belongs to neuron ``i``; 0 background."""
    background: float
    threshold: float

    def __len__(self) -> int:
        return len(self.peak)


def ellipsoid_footprint(radius_vox: Sequence[float] | NDArray[np.floating]) -> NDArray[np.bool_]:
    """Boolean ellipsoid with the given (possibly fractional) radius per axis."""
    r = [max(float(v), 0.5) for v in radius_vox]
    grids = np.meshgrid(*[np.arange(-int(v), int(v) + 1) for v in r], indexing="ij")
    d2 = sum((g / v) ** 2 for g, v in zip(grids, r))
    return np.asarray(d2 <= 1.0)


def _refine(
    img: NDArray[np.float32], peaks: NDArray[np.int64], background: float
) -> NDArray[np.float64]:
    """Intensity-weighted centroid of the 3^ndim neighbourhood above the background."""
    out = peaks.astype(np.float64)
    hi = np.asarray(img.shape) - 1
    offs = np.stack(np.meshgrid(*[np.arange(-1, 2)] * img.ndim, indexing="ij"), axis=-1).reshape(
        -1, img.ndim
    )
    for i, p in enumerate(peaks):
        idx = np.clip(p + offs, 0, hi)
        w = np.clip(img[tuple(idx.T)] - background, 0.0, None).astype(np.float64)
        if w.sum() > 0:
            out[i] = (idx * w[:, None]).sum(axis=0) / w.sum()
    return out


def localise(
    image: NDArray[np.floating],
    spacing_um: Sequence[float] | NDArray[np.floating],
    params: LocaliseParams | None = None,
) -> Detections:
    """Find the neurons of a 2D image or 3D stack (see the module docstring)."""
    a = np.asarray(image, dtype=np.float32)
    spacing = np.asarray(spacing_um, dtype=np.float64)
    if a.ndim not in (2, 3) or spacing.shape != (a.ndim,):
        raise InputError(
            f"localise needs a 2D image or 3D stack with one spacing per axis; got shape "
            f"{a.shape} and spacing {tuple(spacing)}"
        )
    if not np.isfinite(a).all():
        raise InputError("the stack to localise neurons in has NaN/inf values")
    if not (spacing > 0).all():
        raise InputError(f"voxel spacing must be > 0 µm, got {tuple(spacing)}")
    p = (params or LocaliseParams()).for_ndim(a.ndim)
    sm = ndimage.gaussian_filter(a, np.asarray(p.smooth_um) / spacing).astype(np.float32)
    bg = float(np.median(sm))
    noise = 1.4826 * float(np.median(np.abs(sm - bg)))
    top = float(np.percentile(sm, 99.9))
    thr = bg + max(p.k_noise * noise, p.rel_threshold * (top - bg))
    empty = Detections(np.zeros((0, a.ndim)), np.zeros(0), np.zeros(a.shape, np.int32), bg, thr)
    if top <= bg:
        return empty
    fp = ellipsoid_footprint(np.asarray(p.min_distance_um) / spacing)
    peaks = peak_local_max(sm, footprint=fp, threshold_abs=thr, exclude_border=False)
    if len(peaks) == 0:
        return empty
    peaks = np.asarray(peaks, dtype=np.int64)
    peak_val = sm[tuple(peaks.T)].astype(np.float64)
    order = np.argsort(-peak_val, kind="stable")
    peaks, peak_val = peaks[order], peak_val[order]
    markers = np.zeros(a.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    region = watershed(-sm, markers, mask=sm > bg + p.mask_fraction * (thr - bg))
    lookup = np.concatenate([[np.inf], bg + p.mask_fraction * (peak_val - bg)])
    labels = np.where(sm >= lookup[region], region, 0).astype(np.int32)
    return Detections(_refine(sm, peaks, bg), peak_val, labels, bg, thr)
