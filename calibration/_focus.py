"""Focus estimation from a *virtual* focus sweep: where is the sample in focus?

Everything here is built on a :data:`RefocusFn` — ``(H, W)`` normalised image and
``(K, H, W)`` DPMs in µm → ``(K, H, W)`` refocused planes. In use it is the Deep-Z engine
(:func:`engine_refocus_fn`); in tests and benchmarks a physics oracle that re-renders the
known scene (:mod:`live_deepz.calibration.testing`), so the logic is tested exactly,
independent of model quality.

**Sign convention** (as :mod:`live_deepz.dpm`): refocusing by offset ``o`` shows the plane
``o`` µm deeper than the input's focal plane, so an object that is sharpest at ``o*`` lies
``o*`` µm deeper than the focal plane and ``o*`` is exactly the DPM value that brings it
into focus. A :class:`FocusMap`'s ``z_um`` are such DPM values.

Two estimators, both streaming over the sweep (one plane in memory at a time, so a
2048² frame with 41 planes needs a few frame-sized arrays, not a 41-plane stack):

- :func:`estimate_focus_beads` (sparse point-like samples, e.g. the paper's 300 nm beads):
  every plane is lightly smoothed (Gaussian, ``smooth_px``) and, per pixel, the plane of
  maximum intensity and its two neighbours are tracked. Beads are detected on the maximum
  projection of the sweep — where every bead is in focus, however far it was defocused in
  the input — by a threshold, connected components, and rejection of clusters, beads near
  the image edge and crowded beads. Each bead's focus is the vertex of a parabola through
  the log intensities of the best plane and its neighbours at the bead's peak pixel (exact
  for a Gaussian-shaped focus curve, sub-step for real ones). Beads whose maximum is at an
  end of the sweep are rejected (focus outside the sweep), and so are beads the *input* has
  no light for: a refocused bead at ``z`` must come from a defocused spot whose photons lie
  within about ``|z|`` µm of it, so the background-subtracted input flux in that window must
  stand above the input's noise (``flux_snr_min``). A trained network can paint faint
  spots from nothing at some DPMs (measured: about half the candidates of a simulated
  tilted slide with the session-5 model); photons cannot be invented.
- :func:`estimate_focus_tiles` (extended samples: tissue, cells, worms): a tile grid, a focus
  measure per tile and plane (Brenner gradient, variance or normalised variance), and the
  same sub-step parabola on each tile's focus curve; flat curves (no structure) are
  rejected.

Confidence: the parabola vertex's standard deviation ``σz`` is propagated from the
measurement noise; ``confidence = σref² / (σref² + σz²)`` with ``σref`` =
:data:`REFERENCE_STD_UM` (0.1 µm), so 1 = precise, 0.5 = ±0.1 µm, → 0 = unreliable. The
surface fit uses it as the weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from live_deepz import dpm as dpm_mod
from live_deepz.errors import InputError

__all__ = [
    "DEFAULT_SWEEP",
    "FOCUS_MEASURES",
    "REFERENCE_STD_UM",
    "EngineRefocus",
    "FocusMap",
    "ProgressFn",
    "RefocusFn",
    "engine_refocus_fn",
    "estimate_focus",
    "estimate_focus_beads",
    "estimate_focus_tiles",
    "focus_measure",
    "parabola_peak",
    "sweep_offsets",
    "virtual_sweep",
]

RefocusFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``refocus(image_norm (H, W) float32, dpms_um (K, H, W) float32) -> (K, H, W) float32``.

An object may also carry ``z_range_um = (min, max)``: the calibration then never asks for
planes outside it (the engine's :class:`EngineRefocus` does)."""

ProgressFn = Callable[[float, str], None]
"""``progress(fraction in [0, 1], message)``; called from the calibrating thread."""

DEFAULT_SWEEP = "-10:10:0.5"
"""The paper's virtual stack: −10…+10 µm in 0.5 µm steps (41 planes)."""

REFERENCE_STD_UM = 0.1
"""Focus precision (µm) at which ``confidence`` is 0.5."""

FOCUS_MEASURES = ("brenner", "variance", "normvar")
"""Tile/frame focus measures: Brenner gradient (default; the sharpest peak), intensity
variance, and variance / mean (Groen's normalised variance)."""


# --------------------------------------------------------------------------- results


