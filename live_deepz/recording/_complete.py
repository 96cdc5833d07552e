"""Finish the virtual planes of a recording from its raw frames and its DPM timeline.

A virtual plane is a deterministic function of (raw frame, normalisation, DPM, model), and
the journal records all but the model's weights (it records their sha256). This module
knows nothing of inference engines: the caller hands in a refocuser,
``refocus(image, dpms_um, out=...)`` (``live_deepz.engine.Refocuser``: it checks the model's
trained range and converts µm to network units).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..dpm import OutOfRangeWarning, StaticPlanePlan
from ..errors import InputError, LiveDeepzError
from ..normalize import Normalization, fit_normalization
from ._common import RecordingError
from ._writer import RecordingWriter, dpm_timeline

__all__ = ["CompletionReport", "TimelinePlan", "complete_recording", "plan_from_record"]


class RefocusLike(Protocol):
    """``live_deepz.engine.Refocuser``'s face: µm DPMs in, planes out."""

    def refocus(
        self, frames: np.ndarray, dpms_um: Any, *, out: np.ndarray | None = ..., what: str = ...
    ) -> np.ndarray: ...


@dataclass
class CompletionReport:
    """What :func:`complete_recording` did."""

    path: Path
    n_frames: int
    already_complete: int
    completed: int
    skipped: list[int] = field(default_factory=list)
    """Frames that could not be completed (their plan has a different number of planes)."""
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.already_complete + self.completed == self.n_frames


class TimelinePlan:
    """A drift-compensation plan replayed from the recording's DPM timeline: frame ``i`` gets
    flat planes at ``correction(i) + offsets_um``, the correction served live to that frame,
    linearly interpolated (by frame index) for frames the engine skipped, held beyond the
    ends."""

    def __init__(self, offsets_um: Any, timeline: Mapping[str, Any]) -> None:
        self.offsets_um = np.asarray(offsets_um, dtype=np.float64).reshape(-1)
        pairs = sorted(
            (int(f), float(c))
            for f, c in zip(timeline["frame_index"], timeline["correction_um"], strict=False)
            if c is not None and math.isfinite(float(c))
        )
        self._frames = np.array([f for f, _ in pairs], dtype=np.float64)
        self._values = np.array([c for _, c in pairs], dtype=np.float64)

    def __len__(self) -> int:
        return int(self._frames.size)

    def correction_um(self, frame_index: int) -> float:
        return float(np.interp(float(frame_index), self._frames, self._values))

    def dpms_for_frame(
        self, frame_index: int, timestamp_ms: float, shape: tuple[int, int]
    ) -> np.ndarray:
        base = self.correction_um(frame_index)
        out = np.empty((self.offsets_um.size, *shape), dtype=np.float32)
        for k, off in enumerate(self.offsets_um):
            out[k].fill(base + off)
        return out

    def describe(self) -> dict[str, Any]:
        return {"type": "drift-timeline", "offsets_um": self.offsets_um.tolist()}


def plan_from_record(
    rec: Mapping[str, Any],
    shape: tuple[int, int],
    pixel_size_um: float | None,
    folder: Path,
    timeline: Mapping[str, Any] | None = None,
) -> StaticPlanePlan | TimelinePlan:
    """Rebuild a plane plan from its journal record (``describe()`` + saved surface).

    A drift-compensation plan (``"type": "drift"``) is replayed from ``timeline``
    (:func:`~live_deepz.recording.dpm_timeline`): the correction each frame was served.
    """
    desc = rec.get("plan") or {}
    ptype = desc.get("type", "static")
    if ptype == "drift":
        offs: Any = desc.get("offsets_um", rec.get("offsets_um"))
        plan = TimelinePlan([0.0] if offs is None else offs, timeline or {"frame_index": []})
        if offs is None or not len(plan):
            raise RecordingError(
                f"plan {rec.get('plan_id')} is a drift-compensation plan but the recording "
                "holds no DPM timeline for it (no `drift` events in the journal); its planes "
                "cannot be rebuilt"
            )
        return plan
    if ptype != "static":
        raise RecordingError(
            f"plan {rec.get('plan_id')} is of type {ptype!r}, which cannot be rebuilt from the "
            "recording; complete the recording from the live app that recorded it"
        )
    offsets: Any = desc.get("offsets_um", rec.get("offsets_um"))
    if offsets is None:
        raise RecordingError(f"plan {rec.get('plan_id')} has no plane offsets")
    surface: Any = desc.get("surface")
    try:
        if surface is None:
            return StaticPlanePlan(offsets)
        if surface.get("kind") == "array" and "path" not in surface:
            name = rec.get("surface_file")
            if not name:
                raise RecordingError(
                    f"plan {rec.get('plan_id')} uses a surface array that was not saved with "
                    "the recording; its planes cannot be rebuilt"
                )
            from ..dpm import from_surface

            return StaticPlanePlan(
                offsets, from_surface(folder / name, shape=shape), surface_spec=dict(surface)
            )
        return StaticPlanePlan.from_spec(offsets, dict(surface), shape, pixel_size_um or 1.0)
    except InputError as exc:
        raise RecordingError(f"cannot rebuild plan {rec.get('plan_id')}: {exc}") from None


def _pick(records: Sequence[Mapping[str, Any]], index: int) -> Mapping[str, Any] | None:
    """The record with the largest ``first_index <= index`` (else the earliest one)."""
    best = None
    for rec in sorted(records, key=lambda r: int(r.get("first_index", 0))):
        if best is None or int(rec.get("first_index", 0)) <= index:
            best = rec
    return best


