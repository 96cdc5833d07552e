"""The simulator's point-spread function: Aguet's vectorial model (``psfmodels``).

Geometry and sign convention
----------------------------
The sample sits under a coverslip; the objective (by default the Deep-Z paper's 20x/0.75 NA
*air* objective) looks into an aqueous sample (n = 1.33) through it. Three coordinates:

* ``depth_um`` (``pz`` in psfmodels): how far an emitter lies below the glass/medium
  interface. It sets the index-mismatch (spherical) aberration, hence the PSF's axial
  asymmetry. Always >= 0.
* the **stage focus** (all ``focus_z_um``/``stage_z_um`` in the simulator): the mechanical
  focus position in µm, growing deeper into the sample (project convention). Moving the
  focus by ``d`` changes the immersion (air) gap by ``d``.
* ``defocus_um`` (``u``): stage focus minus the stage focus at which *this* emitter is in best
  focus. ``u > 0``: the focal plane is deeper than the emitter (farther from the objective).
  This is the sign of the project's DPM offsets: the image of an emitter at ``u`` is what a
  refocus by ``-u`` brings back into focus.

psfmodels' ``zv`` (pinned by ``tests/test_sim_psf.py``)
    In Aguet's model the optical path difference contains ``(ci - zv) * ni * cos(theta)`` with
    ``ci = pz * (1 - ni/ns) + const``: increasing ``zv`` by ``d`` shortens that term exactly as
    moving the focus ``d`` deeper does, so ``zv`` grows *deeper* like our z, and its origin is
    chosen so that the **paraxial** focus of an emitter at depth ``pz`` is at ``zv = pz``.
    The stage displacement that takes focus from the interface to that emitter is therefore
    ``zv - pz * (1 - ni/ns)``. We find each depth's *best* focus ``zv_best(pz)`` (maximum of
    the on-axis intensity) numerically and use::

        zv = zv_best(pz) + u

    Check with a physically known case (air objective into water, ``ni < ns``): a deep emitter
    looks shallower than it is ("apparent depth"). Geometric optics puts the focus shift per µm
    of depth between ``tan(theta_s)/tan(theta_i)`` for marginal rays (0.60 at NA 0.75) and
    ``ni/ns`` for paraxial rays (0.75); the Strehl-optimal focus lies near the midpoint
    (0.68). The model gives ``focus_shift_um(pz) / pz = 0.689``, positive (deeper), < 1. With
    the signs flipped it would come out negative. With matched indices (``ns = ni``) the ratio
    is exactly 1 and the PSF is symmetric about focus.

    The axial asymmetry follows: with ``ni < ns`` the marginal rays focus shallower than the
    paraxial ones, so the on-axis intensity tail (toward the paraxial focus) extends on the
    ``u > 0`` side (focus deeper than the emitter), while the ``u < 0`` side shows a dimmer,
    ring-dominated blur. The test pins this too.

Normalisation and sampling
    Every 2D slice sums to 1 over its window (energy conserved across defocus; the window is
    ``|u| * tan(asin(NA/ni)) + margin_um`` in radius, margin 6 µm by default, which misses
    ~1 % of the in-focus Airy tail; the missing part is redistributed by the normalisation).
    Pixel integration: ``oversample`` x ``oversample`` point samples per camera pixel (3 x 3).
    Near focus (``|u| < sharp_um``) the kernels are also provided for emitters at sub-pixel
    offsets of -1/3, 0, +1/3 px ("phase kernels"), so that point-like samples are rendered
    without the blur that bilinear splatting would add to an in-focus spot.

Tables and caches
    The renderer uses kernels on a fixed grid: depths snapped to ``depth_step_um`` (2 µm; the
    shape changes by <= ~2.5 % L1 over 1 µm of depth at these optics), defocus nodes every
    0.1 µm near focus growing by 4 % of ``|u|`` farther out (linear interpolation between
    nodes). Kernels are computed in bands, cached in memory (bytes-bounded LRU) and on disk as
    ``.npz`` under ``$LIVE_DEEPZ_CACHE/psf`` (default ``~/.cache/live-deepz/psf``), named by a
    SHA-256 of every parameter; never pickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..optics import Optics

__all__ = [
    "KernelBand",
    "KernelTable",
    "PSFModel",
    "cache_root",
]

PSF_CACHE_VERSION = 1
"""Bump when the kernel computation changes so that old cache files are not reused."""

_COVERSLIP: dict[str, float] = {"ng": 1.515, "ng0": 1.515, "tg0": 170.0, "ti0": 150.0}
"""The objective's design coverslip (#1.5, BK7-like, 170 µm); ``ti0`` cancels for ``ni == ni0``.
The actual thickness is :attr:`PSFModel.coverslip_um`."""

DEFAULT_COVERSLIP_UM = 185.0
"""Actual coverslip thickness of the default simulator (see :attr:`PSFModel.coverslip_um`)."""

_BAND_EDGES_UM = (0.0, 2.0, 4.0, 7.0, 11.0, 16.0, 22.0, 30.0, 40.0, 52.0, 67.0, 85.0, 110.0)
"""Fixed |defocus| band edges: kernels inside one band share a window size and a cache file."""

PHASES = 3
"""Sub-pixel phases per axis of the near-focus kernels (offsets -1/3, 0, +1/3 px)."""


def cache_root() -> Path:
    """Folder of the on-disk caches: ``$LIVE_DEEPZ_CACHE`` or ``~/.cache/live-deepz``."""
    env = os.environ.get("LIVE_DEEPZ_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "live-deepz"


def _psfmodels_version() -> str:
    import psfmodels

    return str(getattr(psfmodels, "__version__", "unknown"))


class _BytesLRU:
    """A thread-safe LRU dictionary bounded by the total ``nbytes`` of its values."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._d: OrderedDict[Any, Any] = OrderedDict()
        self._sizes: dict[Any, int] = {}
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        with self._lock:
            if key not in self._d:
                return None
            self._d.move_to_end(key)
            return self._d[key]

    def put(self, key: Any, value: Any, nbytes: int) -> None:
        with self._lock:
            if key in self._d:
                self._total -= self._sizes.pop(key)
                del self._d[key]
            self._d[key] = value
            self._sizes[key] = int(nbytes)
            self._total += int(nbytes)
            while self._total > self.max_bytes and len(self._d) > 1:
                old, _ = self._d.popitem(last=False)
                self._total -= self._sizes.pop(old)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._sizes.clear()
            self._total = 0


