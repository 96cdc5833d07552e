"""The live drift-compensation plan: a drift estimator on its own engine, sized to a budget.

``live-deepz record --drift-compensation`` and the app's drift toggle both build their plan
with :func:`drift_compensation_plan`; :func:`drift_every_n` sizes how often it estimates.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from live_deepz.errors import InputError

__all__ = [
    "DRIFT_BUDGET",
    "DRIFT_CHUNK",
    "DRIFT_MAX_EVERY_N",
    "DRIFT_MIN_EVERY_N",
    "DRIFT_TRACKS",
    "KEYFRAME_ACCEL_UM2_S3",
    "drift_compensation_plan",
    "drift_every_n",
]


DRIFT_CHUNK = 3
"""Planes per call of the drift estimator's engine: every sweep is padded to a multiple of
it, so the estimator's backend is prepared once (a change of batch size re-prepares it,
which runs warm-up passes); 3 wastes at most 2 planes per sweep."""
DRIFT_BUDGET = {"cpu": 0.10, "cuda": 0.25}
"""Extra inference the drift estimates may add on average, as a fraction of the live
planes' own (pixels × planes): every_n = ceil(estimate cost / frame cost / budget)."""
DRIFT_MIN_EVERY_N = {"cpu": 5, "cuda": 1}
"""On the CPU the estimate runs inside the engine thread (synchronous: no second thread
fighting for the cores), so the frame it runs on is late by its cost; at most one frame in
5 carries it. On CUDA it runs on its own worker thread and stream (asynchronous), frames
arriving while it is busy are skipped by the estimator, never by the engine."""
DRIFT_MAX_EVERY_N = 100

DRIFT_TRACKS = {"focus": "sample", "keyframe": "initial"}
"""The tracking modes of :func:`drift_compensation_plan` and the plan's ``hold`` for each."""

KEYFRAME_ACCEL_UM2_S3 = 16.0
"""The Kalman filter's acceleration density for keyframe tracking (focus tracking keeps
:class:`~live_deepz.calibration.KalmanDrift`'s 1.0): its estimates are precise enough that the
smoothing of 1.0 only adds lag. Measured on the drift bench (worm, paper-like drift, 3.6 fps):
change RMSE 0.60/0.53/1.38 µm → 0.51/0.32/1.35 µm on three scenes with the fast model, 0.245 →
0.07 µm with the oracle (benchmarks/RESULTS.md, session 7)."""


