"""Reference refocus functions for tests and benchmarks: **physics oracles, not models**.

The calibration logic (focus sweeps, surface fits, drift tracking) only needs a
:data:`~live_deepz.calibration.RefocusFn`. To test that logic exactly, independently of how
well a trained network refocuses, these oracles *re-render the known scene* at the requested
planes instead of running a network:

- :class:`GaussianBeamScene` — **test-only synthetic stand-in**: point emitters (beads,
  neurons) imaged with a Gaussian-beam defocus model (width ``σ(δ) = σ0·sqrt(1 + (δ/zR)²)``,
  energy conserved). It is symmetric in ±defocus (unlike a real PSF, see METHOD.md), which is
  irrelevant here: the oracle is told the refocus offset, it never has to infer its sign.
  Cheap (separable per-point windows), so unit tests stay fast.
- :class:`PlaneRenderOracle` — wraps any ``render_plane(focus_z_um) -> (H, W)`` callable,
  e.g. the simulator's ``lambda z: Renderer(optics, shape).render_plane(sample, z)``; a
  non-uniform DPM is composed per pixel from planes rendered every ``level_step_um``
  (linear interpolation between the two nearest), i.e. an *ideal* Deep-Z.

Both follow the calibration's sign convention: refocusing by offset ``o`` gives the image
focused at ``focus_z_um + o``; a point at depth ``z`` (deeper = larger) is sharpest at
``o = z − focus_z_um``.

A refocus call may receive a *crop* of the last input frame (the drift estimator sweeps a
reduced frame): the oracle finds the crop inside the last frame it rendered with
``input_image()`` or was given with ``set_input()`` (exact match) and renders that window.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from live_deepz import dpm as dpm_mod
from live_deepz.errors import InputError

__all__ = [
    "GaussianBeamScene",
    "PlaneRenderOracle",
    "cylinder_bead_scene",
    "random_points",
    "tilted_bead_scene",
    "worm_scene",
]


class _OracleBase:
    """Shared crop location, range check and input rendering."""

    shape: tuple[int, int]
    pixel_size_um: float
    focus_z_um: float
    z_range_um: tuple[float, float] | None
    noise_std: float
    refocus_noise_std: float
    _last_input: np.ndarray | None
    _rng: np.random.Generator

    def render(
        self, plane_um: float | np.ndarray, origin: tuple[int, int] = (0, 0), shape: Any = None
    ) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def input_image(self) -> np.ndarray:
        """The camera frame at the current focus (plus ``noise_std`` Gaussian noise)."""
        img = self.render(0.0)
        if self.noise_std > 0:
            img = img + self._rng.normal(0.0, self.noise_std, img.shape).astype(np.float32)
        img = img.astype(np.float32)
        self._last_input = img
        return img

    def set_input(self, image: np.ndarray) -> np.ndarray:
        """Declare ``image`` the current input frame (crops are located in it); returns it."""
        self._last_input = np.asarray(image)
        return self._last_input

    def _locate(self, image: np.ndarray) -> tuple[int, int]:
        if tuple(image.shape) == tuple(self.shape):
            return 0, 0
        last = self._last_input
        if last is None:
            raise InputError(
                "the oracle got a crop but has rendered no full frame to find it in; "
                "call input_image() first"
            )
        h, w = image.shape
        iy, ix = np.unravel_index(int(np.argmax(image)), image.shape)
        for y, x in np.argwhere(last == image[iy, ix]):
            y0, x0 = int(y) - int(iy), int(x) - int(ix)
            inside = 0 <= y0 <= last.shape[0] - h and 0 <= x0 <= last.shape[1] - w
            if inside and np.array_equal(last[y0 : y0 + h, x0 : x0 + w], image):
                return y0, x0
        raise InputError("the oracle cannot find this crop in its last input frame")

    def __call__(self, image: np.ndarray, dpms_um: np.ndarray) -> np.ndarray:
        """The :data:`RefocusFn`: ``(H, W)`` image, ``(K, H, W)`` DPMs (µm) → ``(K, H, W)``."""
        image = np.asarray(image)
        dpms = np.asarray(dpms_um, dtype=np.float32)
        if dpms.ndim != 3 or dpms.shape[1:] != image.shape:
            raise InputError(f"DPMs {dpms.shape} do not match the image {image.shape}")
        if self.z_range_um is not None:
            dpm_mod.check_range(dpms, self.z_range_um, what="oracle DPMs")
        origin = self._locate(image)
        out = np.empty(dpms.shape, dtype=np.float32)
        for k in range(dpms.shape[0]):
            d = dpms[k]
            lo, hi = float(d.min()), float(d.max())
            plane: float | np.ndarray = lo if hi - lo < 1e-6 else d
            out[k] = self.render(plane, origin, image.shape)
        if self.refocus_noise_std > 0:
            out += self._rng.normal(0.0, self.refocus_noise_std, out.shape).astype(np.float32)
        return out


class GaussianBeamScene(_OracleBase):
    """TEST-ONLY synthetic scene: point emitters under a Gaussian-beam defocus model.

    Parameters
    ----------
    shape, pixel_size_um : the camera frame.
    points_yx_px : ``(N, 2)`` emitter positions (pixels, full frame).
    z_um : ``(N,)`` emitter depths (µm; deeper = larger).
    amplitude : ``(N,)`` or scalar, peak value of an in-focus emitter.
    sigma0_um : in-focus Gaussian σ (0.41 µm → FWHM 0.96 µm, the paper's in-focus median).
    rayleigh_um : defocus at which the area doubles (~ native depth of field).
    noise_std : Gaussian noise added to :meth:`input_image`.
    refocus_noise_std : Gaussian noise added to every refocused plane (a network's output
        is not noise-free either).
    z_range_um : the emulated model's axial range (refocus calls outside it raise
        :class:`~live_deepz.errors.DPMRangeError`, as a real model would); ``None`` = unlimited.

    ``sample_shift_um`` moves the whole sample in z (drift); ``focus_z_um`` is the
    camera's focal plane.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        pixel_size_um: float,
        points_yx_px: np.ndarray,
        z_um: np.ndarray,
        amplitude: float | np.ndarray = 1.0,
        *,
        sigma0_um: float = 0.41,
        rayleigh_um: float = 1.0,
        noise_std: float = 0.0,
        refocus_noise_std: float = 0.0,
        z_range_um: tuple[float, float] | None = (-10.0, 10.0),
        seed: int = 0,
    ) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.pixel_size_um = float(pixel_size_um)
        self.points_yx_px = np.asarray(points_yx_px, dtype=np.float64).reshape(-1, 2)
        self.z_um = np.asarray(z_um, dtype=np.float64).reshape(-1)
        self.amplitude = np.broadcast_to(
            np.asarray(amplitude, dtype=np.float64), self.z_um.shape
        ).copy()
        self.sigma0_um = float(sigma0_um)
        self.rayleigh_um = float(rayleigh_um)
        self.noise_std = float(noise_std)
        self.refocus_noise_std = float(refocus_noise_std)
        self.z_range_um = z_range_um
        self.sample_shift_um = 0.0
        self.focus_z_um = 0.0
        self._rng = np.random.default_rng(seed)
        self._last_input = None

    def true_focus_um(self) -> np.ndarray:
        """``(N,)`` refocus offset that brings each emitter into focus."""
        return self.z_um + self.sample_shift_um - self.focus_z_um

    def render(
        self, plane_um: float | np.ndarray, origin: tuple[int, int] = (0, 0), shape: Any = None
    ) -> np.ndarray:
        """Noise-free image focused at ``focus_z_um + plane_um`` (scalar or ``(h, w)`` DPM)
        over the window of size ``shape`` (default: the frame) starting at ``origin``."""
        h, w = self.shape if shape is None else (int(shape[0]), int(shape[1]))
        y0, x0 = origin
        out = np.zeros((h, w), dtype=np.float64)
        yx = self.points_yx_px - np.array([y0, x0], dtype=np.float64)
        if np.ndim(plane_um) == 0:
            planes = np.full(len(self.z_um), float(plane_um))  # type: ignore[arg-type]
        else:
            arr = np.asarray(plane_um, dtype=np.float64)
            iy = np.clip(np.rint(yx[:, 0]).astype(int), 0, h - 1)
            ix = np.clip(np.rint(yx[:, 1]).astype(int), 0, w - 1)
            planes = arr[iy, ix]
        defocus = self.z_um + self.sample_shift_um - (self.focus_z_um + planes)
        s0 = self.sigma0_um / self.pixel_size_um
        s2 = s0 * s0 * (1.0 + (defocus / self.rayleigh_um) ** 2)
        peak = self.amplitude * (s0 * s0) / s2
        for i in range(len(self.z_um)):
            cy, cx = yx[i]
            r = math.ceil(4.0 * math.sqrt(s2[i])) + 1
            ylo, yhi = max(int(cy) - r, 0), min(int(cy) + r + 1, h)
            xlo, xhi = max(int(cx) - r, 0), min(int(cx) + r + 1, w)
            if ylo >= yhi or xlo >= xhi:
                continue
            gy = np.exp(-((np.arange(ylo, yhi) - cy) ** 2) / (2.0 * s2[i]))
            gx = np.exp(-((np.arange(xlo, xhi) - cx) ** 2) / (2.0 * s2[i]))
            out[ylo:yhi, xlo:xhi] += peak[i] * np.outer(gy, gx)
        return out.astype(np.float32)


