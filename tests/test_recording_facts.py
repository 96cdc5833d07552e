"""Frames carry their facts: the plan a frame was acquired under travels with it to the
recorder and to completion; a recorder attaches to a running pipeline and detaches without
restarting the camera (64 px sim frames, ``FakeBackend``: planes = image + DPM / 10)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _recording_support import SHAPE, FakeBackend, SlowBackend, sim_core, wait_for

from live_deepz.dpm import StaticPlanePlan
from live_deepz.engine import LivePipeline, Recorder
from live_deepz.normalize import Normalization
from live_deepz.recording import open_recording

pytestmark = pytest.mark.timeout(120)

PLAN_A = [-2.0, 0.0, 2.0]
PLAN_B = [-5.0, 1.0, 6.0]


def _planes_of(r: Any, t: int, offsets: list[float]) -> np.ndarray:
    norm = r.metadata["normalizations"][0]
    x = Normalization(norm["background"], norm["scale"]).apply(r.raw[t])
    return x[None] + (np.asarray(offsets, np.float32) / np.float32(10.0))[:, None, None]


def _sources(journal: Path) -> dict[int, str]:
    out: dict[int, str] = {}
    for line in journal.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("type") == "planes":
            out[int(rec["t"])] = rec["source"]
    return out


def test_plan_change_while_the_recorder_lags_completes_with_each_frames_own_plan(
    tmp_path: Path,
) -> None:
    n = 70
    pl = LivePipeline(
        sim_core(exposure_ms=5.0),
        SlowBackend(FakeBackend(), delay=0.02),  # the engine skips frames: completion works
        StaticPlanePlan(PLAN_A),
        z_range_um=(-10.0, 10.0),
        dpm_scale_um=10.0,
    )
    out = tmp_path / "facts.ome.tif"
    rec = Recorder(pl, out, progress=False, max_frames=n)
    rec.start()
    assert rec.writer is not None
    append = rec.writer.append_frame

    def slow_append(*a: Any, **kw: Any) -> Any:  # a slow disk: the raw recorder lags
        time.sleep(0.02)
        return append(*a, **kw)

    rec.writer.append_frame = slow_append  # type: ignore[method-assign]
    pl.start()
    assert wait_for(lambda: pl.stats().frames_in >= 30)
    before = pl.stats().frames_in  # frames popped so far: acquired under plan A
    pl.set_plan(StaticPlanePlan(PLAN_B))
    after = pl.stats().frames_in  # frames popped from here on: plan B
    behind = before - rec.writer.n_frames
    assert behind >= 5, f"the recorder should lag at the plan change ({behind} frames)"
    assert wait_for(lambda: rec.frames_written >= n, timeout=60)
    s = rec.stop()
    assert s.error is None and s.frames_recorded == n and s.raw_lost == 0
    assert s.completed_after > 0
    sources = _sources(tmp_path / "facts.journal.jsonl")
    with open_recording(out) as r:
        assert r.complete.all()
        idx = [int(i) for i in r.frame_indices]
        assert idx == sorted(idx)
        for t, i in enumerate(idx):
            if before <= i < after:
                continue  # popped while set_plan ran: either plan is right
            want = PLAN_A if i < before else PLAN_B
            assert int(r.plan_ids[t]) == (0 if want is PLAN_A else 1), f"t={t}"
            np.testing.assert_allclose(
                r.planes[t], _planes_of(r, t, want), rtol=1e-5, atol=1e-4, err_msg=f"t={t}"
            )
        assert any(i < before for i in idx) and any(i >= after for i in idx)
        completed_a = [t for t, i in enumerate(idx) if i < before and sources[t] == "completed"]
        assert completed_a, "some plan-A frames must have been completed after the stop"


def test_a_recorder_attaches_to_a_running_pipeline_and_detaches_without_a_restart(
    tmp_path: Path,
) -> None:
    pl = LivePipeline(
        sim_core(exposure_ms=5.0),
        FakeBackend(),
        StaticPlanePlan(PLAN_A),
        z_range_um=(-10.0, 10.0),
        dpm_scale_um=10.0,
        ring_slots=256,
        plane_slots=64,
    )
    raw = pl.subscribe_raw(maxsize=256)  # a witness of every camera frame
    pl.start()
    try:
        assert wait_for(lambda: pl.stats().frames_in >= 10)
        rec = Recorder(pl, tmp_path / "att.ome.tif", progress=False)
        rec.start()  # no stop/start of the pipeline
        assert not rec.stops_pipeline
        assert wait_for(lambda: rec.frames_written >= 20)
        s = rec.stop()
        assert pl.state == "running"  # the camera keeps streaming
        assert s.error is None and s.frames_recorded >= 20 and s.raw_lost == 0
        assert s.frames_acquired == s.frames_recorded
        n_then = pl.stats().frames_in
        assert wait_for(lambda: pl.stats().frames_in > n_then + 5)
    finally:
        pl.stop()
    seen = []
    while (f := raw.get(timeout=0.1)) is not None:
        seen.append(f.camera_frame)
    # one run: the camera's frame numbers continue through the recording, no restart
    assert seen == list(range(seen[0], seen[0] + len(seen)))
    with open_recording(tmp_path / "att.ome.tif") as r:
        nums = [int(v) for v in r.frame_numbers]
        assert nums[0] > seen[0] and nums == list(range(nums[0], nums[0] + len(nums)))
        assert r.complete.all()
        assert r.raw.shape[1:] == SHAPE


def test_the_pipeline_keeps_recent_plans_by_id_only() -> None:
    pl = LivePipeline(
        sim_core(),
        FakeBackend(),
        StaticPlanePlan(PLAN_A),
        z_range_um=(-10.0, 10.0),
        dpm_scale_um=10.0,
    )
    plans = [StaticPlanePlan([float(i % 5)]) for i in range(40)]
    ids = [pl.set_plan(p) for p in plans]
    assert ids == list(range(1, 41))
    assert pl.plan_of(40) is plans[-1] and pl.plan_of(30) is plans[29]
    assert pl.plan_of(0) is None and pl.plan_of(10) is None  # old ones are let go