@dataclass
class FocusMap:
    """Focus positions measured at points of the image.

    ``z_um[i]`` is the DPM value (µm, + = deeper) that brings the sample into focus at
    ``points_yx_px[i]`` (pixels, ``(row, column)``, full frame).
    """

    points_yx_px: np.ndarray
    """``(N, 2)`` float64 pixel positions (bead centres or tile centres)."""
    z_um: np.ndarray
    """``(N,)`` in-focus offset (µm)."""
    confidence: np.ndarray
    """``(N,)`` in (0, 1]: ``σref² / (σref² + σz²)``, the fit weight."""
    method: str
    """``"beads"`` or ``"tiles"``."""
    shape: tuple[int, int] | None = None
    """Frame shape ``(H, W)`` the points refer to."""
    pixel_size_um: float | None = None
    z_std_um: np.ndarray | None = None
    """``(N,)`` estimated standard deviation of ``z_um``."""
    info: dict[str, Any] = field(default_factory=dict)
    """JSON-able details: sweep, measure, counts of rejected candidates by reason."""
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    """Images for display (not serialised): ``"max_projection"``, ``"focus_index"``."""

    def __post_init__(self) -> None:
        self.points_yx_px = np.asarray(self.points_yx_px, dtype=np.float64).reshape(-1, 2)
        n = len(self.points_yx_px)
        self.z_um = np.asarray(self.z_um, dtype=np.float64).reshape(-1)
        self.confidence = np.asarray(self.confidence, dtype=np.float64).reshape(-1)
        if self.z_std_um is not None:
            self.z_std_um = np.asarray(self.z_std_um, dtype=np.float64).reshape(-1)
        for name in ("z_um", "confidence"):
            if len(getattr(self, name)) != n:
                raise InputError(
                    f"FocusMap: {name} has {len(getattr(self, name))} values, need {n}"
                )

    def __len__(self) -> int:
        return len(self.z_um)

    def select(self, mask: np.ndarray) -> FocusMap:
        """The subset of points where ``mask`` is true."""
        m = np.asarray(mask, dtype=bool)
        return FocusMap(
            self.points_yx_px[m],
            self.z_um[m],
            self.confidence[m],
            self.method,
            self.shape,
            self.pixel_size_um,
            None if self.z_std_um is None else self.z_std_um[m],
            dict(self.info),
            dict(self.arrays),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "shape": None if self.shape is None else [int(v) for v in self.shape],
            "pixel_size_um": self.pixel_size_um,
            "points_yx_px": np.round(self.points_yx_px, 3).tolist(),
            "z_um": np.round(self.z_um, 5).tolist(),
            "confidence": np.round(self.confidence, 5).tolist(),
            "z_std_um": None if self.z_std_um is None else np.round(self.z_std_um, 5).tolist(),
            "info": self.info,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FocusMap:
        return cls(
            np.array(d["points_yx_px"], dtype=np.float64).reshape(-1, 2),
            np.array(d["z_um"], dtype=np.float64),
            np.array(d["confidence"], dtype=np.float64),
            d["method"],
            None if d.get("shape") is None else (int(d["shape"][0]), int(d["shape"][1])),
            d.get("pixel_size_um"),
            None if d.get("z_std_um") is None else np.array(d["z_std_um"], dtype=np.float64),
            dict(d.get("info", {})),
        )


# --------------------------------------------------------------------------- the engine


class EngineRefocus:
    """The Deep-Z engine as a :data:`RefocusFn` (built by :func:`engine_refocus_fn`).

    A lazily built :class:`live_deepz.engine.Refocuser`: it converts µm to network units
    with the card's ``dpm_scale_um``, refuses DPMs outside the card's ``z_range_um``
    (:class:`~live_deepz.errors.DPMRangeError`), and runs the backend in chunks of at most
    ``max_planes`` planes of a fixed size (the last chunk is padded, so the backend is
    prepared once per frame shape). The backend is created on first use.
    """

    def __init__(
        self,
        model: Any,
        backend: str = "auto",
        *,
        precision: str = "auto",
        device: str = "auto",
        max_planes: int = 8,
        allow_out_of_range: bool = False,
    ) -> None:
        from live_deepz.modelfile import LoadedModel, load_model, resolve_model

        if not isinstance(model, LoadedModel):
            dev = "cpu" if device == "auto" else device
            model = load_model(resolve_model(model), device=dev)
        self.model = model
        card = model.card
        self.z_range_um: tuple[float, float] = (
            float(card.z_range_um[0]),
            float(card.z_range_um[1]),
        )
        self.dpm_scale_um = float(card.dpm_scale_um)
        self.pixel_size_um = float(card.optics["pixel_size_um"])
        self.backend_name = backend
        self.precision = precision
        self.device = device
        if int(max_planes) < 1:
            raise InputError(f"max_planes must be >= 1, got {max_planes}")
        self.max_planes = int(max_planes)
        self.allow_out_of_range = bool(allow_out_of_range)
        self._refocuser: Any = None

    @property
    def refocuser(self) -> Any:
        """The engine's :class:`~live_deepz.engine.Refocuser` (built on first use)."""
        if self._refocuser is None:
            from live_deepz.engine import Refocuser, create_backend  # lazy: torch/engine

            backend = create_backend(
                self.backend_name,
                self.model.generator,
                precision=self.precision,
                device=self.device,
            )
            self._refocuser = Refocuser(
                self.model,
                backend,
                max_planes=self.max_planes,
                allow_out_of_range=self.allow_out_of_range,
            )
        return self._refocuser

    @property
    def backend(self) -> Any:
        return self.refocuser.backend

    def __call__(self, image: np.ndarray, dpms_um: np.ndarray) -> np.ndarray:
        img = np.ascontiguousarray(image, dtype=np.float32)
        dpms = np.asarray(dpms_um, dtype=np.float32)
        if img.ndim != 2 or dpms.ndim != 3 or dpms.shape[1:] != img.shape:
            raise InputError(
                f"refocus needs an (H, W) image and (K, H, W) DPMs, got {img.shape} and "
                f"{dpms.shape}"
            )
        if self._refocuser is None:  # refuse bad DPMs before building the backend
            dpm_mod.check_range(
                dpms, self.z_range_um, allow=self.allow_out_of_range, what="the refocus DPMs"
            )
        return self.refocuser.refocus(img, dpms, what="the refocus DPMs")

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model.card.name,
            "weights_sha256": self.model.weights_sha256,
            "z_range_um": list(self.z_range_um),
            "dpm_scale_um": self.dpm_scale_um,
            "backend": None if self._refocuser is None else self.backend.describe(),
        }