class PlaneRenderOracle(_OracleBase):
    """An ideal refocus fn from any ``render_plane(focus_z_um) -> (H, W)`` callable.

    Uniform DPMs render one plane; a non-uniform DPM is composed per pixel from planes
    rendered every ``level_step_um`` over its range (linear interpolation). ``normalize``
    (e.g. ``Normalization.apply``) maps the renderer's units to the normalised units the
    calibration works in; it is applied to inputs and outputs alike.
    """

    def __init__(
        self,
        render_plane: Callable[[float], np.ndarray],
        shape: tuple[int, int],
        pixel_size_um: float,
        *,
        normalize: Callable[[np.ndarray], np.ndarray] | None = None,
        level_step_um: float = 0.25,
        noise_std: float = 0.0,
        refocus_noise_std: float = 0.0,
        z_range_um: tuple[float, float] | None = (-10.0, 10.0),
        seed: int = 0,
    ) -> None:
        self._render_plane = render_plane
        self.shape = (int(shape[0]), int(shape[1]))
        self.pixel_size_um = float(pixel_size_um)
        self._normalize = normalize
        self.level_step_um = float(level_step_um)
        self.noise_std = float(noise_std)
        self.refocus_noise_std = float(refocus_noise_std)
        self.z_range_um = z_range_um
        self.focus_z_um = 0.0
        self._rng = np.random.default_rng(seed)
        self._last_input = None

    def _plane(self, z: float) -> np.ndarray:
        img = np.asarray(self._render_plane(float(z)), dtype=np.float32)
        return np.asarray(self._normalize(img) if self._normalize else img, dtype=np.float32)

    def render(
        self, plane_um: float | np.ndarray, origin: tuple[int, int] = (0, 0), shape: Any = None
    ) -> np.ndarray:
        h, w = self.shape if shape is None else (int(shape[0]), int(shape[1]))
        y0, x0 = origin
        win = (slice(y0, y0 + h), slice(x0, x0 + w))
        if np.ndim(plane_um) == 0:
            return self._plane(self.focus_z_um + float(plane_um))[win]  # type: ignore[arg-type]
        d = np.asarray(plane_um, dtype=np.float64)
        step = self.level_step_um
        lo = math.floor(float(d.min()) / step)
        hi = math.ceil(float(d.max()) / step)
        levels = np.arange(lo, hi + 1) * step
        out = np.zeros((h, w), dtype=np.float64)
        pos = (d - levels[0]) / step  # fractional level index per pixel
        for j, z in enumerate(levels):
            weight = np.clip(1.0 - np.abs(pos - j), 0.0, 1.0)
            if weight.any():
                out += weight * self._plane(self.focus_z_um + float(z))[win]
        return out.astype(np.float32)


