"""Measured z-stacks → Deep-Z training pairs (paper Methods, "Data preparation").

Pipeline, per field of view (one z-stack)::

    read (io.read_stack) ─► align planes laterally ─► EDF ─► normalise (one offset/scale)
        ─► float32 (Z, Y, X) cache on disk (.npy, memory-mapped when sampling)
    EDF ─► foreground mask ─► greedy cover with P×P regions (~5 % overlap)
    per region: middle plane = sharpest (highest std), planes within ±z_half_range of it
    per input plane: ``targets_per_input`` random target planes, DPM = z_target − z_input

**Lateral alignment.** The paper used StackReg (rigid). Here each plane is registered to its
neighbour towards the sharpest plane with sub-pixel phase correlation
(:func:`skimage.registration.phase_cross_correlation`, plain cross-correlation on
mean-subtracted, lightly smoothed (σ = 1 px), Hann-windowed planes) and the neighbour
shifts are summed outwards from the sharpest plane, so every plane is expressed in its
frame. Summing stops where planes lose their fine detail (far from focus a step is mostly
noise; on drift-free bead stacks the sum walked up to 12 px away): planes beyond keep the
last reliable shift. A neighbour shift larger than ``max_step_shift_px`` is treated as a
failed registration and replaced by 0. Planes are resampled with
:func:`scipy.ndimage.shift` (cubic spline, edge values repeated). Rotation is not
corrected (stage drift is a translation).

**Foreground mask.** On the normalised EDF smoothed by a Gaussian (σ = 1 px): pixels above
``mask_high`` are seeds, pixels above ``mask_low`` the mask (both raised to a multiple of
the EDF's noise level when that is higher); the geodesic dilation of the seeds under the
mask (morphological reconstruction, :func:`skimage.morphology.reconstruction`) keeps every
dim pixel connected to a bright one.
This is the paper's "geodesic dilation with fixed thresholds" (hysteresis thresholding).

**Greedy cover.** Candidate P×P squares on a grid of step P/16; repeatedly take the square
covering the most not-yet-covered foreground pixels among those that overlap already
chosen squares by at most ``overlap`` of their area (box sums via an integral image).
When no such square gains at least 1 % of a patch, the leftover foreground is covered by
squares overlapping earlier ones by at most half, those adding the most new foreground net
of the pixels they cover twice first; fringes that only a near-duplicate square could
cover, and specks too small to add 1 % of a patch to any square, stay uncovered (the
fraction of the foreground covered is in the data summary).

**Splits.** Held-out *test* regions come from whole stacks (``holdout_stacks``) or from the
right ``holdout_right`` fraction of every field (covered separately, regions never cross
the border): no test pixel is ever in a training or validation region. The remaining
regions are split 85/15 into training and validation (by region; regions overlap by ~5 %,
so validation is only almost disjoint from training; the test set is strictly disjoint).

**Storage.** One float32 ``.npy`` per field in ``cache_dir``, named by a hash of the raw
stack and the preparation settings and reused by later runs; pairs are cropped from the
memory-mapped arrays on the fly, so the dataset never has to fit in RAM.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..normalize import Normalization, extended_depth_of_field, fit_normalization

__all__ = [
    "SPLITS",
    "DatasetSummary",
    "FieldStack",
    "PairConfig",
    "PairData",
    "PairDataset",
    "PreparedField",
    "Region",
    "align_planes",
    "augment",
    "build_pairs",
    "covered_fraction",
    "foreground_mask",
    "greedy_cover",
    "load_stacks",
    "make_pairs",
    "make_regions",
    "noise_sigma",
    "plane_shifts",
    "prepare_field",
    "sharpest_planes",
    "split_regions",
]

SPLITS = ("train", "val", "test")
#: Bump when the cached arrays' meaning changes so old caches are not reused.
CACHE_VERSION = 2  # 2: alignment stops where planes lose their detail
_EPS = 1e-6

Progress = Callable[[str], None]


def _say(progress: Progress | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


# ---------------------------------------------------------------------------------------
# Inputs


@dataclass
class FieldStack:
    """One field of view's raw z-stack, as read from a file (or made in memory)."""

    data: np.ndarray
    """``(Z, Y, X)`` raw intensities, plane 0 closest to the objective."""
    z_step_um: float
    """Axial distance between planes (> 0)."""
    pixel_size_um: float | None = None
    """Lateral pixel size in the sample, when known."""
    name: str = "field"
    """Short label for messages and the data summary (the file name)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Whatever the reader found (optics, acquisition settings)."""
    z_positions_um: np.ndarray | None = None
    """``(Z,)`` focal position of each plane (strictly monotonic); None = ``index × z_step``.
    DPMs are differences of these, so a stack recorded deepest-plane-first still gets the
    project's sign (DPM > 0 = deeper)."""

    def __post_init__(self) -> None:
        arr = np.asarray(self.data)
        if arr.ndim != 3:
            raise InputError(
                f"{self.name}: a z-stack must be (Z, Y, X), got an array of shape {arr.shape}"
            )
        if arr.dtype.kind not in "iuf":
            raise InputError(f"{self.name}: stack dtype {arr.dtype} is not a real number type")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise InputError(f"{self.name}: the stack holds NaN/inf values")
        if not (self.z_step_um and self.z_step_um > 0 and math.isfinite(self.z_step_um)):
            raise InputError(
                f"{self.name}: the z step must be a positive number of um, got {self.z_step_um!r}"
                " (pass --z-step)"
            )
        self.data = arr
        if self.z_positions_um is not None:
            z = np.asarray(self.z_positions_um, dtype=np.float64)
            d = np.diff(z)
            if z.shape != (arr.shape[0],) or not np.isfinite(z).all():
                raise InputError(f"{self.name}: {z.size} plane positions for {arr.shape[0]} planes")
            if not (np.all(d > 0) or np.all(d < 0)):
                raise InputError(
                    f"{self.name}: the plane positions are not strictly monotonic; give the "
                    "planes in focus order (or pass --z-step to use index × step)"
                )
            self.z_positions_um = z

    @property
    def z_um(self) -> np.ndarray:
        """``(Z,)`` plane positions (um): the file's, or ``index × z_step``."""
        if self.z_positions_um is not None:
            return self.z_positions_um
        return np.arange(self.data.shape[0], dtype=np.float64) * self.z_step_um


