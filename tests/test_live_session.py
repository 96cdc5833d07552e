"""The engine's Qt-free LiveSession: its psygnal events and its recording lifecycle."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from _recording_support import FakeBackend, sim_core, wait_for

from live_deepz.dpm import StaticPlanePlan
from live_deepz.engine import LiveSession, recorder_ring_slots
from live_deepz.errors import InputError
from live_deepz.recording import open_recording

pytestmark = pytest.mark.timeout(120)


def _model(scale: float = 10.0, name: str = "m") -> Any:
    card = SimpleNamespace(name=name, z_range_um=(-10.0, 10.0), dpm_scale_um=scale, optics={})
    return SimpleNamespace(card=card, generator=None, weights_sha256="", path=Path(""))


def test_events_and_a_recording_that_attaches_and_detaches(tmp_path: Path) -> None:
    live = LiveSession(
        sim_core(exposure_ms=5.0),
        _model(),
        FakeBackend(),
        StaticPlanePlan([-1.0, 1.0]),
        reserve_recorder_rings=True,
    )
    events: list[tuple[Any, ...]] = []
    live.started.connect(lambda: events.append(("started",)))
    live.planChanged.connect(lambda pid, plan: events.append(("plan", pid)))
    live.recordingStarted.connect(lambda path: events.append(("rec", Path(path).name)))
    live.recordingFinished.connect(lambda s: events.append(("done", s.frames_recorded)))
    try:
        live.start()
        assert wait_for(lambda: live.pipeline.stats().frames_in >= 5)
        rec = live.start_recording(tmp_path / "a.ome.tif", progress=False)
        assert live.recording and not rec.stops_pipeline
        assert live.set_plan(StaticPlanePlan([-2.0, 2.0])) == 1
        assert wait_for(lambda: rec.frames_written >= 10)
        summary = live.stop_recording()
        assert summary is not None and summary.error is None
        assert live.state == "running" and not live.recording
    finally:
        live.close()
    assert events[0] == ("started",) and ("rec", "a.ome.tif") in events
    assert ("plan", 1) in events and events[-1] == ("done", summary.frames_recorded)
    with open_recording(tmp_path / "a.ome.tif") as r:
        assert r.complete.all() and set(int(p) for p in r.plan_ids) <= {0, 1}


def test_rings_reserved_for_a_later_recorder_and_bad_scales() -> None:
    raw, planes = recorder_ring_slots((512, 512), 12)
    assert raw == 512 and planes == 21  # 256 MB of 0.5 MB frames / of 12 MB plane sets
    with pytest.raises(InputError, match="different DPM scales"):
        LiveSession(
            sim_core(),
            [_model(10.0, "a"), _model(5.0, "b")],
            [FakeBackend(), FakeBackend()],
            StaticPlanePlan([0.0]),
            channels=["a", "b"],
        )


def test_record_starts_the_stream_when_not_live_and_finish_stops_it(tmp_path: Path) -> None:
    from live_deepz.engine import grab_frame

    core = sim_core(exposure_ms=5.0)
    live = LiveSession(core, _model(), FakeBackend(), StaticPlanePlan([0.0]))
    try:
        image, where = grab_frame(core, live.pipeline)  # not live: one snapped frame
        assert image.shape == (int(core.getImageHeight()), int(core.getImageWidth()))
        assert "snapped" in where
        rec = live.recorder_for(tmp_path / "b.ome.tif", progress=False)
        assert live.record(rec) is True and live.state == "running"  # the stream started
        assert wait_for(lambda: rec.frames_written >= 3)
        image, where = grab_frame(core, live.pipeline)
        assert "newest live frame" in where
        summary = live.finish_recording(complete=False)
        assert summary is not None and live.state != "running"  # it stopped what it started
        assert live.finish_recording() is None
        # a plan with more planes than the stopped pipeline's room is set stopped
        assert live.try_set_plan(StaticPlanePlan([-1.0, 1.0])) is True
    finally:
        live.close()


def test_abandon_recording_logs_how_to_complete_it(tmp_path: Path, caplog: Any) -> None:
    live = LiveSession(sim_core(exposure_ms=5.0), _model(), FakeBackend(), StaticPlanePlan([0.0]))
    try:
        live.start()
        rec = live.start_recording(tmp_path / "c.ome.tif", progress=False)
        assert wait_for(lambda: rec.frames_written >= 2)
        with caplog.at_level("WARNING", logger="live_deepz.engine"):
            live.abandon_recording()
        assert not live.recording and "live-deepz complete" in caplog.text
    finally:
        live.close()