def complete_recording(
    path: str | os.PathLike[str],
    refocus: RefocusLike | Sequence[RefocusLike],
    *,
    plans: Mapping[int, Any] | None = None,
    progress: bool = True,
    summary: Mapping[str, Any] | None = None,
) -> CompletionReport:
    """Compute and store the missing virtual planes of the recording at ``path``.

    Parameters
    ----------
    refocus
        ``refocus.refocus(image (H, W) f32 normalised, dpms_um (K, H, W), out=(K, H, W) f32)``
        (a ``live_deepz.engine.Refocuser``: its model card's range and DPM scale apply),
        one per channel (or one for all).
    plans
        ``plan_id -> plan object`` to use instead of rebuilding them from the journal (the
        live recorder passes the pipeline's own plans).
    progress
        Show a tqdm progress bar on stderr.

    The recording is reopened for appending (a killed recording is repaired first: torn
    tails dropped, the metadata rewritten at the end). Raises :class:`RecordingError`.
    """
    t_start = time.perf_counter()
    writer = RecordingWriter.reopen(path)
    try:
        if writer.kind != "recording":
            raise RecordingError(
                f"{writer.paths.base} is a refocus output (no raw frames); run refocus again"
            )
        header = writer.header
        refocusers = list(refocus) if isinstance(refocus, Sequence) else [refocus]
        n_c = writer.n_channels
        if len(refocusers) == 1 and n_c > 1:
            refocusers = refocusers * n_c
        if len(refocusers) != n_c:
            raise RecordingError(f"{len(refocusers)} refocusers for {n_c} channels")
        todo = writer.incomplete()  # slots: t * n_c + c (= frames t with one channel)
        acquired = writer.acquired_mask()
        n_slots = writer.n_slots
        n = int(acquired.sum())
        report = CompletionReport(writer.paths.base, n, n - len(todo), 0)
        shape = writer.frame_shape
        k = writer.n_planes
        st = writer.state
        plan_recs = list(st.plans.values())
        timeline = dpm_timeline(st.events)
        built: dict[int, Any] = dict(plans or {})
        norms: dict[int, list[Mapping[str, Any]]] = {}
        for nr in st.normalizations:
            norms.setdefault(int(nr.get("channel", 0)), []).append(nr)
        # a recording in which no frame was processed has no normalisation yet: fit it the
        # way the live pipeline does, on the first frame, and record it
        for c in range(n_c):
            have = [u for u in range(c, n_slots, n_c) if acquired[u]]
            if c not in norms and have:
                first = np.asarray(writer.read_raw(have[0] // n_c)).reshape(n_c, *shape)[c]
                try:
                    nz = fit_normalization(first)
                except InputError as exc:
                    which = f" of channel {writer.channels[c]}" if writer.channels else ""
                    raise RecordingError(
                        f"cannot fit the intensity normalisation on the first frame{which}: {exc}"
                    ) from None
                writer.set_normalization(nz.background, nz.scale, first_index=0, channel=c)
                norms[c] = [st.normalizations[-1]]
        out = np.empty((k, *shape), dtype=np.float32)
        x = np.empty(shape, dtype=np.float32)
        known_plan = [st.planes_plan[u] if st.complete[u] else -1 for u in range(n_slots)]
        bar = None
        if progress and todo:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="completing virtual planes", unit="frame")
        # an allowed out-of-range plan warned when it was recorded; once is enough
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfRangeWarning)
            for slot in todo:
                t, c = divmod(slot, n_c)
                info = st.frames[slot]
                index = info.index if info.index >= 0 else slot
                pid = info.plan_id
                if pid < 0 or (pid not in st.plans and pid not in built):
                    # the plan of the nearest earlier processed frame, else the one in effect
                    pid = next(
                        (known_plan[u] for u in range(slot, -1, -1) if known_plan[u] >= 0), -1
                    )
                    if pid < 0:
                        picked = _pick(plan_recs, index)
                        pid = int(picked["plan_id"]) if picked is not None else 0
                plan = built.get(pid)
                if plan is None:
                    rec: Any = st.plans.get(pid)
                    if rec is None:  # no plan journaled: the header's plan, else its offsets
                        desc = (header.get("metadata") or {}).get("plan") or {
                            "type": "static",
                            "offsets_um": [float(v) for v in writer.offsets_um],
                            "surface": None,
                        }
                        rec = {"plan_id": pid, "plan": desc}
                    plan = built[pid] = plan_from_record(
                        rec, shape, writer.pixel_size_um, writer.paths.folder, timeline
                    )
                t_ms = info.camera_time_ms if math.isfinite(info.camera_time_ms) else 0.0
                dpms = np.asarray(plan.dpms_for_frame(index, t_ms, shape), dtype=np.float32)
                if dpms.shape[0] != k:
                    report.skipped.append(slot)
                    continue
                raw = np.asarray(writer.read_raw(t)).reshape(n_c, *shape)[c]
                nrec = _pick(norms[c], index)
                assert nrec is not None
                Normalization(nrec["background"], nrec["scale"]).apply(raw, out=x)
                refocusers[c].refocus(x, dpms, out=out, what=f"the DPMs of plan {pid}")
                channel = None if writer.channels is None else c
                writer.write_planes(t, out, plan_id=pid, source="completed", channel=channel)
                report.completed += 1
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        if report.skipped:
            writer.event(
                f"{len(report.skipped)} frame(s) used a plan with a different number of planes "
                "and were not completed",
                frames=report.skipped[:1000],
            )
        report.seconds = time.perf_counter() - t_start
        writer.close(
            {
                **dict(summary or {}),
                "completed_after": report.completed,
                "completion_s": round(report.seconds, 3),
            }
        )
        return report
    except BaseException as exc:
        # keep the files finished (OME-XML, end line) even when completion stops early
        try:
            writer.event(f"completion stopped: {type(exc).__name__}: {exc}")
            writer.close(summary)
        except (LiveDeepzError, OSError):
            writer.abort()
        raise
