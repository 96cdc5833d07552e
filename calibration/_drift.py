"""Drift compensation: track the sample's defocus live and refocus every frame back onto it.

Pieces (all numbers in, numbers out; no Qt, no engine import):

- :class:`DriftEstimator` — the sample's global defocus in one frame from a coarse virtual
  sweep (default every 1 µm over the model's range, at most −12…+12 µm) on a *reduced
  frame*, a focus measure per plane (Brenner gradient by default), the log-parabola vertex
  around the best plane, then a fine sweep (0.25 µm steps, ±1 µm) around it. The reduced
  frame is a **crop**, ``downsample``× smaller per axis, placed where the frame holds the
  most signal (``roi="auto"``), at the centre, or at a fixed ``(y0, x0, h, w)``. It is not a
  binned frame: Deep-Z is only valid at the pixel size it was trained for.
- filters for the raw estimates: :class:`KalmanDrift` (1D constant-velocity Kalman with
  innovation gating; extrapolates between estimates, the default) and :class:`MedianDrift`
  (running median with MAD gating; no model of motion, robust to bursts of bad estimates).
  Both re-initialise after ``max_rejects`` consecutive rejections (a real jump, e.g. the
  stage moved).
- :class:`DriftCompensationPlan` — a :class:`~live_deepz.dpm.PlanePlan` whose DPM for each
  frame is ``correction + offsets_um[k]`` with ``correction = filtered defocus + target``
  (``hold="sample"``) or ``= change of the filtered defocus since tracking started +
  target`` (``hold="initial"``: keep the plane that was in view).

**Sign**: if the sample drifted so that its in-focus plane is now ``d`` µm deeper than the
focal plane, the sweep peaks at ``+d`` and the correction DPM is ``+d`` (+ the target
offset: 0 = the sample's own focus, +2 = 2 µm deeper than it).

**How the engine feeds it** (keeps the engine generic): a plan that also has
``update(image_norm, frame_index, timestamp_ms)`` (the :class:`FeedbackPlan` protocol) gets
every normalised frame *before* ``dpms_for_frame`` is asked for the same frame. With
``asynchronous=True`` the estimate runs on a worker thread on a copy of the reduced frame
(frames arriving while it is busy are skipped and counted) and the plan serves the filter's
latest prediction, so the live loop never waits for a sweep; with ``False`` (default,
deterministic) the estimate for frame ``n`` is computed inside ``update`` and already
corrects frame ``n``. Recordings store ``describe()`` once and :meth:`served_um` per frame
(the DPM timeline); :meth:`trace` feeds the UI's drift plot.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy import ndimage

from live_deepz import dpm as dpm_mod
from live_deepz.errors import InputError

from ._focus import FOCUS_MEASURES, RefocusFn, focus_measure, parabola_peak, virtual_sweep

__all__ = [
    "DriftCompensationPlan",
    "DriftEstimator",
    "DriftFilter",
    "DriftMeasurement",
    "FeedbackPlan",
    "KalmanDrift",
    "MedianDrift",
]


@dataclass
class DriftMeasurement:
    """One raw defocus estimate."""

    ok: bool
    defocus_um: float
    """The sample's in-focus plane relative to the frame's focal plane (+ = deeper); NaN if
    not ``ok``."""
    z_std_um: float
    roi: tuple[int, int, int, int]
    """``(y0, x0, h, w)`` of the reduced frame."""
    offsets_um: np.ndarray = field(repr=False)
    curve: np.ndarray = field(repr=False)
    """Focus measure per offset (coarse then fine sweep)."""
    message: str = ""


class DriftEstimator:
    """Estimates a frame's global defocus from a virtual sweep on a reduced frame.

    Parameters
    ----------
    refocus_fn : the :data:`~live_deepz.calibration.RefocusFn` (engine or oracle).
    target_offset_um : where to refocus relative to the sample's own focus (used by the plan).
    sweep_um : ``(lo, hi)`` of the coarse sweep, clipped to ``z_range_um`` (default:
        ``refocus_fn.z_range_um``) — the sweep never leaves the model's range.
    coarse_step_um, refine_step_um, refine_halfwidth_um : the two sweeps; ``refine_step_um=0``
        skips the fine one.
    downsample : the reduced frame is ``1/downsample`` of the frame per axis (at least
        ``min_crop_px``), a crop (see the module docstring).
    roi : ``"auto"`` (the window with the most signal), ``"center"``, or ``(y0, x0, h, w)``.
    measure : one of :data:`~live_deepz.calibration.FOCUS_MEASURES`.
    every_n : the plan estimates on every ``every_n``-th frame.
    min_prominence : a coarse curve varying by less than this (``1 − min/max``) has no focus.
    smooth_px : Gaussian σ (pixels) applied to each refocused plane before the focus measure
        (0 = none; a gradient measure amplifies pixel noise, but smoothing also shifts the
        balance between the layers of a thick sample).
    prior_window_um : with a prior (the plan passes the filter's prediction), the peak is
        the local maximum of the coarse curve within this distance of it (0 = always the
        global maximum).
    """

    def __init__(
        self,
        refocus_fn: RefocusFn,
        target_offset_um: float = 0.0,
        sweep_um: tuple[float, float] = (-12.0, 12.0),
        coarse_step_um: float = 1.0,
        refine_step_um: float = 0.25,
        refine_halfwidth_um: float = 1.0,
        downsample: int = 4,
        every_n: int = 1,
        *,
        roi: str | Sequence[int] = "auto",
        measure: str = "brenner",
        z_range_um: tuple[float, float] | None = None,
        min_prominence: float = 0.1,
        min_crop_px: int = 64,
        smooth_px: float = 0.0,
        prior_window_um: float = 2.0,
    ) -> None:
        self.refocus_fn = refocus_fn
        self.target_offset_um = float(target_offset_um)
        if measure not in FOCUS_MEASURES:
            raise InputError(f"unknown focus measure {measure!r}; use {', '.join(FOCUS_MEASURES)}")
        self.measure = measure
        zr = z_range_um if z_range_um is not None else getattr(refocus_fn, "z_range_um", None)
        self.z_range_um = None if zr is None else (float(zr[0]), float(zr[1]))
        lo, hi = float(sweep_um[0]), float(sweep_um[1])
        if self.z_range_um is not None:
            lo, hi = max(lo, self.z_range_um[0]), min(hi, self.z_range_um[1])
        if not hi > lo:
            raise InputError(f"the drift sweep {sweep_um} leaves no range inside {self.z_range_um}")
        if not coarse_step_um > 0:
            raise InputError(f"coarse_step_um must be > 0, got {coarse_step_um}")
        n = math.floor((hi - lo) / coarse_step_um + 1e-9) + 1
        if n < 3:
            raise InputError(f"the drift sweep {lo:g}…{hi:g} µm has fewer than 3 planes")
        self.sweep_um = (lo, hi)
        self.coarse_offsets = lo + coarse_step_um * np.arange(n)
        self.refine_step_um = float(refine_step_um)
        self.refine_halfwidth_um = float(refine_halfwidth_um)
        if int(downsample) < 1:
            raise InputError(f"downsample must be >= 1, got {downsample}")
        self.downsample = int(downsample)
        if int(every_n) < 1:
            raise InputError(f"every_n must be >= 1, got {every_n}")
        self.every_n = int(every_n)
        if isinstance(roi, str):
            if roi not in ("auto", "center"):
                raise InputError(f"roi must be 'auto', 'center' or (y0, x0, h, w), got {roi!r}")
            self.roi: str | tuple[int, int, int, int] = roi
        else:
            vals = tuple(int(v) for v in roi)
            if len(vals) != 4 or vals[2] < 8 or vals[3] < 8 or min(vals[:2]) < 0:
                raise InputError(f"roi must be (y0, x0, h, w) with h, w >= 8, got {roi!r}")
            self.roi = (vals[0], vals[1], vals[2], vals[3])
        self.min_prominence = float(min_prominence)
        self.smooth_px = float(smooth_px)
        self.prior_window_um = float(prior_window_um)
        self.min_crop_px = int(min_crop_px)
        self.n_planes_per_estimate = len(self.coarse_offsets) + (
            0 if self.refine_step_um <= 0 else len(self._fine_offsets(0.0))
        )

    def reset(self) -> None:
        """Forget what earlier frames taught (nothing here: each estimate stands alone;
        :class:`~live_deepz.calibration.MatchDriftEstimator` drops its keyframe)."""

    # ------------------------------------------------------------------ reduced frame
    def crop_window(self, image: np.ndarray) -> tuple[int, int, int, int]:
        """``(y0, x0, h, w)`` of the reduced frame for this image."""
        big_h, big_w = image.shape
        if isinstance(self.roi, tuple):
            y0, x0, h, w = self.roi
            if y0 + h > big_h or x0 + w > big_w:
                raise InputError(f"roi {self.roi} does not fit the {big_h}×{big_w} frame")
            return y0, x0, h, w
        h = min(big_h, max(big_h // self.downsample, self.min_crop_px))
        w = min(big_w, max(big_w // self.downsample, self.min_crop_px))
        if self.roi == "center" or (h == big_h and w == big_w):
            return (big_h - h) // 2, (big_w - w) // 2, h, w
        # "auto": the h×w window holding the most (background-subtracted) signal, found on
        # a block-averaged frame (cheap), clipped to the frame
        b = max(1, min(h, w) // 16)
        ny, nx = big_h // b, big_w // b
        small = image[: ny * b, : nx * b].reshape(ny, b, nx, b).mean(axis=(1, 3))
        small = np.clip(small - np.median(small), 0.0, None)
        box = ndimage.uniform_filter(small, size=(max(h // b, 1), max(w // b, 1)), mode="constant")
        cy, cx = np.unravel_index(int(np.argmax(box)), box.shape)
        y0 = int(np.clip((cy + 0.5) * b - h / 2, 0, big_h - h))
        x0 = int(np.clip((cx + 0.5) * b - w / 2, 0, big_w - w))
        return y0, x0, h, w

    def _fine_offsets(self, center: float) -> np.ndarray:
        hw, st = self.refine_halfwidth_um, self.refine_step_um
        n = math.floor(hw / st + 1e-9)
        off = center + st * np.arange(-n, n + 1)
        lo, hi = self.sweep_um
        return off[(off >= lo - 1e-9) & (off <= hi + 1e-9)]

    def _curve(self, crop: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        vals = np.zeros(len(offsets))
        sm = self.smooth_px

        def on_plane(k: int, plane: np.ndarray) -> None:
            p = ndimage.gaussian_filter(np.asarray(plane, np.float32), sm) if sm > 0 else plane
            vals[k] = focus_measure(p, self.measure)

        virtual_sweep(self.refocus_fn, crop, offsets, on_plane, chunk=len(offsets))
        return vals

    @staticmethod
    def _peak(
        offsets: np.ndarray, curve: np.ndarray, index: int | None = None
    ) -> tuple[float, float, str]:
        """Log-parabola vertex around the maximum → ``(z, z_std, status)``.

        ``status``: ``"ok"``; ``"end"`` (the maximum is on the first/last plane and the
        parabola through the three end planes peaks within half a step of it: ``z`` is that
        end — the model cannot refocus beyond it); ``"beyond"`` (the focus lies outside the
        sweep); ``"flat"`` (no peak).
        """
        n = len(curve)
        i = int(np.argmax(curve)) if index is None else int(index)
        j = min(max(i, 1), n - 2)
        v = curve[j - 1 : j + 2]
        if not np.all(v > 0):
            return math.nan, math.inf, "flat"
        lv = np.log(v)
        zp, curv, zsd = parabola_peak(offsets[None, j - 1 : j + 2], lv[None], 0.01)
        if i == j:
            if not curv[0] < 0:
                return math.nan, math.inf, "flat"
            return float(zp[0]), float(zsd[0]), "ok"
        if not curv[0] < 0:
            return math.nan, math.inf, "beyond"
        a = float(curv[0]) / 2.0
        b = (lv[2] - lv[0]) / (offsets[j + 1] - offsets[j - 1]) - 2.0 * a * offsets[j]
        vertex = -b / (2.0 * a)
        step = abs(float(offsets[i] - offsets[j]))
        outward = (vertex - offsets[i]) * (i - j)  # > 0: beyond the end
        if outward > 0.5 * step:
            return math.nan, math.inf, "beyond"
        if outward > 0:
            return float(offsets[i]), max(float(zsd[0]), 0.5 * step), "end"
        return float(vertex), float(zsd[0]), "ok"

    def _end_message(self, offsets: np.ndarray, i: int, status: str) -> str:
        side = "deeper" if i == len(offsets) - 1 else "shallower"
        if status == "end":
            return f"the sample's focus is at the end of the sweep ({offsets[i]:+g} µm)"
        if status == "beyond":
            return (
                f"the sample's focus lies beyond the end of the sweep ({side} than "
                f"{offsets[i]:+g} µm, outside the model's range)"
            )
        return "no focus peak in the sweep (flat or noisy focus curve)"

    def estimate(self, image_norm: np.ndarray, prior_um: float | None = None) -> DriftMeasurement:
        """The frame's defocus (never raises for a bad frame: ``ok=False`` with a message).

        ``prior_um`` (e.g. the filter's prediction) makes the estimate follow the focus peak
        nearest to it: with a sample in several layers (a worm's neurons spread over ±14 µm)
        the focus curve has several peaks, and the global maximum may hop between them.
        """
        img = np.asarray(image_norm)
        if img.ndim != 2:
            raise InputError(f"the drift estimator needs an (H, W) frame, got {img.shape}")
        y0, x0, h, w = self.crop_window(img)
        return self.estimate_crop(img[y0 : y0 + h, x0 : x0 + w], (y0, x0, h, w), prior_um)

    def _select(self, offsets: np.ndarray, curve: np.ndarray, prior_um: float | None) -> int:
        """Index of the peak to use: the global maximum, or with a prior the highest local
        maximum within ``prior_window_um`` of it (when there is one)."""
        if prior_um is None or not math.isfinite(prior_um) or self.prior_window_um <= 0:
            return int(np.argmax(curve))
        left = np.concatenate([[-np.inf], curve[:-1]])
        right = np.concatenate([curve[1:], [-np.inf]])
        local = (curve >= left) & (curve >= right)
        near = np.abs(offsets - prior_um) <= self.prior_window_um
        cand = np.nonzero(local & near)[0]
        if cand.size == 0:
            return int(np.argmax(curve))
        return int(cand[np.argmax(curve[cand])])

    def estimate_crop(
        self,
        crop: np.ndarray,
        roi: tuple[int, int, int, int] | None = None,
        prior_um: float | None = None,
    ) -> DriftMeasurement:
        """:meth:`estimate` on an already reduced frame (``roi`` is only recorded)."""
        roi = roi if roi is not None else (0, 0, int(crop.shape[0]), int(crop.shape[1]))
        offsets = self.coarse_offsets
        curve = self._curve(crop, offsets)
        cmax = float(curve.max())
        prominence = 1.0 - float(curve.min()) / cmax if cmax > 0 else 0.0
        if prominence < self.min_prominence:
            return DriftMeasurement(
                False,
                math.nan,
                math.inf,
                roi,
                offsets,
                curve,
                f"no focus: the focus measure varies by only {100 * prominence:.1f} % over "
                "the sweep (no structure in the reduced frame?)",
            )
        i = self._select(offsets, curve, prior_um)
        z, z_std, status = self._peak(offsets, curve, i)
        msg = "" if status == "ok" else self._end_message(offsets, i, status)
        if status == "flat" or (status == "beyond" and self.refine_step_um <= 0):
            return DriftMeasurement(False, math.nan, math.inf, roi, offsets, curve, msg)
        if self.refine_step_um > 0:
            fine = self._fine_offsets(float(offsets[i]))
            if len(fine) >= 3:
                fcurve = self._curve(crop, fine)
                zf, zf_std, fstatus = self._peak(fine, fcurve)
                all_off = np.concatenate([offsets, fine])
                all_curve = np.concatenate([curve, fcurve])
                fi = int(np.argmax(fcurve))
                if fstatus in ("ok", "end"):
                    z, z_std = zf, zf_std
                    msg = "" if fstatus == "ok" else self._end_message(fine, fi, fstatus)
                elif fstatus == "beyond" or status == "beyond":
                    msg = self._end_message(fine, fi, "beyond")
                    return DriftMeasurement(False, math.nan, math.inf, roi, all_off, all_curve, msg)
                offsets, curve = all_off, all_curve
            elif status == "beyond":
                return DriftMeasurement(False, math.nan, math.inf, roi, offsets, curve, msg)
        return DriftMeasurement(True, z, z_std, roi, offsets, curve, msg)

    def describe(self) -> dict[str, Any]:
        return {
            "method": "virtual sweep on a reduced frame, log-parabola peak",
            "measure": self.measure,
            "smooth_px": self.smooth_px,
            "prior_window_um": self.prior_window_um,
            "sweep_um": list(self.sweep_um),
            "coarse_step_um": float(self.coarse_offsets[1] - self.coarse_offsets[0]),
            "refine_step_um": self.refine_step_um,
            "refine_halfwidth_um": self.refine_halfwidth_um,
            "downsample": self.downsample,
            "roi": self.roi if isinstance(self.roi, str) else list(self.roi),
            "every_n": self.every_n,
            "target_offset_um": self.target_offset_um,
            "planes_per_estimate": self.n_planes_per_estimate,
        }


# --------------------------------------------------------------------------- filters


@runtime_checkable
class DriftFilter(Protocol):
    """Smooths raw defocus estimates; ``value(t)`` is the estimate to apply at time ``t``."""

    def update(self, t_ms: float, z_um: float, std_um: float | None = None) -> bool:
        """Feed one raw estimate; False when it was rejected as an outlier."""
        ...

    def value(self, t_ms: float | None = None) -> float | None:
        """The filtered defocus at ``t_ms`` (None before the first accepted estimate)."""
        ...

    def reset(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


class KalmanDrift:
    """1D constant-velocity Kalman filter for the defocus ``z`` (µm) and its velocity.

    State ``[z, v]``; between estimates ``z`` moves with ``v`` and the velocity takes a
    white-noise acceleration of spectral density ``accel_um2_s3`` (µm²/s³: larger follows
    faster changes, smaller smooths more). The measurement noise is the estimate's own
    ``std_um`` when given (floored at ``min_measurement_std_um``), else
    ``measurement_std_um``. An estimate whose innovation exceeds ``gate_sigma`` standard
    deviations is rejected; after ``max_rejects`` consecutive rejections the filter restarts
    from the next estimate. :meth:`value` predicts to the requested time (no update), so
    frames between estimates get an extrapolated correction — at most
    ``max_extrapolation_s`` past the last accepted estimate (then it holds), so a run of
    failed estimates cannot run the planes away.
    """

    def __init__(
        self,
        accel_um2_s3: float = 1.0,
        measurement_std_um: float = 0.25,
        min_measurement_std_um: float = 0.05,
        gate_sigma: float = 4.0,
        max_rejects: int = 3,
        initial_velocity_std_um_s: float = 1.0,
        max_extrapolation_s: float = 2.0,
    ) -> None:
        self.q = float(accel_um2_s3)
        self.max_extrapolation_s = float(max_extrapolation_s)
        self.r_default = float(measurement_std_um)
        self.r_min = float(min_measurement_std_um)
        self.gate = float(gate_sigma)
        self.max_rejects = int(max_rejects)
        self.v0_std = float(initial_velocity_std_um_s)
        self.reset()

    def reset(self) -> None:
        self.x: np.ndarray | None = None
        self.p = np.zeros((2, 2))
        self.t_ms: float | None = None
        self.rejects = 0
        self.n_rejected = 0

    def _predict(self, t_ms: float) -> tuple[np.ndarray, np.ndarray]:
        assert self.x is not None and self.t_ms is not None
        dt = max((t_ms - self.t_ms) / 1000.0, 0.0)
        f = np.array([[1.0, dt], [0.0, 1.0]])
        q = self.q * np.array([[dt**3 / 3.0, dt**2 / 2.0], [dt**2 / 2.0, dt]])
        return f @ self.x, f @ self.p @ f.T + q

    def update(self, t_ms: float, z_um: float, std_um: float | None = None) -> bool:
        if not math.isfinite(z_um):
            return False
        std = self.r_default if std_um is None or not math.isfinite(std_um) else std_um
        r = max(std, self.r_min) ** 2
        if self.x is None:
            self.x = np.array([z_um, 0.0])
            self.p = np.diag([r, self.v0_std**2])
            self.t_ms = float(t_ms)
            return True
        x, p = self._predict(float(t_ms))
        s = p[0, 0] + r
        innov = z_um - x[0]
        if innov * innov > self.gate**2 * s:
            self.rejects += 1
            self.n_rejected += 1
            if self.rejects >= self.max_rejects:
                self.reset()
                self.n_rejected = 0
                return self.update(t_ms, z_um, std_um)
            return False
        k = p[:, 0] / s
        self.x = x + k * innov
        self.p = p - np.outer(k, p[0, :])
        self.t_ms = float(t_ms)
        self.rejects = 0
        return True

    def value(self, t_ms: float | None = None) -> float | None:
        if self.x is None:
            return None
        if t_ms is None or self.t_ms is None:
            return float(self.x[0])
        t = min(float(t_ms), self.t_ms + 1000.0 * self.max_extrapolation_s)
        return float(self._predict(t)[0][0])

    def describe(self) -> dict[str, Any]:
        return {
            "type": "kalman",
            "accel_um2_s3": self.q,
            "measurement_std_um": self.r_default,
            "gate_sigma": self.gate,
            "max_rejects": self.max_rejects,
            "velocity_um_s": None if self.x is None else float(self.x[1]),
        }


class MedianDrift:
    """Running median of the last ``window`` accepted estimates, with outlier gating.

    An estimate farther than ``max(gate_um, gate_mad · 1.4826 · MAD)`` from the current
    median is rejected; ``max_rejects`` consecutive rejections restart the window. No
    motion model: the value lags a steady drift by about ``window / 2`` estimates.
    """

    def __init__(
        self, window: int = 5, gate_um: float = 1.5, gate_mad: float = 4.0, max_rejects: int = 3
    ) -> None:
        if int(window) < 1:
            raise InputError(f"window must be >= 1, got {window}")
        self.window = int(window)
        self.gate_um = float(gate_um)
        self.gate_mad = float(gate_mad)
        self.max_rejects = int(max_rejects)
        self.reset()

    def reset(self) -> None:
        self._vals: deque[float] = deque(maxlen=self.window)
        self.rejects = 0
        self.n_rejected = 0

    def update(self, t_ms: float, z_um: float, std_um: float | None = None) -> bool:
        if not math.isfinite(z_um):
            return False
        if self._vals:
            v = np.array(self._vals)
            med = float(np.median(v))
            mad = float(np.median(np.abs(v - med))) * 1.4826
            if abs(z_um - med) > max(self.gate_um, self.gate_mad * mad):
                self.rejects += 1
                self.n_rejected += 1
                if self.rejects < self.max_rejects:
                    return False
                self._vals.clear()
        self._vals.append(float(z_um))
        self.rejects = 0
        return True

    def value(self, t_ms: float | None = None) -> float | None:
        return float(np.median(np.array(self._vals))) if self._vals else None

    def describe(self) -> dict[str, Any]:
        return {"type": "median", "window": self.window, "gate_um": self.gate_um}


# --------------------------------------------------------------------------- the plan


@runtime_checkable
class FeedbackPlan(Protocol):
    """A :class:`~live_deepz.dpm.PlanePlan` that also wants to see every normalised frame.

    The pipeline calls ``update(image_norm, frame_index, timestamp_ms)`` before
    ``dpms_for_frame`` for the same frame.
    """

    offsets_um: np.ndarray

    def update(self, image_norm: np.ndarray, frame_index: int, timestamp_ms: float) -> Any: ...

    def dpms_for_frame(
        self, frame_index: int, timestamp_ms: float, shape: tuple[int, int]
    ) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


class DriftCompensationPlan:
    """Planes that follow the sample: plane ``k`` is ``correction(t) + offsets_um[k]``.

    Parameters
    ----------
    estimator : the :class:`DriftEstimator` (its ``target_offset_um`` and ``every_n`` apply).
    offsets_um : extra planes around the corrected focus (default one plane, 0).
    drift_filter : a :class:`DriftFilter` (default :class:`KalmanDrift`).
    initial_um : the correction before the first accepted estimate.
    hold : ``"sample"`` (default, the paper's use): the correction is the sample's defocus
        (+ target), i.e. the planes go to the sample's own focus as the focus measure defines
        it; ``"initial"``: the correction is the *change* of defocus since the first
        accepted estimate (+ target), i.e. the planes hold whatever plane of the sample was
        in view when tracking started (a thick sample's chosen layer).
    quantum_um : the correction is rounded to this (0.01 µm, far below the ~1 µm depth of
        field) so that consecutive frames usually share the same DPM array.
    asynchronous : estimate on a worker thread (see the module docstring).
    trace_len : how many estimates :meth:`trace` keeps.

    ``dpms_for_frame`` returns read-only ``(K, H, W)`` float32 arrays from a pool of three
    per frame shape, refilled only when the correction changes: a new correction is always a
    different array object (the engine re-uploads DPMs on identity change); copy an array if
    you keep it beyond the next two changes. Planes are clamped to the model's range when the
    correction would push them out of it (``clamped`` in :meth:`describe` and the trace); a
    live loop never stops on it and never extrapolates.
    """

    _POOL = 3

    def __init__(
        self,
        estimator: DriftEstimator,
        offsets_um: str | float | Sequence[float] | np.ndarray = 0.0,
        drift_filter: DriftFilter | None = None,
        *,
        initial_um: float = 0.0,
        hold: str = "sample",
        quantum_um: float = 0.01,
        asynchronous: bool = False,
        trace_len: int = 100_000,
    ) -> None:
        self.estimator = estimator
        offsets = dpm_mod.parse_planes(offsets_um)
        offsets.flags.writeable = False
        self.offsets_um: np.ndarray = offsets
        self.filter: DriftFilter = drift_filter if drift_filter is not None else KalmanDrift()
        self.initial_um = float(initial_um)
        if hold not in ("sample", "initial"):
            raise InputError(f"hold must be 'sample' or 'initial', got {hold!r}")
        self.hold = hold
        self._reference_um: float | None = None
        self.quantum_um = float(quantum_um)
        self._lock = threading.RLock()
        self._pools: dict[tuple[int, int], list[np.ndarray]] = {}
        self._current: dict[tuple[int, int], tuple[float, int]] = {}
        n = int(trace_len)
        self._trace: dict[str, deque[Any]] = {
            k: deque(maxlen=n)
            for k in ("frame_index", "t_ms", "raw_um", "z_std_um", "accepted", "filtered_um")
        }
        self._served: deque[tuple[int, float]] = deque(maxlen=max(n, 1000))
        self._last: DriftMeasurement | None = None
        self._last_frame: int | None = None
        self._last_estimated_frame: int | None = None
        self._clamped = False
        self.counters = {"estimates": 0, "failed": 0, "rejected": 0, "skipped_busy": 0}
        self._executor: ThreadPoolExecutor | None = None
        self._future: Future[Any] | None = None
        if asynchronous:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drift")

    @property
    def num_planes(self) -> int:
        return int(self.offsets_um.size)

    # ------------------------------------------------------------------ feedback
    def _due(self, frame_index: int) -> bool:
        last = self._last_estimated_frame
        return last is None or frame_index - last >= self.estimator.every_n or frame_index < last

    def update(
        self, image_norm: np.ndarray, frame_index: int, timestamp_ms: float
    ) -> DriftMeasurement | None:
        """Feed a normalised frame; estimates when due (every ``every_n`` frames).

        Returns the measurement when one was made synchronously, else None.
        """
        frame_index = int(frame_index)
        if not self._due(frame_index):
            return None
        if self._executor is None:
            self._last_estimated_frame = frame_index
            m = self.estimator.estimate(image_norm, self._prior(float(timestamp_ms)))
            self._record(m, frame_index, float(timestamp_ms))
            return m
        with self._lock:
            if self._future is not None and not self._future.done():
                self.counters["skipped_busy"] += 1
                return None
            self._last_estimated_frame = frame_index
            y0, x0, h, w = self.estimator.crop_window(np.asarray(image_norm))
            crop = np.array(image_norm[y0 : y0 + h, x0 : x0 + w], dtype=np.float32)
            prior = self._prior(float(timestamp_ms))
            self._future = self._executor.submit(
                self._estimate_async, crop, (y0, x0), frame_index, float(timestamp_ms), prior
            )
        return None

    def _prior(self, t_ms: float) -> float | None:
        """The filter's prediction for this frame (the sample's defocus), if it has one."""
        with self._lock:
            return self.filter.value(t_ms)

    def _estimate_async(
        self,
        crop: np.ndarray,
        origin: tuple[int, int],
        frame_index: int,
        t_ms: float,
        prior: float | None,
    ) -> None:
        y0, x0 = origin
        try:
            roi = (y0, x0, crop.shape[0], crop.shape[1])
            m = self.estimator.estimate_crop(crop, roi, prior)
        except Exception as exc:  # never let a worker error vanish
            m = DriftMeasurement(
                False, math.nan, math.inf, (y0, x0, 0, 0), np.zeros(0), np.zeros(0), repr(exc)
            )
        self._record(m, frame_index, t_ms)

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until a pending asynchronous estimate is done (tests, shutdown)."""
        fut = self._future
        if fut is not None:
            fut.result(timeout=timeout_s)

    def _record(self, m: DriftMeasurement, frame_index: int, t_ms: float) -> None:
        with self._lock:
            self.counters["estimates"] += 1
            accepted = False
            if m.ok:
                accepted = self.filter.update(t_ms, m.defocus_um, m.z_std_um)
                if not accepted:
                    self.counters["rejected"] += 1
                elif self._reference_um is None:
                    self._reference_um = m.defocus_um
            else:
                self.counters["failed"] += 1
            self._last = m
            filt = self.filter.value(t_ms)
            tr = self._trace
            tr["frame_index"].append(frame_index)
            tr["t_ms"].append(t_ms)
            tr["raw_um"].append(m.defocus_um)
            tr["z_std_um"].append(m.z_std_um)
            tr["accepted"].append(accepted)
            tr["filtered_um"].append(math.nan if filt is None else filt)

    # ------------------------------------------------------------------ plan
    def correction_um(self, timestamp_ms: float | None = None) -> float:
        """The base DPM at ``timestamp_ms``: filtered defocus + target, quantised."""
        with self._lock:
            v = self.filter.value(timestamp_ms)
            ref = self._reference_um
        if v is None:
            base = self.initial_um
        elif self.hold == "initial":
            base = self.initial_um + v - (ref if ref is not None else v)
        else:
            base = v
        base += self.estimator.target_offset_um
        q = self.quantum_um
        return round(base / q) * q if q > 0 else base

    def dpms_for_frame(
        self, frame_index: int, timestamp_ms: float, shape: tuple[int, int]
    ) -> np.ndarray:
        """``(K, H, W)`` float32 µm, read-only (see the class docstring)."""
        key = (int(shape[0]), int(shape[1]))
        if key[0] <= 0 or key[1] <= 0:
            raise InputError(f"shape must be positive (height, width), got {shape!r}")
        base = self.correction_um(timestamp_ms)
        zr = self.estimator.z_range_um
        clamped = False
        if zr is not None:
            lo = zr[0] - float(self.offsets_um.min())
            hi = zr[1] - float(self.offsets_um.max())
            if base < lo or base > hi:
                clamped = True
                base = min(max(base, lo), hi) if lo <= hi else base
        with self._lock:
            self._clamped = clamped
            self._last_frame = int(frame_index)
            self._served.append((int(frame_index), base))
            pool = self._pools.get(key)
            if pool is None:
                pool = [
                    np.empty((self.num_planes, *key), dtype=np.float32) for _ in range(self._POOL)
                ]
                for a in pool:
                    a.flags.writeable = False
                self._pools[key] = pool
                self._current[key] = (math.nan, -1)
            value, slot = self._current[key]
            if slot >= 0 and value == base:
                return pool[slot]
            slot = (slot + 1) % self._POOL
            arr = pool[slot]
            arr.flags.writeable = True
            for k, off in enumerate(self.offsets_um):
                arr[k].fill(base + off)
            arr.flags.writeable = False
            self._current[key] = (base, slot)
            return arr

    def served_um(self, frame_index: int) -> float | None:
        """The correction (µm, before the plane offsets) served for a recent frame."""
        with self._lock:
            for f, v in reversed(self._served):
                if f == frame_index:
                    return v
        return None

    def describe(self) -> dict[str, Any]:
        """The plan definition plus the current estimate (JSON-able)."""
        with self._lock:
            last = self._last
            filt = self.filter.value()

            def num(v: float | None) -> float | None:
                return None if v is None or not math.isfinite(v) else float(v)

            return {
                "type": "drift",
                "offsets_um": [float(v) for v in self.offsets_um],
                "target_offset_um": self.estimator.target_offset_um,
                "hold": self.hold,
                "reference_um": num(self._reference_um),
                "correction_um": self.correction_um(),
                "filtered_um": num(filt),
                "raw_um": None if last is None else num(last.defocus_um),
                "last_message": None if last is None else last.message,
                "frame_index": self._last_frame,
                "clamped": self._clamped,
                "counters": dict(self.counters),
                "estimator": self.estimator.describe(),
                "filter": self.filter.describe(),
            }

    def trace(self) -> dict[str, np.ndarray]:
        """Arrays for the drift plot: ``frame_index``, ``t_ms``, ``raw_um`` (NaN = failed),
        ``z_std_um``, ``accepted``, ``filtered_um``."""
        with self._lock:
            return {
                k: np.array(v, dtype=bool if k == "accepted" else np.float64)
                for k, v in self._trace.items()
            }

    def reset(self) -> None:
        """Forget the filter state and the trace: call it when the focus or the sample is
        moved on purpose (otherwise the filter treats the jump as outliers and follows it
        only after ``max_rejects`` estimates); the estimator's keyframe goes too."""
        with self._lock:
            self.filter.reset()
            for d in self._trace.values():
                d.clear()
            self._served.clear()
            self._reference_um = None
            self._last = None
            self._last_estimated_frame = None
        self.estimator.reset()

    def close(self) -> None:
        """Stop the worker thread (asynchronous mode)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __repr__(self) -> str:
        return (
            f"DriftCompensationPlan({self.num_planes} planes, correction "
            f"{self.correction_um():+.2f} µm)"
        )
