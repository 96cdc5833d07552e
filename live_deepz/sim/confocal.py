"""A confocal PSF from a wide-field one: the standard product approximation.

For a point-scanning confocal microscope the effective (intensity) PSF is the product of the
illumination PSF and the detection PSF integrated over the pinhole (Wilson & Sheppard,
*Theory and Practice of Scanning Optical Microscopy*, 1984; Pawley, *Handbook of Biological
Confocal Microscopy*, ch. 11)::

    PSF_conf(x, y, z) = PSF_exc(x, y, z) · [PSF_det(·, ·, z) ⊗ pinhole](x, y)

With excitation and emission wavelengths taken equal (Stokes shift ignored) both factors
are the wide-field PSF, and for a pinhole much smaller than an Airy unit (AU) the product
becomes ``PSF_conf ≈ PSF²``. A finite pinhole (``pinhole_au`` Airy units in diameter) is
modelled by convolving each detection slice with a uniform disk. Out of focus the product
falls off much faster than the wide-field PSF, whose slices all hold the same energy: that
is the optical sectioning Deep-Z+ learns.

Used to make confocal-like label stacks for Deep-Z+ tests and demos from any wide-field
PSF stack (the simulator's vectorial one, or a simple model).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError

__all__ = ["airy_unit_px", "confocal_psf_stack"]


def airy_unit_px(wavelength_um: float, na: float, pixel_size_um: float) -> float:
    """Diameter of one Airy unit (first dark ring), ``1.22 λ / NA``, in pixels."""
    return 1.22 * wavelength_um / na / pixel_size_um


def _disk(radius_px: float) -> NDArray[np.float64]:
    r = max(int(np.ceil(radius_px)), 0)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = (xx**2 + yy**2 <= radius_px**2 + 1e-9).astype(np.float64)
    return disk / disk.sum()


def confocal_psf_stack(
    widefield_psf_stack: ArrayLike,
    pinhole_au: float = 1.0,
    airy_unit_px: float | None = None,
) -> NDArray[np.float32]:
    """Confocal PSF ``(Z, Y, X)`` from a wide-field PSF stack (same sampling), float32.

    ``PSF_wf · (PSF_wf ⊗ disk)`` with a disk of diameter ``pinhole_au × airy_unit_px``
    pixels; without ``airy_unit_px`` (or with ``pinhole_au = 0``) the pinhole is a point and
    the result is ``PSF_wf²``. Normalised so that its brightest slice sums to 1 (so an
    in-focus object keeps about its wide-field brightness and defocused slices are dimmer).
    """
    from scipy.signal import fftconvolve

    psf = np.asarray(widefield_psf_stack, dtype=np.float64)
    if psf.ndim != 3:
        raise InputError(f"a PSF stack must be (Z, Y, X), got shape {psf.shape}")
    if not np.isfinite(psf).all() or psf.min() < 0 or not psf.max() > 0:
        raise InputError("a PSF stack must hold finite, non-negative values, not all zero")
    if pinhole_au < 0:
        raise InputError(f"pinhole_au must be >= 0, got {pinhole_au}")
    det = psf
    if airy_unit_px is not None and pinhole_au > 0:
        disk = _disk(pinhole_au * airy_unit_px / 2)
        if disk.size > 1:
            det = np.stack([fftconvolve(s, disk, mode="same") for s in psf])
            det = np.clip(det, 0, None)
    conf = psf * det
    sums = conf.sum(axis=(1, 2))
    return (conf / sums.max()).astype(np.float32)