_KERNEL_CACHE = _BytesLRU(int(os.environ.get("LIVE_DEEPZ_PSF_CACHE_MB", "768")) * 2**20)
_FOCUS_CACHE: dict[tuple[str, float], float] = {}
_FOCUS_LOCK = threading.Lock()


@dataclass(frozen=True)
class KernelBand:
    """Kernels of one depth node for the defocus nodes ``u`` inside one |defocus| band."""

    u: NDArray[np.float64]
    """Defocus of each kernel, µm, ascending."""
    kernels: NDArray[np.float32]
    """``(B, n, n)``: emitter centred on the middle pixel; each slice sums to 1."""
    phases: NDArray[np.float32] | None
    """``(B, 3, 3, n, n)`` near focus: ``phases[b, a + 1, c + 1]`` is the kernel of an emitter
    at ``(+a/3, +c/3)`` px (rows, columns) from the middle pixel; ``None`` in far bands."""

    @property
    def nbytes(self) -> int:
        return int(self.kernels.nbytes + (0 if self.phases is None else self.phases.nbytes))


@dataclass(frozen=True)
class KernelTable:
    """All kernels of one depth node for ``|u| <= max_abs_um`` (plus one bracketing node)."""

    depth_um: float
    nodes: NDArray[np.float64]
    """Defocus nodes, µm, ascending, symmetric about 0."""
    bands: tuple[KernelBand, ...]
    _index: tuple[tuple[int, int], ...]
    """For node ``i``: (band, row)."""

    def kernel(self, i: int) -> NDArray[np.float32]:
        b, r = self._index[i]
        return self.bands[b].kernels[r]

    def phase_kernels(self, i: int) -> NDArray[np.float32] | None:
        """``(3, 3, n, n)`` sub-pixel kernels of node ``i``, or ``None`` away from focus."""
        b, r = self._index[i]
        ph = self.bands[b].phases
        return None if ph is None else ph[r]

    def bracket(self, u: ArrayLike) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
        """Linear interpolation: ``u ~ (1 - w) * node[i] + w * node[i + 1]``; ``u`` is clipped."""
        u = np.clip(np.asarray(u, dtype=np.float64), self.nodes[0], self.nodes[-1])
        i = np.searchsorted(self.nodes, u, side="right") - 1
        i = np.clip(i, 0, len(self.nodes) - 2)
        w = (u - self.nodes[i]) / (self.nodes[i + 1] - self.nodes[i])
        return i.astype(np.intp), np.clip(w, 0.0, 1.0)