# --------------------------------------------------------------------------- scenes


def random_points(
    shape: tuple[int, int], n: int, min_separation_px: float, seed: int = 0, margin_px: int = 0
) -> np.ndarray:
    """``(n', 2)`` random ``(y, x)`` positions at least ``min_separation_px`` apart
    (dart throwing; fewer than ``n`` when the field is full)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    pts: list[np.ndarray] = []
    tries = 0
    while len(pts) < n and tries < 50 * n:
        tries += 1
        p = rng.uniform([margin_px, margin_px], [h - 1 - margin_px, w - 1 - margin_px])
        if all(np.hypot(*(p - q)) >= min_separation_px for q in pts):
            pts.append(p)
    return np.array(pts).reshape(-1, 2)


def _sample_surface(surface: np.ndarray, yx: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return np.asarray(ndimage.map_coordinates(surface.astype(np.float64), yx.T, order=1))


def tilted_bead_scene(
    shape: tuple[int, int] = (128, 128),
    pixel_size_um: float = 0.325,
    tilt_deg: float = 1.5,
    azimuth_deg: float = 0.0,
    offset_um: float = 0.0,
    n_beads: int = 40,
    min_separation_px: float = 12.0,
    seed: int = 0,
    **kwargs: Any,
) -> GaussianBeamScene:
    """Beads on a tilted plane (``dpm.tilted_plane`` convention) — test-only scene."""
    pts = random_points(shape, n_beads, min_separation_px, seed)
    surf = dpm_mod.tilted_plane(shape, pixel_size_um, tilt_deg, azimuth_deg, offset_um=offset_um)
    return GaussianBeamScene(
        shape, pixel_size_um, pts, _sample_surface(surf, pts), seed=seed, **kwargs
    )


def cylinder_bead_scene(
    shape: tuple[int, int] = (256, 256),
    pixel_size_um: float = 0.325,
    radius_um: float = 3600.0,
    axis_deg: float = 0.0,
    offset_um: float = 0.0,
    center: tuple[float, float] | None = None,
    n_beads: int = 80,
    min_separation_px: float = 12.0,
    seed: int = 0,
    **kwargs: Any,
) -> GaussianBeamScene:
    """Beads on a cylinder (``dpm.cylinder`` convention, convex towards the objective)."""
    pts = random_points(shape, n_beads, min_separation_px, seed)
    surf = dpm_mod.cylinder(
        shape, pixel_size_um, radius_um, axis_deg, offset_um=offset_um, center=center
    )
    return GaussianBeamScene(
        shape, pixel_size_um, pts, _sample_surface(surf, pts), seed=seed, **kwargs
    )


def worm_scene(
    shape: tuple[int, int] = (96, 96),
    pixel_size_um: float = 0.325,
    n_neurons: int = 40,
    depth_spread_um: float = 0.3,
    seed: int = 0,
    **kwargs: Any,
) -> GaussianBeamScene:
    """Neuron-like points along a curved band (a worm), nearly one focal layer thick."""
    rng = np.random.default_rng(seed)
    h, w = shape
    t = rng.uniform(0.1, 0.9, n_neurons)
    y = h * (0.5 + 0.25 * np.sin(2.0 * np.pi * t)) + rng.normal(0, 0.04 * h, n_neurons)
    x = w * t + rng.normal(0, 0.02 * w, n_neurons)
    pts = np.stack([np.clip(y, 2, h - 3), np.clip(x, 2, w - 3)], axis=1)
    z = rng.normal(0.0, depth_spread_um, n_neurons)
    amp = rng.uniform(0.5, 1.0, n_neurons)
    return GaussianBeamScene(shape, pixel_size_um, pts, z, amp, seed=seed, **kwargs)


def sweep_truth(scene: GaussianBeamScene, offsets: Sequence[float]) -> np.ndarray:
    """``(K, H, W)`` stack of the scene at ``offsets`` (for checks and debugging)."""
    return np.stack([scene.render(float(o)) for o in offsets])
