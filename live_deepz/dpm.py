"""Digital propagation matrices (DPMs): the per-pixel refocus distance Deep-Z is given.

A DPM is a float32 ``(H, W)`` array in micrometres, the same size as the camera frame.
Each pixel holds the axial distance from the input image's focal plane to the target
surface at that pixel.

**Sign convention**: ``offset > 0`` is a plane *farther from the objective* (deeper into the
sample) than the input's focal plane; ``offset < 0`` is a plane closer to the objective.

**Image geometry**: arrays are indexed ``[y, x]`` (row, column); ``+x`` runs along increasing
column index, ``+y`` along increasing row index (downwards on screen). In-plane angles
(``azimuth_deg``, ``axis_deg``, ``direction_deg``) are measured from ``+x`` towards ``+y``,
so 90° points along ``+y``. Unless a ``center=(y, x)`` (pixels) is given, the origin of a
surface is the image centre ``((H - 1) / 2, (W - 1) / 2)``.

Contents

- builders: :func:`uniform`, :func:`tilted_plane`, :func:`cylinder`, :func:`sinusoid`,
  :func:`from_surface`, and :func:`surface_from_spec` (a JSON-able dict → a builder call);
- :func:`parse_planes` (``"-10:10:0.5"`` → 41 offsets);
- :func:`to_network_units` / :func:`from_network_units` (the network sees ``DPM / 10 µm``);
- :func:`check_range` (refuse, or warn when allowed, outside the model's trained range);
- :func:`smoothness_period_um` / :func:`check_smoothness` (the paper's > ~32 µm period limit);
- plane plans: the :class:`PlanePlan` protocol the live engine asks for each frame's DPMs,
  and :class:`StaticPlanePlan` (fixed offsets on an optional base surface).
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from .errors import DPMRangeError, InputError

__all__ = [
    "DEFAULT_DPM_SCALE_UM",
    "MAX_PLANES",
    "SURFACE_KINDS",
    "OutOfRangeWarning",
    "PlanePlan",
    "StaticPlanePlan",
    "check_range",
    "check_smoothness",
    "cylinder",
    "from_network_units",
    "from_surface",
    "parse_planes",
    "sinusoid",
    "smoothness_period_um",
    "surface_from_spec",
    "tilted_plane",
    "to_network_units",
    "uniform",
]

DEFAULT_DPM_SCALE_UM = 10.0
"""DPM entries are divided by this before entering the network (paper: ±10 µm → ±1)."""

MAX_PLANES = 10_000
"""Upper bound on the number of planes :func:`parse_planes` produces (catches typos)."""

RANGE_TOLERANCE_UM = 1e-6
"""Slack allowed at the ends of the model's axial range in :func:`check_range`."""

PLANES_FORMS = (
    "accepted forms: a range 'start:stop:step' with step > 0 and stop >= start, both ends "
    "included (e.g. '-10:10:0.5' gives 41 planes); a single number ('3'); a comma list of "
    "numbers and/or ranges ('-2,0,2.5'); or a list/tuple of numbers"
)


class OutOfRangeWarning(UserWarning):
    """A DPM leaves the model's trained axial range and the user allowed it."""


# --------------------------------------------------------------------------- validation


def _check_shape(shape: Any) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in shape)
        ok = all(float(v) == int(v) for v in shape)
    except (TypeError, ValueError):
        ok = False
    if not ok or h <= 0 or w <= 0:
        raise InputError(f"shape must be two positive integers (height, width), got {shape!r}")
    return h, w