@dataclass(frozen=True)
class PSFModel:
    """Vectorial wide-field PSF of :class:`~live_deepz.optics.Optics` (see module docstring).

    Parameters
    ----------
    optics
        Objective, wavelength, pixel size and refractive indices.
    oversample
        Point samples per pixel and axis for pixel integration (odd).
    margin_um
        Window radius beyond the geometric blur radius ``|u| tan(asin(NA/ni))``.
    depth_step_um
        Spacing of the depth nodes used by the renderer.
    fine_step_um, rel_step
        Defocus node spacing: ``max(fine_step_um, rel_step * |u|)``.
    sharp_um
        Below this |defocus| the kernels also come at sub-pixel phases.
    coverslip_um
        Actual coverslip thickness; the objective is designed for 170 µm. The default 185 µm
        (a #1.5 coverslip near the top of its tolerance, no correction collar) leaves the
        residual spherical aberration every real dry objective has: a bead on the coverslip
        gets an axially asymmetric PSF (mean |A| ~0.25 over 0.3-3.3 µm defocus, close to the
        0.29 measured on the real bead PSF in ``shared/data/real``; Strehl ~0.9). With 170 µm
        a surface bead's PSF is exactly symmetric, so the sign of its defocus is lost.
    disk_cache
        Read/write kernel bands under :func:`cache_root` ``/ "psf"``.
    """

    optics: Optics = field(default_factory=Optics)
    oversample: int = 3
    margin_um: float = 6.0
    depth_step_um: float = 2.0
    fine_step_um: float = 0.1
    rel_step: float = 0.04
    sharp_um: float = 2.0
    coverslip_um: float = DEFAULT_COVERSLIP_UM
    disk_cache: bool = True

    def __post_init__(self) -> None:
        if self.oversample < 1 or self.oversample % 2 == 0:
            raise ValueError(f"oversample must be an odd integer >= 1, got {self.oversample}")
        if self.sharp_um > _BAND_EDGES_UM[1]:
            raise ValueError(f"sharp_um must be <= {_BAND_EDGES_UM[1]}")
        if not 0.0 < self.coverslip_um < 1000.0:
            raise ValueError(f"coverslip_um must be in (0, 1000) µm, got {self.coverslip_um}")

    # ------------------------------------------------------------------ parameters / keys
    @cached_property
    def _params(self) -> dict[str, Any]:
        o = self.optics
        return {
            "NA": o.na,
            "ni": o.immersion_ri,
            "ni0": o.immersion_ri,
            "ns": o.sample_ri,
            **_COVERSLIP,
            "tg": float(self.coverslip_um),
        }

    @cached_property
    def key(self) -> str:
        """SHA-256 (hex, 16 chars) of every parameter that changes a kernel."""
        d = {
            "v": PSF_CACHE_VERSION,
            "psfmodels": _psfmodels_version(),
            "optics": self.optics.to_dict(),
            "coverslip": _COVERSLIP,
            "coverslip_um": self.coverslip_um,
            "oversample": self.oversample,
            "margin_um": self.margin_um,
            "fine_step_um": self.fine_step_um,
            "rel_step": self.rel_step,
            "sharp_um": self.sharp_um,
        }
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": "vectorial (Aguet 2009, psfmodels " + _psfmodels_version() + ")",
            "optics": self.optics.to_dict(),
            "coverslip": {**_COVERSLIP, "tg": self.coverslip_um},
            "oversample": self.oversample,
            "margin_um": self.margin_um,
            "depth_step_um": self.depth_step_um,
            "fine_step_um": self.fine_step_um,
            "rel_step": self.rel_step,
            "sharp_um": self.sharp_um,
        }

    @property
    def tan_theta(self) -> float:
        """Tangent of the marginal ray angle in the immersion medium."""
        na, ni = self.optics.na, self.optics.immersion_ri
        return na / math.sqrt(ni * ni - na * na)

    def half_width_px(self, defocus_um: float) -> int:
        """Kernel half width (pixels) for a defocus: geometric blur radius plus margin."""
        r = abs(float(defocus_um)) * self.tan_theta + self.margin_um
        return math.ceil(r / self.optics.pixel_size_um)

    # ------------------------------------------------------------------ raw psfmodels
    def _raw(
        self, zv: NDArray[np.float64], depth_um: float, nx: int, dxy: float, sf: int
    ) -> NDArray[np.float64]:
        import psfmodels

        params = dict(self._params, sf=sf, mode=1)
        out = psfmodels.vectorial_psf(
            np.ascontiguousarray(zv, dtype=np.float64),
            int(nx),
            float(dxy),
            float(max(depth_um, 0.0)),
            float(self.optics.wavelength_um),
            params,
            normalize=False,
        )
        return np.asarray(out, dtype=np.float64)

    # ------------------------------------------------------------------ best focus
    def _best_zv(self, depth_um: float) -> float:
        """psfmodels ``zv`` of the on-axis intensity maximum for an emitter at ``depth_um``."""
        pz = float(max(depth_um, 0.0))
        ck = (self.key, round(pz, 6))
        with _FOCUS_LOCK:
            if ck in _FOCUS_CACHE:
                return _FOCUS_CACHE[ck]
        dof = self.optics.depth_of_field_um
        half = 0.25 * pz + 2.0 * dof
        centre, step = pz, dof / 10.0
        best = centre
        for _ in range(3):
            zv = centre + np.arange(-half, half + step / 2, step)
            on_axis = self._raw(zv, pz, 1, self.optics.pixel_size_um, self.oversample)[:, 0, 0]
            i = int(np.argmax(on_axis))
            best = float(zv[i])
            if 0 < i < len(zv) - 1:
                y0, y1, y2 = on_axis[i - 1 : i + 2]
                den = y0 - 2.0 * y1 + y2
                if den < 0:
                    best += 0.5 * step * float((y0 - y2) / den)
            centre, half, step = best, 2.0 * step, step / 8.0
        with _FOCUS_LOCK:
            _FOCUS_CACHE[ck] = best
        return best

    def focus_shift_um(self, depth_um: ArrayLike) -> NDArray[np.float64]:
        """Stage displacement from focusing on the interface to the best focus on an emitter.

        ``~0.689 * depth`` for the default air objective into water (apparent depth); equal to
        ``depth`` with matched indices. Vectorised by linear interpolation on a 1 µm grid (the
        shift is linear in depth to ~1e-3 µm here).
        """
        d = np.clip(np.asarray(depth_um, dtype=np.float64), 0.0, None)
        step = 1.0
        if d.size == 0:
            return d.copy()
        grid = np.arange(0.0, math.floor(float(d.max())) + 2 * step, step)
        ni, ns = self.optics.immersion_ri, self.optics.sample_ri
        vals = np.array([self._best_zv(g) - g * (1.0 - ni / ns) for g in grid])
        vals -= vals[0]  # a coverslip mismatch also moves the focus on the interface itself
        return np.asarray(np.interp(d, grid, vals), dtype=np.float64)

    def best_focus_position_um(
        self, z_um: ArrayLike, depth_um: ArrayLike, ref_depth_um: float = 0.0
    ) -> NDArray[np.float64]:
        """Stage focus at which emitters at sample position ``z_um`` are best in focus.

        The stage zero focuses the sample's reference plane (``z = 0``, ``ref_depth_um`` below
        the interface). Each emitter's local interface sits at ``z - depth`` (a tilted or
        curved coverslip moves it; moving the interface moves the focus 1:1 in the air gap).
        """
        z = np.asarray(z_um, dtype=np.float64)
        d = np.clip(np.asarray(depth_um, dtype=np.float64), 0.0, None)
        shift = self.focus_shift_um(np.concatenate([d.ravel(), [ref_depth_um]]))
        ref = float(shift[-1]) - float(ref_depth_um)
        return (z - d) + shift[:-1].reshape(d.shape) - ref

    # ------------------------------------------------------------------ direct PSFs
    def psf(
        self, defocus_um: ArrayLike, depth_um: float = 0.0, nx: int | None = None
    ) -> NDArray[np.float32]:
        """PSF slices ``(Z, nx, nx)`` at the given defocus values for an emitter at a depth.

        Exact depth (no snapping); emitter on the middle pixel; each slice sums to 1.
        ``nx`` (odd) defaults to the window for the largest ``|defocus|``.
        """
        u = np.atleast_1d(np.asarray(defocus_um, dtype=np.float64))
        if nx is None:
            nx = 2 * self.half_width_px(float(np.abs(u).max())) + 1
        if nx % 2 == 0:
            raise ValueError(f"nx must be odd, got {nx}")
        ck = ("psf", self.key, round(float(depth_um), 6), tuple(np.round(u, 6)), nx)
        hit = _KERNEL_CACHE.get(ck)
        if hit is not None:
            return np.asarray(hit)
        name = _hash_name("psf", self.key, ck[2:])
        arrays = self._disk_load(name)
        if arrays is not None:
            out = arrays["psf"]
        else:
            zv = self._best_zv(depth_um) + u
            raw = self._raw(zv, depth_um, nx, self.optics.pixel_size_um, self.oversample)
            out = _normalise(raw)
            self._disk_save(name, {"psf": out})
        _KERNEL_CACHE.put(ck, out, out.nbytes)
        return out

    # ------------------------------------------------------------------ kernel tables
    def depth_node(self, depth_um: ArrayLike) -> NDArray[np.float64]:
        """Depths snapped to the node grid used by the renderer (``depth_step_um``)."""
        d = np.clip(np.asarray(depth_um, dtype=np.float64), 0.0, None)
        return np.round(d / self.depth_step_um) * self.depth_step_um

    def defocus_nodes(self, max_abs_um: float) -> NDArray[np.float64]:
        """Symmetric defocus grid covering ``[-max_abs_um, max_abs_um]`` (one node beyond)."""
        pos = [0.0]
        while pos[-1] < max_abs_um:
            u = pos[-1]
            pos.append(round(u + max(self.fine_step_um, self.rel_step * u), 6))
        p = np.array(pos)
        return np.concatenate([-p[:0:-1], p])

    def table(self, depth_um: float, max_abs_um: float) -> KernelTable:
        """Kernels for one depth node and ``|defocus| <= max_abs_um`` (bands computed lazily)."""
        depth = float(self.depth_node(depth_um))
        nodes = self.defocus_nodes(max(float(max_abs_um), self.fine_step_um))
        absn = np.abs(nodes)
        band_of = np.searchsorted(np.asarray(_BAND_EDGES_UM), absn, side="right") - 1
        if int(band_of.max()) >= len(_BAND_EDGES_UM) - 1:
            raise ValueError(f"defocus beyond {_BAND_EDGES_UM[-1]} µm is not supported")
        bands: list[KernelBand] = []
        index: list[tuple[int, int]] = [(0, 0)] * len(nodes)
        for b in np.unique(band_of):
            band = self._band(depth, int(b), nodes[band_of == b])
            pos = len(bands)
            bands.append(band)
            for i in np.flatnonzero(band_of == b):
                r = int(np.searchsorted(band.u, nodes[i]))
                if r >= len(band.u) or abs(band.u[r] - nodes[i]) > 1e-6:
                    raise RuntimeError("kernel band does not hold the requested node")
                index[int(i)] = (pos, r)
        return KernelTable(depth, nodes, tuple(bands), tuple(index))

    def _band(self, depth: float, b: int, u_req: NDArray[np.float64]) -> KernelBand:
        lo, hi = _BAND_EDGES_UM[b], _BAND_EDGES_UM[b + 1]
        # the band always holds all of its nodes of the (prefix-stable) grid, so that the
        # cache entry does not depend on how far a caller asked for.
        full = self.defocus_nodes(hi)
        u = full[(np.abs(full) >= lo) & (np.abs(full) < hi)]
        if not np.all(np.isin(np.round(u_req, 6), np.round(u, 6))):
            raise RuntimeError("defocus grid mismatch")
        ck = ("band", self.key, depth, b)
        hit = _KERNEL_CACHE.get(ck)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        name = _hash_name("band", self.key, (depth, b))
        arrays = self._disk_load(name)
        if arrays is not None and np.array_equal(np.round(arrays["u"], 6), np.round(u, 6)):
            band = KernelBand(arrays["u"], arrays["kernels"], arrays.get("phases"))
        else:
            band = self._compute_band(depth, u, 2 * self.half_width_px(hi) + 1, lo < self.sharp_um)
            save: dict[str, NDArray[Any]] = {"u": band.u, "kernels": band.kernels}
            if band.phases is not None:
                save["phases"] = band.phases
            self._disk_save(name, save)
        _KERNEL_CACHE.put(ck, band, band.nbytes)
        return band

    def _compute_band(
        self, depth: float, u: NDArray[np.float64], nx: int, sharp: bool
    ) -> KernelBand:
        zv = self._best_zv(depth) + u
        px = self.optics.pixel_size_um
        if not sharp:
            raw = self._raw(zv, depth, nx, px, self.oversample)
            return KernelBand(u.copy(), _normalise(raw), None)
        # point samples on a grid 3x finer than the pixels, one pixel wider on each side, then
        # 3x3 block sums at the three sub-pixel phases per axis (pixel integration).
        s = PHASES  # 3x3 samples per pixel here whatever ``oversample`` says
        nf = s * (nx + 2)
        fine = self._raw(zv, depth, nf, px / s, 1)  # (B, nf, nf)
        nb = len(u)
        phases = np.empty((nb, PHASES, PHASES, nx, nx), dtype=np.float64)
        for ia, a in enumerate((-1, 0, 1)):
            r0 = s - a
            rows = fine[:, r0 : r0 + s * nx, :].reshape(nb, nx, s, nf).sum(axis=2)
            for ic, c in enumerate((-1, 0, 1)):
                c0 = s - c
                blk = rows[:, :, c0 : c0 + s * nx].reshape(nb, nx, nx, s).sum(axis=3)
                phases[:, ia, ic] = blk
        # one normalisation per (node): the phases of one node share the emitter's energy
        tot = phases[:, 1, 1].sum(axis=(1, 2))
        phases /= tot[:, None, None, None, None]
        ph32 = phases.astype(np.float32)
        return KernelBand(u.copy(), np.ascontiguousarray(ph32[:, 1, 1]), ph32)

    # ------------------------------------------------------------------ disk cache
    def _cache_dir(self) -> Path:
        return cache_root() / "psf"

    def _disk_load(self, name: str) -> dict[str, NDArray[Any]] | None:
        if not self.disk_cache:
            return None
        path = self._cache_dir() / name
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: np.asarray(z[k]) for k in z.files}
        except (OSError, ValueError, KeyError):
            return None  # unreadable or truncated: recompute and overwrite

    def _disk_save(self, name: str, arrays: dict[str, NDArray[Any]]) -> None:
        if not self.disk_cache:
            return
        folder = self._cache_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp.npz"
            np.savez(tmp, **arrays)  # type: ignore[arg-type]
            os.replace(tmp, folder / name)
        except OSError:
            pass  # a read-only or full cache only costs recomputation


def _hash_name(kind: str, key: str, extra: Sequence[Any]) -> str:
    h = hashlib.sha256(json.dumps([kind, key, list(extra)], default=str).encode()).hexdigest()
    return f"{kind}-{h[:24]}.npz"


def _normalise(raw: NDArray[np.float64]) -> NDArray[np.float32]:
    tot = raw.sum(axis=(-2, -1), keepdims=True)
    tot[tot <= 0] = 1.0
    return np.ascontiguousarray((raw / tot).astype(np.float32))


def clear_memory_cache() -> None:
    """Drop the in-memory kernel cache (the disk cache stays)."""
    _KERNEL_CACHE.clear()
