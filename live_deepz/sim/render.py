"""Noise-free wide-field images of a :class:`~live_deepz.sim.samples.Sample` at given foci.

Method (documented numbers are the defaults)
    1. Every emitter's best-focus stage position ``f_e`` comes from the PSF model
       (:meth:`PSFModel.best_focus_position_um`: index-mismatch focal shift included), and its
       depth is snapped to a 2 µm *depth node* that selects the PSF shape (aberration).
    2. Emitters are binned into thin **layers** of ``f_e`` (``layer_step_um``: 0.1 µm for
       beads, 0.2 µm for extended samples, the table step 0.25 µm in
       :class:`~live_deepz.sim.scene.SimScene`), with
       linear weights between the two nearest layers, and splatted laterally with bilinear
       weights. For point-like samples (beads) the layers used near focus
       (``|defocus| < 2 µm``) are instead split into 3 x 3 sub-pixel phases and drawn with
       sub-pixel-shifted kernels, so that an in-focus bead is not blurred by the splatting.
    3. Each layer is convolved (FFT, on a canvas padded by the widest kernel's half width, so
       there is no wrap-around into the field of view) with the PSF slice at defocus
       ``u = focus - f_layer``, linearly interpolated between the PSF table's defocus nodes;
       all layer contributions to one plane are summed in the Fourier domain and transformed
       back once. Emitters farther than ``max_defocus_um`` (30 µm) from a plane add their
       flux as uniform haze over the canvas (energy conserved; their blur disc is > 34 µm).

Pixel ``(i, j)`` of an ``(H, W)`` image shows lateral position
``y = cy + (i - (H - 1) / 2) * pixel``, ``x = cx + (j - (W - 1) / 2) * pixel``, where
``(cx, cy)`` is ``center_xy_um``. Intensities are photons/s per pixel (emitter brightness is
photons/s at the camera; each PSF slice sums to 1), plus the sample's uniform background.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from numpy.typing import ArrayLike, NDArray

from ..optics import Optics
from .psf import PHASES, KernelTable, PSFModel, _BytesLRU
from .samples import Sample

__all__ = ["CanvasEmitters", "Renderer", "even_fast_len", "render_canvas"]

SPECTRA_BUDGET_BYTES = 192 * 2**20
"""Memory for cached layer spectra and plane accumulators in one render call (each)."""

_F32 = np.float32
_C64 = np.complex64

_OTF_CACHE = _BytesLRU(int(os.environ.get("LIVE_DEEPZ_OTF_CACHE_MB", "256")) * 2**20)
"""Transfer functions by (PSF, depth node, defocus, phase mode, canvas): repeated renders of
the same geometry (training data, scene tables of two channels) reuse them."""


@dataclass(frozen=True)
class CanvasEmitters:
    """Emitters in canvas pixel coordinates (what :func:`render_canvas` consumes)."""

    y_px: NDArray[np.float64]
    x_px: NDArray[np.float64]
    focus_um: NDArray[np.float64]
    """Best-focus stage position of each emitter."""
    depth_um: NDArray[np.float64]
    weight: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.weight)


def _kernel_otf(
    kernel: NDArray[np.float32], shape: tuple[int, int], symmetric: bool = False
) -> NDArray[np.complex64]:
    """rfft2 of ``kernel`` centred on pixel (0, 0) of a periodic canvas (folded if larger).

    ``symmetric``: the kernel is even in both axes (a centred PSF), so its transform is real
    and equals a type-I DCT of one quadrant (about half the cost of the FFT).
    """
    hc, wc = shape
    n = kernel.shape[-1]
    c = n // 2
    if symmetric and hc % 2 == 0 and wc % 2 == 0 and c < hc // 2 and c < wc // 2:
        q = np.zeros((c + 1, wc // 2 + 1), dtype=_F32)
        q[:, : c + 1] = kernel[c:, c:]
        rows = sfft.dct(q, type=1, axis=1)
        quad = np.zeros((hc // 2 + 1, wc // 2 + 1), dtype=_F32)
        quad[: c + 1] = rows
        quad = sfft.dct(quad, type=1, axis=0)
        out = np.empty((hc, wc // 2 + 1), dtype=_C64)
        out.real[: hc // 2 + 1] = quad
        out.real[hc // 2 + 1 :] = quad[hc // 2 - 1 : 0 : -1]
        out.imag = 0.0
        return out
    ri = (np.arange(n) - c) % hc
    ci = (np.arange(n) - c) % wc
    buf = np.zeros(shape, dtype=_F32)
    if n <= hc and n <= wc:
        buf[np.ix_(ri, ci)] = kernel
    else:
        rows2 = np.zeros((hc, n), dtype=_F32)
        np.add.at(rows2, ri, kernel)
        np.add.at(buf.T, ci, rows2.T)
    return np.asarray(sfft.rfft2(buf), dtype=_C64)


def even_fast_len(n: int) -> int:
    """Smallest even FFT-friendly length >= n."""
    m = sfft.next_fast_len(int(n), real=True)
    while m % 2:
        m = sfft.next_fast_len(m + 1, real=True)
    return int(m)


def _splat_bilinear(
    y: NDArray[np.float64], x: NDArray[np.float64], w: NDArray[np.float64], shape: tuple[int, int]
) -> NDArray[np.float32]:
    hc, wc = shape
    y0 = np.floor(y)
    x0 = np.floor(x)
    fy = y - y0
    fx = x - x0
    iy = y0.astype(np.int64) % hc
    ix = x0.astype(np.int64) % wc
    iy1 = (iy + 1) % hc
    ix1 = (ix + 1) % wc
    idx = np.concatenate([iy * wc + ix, iy * wc + ix1, iy1 * wc + ix, iy1 * wc + ix1])
    ww = np.concatenate(
        [w * (1 - fy) * (1 - fx), w * (1 - fy) * fx, w * fy * (1 - fx), w * fy * fx]
    )
    img = np.bincount(idx, weights=ww, minlength=hc * wc)
    return img.reshape(shape).astype(_F32)


def _splat_phases(
    y: NDArray[np.float64], x: NDArray[np.float64], w: NDArray[np.float64], shape: tuple[int, int]
) -> NDArray[np.float32]:
    """``(3, 3, H, W)``: each emitter at its nearest pixel, in the slot of its 1/3-px phase."""
    hc, wc = shape
    qy = np.floor(3.0 * y + 0.5).astype(np.int64)
    qx = np.floor(3.0 * x + 0.5).astype(np.int64)
    iy = (qy + 1) // 3
    ix = (qx + 1) // 3
    ay = qy - 3 * iy + 1  # 0, 1, 2 for -1/3, 0, +1/3 px
    ax = qx - 3 * ix + 1
    idx = ((ay * PHASES + ax) * hc + iy % hc) * wc + ix % wc
    img = np.bincount(idx, weights=w, minlength=PHASES * PHASES * hc * wc)
    return img.reshape(PHASES, PHASES, hc, wc).astype(_F32)


def render_canvas(
    psf: PSFModel,
    em: CanvasEmitters,
    focus_um: ArrayLike,
    canvas_shape: tuple[int, int],
    *,
    layer_step_um: float = 0.1,
    subpixel: bool = False,
    max_defocus_um: float = 30.0,
    crop: tuple[slice, slice] | None = None,
    out: NDArray[np.float32] | None = None,
    progress: bool = False,
    desc: str = "render",
) -> NDArray[np.float32]:
    """Images of ``em`` focused at each ``focus_um``, on a periodic canvas.

    Returns ``(P, h, w)`` float32 (``crop`` of the canvas, the whole canvas by default),
    written into ``out`` when given. See the module docstring for the method.
    """
    focal = np.atleast_1d(np.asarray(focus_um, dtype=np.float64))
    hc, wc = int(canvas_shape[0]), int(canvas_shape[1])
    crop = crop or (slice(0, hc), slice(0, wc))
    h = len(range(*crop[0].indices(hc)))
    w = len(range(*crop[1].indices(wc)))
    if out is None:
        out = np.zeros((len(focal), h, w), dtype=_F32)
    elif out.shape != (len(focal), h, w):
        raise ValueError(f"out has shape {out.shape}, expected {(len(focal), h, w)}")
    keep = em.weight > 0
    if not np.any(keep):
        out[...] = 0.0
        return out
    ey, ex = em.y_px[keep], em.x_px[keep]
    ef, ed, ew = em.focus_um[keep], em.depth_um[keep], em.weight[keep]
    nodes = psf.depth_node(ed)
    spec_shape = (hc, wc // 2 + 1)
    spec_bytes = hc * (wc // 2 + 1) * 8
    # plane chunks bounded by memory
    chunk = max(1, int(SPECTRA_BUDGET_BYTES // spec_bytes))
    from tqdm.auto import tqdm

    unique_nodes = np.unique(nodes)
    bar = tqdm(
        total=len(unique_nodes) * math.ceil(len(focal) / chunk),
        desc=desc,
        unit="layer group",
        disable=not progress,
        leave=False,
    )
    ls = float(layer_step_um)
    for p0 in range(0, len(focal), chunk):
        fchunk = focal[p0 : p0 + chunk]
        acc = np.zeros((len(fchunk), *spec_shape), dtype=_C64)
        for node in unique_nodes:
            sel = nodes == node
            _render_node(
                psf,
                float(node),
                ey[sel],
                ex[sel],
                ef[sel],
                ew[sel],
                fchunk,
                (hc, wc),
                acc,
                ls,
                subpixel,
                max_defocus_um,
                float(focal[0]),
            )
            bar.update(1)
        for i in range(len(fchunk)):
            img = sfft.irfft2(acc[i], s=(hc, wc))
            np.maximum(img[crop], 0.0, out=out[p0 + i])
        del acc
    bar.close()
    return out


def _render_node(
    psf: PSFModel,
    node: float,
    y: NDArray[np.float64],
    x: NDArray[np.float64],
    f: NDArray[np.float64],
    w: NDArray[np.float64],
    focal: NDArray[np.float64],
    shape: tuple[int, int],
    acc: NDArray[np.complex64],
    ls: float,
    subpixel: bool,
    max_defocus_um: float,
    origin: float,
) -> None:
    """Add one depth node's emitters to the plane spectra ``acc`` (in place).

    Layers sit at ``origin + m * ls``; with planes on a grid of the same step (or a
    multiple), every (plane, layer) pair at the same offset shares one defocus ``u`` and
    thus one transfer function (interpolated between the PSF table's nodes).
    """
    m = (f - origin) / ls
    m0 = np.floor(m).astype(np.int64)
    wz = m - m0
    lmin = int(m0.min())
    n_l = int(m0.max()) + 2 - lmin
    layer_f = origin + (lmin + np.arange(n_l)) * ls
    # emitter -> layer membership (two entries per emitter, linear weights)
    e_layer = np.concatenate([m0 - lmin, m0 + 1 - lmin])
    e_idx = np.concatenate([np.arange(len(f)), np.arange(len(f))])
    e_w = np.concatenate([w * (1.0 - wz), w * wz])
    order = np.argsort(e_layer, kind="stable")
    e_layer, e_idx, e_w = e_layer[order], e_idx[order], e_w[order]
    bounds = np.searchsorted(e_layer, np.arange(n_l + 1))
    flux = np.bincount(e_layer, weights=e_w, minlength=n_l)
    present = flux > 0

    u = focal[:, None] - layer_f[None, :]  # (P, n_l) defocus of each layer in each plane
    near = (np.abs(u) <= max_defocus_um) & present[None, :]
    # haze: layers too far from a plane only add their flux to the DC term
    hp, hl = np.nonzero(~near & present[None, :])
    if len(hp):
        np.add.at(acc[:, 0, 0], hp, flux[hl].astype(np.float32))
    pp, ll = np.nonzero(near)
    if len(pp) == 0:
        return
    uq = np.round(u[pp, ll], 4)
    table = psf.table(node, max(float(np.abs(uq).max()), psf.fine_step_um))
    hc, wc = shape
    spec_bytes = hc * (wc // 2 + 1) * 8
    per_layer = 1 + (PHASES * PHASES if subpixel else 0)
    block = max(1, int(SPECTRA_BUDGET_BYTES // (spec_bytes * per_layer)))
    tmp = np.empty(acc.shape[1:], dtype=_C64)

    for b0 in range(0, n_l, block):
        in_block = (ll >= b0) & (ll < b0 + block)
        if not np.any(in_block):
            continue
        spectra: dict[tuple[int, bool], NDArray[np.complex64]] = {}

        def layer_spec(
            li: int,
            phase: bool,
            spectra: dict[tuple[int, bool], NDArray[np.complex64]] = spectra,
        ) -> NDArray[np.complex64]:
            key = (li, phase)
            s = spectra.get(key)
            if s is None:
                a, bnd = bounds[li], bounds[li + 1]
                idx = e_idx[a:bnd]
                if phase:
                    img = _splat_phases(y[idx], x[idx], e_w[a:bnd], shape)
                    s = np.asarray(sfft.rfft2(img, axes=(-2, -1)), dtype=_C64)
                else:
                    img2 = _splat_bilinear(y[idx], x[idx], e_w[a:bnd], shape)
                    s = np.asarray(sfft.rfft2(img2), dtype=_C64)
                spectra[key] = s
            return s

        sel = np.flatnonzero(in_block)
        order2 = np.argsort(uq[sel], kind="stable")
        sel = sel[order2]
        us = uq[sel]
        starts = np.flatnonzero(np.r_[True, us[1:] != us[:-1]])
        ends = np.r_[starts[1:], len(sel)]
        for s0, s1 in zip(starts, ends):
            uval = float(us[s0])
            phase = subpixel and abs(uval) < psf.sharp_um
            otf = _otf_at(psf, table, uval, shape, phase)
            for j in sel[s0:s1]:
                li, pi = int(ll[j]), int(pp[j])
                spec = layer_spec(li, phase)
                if phase:
                    for a_ in range(PHASES):
                        for b_ in range(PHASES):
                            np.multiply(spec[a_, b_], otf[a_, b_], out=tmp)
                            acc[pi] += tmp
                else:
                    np.multiply(spec, otf, out=tmp)
                    acc[pi] += tmp


def _interp_kernels(
    k0: NDArray[np.float32], k1: NDArray[np.float32], w: float
) -> NDArray[np.float32]:
    """``(1 - w) * k0 + w * k1`` for centred kernels of possibly different odd sizes."""
    n = max(k0.shape[-1], k1.shape[-1])
    out = np.zeros((*k0.shape[:-2], n, n), dtype=_F32)
    for k, c in ((k0, 1.0 - w), (k1, w)):
        if c == 0.0:
            continue
        o = (n - k.shape[-1]) // 2
        out[..., o : o + k.shape[-2], o : o + k.shape[-1]] += np.float32(c) * k
    return out


def _otf_at(
    psf: PSFModel, table: KernelTable, u: float, shape: tuple[int, int], phase: bool
) -> NDArray[np.complex64]:
    """Transfer function(s) at defocus ``u`` (linear between the table's nodes), cached."""
    key = (psf.key, table.depth_um, round(u, 4), phase, shape)
    hit = _OTF_CACHE.get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    otf = _compute_otf(table, u, shape, phase)
    _OTF_CACHE.put(key, otf, otf.nbytes)
    return otf


def _compute_otf(
    table: KernelTable, u: float, shape: tuple[int, int], phase: bool
) -> NDArray[np.complex64]:
    i_arr, w_arr = table.bracket(u)
    i, w = int(i_arr), float(w_arr)
    if w < 1e-6 or w > 1 - 1e-6:
        j = i + (1 if w > 0.5 else 0)
        if not phase:
            kern = table.kernel(j)
        else:
            ph = table.phase_kernels(j)
            assert ph is not None
            kern = ph
    elif not phase:
        kern = _interp_kernels(table.kernel(i), table.kernel(i + 1), w)
    else:
        p0, p1 = table.phase_kernels(i), table.phase_kernels(i + 1)
        if p0 is None or p1 is None:  # straddles the sharp limit: use the sharp side
            p = p0 if p0 is not None else p1
            assert p is not None
            kern = p
        else:
            kern = _interp_kernels(p0, p1, w)
    if not phase:
        return _kernel_otf(kern, shape, symmetric=True)
    out = np.empty((PHASES, PHASES, shape[0], shape[1] // 2 + 1), dtype=_C64)
    for a in range(PHASES):
        for b in range(PHASES):
            out[a, b] = _kernel_otf(kern[a, b], shape)
    return out


class Renderer:
    """Render noise-free z-stacks and planes of samples (see the module docstring).

    Parameters
    ----------
    optics
        Microscope optics (paper defaults).
    shape
        Output image shape ``(H, W)``.
    psf
        PSF model; defaults to ``PSFModel(optics)``.
    layer_step_um
        Axial layer thickness for binning emitters; default 0.1 µm for point-like samples
        (beads), 0.2 µm for extended ones (nuclei, filaments: structure >> 0.2 µm).
    max_defocus_um
        Emitters farther than this from a plane add uniform haze instead of a kernel.
    subpixel
        Sub-pixel phase kernels near focus: ``None`` follows ``sample.point_like``.
    progress
        Show a tqdm progress bar.
    """

    def __init__(
        self,
        optics: Optics | None = None,
        shape: tuple[int, int] | int = (256, 256),
        psf: PSFModel | None = None,
        *,
        layer_step_um: float | None = None,
        max_defocus_um: float = 30.0,
        subpixel: bool | None = None,
        progress: bool = False,
    ) -> None:
        self.optics = optics or (psf.optics if psf is not None else Optics())
        self.psf = psf or PSFModel(self.optics)
        if self.psf.optics != self.optics:
            raise ValueError("psf.optics differs from optics")
        self.shape = (int(shape), int(shape)) if isinstance(shape, int) else tuple(shape)
        self.layer_step_um = None if layer_step_um is None else float(layer_step_um)
        self.max_defocus_um = float(max_defocus_um)
        self.subpixel = subpixel
        self.progress = progress

    def focus_positions_um(
        self, sample: Sample, channel: int = 0, t_s: float | None = 0.0
    ) -> NDArray[np.float64]:
        """Best-focus stage position of every emitter of ``channel`` (µm)."""
        em = sample.emitters(channel, t_s)
        return self.psf.best_focus_position_um(em.z_um, em.depth_um, sample.ref_depth_um)

    def object_focus_um(
        self, centres_zyx_um: ArrayLike, depth_um: ArrayLike, sample: Sample
    ) -> NDArray[np.float64]:
        """Best-focus stage positions of object centres (ground truth for beads, neurons)."""
        c = np.asarray(centres_zyx_um, dtype=np.float64).reshape(-1, 3)
        return self.psf.best_focus_position_um(c[:, 0], depth_um, sample.ref_depth_um)

    def pixel_of(
        self, y_um: ArrayLike, x_um: ArrayLike, center_xy_um: Sequence[float] = (0.0, 0.0)
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(row, column) pixel coordinates of lateral positions."""
        h, w = self.shape
        px = self.optics.pixel_size_um
        r = (np.asarray(y_um, dtype=np.float64) - center_xy_um[1]) / px + (h - 1) / 2
        c = (np.asarray(x_um, dtype=np.float64) - center_xy_um[0]) / px + (w - 1) / 2
        return r, c

    def render_stack(
        self,
        sample: Sample,
        focus_z_um: ArrayLike,
        channel: int = 0,
        t_s: float | None = 0.0,
        *,
        center_xy_um: Sequence[float] = (0.0, 0.0),
        include_background: bool = True,
        out: NDArray[np.float32] | None = None,
    ) -> NDArray[np.float32]:
        """``(Z, H, W)`` float32 photons/s per pixel, focused at each ``focus_z_um``.

        ``focus_z_um`` are stage focus positions relative to the stage position that focuses
        the sample's reference plane (deeper positive). ``t_s`` selects the time for samples
        with activity or motion (``None``: baseline, no motion).
        """
        focal = np.atleast_1d(np.asarray(focus_z_um, dtype=np.float64))
        if focal.ndim != 1 or not np.all(np.isfinite(focal)):
            raise ValueError("focus_z_um must be a finite 1D array")
        h, w = self.shape
        em = sample.emitters(channel, t_s)
        fe = self.psf.best_focus_position_um(em.z_um, em.depth_um, sample.ref_depth_um)
        umax = 0.0
        if len(fe):
            umax = max(abs(focal.max() - fe.min()), abs(focal.min() - fe.max()))
        pad = self.psf.half_width_px(min(umax, self.max_defocus_um)) + 2
        hc = even_fast_len(h + 2 * pad)
        wc = even_fast_len(w + 2 * pad)
        py, pxx = (hc - h) // 2, (wc - w) // 2
        r, c = self.pixel_of(em.y_um, em.x_um, center_xy_um)
        r = r + py
        c = c + pxx
        inside = (r >= -0.5) & (r < hc - 1) & (c >= -0.5) & (c < wc - 1)
        cem = CanvasEmitters(
            r[inside], c[inside], fe[inside], em.depth_um[inside], em.weight[inside]
        )
        sub = sample.point_like if self.subpixel is None else self.subpixel
        out = render_canvas(
            self.psf,
            cem,
            focal,
            (hc, wc),
            layer_step_um=self.layer_step_um or (0.1 if sample.point_like else 0.2),
            subpixel=sub,
            max_defocus_um=self.max_defocus_um,
            crop=(slice(py, py + h), slice(pxx, pxx + w)),
            out=out,
            progress=self.progress,
            desc=f"render {sample.name}",
        )
        if include_background and sample.background[channel]:
            out += np.float32(sample.background[channel])
        return out

    def render_plane(
        self,
        sample: Sample,
        focus_z_um: float,
        channel: int = 0,
        t_s: float | None = 0.0,
        **kwargs: object,
    ) -> NDArray[np.float32]:
        """One ``(H, W)`` plane; see :meth:`render_stack`."""
        return self.render_stack(sample, [float(focus_z_um)], channel, t_s, **kwargs)[0]  # type: ignore[arg-type]