def load_stacks(
    paths: Sequence[str | os.PathLike[str]],
    z_step_um: float | None = None,
    channel: int | None = None,
) -> list[FieldStack]:
    """Read z-stacks with :func:`live_deepz.io.read_stack`; every failure is an InputError.

    ``z_step_um`` overrides the files' z step (planes then sit at ``index × z_step``);
    ``channel`` picks one channel of multi-channel ``(Z, C, Y, X)`` stacks.
    """
    from ..io import read_stack

    out = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise InputError(f"{path}: no such file (give z-stack TIFF/OME-TIFF files)")
        try:
            st = read_stack(path, z_step_um=z_step_um)
        except InputError:
            raise
        except Exception as exc:  # tifffile and friends raise many types
            raise InputError(
                f"{path}: cannot read it as a z-stack ({type(exc).__name__}: {exc}); give a "
                "(Z, Y, X) TIFF/OME-TIFF"
            ) from None
        data = np.asarray(st.data)
        if data.ndim == 4:
            n_c = data.shape[1]
            if channel is None:
                names = f" ({', '.join(st.channel_names)})" if st.channel_names else ""
                raise InputError(
                    f"{path}: {n_c} channels{names}; Deep-Z trains one channel at a time: "
                    "pass --channel K (0-based)"
                )
            if not 0 <= channel < n_c:
                raise InputError(f"{path}: --channel {channel} but the stack has {n_c} channels")
            data = data[:, channel]
        if data.ndim != 3 or data.shape[0] < 2:
            raise InputError(
                f"{path}: not a z-stack (array shape {data.shape}); give a (Z, Y, X) stack "
                "with several planes"
            )
        positions = None
        zpos = getattr(st, "z_positions_um", None)
        if z_step_um is None and zpos is not None and len(zpos) == data.shape[0]:
            positions = np.asarray(zpos, dtype=np.float64)
        out.append(
            FieldStack(
                data=data,
                z_step_um=float(z_step_um if z_step_um is not None else st.z_step_um),
                pixel_size_um=st.pixel_size_um,
                name=path.name,
                metadata=dict(st.metadata or {}),
                z_positions_um=positions,
            )
        )
    return out


# ---------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class PairConfig:
    """How z-stacks become training pairs."""

    patch: int = 256
    """Side of the square regions / training patches (px)."""
    z_half_range_um: float = 10.0
    """Planes within ±this of each region's sharpest plane are used (paper: ±10 um)."""
    target_half_range_um: float | None = None
    """Target planes within ±this of the sharpest plane (None: ``z_half_range_um``); wider
    than the inputs' window, it trains refocusing further away from the sample."""
    targets_per_input: int = 5
    """Random target planes per input plane (paper: 5-10; Deep-Z+: 4)."""
    overlap: float = 0.05
    """Largest fraction of a new region's area already covered by earlier regions."""
    val_fraction: float = 0.15
    """Fraction of the (non-test) regions used for validation (paper: 15 %)."""
    holdout_stacks: tuple[int, ...] = ()
    """Indices of stacks whose regions are the held-out test set."""
    holdout_right: float = 0.0
    """Fraction of every field's width (rightmost columns) held out as test regions."""
    mask_low: float = 0.05
    """Foreground mask threshold (normalised EDF units)."""
    mask_high: float = 0.25
    """Seed threshold of the geodesic dilation (normalised EDF units)."""
    align: bool = True
    """Align planes laterally before anything else."""
    max_step_shift_px: float = 5.0
    """Neighbour-plane shifts above this are treated as failed registrations (→ 0)."""
    dpm_scale_um: float = 10.0
    """DPM divisor before the network (paper: 10 um)."""
    seed: int = 0
    """Seed of the validation split and of the random target planes."""

    def __post_init__(self) -> None:
        if self.patch < 16 or self.patch % 16:
            raise InputError(f"--patch must be a multiple of 16 and >= 16, got {self.patch}")
        if not self.z_half_range_um > 0:
            raise InputError(f"--z-half-range must be > 0 um, got {self.z_half_range_um}")
        t = self.target_half_range_um
        if t is not None and not t >= self.z_half_range_um:
            raise InputError(
                f"--target-half-range ({t} um) must be >= --z-half-range ({self.z_half_range_um})"
            )
        if self.targets_per_input < 1:
            raise InputError("targets per input must be >= 1")
        if not 0 <= self.overlap < 1:
            raise InputError(f"overlap must lie in [0, 1), got {self.overlap}")
        if not 0 < self.val_fraction < 1:
            raise InputError(f"validation fraction must lie in (0, 1), got {self.val_fraction}")
        if not 0 <= self.holdout_right < 1:
            raise InputError(f"holdout fraction must lie in [0, 1), got {self.holdout_right}")

    def half_planes(self, z_step_um: float) -> int:
        """``N``: planes on each side of the middle, ``floor(z_half_range / z_step)``."""
        return math.floor(self.z_half_range_um / z_step_um + _EPS)


