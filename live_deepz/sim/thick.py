"""Thick scattering samples imaged wide-field and confocal: the WFCON-Net training data.

The Deep-3D paper (seed 003) images ~40 µm mouse brain slices (neurites, NeuN/Iba1-stained
somata) with one 60×/1.4 oil objective, 108.3 nm pixels and 0.5 µm steps, once wide-field
and once confocal (spinning disk). This module renders both modalities of the SAME seeded
sample so that a network can learn the mapping and registration can be tested.

Sample (:func:`brain_slice_volume`)
    A fluorophore density on the imaging grid (lateral pixel, axial sub-layers of half a
    z-step), laterally *periodic* (a statistically homogeneous slice; the FFT convolutions
    below are then exact): neurites as smooth random 3D curves of ~0.25 µm radius with
    varicosities, somata as soft ellipsoids with texture, plus a weak autofluorescence.

Image formation (:func:`render_thick`), for an emitter at depth ``d`` below the top surface
and a focus plane ``z``:

* wide-field: ``b(d) · PSF_wf(z − d) + (1 − b(d)) · G_σ(d)`` where ``b(d) = exp(−d / ℓ)``
  is the ballistic (unscattered) fraction of the emission and ``G_σ(d)`` a Gaussian haze
  whose width grows with depth (``σ = σ₀ + k·d``); the haze reaches every focus plane;
* confocal: ``b(d)² · PSF_conf(z − d) + ε (1 − b(d)) · G_σ(d)``: excitation and emission
  are both attenuated, the pinhole (1 Airy unit, ``sim.confocal``) rejects all but ``ε`` of
  the scattered light.

``PSF_wf`` is the simulator's vectorial PSF (psfmodels) at the middle depth of the slice
(depth-invariant: the mounting medium's index 1.46 is close to the oil's 1.515); its slices
are wrapped into the periodic field, so light from far-defocused planes becomes the
near-uniform background it is in a real wide-field stack.

A known shift of the confocal stack relative to the wide-field one (``shift_zyx`` in
planes, px, px; sub-voxel allowed) is applied exactly: laterally as a Fourier phase ramp of
the periodic sample, axially by moving the confocal focus planes. The registration answer,
the shift that aligns the confocal stack with the wide-field one, is ``-shift_zyx``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from ..optics import Optics
from .camera import CameraModel
from .confocal import airy_unit_px, confocal_psf_stack
from .psf import PSFModel

__all__ = [
    "MODALITIES",
    "THICK_OPTICS",
    "ThickSample",
    "ThickSampleParams",
    "brain_slice_volume",
    "render_thick",
    "simulate_pair",
]

MODALITIES = ("widefield", "confocal")

THICK_OPTICS = Optics(
    na=1.4, wavelength_um=0.52, pixel_size_um=0.1083, immersion_ri=1.515, sample_ri=1.46
)
"""The paper's optics: 60×/1.4 oil, 108.3 nm pixels, green emission, ProLong-mounted slice."""

SUBLAYERS = 2
"""Axial density sub-layers per z-step (0.25 µm at 0.5 µm steps)."""


@dataclass(frozen=True)
class ThickSampleParams:
    """A brain-slice-like sample and its imaging; lengths in µm."""

    size_px: int = 128
    n_planes: int = 32
    z_step_um: float = 0.5
    neurites_per_1000um3: float = 12.0
    somata_per_1000um3: float = 0.35
    neurite_radius_um: float = 0.25
    soma_radius_um: tuple[float, float] = (2.5, 4.0)
    autofluorescence: float = 0.01
    """Uniform density relative to a neurite's."""
    scattering_length_um: float = 25.0
    """Ballistic emission attenuation length ``ℓ``."""
    haze_sigma_um: tuple[float, float] = (1.5, 0.15)
    """Scattered-light blur ``σ = σ₀ + k·depth``."""
    confocal_leak: float = 0.03
    """Fraction ``ε`` of the scattered light that passes the pinhole."""
    pinhole_au: float = 1.0
    widefield_photons: float = 100.0
    """Peak in-focus photons of a neurite in a wide-field frame (at the surface)."""
    confocal_photons: float = 150.0
    """The same for a confocal frame (spinning-disk confocals collect less light)."""
    tissue_um: float | None = None
    """Tissue thickness, centred in the stack; None: the tissue fills the stack (thick)."""

    def __post_init__(self) -> None:
        if not 16 <= self.size_px <= 2048:
            raise InputError(f"thick sample size must be within 16..2048 px, got {self.size_px}")
        if not 2 <= self.n_planes <= 400:
            raise InputError(f"thick sample planes must be within 2..400, got {self.n_planes}")
        if not self.z_step_um > 0:
            raise InputError(f"z step must be > 0, got {self.z_step_um}")

    @property
    def thickness_um(self) -> float:
        """Axial extent of the stack (the tissue may be thinner: ``tissue_um``)."""
        return self.n_planes * self.z_step_um

    @property
    def tissue_range_um(self) -> tuple[float, float]:
        t = self.thickness_um if self.tissue_um is None else min(self.tissue_um, self.thickness_um)
        top = (self.thickness_um - t) / 2
        return top, top + t

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ThickSample:
    """A rendered density: ``(n_planes * SUBLAYERS, S, S)``, the sub-layer depths, params."""

    density: NDArray[np.float32]
    depth_um: NDArray[np.float64]
    params: ThickSampleParams
    seed: int
    n_neurites: int
    somata_zyx_um: list[list[float]]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> NDArray:
    from scipy.ndimage import gaussian_filter

    n = gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return n / (n.std() + 1e-12)


