"""Simulated fluorescent samples: 3D emitter clouds in micrometres, with ground truth.

Coordinates
    ``points_zyx_um[:, 0]`` is the axial position, growing deeper (away from the objective),
    relative to the sample's **reference plane** (``z = 0``); ``[:, 1]``/``[:, 2]`` are the
    lateral y/x positions, the field of view being centred on ``y = x = 0``.
    ``depth_um`` is each emitter's depth below the glass/medium interface, which sets the
    index-mismatch aberration (see :mod:`live_deepz.sim.psf`); ``ref_depth_um`` is the depth of
    the reference plane. Surface samples (beads on a slide, tilted or curved) keep a constant
    depth while the interface itself moves with ``z``; embedded samples (bead volume, worm,
    filaments) share one flat interface, ``depth = ref_depth + z``.

Brightness
    ``brightness`` is the photon rate (photons/s) each emitter sends to the camera; the PSF
    sums to 1, so rendered images are photons/s per pixel. ``background`` is a uniform
    photons/s/pixel per channel (autofluorescence, stray light).

Beads (300 nm) are small spheres: each is integrated over its volume with a 6-point cubature
(points at ``±a·sqrt(3/5)`` along x, y, z, each with 1/6 of the flux), which reproduces the
second moments of a uniform ball of radius ``a``; at 0.325 µm pixels that is all that matters.

Every generator takes a ``seed`` and returns the same sample for the same arguments.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "GENERATORS",
    "Emitters",
    "Sample",
    "beads_cylinder",
    "beads_flat",
    "beads_tilted",
    "beads_volume",
    "filaments",
    "point_sources",
    "worm",
]

BEAD_DIAMETER_UM = 0.3
DEFAULT_SIZE_UM = 256.0
"""Default lateral size of generated samples: a 512² field (166 µm) plus defocus margins."""

Bounds = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class Emitters:
    """Emitters of one channel at one time, as the renderer consumes them."""

    z_um: NDArray[np.float64]
    y_um: NDArray[np.float64]
    x_um: NDArray[np.float64]
    depth_um: NDArray[np.float64]
    weight: NDArray[np.float64]
    """Photons/s."""

    def __len__(self) -> int:
        return len(self.weight)


@dataclass(eq=False)
class Sample:
    """A 3D fluorescent sample (see the module docstring for the coordinates)."""

    name: str
    points_zyx_um: NDArray[np.float64]
    """``(N, 3)`` emitter positions, µm."""
    brightness: NDArray[np.float64]
    """``(N,)`` photons/s per emitter (baseline for a dynamic channel)."""
    channel: NDArray[np.int64]
    """``(N,)`` channel index of each emitter."""
    extent_um: Bounds
    """``((z0, z1), (y0, y1), (x0, x1))`` region the emitters were drawn in."""
    depth_um: NDArray[np.float64]
    """``(N,)`` depth below the glass/medium interface."""
    ref_depth_um: float = 0.0
    """Depth of the reference plane ``z = 0`` below the interface."""
    background: tuple[float, ...] = (0.0,)
    """Uniform photons/s/pixel per channel."""
    channel_names: tuple[str, ...] = ("fluorescence",)
    point_like: bool = False
    """Isolated sub-resolution emitters: render near focus with sub-pixel phase kernels."""
    object_id: NDArray[np.int64] | None = None
    """``(N,)`` index of the object (bead, neuron, filament) each emitter belongs to, or -1."""
    objects: dict[str, Any] = field(default_factory=dict)
    """Ground truth (JSON-ready lists), e.g. bead centres or neuron centres and radii."""
    params: dict[str, Any] = field(default_factory=dict)
    """Generator name, seed and arguments."""
    dynamic_channel: int | None = None
    """Channel whose emitters are scaled by ``1 + activity(t)[object_id]``."""
    activity_fn: Callable[[float], NDArray[np.float64]] | None = None
    motion_fn: Callable[[float], tuple[float, float, float]] | None = None
    """Rigid displacement ``(dz, dy, dx)`` µm of the whole sample at time ``t_s``."""

    def __post_init__(self) -> None:
        self.points_zyx_um = np.asarray(self.points_zyx_um, dtype=np.float64).reshape(-1, 3)
        n = len(self.points_zyx_um)
        self.brightness = np.broadcast_to(
            np.asarray(self.brightness, dtype=np.float64), (n,)
        ).copy()
        self.channel = np.broadcast_to(np.asarray(self.channel, dtype=np.int64), (n,)).copy()
        self.depth_um = np.broadcast_to(np.asarray(self.depth_um, dtype=np.float64), (n,)).copy()
        if self.object_id is not None:
            self.object_id = np.broadcast_to(
                np.asarray(self.object_id, dtype=np.int64), (n,)
            ).copy()
        nc = self.n_channels
        if len(self.background) < nc:
            self.background = tuple(self.background) + (0.0,) * (nc - len(self.background))
        if len(self.channel_names) < nc:
            extra = tuple(f"channel {i}" for i in range(len(self.channel_names), nc))
            self.channel_names = tuple(self.channel_names) + extra

    # ------------------------------------------------------------------ properties
    @property
    def n_points(self) -> int:
        return len(self.points_zyx_um)

    @property
    def n_channels(self) -> int:
        n = int(self.channel.max()) + 1 if len(self.channel) else 1
        return max(n, len(self.background), len(self.channel_names))

    @property
    def n_objects(self) -> int:
        if self.object_id is None or len(self.object_id) == 0:
            return 0
        return int(self.object_id.max()) + 1

    @property
    def is_dynamic(self) -> bool:
        return self.activity_fn is not None or self.motion_fn is not None

    # ------------------------------------------------------------------ time behaviour
    def activity(self, t_s: float) -> NDArray[np.float64]:
        """ΔF/F of every object at time ``t_s`` (zeros without activity)."""
        if self.activity_fn is None:
            return np.zeros(self.n_objects)
        return np.asarray(self.activity_fn(float(t_s)), dtype=np.float64)

    def offset_um(self, t_s: float) -> tuple[float, float, float]:
        """Rigid body displacement ``(dz, dy, dx)`` at ``t_s`` (zeros without motion)."""
        if self.motion_fn is None:
            return (0.0, 0.0, 0.0)
        dz, dy, dx = self.motion_fn(float(t_s))
        return (float(dz), float(dy), float(dx))

    def emitters(
        self, channel: int = 0, t_s: float | None = 0.0, *, static_only: bool = False
    ) -> Emitters:
        """Emitters of ``channel`` at time ``t_s`` (``None``: no motion, no activity).

        ``static_only`` keeps the baseline brightness of a dynamic channel (no activity) but
        still applies the motion at ``t_s``.
        """
        sel = self.channel == int(channel)
        p = self.points_zyx_um[sel]
        w = self.brightness[sel]
        d = self.depth_um[sel]
        if t_s is not None:
            if (
                not static_only
                and self.dynamic_channel == int(channel)
                and self.activity_fn is not None
                and self.object_id is not None
            ):
                oid = self.object_id[sel]
                act = self.activity(t_s)
                scale = np.ones(len(w))
                has = oid >= 0
                scale[has] += act[oid[has]]
                w = w * np.clip(scale, 0.0, None)
            dz, dy, dx = self.offset_um(t_s)
            if dz or dy or dx:
                p = p + np.array([dz, dy, dx])
                d = d + dz  # an embedded sample moving deeper moves deeper below the interface
        return Emitters(p[:, 0].copy(), p[:, 1].copy(), p[:, 2].copy(), d.copy(), w.copy())

    # ------------------------------------------------------------------ identity
    def key(self) -> str:
        """SHA-256 (16 hex) of the emitters and parameters: equal samples share it."""
        h = hashlib.sha256()
        for a in (self.points_zyx_um, self.brightness, self.channel, self.depth_um):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(
            json.dumps(
                [self.name, self.ref_depth_um, self.background, self.params], default=str
            ).encode()
        )
        return h.hexdigest()[:16]

    def truth(self) -> dict[str, Any]:
        """JSON-ready ground truth: generator parameters and object positions."""
        return {
            "name": self.name,
            "params": self.params,
            "n_points": self.n_points,
            "n_channels": self.n_channels,
            "channel_names": list(self.channel_names),
            "ref_depth_um": self.ref_depth_um,
            "background_photons_per_s_per_px": list(self.background),
            "extent_um": [list(e) for e in self.extent_um],
            "objects": self.objects,
            "conventions": (
                "z_um: axial position relative to the sample's reference plane, deeper "
                "(away from the objective) positive; y_um/x_um lateral, field of view "
                "centred on 0; depth_um: depth below the glass/medium interface."
            ),
        }


# ---------------------------------------------------------------------------- helpers
def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _bead_cubature(
    centres: NDArray[np.float64], diameter_um: float
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """6 points per bead at ±a·sqrt(3/5) along each axis (ball second moments)."""
    a = 0.5 * diameter_um
    if a <= 0:
        return centres.copy(), np.arange(len(centres))
    r = a * math.sqrt(3.0 / 5.0)
    offs = np.array(
        [[r, 0, 0], [-r, 0, 0], [0, r, 0], [0, -r, 0], [0, 0, r], [0, 0, -r]], dtype=np.float64
    )
    pts = (centres[:, None, :] + offs[None, :, :]).reshape(-1, 3)
    oid = np.repeat(np.arange(len(centres)), len(offs))
    return pts, oid


def _lateral_uniform(
    rng: np.random.Generator, n: int, size_um: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    h = size_um / 2.0
    return rng.uniform(-h, h, n), rng.uniform(-h, h, n)


def _bead_sample(
    name: str,
    centres: NDArray[np.float64],
    depth_centre: NDArray[np.float64],
    *,
    rng: np.random.Generator,
    brightness: float,
    brightness_cv: float,
    background: float,
    diameter_um: float,
    ref_depth_um: float,
    extent: Bounds,
    params: dict[str, Any],
) -> Sample:
    n = len(centres)
    flux = brightness * np.clip(1.0 + brightness_cv * rng.standard_normal(n), 0.2, None)
    pts, oid = _bead_cubature(centres, diameter_um)
    m = len(pts) // n if n else 1
    per_point = np.repeat(flux / m, m)
    depth = np.repeat(depth_centre, m) + (pts[:, 0] - centres[oid, 0])
    objects = {
        "kind": "beads",
        "diameter_um": diameter_um,
        "centres_zyx_um": np.round(centres, 5).tolist(),
        "depth_um": np.round(depth_centre, 5).tolist(),
        "flux_photons_per_s": np.round(flux, 3).tolist(),
    }
    return Sample(
        name=name,
        points_zyx_um=pts,
        brightness=per_point,
        channel=np.zeros(len(pts), dtype=np.int64),
        extent_um=extent,
        depth_um=np.clip(depth, 0.0, None),
        ref_depth_um=ref_depth_um,
        background=(background,),
        channel_names=("beads",),
        point_like=True,
        object_id=oid,
        objects=objects,
        params=params,
    )


def _n_from_density(density_per_100um2: float, size_um: float, n: int | None) -> int:
    if n is not None:
        return int(n)
    return round(density_per_100um2 * size_um * size_um / 100.0)


# ---------------------------------------------------------------------------- generators
def point_sources(
    points_zyx_um: Any,
    *,
    brightness: Any = 2e5,
    depth_um: Any | None = None,
    ref_depth_um: float = 0.0,
    background: float = 0.0,
    name: str = "points",
) -> Sample:
    """Point emitters at given positions (tests, custom samples).

    ``depth_um`` defaults to a flat interface: ``ref_depth_um + z`` (clipped at 0).
    """
    p = np.asarray(points_zyx_um, dtype=np.float64).reshape(-1, 3)
    depth = np.clip(ref_depth_um + p[:, 0], 0.0, None) if depth_um is None else np.asarray(depth_um)
    lo, hi = p.min(axis=0) if len(p) else np.zeros(3), p.max(axis=0) if len(p) else np.zeros(3)
    extent: Bounds = ((lo[0], hi[0]), (lo[1], hi[1]), (lo[2], hi[2]))
    return Sample(
        name=name,
        points_zyx_um=p,
        brightness=np.broadcast_to(np.asarray(brightness, dtype=np.float64), (len(p),)),
        channel=np.zeros(len(p), dtype=np.int64),
        extent_um=extent,
        depth_um=depth,
        ref_depth_um=ref_depth_um,
        background=(background,),
        point_like=True,
        object_id=np.arange(len(p)),
        objects={"kind": "points", "centres_zyx_um": p.round(5).tolist()},
        params={"generator": "point_sources"},
    )


def beads_flat(
    seed: int | np.random.Generator | None = 0,
    *,
    size_um: float = DEFAULT_SIZE_UM,
    density_per_100um2: float = 1.0,
    n: int | None = None,
    brightness: float = 2e5,
    brightness_cv: float = 0.2,
    background: float = 5000.0,
    diameter_um: float = BEAD_DIAMETER_UM,
) -> Sample:
    """300 nm beads on a flat slide surface, in water: all at one depth (the bead radius)."""
    return beads_tilted(
        seed,
        tilt_deg=0.0,
        size_um=size_um,
        density_per_100um2=density_per_100um2,
        n=n,
        brightness=brightness,
        brightness_cv=brightness_cv,
        background=background,
        diameter_um=diameter_um,
        _name="beads_flat",
    )


def beads_tilted(
    seed: int | np.random.Generator | None = 0,
    *,
    tilt_deg: float = 1.5,
    azimuth_deg: float = 0.0,
    size_um: float = DEFAULT_SIZE_UM,
    density_per_100um2: float = 1.0,
    n: int | None = None,
    brightness: float = 2e5,
    brightness_cv: float = 0.2,
    background: float = 5000.0,
    diameter_um: float = BEAD_DIAMETER_UM,
    _name: str = "beads_tilted",
) -> Sample:
    """Beads on a slide tilted by ``tilt_deg`` about an axis; the surface rises along the
    azimuth direction: ``z = tan(tilt) * (x cos(az) + y sin(az))`` (az = 0: along +x).

    The glass surface itself is tilted (air gap changes), so every bead keeps the same depth
    below it and is in focus exactly at stage ``z``.
    """
    rng = _rng(seed)
    count = _n_from_density(density_per_100um2, size_um, n)
    y, x = _lateral_uniform(rng, count, size_um)
    t = math.tan(math.radians(tilt_deg))
    az = math.radians(azimuth_deg)
    z = t * (x * math.cos(az) + y * math.sin(az))
    a = diameter_um / 2
    h = size_um / 2
    zmax = abs(t) * h * (abs(math.cos(az)) + abs(math.sin(az)))
    params = {
        "generator": _name,
        "seed": seed if isinstance(seed, int) else None,
        "tilt_deg": tilt_deg,
        "azimuth_deg": azimuth_deg,
        "size_um": size_um,
        "n": count,
        "brightness": brightness,
        "background": background,
        "diameter_um": diameter_um,
    }
    if _name == "beads_flat":
        params.pop("tilt_deg")
        params.pop("azimuth_deg")
    s = _bead_sample(
        _name,
        np.stack([z, y, x], axis=1),
        np.full(count, a),
        rng=rng,
        brightness=brightness,
        brightness_cv=brightness_cv,
        background=background,
        diameter_um=diameter_um,
        ref_depth_um=a,
        extent=((-zmax, zmax), (-h, h), (-h, h)),
        params=params,
    )
    if _name == "beads_tilted":
        s.objects["surface"] = {
            "kind": "plane",
            "tilt_deg": tilt_deg,
            "azimuth_deg": azimuth_deg,
            "z_um": "tan(tilt_deg) * (x_um * cos(azimuth_deg) + y_um * sin(azimuth_deg))",
        }
    return s


def beads_cylinder(
    seed: int | np.random.Generator | None = 0,
    *,
    radius_um: float = 3600.0,
    axis_deg: float = 90.0,
    size_um: float = DEFAULT_SIZE_UM,
    density_per_100um2: float = 1.0,
    n: int | None = None,
    brightness: float = 2e5,
    brightness_cv: float = 0.2,
    background: float = 5000.0,
    diameter_um: float = BEAD_DIAMETER_UM,
) -> Sample:
    """Beads on the outside of a tube (default 7.2 mm diameter) lying on its side.

    The tube axis runs in the focal plane at ``axis_deg`` from +x (90°: along y); the surface
    is closest to the objective on the axis and curves away: ``z = R - sqrt(R² - d²)`` with
    ``d`` the in-plane distance from the axis.
    """
    rng = _rng(seed)
    count = _n_from_density(density_per_100um2, size_um, n)
    y, x = _lateral_uniform(rng, count, size_um)
    ax = math.radians(axis_deg)
    d = -x * math.sin(ax) + y * math.cos(ax)
    z = radius_um - np.sqrt(np.clip(radius_um**2 - d**2, 0.0, None))
    a = diameter_um / 2
    h = size_um / 2
    params = {
        "generator": "beads_cylinder",
        "seed": seed if isinstance(seed, int) else None,
        "radius_um": radius_um,
        "axis_deg": axis_deg,
        "size_um": size_um,
        "n": count,
        "brightness": brightness,
        "background": background,
        "diameter_um": diameter_um,
    }
    s = _bead_sample(
        "beads_cylinder",
        np.stack([z, y, x], axis=1),
        np.full(count, a),
        rng=rng,
        brightness=brightness,
        brightness_cv=brightness_cv,
        background=background,
        diameter_um=diameter_um,
        ref_depth_um=a,
        extent=((0.0, float(z.max()) if count else 0.0), (-h, h), (-h, h)),
        params=params,
    )
    s.objects["surface"] = {
        "kind": "cylinder",
        "radius_um": radius_um,
        "axis_deg": axis_deg,
        "z_um": "R - sqrt(R^2 - d^2), d = -x sin(axis) + y cos(axis)",
    }
    return s


def beads_volume(
    seed: int | np.random.Generator | None = 0,
    *,
    thickness_um: float = 20.0,
    size_um: float = DEFAULT_SIZE_UM,
    density_per_1000um3: float = 0.5,
    n: int | None = None,
    gap_um: float = 1.0,
    brightness: float = 2e5,
    brightness_cv: float = 0.2,
    background: float = 5000.0,
    diameter_um: float = BEAD_DIAMETER_UM,
) -> Sample:
    """Beads embedded in a water-like gel slab of ``thickness_um``, centred on ``z = 0``.

    The slab starts ``gap_um`` below the coverslip, so ``ref_depth = gap + thickness/2`` and
    each bead's depth is ``ref_depth + z`` (focal shift and aberration grow with depth).
    """
    rng = _rng(seed)
    count = (
        int(n)
        if n is not None
        else round(density_per_1000um3 * size_um * size_um * thickness_um / 1000.0)
    )
    y, x = _lateral_uniform(rng, count, size_um)
    z = rng.uniform(-thickness_um / 2, thickness_um / 2, count)
    ref = gap_um + thickness_um / 2
    h = size_um / 2
    params = {
        "generator": "beads_volume",
        "seed": seed if isinstance(seed, int) else None,
        "thickness_um": thickness_um,
        "size_um": size_um,
        "n": count,
        "gap_um": gap_um,
        "brightness": brightness,
        "background": background,
        "diameter_um": diameter_um,
    }
    return _bead_sample(
        "beads_volume",
        np.stack([z, y, x], axis=1),
        ref + z,
        rng=rng,
        brightness=brightness,
        brightness_cv=brightness_cv,
        background=background,
        diameter_um=diameter_um,
        ref_depth_um=ref,
        extent=((-thickness_um / 2, thickness_um / 2), (-h, h), (-h, h)),
        params=params,
    )


# ---------------------------------------------------------------------------- worm
@dataclass(frozen=True)
class _CalciumActivity:
    """Per-neuron ΔF/F: sums of GCaMP-like transients, deterministic in ``t``.

    Events are drawn once for ``[0, horizon_s)`` and repeat with that period.
    """

    neuron: NDArray[np.int64]
    time_s: NDArray[np.float64]
    amp: NDArray[np.float64]
    n_neurons: int
    horizon_s: float
    rise_s: float = 0.15
    decay_s: float = 1.2

    def __call__(self, t_s: float) -> NDArray[np.float64]:
        t = float(t_s) % self.horizon_s
        window = 8.0 * self.decay_s
        out = np.zeros(self.n_neurons)
        for shift in (0.0, self.horizon_s):  # events of the previous period
            dt = t + shift - self.time_s
            m = (dt >= 0) & (dt < window)
            if not m.any():
                continue
            d = dt[m]
            k = (1.0 - np.exp(-d / self.rise_s)) * np.exp(-d / self.decay_s)
            out += np.bincount(self.neuron[m], weights=self.amp[m] * k, minlength=self.n_neurons)
        return out


@dataclass(frozen=True)
class _WormMotion:
    amp_um: tuple[float, float, float]
    period_s: tuple[float, float, float]
    phase: tuple[float, float, float]

    def __call__(self, t_s: float) -> tuple[float, float, float]:
        return tuple(  # type: ignore[return-value]
            a * math.sin(2 * math.pi * t_s / p + ph)
            for a, p, ph in zip(self.amp_um, self.period_s, self.phase)
        )


def _ball_points(rng: np.random.Generator, radius: float, spacing: float) -> NDArray[np.float64]:
    """Points filling a ball on a jittered cubic lattice (relative to its centre)."""
    k = math.ceil(radius / spacing)
    g = np.arange(-k, k + 1) * spacing
    zz, yy, xx = np.meshgrid(g, g, g, indexing="ij")
    p = np.stack([zz.ravel(), yy.ravel(), xx.ravel()], axis=1)
    p += rng.uniform(-0.3 * spacing, 0.3 * spacing, p.shape)
    return p[np.sum(p * p, axis=1) <= radius * radius]


def worm(
    seed: int | np.random.Generator | None = 0,
    *,
    size_um: float = DEFAULT_SIZE_UM,
    n_neurons: int = 80,
    body_width_um: float = 40.0,
    active_fraction: float = 0.6,
    n_clusters: int = 3,
    motion: bool = False,
    nucleus_brightness: float = 6e5,
    gcamp_fraction: float = 0.3,
    autofluorescence: float = 2e6,
    background: tuple[float, float] = (4000.0, 3000.0),
    horizon_s: float = 300.0,
) -> Sample:
    """A C. elegans-like sample: a curved body with neuron nuclei, two channels.

    * Channel 0 ("nuclei", e.g. tagRFP): static nuclei, 2-3 µm balls of emitters, plus dim
      autofluorescence filling the body.
    * Channel 1 ("calcium", GCaMP): the same nuclei at ``gcamp_fraction`` of the brightness,
      scaled by ``1 + ΔF/F`` of each neuron (``sample.activity(t_s)``): transients
      (0.15 s rise, 1.2 s decay) that ``active_fraction`` of the neurons fire, partly in
      ``n_clusters`` synchronous groups (the paper clusters its active neurons into 3).
    * The body (``body_width_um`` thick) lies in the focal plane; its mid-plane is the
      reference plane, ``body_width/2 + 2 µm`` below the coverslip; neurons spread over
      ~±14 µm in depth around it.
    * ``motion=True`` adds a slow rigid crawl (a few µm laterally, 0.5 µm axially).
    """
    rng = _rng(seed)
    h = size_um / 2
    r_body = body_width_um / 2
    ref = r_body + 2.0
    amp, lam, phi = 0.1 * size_um, 1.0 * size_um, rng.uniform(0, 2 * math.pi)

    def centre_y(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(amp * np.sin(2 * math.pi * x / lam + phi), dtype=np.float64)

    def normal(x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        dy = amp * 2 * math.pi / lam * np.cos(2 * math.pi * x / lam + phi)
        nrm = np.sqrt(1 + dy * dy)
        return -dy / nrm, 1 / nrm  # (nx, ny) in-plane normal

    # neurons: a dense "nerve ring" plus neurons spread along the body
    x_ring = rng.uniform(-0.15, 0.15) * size_um
    centres: list[NDArray[np.float64]] = []
    radii: list[float] = []
    tries = 0
    while len(centres) < n_neurons and tries < 50 * n_neurons:
        tries += 1
        if rng.uniform() < 0.6:
            xs = float(np.clip(rng.normal(x_ring, 0.06 * size_um), -0.33 * size_um, 0.33 * size_um))
        else:
            xs = float(rng.uniform(-0.33, 0.33) * size_um)
        v = float(np.clip(rng.normal(0, 0.28 * r_body), -0.75 * r_body, 0.75 * r_body))
        zc = float(np.clip(rng.normal(0, 0.35 * r_body), -0.7 * r_body, 0.7 * r_body))
        if v * v + zc * zc > (0.8 * r_body) ** 2:
            continue
        nx_, ny_ = normal(np.array([xs]))
        c = np.array([zc, centre_y(np.array([xs]))[0] + v * ny_[0], xs + v * nx_[0]])
        r = float(rng.uniform(1.0, 1.5))
        if any(np.linalg.norm(c - o) < r + ro + 0.5 for o, ro in zip(centres, radii)):
            continue
        centres.append(c)
        radii.append(r)
    nn = len(centres)
    cen = np.array(centres).reshape(-1, 3)

    pts_list, oid_list, w_list = [], [], []
    flux0 = nucleus_brightness * rng.uniform(0.6, 1.4, nn)
    for i in range(nn):
        b = _ball_points(rng, radii[i], 0.33) + cen[i]
        pts_list.append(b)
        oid_list.append(np.full(len(b), i))
        w_list.append(np.full(len(b), flux0[i] / len(b)))
    nuc_pts = np.concatenate(pts_list) if pts_list else np.zeros((0, 3))
    nuc_oid = np.concatenate(oid_list) if oid_list else np.zeros(0, np.int64)
    nuc_w = np.concatenate(w_list) if w_list else np.zeros(0)

    # dim autofluorescence filling the body tube
    n_auto = int(0.015 * math.pi * r_body**2 * size_um)
    xa = rng.uniform(-h, h, n_auto)
    rr = r_body * np.sqrt(rng.uniform(0, 1, n_auto))
    th = rng.uniform(0, 2 * math.pi, n_auto)
    va, za = rr * np.cos(th), rr * np.sin(th)
    nxa, nya = normal(xa)
    auto = np.stack([za, centre_y(xa) + va * nya, xa + va * nxa], axis=1)
    auto_w = np.full(n_auto, autofluorescence / max(n_auto, 1))

    pts = np.concatenate([nuc_pts, auto, nuc_pts, auto])
    bright = np.concatenate([nuc_w, auto_w, gcamp_fraction * nuc_w, 0.5 * auto_w])
    chan = np.concatenate(
        [np.zeros(len(nuc_pts) + n_auto, np.int64), np.ones(len(nuc_pts) + n_auto, np.int64)]
    )
    oid = np.concatenate([nuc_oid, np.full(n_auto, -1), nuc_oid, np.full(n_auto, -1)])

    # activity: clustered and independent transients
    active = rng.uniform(size=nn) < active_fraction
    cluster = rng.integers(0, max(n_clusters, 1), nn)
    ev_n, ev_t, ev_a = [], [], []
    cluster_events = [
        np.sort(rng.uniform(0, horizon_s, rng.poisson(0.08 * horizon_s)))
        for _ in range(max(n_clusters, 1))
    ]
    for ni in np.flatnonzero(active):
        te = cluster_events[int(cluster[ni])]
        keep = rng.uniform(size=len(te)) < 0.8
        t_c = te[keep] + rng.normal(0, 0.1, int(keep.sum()))
        t_i = rng.uniform(0, horizon_s, rng.poisson(0.02 * horizon_s))
        t_all = np.concatenate([t_c, t_i])
        ev_n.append(np.full(len(t_all), ni))
        ev_t.append(t_all)
        ev_a.append(rng.uniform(0.5, 2.0, len(t_all)))
    activity = _CalciumActivity(
        neuron=np.concatenate(ev_n).astype(np.int64) if ev_n else np.zeros(0, np.int64),
        time_s=np.concatenate(ev_t) if ev_t else np.zeros(0),
        amp=np.concatenate(ev_a) if ev_a else np.zeros(0),
        n_neurons=nn,
        horizon_s=horizon_s,
    )
    motion_fn = (
        _WormMotion(
            amp_um=(0.5, 1.5, 3.0),
            period_s=(7.0, 3.0, 4.0),
            phase=tuple(float(p) for p in rng.uniform(0, 2 * math.pi, 3)),  # type: ignore[arg-type]
        )
        if motion
        else None
    )
    objects = {
        "kind": "neurons",
        "centres_zyx_um": np.round(cen, 5).tolist(),
        "radius_um": np.round(radii, 5).tolist(),
        "depth_um": np.round(ref + cen[:, 0], 5).tolist() if nn else [],
        "active": active.tolist(),
        "cluster": cluster.tolist(),
        "body": {
            "width_um": body_width_um,
            "centre_y_um": f"{amp:.4f} * sin(2 pi x / {lam:.4f} + {phi:.6f})",
        },
        "activity": "sample.activity(t_s) -> dF/F per neuron (channel 1 = F0 * (1 + dF/F))",
    }
    params = {
        "generator": "worm",
        "seed": seed if isinstance(seed, int) else None,
        "size_um": size_um,
        "n_neurons": n_neurons,
        "body_width_um": body_width_um,
        "active_fraction": active_fraction,
        "n_clusters": n_clusters,
        "motion": motion,
        "nucleus_brightness": nucleus_brightness,
        "gcamp_fraction": gcamp_fraction,
        "autofluorescence": autofluorescence,
        "background": list(background),
    }
    return Sample(
        name="worm",
        points_zyx_um=pts,
        brightness=bright,
        channel=chan,
        extent_um=((-r_body, r_body), (-h, h), (-h, h)),
        depth_um=np.clip(ref + pts[:, 0], 0.0, None),
        ref_depth_um=ref,
        background=tuple(background),
        channel_names=("nuclei", "calcium"),
        point_like=False,
        object_id=oid,
        objects=objects,
        params=params,
        dynamic_channel=1,
        activity_fn=activity,
        motion_fn=motion_fn,
    )


# ---------------------------------------------------------------------------- filaments
def filaments(
    seed: int | np.random.Generator | None = 0,
    *,
    size_um: float = DEFAULT_SIZE_UM,
    n_filaments: int = 150,
    thickness_um: float = 8.0,
    length_um: tuple[float, float] = (30.0, 150.0),
    persistence_um: float = 20.0,
    step_um: float = 0.15,
    gap_um: float = 2.0,
    brightness_per_um: float = 3e4,
    background: float = 5000.0,
) -> Sample:
    """Dense, curved filaments (microtubule/actin-like) in a ``thickness_um`` slab.

    Worm-like chains with persistence length ``persistence_um``, mostly in-plane, reflected
    at the slab faces; emitters every ``step_um`` along each filament. A hard case: dense,
    overlapping structure at all depths.
    """
    rng = _rng(seed)
    h = size_um / 2
    tz = thickness_um / 2
    ref = gap_um + tz
    all_pts, all_oid, lens = [], [], []
    sig = math.sqrt(2.0 * step_um / persistence_um)
    for f in range(n_filaments):
        length = rng.uniform(*length_um)
        ns = max(int(length / step_um), 2)
        start = np.array([rng.uniform(-tz, tz), rng.uniform(-h, h), rng.uniform(-h, h)])
        az = rng.uniform(0, 2 * math.pi) + np.cumsum(sig * rng.standard_normal(ns))
        el = 0.5 * np.tanh(rng.normal(0, 0.3) + np.cumsum(sig * rng.standard_normal(ns)))
        steps = step_um * np.stack(
            [np.sin(el), np.cos(el) * np.sin(az), np.cos(el) * np.cos(az)], axis=1
        )
        pts = start + np.concatenate([np.zeros((1, 3)), np.cumsum(steps[:-1], axis=0)])
        # reflect at the slab faces: fold z into [-tz, tz] (triangle wave)
        zz = np.mod(pts[:, 0] + tz, 4 * tz)
        pts[:, 0] = np.where(zz > 2 * tz, 4 * tz - zz, zz) - tz
        all_pts.append(pts)
        all_oid.append(np.full(ns, f))
        lens.append(length)
    pts_a = np.concatenate(all_pts)
    oid = np.concatenate(all_oid)
    params = {
        "generator": "filaments",
        "seed": seed if isinstance(seed, int) else None,
        "size_um": size_um,
        "n_filaments": n_filaments,
        "thickness_um": thickness_um,
        "length_um": list(length_um),
        "persistence_um": persistence_um,
        "step_um": step_um,
        "gap_um": gap_um,
        "brightness_per_um": brightness_per_um,
        "background": background,
    }
    objects = {
        "kind": "filaments",
        "n": n_filaments,
        "length_um": np.round(lens, 4).tolist(),
        "start_zyx_um": [np.round(a[0], 4).tolist() for a in all_pts],
        "end_zyx_um": [np.round(a[-1], 4).tolist() for a in all_pts],
        "step_um": step_um,
    }
    return Sample(
        name="filaments",
        points_zyx_um=pts_a,
        brightness=np.full(len(pts_a), brightness_per_um * step_um),
        channel=np.zeros(len(pts_a), np.int64),
        extent_um=((-tz, tz), (-h, h), (-h, h)),
        depth_um=np.clip(ref + pts_a[:, 0], 0.0, None),
        ref_depth_um=ref,
        background=(background,),
        channel_names=("filaments",),
        point_like=False,
        object_id=oid,
        objects=objects,
        params=params,
    )


GENERATORS: dict[str, Callable[..., Sample]] = {
    "beads": beads_flat,
    "beads_flat": beads_flat,
    "beads-tilted": beads_tilted,
    "beads_tilted": beads_tilted,
    "beads-cylinder": beads_cylinder,
    "beads_cylinder": beads_cylinder,
    "beads-volume": beads_volume,
    "beads_volume": beads_volume,
    "worm": worm,
    "filaments": filaments,
}
"""Sample generators by CLI name (dashes) and by function name."""
