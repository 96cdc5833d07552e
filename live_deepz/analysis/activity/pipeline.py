"""Neuron activity from a two-channel virtual multi-plane recording (the paper's Fig. 3).

:func:`analyse_recording` runs the stages on a recording opened with
:func:`live_deepz.recording.open_recording` (``T, C, Z, Y, X`` virtual planes):

1. **registration** (:mod:`.registration`): every time point's nuclei stack is registered
   rigidly (3D, sub-voxel) onto the first complete time point's; the same shift moves the
   activity stack (and laterally the raw input frame);
2. **localisation** (:mod:`.localisation`): maxima + watershed in the time median of the
   registered nuclei stacks; the same in the time median of the registered 2D input frames
   (the raw nuclei frames, or the plane at offset 0 without them) for the "3D vs input plane"
   count;
3. **traces** (:mod:`.traces`): ``F`` = mean of the ``n_brightest`` voxels of each neuron in
   the activity channel, ``ΔF/F0`` with a robust baseline;
4. **clustering** (:mod:`.clustering`) of the active neurons (activity SNR ≥ ``active_snr``).

Coordinates (``positions_um``, the recording's frame): ``z_um`` is the virtual plane offset
(µm, > 0 deeper, 0 = the camera's focal plane), interpolated between planes; ``y_um`` and
``x_um`` are ``row · pixel`` and ``column · pixel`` (the first pixel's centre at 0). The
positions are those of the reference (first complete) time point: the registration maps every
other time point onto it.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from live_deepz.errors import InputError

from .clustering import Clusters, cluster_traces
from .localisation import Detections, LocaliseParams, localise
from .registration import ShiftEstimator, apply_shift
from .traces import TraceExtractor, activity_snr, delta_f_over_f

__all__ = ["ActivityParams", "ActivityResult", "analyse_recording", "match_lateral"]


@dataclass(frozen=True)
class ActivityParams:
    """Parameters of :func:`analyse_recording` (recorded in ``summary.json``)."""

    register: bool = True
    localise: LocaliseParams = field(default_factory=LocaliseParams)
    n_brightest: int = 100
    baseline_percentile: float = 20.0
    active_snr: float = 4.0
    """A neuron is active when std(ΔF/F0) ≥ this × its noise level (see ``activity_snr``)
    and ≥ ``min_activity``."""
    min_activity: float = 0.1
    """Floor on std(ΔF/F0) for an active neuron: out-of-focus light of an active neighbour
    (above or below: the virtual planes are wide-field images) moves an inactive neuron's
    F by a few per cent, far above the noise in a clean recording."""
    max_active: int | None = None
    """Cluster at most this many (the most active) neurons; None: all active ones."""
    sigma: float = 1.5
    n_clusters: int | None = None
    """None: the eigengap heuristic."""
    k_max: int = 10
    input_match_um: float = 2.0
    """Lateral distance within which a 3D neuron counts as found in the input plane too."""

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["localise"] = dict(self.localise.__dict__)
        return d


@dataclass
class ActivityResult:
    """Everything :func:`analyse_recording` found (see the module docstring for units)."""

    positions_um: NDArray[np.float64]
    """``(N, 3)`` z, y, x."""
    positions_vox: NDArray[np.float64]
    voxels: NDArray[np.int64]
    """Voxels in each neuron's mask."""
    in_input_plane: NDArray[np.bool_]
    input_positions_um: NDArray[np.float64]
    """``(M, 2)`` y, x of the neurons found in the 2D input alone."""
    input_source: str
    f: NDArray[np.float64]
    """``(N, T)`` F."""
    f0: NDArray[np.float64]
    dff: NDArray[np.float64]
    """``(N, T)`` ΔF/F0."""
    activity: NDArray[np.float64]
    snr: NDArray[np.float64]
    active: NDArray[np.bool_]
    cluster: NDArray[np.int64]
    """``(N,)`` cluster, −1 not clustered."""
    clusters: Clusters | None
    clustered_ids: NDArray[np.int64]
    """Neuron ids in the order of ``clusters.affinity``'s rows."""
    t_s: NDArray[np.float64]
    """``(T,)`` time of each used time point (s, from the first)."""
    time_points: NDArray[np.int64]
    """``(T,)`` indices of the used time points in the recording."""
    shifts_um: NDArray[np.float64]
    """``(T, 3)`` registration shift (µm, z y x) applied to each time point."""
    offsets_um: NDArray[np.float64]
    pixel_size_um: float
    median_nuclei: NDArray[np.float32]
    """``(Z, Y, X)`` time median of the registered nuclei stacks."""
    median_input: NDArray[np.float32]
    activity_background: float
    channels: tuple[str, str]
    params: ActivityParams
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_neurons(self) -> int:
        return len(self.positions_um)


