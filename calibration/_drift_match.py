"""Drift tracking by matching refocused planes to a keyframe (no focus measure).

:class:`MatchDriftEstimator` answers "how far has the sample moved since the keyframe?"
instead of "where is the sample sharpest?". The keyframe is a reduced frame kept when
tracking starts (lightly smoothed). For a later frame, every plane of the virtual sweep is
compared with the keyframe by Pearson correlation, maximised over small lateral shifts
(the sample also drifts sideways); the plane that matches best, ``ô``, is the change of
defocus since the keyframe (+ = the sample went deeper), refined by the same log-parabola
vertex as the focus measures. The estimate handed to the filter is ``anchor + ô``, where
``anchor`` is the keyframe's own defocus: given (``anchor_um``, e.g. 0 when the sample was in
focus when tracking started) or estimated once from the keyframe by the focus-measure sweep
of :class:`~live_deepz.calibration.DriftEstimator`.

Why: a network trained with a squared loss returns the *mean* of the planes that fit its
input, which is blurrier the further it refocuses, so a sharpness measure on its planes is
pulled towards the input plane (measured in benchmarks/RESULTS.md, session 7); a match with a
keyframe has no such pull, because the matching plane is judged by its content, not by its
sharpness. What it cannot do is say where the sample is *absolutely* in focus: that is
still the anchor's job, so with a model ``hold="initial"`` (keep the plane in view) is the
mode this estimator makes reliable.

When the best match falls below ``refresh_below`` (the sample changed shape, or drifted
far), the keyframe is replaced by the current frame and the anchor moves by ``ô``: long
runs drift by the error of each refresh (a random walk), so refreshes are counted in
:meth:`describe`.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
from scipy import ndimage

from live_deepz.errors import InputError

from ._drift import DriftEstimator, DriftMeasurement
from ._focus import RefocusFn, virtual_sweep

__all__ = ["MatchDriftEstimator", "shifted_correlation"]


def shifted_correlation(reference: np.ndarray, plane: np.ndarray, max_shift_px: int) -> float:
    """Highest Pearson correlation of ``reference`` with ``plane`` over integer lateral shifts
    of up to ``max_shift_px`` (both (H, W); the central ``H − 2s`` × ``W − 2s`` of the
    reference against the shifted windows of the plane)."""
    ref = np.asarray(reference, dtype=np.float64)
    img = np.asarray(plane, dtype=np.float64)
    if ref.shape != img.shape or ref.ndim != 2:
        raise InputError(f"cannot match a {img.shape} plane with a {ref.shape} keyframe")
    s = int(max_shift_px)
    h, w = ref.shape
    if h - 2 * s < 8 or w - 2 * s < 8:
        raise InputError(f"max_shift_px={s} leaves less than 8 px of a {h}×{w} keyframe")
    core = ref[s : h - s, s : w - s]
    core = core - core.mean()
    core_norm = float(np.sqrt((core * core).sum()))
    if core_norm == 0.0:
        return 0.0
    best = -1.0
    ch, cw = core.shape
    for dy in range(2 * s + 1):
        for dx in range(2 * s + 1):
            win = img[dy : dy + ch, dx : dx + cw]
            win = win - win.mean()
            n = float(np.sqrt((win * win).sum()))
            if n > 0.0:
                best = max(best, float((core * win).sum()) / (core_norm * n))
    return best


class MatchDriftEstimator(DriftEstimator):
    """A :class:`DriftEstimator` whose curve is the match of each refocused plane with a
    keyframe (see the module docstring); takes every argument of the parent, plus:

    anchor_um : the keyframe's own defocus (µm, the DPM that focuses it); ``None`` estimates
        it once with the parent's focus-measure sweep (``measure``).
    max_shift_px : lateral shifts searched when matching (the sample's sideways drift between
        the keyframe and a frame, in pixels of the reduced frame).
    match_smooth_px : Gaussian σ applied to the keyframe and to every plane before matching
        (suppresses camera noise in the keyframe and the model's noise-free planes alike).
    refresh_below : a best match below this makes the current frame the new keyframe.

    ``min_prominence`` defaults to 0.02 here (the curve is ``1 + r``).
    """

    def __init__(
        self,
        refocus_fn: RefocusFn,
        *args: Any,
        anchor_um: float | None = None,
        max_shift_px: int = 4,
        match_smooth_px: float = 1.5,
        refresh_below: float = 0.6,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("min_prominence", 0.02)  # a curve of 1 + r varies less than sharpness
        super().__init__(refocus_fn, *args, **kwargs)
        if anchor_um is not None and not math.isfinite(float(anchor_um)):
            raise InputError(f"anchor_um must be a finite number or None, got {anchor_um!r}")
        if int(max_shift_px) < 0:
            raise InputError(f"max_shift_px must be >= 0, got {max_shift_px}")
        if not -1.0 <= float(refresh_below) < 1.0:
            raise InputError(f"refresh_below must be in [-1, 1), got {refresh_below}")
        self.anchor_um = None if anchor_um is None else float(anchor_um)
        self.max_shift_px = int(max_shift_px)
        self.match_smooth_px = float(match_smooth_px)
        self.refresh_below = float(refresh_below)
        self._lock = threading.Lock()
        self._key: np.ndarray | None = None
        self._key_roi: tuple[int, int, int, int] | None = None
        self._key_defocus_um = math.nan
        self.refreshes = 0

    def reset(self) -> None:
        """Forget the keyframe: the next frame starts a new track."""
        with self._lock:
            self._key, self._key_roi, self._key_defocus_um = None, None, math.nan

    def crop_window(self, image: np.ndarray) -> tuple[int, int, int, int]:
        """The keyframe's window once there is one (matching needs the same place)."""
        with self._lock:
            roi = self._key_roi
        h, w = image.shape
        if roi is not None and roi[0] + roi[2] <= h and roi[1] + roi[3] <= w:
            return roi
        return super().crop_window(image)

    def _smooth(self, img: np.ndarray) -> np.ndarray:
        a = np.asarray(img, dtype=np.float32)
        return ndimage.gaussian_filter(a, self.match_smooth_px) if self.match_smooth_px > 0 else a

    def _curve(self, crop: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        key = self._key
        if key is None:  # the anchor's focus-measure sweep
            return super()._curve(crop, offsets)
        vals = np.zeros(len(offsets))

        def on_plane(k: int, plane: np.ndarray) -> None:
            # 1 + r > 0, so the parent's log-parabola applies unchanged
            vals[k] = 1.0 + shifted_correlation(key, self._smooth(plane), self.max_shift_px)

        virtual_sweep(self.refocus_fn, crop, offsets, on_plane, chunk=len(offsets))
        return vals

    def _start(self, crop: np.ndarray, roi: tuple[int, int, int, int]) -> DriftMeasurement:
        """Make ``crop`` the keyframe and return its defocus (the anchor)."""
        if self.anchor_um is not None:
            m = DriftMeasurement(
                True, self.anchor_um, self.refine_step_um or 0.25, roi, np.zeros(0), np.zeros(0)
            )
        else:
            m = super().estimate_crop(crop, roi)
            if not m.ok:
                return m
        with self._lock:
            self._key = self._smooth(crop)
            self._key_roi = roi
            self._key_defocus_um = m.defocus_um
        return m

    def estimate_crop(
        self,
        crop: np.ndarray,
        roi: tuple[int, int, int, int] | None = None,
        prior_um: float | None = None,
    ) -> DriftMeasurement:
        roi = roi if roi is not None else (0, 0, int(crop.shape[0]), int(crop.shape[1]))
        if self._key is None or self._key.shape != crop.shape:
            self.reset()
            return self._start(crop, roi)
        key_defocus = self._key_defocus_um
        prior = None if prior_um is None else prior_um - key_defocus
        m = super().estimate_crop(crop, roi, prior)
        if not m.ok:
            return m
        best_r = float(np.max(m.curve)) - 1.0
        if best_r < self.refresh_below:
            with self._lock:
                self._key = self._smooth(crop)
                self._key_defocus_um = key_defocus + m.defocus_um
                self.refreshes += 1
        m.defocus_um = key_defocus + m.defocus_um
        m.message = m.message or f"match r = {best_r:.3f}"
        return m

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            method="virtual sweep matched to a keyframe (Pearson r over lateral shifts), "
            "log-parabola peak",
            anchor_um=self.anchor_um,
            keyframe_defocus_um=None
            if not math.isfinite(self._key_defocus_um)
            else self._key_defocus_um,
            max_shift_px=self.max_shift_px,
            match_smooth_px=self.match_smooth_px,
            refresh_below=self.refresh_below,
            refreshes=self.refreshes,
        )
        return d
