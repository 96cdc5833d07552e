"""The streaming simulated microscope: a sample under drift, a stage, and a noisy camera.

:class:`SimScene` renders camera frames fast enough for 100 fps at 512² on two cores:

1. **Defocus table** (built once, per channel, a few seconds): noise-free images of the
   sample's static structure (channel baseline, sample background included) focused every
   ``table_step_um`` (0.25 µm) over ``z_range_um``, on a *periodic tile* of
   ``(H + 2 * xy_margin_px)``-ish pixels (FFT size). The sample is treated as periodic
   with the tile's period, so any XY stage position is valid (it wraps around).
2. **Per frame** (~2-4 ms at 512²): the focus relative to the sample,
   ``f = stage_z - drift_z(t) - motion_z(t)``, picks the two nearest table planes, which are
   interpolated linearly; the lateral field centre ``stage_xy - drift_xy(t) - motion_xy(t)``
   picks a window of the tile at an integer offset, and with ``subpixel_xy`` (default) the
   remaining sub-pixel shift is a bilinear interpolation (smooths by at most a quarter pixel
   variance at half-pixel offsets); the dynamic channel (worm calcium) adds per-neuron
   pre-rendered defocused patches scaled by ``ΔF/F(t)``; then camera noise.

Signs: ``stage_z_um`` grows deeper into the sample and 0 focuses the sample's reference
plane (the frame is the image "focused at ``stage_z``" of :meth:`Renderer.render_stack`).
A drift ``z_um(t) > 0`` moves the *sample* deeper (away from the objective), so the image is
focused ``drift`` above where the stage says. ``stage_xy_um`` and ``xy_um(t)`` are
``(x, y)`` (Micro-Manager order); moving the stage by ``+x`` moves the field of view to
larger sample ``x``; image columns follow ``x`` and rows follow ``y``.

Foci outside the table are clamped to its end planes (counted in ``n_clamped``): choose
``z_range_um`` to cover the stage range plus drift (the default does so for bounded drifts).
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..optics import Optics
from .camera import CameraModel
from .psf import PSFModel
from .render import CanvasEmitters, even_fast_len, render_canvas
from .samples import Sample

__all__ = ["DriftTrajectory", "SimScene"]

DEFAULT_STAGE_RANGE_UM = (-12.0, 12.0)
MAX_TABLE_SPAN_UM = 60.0


# ---------------------------------------------------------------------------- drift
class _RandomWalk:
    """Deterministic seeded Brownian path sampled every ``dt_s`` (linear in between)."""

    _BLOCK = 8192

    def __init__(self, seed: int, sigma: Sequence[float], dt_s: float) -> None:
        self.sigma = np.asarray(sigma, dtype=np.float64)
        self.dt_s = float(dt_s)
        self.seed = int(seed)
        self._path = np.zeros((1, len(self.sigma)))
        self._blocks = 0
        self._lock = threading.Lock()

    def _extend(self, n: int) -> None:
        while len(self._path) < n:
            rng = np.random.default_rng([self.seed, self._blocks])
            steps = rng.standard_normal((self._BLOCK, len(self.sigma)))
            steps *= self.sigma * math.sqrt(self.dt_s)
            self._path = np.concatenate([self._path, self._path[-1] + np.cumsum(steps, axis=0)])
            self._blocks += 1

    def __call__(self, t_s: float) -> NDArray[np.float64]:
        k = max(float(t_s), 0.0) / self.dt_s
        i = int(k)
        with self._lock:
            self._extend(i + 2)
            a = self._path[i]
            b = self._path[i + 1]
        f = k - i
        return np.asarray((1 - f) * a + f * b, dtype=np.float64)


@dataclass(frozen=True)
class DriftTrajectory:
    """Sample drift relative to the microscope: ``z_um(t)`` (deeper +) and ``xy_um(t)``.

    Build one with the class methods: :meth:`none`, :meth:`constant`, :meth:`linear`,
    :meth:`sinusoidal`, :meth:`random_walk`, :meth:`paper` (a worm drifting 2-10 µm out of
    focus, the Deep-Z paper's drift demonstration).
    """

    kind: str = "none"
    z0_um: float = 0.0
    xy0_um: tuple[float, float] = (0.0, 0.0)
    z_rate_um_s: float = 0.0
    xy_rate_um_s: tuple[float, float] = (0.0, 0.0)
    z_amplitude_um: float = 0.0
    xy_amplitude_um: tuple[float, float] = (0.0, 0.0)
    period_s: float = 10.0
    sigma_z_um: float = 0.0
    """Random walk: RMS z step per sqrt(s)."""
    sigma_xy_um: float = 0.0
    seed: int = 0
    z_limits_um: tuple[float, float] = (0.0, 0.0)
    """``paper``: the drift stays within these (µm)."""
    _walk: _RandomWalk | None = field(default=None, repr=False, compare=False)
    _phases: tuple[float, ...] = field(default=(), repr=False, compare=False)

    # ---- constructors
    @classmethod
    def none(cls) -> DriftTrajectory:
        return cls()

    @classmethod
    def constant(
        cls, z_um: float = 0.0, xy_um: tuple[float, float] = (0.0, 0.0)
    ) -> DriftTrajectory:
        return cls(kind="constant", z0_um=float(z_um), xy0_um=_xy(xy_um))

    @classmethod
    def linear(
        cls,
        z_rate_um_s: float = 0.0,
        xy_rate_um_s: tuple[float, float] = (0.0, 0.0),
        z0_um: float = 0.0,
        xy0_um: tuple[float, float] = (0.0, 0.0),
    ) -> DriftTrajectory:
        return cls(
            kind="linear",
            z0_um=float(z0_um),
            xy0_um=_xy(xy0_um),
            z_rate_um_s=float(z_rate_um_s),
            xy_rate_um_s=_xy(xy_rate_um_s),
        )

    @classmethod
    def sinusoidal(
        cls,
        z_amplitude_um: float = 1.0,
        period_s: float = 10.0,
        xy_amplitude_um: tuple[float, float] = (0.0, 0.0),
        z0_um: float = 0.0,
        xy0_um: tuple[float, float] = (0.0, 0.0),
    ) -> DriftTrajectory:
        return cls(
            kind="sinusoidal",
            z0_um=float(z0_um),
            xy0_um=_xy(xy0_um),
            z_amplitude_um=float(z_amplitude_um),
            xy_amplitude_um=_xy(xy_amplitude_um),
            period_s=float(period_s),
        )

    @classmethod
    def random_walk(
        cls, sigma_z_um: float = 0.2, sigma_xy_um: float = 0.1, seed: int = 0, dt_s: float = 0.01
    ) -> DriftTrajectory:
        """Brownian drift: RMS displacement ``sigma * sqrt(t)`` per axis, seeded."""
        walk = _RandomWalk(seed, (sigma_z_um, sigma_xy_um, sigma_xy_um), dt_s)
        return cls(
            kind="random_walk",
            sigma_z_um=float(sigma_z_um),
            sigma_xy_um=float(sigma_xy_um),
            seed=int(seed),
            _walk=walk,
        )

    @classmethod
    def paper(
        cls,
        seed: int = 0,
        low_um: float = 2.0,
        high_um: float = 10.0,
        period_s: float = 20.0,
        xy_amplitude_um: float = 1.0,
    ) -> DriftTrajectory:
        """Smooth random drift that keeps the sample ``low..high`` µm out of focus.

        Use negative limits for drift toward the objective.
        """
        rng = np.random.default_rng(seed)
        phases = tuple(float(p) for p in rng.uniform(0, 2 * math.pi, 5))
        lo, hi = sorted((float(low_um), float(high_um)))
        return cls(
            kind="paper",
            period_s=float(period_s),
            xy_amplitude_um=(float(xy_amplitude_um), float(xy_amplitude_um)),
            seed=int(seed),
            z_limits_um=(lo, hi),
            _phases=phases,
        )

    # ---- evaluation
    def _smooth(self, t: float, phases: Sequence[float]) -> float:
        """Sum of three incommensurate sinusoids, in [-1, 1]."""
        w = (1.0, 0.6, 0.35)
        p = self.period_s
        s = sum(
            a * math.sin(2 * math.pi * t / (p * f) + ph)
            for a, f, ph in zip(w, (1.0, 0.61, 0.37), phases)
        )
        return s / sum(w)

    def z_um(self, t_s: float) -> float:
        """Axial drift of the sample at ``t_s`` (µm, deeper +)."""
        t = float(t_s)
        k = self.kind
        if k == "none":
            return 0.0
        if k == "constant":
            return self.z0_um
        if k == "linear":
            return self.z0_um + self.z_rate_um_s * t
        if k == "sinusoidal":
            return self.z0_um + self.z_amplitude_um * math.sin(2 * math.pi * t / self.period_s)
        if k == "random_walk":
            assert self._walk is not None
            return float(self._walk(t)[0])
        if k == "paper":
            lo, hi = self.z_limits_um
            g = self._smooth(t, self._phases[:3])
            return lo + (hi - lo) * 0.5 * (1.0 + g)
        raise ValueError(f"unknown drift kind {k!r}")

    def xy_um(self, t_s: float) -> tuple[float, float]:
        """Lateral drift ``(x, y)`` of the sample at ``t_s`` (µm)."""
        t = float(t_s)
        k = self.kind
        x0, y0 = self.xy0_um
        if k in ("none",):
            return (0.0, 0.0)
        if k == "constant":
            return (x0, y0)
        if k == "linear":
            return (x0 + self.xy_rate_um_s[0] * t, y0 + self.xy_rate_um_s[1] * t)
        if k == "sinusoidal":
            s = math.sin(2 * math.pi * t / self.period_s)
            c = math.cos(2 * math.pi * t / self.period_s)
            return (x0 + self.xy_amplitude_um[0] * s, y0 + self.xy_amplitude_um[1] * c)
        if k == "random_walk":
            assert self._walk is not None
            v = self._walk(t)
            return (float(v[1]), float(v[2]))
        if k == "paper":
            ph = self._phases
            ax, ay = self.xy_amplitude_um
            return (ax * self._smooth(t, ph[1:4]), ay * self._smooth(t, ph[2:5]))
        raise ValueError(f"unknown drift kind {k!r}")

    def z_bounds_um(self) -> tuple[float, float] | None:
        """Bounds of ``z_um(t)`` for all t, or ``None`` when unbounded (linear, random walk)."""
        k = self.kind
        if k == "none":
            return (0.0, 0.0)
        if k == "constant":
            return (self.z0_um, self.z0_um)
        if k == "sinusoidal":
            a = abs(self.z_amplitude_um)
            return (self.z0_um - a, self.z0_um + a)
        if k == "paper":
            return self.z_limits_um
        if k == "linear" and self.z_rate_um_s == 0:
            return (self.z0_um, self.z0_um)
        return None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        for name in (
            "z0_um",
            "xy0_um",
            "z_rate_um_s",
            "xy_rate_um_s",
            "z_amplitude_um",
            "xy_amplitude_um",
            "period_s",
            "sigma_z_um",
            "sigma_xy_um",
            "seed",
            "z_limits_um",
        ):
            d[name] = getattr(self, name)
        return d


def _xy(v: Sequence[float]) -> tuple[float, float]:
    return (float(v[0]), float(v[1]))


# ---------------------------------------------------------------------------- scene
@dataclass
class _Patch:
    plane: int
    r0: int
    c0: int
    data: NDArray[np.float32]


@dataclass
class _Table:
    channel: int
    planes: NDArray[np.float32]
    """``(P, Ht, Wt)`` photons/s per pixel, background included."""
    patches: dict[int, list[_Patch]] = field(default_factory=dict)
    """Dynamic channel: object id -> patches (one per table plane), baseline flux."""
    patch_index: dict[int, dict[int, _Patch]] = field(default_factory=dict)
    build_s: float = 0.0


class SimScene:
    """A simulated wide-field microscope looking at ``sample`` (see the module docstring).

    Parameters
    ----------
    sample
        What is under the objective.
    optics
        Optics (paper defaults).
    shape
        Sensor ``(H, W)``.
    camera
        Noise model (:class:`CameraModel` defaults).
    seed
        Seeds the camera noise generator.
    drift
        Sample drift (:class:`DriftTrajectory`), none by default.
    z_range_um
        Focus range of the table (sample-relative). Default: the stage range
        ``(-12, 12)`` µm shifted by the drift's bounds.
    table_step_um
        Focal spacing of the table (linear interpolation in between).
    xy_margin_px
        Extra tile pixels on each side (the tile is periodic in any case).
    channel
        Channel imaged by default (worm: 0 nuclei, 1 calcium).
    subpixel_xy
        Bilinear sub-pixel lateral shifts (else integer pixels).
    dynamic_max_defocus_um
        The dynamic channel's per-neuron ΔF patches cover ``|defocus| <=`` this; farther the
        ΔF of a neuron (< 1e-4 of its flux per pixel) is omitted.
    build
        Build the default channel's table now (else on first use).
    """

    def __init__(
        self,
        sample: Sample,
        optics: Optics | None = None,
        shape: tuple[int, int] | int = (512, 512),
        camera: CameraModel | None = None,
        seed: int | None = 0,
        drift: DriftTrajectory | None = None,
        *,
        z_range_um: tuple[float, float] | None = None,
        table_step_um: float = 0.25,
        xy_margin_px: int = 32,
        channel: int = 0,
        subpixel_xy: bool = True,
        psf: PSFModel | None = None,
        dynamic_max_defocus_um: float = 8.0,
        build: bool = True,
        progress: bool = False,
    ) -> None:
        self.sample = sample
        self.optics = optics or (psf.optics if psf is not None else Optics())
        self.psf = psf or PSFModel(self.optics)
        self._shape = (
            (int(shape), int(shape)) if isinstance(shape, int) else (int(shape[0]), int(shape[1]))
        )
        self.camera = camera or CameraModel()
        self.rng = np.random.default_rng(seed)
        self.drift = drift or DriftTrajectory.none()
        self.channel = int(channel)
        if not 0 <= self.channel < sample.n_channels:
            raise ValueError(f"channel {channel} not in sample ({sample.n_channels} channels)")
        self.subpixel_xy = bool(subpixel_xy)
        self.table_step_um = float(table_step_um)
        self.dynamic_max_defocus_um = float(dynamic_max_defocus_um)
        self.progress = progress
        if z_range_um is None:
            lo, hi = DEFAULT_STAGE_RANGE_UM
            b = self.drift.z_bounds_um() or (0.0, 0.0)
            z_range_um = (lo - b[1], hi - b[0])
        lo, hi = float(min(z_range_um)), float(max(z_range_um))
        if hi - lo > MAX_TABLE_SPAN_UM:
            raise ValueError(f"z_range_um spans {hi - lo:.1f} µm; at most {MAX_TABLE_SPAN_UM}")
        n = math.floor((hi - lo) / self.table_step_um + 1e-9) + 1
        self.table_z_um = lo + self.table_step_um * np.arange(max(n, 2))
        h, w = self._shape
        self.tile_shape = (
            even_fast_len(h + 2 * int(xy_margin_px) + 1),
            even_fast_len(w + 2 * int(xy_margin_px) + 1),
        )
        ht, wt = self.tile_shape
        self._my, self._mx = (ht - h) // 2, (wt - w) // 2
        self._tables: dict[int, _Table] = {}
        self._lock = threading.RLock()
        self._buf = np.zeros((h + 1, w + 1), dtype=np.float32)
        self._tmp = np.zeros((h + 1, w + 1), dtype=np.float32)
        self._photons = np.zeros((h, w), dtype=np.float32)
        self._motion_z_scale = self._motion_scale()
        self.n_frames = 0
        self.n_clamped = 0
        self._warned = False
        if build:
            self.build(self.channel)

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, int]:
        """Sensor shape ``(height, width)``."""
        return self._shape

    @property
    def build_time_s(self) -> dict[int, float]:
        """Seconds spent building each channel's table."""
        return {c: t.build_s for c, t in self._tables.items()}

    @property
    def table_nbytes(self) -> int:
        n = 0
        for t in self._tables.values():
            n += t.planes.nbytes + sum(p.data.nbytes for ps in t.patches.values() for p in ps)
        return n

    def _motion_scale(self) -> float:
        """Focus shift per µm of rigid sample motion in z (embedded samples: focal shift)."""
        if self.sample.motion_fn is None:
            return 1.0
        d = max(self.sample.ref_depth_um, 1.0)
        f = self.psf.focus_shift_um([d - 1.0, d + 1.0])
        return float((f[1] - f[0]) / 2.0)

    # ------------------------------------------------------------------ table
    def _tile_coords(
        self, channel: int
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
        """Tile (row, column) of the channel's emitters and which lie inside the tile."""
        em = self.sample.emitters(channel, None)
        h, w = self._shape
        ht, wt = self.tile_shape
        px = self.optics.pixel_size_um
        r = em.y_um / px + (h - 1) / 2 + self._my
        c = em.x_um / px + (w - 1) / 2 + self._mx
        keep = (r >= -0.5) & (r < ht - 0.5) & (c >= -0.5) & (c < wt - 0.5)
        return r, c, keep

    def _canvas_emitters(self, channel: int) -> CanvasEmitters:
        em = self.sample.emitters(channel, None)
        r, c, keep = self._tile_coords(channel)
        fe = self.psf.best_focus_position_um(em.z_um, em.depth_um, self.sample.ref_depth_um)
        return CanvasEmitters(r[keep], c[keep], fe[keep], em.depth_um[keep], em.weight[keep])

    def build(self, channel: int | None = None) -> None:
        """Build (once) the defocus table of ``channel`` (default: the scene's channel)."""
        ch = self.channel if channel is None else int(channel)
        with self._lock:
            if ch in self._tables:
                return
            t0 = time.perf_counter()
            cem = self._canvas_emitters(ch)
            planes = np.empty((len(self.table_z_um), *self.tile_shape), dtype=np.float32)
            render_canvas(
                self.psf,
                cem,
                self.table_z_um,
                self.tile_shape,
                layer_step_um=self.table_step_um,
                subpixel=self.sample.point_like,
                out=planes,
                progress=self.progress,
                desc=f"scene table {self.sample.name} ch{ch}",
            )
            bg = self.sample.background[ch] if ch < len(self.sample.background) else 0.0
            if bg:
                planes += np.float32(bg)
            table = _Table(ch, planes)
            if self.sample.dynamic_channel == ch and self.sample.activity_fn is not None:
                self._build_patches(table)
            table.build_s = time.perf_counter() - t0
            self._tables[ch] = table

    def _build_patches(self, table: _Table) -> None:
        """Per-object defocused images (baseline flux) for the dynamic channel."""
        s = self.sample
        ch = table.channel
        if s.object_id is None:
            return
        em_all = self._canvas_emitters(ch)
        _, _, keep = self._tile_coords(ch)  # same selection as _canvas_emitters
        oid = s.object_id[s.channel == ch][keep]
        assert len(oid) == len(em_all)
        active = s.objects.get("active")
        umax = self.dynamic_max_defocus_um
        zt = self.table_z_um
        for o in np.unique(oid[oid >= 0]):
            if active is not None and not active[int(o)]:
                continue
            m = oid == o
            ey, ex, ef = em_all.y_px[m], em_all.x_px[m], em_all.focus_um[m]
            fc = float(np.average(ef, weights=em_all.weight[m]))
            ks = np.flatnonzero(np.abs(zt - fc) <= umax)
            if len(ks) == 0:
                continue
            rc, cc = round(float(np.mean(ey))), round(float(np.mean(ex)))
            extent = float(max(np.ptp(ey), np.ptp(ex))) / 2 + 2
            half = self.psf.half_width_px(umax + float(np.ptp(ef))) + math.ceil(extent)
            n = even_fast_len(2 * half + 1)
            off_r, off_c = rc - n // 2, cc - n // 2
            sub = CanvasEmitters(ey - off_r, ex - off_c, ef, em_all.depth_um[m], em_all.weight[m])
            imgs = render_canvas(
                self.psf, sub, zt[ks], (n, n), layer_step_um=self.table_step_um, subpixel=False
            )
            plist: list[_Patch] = []
            for k, img in zip(ks, imgs):
                hw = self.psf.half_width_px(abs(float(zt[k]) - fc)) + math.ceil(extent)
                hw = min(hw, n // 2)
                a0, a1 = n // 2 - hw, n // 2 + hw + 1
                plist.append(
                    _Patch(int(k), off_r + a0, off_c + a0, np.ascontiguousarray(img[a0:a1, a0:a1]))
                )
            table.patches[int(o)] = plist
            table.patch_index[int(o)] = {p.plane: p for p in plist}

    # ------------------------------------------------------------------ frames
    def focus_um(self, t_s: float, stage_z_um: float) -> float:
        """Focus relative to the sample's reference plane at ``t_s`` (µm)."""
        mz = self.sample.offset_um(t_s)[0] if self.sample.motion_fn is not None else 0.0
        return float(stage_z_um) - self.drift.z_um(t_s) - self._motion_z_scale * mz

    def field_centre_um(
        self, t_s: float, stage_xy_um: Sequence[float] = (0.0, 0.0)
    ) -> tuple[float, float]:
        """Sample position ``(x, y)`` at the centre of the field of view at ``t_s``."""
        dx, dy = self.drift.xy_um(t_s)
        mo = self.sample.offset_um(t_s) if self.sample.motion_fn is not None else (0.0, 0.0, 0.0)
        return (float(stage_xy_um[0]) - dx - mo[2], float(stage_xy_um[1]) - dy - mo[1])

    def expected_frame(
        self,
        t_s: float,
        stage_z_um: float,
        stage_xy_um: Sequence[float] = (0.0, 0.0),
        out: NDArray[np.float32] | None = None,
        *,
        channel: int | None = None,
    ) -> NDArray[np.float32]:
        """The noise-free frame, photons/s per pixel (float32)."""
        with self._lock:
            img = self._compose(t_s, stage_z_um, stage_xy_um, channel)
            if out is None:
                return img.copy()
            out[...] = img
            return out

    def render_frame(
        self,
        t_s: float,
        stage_z_um: float,
        stage_xy_um: Sequence[float] = (0.0, 0.0),
        exposure_ms: float = 10.0,
        out: NDArray[np.uint16] | None = None,
        *,
        channel: int | None = None,
    ) -> NDArray[np.uint16]:
        """One noisy uint16 camera frame (fills and returns ``out`` when given)."""
        with self._lock:
            img = self._compose(t_s, stage_z_um, stage_xy_um, channel)
            if out is None:
                out = np.empty(self._shape, dtype=np.uint16)
            return self.camera.expose(img, exposure_ms, self.rng, out=out)

    def _compose(
        self,
        t_s: float,
        stage_z_um: float,
        stage_xy_um: Sequence[float],
        channel: int | None,
    ) -> NDArray[np.float32]:
        ch = self.channel if channel is None else int(channel)
        table = self._tables.get(ch)
        if table is None:
            self.build(ch)
            table = self._tables[ch]
        self.n_frames += 1
        h, w = self._shape
        ht, wt = self.tile_shape
        px = self.optics.pixel_size_um

        # axial: two table planes
        f = self.focus_um(t_s, stage_z_um)
        zt = self.table_z_um
        kf = (f - zt[0]) / self.table_step_um
        if not (0.0 <= kf <= len(zt) - 1):
            self.n_clamped += 1
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"SimScene: focus {f:.2f} µm outside the table "
                    f"[{zt[0]:.2f}, {zt[-1]:.2f}] µm; clamped (widen z_range_um)",
                    RuntimeWarning,
                    stacklevel=3,
                )
            kf = min(max(kf, 0.0), len(zt) - 1.0)
        k = min(int(kf), len(zt) - 2)
        a = float(kf - k)

        # lateral: integer window + sub-pixel fraction
        cx, cy = self.field_centre_um(t_s, stage_xy_um)
        sy, sx = cy / px, cx / px
        oy, ox = math.floor(sy), math.floor(sx)
        fy, fx = sy - oy, sx - ox
        if not self.subpixel_xy:
            oy, ox = round(sy), round(sx)
            fy = fx = 0.0
        row0 = (self._my + oy) % ht
        col0 = (self._mx + ox) % wt
        buf, tmp = self._buf, self._tmp
        p0, p1 = table.planes[k], table.planes[k + 1]
        for (dr, dc), (sr, sc) in _wrap_blocks(row0, h + 1, ht, col0, w + 1, wt):
            np.multiply(p0[sr, sc], np.float32(1.0 - a), out=buf[dr, dc])
            if a > 0.0:
                np.multiply(p1[sr, sc], np.float32(a), out=tmp[dr, dc])
                buf[dr, dc] += tmp[dr, dc]

        # dynamic channel
        if table.patches:
            act = self.sample.activity(t_s)
            for o, idx in table.patch_index.items():
                ao = float(act[o]) if o < len(act) else 0.0
                if abs(ao) < 1e-4:
                    continue
                for kk, wk in ((k, 1.0 - a), (k + 1, a)):
                    if wk <= 0.0:
                        continue
                    p = idx.get(kk)
                    if p is not None:
                        _add_patch(buf, tmp, p, np.float32(ao * wk), row0, col0, ht, wt)

        if fy == 0.0 and fx == 0.0:
            return buf[:h, :w]
        ph = self._photons
        np.multiply(buf[:h, :w], np.float32((1 - fy) * (1 - fx)), out=ph)
        t = tmp[:h, :w]
        if fx:
            np.multiply(buf[:h, 1:], np.float32((1 - fy) * fx), out=t)
            ph += t
        if fy:
            np.multiply(buf[1:, :w], np.float32(fy * (1 - fx)), out=t)
            ph += t
            if fx:
                np.multiply(buf[1:, 1:], np.float32(fy * fx), out=t)
                ph += t
        return ph


def _wrap_blocks(
    r0: int, nr: int, hr: int, c0: int, nc: int, hc: int
) -> list[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """Destination/source slices covering a window of a periodic tile."""

    def spans(s0: int, n: int, period: int) -> list[tuple[slice, slice]]:
        out = []
        d = 0
        s = s0 % period
        while d < n:
            m = min(n - d, period - s)
            out.append((slice(d, d + m), slice(s, s + m)))
            d += m
            s = 0
        return out

    return [((dr, dc), (sr, sc)) for dr, sr in spans(r0, nr, hr) for dc, sc in spans(c0, nc, hc)]


def _add_patch(
    buf: NDArray[np.float32],
    tmp: NDArray[np.float32],
    p: _Patch,
    scale: np.float32,
    row0: int,
    col0: int,
    ht: int,
    wt: int,
) -> None:
    """Add ``scale * patch`` at its tile position to the window starting at (row0, col0)."""
    bh, bw = buf.shape
    ph, pw = p.data.shape
    r = (p.r0 - row0) % ht
    c = (p.c0 - col0) % wt
    for rr in (r, r - ht):
        if rr >= bh or rr + ph <= 0:
            continue
        for cc in (c, c - wt):
            if cc >= bw or cc + pw <= 0:
                continue
            y0, y1 = max(rr, 0), min(rr + ph, bh)
            x0, x1 = max(cc, 0), min(cc + pw, bw)
            src = p.data[y0 - rr : y1 - rr, x0 - cc : x1 - cc]
            t = tmp[y0:y1, x0:x1]
            np.multiply(src, scale, out=t)
            buf[y0:y1, x0:x1] += t