def _channel_index(names: list[str] | None, want: str, role: str) -> int:
    if names is None:
        raise InputError(
            f"the recording has one channel (no C axis); the activity analysis needs two "
            f"(--nuclei-channel and --activity-channel, e.g. record --channels nuclei,calcium); "
            f"{role} {want!r} is not there"
        )
    lower = [n.lower() for n in names]
    if want.lower() in lower:
        return lower.index(want.lower())
    if want.isdigit() and int(want) < len(names):
        return int(want)
    raise InputError(
        f"the recording has no channel {want!r} ({role}); its channels are "
        f"{', '.join(names)}: pass them with --nuclei-channel / --activity-channel"
    )


def _check_recording(
    rec: Any, nuclei: str, activity: str
) -> tuple[int, int, NDArray[np.int64], float, float]:
    """(nuclei index, activity index, usable time points, dz µm, pixel µm) or InputError."""
    names = rec.channels
    ci = _channel_index(names, nuclei, "the nuclei channel")
    ca = _channel_index(names, activity, "the activity channel")
    if ci == ca:
        raise InputError(
            f"the nuclei and activity channels are the same ({names[ci]}); name two different "
            f"channels of {', '.join(names)}"
        )
    off = np.asarray(rec.offsets_um, dtype=np.float64)
    if off.size < 3:
        raise InputError(
            f"{rec.path} has {off.size} virtual plane(s); the 3D localisation needs a virtual "
            "stack (the paper: --planes=-10:10:0.5); record or refocus with more planes"
        )
    steps = np.diff(off)
    if not (steps > 0).all() or np.ptp(steps) > 1e-3 * max(float(np.median(steps)), 1e-9):
        raise InputError(
            f"{rec.path}: the virtual planes must be evenly spaced and increasing "
            f"(offsets {off.round(3).tolist()})"
        )
    comp = np.asarray(rec.complete, dtype=bool).reshape(rec.n_frames, -1)
    usable = np.flatnonzero(comp[:, ci] & comp[:, ca])
    if rec.n_frames == 0:
        raise InputError(f"{rec.path} has no frames")
    if usable.size == 0:
        raise InputError(
            f"{rec.path} has no virtual planes yet (raw frames only): compute them first with "
            f"`live-deepz complete {rec.path}` (or refocus the raw video with "
            "`live-deepz refocus`), then run activity again"
        )
    if usable.size < 3:
        raise InputError(
            f"{rec.path}: only {usable.size} time point(s) have virtual planes; the traces "
            "need at least 3 (run `live-deepz complete` on it)"
        )
    px = rec.pixel_size_um or (rec.metadata.get("optics") or {}).get("pixel_size_um")
    if not px or not float(px) > 0:
        raise InputError(f"{rec.path} does not record its pixel size")
    return ci, ca, usable, float(np.median(steps)), float(px)