def engine_refocus_fn(
    loaded_model: Any,
    backend: str = "auto",
    *,
    precision: str = "auto",
    device: str = "auto",
    max_planes: int = 8,
) -> EngineRefocus:
    """A :data:`RefocusFn` running Deep-Z: ``loaded_model`` is a
    :class:`~live_deepz.modelfile.LoadedModel` or a model name/path. The engine is imported
    and the backend built on the first call."""
    return EngineRefocus(
        loaded_model, backend, precision=precision, device=device, max_planes=max_planes
    )


# --------------------------------------------------------------------------- sweeps


def _z_range_of(refocus_fn: Any, z_range_um: Any) -> tuple[float, float] | None:
    if z_range_um is not None:
        return (float(z_range_um[0]), float(z_range_um[1]))
    zr = getattr(refocus_fn, "z_range_um", None)
    return None if zr is None else (float(zr[0]), float(zr[1]))


def sweep_offsets(
    spec: str | float | Sequence[float] | np.ndarray | None = None,
    z_range_um: tuple[float, float] | None = None,
) -> np.ndarray:
    """Sorted sweep offsets (µm) from a plane spec (``"-10:10:0.5"``, a list…).

    ``None`` is :data:`DEFAULT_SWEEP` clipped to ``z_range_um``. Needs at least 3 planes;
    refuses an explicit sweep outside ``z_range_um`` (the model's range) with
    :class:`~live_deepz.errors.DPMRangeError`.
    """
    if spec is None:
        offsets = dpm_mod.parse_planes(DEFAULT_SWEEP)
        if z_range_um is not None:
            lo, hi = z_range_um
            offsets = offsets[(offsets >= lo - 1e-9) & (offsets <= hi + 1e-9)]
        spec = offsets
    offsets = np.sort(dpm_mod.parse_planes(spec))
    if offsets.size < 3:
        raise InputError(
            f"a focus sweep needs at least 3 planes to locate a peak, got {offsets.size} "
            f"from {spec!r}; e.g. '-10:10:0.5'"
        )
    if z_range_um is not None:
        dpm_mod.check_range(offsets, z_range_um, what="the focus sweep")
    return offsets


def _check_image(image: Any) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype.kind not in "iuf" or arr.ndim != 2 or arr.size == 0:
        raise InputError(
            f"the calibration image must be a 2D (H, W) array of numbers, got shape "
            f"{arr.shape} dtype {arr.dtype}"
        )
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise InputError("the calibration image contains NaN or inf")
    return out