def brain_slice_volume(params: ThickSampleParams, seed: int) -> ThickSample:
    """The seeded density of a brain-slice-like sample (see the module docstring)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(np.random.SeedSequence([seed, 18]))
    s = params.size_px
    px = THICK_OPTICS.pixel_size_um
    dz = params.z_step_um / SUBLAYERS
    nz = params.n_planes * SUBLAYERS
    field = s * px
    depth = ((np.arange(nz) + 0.5) * dz).astype(np.float64)
    vol = np.zeros((nz, s, s), dtype=np.float64)

    # neurites: smooth random curves, splatted with trilinear weights, then given a radius
    volume_um3 = field * field * params.thickness_um
    n_neurites = max(1, int(rng.poisson(params.neurites_per_1000um3 * volume_um3 / 1000)))
    step = 0.5 * px
    for _ in range(n_neurites):
        length = rng.uniform(8.0, 30.0)
        n = int(length / step)
        d = rng.standard_normal(3)
        d[0] *= 0.5  # mostly lateral, some oblique
        d /= np.linalg.norm(d)
        turns = _smooth_walk(rng, n, 0.03)
        dirs = d + np.cumsum(turns, axis=0)
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        start = np.array([rng.uniform(0, params.thickness_um), *rng.uniform(0, field, 2)])
        pts = start + np.cumsum(dirs * step, axis=0)
        keep = (pts[:, 0] > 0) & (pts[:, 0] < params.thickness_um)
        pts = pts[keep]
        if len(pts) == 0:
            continue
        bright = rng.uniform(0.4, 1.0) * (1.0 + 0.6 * np.clip(_beads(rng, len(pts)), 0, None))
        _splat(vol, pts[:, 0] / dz - 0.5, pts[:, 1] / px, pts[:, 2] / px, bright * step)
    r_px = params.neurite_radius_um / px
    vol = gaussian_filter(vol, (params.neurite_radius_um / dz, r_px, r_px), mode="wrap")
    # a line of unit weight per µm blurred by the radius: peak density 1 at its centre
    vol *= 2 * math.pi * r_px * (params.neurite_radius_um / dz) / px

    # somata: soft textured ellipsoids (wrapping laterally)
    n_somata = int(rng.poisson(params.somata_per_1000um3 * volume_um3 / 1000))
    somata: list[list[float]] = []
    zz = depth[:, None, None]
    yy = (np.arange(s) * px)[None, :, None]
    xx = (np.arange(s) * px)[None, None, :]
    for _ in range(n_somata):
        c = np.array([rng.uniform(0, params.thickness_um), *rng.uniform(0, field, 2)])
        r = rng.uniform(*params.soma_radius_um)
        rz = r * rng.uniform(0.7, 1.0)
        dy = (yy - c[1] + field / 2) % field - field / 2
        dx = (xx - c[2] + field / 2) % field - field / 2
        rho = np.sqrt(((zz - c[0]) / rz) ** 2 + (dy / r) ** 2 + (dx / r) ** 2)
        shell = 1.0 / (1.0 + np.exp((rho - 1.0) / 0.06))
        vol += rng.uniform(0.15, 0.3) * shell
        somata.append([float(v) for v in c])
    texture = 1.0 + 0.3 * _smooth_noise(rng, vol.shape, 2.0)
    vol = vol * np.clip(texture, 0.2, None) + params.autofluorescence
    top, bottom = params.tissue_range_um
    vol[(depth < top) | (depth > bottom)] = 0.0  # mounting medium outside a thin tissue
    return ThickSample(vol.astype(np.float32), depth, params, seed, n_neurites, somata)


def _smooth_walk(rng: np.random.Generator, n: int, scale: float) -> NDArray[np.float64]:
    from scipy.ndimage import gaussian_filter1d

    w = rng.standard_normal((max(n, 1), 3)) * scale
    return gaussian_filter1d(w, 20.0, axis=0) * 6.0


def _beads(rng: np.random.Generator, n: int) -> NDArray[np.float64]:
    from scipy.ndimage import gaussian_filter1d

    b = gaussian_filter1d(rng.standard_normal(n), 6.0)
    return b / (b.std() + 1e-12)


def _splat(
    vol: NDArray[np.float64],
    z: NDArray[np.float64],
    y: NDArray[np.float64],
    x: NDArray[np.float64],
    w: NDArray[np.float64],
) -> None:
    """Add weights ``w`` at fractional voxel positions (trilinear; y, x wrap, z clipped)."""
    nz, ny, nx = vol.shape
    z0, y0, x0 = np.floor(z).astype(int), np.floor(y).astype(int), np.floor(x).astype(int)
    fz, fy, fx = z - z0, y - y0, x - x0
    for dz_, wz in ((0, 1 - fz), (1, fz)):
        zi = np.clip(z0 + dz_, 0, nz - 1)
        for dy_, wy in ((0, 1 - fy), (1, fy)):
            yi = (y0 + dy_) % ny
            for dx_, wx in ((0, 1 - fx), (1, fx)):
                xi = (x0 + dx_) % nx
                np.add.at(vol, (zi, yi, xi), w * wz * wy * wx)


def _psf_otfs(
    psf: PSFModel, defocus_um: NDArray[np.float64], depth_um: float, size: int, confocal: bool
) -> NDArray[np.complex128]:
    """rfft2 OTFs ``(len(defocus), S, S//2+1)`` of PSF slices wrapped into an S×S field."""
    nx = size - 1 if size % 2 == 0 else size
    k = psf.psf(defocus_um, depth_um=depth_um, nx=nx).astype(np.float64)
    if confocal:
        au = airy_unit_px(psf.optics.wavelength_um, psf.optics.na, psf.optics.pixel_size_um)
        k = confocal_psf_stack(k, pinhole_au=1.0, airy_unit_px=au).astype(np.float64)
    full = np.zeros((len(k), size, size))
    full[:, :nx, :nx] = k
    full = np.roll(full, (-(nx // 2), -(nx // 2)), axis=(1, 2))  # centre -> (0, 0)
    return np.fft.rfft2(full)


def _gaussian_otf(size: int, sigma_px: float) -> NDArray[np.float64]:
    f = np.fft.fftfreq(size)
    fr = np.fft.rfftfreq(size)
    r2 = f[:, None] ** 2 + fr[None, :] ** 2
    return np.exp(-2 * (math.pi * sigma_px) ** 2 * r2)


def render_thick(
    sample: ThickSample,
    modality: str,
    shift_zyx: tuple[float, float, float] = (0.0, 0.0, 0.0),
    psf: PSFModel | None = None,
) -> NDArray[np.float32]:
    """Noise-free ``(n_planes, S, S)`` photons per pixel of one modality (see module doc).

    ``shift_zyx`` (planes, px, px) moves the rendered content (confocal tests of
    registration); plane ``k`` is focused at depth ``(k + 0.5) * z_step - shift_z * z_step``.
    """
    if modality not in MODALITIES:
        raise InputError(f"modality must be one of {MODALITIES}, got {modality!r}")
    p = sample.params
    psf = psf or PSFModel(THICK_OPTICS, coverslip_um=170.0)
    s = p.size_px
    dzs = p.z_step_um / SUBLAYERS
    focus = (np.arange(p.n_planes) + 0.5) * p.z_step_um - float(shift_zyx[0]) * p.z_step_um
    # every (focus, sub-layer) defocus lies on the grid  m * dzs + frac
    offsets = focus[:, None] - sample.depth_um[None, :]  # (planes, sublayers)
    base = np.round(offsets / dzs)
    frac = float(np.mean(offsets - base * dzs))
    m_lo, m_hi = int(base.min()), int(base.max())
    grid = np.arange(m_lo, m_hi + 1) * dzs + frac
    confocal = modality == "confocal"
    otfs = _psf_otfs(psf, np.round(grid, 6), p.thickness_um / 2, s, confocal)

    dhat = np.fft.rfft2(sample.density.astype(np.float64))
    if shift_zyx[1] or shift_zyx[2]:
        fy = np.fft.fftfreq(s)[:, None]
        fx = np.fft.rfftfreq(s)[None, :]
        dhat = dhat * np.exp(-2j * math.pi * (fy * shift_zyx[1] + fx * shift_zyx[2]))
    ball = np.exp(-sample.depth_um / p.scattering_length_um)
    w_ball = ball**2 if confocal else ball
    px = THICK_OPTICS.pixel_size_um
    haze = np.zeros_like(dhat[0])
    for j, d in enumerate(sample.depth_um):
        sigma_px = (p.haze_sigma_um[0] + p.haze_sigma_um[1] * d) / px
        haze += (1 - ball[j]) * _gaussian_otf(s, sigma_px) * dhat[j]
    haze *= dzs * (p.confocal_leak if confocal else 1.0)

    idx = (base - m_lo).astype(int)  # (planes, sublayers) -> OTF index
    out = np.empty((p.n_planes, s, s), dtype=np.float32)
    weighted = dhat * (w_ball * dzs)[:, None, None]
    for k in range(p.n_planes):
        acc = np.einsum("jyx,jyx->yx", otfs[idx[k]], weighted) + haze
        out[k] = np.fft.irfft2(acc, s=(s, s))
    np.maximum(out, 0, out=out)
    scale = p.confocal_photons if confocal else p.widefield_photons
    peak = _in_focus_peak(otfs[int(np.argmin(np.abs(grid)))], p, s)
    return out * np.float32(scale / peak)


def _in_focus_peak(otf: NDArray[np.complex128], p: ThickSampleParams, size: int) -> float:
    """The in-focus peak of a unit-density neurite (brightness calibration)."""
    r_px = p.neurite_radius_um / THICK_OPTICS.pixel_size_um
    k = np.fft.irfft2(otf * _gaussian_otf(size, r_px), s=(size, size))
    # a neurite's axial profile (Gaussian, sigma = its radius) integrated over depth
    return float(k.max() * math.sqrt(2 * math.pi) * p.neurite_radius_um) or 1.0


def simulate_pair(
    params: ThickSampleParams,
    seed: int,
    shift_zyx: tuple[float, float, float] = (0.0, 0.0, 0.0),
    *,
    noise: bool = True,
    camera: CameraModel | None = None,
    psf: PSFModel | None = None,
) -> dict[str, Any]:
    """Both modalities of one sample: ``{"widefield", "confocal"}`` uint16 stacks + truth.

    The confocal stack carries ``shift_zyx``; ``truth["align_shift_zyx"] = -shift_zyx``.
    """
    sample = brain_slice_volume(params, seed)
    camera = camera or CameraModel()
    out: dict[str, Any] = {}
    for i, modality in enumerate(MODALITIES):
        shift = shift_zyx if modality == "confocal" else (0.0, 0.0, 0.0)
        rate = render_thick(sample, modality, shift, psf)
        out[modality] = expose_stack(rate, camera, seed, i, noise)
    out["truth"] = thick_truth(sample, shift_zyx)
    return out


def expose_stack(
    photons: NDArray[np.float32], camera: CameraModel, seed: int, stream: int, noise: bool
) -> NDArray[np.uint16]:
    """Camera frames of photons-per-frame stacks (exposure 1 s: photons are the rate)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 180 + stream]))
    stack = np.empty(photons.shape, dtype=np.uint16)
    for k in range(len(photons)):
        if noise:
            camera.expose(photons[k] / camera.qe, 1000.0, rng, out=stack[k])
        else:
            camera.expected_frame(photons[k] / camera.qe, 1000.0, out=stack[k])
    return stack


def thick_truth(sample: ThickSample, shift_zyx: tuple[float, float, float]) -> dict[str, Any]:
    p = sample.params
    return {
        "sample": "brain-slice",
        "params": p.to_dict(),
        "seed": sample.seed,
        "n_neurites": sample.n_neurites,
        "somata_zyx_um": sample.somata_zyx_um,
        "optics": THICK_OPTICS.to_dict(),
        "confocal_shift_zyx": [float(v) for v in shift_zyx],
        "align_shift_zyx": [float(-v) for v in shift_zyx],
        "shift_convention": (
            "confocal_shift_zyx (planes, px, px) moved the confocal content; "
            "align_shift_zyx, applied to the confocal stack, aligns it with the wide-field one"
        ),
        "z_convention": "plane k is focused at depth (k + 0.5) * z_step below the surface",
    }