def _finite(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise InputError(f"{name} must be finite, got {value!r}")
    return v


def _positive(name: str, value: Any) -> float:
    v = _finite(name, value)
    if v <= 0:
        raise InputError(f"{name} must be > 0, got {value!r}")
    return v


def _center(shape: tuple[int, int], center: Any) -> tuple[float, float]:
    if center is None:
        return (shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0
    try:
        cy, cx = center
    except (TypeError, ValueError):
        raise InputError(f"center must be (y, x) in pixels, got {center!r}") from None
    return _finite("center y", cy), _finite("center x", cx)


def _coords_um(
    shape: tuple[int, int], pixel_size_um: float, center: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``(dy, dx)`` in µm from the centre, float64, shaped ``(H, 1)`` and ``(1, W)``."""
    cy, cx = _center(shape, center)
    dy = (np.arange(shape[0], dtype=np.float64) - cy)[:, None] * pixel_size_um
    dx = (np.arange(shape[1], dtype=np.float64) - cx)[None, :] * pixel_size_um
    return dy, dx


def _as_real_array(name: str, a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "iuf":
        raise InputError(f"{name} must hold real numbers (int/uint/float), got dtype {arr.dtype}")
    return arr


# --------------------------------------------------------------------------- builders


def uniform(shape: tuple[int, int], offset_um: float) -> np.ndarray:
    """A flat DPM: every pixel refocuses by ``offset_um`` (the paper's training DPMs)."""
    h, w = _check_shape(shape)
    return np.full((h, w), _finite("offset_um", offset_um), dtype=np.float32)


def tilted_plane(
    shape: tuple[int, int],
    pixel_size_um: float,
    tilt_deg: float | None = None,
    azimuth_deg: float = 0.0,
    gradient: tuple[float, float] | None = None,
    offset_um: float = 0.0,
    center: tuple[float, float] | None = None,
) -> np.ndarray:
    """A tilted plane through ``offset_um`` at the centre pixel.

    Give exactly one of

    - ``tilt_deg`` and ``azimuth_deg``: the plane makes the angle ``tilt_deg`` with the focal
      plane and gets *deeper* (DPM grows) fastest along the in-plane direction ``azimuth_deg``,
      measured from ``+x`` towards ``+y`` (0° = deeper to the right, 90° = deeper downwards);
      ``z = offset + tan(tilt) · (cos(az)·Δx + sin(az)·Δy)``;
    - ``gradient=(dz/dy, dz/dx)`` in µm per µm: ``z = offset + gy·Δy + gx·Δx``.

    Δx, Δy are µm from ``center`` (``(y, x)`` pixels, default: the image centre).
    """
    h, w = _check_shape(shape)
    px = _positive("pixel_size_um", pixel_size_um)
    off = _finite("offset_um", offset_um)
    if (tilt_deg is None) == (gradient is None):
        raise InputError(
            "tilted_plane needs exactly one of tilt_deg (with azimuth_deg) or "
            "gradient=(dz/dy, dz/dx)"
        )
    if tilt_deg is not None:
        tilt = _finite("tilt_deg", tilt_deg)
        if not abs(tilt) < 90.0:
            raise InputError(f"tilt_deg must lie strictly between -90 and 90, got {tilt_deg}")
        az = math.radians(_finite("azimuth_deg", azimuth_deg))
        slope = math.tan(math.radians(tilt))
        gy, gx = slope * math.sin(az), slope * math.cos(az)
    else:
        try:
            gy_raw, gx_raw = gradient  # type: ignore[misc]
        except (TypeError, ValueError):
            raise InputError(f"gradient must be (dz/dy, dz/dx), got {gradient!r}") from None
        gy, gx = _finite("gradient dz/dy", gy_raw), _finite("gradient dz/dx", gx_raw)
    dy, dx = _coords_um((h, w), px, center)
    return (off + gy * dy + gx * dx).astype(np.float32)


def cylinder(
    shape: tuple[int, int],
    pixel_size_um: float,
    radius_um: float,
    axis_deg: float = 0.0,
    offset_um: float = 0.0,
    convex_towards_objective: bool = True,
    center: tuple[float, float] | None = None,
) -> np.ndarray:
    """The surface of a cylinder of radius ``radius_um`` whose axis lies in the image plane.

    The axis passes through ``center`` (default: the image centre) along the in-plane
    direction ``axis_deg`` (from ``+x`` towards ``+y``; 0° = a horizontal axis). The surface
    is at ``offset_um`` along the axis and its sag at in-plane distance ``d`` from the axis is
    ``R − sqrt(R² − d²)``. With ``convex_towards_objective=True`` (a tube seen from outside)
    the surface recedes from the objective away from the axis, so the sag is added (deeper);
    with ``False`` (seen from inside) it is subtracted.

    Raises :class:`InputError` when some pixel lies farther than ``R`` from the axis.
    """
    h, w = _check_shape(shape)
    px = _positive("pixel_size_um", pixel_size_um)
    r = _positive("radius_um", radius_um)
    off = _finite("offset_um", offset_um)
    a = math.radians(_finite("axis_deg", axis_deg))
    dy, dx = _coords_um((h, w), px, center)
    d = np.abs(-math.sin(a) * dx + math.cos(a) * dy)  # distance from the axis, (H, W)
    d_max = float(d.max())
    if d_max > r:
        raise InputError(
            f"the field reaches {d_max:.4g} µm from the cylinder axis, beyond its radius "
            f"{r:.4g} µm; use a larger radius_um, or move the axis (center/axis_deg) so the "
            "whole frame lies on the cylinder"
        )
    # R - sqrt(R² - d²) written without the cancellation for d << R.
    sag = d * d / (r + np.sqrt(np.maximum(r * r - d * d, 0.0)))
    z = off + sag if convex_towards_objective else off - sag
    return z.astype(np.float32)


def sinusoid(
    shape: tuple[int, int],
    pixel_size_um: float,
    period_um: float,
    amplitude_um: float,
    direction_deg: float = 0.0,
    offset_um: float = 0.0,
    phase_deg: float = 0.0,
) -> np.ndarray:
    """A sinusoidal surface ``z = offset + A · sin(2π·u / period + phase)``.

    ``u`` is the distance (µm) from the image centre along ``direction_deg`` (from ``+x``
    towards ``+y``), the direction in which the surface oscillates. ``amplitude_um`` is half
    the peak-to-peak depth (the paper's −1…−9 µm test surface is ``offset=-5, amplitude=4``).
    """
    h, w = _check_shape(shape)
    px = _positive("pixel_size_um", pixel_size_um)
    period = _positive("period_um", period_um)
    amp = _finite("amplitude_um", amplitude_um)
    off = _finite("offset_um", offset_um)
    d = math.radians(_finite("direction_deg", direction_deg))
    ph = math.radians(_finite("phase_deg", phase_deg))
    dy, dx = _coords_um((h, w), px, None)
    u = math.cos(d) * dx + math.sin(d) * dy
    return (off + amp * np.sin(2.0 * math.pi * u / period + ph)).astype(np.float32)


def from_surface(
    surface: ArrayLike | str | os.PathLike[str], shape: tuple[int, int] | None = None
) -> np.ndarray:
    """A DPM from a user surface: a 2D array in µm, or the path of a TIFF holding one.

    Singleton axes of a TIFF/array (e.g. ``(1, H, W)``) are dropped. The surface must be
    finite and, when ``shape`` is given, exactly that size: DPMs are never resampled, since
    a DPM is defined per camera pixel. Returns a float32 copy.
    """
    source = "surface"
    if isinstance(surface, str | os.PathLike):
        import tifffile

        source = f"surface file {os.fspath(surface)!r}"
        try:
            arr = tifffile.imread(os.fspath(surface))
        except FileNotFoundError:
            raise InputError(f"{source} does not exist") from None
        except Exception as exc:  # tifffile raises many types for non-TIFF files
            raise InputError(f"cannot read {source} as a TIFF: {exc}") from None
    else:
        arr = surface  # type: ignore[assignment]
    arr = _as_real_array(source, arr)
    if arr.ndim > 2:
        arr = arr.reshape([n for n in arr.shape if n != 1] or [1])
    if arr.ndim != 2:
        raise InputError(f"{source} must be a 2D (H, W) array of µm, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{source} is empty (shape {arr.shape})")
    if shape is not None and tuple(arr.shape) != _check_shape(shape):
        h, w = _check_shape(shape)
        raise InputError(
            f"{source} is {arr.shape[0]}×{arr.shape[1]} px but the frames are {h}×{w} px; "
            "give a surface of the frame size (DPMs are defined per camera pixel and are "
            "not resampled)"
        )
    out = np.array(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise InputError(f"{source} has {bad} non-finite value(s) (NaN/inf); fill them first")
    return out


SURFACE_KINDS: dict[str, tuple[str, ...]] = {
    "uniform": ("offset_um",),
    "tilted_plane": ("tilt_deg", "azimuth_deg", "gradient", "offset_um", "center"),
    "cylinder": ("radius_um", "axis_deg", "offset_um", "convex_towards_objective", "center"),
    "sinusoid": ("period_um", "amplitude_um", "direction_deg", "offset_um", "phase_deg"),
    "array": ("path",),
}
"""Surface kinds :func:`surface_from_spec` knows, with the parameters each accepts."""


def surface_from_spec(
    spec: dict[str, Any], shape: tuple[int, int], pixel_size_um: float
) -> np.ndarray:
    """Build a surface from a JSON-able description such as
    ``{"kind": "tilted_plane", "tilt_deg": 1.5, "azimuth_deg": 30}``.

    ``kind`` is one of :data:`SURFACE_KINDS`; the other keys are the builder's keyword
    arguments (``shape``/``pixel_size_um`` come from the call). ``{"kind": "array"}``
    describes a user array; it can only be rebuilt when it names a TIFF, as
    ``{"kind": "array", "path": "surface.tif"}``.
    """
    if not isinstance(spec, dict) or "kind" not in spec:
        raise InputError(
            f"a surface spec must be a dict with a 'kind' (one of {sorted(SURFACE_KINDS)}), "
            f"got {spec!r}"
        )
    kind = spec["kind"]
    if kind not in SURFACE_KINDS:
        raise InputError(f"unknown surface kind {kind!r}; known: {sorted(SURFACE_KINDS)}")
    params = {k: v for k, v in spec.items() if k != "kind"}
    unknown = sorted(set(params) - set(SURFACE_KINDS[kind]))
    if unknown:
        raise InputError(
            f"surface kind {kind!r} does not take {unknown}; it accepts {list(SURFACE_KINDS[kind])}"
        )
    for key in ("gradient", "center"):
        if isinstance(params.get(key), list):
            params[key] = tuple(params[key])
    try:
        if kind == "uniform":
            return uniform(shape, **params)
        if kind == "tilted_plane":
            return tilted_plane(shape, pixel_size_um, **params)
        if kind == "cylinder":
            return cylinder(shape, pixel_size_um, **params)
        if kind == "sinusoid":
            return sinusoid(shape, pixel_size_um, **params)
    except TypeError as exc:  # a required parameter is missing
        raise InputError(f"surface spec {spec!r}: {exc}") from None
    # kind == "array"
    if "path" not in params:
        raise InputError(
            "an 'array' surface spec carries no values; pass the array itself "
            "(StaticPlanePlan(offsets, surface_um=...)) or name a TIFF: "
            "{'kind': 'array', 'path': 'surface.tif'}"
        )
    return from_surface(params["path"], shape=shape)


# --------------------------------------------------------------------------- planes

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE_RE = re.compile(rf"^\s*({_NUMBER})\s*:\s*({_NUMBER})\s*:\s*({_NUMBER})\s*$")
_NUMBER_RE = re.compile(rf"^\s*({_NUMBER})\s*$")


def _expand_range(start: float, stop: float, step: float, spec: Any) -> np.ndarray:
    if not step > 0:
        raise InputError(f"planes {spec!r}: the step must be > 0, got {step:g}; {PLANES_FORMS}")
    if stop < start:
        raise InputError(f"planes {spec!r}: stop {stop:g} is below start {start:g}; {PLANES_FORMS}")
    # Count with a relative slack so that '-10:10:0.5' includes +10 despite rounding.
    n = math.floor((stop - start) / step + 1e-9) + 1
    if n > MAX_PLANES:
        raise InputError(f"planes {spec!r} gives {n} planes, more than {MAX_PLANES}")
    return start + step * np.arange(n, dtype=np.float64)


def parse_planes(spec: str | float | Sequence[float] | np.ndarray) -> np.ndarray:
    """Offsets (µm, float64, shape ``(K,)``) from a plane specification.

    Forms: ``"-10:10:0.5"`` (both ends included, 41 planes), ``"3"``, ``"-2,0,2.5"`` (items
    may themselves be ranges: ``"-4:-2:1,0,2:4:1"``), a number, or a list/tuple/array of
    numbers. Values are rounded to 1e-9 µm (so ``0.1 * 3`` prints as ``0.3``); duplicates
    are dropped, keeping the first occurrence and the given order. Empty or non-finite
    specifications raise :class:`InputError`.
    """
    pieces: list[np.ndarray] = []
    if isinstance(spec, str):
        items = spec.split(",")
        if not spec.strip() or any(not it.strip() for it in items):
            raise InputError(f"planes {spec!r}: empty item; {PLANES_FORMS}")
        for item in items:
            m = _RANGE_RE.match(item)
            if m:
                a, b, s = (float(g) for g in m.groups())
                pieces.append(_expand_range(a, b, s, spec))
                continue
            m = _NUMBER_RE.match(item)
            if not m:
                raise InputError(f"planes {spec!r}: cannot read {item.strip()!r}; {PLANES_FORMS}")
            pieces.append(np.array([float(m.group(1))]))
    else:
        if isinstance(spec, bool):
            raise InputError(f"planes {spec!r}: not a number; {PLANES_FORMS}")
        try:
            arr = np.asarray(spec)
        except Exception:
            raise InputError(f"planes {spec!r}: not a number or list; {PLANES_FORMS}") from None
        if arr.dtype.kind not in "iuf" or arr.ndim > 1:
            raise InputError(f"planes {spec!r}: not a number or flat list; {PLANES_FORMS}")
        pieces.append(arr.astype(np.float64).reshape(-1))
    values = np.concatenate(pieces) if pieces else np.zeros(0)
    if values.size == 0:
        raise InputError(f"planes {spec!r}: no planes; {PLANES_FORMS}")
    if not np.isfinite(values).all():
        raise InputError(f"planes {spec!r}: contains NaN or inf; {PLANES_FORMS}")
    if values.size > MAX_PLANES:
        raise InputError(f"planes {spec!r} gives {values.size} planes, more than {MAX_PLANES}")
    values = np.round(values, 9) + 0.0  # + 0.0 turns -0.0 into 0.0
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]


# --------------------------------------------------------------------------- network units


def to_network_units(
    dpm_um: ArrayLike, dpm_scale_um: float = DEFAULT_DPM_SCALE_UM, out: np.ndarray | None = None
) -> np.ndarray:
    """DPM in µm → the network's input channel, ``dpm_um / dpm_scale_um`` (float32).

    The paper divides by 10 µm so that ±10 µm maps to ±1. ``out`` (float32, same shape)
    avoids an allocation in a hot loop.
    """
    scale = np.float32(_positive("dpm_scale_um", dpm_scale_um))
    return np.divide(dpm_um, scale, out=out, dtype=np.float32)


def from_network_units(
    dpm_net: ArrayLike, dpm_scale_um: float = DEFAULT_DPM_SCALE_UM
) -> np.ndarray:
    """Inverse of :func:`to_network_units`: network units → µm (float32)."""
    scale = np.float32(_positive("dpm_scale_um", dpm_scale_um))
    return np.multiply(dpm_net, scale, dtype=np.float32)


# --------------------------------------------------------------------------- range


def _z_range(z_range_um: Any) -> tuple[float, float]:
    try:
        lo_raw, hi_raw = z_range_um
    except (TypeError, ValueError):
        raise InputError(
            f"the model's axial range must be (min_um, max_um), got {z_range_um!r}"
        ) from None
    lo, hi = _finite("axial range min", lo_raw), _finite("axial range max", hi_raw)
    if lo > hi:
        raise InputError(f"the model's axial range {z_range_um!r} has min > max")
    return lo, hi


def _check_bounds(lo: float, hi: float, z_range_um: Any, allow: bool, what: str) -> bool:
    zmin, zmax = _z_range(z_range_um)
    if lo >= zmin - RANGE_TOLERANCE_UM and hi <= zmax + RANGE_TOLERANCE_UM:
        return True
    outside = []
    if lo < zmin - RANGE_TOLERANCE_UM:
        outside.append(f"min {lo:+.4g} µm < {zmin:+.4g}")
    if hi > zmax + RANGE_TOLERANCE_UM:
        outside.append(f"max {hi:+.4g} µm > {zmax:+.4g}")
    msg = (
        f"{what} spans {lo:+.4g} … {hi:+.4g} µm ({', '.join(outside)}), outside the model's "
        f"trained axial range [{zmin:+.4g}, {zmax:+.4g}] µm, where Deep-Z is not valid"
    )
    if allow:
        warnings.warn(
            msg + "; extrapolating because out-of-range planes were allowed",
            OutOfRangeWarning,
            stacklevel=3,
        )
        return False
    raise DPMRangeError(
        msg + f"; choose planes within [{zmin:+.4g}, {zmax:+.4g}] µm, or pass "
        "--allow-out-of-range to extrapolate at your own risk"
    )


def check_range(
    dpm_um: ArrayLike, z_range_um: tuple[float, float], allow: bool = False, what: str = "DPM"
) -> bool:
    """Refuse a DPM (or offsets) that leaves the model's trained axial range.

    Parameters
    ----------
    dpm_um : array or number, µm.
    z_range_um : ``(min_um, max_um)`` of the model (e.g. ``(-10, 10)``); ends included with
        a tolerance of 1e-6 µm.
    allow : when True, emit :class:`OutOfRangeWarning` instead of raising.
    what : the name used in the message (``"DPM"``, ``"planes"``, …).

    Returns
    -------
    True when in range, False when out of range but allowed (after the warning).

    Raises
    ------
    DPMRangeError : out of range and not allowed; names the DPM's min/max, the model's range
        and the fix.
    InputError : the DPM is empty or holds NaN.
    """
    arr = _as_real_array(what, dpm_um)
    if arr.size == 0:
        raise InputError(f"{what} is empty")
    if np.isnan(arr).any():
        raise InputError(f"{what} contains NaN; a DPM must be finite everywhere")
    return _check_bounds(float(arr.min()), float(arr.max()), z_range_um, allow, what)


# --------------------------------------------------------------------------- smoothness

DEFAULT_MIN_PERIOD_UM = 32.0
"""Paper (Supp. Fig. S7): surfaces with lateral period > ~32 µm (100 px at 0.325 µm)
refocus cleanly; faster oscillations leave background ripple."""

DEFAULT_MIN_AMPLITUDE_UM = 0.1
"""A spectral component counts as significant from this amplitude (µm) on: a tenth of the
~1 µm native depth of field, far above float32 rounding and interpolation noise."""

_LOBE_HALF_WIDTH_BINS = 4
"""Half-width of the Blackman-Harris window's main lobe, in frequency bins."""

_MIN_RESOLVED_BINS = 2.0
"""A tone with fewer cycles than this across the field cannot be told from a smooth bend."""


def _blackman_harris(n: int) -> np.ndarray:
    """4-term Blackman-Harris window (−92 dB side lobes, main lobe ±4 bins)."""
    if n == 1:
        return np.ones(1)
    t = 2.0 * np.pi * np.arange(n) / (n - 1)
    return 0.35875 - 0.48829 * np.cos(t) + 0.14128 * np.cos(2 * t) - 0.01168 * np.cos(3 * t)


def smoothness_period_um(
    dpm_um: ArrayLike,
    pixel_size_um: float,
    min_amplitude_um: float = DEFAULT_MIN_AMPLITUDE_UM,
) -> float:
    """The shortest lateral period (µm) at which the DPM surface varies significantly.

    Method: subtract the least-squares plane (a tilt has no period), apply a 2D
    Blackman-Harris window (side lobes −92 dB, so a deep smooth surface does not leak into
    high frequencies) and take the FFT. Two thresholds, both set by ``min_amplitude_um``
    (default 0.1 µm, a tenth of the ~1 µm native depth of field):

    - *tonal*: a frequency bin is significant when its amplitude (calibrated so that a
      sinusoid of amplitude ``A`` µm peaks at ``A``) is ≥ ``min_amplitude_um``. From the
      significant bin of highest spatial frequency, climb uphill (at most the window's 4-bin
      main-lobe half-width) to the peak of its lobe and refine it by parabolic interpolation;
    - *broadband* (steps, noise, whose power is spread thinly over many bins): the highest
      radial frequency above which the surface's content still has an rms ≥
      ``min_amplitude_um / √2`` (that of such a sinusoid), moved down by the main lobe's
      radial half-width (4√2 bins) so that a strong tone is never counted twice.

    Returns ``1 / f`` for the higher of the two frequencies. For a sinusoidal surface this is
    its period (within ~1 % when it fits a few times in the field); for broadband content it
    is accurate to a few frequency bins (1 bin = 1 / field size). Returns ``inf`` for a
    plane, for a surface with no significant lateral variation, and for tones with fewer than
    2 cycles across the field (periods longer than half the field cannot be told from a
    smooth bend such as a cylinder: on small fields, < ~200 px, the check is therefore
    blind to periods between half the field and 32 µm).
    """
    z = np.asarray(_as_real_array("DPM", dpm_um), dtype=np.float64)
    if z.ndim != 2 or z.size == 0:
        raise InputError(f"the DPM must be a 2D (H, W) array, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise InputError("the DPM contains NaN or inf")
    px = _positive("pixel_size_um", pixel_size_um)
    thr = _positive("min_amplitude_um", min_amplitude_um)
    h, w = z.shape

    # Least-squares plane a + b·y + c·x, with centred coordinates (exactly separable).
    y = np.arange(h, dtype=np.float64) - (h - 1) / 2.0
    x = np.arange(w, dtype=np.float64) - (w - 1) / 2.0
    resid = z - z.mean()
    if h > 1:
        resid -= (y @ resid.sum(axis=1) / (w * (y @ y)))[None] * y[:, None]
    if w > 1:
        resid -= (resid.sum(axis=0) @ x / (h * (x @ x))) * x[None, :]

    win = np.outer(_blackman_harris(h), _blackman_harris(w))
    from scipy import fft as sfft

    mag = sfft.fftshift(np.abs(sfft.fft2((resid * win).astype(np.float32)))).astype(np.float64)
    amp = mag * (2.0 / win.sum())  # (H, W) µm per bin, DC at (h//2, w//2)
    cy, cx = h // 2, w // 2
    fy = (np.arange(h) - cy) / (h * px)  # cycles per µm
    fx = (np.arange(w) - cx) / (w * px)
    fr = np.hypot(fy[:, None], fx[None, :])
    amp[cy, cx] = 0.0  # the mean carries no period

    # Broadband content (steps, noise) spreads over many bins, each below the threshold:
    # find the highest radial frequency above which the content's rms still reaches that
    # of a sinusoid of amplitude `thr`, then step back by the window's main lobe so a strong
    # tone's lobe is never mistaken for broadband content.
    power = mag**2 / (h * w * float((win**2).sum()))  # sums to the residual's mean square
    power[cy, cx] = 0.0
    df = 1.0 / (max(h, w) * px)
    ring = np.minimum((fr / df).astype(np.int64), int(fr.max() / df))
    tail = np.cumsum(np.bincount(ring.ravel(), weights=power.ravel())[::-1])[::-1]
    above = np.nonzero(tail >= 0.5 * thr * thr)[0]
    f_broad = 0.0
    if above.size:
        lobe = _LOBE_HALF_WIDTH_BINS * math.sqrt(2.0) / (min(h, w) * px)
        f_broad = max(float(above[-1]) * df - lobe, 0.0)

    sig = amp >= thr
    if not sig.any():
        return math.inf if f_broad <= 0 else 1.0 / f_broad

    # Highest-frequency significant bin, then uphill to the peak of its lobe.
    start = np.unravel_index(int(np.argmax(np.where(sig, fr, -1.0))), amp.shape)
    iy, ix = int(start[0]), int(start[1])
    y0, x0 = iy, ix
    for _ in range(4 * _LOBE_HALF_WIDTH_BINS):
        y_lo, x_lo = max(iy - 1, 0), max(ix - 1, 0)
        patch = amp[y_lo : min(iy + 2, h), x_lo : min(ix + 2, w)]
        k = np.unravel_index(int(np.argmax(patch)), patch.shape)
        ny, nx = y_lo + int(k[0]), x_lo + int(k[1])
        inside = abs(ny - y0) <= _LOBE_HALF_WIDTH_BINS and abs(nx - x0) <= _LOBE_HALF_WIDTH_BINS
        if (ny, nx) == (iy, ix) or not inside or amp[ny, nx] <= amp[iy, ix]:
            break
        iy, ix = ny, nx

    def _refine(a_m: float, a_0: float, a_p: float) -> float:
        lm, l0, lp = (math.log(v + 1e-30) for v in (a_m, a_0, a_p))
        den = lm - 2.0 * l0 + lp
        return 0.0 if den >= 0 else float(np.clip(0.5 * (lm - lp) / den, -0.5, 0.5))

    dyb = _refine(amp[iy - 1, ix], amp[iy, ix], amp[iy + 1, ix]) if 0 < iy < h - 1 else 0.0
    dxb = _refine(amp[iy, ix - 1], amp[iy, ix], amp[iy, ix + 1]) if 0 < ix < w - 1 else 0.0
    f_tonal = math.hypot((iy + dyb - cy) / (h * px), (ix + dxb - cx) / (w * px))
    if math.hypot(iy + dyb - cy, ix + dxb - cx) < _MIN_RESOLVED_BINS:
        f_tonal = 0.0  # fewer than 2 cycles across the field: a smooth bend, not a ripple
    f = max(f_tonal, f_broad)
    return math.inf if f < 1e-12 else 1.0 / f


def check_smoothness(
    dpm_um: ArrayLike,
    pixel_size_um: float,
    min_period_um: float = DEFAULT_MIN_PERIOD_UM,
    min_amplitude_um: float = DEFAULT_MIN_AMPLITUDE_UM,
) -> str | None:
    """A warning (str) when the DPM varies faster than the paper's validated limit, else None.

    The paper found that surfaces with lateral period > ~32 µm (100 px at 0.325 µm) refocus
    cleanly, while faster oscillations leave background ripple at those frequencies and their
    harmonics. See :func:`smoothness_period_um` for how the period is measured.
    """
    limit = _positive("min_period_um", min_period_um)
    period = smoothness_period_um(dpm_um, pixel_size_um, min_amplitude_um)
    if period >= limit:
        return None
    px = float(pixel_size_um)
    return (
        f"the DPM surface varies with a lateral period of ~{period:.3g} µm "
        f"(~{period / px:.0f} px), shorter than {limit:.3g} µm: Deep-Z refocuses surfaces with "
        f"periods > ~{limit:.3g} µm cleanly, faster variations leave background ripple; "
        "smooth the surface (e.g. a Gaussian blur of several µm) for artefact-free output"
    )


# --------------------------------------------------------------------------- plane plans


@runtime_checkable
class PlanePlan(Protocol):
    """What the live engine asks for the DPMs of each frame.

    A static plan returns the same planes every frame; a dynamic one (drift compensation)
    may change them with ``frame_index``/``timestamp_ms``. The number of planes ``K`` is
    fixed for the life of a plan.
    """

    offsets_um: np.ndarray
    """``(K,)`` nominal offset of each plane (µm), for labels and metadata."""

    def dpms_for_frame(
        self, frame_index: int, timestamp_ms: float, shape: tuple[int, int]
    ) -> np.ndarray:
        """``(K, H, W)`` float32 DPMs in µm for this frame (treat as read-only)."""
        ...

    def describe(self) -> dict[str, Any]:
        """A JSON-able definition of the plan, stored in recordings."""
        ...


class StaticPlanePlan:
    """``K`` fixed planes: plane ``k`` is ``surface_um + offsets_um[k]``.

    Parameters
    ----------
    offsets_um : anything :func:`parse_planes` accepts (``"-10:10:0.5"``, a list, …).
    surface_um : optional base surface ``(H, W)`` in µm (e.g. a tilt correction); without
        it every plane is uniform and the plan serves any frame size.
    surface_spec : a JSON-able description of ``surface_um`` for :meth:`describe` (as built
        by :meth:`from_spec`); defaults to ``{"kind": "array"}`` when a surface is given.

    :meth:`dpms_for_frame` builds the ``(K, H, W)`` float32 array once per frame shape
    (``K·H·W·4`` bytes; the last few shapes are kept) and then returns the *same* array every
    frame, marked read-only: copy it into your own buffer, never write to it.
    """

    _MAX_CACHED_SHAPES = 4

    def __init__(
        self,
        offsets_um: str | float | Sequence[float] | np.ndarray,
        surface_um: ArrayLike | None = None,
        *,
        surface_spec: dict[str, Any] | None = None,
    ) -> None:
        offsets = parse_planes(offsets_um)
        offsets.flags.writeable = False
        self.offsets_um: np.ndarray = offsets
        self.surface_um: np.ndarray | None = None
        if surface_um is not None:
            surf = from_surface(surface_um)
            surf.flags.writeable = False
            self.surface_um = surf
            spec = dict(surface_spec) if surface_spec is not None else {"kind": "array"}
            _ensure_json("surface_spec", spec)
            self._surface_spec: dict[str, Any] | None = spec
        elif surface_spec is not None:
            raise InputError("surface_spec describes a surface, but no surface_um was given")
        else:
            self._surface_spec = None
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_spec(
        cls,
        offsets: str | float | Sequence[float] | np.ndarray,
        surface_spec: dict[str, Any] | None,
        shape: tuple[int, int],
        pixel_size_um: float,
    ) -> StaticPlanePlan:
        """A plan from plane offsets and a surface description (see :func:`surface_from_spec`).

        ``StaticPlanePlan.from_spec(d["offsets_um"], d["surface"], shape, px)`` rebuilds a
        plan from its :meth:`describe` output ``d``.
        """
        if surface_spec is None:
            return cls(offsets)
        surface = surface_from_spec(surface_spec, shape, pixel_size_um)
        return cls(offsets, surface, surface_spec=surface_spec)

    @property
    def num_planes(self) -> int:
        return int(self.offsets_um.size)

    def _surface_for(self, shape: tuple[int, int]) -> np.ndarray | None:
        if self.surface_um is not None and self.surface_um.shape != shape:
            raise InputError(
                f"the plan's surface is {self.surface_um.shape[0]}×{self.surface_um.shape[1]} "
                f"px but the frames are {shape[0]}×{shape[1]} px; rebuild the plan for this "
                "frame size (camera ROI/binning changed?)"
            )
        return self.surface_um

    def dpms_for_frame(
        self, frame_index: int, timestamp_ms: float, shape: tuple[int, int]
    ) -> np.ndarray:
        """``(K, H, W)`` float32 µm, the same read-only array for every frame of a shape."""
        key = _check_shape(shape)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            surface = self._surface_for(key)
            dpms = np.empty((self.num_planes, *key), dtype=np.float32)
            for k, off in enumerate(self.offsets_um):
                if surface is None:
                    dpms[k].fill(off)
                else:
                    np.add(surface, np.float32(off), out=dpms[k])
            dpms.flags.writeable = False
            self._cache[key] = dpms
            while len(self._cache) > self._MAX_CACHED_SHAPES:
                self._cache.popitem(last=False)
            return dpms

    def bounds_um(self, shape: tuple[int, int] | None = None) -> tuple[float, float]:
        """Smallest and largest DPM value over all planes (without building them)."""
        if shape is not None:
            self._surface_for(_check_shape(shape))
        lo, hi = float(self.offsets_um.min()), float(self.offsets_um.max())
        if self.surface_um is not None:
            lo += float(self.surface_um.min())
            hi += float(self.surface_um.max())
        return lo, hi

    def check_range(
        self, z_range_um: tuple[float, float], shape: tuple[int, int], allow: bool = False
    ) -> bool:
        """:func:`check_range` over every plane (surface + offsets) of this plan."""
        lo, hi = self.bounds_um(shape)
        what = "planes" if self.surface_um is None else "planes (surface + offsets)"
        return _check_bounds(lo, hi, z_range_um, allow, what)

    def check_smoothness(
        self, pixel_size_um: float, min_period_um: float = DEFAULT_MIN_PERIOD_UM
    ) -> str | None:
        """:func:`check_smoothness` of the base surface (uniform planes are always smooth)."""
        if self.surface_um is None:
            return None
        return check_smoothness(self.surface_um, pixel_size_um, min_period_um)

    def describe(self) -> dict[str, Any]:
        """``{"type": "static", "offsets_um": [...], "surface": None | {"kind": ..., ...}}``."""
        return {
            "type": "static",
            "offsets_um": [float(v) for v in self.offsets_um],
            "surface": json.loads(json.dumps(self._surface_spec)),
        }

    def __repr__(self) -> str:
        o = self.offsets_um
        surface = None if self._surface_spec is None else self._surface_spec.get("kind")
        return f"StaticPlanePlan({o.size} planes {o.min():+g}…{o.max():+g} µm, surface={surface})"


def _ensure_json(name: str, obj: Any) -> None:
    try:
        json.dumps(obj, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be JSON-able (numbers, strings, lists): {exc}") from None