def drift_every_n(
    estimator: Any, frame_shape: tuple[int, int], n_planes: int, device: str = "cpu"
) -> int:
    """How often (every n-th camera frame) to estimate the drift so that the estimator's
    sweeps stay within :data:`DRIFT_BUDGET` of the live inference work.

    ``every_n`` counts camera frames (the pipeline's frame index): when the engine is slower
    than the camera and skips frames, an estimate runs at most once per processed frame,
    i.e. the extra work per processed frame is then bounded by one sweep (a few planes of a
    1/4-size crop: about 15 % of a 12-plane 512² frame).
    """
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    h, w = (int(v) for v in frame_shape)
    _, _, ch, cw = estimator.crop_window(np.zeros((h, w), np.float32))
    n_coarse = len(estimator.coarse_offsets)
    n_fine = int(estimator.n_planes_per_estimate) - n_coarse
    c = DRIFT_CHUNK
    padded = -(-n_coarse // c) * c + (-(-n_fine // c) * c if n_fine > 0 else 0)
    ratio = padded * ch * cw / max(1, int(n_planes) * h * w)
    n = max(DRIFT_MIN_EVERY_N[kind], math.ceil(ratio / DRIFT_BUDGET[kind] - 1e-9))
    return int(min(n, DRIFT_MAX_EVERY_N))


class _PaddedRefocus:
    """A refocus function called with a multiple of ``chunk`` planes (the last repeated), so
    that the engine behind it keeps one prepared shape per crop size; one call at a time (a
    replaced plan's worker may still be sweeping when the new plan's starts)."""

    def __init__(self, inner: Any, chunk: int = DRIFT_CHUNK) -> None:
        self.inner = inner
        self.chunk = int(chunk)
        self.z_range_um = getattr(inner, "z_range_um", None)
        self.pixel_size_um = getattr(inner, "pixel_size_um", None)
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray, dpms_um: np.ndarray) -> np.ndarray:
        dpms = np.asarray(dpms_um, dtype=np.float32)
        k = dpms.shape[0]
        n = -(-k // self.chunk) * self.chunk
        if n != k:
            dpms = np.concatenate([dpms, np.repeat(dpms[-1:], n - k, axis=0)])
        with self._lock:
            return np.asarray(self.inner(image, dpms))[:k]

    def describe(self) -> dict[str, Any]:
        d = getattr(self.inner, "describe", None)
        return {**(d() if callable(d) else {}), "chunk": self.chunk}


def drift_compensation_plan(
    model: Any,
    offsets_um: str | float | Sequence[float] | np.ndarray,
    frame_shape: tuple[int, int],
    *,
    device: str = "cpu",
    precision: str = "auto",
    refocus_fn: Any = None,
    every_n: int | None = None,
    asynchronous: bool | None = None,
    warm: bool = True,
    track: str = "focus",
    **estimator_options: Any,
) -> Any:
    """A :class:`~live_deepz.calibration.DriftCompensationPlan` for a live pipeline.

    The estimator's sweeps run on a **second eager-torch engine** for ``model``
    (:func:`~live_deepz.calibration.engine_refocus_fn`, same device and precision as the
    live backend), not on the pipeline's own backend: the live backend is prepared (and for
    compile / CUDA graphs / TensorRT, built) for the frame size and plane count, and a
    sweep on a smaller crop with another plane count would rebuild it twice per estimate.
    The second engine costs one more copy of the weights; the inference work is the same.
    It is prepared here (``warm``), off the engine thread, for the crop size of
    ``frame_shape``.

    ``every_n`` default: :func:`drift_every_n` (>= 5 on the CPU). ``asynchronous`` default:
    on CUDA only (see :data:`DRIFT_MIN_EVERY_N`). ``refocus_fn`` replaces the engine (tests,
    oracles). ``track``: ``"focus"`` (the planes go to where a focus measure says the sample
    is sharpest, ``hold="sample"``) or ``"keyframe"`` (the planes hold the plane in view when
    tracking started, following the change found by matching the refocused planes with that
    first frame: :class:`~live_deepz.calibration.MatchDriftEstimator`, ``hold="initial"``;
    the mode that works with a squared-loss model, benchmarks/RESULTS.md, session 7). Other
    keywords go to the estimator.
    """
    from live_deepz.dpm import parse_planes

    from ._drift import DriftCompensationPlan, DriftEstimator, KalmanDrift
    from ._drift_match import MatchDriftEstimator
    from ._focus import engine_refocus_fn

    if track not in DRIFT_TRACKS:
        raise InputError(f"unknown drift tracking {track!r}; use {' or '.join(DRIFT_TRACKS)}")

    dev = str(device)
    is_cuda = dev.startswith("cuda")
    if refocus_fn is None:
        engine = engine_refocus_fn(
            model, "torch", precision=precision, device=dev, max_planes=DRIFT_CHUNK
        )
        refocus_fn = _PaddedRefocus(engine)
    else:
        engine = None
    zr = getattr(refocus_fn, "z_range_um", None)
    if zr is None and model is not None:
        zr = tuple(float(v) for v in model.card.z_range_um)
    estimator: DriftEstimator
    if track == "keyframe":
        estimator_options.setdefault("anchor_um", 0.0)
        estimator = MatchDriftEstimator(refocus_fn, z_range_um=zr, **estimator_options)
    else:
        estimator = DriftEstimator(refocus_fn, z_range_um=zr, **estimator_options)
    plan_offsets = parse_planes(offsets_um)
    estimator.every_n = int(
        every_n
        if every_n is not None
        else drift_every_n(estimator, frame_shape, int(np.size(plan_offsets)), dev)
    )
    if engine is not None and warm:
        _, _, ch, cw = estimator.crop_window(np.zeros(tuple(frame_shape), np.float32))
        lo, hi = estimator.sweep_um
        refocus_fn(
            np.zeros((ch, cw), np.float32),
            np.full((DRIFT_CHUNK, ch, cw), (lo + hi) / 2, np.float32),
        )
    accel = KEYFRAME_ACCEL_UM2_S3 if track == "keyframe" else 1.0
    return DriftCompensationPlan(
        estimator,
        plan_offsets,
        drift_filter=KalmanDrift(accel_um2_s3=accel),
        asynchronous=is_cuda if asynchronous is None else bool(asynchronous),
        hold=DRIFT_TRACKS[track],
    )


def continue_drift_plan(
    plan: Any, offsets_um: np.ndarray, frame_shape: tuple[int, int], device: str = "cpu"
) -> Any:
    """The drift plan for new plane offsets, continuing ``plan``'s estimator and current
    correction (the live planes changed while drift compensation is on)."""
    from ._drift import DriftCompensationPlan, KalmanDrift

    estimator = plan.estimator
    offsets = np.asarray(offsets_um, dtype=float)
    estimator.every_n = drift_every_n(estimator, frame_shape, int(offsets.size), device)
    old = plan.filter
    return DriftCompensationPlan(
        estimator,
        offsets,
        drift_filter=KalmanDrift(accel_um2_s3=old.q) if isinstance(old, KalmanDrift) else None,
        initial_um=plan.correction_um() - estimator.target_offset_um,
        asynchronous=str(device).startswith("cuda"),
        hold=plan.hold,
    )


def drift_plan_for_backend(
    model: Any,
    offsets_um: np.ndarray,
    frame_shape: tuple[int, int],
    backend: Any,
    refocus_fn: Any = None,
    track: str = "focus",
) -> Any:
    """:func:`drift_compensation_plan` on the device and precision of the live ``backend``
    (asynchronous on CUDA), tracking by ``track``."""
    device = str(getattr(backend, "device", "cpu"))
    return drift_compensation_plan(
        model,
        offsets_um,
        frame_shape,
        device=device,
        precision=str(getattr(backend, "precision", "auto")),
        refocus_fn=refocus_fn,
        asynchronous=device.startswith("cuda"),
        track=track,
    )