def match_lateral(
    a_yx: NDArray[np.floating], b_yx: NDArray[np.floating], max_um: float
) -> list[tuple[int, int]]:
    """One-to-one pairs ``(i, j)`` of points within ``max_um`` laterally (Hungarian)."""
    a = np.asarray(a_yx, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b_yx, dtype=np.float64).reshape(-1, 2)
    if not len(a) or not len(b):
        return []
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    big = 1e6
    rows, cols = linear_sum_assignment(np.where(d <= max_um, d, big))
    return [(int(i), int(j)) for i, j in zip(rows, cols) if d[i, j] <= max_um]


def _times(rec: Any, ci: int, used: NDArray[np.int64]) -> NDArray[np.float64]:
    ts = np.asarray(rec.timestamps_ms, dtype=np.float64).reshape(rec.n_frames, -1)[used, ci]
    if np.isfinite(ts).all() and len(ts) > 1 and (np.diff(ts) > 0).all():
        return (ts - ts[0]) / 1000.0
    return used.astype(np.float64) - float(used[0])  # unknown times: one per time point


def analyse_recording(
    rec: Any,
    nuclei_channel: str = "nuclei",
    activity_channel: str = "calcium",
    params: ActivityParams | None = None,
    *,
    progress: bool = True,
    scratch_dir: str | Path | None = None,
) -> ActivityResult:
    """Run the activity analysis on an open recording (see the module docstring).

    The registered stacks are kept in scratch files (``scratch_dir``, default the system's
    temporary folder), removed at the end. Raises :class:`InputError` for a recording the
    analysis cannot use (one channel, unknown channel names, no or too few planes, raw only).
    """
    from tqdm import tqdm

    p = params or ActivityParams()
    ci, ca, used, dz, px = _check_recording(rec, nuclei_channel, activity_channel)
    names = rec.channels
    off = np.asarray(rec.offsets_um, dtype=np.float64)
    n_t = len(used)
    _, _, n_z, h, w = rec.planes.shape
    spacing = np.array([dz, px, px])
    has_raw = rec.raw is not None
    i0 = int(np.argmin(np.abs(off)))
    with tempfile.TemporaryDirectory(prefix="live-deepz-activity-", dir=scratch_dir) as tmp:
        reg_n = np.lib.format.open_memmap(
            Path(tmp) / "nuclei.npy", mode="w+", dtype=np.float32, shape=(n_t, n_z, h, w)
        )
        reg_a = np.lib.format.open_memmap(
            Path(tmp) / "activity.npy", mode="w+", dtype=np.float32, shape=(n_t, n_z, h, w)
        )
        inputs = np.empty((n_t, h, w), np.float32)
        shifts = np.zeros((n_t, 3))
        sum_a = np.zeros((n_z, h, w), np.float64)
        ref: ShiftEstimator | None = None
        bar = tqdm(total=n_t, desc="registering", unit="frame", disable=not progress, leave=False)
        for j, t in enumerate(used):
            planes = np.asarray(rec.planes[int(t)], dtype=np.float32)
            nuc, act = planes[ci], planes[ca]
            if not (np.isfinite(nuc).all() and np.isfinite(act).all()):
                raise InputError(f"{rec.path}: time point {int(t)} has NaN/inf virtual planes")
            inp = np.asarray(rec.raw[int(t)][ci], dtype=np.float32) if has_raw else nuc[i0].copy()
            if ref is None:
                ref = ShiftEstimator(nuc)
            elif p.register:
                shifts[j] = ref(nuc)
            reg_n[j] = apply_shift(nuc, shifts[j])
            reg_a[j] = apply_shift(act, shifts[j])
            inputs[j] = apply_shift(inp, shifts[j][1:])
            sum_a += reg_a[j]
            bar.update(1)
        bar.close()
        median_n = np.empty((n_z, h, w), np.float32)
        for z in range(n_z):
            median_n[z] = np.median(reg_n[:, z], axis=0)
        median_in = np.median(inputs, axis=0).astype(np.float32)
        det3 = localise(median_n, spacing, p.localise)
        det2 = localise(median_in, spacing[1:], p.localise)
        extractor = TraceExtractor(det3.labels, p.n_brightest)
        f = np.empty((len(det3), n_t))
        bar = tqdm(total=n_t, desc="traces", unit="frame", disable=not progress, leave=False)
        for j in range(n_t):
            f[:, j] = extractor(reg_a[j])
            bar.update(1)
        bar.close()
        del reg_n, reg_a
    bg_a = float(np.median(sum_a / n_t))
    return _finish(
        rec, p, det3, det2, extractor, f, bg_a, used, shifts, spacing, off, px, median_n,
        median_in, (names[ci], names[ca]), has_raw, ci,
    )  # fmt: skip


