"""The Recorder journals a dynamic plan's per-frame DPMs (the DPM timeline) and completion
rebuilds every skipped frame's DPMs from it (64 px sim frames, ``FakeBackend``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _recording_support import SHAPE, FakeBackend, SlowBackend, sim_core, wait_for

from live_deepz.dpm import to_network_units
from live_deepz.engine import Refocuser
from live_deepz.engine._pipeline import LivePipeline
from live_deepz.engine._recorder import Recorder
from live_deepz.normalize import Normalization
from live_deepz.recording import complete_recording, open_recording

pytestmark = pytest.mark.timeout(120)

OFFSETS = [-1.0, 0.0, 1.0]
RATE_UM = 0.05
"""The fake drift: frame i is served the correction RATE_UM * i (linear, so the
interpolation completion uses for skipped frames is exact)."""


class FakeDriftPlan:
    """The drift-compensation plan's interface (``update``, ``served_um``, ``trace``) with a
    known correction per frame."""

    def __init__(self) -> None:
        self.offsets_um = np.array(OFFSETS)
        self.served: dict[int, float] = {}
        self.estimates: list[int] = []

    def update(self, image_norm: np.ndarray, frame_index: int, timestamp_ms: float) -> None:
        if frame_index % 4 == 0:
            self.estimates.append(frame_index)

    def dpms_for_frame(self, frame_index: int, timestamp_ms: float, shape: Any) -> np.ndarray:
        c = RATE_UM * frame_index
        self.served[frame_index] = c
        return (np.asarray(OFFSETS, np.float32)[:, None, None] + np.float32(c)) * np.ones(
            (1, *shape), np.float32
        )

    def served_um(self, frame_index: int) -> float | None:
        return self.served.get(frame_index)

    def trace(self) -> dict[str, np.ndarray]:
        f = np.array(self.estimates, np.float64)
        return {
            "frame_index": f,
            "t_ms": f * 5.0,
            "raw_um": f * RATE_UM,
            "z_std_um": np.zeros_like(f),
            "accepted": np.ones(f.shape, bool),
            "filtered_um": f * RATE_UM,
        }

    def describe(self) -> dict[str, Any]:
        return {"type": "drift", "offsets_um": OFFSETS, "n_served": len(self.served)}


def _expected(r: Any, t: int, last_served: int) -> np.ndarray:
    """Planes of frame t: its own correction (frames after the last one served hold it)."""
    norm = r.metadata["normalizations"][0]
    x = Normalization(norm["background"], norm["scale"]).apply(r.raw[t])
    i = min(int(r.frame_indices[t]), last_served)
    dpm = np.asarray(OFFSETS, np.float32) + np.float32(RATE_UM * i)
    return x[None] + to_network_units(np.broadcast_to(dpm[:, None, None], (3, *SHAPE)), 10.0)


def test_recorder_journals_the_dpm_timeline_and_completion_uses_it(tmp_path: Path) -> None:
    slow = SlowBackend(FakeBackend(), delay=0.03)
    plan = FakeDriftPlan()
    pl = LivePipeline(
        sim_core(exposure_ms=5.0), slow, plan, z_range_um=(-10.0, 10.0), dpm_scale_um=10.0
    )
    out = tmp_path / "drift.ome.tif"
    rec = Recorder(pl, out, progress=False, max_frames=40, complete_on_stop=False)
    rec.start()
    pl.start()
    assert wait_for(lambda: rec.frames_written >= 40)
    s = rec.stop()
    assert s.error is None and s.frames_recorded == 40
    assert s.skipped_by_engine > 0 and s.processed_live > 0  # something left to complete
    with open_recording(out) as r:
        tl = r.metadata["dpm_timeline"]
        live = [int(r.frame_indices[t]) for t in np.flatnonzero(r.complete)]
        # every frame processed live is in the timeline, with the correction it was served
        assert set(live) <= set(tl["frame_index"])
        for f, c in zip(tl["frame_index"], tl["correction_um"], strict=True):
            assert c == pytest.approx(RATE_UM * f, abs=1e-4)
        events = [e for e in r.metadata["events"] if e.get("message") == "drift"]
        est = [f for e in events for f in e["estimates"]["frame_index"]]
        assert est == sorted(est) and set(est) == set(plan.estimates)
        assert not r.complete.all()

    report = complete_recording(out, Refocuser.for_recording(out, FakeBackend()), progress=False)
    assert report.complete and report.completed > 0
    with open_recording(out) as r:
        assert r.complete.all()
        served = r.metadata["dpm_timeline"]["frame_index"]
        for t in range(r.n_frames):  # live and completed: each frame's own DPMs
            want = _expected(r, t, max(served))
            np.testing.assert_allclose(r.planes[t], want, rtol=1e-5, atol=1e-4)
        n_served = len(served)
    sources = [
        json.loads(line).get("source")
        for line in (tmp_path / "drift.journal.jsonl").read_text().splitlines()
        if '"planes"' in line
    ]
    assert "live" in sources and "completed" in sources

    # without the journal the files' own metadata still hold the whole timeline
    (tmp_path / "drift.journal.jsonl").unlink()
    with open_recording(out) as r:
        assert len(r.metadata["dpm_timeline"]["frame_index"]) == n_served


def test_planes_carry_the_shift_their_plan_served() -> None:
    """The display reads a drift plan's served correction from the planes (stamped on the
    inference thread), not from the plan; a static plan's planes carry None."""
    from live_deepz.dpm import StaticPlanePlan

    plan = FakeDriftPlan()
    pl = LivePipeline(
        sim_core(exposure_ms=5.0), FakeBackend(), plan, z_range_um=(-10.0, 10.0), dpm_scale_um=10.0
    )
    sub = pl.subscribe_all()
    pl.start()
    try:
        got = [sub.get(timeout=5.0) for _ in range(5)]
        pl.set_plan(StaticPlanePlan(OFFSETS))
        assert wait_for(lambda: (f := sub.get(timeout=1.0)) is not None and f.plan_id == 1)
        static = sub.get(timeout=5.0)
    finally:
        pl.stop()
    for pf in got:
        assert pf is not None and pf.served_um == pytest.approx(RATE_UM * pf.index)
    assert static is not None and static.plan_id == 1 and static.served_um is None