# ---------------------------------------------------------------------------------------
# Alignment


def _hann2d(shape: tuple[int, int]) -> np.ndarray:
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)


def _band_pass(plane: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    p = np.asarray(plane, dtype=np.float32)
    return ndimage.gaussian_filter(p, 1.0) - ndimage.gaussian_filter(p, 4.0)


def plane_detail_snr(stack: np.ndarray) -> np.ndarray:
    """``(Z,)`` fine detail of each plane in units of its noise: the std of its band-pass
    (Gaussian σ 1 px − σ 4 px) over the std that white noise of the plane's noise level
    (:func:`noise_sigma`) has after the same band-pass. A plane of pure noise gives ~1."""
    white = np.random.default_rng(0).standard_normal((128, 128)).astype(np.float32)
    gain = float(_band_pass(white).std())
    out = np.empty(stack.shape[0])
    for z in range(stack.shape[0]):
        plane = np.asarray(stack[z], dtype=np.float32)
        noise = max(noise_sigma(plane), 1e-12)
        out[z] = float(_band_pass(plane).std()) / (gain * noise)
    return out


def plane_shifts(
    stack: np.ndarray,
    upsample: int = 20,
    max_step_shift_px: float = 5.0,
    min_detail_snr: float = 2.0,
) -> np.ndarray:
    """``(Z, 2)`` (dy, dx) shifts that bring each plane into the sharpest plane's frame.

    Each plane is registered to its neighbour towards the sharpest plane (sub-pixel phase
    correlation, upsampling ``upsample``) and the neighbour shifts are accumulated; a
    neighbour shift above ``max_step_shift_px`` counts as a failed registration (0).
    Registration stops, in each direction, at the first plane whose fine detail is below
    ``min_detail_snr`` times that of its noise (:func:`plane_detail_snr`): there a step is
    mostly noise, and summing such steps made a random walk of up to 12 px on drift-free
    simulated bead stacks. Planes beyond keep the last reliable shift.
    Applying ``scipy.ndimage.shift(plane, shifts[z])`` aligns plane ``z``.
    """
    from scipy import ndimage
    from skimage.registration import phase_cross_correlation

    nz = stack.shape[0]
    snr = plane_detail_snr(stack)
    ref_z = int(np.argmax(snr))
    reliable = snr >= min_detail_snr
    window = _hann2d(stack.shape[1:])

    def prep(z: int) -> np.ndarray:
        p = ndimage.gaussian_filter(np.asarray(stack[z], dtype=np.float32), 1.0)
        return (p - p.mean()) * window

    shifts = np.zeros((nz, 2), dtype=np.float64)
    for direction in (1, -1):
        ref = prep(ref_z)
        registering = True
        for z in range(ref_z + direction, nz if direction > 0 else -1, direction):
            registering = registering and bool(reliable[z])
            step = np.zeros(2)
            if registering:
                mov = prep(z)
                if mov.any() and ref.any():
                    step = phase_cross_correlation(
                        ref, mov, upsample_factor=upsample, normalization=None
                    )[0]
                    if np.hypot(*step) > max_step_shift_px:
                        step = np.zeros(2)
                ref = mov
            shifts[z] = shifts[z - direction] + step
    return shifts


def align_planes(
    stack: np.ndarray,
    shifts: np.ndarray | None = None,
    out: np.ndarray | None = None,
    **kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned float32 copy of ``stack`` (into ``out`` if given) and the shifts used."""
    from scipy import ndimage

    if shifts is None:
        shifts = plane_shifts(stack, **kwargs)
    if out is None:
        out = np.empty(stack.shape, dtype=np.float32)
    for z in range(stack.shape[0]):
        plane = np.asarray(stack[z], dtype=np.float32)
        if np.abs(shifts[z]).max() < 1e-3:
            out[z] = plane
        else:
            out[z] = ndimage.shift(plane, shifts[z], order=3, mode="nearest")
    return out, shifts


# ---------------------------------------------------------------------------------------
# Prepared (aligned, normalised, cached) fields


@dataclass
class PreparedField:
    """An aligned, normalised field stored as a float32 ``(Z, Y, X)`` ``.npy`` on disk."""

    path: Path
    """The cached array (opened memory-mapped on first use)."""
    shape: tuple[int, int, int]
    z_um: np.ndarray
    """``(Z,)`` axial position of each plane (um; Deep-Z: ``index * z_step``; Deep-Z+:
    relative to the stack's axial zero)."""
    z_step_um: float
    pixel_size_um: float | None
    normalization: Normalization
    shifts_px: np.ndarray
    """``(Z, 2)`` lateral (dy, dx) shifts applied by the alignment."""
    edf: np.ndarray
    """``(Y, X)`` normalised extended-depth-of-field image."""
    name: str
    from_cache: bool = False
    """True when the array was found in the cache rather than computed now."""
    valid: np.ndarray | None = None
    """``(Y, X)`` bool: pixels with data (None = all); set for warped (registered) fields."""
    info: dict[str, Any] = field(default_factory=dict)
    _array: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def array(self) -> np.ndarray:
        """The ``(Z, Y, X)`` float32 data, memory-mapped read-only."""
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __getstate__(self) -> dict[str, Any]:  # memmaps are reopened after fork/spawn
        d = dict(self.__dict__)
        d["_array"] = None
        return d


def _stack_key(stack: FieldStack, settings: dict[str, Any]) -> str:
    h = hashlib.blake2b(digest_size=16)
    data = np.ascontiguousarray(stack.data)
    h.update(json.dumps({**settings, "shape": data.shape, "dtype": str(data.dtype)}).encode())
    h.update(data.view(np.uint8).reshape(-1).data if data.size else b"")
    return h.hexdigest()


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def _load_cached(npy: Path, meta_path: Path, edf_path: Path, valid_path: Path | None) -> Any:
    """The cached (meta, edf, valid) if complete and readable, else None."""
    try:
        meta = json.loads(meta_path.read_text())
        arr = np.load(npy, mmap_mode="r")
        edf = np.load(edf_path)
        valid = np.load(valid_path) if valid_path is not None and valid_path.exists() else None
    except (OSError, ValueError):
        return None
    if list(arr.shape) != meta.get("shape") or arr.dtype != np.float32:
        return None
    return meta, edf, valid


def prepare_field(
    stack: FieldStack,
    cache_dir: str | os.PathLike[str],
    align: bool = True,
    max_step_shift_px: float = 5.0,
    progress: Progress | None = None,
    like: PreparedField | None = None,
) -> PreparedField:
    """Align, normalise (EDF reference, paper steps 1-4) and cache one stack.

    ``like``: a second exposure of that prepared field; its plane shifts and normalisation
    are applied instead of being measured on this stack's own noise, so both exposures
    share one intensity scale and frame. Reuses ``cache_dir/field-<hash>.npy`` when a
    previous run prepared the same raw data with the same settings.
    """
    settings: dict[str, Any] = {
        "v": CACHE_VERSION,
        "align": bool(align),
        "max_step_shift_px": float(max_step_shift_px),
    }
    if like is not None:
        settings["like"] = {
            "normalization": like.normalization.to_dict(),
            "shifts_px": np.asarray(like.shifts_px, dtype=np.float64).round(6).tolist(),
        }
    key = _stack_key(stack, settings)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    npy, meta_path, edf_path = (
        cache / f"field-{key}.npy",
        cache / f"field-{key}.json",
        cache / f"field-{key}.edf.npy",
    )
    z_um = stack.z_um
    cached = _load_cached(npy, meta_path, edf_path, None) if meta_path.exists() else None
    if cached is not None:
        meta, edf, _ = cached
        _say(progress, f"{stack.name}: using the prepared stack in the cache ({npy.name})")
        return PreparedField(
            path=npy,
            shape=tuple(meta["shape"]),
            z_um=z_um,
            z_step_um=stack.z_step_um,
            pixel_size_um=stack.pixel_size_um,
            normalization=Normalization.from_dict(meta["normalization"]),
            shifts_px=np.asarray(meta["shifts_px"], dtype=np.float64).reshape(-1, 2),
            edf=edf,
            name=stack.name,
            from_cache=True,
        )

    if like is not None:
        what = f"second exposure of {like.name}: its alignment and normalisation"
    elif align:
        what = f"aligning {stack.data.shape[0]} planes, normalising"
    else:
        what = "normalising"
    _say(progress, f"{stack.name}: {what}")
    tmp = npy.with_name(f".{npy.name}.{os.getpid()}.tmp.npy")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=stack.data.shape)
        if like is not None:
            _, shifts = align_planes(stack.data, shifts=like.shifts_px, out=out)
        elif align:
            _, shifts = align_planes(stack.data, out=out, max_step_shift_px=max_step_shift_px)
        else:
            out[:] = stack.data
            shifts = np.zeros((stack.data.shape[0], 2))
        edf_raw = extended_depth_of_field(out)
        try:
            norm = like.normalization if like is not None else fit_normalization(edf_raw)
        except InputError as exc:
            raise InputError(f"{stack.name}: cannot normalise this stack: {exc}") from None
        for z in range(out.shape[0]):
            norm.apply(out[z], out=out[z])
        out.flush()
        del out
        os.replace(tmp, npy)
        edf = norm.apply(edf_raw)
        _save_npy_atomic(edf_path, edf)
        _write_json_atomic(
            meta_path,
            {
                "settings": settings,
                "name": stack.name,
                "shape": list(stack.data.shape),
                "normalization": norm.to_dict(),
                "shifts_px": shifts.tolist(),
            },
        )
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(
            f"{stack.name}: cannot write the prepared stack to the cache {cache} ({exc}); "
            "free disk space there or pass --cache DIR"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return PreparedField(
        path=npy,
        shape=tuple(stack.data.shape),  # type: ignore[arg-type]
        z_um=z_um,
        z_step_um=stack.z_step_um,
        pixel_size_um=stack.pixel_size_um,
        normalization=norm,
        shifts_px=shifts,
        edf=edf,
        name=stack.name,
    )


# ---------------------------------------------------------------------------------------
# Foreground and regions


def noise_sigma(img: np.ndarray) -> float:
    """Robust white-noise standard deviation: MAD of neighbour differences / √2."""
    a = np.asarray(img, dtype=np.float32)
    d = np.concatenate([np.diff(a, axis=0).ravel(), np.diff(a, axis=1).ravel()])
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


def foreground_mask(
    edf: np.ndarray, low: float = 0.05, high: float = 0.25, smooth_px: float = 1.0
) -> np.ndarray:
    """Bool ``(Y, X)``: geodesic dilation of ``smoothed > high`` under ``smoothed > low``.

    The thresholds are raised to ``1.4 σ`` / ``2.8 σ`` of the EDF's pixel noise
    (:func:`noise_sigma`) when that is higher: normalisation scales pure noise to ~1 too,
    and smoothed noise peaks stay below ``2.8 σ`` (the EDF's own noise bias included), so a
    noise-only stack has no foreground.
    """
    from scipy import ndimage
    from skimage.morphology import reconstruction

    sigma = noise_sigma(edf)
    s = ndimage.gaussian_filter(np.asarray(edf, dtype=np.float32), smooth_px)
    mask = s > max(low, 1.4 * sigma)
    seed = s > max(high, 2.8 * sigma)
    if not seed.any():
        return np.zeros(s.shape, dtype=bool)
    # reconstruction by dilation needs seed <= mask: seeds are a subset of the mask
    return reconstruction(seed.astype(np.uint8), mask.astype(np.uint8), method="dilation") > 0


def _box_sums(img: np.ndarray, ys: np.ndarray, xs: np.ndarray, patch: int) -> np.ndarray:
    """Sum of ``img`` over every ``patch``² box with top-left corner ``(ys[i], xs[j])``."""
    s = np.zeros((img.shape[0] + 1, img.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(img, axis=0, dtype=np.int64), axis=1, out=s[1:, 1:])
    y0, x0 = np.ix_(ys, xs)
    y1, x1 = y0 + patch, x0 + patch
    return s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0]  # (len(ys), len(xs))


def greedy_cover(
    mask: np.ndarray,
    patch: int,
    overlap: float = 0.05,
    step: int | None = None,
    min_gain_fraction: float = 0.01,
    bounds: tuple[int, int, int, int] | None = None,
    allowed: np.ndarray | None = None,
    leftover_overlap: float = 0.5,
) -> list[tuple[int, int]]:
    """Top-left corners ``(y, x)`` of ``patch``² squares covering ``mask`` (greedy).

    Squares lie inside ``bounds = (y0, y1, x0, x1)`` (default: the whole image) and only
    ``mask`` pixels inside the bounds count. Only squares adding at least
    ``min_gain_fraction`` of a patch of uncovered foreground are taken. Phase 1 takes the
    square covering most uncovered foreground among those overlapping earlier squares by at
    most ``overlap`` of their area (ties: least overlap); phase 2 then covers what is left
    with squares overlapping earlier ones by at most ``leftover_overlap``, maximising new
    foreground minus twice-covered pixels. Fringes that only a near-duplicate square could
    cover, and specks too small for any square to gain ``min_gain_fraction``, stay uncovered
    (typically < 1 % of the foreground). With ``allowed`` (bool ``(Y, X)``), only squares
    lying wholly inside it are candidates.
    """
    h, w = mask.shape
    y0, y1, x0, x1 = bounds if bounds is not None else (0, h, 0, w)
    if y1 - y0 < patch or x1 - x0 < patch:
        return []
    step = step or max(1, patch // 16)
    ys = np.unique(np.r_[np.arange(y0, y1 - patch + 1, step), y1 - patch])
    xs = np.unique(np.r_[np.arange(x0, x1 - patch + 1, step), x1 - patch])
    remaining = np.zeros((h, w), dtype=np.uint8)
    remaining[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
    taken = np.zeros((h, w), dtype=np.uint8)
    area = patch * patch
    min_gain = max(1.0, min_gain_fraction * area)
    corners: list[tuple[int, int]] = []
    forbidden = None
    if allowed is not None:
        forbidden = _box_sums((~allowed).astype(np.uint8), ys, xs, patch) > 0
        remaining &= allowed
    limited = True  # phase 1: overlap limited; phase 2: cover the leftovers
    while True:
        gain = _box_sums(remaining, ys, xs, patch)
        if forbidden is not None:
            gain[forbidden] = 0
        eligible = gain >= min_gain
        if not eligible.any():
            break
        occ = _box_sums(taken, ys, xs, patch)
        if limited:
            eligible &= occ <= overlap * area
            if not eligible.any():
                limited = False
                continue
            score = gain * (area + 1) - occ  # most new foreground, then least overlap
        else:
            eligible &= occ <= leftover_overlap * area
            if not eligible.any():
                break
            score = gain - occ  # new foreground pixels minus pixels covered twice
        score = np.where(eligible, score, np.iinfo(np.int64).min)
        i, j = np.unravel_index(int(np.argmax(score)), score.shape)
        y, x = int(ys[i]), int(xs[j])
        corners.append((y, x))
        remaining[y : y + patch, x : x + patch] = 0
        taken[y : y + patch, x : x + patch] = 1
    return corners


def covered_fraction(
    mask: np.ndarray, corners: Sequence[tuple[int, int]], patch: int
) -> tuple[int, int]:
    """``(foreground pixels inside the squares, foreground pixels)``."""
    covered = np.zeros(mask.shape, dtype=bool)
    for y, x in corners:
        covered[y : y + patch, x : x + patch] = True
    return int(np.count_nonzero(covered & mask)), int(np.count_nonzero(mask))


def sharpest_planes(
    array: np.ndarray, corners: Sequence[tuple[int, int]], patch: int
) -> np.ndarray:
    """Per corner, the plane index whose ``patch``² crop has the highest standard deviation."""
    if not corners:
        return np.zeros(0, dtype=np.int64)
    stds = np.empty((array.shape[0], len(corners)))
    for z in range(array.shape[0]):
        plane = np.asarray(array[z])
        for k, (y, x) in enumerate(corners):
            stds[z, k] = plane[y : y + patch, x : x + patch].std()
    return np.argmax(stds, axis=0)


@dataclass(frozen=True)
class Region:
    """A ``size``² region of one field: its inputs and targets (plane index ranges)."""

    field: int
    """Index of the input field in ``PairData.fields``."""
    y: int
    x: int
    size: int
    mid: int
    """Sharpest input plane (the region's middle)."""
    inputs: tuple[int, int]
    """First and last input plane (inclusive)."""
    target_field: int
    """Index of the target field (the input field for Deep-Z, the confocal one for Deep-Z+)."""
    targets: tuple[int, int]
    """First and last target plane (inclusive)."""
    ty: int
    """Target crop corner (equal to ``y``/``x`` unless a per-region registration moved it)."""
    tx: int
    split: str = "train"
    """``train``, ``val`` or ``test``."""


def _window(z_um: np.ndarray, centre: float, half: float) -> tuple[int, int] | None:
    idx = np.flatnonzero(np.abs(z_um - centre) <= half + _EPS)
    return (int(idx[0]), int(idx[-1])) if idx.size else None


def make_regions(
    fields: Sequence[PreparedField],
    field_index: int,
    target_index: int,
    corners: Sequence[tuple[int, int]],
    cfg: PairConfig,
    split: str,
    target_offsets: Sequence[tuple[int, int]] | None = None,
) -> list[Region]:
    """Regions at ``corners``: middle = sharpest input plane; planes within ±z_half_range."""
    f_in, f_out = fields[field_index], fields[target_index]
    mids = sharpest_planes(f_in.array, corners, cfg.patch)
    regions = []
    for k, ((y, x), mid) in enumerate(zip(corners, mids, strict=True)):
        centre = float(f_in.z_um[mid])
        win_in = _window(f_in.z_um, centre, cfg.z_half_range_um)
        win_out = _window(f_out.z_um, centre, cfg.target_half_range_um or cfg.z_half_range_um)
        if win_in is None or win_out is None:
            continue
        dy, dx = target_offsets[k] if target_offsets is not None else (0, 0)
        regions.append(
            Region(
                field=field_index,
                y=int(y),
                x=int(x),
                size=cfg.patch,
                mid=int(mid),
                inputs=win_in,
                target_field=target_index,
                targets=win_out,
                ty=int(y + dy),
                tx=int(x + dx),
                split=split,
            )
        )
    return regions


def split_regions(regions: list[Region], val_fraction: float, seed: int) -> list[Region]:
    """Assign ``val`` to a random ``val_fraction`` of the non-test regions (at least one)."""
    free = [i for i, r in enumerate(regions) if r.split != "test"]
    if len(free) < 2:
        raise InputError(
            f"only {len(free)} training region(s) of foreground found; training needs at least "
            "2 (one for validation): give more or larger stacks, or a smaller --patch"
        )
    n_val = min(len(free) - 1, max(1, round(val_fraction * len(free))))
    rng = np.random.default_rng([seed, 7])
    val = set(rng.permutation(free)[:n_val].tolist())
    return [
        replace(r, split="val" if i in val else ("test" if r.split == "test" else "train"))
        for i, r in enumerate(regions)
    ]


#: Columns of a pairs table.
PAIR_DTYPE = np.dtype(
    [("region", np.int32), ("zin", np.int32), ("ztg", np.int32), ("dpm_um", np.float32)]
)


def make_pairs(
    regions: Sequence[Region], fields: Sequence[PreparedField], targets_per_input: int, seed: int
) -> np.ndarray:
    """Structured array (``PAIR_DTYPE``): every input plane × ``targets_per_input`` random
    target planes of its region (without replacement; the input plane itself may be one,
    DPM 0). ``dpm_um = z_target − z_input`` (Deep-Z: ``z_step × (target − input index)``).
    """
    rng = np.random.default_rng([seed, 11])
    rows: list[tuple[int, int, int, float]] = []
    for r_i, r in enumerate(regions):
        z_in, z_out = fields[r.field].z_um, fields[r.target_field].z_um
        targets = np.arange(r.targets[0], r.targets[1] + 1)
        k = min(targets_per_input, targets.size)
        for zi in range(r.inputs[0], r.inputs[1] + 1):
            for zt in rng.choice(targets, size=k, replace=False):
                rows.append((r_i, zi, int(zt), float(z_out[zt] - z_in[zi])))
    return np.array(rows, dtype=PAIR_DTYPE)


# ---------------------------------------------------------------------------------------
# Summary and the data set


@dataclass
class DatasetSummary:
    """What a model was trained on (goes into the model card's ``training.data``)."""

    n_stacks: int
    sources: list[str]
    regions: dict[str, int]
    """Regions per split (``train``, ``val``, ``test``)."""
    pairs: dict[str, int]
    """Pairs per split; ``pairs["train"]`` is the number of pairs per epoch."""
    z_step_um: float
    pixel_size_um: float | None
    patch: int
    z_half_range_um: float
    """Planes within ±this of each region's sharpest plane were used."""
    dpm_range_um: tuple[float, float]
    """Smallest and largest DPM a training pair can have (the model's trained range)."""
    targets_per_input: int
    holdout: str
    """How the test regions were held out."""
    modality: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dpm_range_um"] = [float(v) for v in self.dpm_range_um]
        return d


class PairData:
    """Prepared fields, regions (with their split) and pair tables, plus the summary."""

    def __init__(
        self,
        fields: list[PreparedField],
        regions: list[Region],
        pairs: np.ndarray,
        cfg: PairConfig,
        summary: DatasetSummary,
    ) -> None:
        self.fields = fields
        self.regions = regions
        self.cfg = cfg
        self.summary = summary
        split_of = np.array([SPLITS.index(r.split) for r in regions], dtype=np.int64)
        self.pairs: dict[str, np.ndarray] = {
            s: pairs[split_of[pairs["region"]] == i] if len(pairs) else pairs
            for i, s in enumerate(SPLITS)
        }

    def dataset(self, split: str = "train", augment: bool | None = None) -> PairDataset:
        """The pairs of ``split``; training augments with flips/rotations by default."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return PairDataset(
            self, self.pairs[split], split == "train" if augment is None else augment
        )

    def fingerprint(self) -> str:
        """Hash of the regions and pairs: a resumed training must see the same data."""
        h = hashlib.blake2b(digest_size=12)
        h.update(json.dumps([asdict(r) for r in self.regions]).encode())
        for s in SPLITS:
            h.update(self.pairs[s].tobytes())
        return h.hexdigest()

    def test_regions(self) -> list[dict[str, Any]]:
        """Held-out regions (field name, corner, size, planes) for a later evaluation."""
        return [
            {
                "field": self.fields[r.field].name,
                "y": r.y,
                "x": r.x,
                "size": r.size,
                "mid": r.mid,
                "inputs": list(r.inputs),
            }
            for r in self.regions
            if r.split == "test"
        ]


def augment(arr: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 flips/90° rotations of the last two axes (``code`` 0 = identity)."""
    out = np.rot90(arr, k=code % 4, axes=(-2, -1))
    if code >= 4:
        out = out[..., ::-1]
    return out


class PairDataset(torch.utils.data.Dataset):
    """``(input (2, P, P) [image, dpm / dpm_scale], target (1, P, P))`` float32 pairs.

    Crops are read from the memory-mapped fields when asked for. ``__getitem__`` draws the
    augmentation (one of 8 flips/rotations, training only) from ``(seed, epoch, index)``;
    :meth:`sample` / :meth:`batch` take it explicitly (the trainer's deterministic path).
    """

    def __init__(self, data: PairData, pairs: np.ndarray, augment: bool) -> None:
        self.data = data
        self.pairs = pairs
        self.augment = augment
        self.epoch = 0
        self.seed = data.cfg.seed

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def sample(self, i: int, aug: int = 0) -> tuple[np.ndarray, np.ndarray]:
        row = self.pairs[i]
        r = self.data.regions[int(row["region"])]
        p = r.size
        src = self.data.fields[r.field].array
        tgt = self.data.fields[r.target_field].array
        out = np.empty((2, p, p), dtype=np.float32)
        out[0] = src[int(row["zin"]), r.y : r.y + p, r.x : r.x + p]
        out[1] = float(row["dpm_um"]) / self.data.cfg.dpm_scale_um
        target = np.asarray(tgt[int(row["ztg"]), r.ty : r.ty + p, r.tx : r.tx + p])[None]
        if aug:
            return np.ascontiguousarray(augment(out, aug)), np.ascontiguousarray(
                augment(target, aug)
            )
        return out, np.array(target, dtype=np.float32)

    def batch(
        self, indices: Sequence[int] | np.ndarray, augs: Sequence[int] | np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked ``(N, 2, P, P)`` inputs and ``(N, 1, P, P)`` targets."""
        codes = augs if (augs is not None and self.augment) else [0] * len(indices)
        items = [self.sample(int(i), int(a)) for i, a in zip(indices, codes, strict=True)]
        x = torch.from_numpy(np.stack([a for a, _ in items]))
        z = torch.from_numpy(np.stack([b for _, b in items]))
        return x, z

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        aug = 0
        if self.augment:
            aug = int(np.random.default_rng([self.seed, self.epoch, int(i)]).integers(8))
        x, z = self.sample(int(i), aug)
        return torch.from_numpy(x), torch.from_numpy(z)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(len(self)):
            yield self[i]


# ---------------------------------------------------------------------------------------
# The whole Deep-Z pipeline


def holdout_bounds(
    index: int, shape: tuple[int, int], cfg: PairConfig
) -> list[tuple[tuple[int, int, int, int], str]]:
    """``[(bounds, split)]`` of a field: where its training/validation and test regions lie."""
    h, w = shape
    if index in cfg.holdout_stacks:
        return [((0, h, 0, w), "test")]
    if cfg.holdout_right > 0:
        xb = round(w * (1 - cfg.holdout_right))
        if xb < cfg.patch or w - xb < cfg.patch:
            raise InputError(
                f"holding out the right {cfg.holdout_right:.0%} of a {w} px wide field leaves "
                f"a part narrower than the {cfg.patch} px patch; change the fraction or --patch"
            )
        return [((0, h, 0, xb), "train"), ((0, h, xb, w), "test")]
    return [((0, h, 0, w), "train")]


def holdout_description(cfg: PairConfig) -> str:
    parts = []
    if cfg.holdout_stacks:
        parts.append(f"stacks {list(cfg.holdout_stacks)} (whole fields)")
    if cfg.holdout_right > 0:
        parts.append(f"right {cfg.holdout_right:.0%} of every field")
    return "; ".join(parts) or "none"


def check_stacks(stacks: Sequence[FieldStack], cfg: PairConfig) -> None:
    """InputError for stacks that cannot give pairs with these settings."""
    if not stacks:
        raise InputError("no z-stacks given (--data)")
    for k in cfg.holdout_stacks:
        if not 0 <= k < len(stacks):
            raise InputError(f"held-out stack index {k} is not one of 0..{len(stacks) - 1}")
    for s in stacks:
        nz, h, w = s.data.shape
        if cfg.half_planes(s.z_step_um) < 1:
            raise InputError(
                f"--z-half-range {cfg.z_half_range_um:g} um is below the z step of {s.name} "
                f"({s.z_step_um:g} um): regions would have one plane; make it >= the z step"
            )
        span = float(np.ptp(s.z_um))
        if span < 2 * cfg.z_half_range_um - _EPS:
            need = 2 * cfg.half_planes(s.z_step_um) + 1
            raise InputError(
                f"{s.name}: {nz} planes at {s.z_step_um:g} um span ±{span / 2:g} um, too few "
                f"for --z-half-range {cfg.z_half_range_um:g} (needs {need} planes); pass "
                f"--z-half-range {span / 2:g} or less, or a deeper stack"
            )
        if h < cfg.patch or w < cfg.patch:
            raise InputError(
                f"{s.name}: planes of {h}×{w} px are smaller than the {cfg.patch} px patch; "
                "pass a smaller --patch"
            )


def dpm_range(regions: Sequence[Region], fields: Sequence[PreparedField]) -> tuple[float, float]:
    """Smallest and largest DPM any pair of the training/validation regions can have."""
    lo, hi = math.inf, -math.inf
    for r in regions:
        if r.split == "test":
            continue
        z_in = fields[r.field].z_um[r.inputs[0] : r.inputs[1] + 1]
        z_out = fields[r.target_field].z_um[r.targets[0] : r.targets[1] + 1]
        lo = min(lo, float(z_out.min() - z_in.max()))
        hi = max(hi, float(z_out.max() - z_in.min()))
    return (round(lo, 6), round(hi, 6))


def finish(
    fields: list[PreparedField],
    regions: list[Region],
    cfg: PairConfig,
    stacks: Sequence[FieldStack],
    modality: dict[str, str],
    extra: dict[str, Any] | None = None,
) -> PairData:
    """Split, draw the pairs, summarise (shared by Deep-Z and Deep-Z+)."""
    if not any(r.split != "test" for r in regions):
        raise InputError(
            "no foreground found in the training stacks (nothing above the mask threshold in "
            "their EDF images): check that the stacks show fluorescent signal on a dark "
            "background"
        )
    regions = split_regions(regions, cfg.val_fraction, cfg.seed)
    if cfg.target_half_range_um is not None:
        extra = {**(extra or {}), "target_half_range_um": cfg.target_half_range_um}
    pairs = make_pairs(regions, fields, cfg.targets_per_input, cfg.seed)
    px = [s.pixel_size_um for s in stacks if s.pixel_size_um]
    counts = {s: sum(r.split == s for r in regions) for s in SPLITS}
    summary = DatasetSummary(
        n_stacks=len(stacks),
        sources=[s.name for s in stacks],
        regions=counts,
        pairs={},
        z_step_um=float(np.median([s.z_step_um for s in stacks])),
        pixel_size_um=float(np.median(px)) if px else None,
        patch=cfg.patch,
        z_half_range_um=cfg.z_half_range_um,
        dpm_range_um=dpm_range(regions, fields),
        targets_per_input=cfg.targets_per_input,
        holdout=holdout_description(cfg),
        modality=dict(modality),
        extra=dict(extra or {}),
    )
    data = PairData(fields, regions, pairs, cfg, summary)
    summary.pairs = {s: len(data.pairs[s]) for s in SPLITS}
    return data


def check_second_exposures(stacks: Sequence[FieldStack], second: Sequence[FieldStack]) -> None:
    """Each ``second[k]`` must be another exposure of ``stacks[k]``: same shape and planes."""
    if len(second) != len(stacks):
        raise InputError(
            f"{len(stacks)} --data stack(s) but {len(second)} --second-exposure stack(s): give "
            "one second exposure per --data stack, in the same order"
        )
    for a, b in zip(stacks, second, strict=True):
        if a.data.shape != b.data.shape or not np.allclose(a.z_um, b.z_um, atol=1e-3):
            raise InputError(
                f"{b.name} is not a second exposure of {a.name}: {b.data.shape} planes at "
                f"{b.z_um[0]:g}..{b.z_um[-1]:g} um against {a.data.shape} at "
                f"{a.z_um[0]:g}..{a.z_um[-1]:g} um (same field, same planes needed)"
            )
        if np.array_equal(a.data, b.data):
            raise InputError(
                f"{b.name} is identical to {a.name}: a second exposure needs its own camera "
                "noise (another acquisition, or simulate --noise-seed)"
            )


def build_pairs(
    stacks: Sequence[FieldStack],
    cfg: PairConfig,
    cache_dir: str | os.PathLike[str],
    progress: Progress | None = None,
    second: Sequence[FieldStack] | None = None,
) -> PairData:
    """The Deep-Z training data from wide-field z-stacks (one field of view each).

    ``second``: another exposure of each stack (same field and planes, independent camera
    noise); the targets are then read from it, so no pair shares its input's noise and the
    L2 optimum is the noise-free plane at every DPM, 0 included (Noise2Noise).
    """
    check_stacks(stacks, cfg)
    if second is not None:
        check_second_exposures(stacks, second)
    fields = [
        prepare_field(s, cache_dir, cfg.align, cfg.max_step_shift_px, progress) for s in stacks
    ]
    n = len(fields)
    if second is not None:
        fields += [
            prepare_field(s, cache_dir, progress=progress, like=f)
            for s, f in zip(second, fields, strict=True)
        ]
    regions: list[Region] = []
    cover = np.zeros(2, dtype=np.int64)
    for i, f in enumerate(fields[:n]):
        mask = foreground_mask(f.edf, cfg.mask_low, cfg.mask_high)
        corners_all = []
        target = i if second is None else n + i
        for bounds, split in holdout_bounds(i, f.shape[1:], cfg):
            corners = greedy_cover(mask, cfg.patch, cfg.overlap, bounds=bounds)
            regions += make_regions(fields, i, target, corners, cfg, split)
            corners_all += corners
        cover += covered_fraction(mask, corners_all, cfg.patch)
        _say(progress, f"{f.name}: {sum(r.field == i for r in regions)} regions")
    extra: dict[str, Any] = {"foreground_covered": round(float(cover[0] / max(cover[1], 1)), 4)}
    if second is not None:
        extra["targets"] = "second exposure"
        extra["second_exposures"] = [s.name for s in second]
    return finish(
        fields, regions, cfg, stacks, {"input": "widefield", "output": "widefield"}, extra
    )