def virtual_sweep(
    refocus_fn: RefocusFn,
    image_norm: np.ndarray,
    offsets_um: np.ndarray,
    on_plane: Callable[[int, np.ndarray], None],
    *,
    chunk: int = 8,
    progress: ProgressFn | None = None,
    progress_span: tuple[float, float] = (0.0, 1.0),
) -> None:
    """Refocus ``image_norm`` to each uniform offset and hand plane ``k`` to ``on_plane(k, plane)``.

    Calls ``refocus_fn`` with balanced chunks of at most ``chunk`` uniform DPMs (the last one
    padded to the same size), so memory stays at ``chunk`` planes.
    """
    img = _check_image(image_norm)
    offsets = np.asarray(offsets_um, dtype=np.float64)
    k_total = offsets.size
    n_chunks = -(-k_total // max(int(chunk), 1))
    per = -(-k_total // n_chunks)
    dpms = np.empty((per, *img.shape), dtype=np.float32)
    a, b = progress_span
    for s in range(0, k_total, per):
        e = min(s + per, k_total)
        for j in range(per):
            dpms[j].fill(offsets[min(s + j, e - 1)])
        planes = np.asarray(refocus_fn(img, dpms))
        if planes.shape != dpms.shape:
            raise InputError(f"the refocus function returned {planes.shape}, expected {dpms.shape}")
        for j in range(e - s):
            on_plane(s + j, planes[j])
        if progress is not None:
            progress(a + (b - a) * e / k_total, f"focus sweep: {e}/{k_total} planes")


def parabola_peak(
    z: np.ndarray, v: np.ndarray, sigma_v: np.ndarray | float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertex of the parabola through three points per row.

    ``z``, ``v``: ``(N, 3)`` (positions ascending, middle = the sampled maximum). Returns
    ``(z_peak, curvature, z_std)``: the vertex clipped to ``[z0, z2]``, the second
    derivative ``2a`` (negative for a maximum) and the vertex's standard deviation for
    independent noise ``sigma_v`` on each ``v``.
    """
    z = np.asarray(z, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    z0, z1, z2 = z[:, 0], z[:, 1], z[:, 2]
    v0, v1, v2 = v[:, 0], v[:, 1], v[:, 2]
    d01 = (v1 - v0) / (z1 - z0)
    d12 = (v2 - v1) / (z2 - z1)
    a = (d12 - d01) / (z2 - z0)  # v = a z² + b z + c
    b = d01 - a * (z0 + z1)
    with np.errstate(divide="ignore", invalid="ignore"):
        zp = np.where(a < 0, -b / (2.0 * a), z1)
    zp = np.clip(zp, z0, z2)
    # error propagation, evaluated in step units around the middle point
    h = 0.5 * (z2 - z0)
    with np.errstate(divide="ignore", invalid="ignore"):
        den = v0 - 2.0 * v1 + v2
        var_u = ((v2 - v1) ** 2 + (v1 - v0) ** 2 + (v0 - v2) ** 2) / den**4
        z_std = h * np.asarray(sigma_v) * np.sqrt(var_u)
    z_std = np.where(a < 0, z_std, np.inf)
    return zp, 2.0 * a, z_std


def _confidence(z_std: np.ndarray) -> np.ndarray:
    r2 = REFERENCE_STD_UM**2
    with np.errstate(invalid="ignore"):
        c = r2 / (r2 + np.asarray(z_std, dtype=np.float64) ** 2)
    return np.nan_to_num(c, nan=0.0)


def _noise_std(plane: np.ndarray) -> float:
    """Robust white-noise σ from horizontal pixel differences (subsampled rows)."""
    sub = plane[:: max(1, plane.shape[0] // 256)]
    d = np.diff(sub, axis=1).ravel()
    if d.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))


def _background(plane: np.ndarray) -> float:
    step = max(1, int(math.sqrt(plane.size / 65536)))
    return float(np.median(plane[::step, ::step]))


def _input_has_light(
    img: np.ndarray, peaks: np.ndarray, z_um: np.ndarray, pixel_size_um: float, snr_min: float
) -> np.ndarray:
    """Per bead: does the input hold light for it (see :func:`estimate_focus_beads`)?

    The window is a square of half-side ``2 px + |z|`` µm (a defocused spot's photons lie
    within a radius of about ``NA/n · |z|`` < ``|z|``); its flux above the input's median
    is compared with ``snr_min`` times the input noise σ · √(window pixels)."""
    if len(peaks) == 0:
        return np.zeros(0, dtype=bool)
    h, w = img.shape
    csum = np.zeros((h + 1, w + 1), dtype=np.float64)
    csum[1:, 1:] = np.cumsum(np.cumsum(img - _background(img), axis=0), axis=1)
    sigma = max(_noise_std(img), 1e-12)
    r = np.ceil(2.0 + np.abs(z_um) / pixel_size_um).astype(np.int64)
    y = np.rint(peaks[:, 0]).astype(np.int64)
    x = np.rint(peaks[:, 1]).astype(np.int64)
    y0, y1 = np.clip(y - r, 0, h), np.clip(y + r + 1, 0, h)
    x0, x1 = np.clip(x - r, 0, w), np.clip(x + r + 1, 0, w)
    flux = csum[y1, x1] - csum[y0, x1] - csum[y1, x0] + csum[y0, x0]
    n = (y1 - y0) * (x1 - x0)
    return flux >= snr_min * sigma * np.sqrt(n)


class _PeakTracker:
    """Per pixel: the maximum over planes, its index, and the values of its two neighbours."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.best = np.full(shape, -np.inf, dtype=np.float32)
        self.index = np.zeros(shape, dtype=np.int32)
        self.before = np.full(shape, np.nan, dtype=np.float32)
        self.after = np.full(shape, np.nan, dtype=np.float32)
        self._prev: np.ndarray | None = None

    def add(self, k: int, v: np.ndarray) -> None:
        if self._prev is not None:
            m = self.index == k - 1
            self.after[m] = v[m]
        better = v > self.best
        if self._prev is not None:
            self.before[better] = self._prev[better]
        else:
            self.before[better] = np.nan
        self.best[better] = v[better]
        self.index[better] = k
        self.after[better] = np.nan
        self._prev = v


# --------------------------------------------------------------------------- beads


def _detect(
    mip: np.ndarray,
    background: float,
    noise: float,
    *,
    snr_min: float,
    threshold: float | None,
    border_px: int,
    min_separation_px: float,
    max_area_px: float | None,
) -> tuple[np.ndarray, dict[str, int], float]:
    """Accepted peak positions ``(N, 2)`` (int), rejection counts, and the threshold used."""
    from skimage.filters import threshold_triangle

    if threshold is None:
        span = float(mip.max()) - background
        thr = max(
            float(threshold_triangle(mip)),
            background + snr_min * noise,
            background + 0.02 * span,
        )
    else:
        thr = float(threshold)
    mask = mip > thr
    labels, n = ndimage.label(mask)
    reasons = {"edge": 0, "cluster": 0, "crowded": 0}
    if n == 0:
        return np.zeros((0, 2), dtype=int), reasons, thr
    index = np.arange(1, n + 1)
    peaks = np.array(ndimage.maximum_position(mip, labels, index), dtype=int).reshape(-1, 2)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    local_max = (mip == ndimage.maximum_filter(mip, size=5)) & mask
    n_max = np.bincount(labels[local_max], minlength=n + 1)[1:]
    limit = max_area_px if max_area_px is not None else 4.0 * float(np.median(area)) + 9.0
    cluster = (n_max > 1) | (area > limit)
    h, w = mip.shape
    edge = (
        (peaks[:, 0] < border_px)
        | (peaks[:, 1] < border_px)
        | (peaks[:, 0] >= h - border_px)
        | (peaks[:, 1] >= w - border_px)
    )
    crowded = np.zeros(n, dtype=bool)
    if n > 1 and min_separation_px > 0:
        from scipy.spatial import cKDTree

        pairs = cKDTree(peaks).query_pairs(float(min_separation_px), output_type="ndarray")
        crowded[pairs.ravel()] = True
    reasons["edge"] = int(np.count_nonzero(edge))
    reasons["cluster"] = int(np.count_nonzero(cluster & ~edge))
    reasons["crowded"] = int(np.count_nonzero(crowded & ~edge & ~cluster))
    keep = ~(edge | cluster | crowded)
    return peaks[keep], reasons, thr


def _subpixel(mip: np.ndarray, peaks: np.ndarray, background: float) -> np.ndarray:
    """Intensity-weighted centroids over the 3×3 neighbourhood of each peak."""
    h, w = mip.shape
    out = peaks.astype(np.float64)
    for i, (y, x) in enumerate(peaks):
        y0, y1, x0, x1 = max(y - 1, 0), min(y + 2, h), max(x - 1, 0), min(x + 2, w)
        win = np.clip(mip[y0:y1, x0:x1].astype(np.float64) - background, 0.0, None)
        s = win.sum()
        if s > 0:
            yy, xx = np.mgrid[y0:y1, x0:x1]
            out[i] = ((yy * win).sum() / s, (xx * win).sum() / s)
    return out


def estimate_focus_beads(
    refocus_fn: RefocusFn,
    image_norm: np.ndarray,
    pixel_size_um: float | None = None,
    *,
    offsets_um: str | Sequence[float] | np.ndarray | None = None,
    z_range_um: tuple[float, float] | None = None,
    smooth_px: float = 1.0,
    snr_min: float = 8.0,
    threshold: float | None = None,
    border_px: int = 10,
    min_separation_px: float = 6.0,
    max_area_px: float | None = None,
    flux_snr_min: float = 5.0,
    chunk: int = 8,
    progress: ProgressFn | None = None,
) -> FocusMap:
    """Per-bead focus from a virtual sweep (see the module docstring for the method).

    Parameters
    ----------
    refocus_fn : the :data:`RefocusFn` (engine or oracle).
    image_norm : ``(H, W)`` normalised frame (:func:`live_deepz.normalize.normalize_image`).
    pixel_size_um : stored in the map (for the fit).
    offsets_um : the sweep (default −10…+10 µm step 0.5, clipped to the model's range); an
        explicit sweep outside ``z_range_um`` (default: ``refocus_fn.z_range_um`` when it
        has one) is refused.
    smooth_px : Gaussian σ (pixels) applied to each plane before the peak intensity is read.
    snr_min : detection threshold in units of the smoothed planes' noise (above background);
        the threshold is also at least the triangle threshold of the maximum projection and
        2 % of its range. ``threshold`` overrides all of this (normalised units).
    border_px : beads whose peak lies closer to the image edge are rejected.
    min_separation_px : beads closer than this to another one are rejected (both).
    max_area_px : components larger than this are clusters (default 4 × median area + 9).
    flux_snr_min : a bead focused at ``z`` needs an input flux (background subtracted, in a
        square of half-side ``2 px + |z|`` µm around it) of at least this many standard
        deviations of the input's noise in that square, else it is rejected as
        ``no_input_light``; 0 turns the check off. Needs ``pixel_size_um``.

    Raises
    ------
    InputError : no bead survives detection and the sweep (the message gives the counts).
    DPMRangeError : the sweep leaves the model's range.
    """
    img = _check_image(image_norm)
    zr = _z_range_of(refocus_fn, z_range_um)
    offsets = sweep_offsets(offsets_um, zr)
    k_total = offsets.size
    tracker = _PeakTracker(img.shape)
    bg = np.zeros(k_total)
    noise = np.zeros(k_total)
    noise_gain = 1.0 / (2.0 * math.sqrt(math.pi) * smooth_px) if smooth_px > 0 else 1.0

    def on_plane(k: int, plane: np.ndarray) -> None:
        p = np.asarray(plane, dtype=np.float32)
        s = ndimage.gaussian_filter(p, smooth_px) if smooth_px > 0 else p.copy()
        bg[k] = _background(s)
        noise[k] = _noise_std(p) * noise_gain
        tracker.add(k, s)

    virtual_sweep(
        refocus_fn, img, offsets, on_plane, chunk=chunk, progress=progress, progress_span=(0, 0.9)
    )
    mip = tracker.best
    background = float(np.median(bg))
    sigma_v = max(float(np.median(noise)), 1e-6 * max(float(mip.max()) - background, 1e-12))
    peaks, reasons, thr = _detect(
        mip,
        background,
        sigma_v,
        snr_min=snr_min,
        threshold=threshold,
        border_px=border_px,
        min_separation_px=min_separation_px,
        max_area_px=max_area_px,
    )
    n_candidates = len(peaks) + sum(reasons.values())
    py, px_ = peaks[:, 0], peaks[:, 1]
    idx = tracker.index[py, px_]
    inside = (idx > 0) & (idx < k_total - 1)
    reasons["outside_sweep"] = int(np.count_nonzero(~inside))
    peaks, idx = peaks[inside], idx[inside]
    py, px_ = peaks[:, 0], peaks[:, 1]
    vals = np.stack(
        [tracker.before[py, px_], tracker.best[py, px_], tracker.after[py, px_]], axis=1
    ).astype(np.float64)
    vals -= np.stack([bg[idx - 1], bg[idx], bg[idx + 1]], axis=1)
    zs = np.stack([offsets[idx - 1], offsets[idx], offsets[idx + 1]], axis=1)
    positive = np.all(vals > 0, axis=1) & np.all(np.isfinite(vals), axis=1)
    reasons["flat"] = int(np.count_nonzero(~positive))
    peaks, vals, zs = peaks[positive], vals[positive], zs[positive]
    # parabola through log intensities: exact for Gaussian-shaped focus curves
    logv = np.log(vals)
    z_peak, curv, z_std = parabola_peak(zs, logv, sigma_v / vals[:, 1])
    sharp = curv < 0
    reasons["flat"] += int(np.count_nonzero(~sharp))
    peaks, z_peak, z_std = peaks[sharp], z_peak[sharp], z_std[sharp]
    if flux_snr_min > 0 and pixel_size_um is not None:
        lit = _input_has_light(img, peaks, z_peak, float(pixel_size_um), flux_snr_min)
        reasons["no_input_light"] = int(np.count_nonzero(~lit))
        peaks, z_peak, z_std = peaks[lit], z_peak[lit], z_std[lit]
    info = {
        "sweep_um": [float(offsets[0]), float(offsets[-1]), int(k_total)],
        "measure": "peak intensity (Gaussian-smoothed, log-parabola)",
        "smooth_px": float(smooth_px),
        "threshold": thr,
        "noise": sigma_v,
        "flux_snr_min": float(flux_snr_min) if pixel_size_um is not None else None,
        "n_candidates": int(n_candidates),
        "rejected": reasons,
    }
    arrays = {"max_projection": mip, "focus_index": tracker.index}
    fmap = FocusMap(
        _subpixel(mip, peaks, background),
        z_peak,
        _confidence(z_std),
        "beads",
        (int(img.shape[0]), int(img.shape[1])),
        None if pixel_size_um is None else float(pixel_size_um),
        z_std,
        info,
        arrays,
    )
    if progress is not None:
        progress(1.0, f"{len(fmap)} beads in focus within the sweep")
    if len(fmap) == 0:
        detail = ", ".join(f"{k}: {v}" for k, v in reasons.items() if v)
        raise InputError(
            f"no beads found: {n_candidates} candidate(s) above the threshold {thr:.3g}"
            + (f" were all rejected ({detail})" if detail else "")
            + "; check that the image shows isolated fluorescent beads, lower snr_min / "
            "threshold, widen the sweep, or use the tile method for extended samples"
        )
    return fmap


# --------------------------------------------------------------------------- tiles


def _block_mean(q: np.ndarray, tile: int, oy: int, ox: int, ny: int, nx: int) -> np.ndarray:
    blk = q[oy : oy + ny * tile, ox : ox + nx * tile]
    return blk.reshape(ny, tile, nx, tile).mean(axis=(1, 3), dtype=np.float64)


def _tile_measures(
    plane: np.ndarray, tile: int, measure: str, grid: tuple[int, int, int, int]
) -> np.ndarray:
    oy, ox, ny, nx = grid
    p = np.asarray(plane, dtype=np.float32)
    if measure == "brenner":
        q = np.zeros_like(p)
        q[:, :-2] += (p[:, 2:] - p[:, :-2]) ** 2
        q[:-2, :] += (p[2:, :] - p[:-2, :]) ** 2
        return _block_mean(q, tile, oy, ox, ny, nx)
    mean = _block_mean(p, tile, oy, ox, ny, nx)
    var = np.maximum(_block_mean(p * p, tile, oy, ox, ny, nx) - mean**2, 0.0)
    if measure == "variance":
        return var
    if measure == "normvar":
        return var / np.maximum(np.abs(mean), 1e-6)
    raise InputError(f"unknown focus measure {measure!r}; use one of {', '.join(FOCUS_MEASURES)}")


def focus_measure(plane: np.ndarray, measure: str = "brenner") -> float:
    """One focus value for a whole image (larger = sharper); see :data:`FOCUS_MEASURES`."""
    p = np.asarray(plane, dtype=np.float32)
    if measure == "brenner":
        gx = (p[:, 2:] - p[:, :-2]) ** 2
        gy = (p[2:, :] - p[:-2, :]) ** 2
        return float((gx.sum(dtype=np.float64) + gy.sum(dtype=np.float64)) / p.size)
    if measure == "variance":
        return float(p.var(dtype=np.float64))
    if measure == "normvar":
        return float(p.var(dtype=np.float64) / max(abs(float(p.mean(dtype=np.float64))), 1e-6))
    raise InputError(f"unknown focus measure {measure!r}; use one of {', '.join(FOCUS_MEASURES)}")


def _curve_peaks(
    offsets: np.ndarray, curves: np.ndarray, rel_noise: float, min_prominence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Per column of ``curves`` (K, N): vertex z, z std, mask of accepted, rejection counts."""
    k_total, n = curves.shape
    idx = np.argmax(curves, axis=0)
    cmax = curves[idx, np.arange(n)]
    cmin = curves.min(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        prominence = np.where(cmax > 0, 1.0 - cmin / cmax, 0.0)
    inside = (idx > 0) & (idx < k_total - 1)
    prominent = prominence >= min_prominence
    ok = inside & prominent
    z = np.full(n, np.nan)
    z_std = np.full(n, np.inf)
    if ok.any():
        j = idx[ok]
        cols = np.nonzero(ok)[0]
        vals = np.stack([curves[j - 1, cols], curves[j, cols], curves[j + 1, cols]], axis=1)
        zs = np.stack([offsets[j - 1], offsets[j], offsets[j + 1]], axis=1)
        good = np.all(vals > 0, axis=1)
        zp, curv, zsd = parabola_peak(zs, np.log(np.where(good[:, None], vals, 1.0)), rel_noise)
        good &= curv < 0
        z[cols] = zp
        z_std[cols] = np.where(good, zsd, np.inf)
        ok[cols[~good]] = False
    reasons = {
        "outside_sweep": int(np.count_nonzero(~inside & prominent)),
        "flat": int(np.count_nonzero(~prominent)) + int(np.count_nonzero(inside & prominent & ~ok)),
    }
    return z, z_std, ok, reasons


def estimate_focus_tiles(
    refocus_fn: RefocusFn,
    image_norm: np.ndarray,
    pixel_size_um: float | None = None,
    *,
    offsets_um: str | Sequence[float] | np.ndarray | None = None,
    z_range_um: tuple[float, float] | None = None,
    tile_px: int = 64,
    measure: str = "brenner",
    min_prominence: float = 0.2,
    rel_noise: float = 0.01,
    chunk: int = 8,
    progress: ProgressFn | None = None,
) -> FocusMap:
    """Per-tile focus for extended samples (tissue, cells, worms).

    The frame is cut into a centred grid of ``tile_px`` × ``tile_px`` tiles; for every
    plane of the sweep each tile's focus ``measure`` (:data:`FOCUS_MEASURES`) is computed,
    and each tile's focus is the log-parabola vertex around its maximum. Tiles whose curve
    varies by less than ``min_prominence`` (``1 − min/max``; no structure) or peaks at an end
    of the sweep are rejected. ``rel_noise`` is the assumed relative noise of a tile's
    measure (for ``z_std_um``/``confidence``); the confidence is further scaled by
    ``min(1, prominence / 0.5)``.
    """
    img = _check_image(image_norm)
    if measure not in FOCUS_MEASURES:
        raise InputError(
            f"unknown focus measure {measure!r}; use one of {', '.join(FOCUS_MEASURES)}"
        )
    tile = int(tile_px)
    h, w = img.shape
    ny, nx = h // tile, w // tile
    if tile < 8 or ny < 1 or nx < 1:
        raise InputError(f"tile_px must be >= 8 and fit the {h}×{w} image, got {tile_px}")
    grid = ((h - ny * tile) // 2, (w - nx * tile) // 2, ny, nx)
    zr = _z_range_of(refocus_fn, z_range_um)
    offsets = sweep_offsets(offsets_um, zr)
    curves = np.zeros((offsets.size, ny * nx))

    def on_plane(k: int, plane: np.ndarray) -> None:
        curves[k] = _tile_measures(plane, tile, measure, grid).ravel()

    virtual_sweep(
        refocus_fn, img, offsets, on_plane, chunk=chunk, progress=progress, progress_span=(0, 0.95)
    )
    z, z_std, ok, reasons = _curve_peaks(offsets, curves, rel_noise, min_prominence)
    cmax, cmin = curves.max(axis=0), curves.min(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        prominence = np.where(cmax > 0, 1.0 - cmin / cmax, 0.0)
    ty, tx = np.mgrid[0:ny, 0:nx]
    centres = np.stack(
        [grid[0] + (ty.ravel() + 0.5) * tile - 0.5, grid[1] + (tx.ravel() + 0.5) * tile - 0.5],
        axis=1,
    )
    conf = _confidence(z_std) * np.minimum(1.0, prominence / 0.5)
    info = {
        "sweep_um": [float(offsets[0]), float(offsets[-1]), int(offsets.size)],
        "measure": measure,
        "tile_px": tile,
        "grid": [ny, nx],
        "n_candidates": ny * nx,
        "rejected": reasons,
    }
    fmap = FocusMap(
        centres[ok],
        z[ok],
        conf[ok],
        "tiles",
        (h, w),
        None if pixel_size_um is None else float(pixel_size_um),
        z_std[ok],
        info,
        {"curves": curves},
    )
    if progress is not None:
        progress(1.0, f"{len(fmap)} of {ny * nx} tiles in focus within the sweep")
    if len(fmap) == 0:
        raise InputError(
            f"no tile has a usable focus curve ({reasons['flat']} flat, "
            f"{reasons['outside_sweep']} peaking outside the sweep); check that the image has "
            "structure, widen the sweep, or use larger tiles"
        )
    return fmap


def estimate_focus(
    refocus_fn: RefocusFn,
    image_norm: np.ndarray,
    pixel_size_um: float | None = None,
    method: str = "beads",
    **kwargs: Any,
) -> FocusMap:
    """:func:`estimate_focus_beads` (``method="beads"``) or :func:`estimate_focus_tiles`."""
    if method == "beads":
        return estimate_focus_beads(refocus_fn, image_norm, pixel_size_um, **kwargs)
    if method == "tiles":
        return estimate_focus_tiles(refocus_fn, image_norm, pixel_size_um, **kwargs)
    raise InputError(f"unknown focus method {method!r}; use 'beads' or 'tiles'")