def _finish(
    rec: Any,
    p: ActivityParams,
    det3: Detections,
    det2: Detections,
    extractor: TraceExtractor,
    f: NDArray[np.float64],
    bg_a: float,
    used: NDArray[np.int64],
    shifts: NDArray[np.float64],
    spacing: NDArray[np.float64],
    off: NDArray[np.float64],
    px: float,
    median_n: NDArray[np.float32],
    median_in: NDArray[np.float32],
    channels: tuple[str, str],
    has_raw: bool,
    ci: int,
) -> ActivityResult:
    n = len(det3)
    vox = det3.positions_vox
    pos = np.zeros((n, 3))
    if n:
        pos[:, 0] = np.interp(vox[:, 0], np.arange(len(off)), off)
        pos[:, 1:] = vox[:, 1:] * px
    pos2 = det2.positions_vox * px
    in_plane = np.zeros(n, bool)
    for i, _ in match_lateral(pos[:, 1:], pos2, p.input_match_um):
        in_plane[i] = True
    dff, f0 = delta_f_over_f(f, bg_a, p.baseline_percentile)
    act, snr = activity_snr(dff)
    active = (np.nan_to_num(snr, nan=0.0) >= p.active_snr) & (
        np.nan_to_num(act, nan=0.0) >= p.min_activity
    )
    if p.max_active is not None and active.sum() > p.max_active:
        keep = np.argsort(-np.where(active, act, -np.inf), kind="stable")[: p.max_active]
        active = np.zeros(n, bool)
        active[keep] = True
    ids = np.flatnonzero(active)
    cluster = np.full(n, -1, np.int64)
    clusters = None
    if len(ids) >= 2:
        clusters = cluster_traces(dff[ids], p.sigma, k=p.n_clusters, k_max=p.k_max)
        cluster[ids] = clusters.labels
    elif len(ids) == 1:
        cluster[ids] = 0
    return ActivityResult(
        positions_um=pos,
        positions_vox=vox,
        voxels=np.array([len(v) for v in extractor.voxels], np.int64),
        in_input_plane=in_plane,
        input_positions_um=pos2,
        input_source="raw nuclei frames"
        if has_raw
        else f"virtual plane {off[np.argmin(abs(off))]:g} µm",
        f=f,
        f0=f0,
        dff=dff,
        activity=act,
        snr=snr,
        active=active,
        cluster=cluster,
        clusters=clusters,
        clustered_ids=ids,
        t_s=_times(rec, ci, used),
        time_points=used,
        shifts_um=shifts * spacing,
        offsets_um=off,
        pixel_size_um=px,
        median_nuclei=median_n,
        median_input=median_in,
        activity_background=bg_a,
        channels=channels,
        params=p,
        info={
            "threshold_3d": det3.threshold,
            "background_3d": det3.background,
            "threshold_input": det2.threshold,
            "time_points_skipped": int(rec.n_frames - len(used)),
            "recording": str(rec.path),
            "frame_shape": [int(v) for v in median_in.shape],
            "voxel_um": [float(v) for v in spacing],
            "mean_abs_shift_um": [float(v) for v in np.abs(shifts * spacing).mean(axis=0)]
            if len(shifts)
            else [0.0, 0.0, 0.0],
            "n_brightest_used_median": float(np.median(extractor.voxels_used)) if n else math.nan,
        },
    )
