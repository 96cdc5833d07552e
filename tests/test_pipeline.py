"""The live pipeline through the simulated microscope (UniMMCore + SimCamera), small frames.

Most tests use a ``FakeBackend`` (``out[k] = image + dpm_net[k]``, optionally slow or failing)
so that the expected planes are known exactly; one test runs a tiny real generator through
the real torch backend. No test asserts a duration: waits are bounded polls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from live_deepz.dpm import StaticPlanePlan
from live_deepz.engine import (
    EngineTooSlowError,
    LivePipeline,
    PipelineError,
    PipelineStats,
    PlaneFrame,
    RawFrame,
    StreamSubscriber,
)
from live_deepz.engine.testing import FakeBackend
from live_deepz.errors import CameraError, DPMRangeError, InputError
from live_deepz.microscope import SIM_CAMERA, NoiseFrameSource, open_core
from live_deepz.normalize import Normalization

pytestmark = pytest.mark.timeout(60)

SHAPE = (64, 64)
Z_RANGE = (-10.0, 10.0)
SCALE = 10.0
THREAD_EXC = "ignore::pytest.PytestUnhandledThreadExceptionWarning"


class FlakyCore:
    """A core whose pop sometimes fails although images wait (the known race), and whose
    ``ImageNumber`` skips ahead every ``gap_every`` frames (injected camera drops)."""

    def __init__(self, core: Any, fail_every: int = 3, gap_every: int = 0) -> None:
        self._core = core
        self.fail_every = fail_every
        self.gap_every = gap_every
        self.calls = 0
        self.failures = 0
        self.popped = 0
        self.injected = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    def popNextImageAndMD(self, *args: Any, **kwargs: Any) -> tuple[np.ndarray, Any]:
        self.calls += 1
        if self.fail_every and self.calls % self.fail_every == 0:
            self.failures += 1
            if self.failures % 2:
                raise IndexError("Circular buffer is empty.")
            raise RuntimeError("Circular buffer is empty")
        img, md = self._core.popNextImageAndMD(*args, **kwargs)
        meta = dict(md)
        if self.gap_every and self.popped and self.popped % self.gap_every == 0:
            self.injected += 2
        meta["ImageNumber"] = str(int(meta["ImageNumber"]) + self.injected)
        self.popped += 1
        return img, meta


def sim_core(exposure_ms: float = 2.0, shape: tuple[int, int] = SHAPE) -> Any:
    return open_core("sim", scene=NoiseFrameSource(shape), exposure_ms=exposure_ms)


def make(
    core: Any, backend: Any = None, offsets: Any = (-2.0, 0.0, 2.0), **kw: Any
) -> LivePipeline:
    return LivePipeline(
        core,
        backend if backend is not None else FakeBackend(),
        StaticPlanePlan(list(offsets)),
        z_range_um=Z_RANGE,
        dpm_scale_um=SCALE,
        **kw,
    )


def wait_until(
    cond: Callable[[], bool], timeout: float = 20.0, why: Callable[[], object] = lambda: ""
) -> None:
    deadline = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > deadline:
            raise AssertionError(f"condition not reached in {timeout} s {why()}")
        time.sleep(0.005)


def processed(p: LivePipeline, n: int) -> Callable[[], bool]:
    def cond() -> bool:
        s = p.stats()
        if s.error is not None:
            raise AssertionError(f"pipeline failed: {s.error}")
        return s.frames_processed >= n

    return cond


def our_threads() -> set[threading.Thread]:
    return set(threading.enumerate())


def assert_threads_gone(before: set[threading.Thread], timeout: float = 10.0) -> None:
    wait_until(lambda: not (our_threads() - before), timeout, lambda: our_threads() - before)


class Collector:
    """Drains a stream subscriber in a thread (as a recorder would), copying each frame."""

    def __init__(self, sub: StreamSubscriber) -> None:
        self.sub = sub
        self.frames: list[Any] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.sub.ended:
                f = self.sub.get(timeout=0.05, copy=True)
                if f is not None:
                    self.frames.append(f)
                    self.sub.mark_written()
        except PipelineError as e:
            self.error = e

    def join(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive()

    @property
    def indices(self) -> list[int]:
        return [f.index for f in self.frames]


def check_invariant(s: PipelineStats) -> None:
    assert s.frames_in == s.frames_processed + s.dropped_engine + s.in_flight
    # the frame ring + the frame in the engine + one being pushed: frames overwritten before
    # the engine reached them are counted as dropped at once, not later
    assert 0 <= s.in_flight <= s.frame_ring_slots + 2


def expected_planes(raw: RawFrame, norm: Normalization, offsets: Any) -> np.ndarray:
    x = norm.apply(raw.image)
    return np.stack([x + np.float32(o) / np.float32(SCALE) for o in offsets])


# ------------------------------------------------------------------------------ live mode


def test_live_mode_slow_engine_counts_every_skipped_frame() -> None:
    before = our_threads()
    core = sim_core(exposure_ms=2.0)
    p = make(core, FakeBackend(delay=0.015), mode="live", ring_slots=8)
    planes = Collector(p.subscribe_all(maxsize=64))
    raw = Collector(p.subscribe_raw())  # default: the frame ring's 8 slots
    display = p.subscribe_latest()
    p.start()
    assert p.state == "running"
    assert p.stats().frame_ring_slots == 8 and p.stats().plane_ring_slots == 64
    shown: list[PlaneFrame] = []
    deadline = time.perf_counter() + 20
    while p.stats().frames_processed < 12 and time.perf_counter() < deadline:
        check_invariant(p.stats())  # readable (and consistent) while running
        f = display.get_latest()
        if f is not None:
            shown.append(f)
        time.sleep(0.01)
    p.stop()
    planes.join()
    raw.join()
    s = p.stats()
    assert p.state == "idle" and s.state == "idle" and s.error is None
    assert s.frames_processed >= 12
    assert s.dropped_engine > 0  # the camera is faster than the engine
    assert s.in_flight == 0
    assert s.frames_in == s.frames_processed + s.dropped_engine
    assert s.dropped_camera == 0
    assert s.latency_p50_ms > 0 and s.latency_p99_ms >= s.latency_p50_ms
    assert set(s.stage_ms) == {"pop", "normalize", "dpm", "infer", "publish"}
    # the recorder got every processed frame, in order; the raw recorder every camera frame
    assert len(planes.indices) == s.frames_processed
    assert planes.indices == sorted(set(planes.indices))
    # every camera frame reached the raw recorder or is named as missed by it
    assert sorted(raw.indices + raw.sub.missed_frames()) == list(range(s.frames_in))
    assert s.written == s.frames_processed + len(raw.frames)
    assert all(f.camera_frame == f.index for f in raw.frames)  # no camera drops
    assert [f.index for f in shown] == sorted({f.index for f in shown})
    # planes = normalised frame + DPM / scale, with the frame's own metadata
    norm = p.normalization
    assert norm is not None
    by_index = {f.index: f for f in raw.frames}
    compared = 0
    for f in planes.frames:
        r = by_index.get(f.index)
        if r is None:
            continue
        compared += 1
        np.testing.assert_allclose(f.planes, expected_planes(r, norm, [-2, 0, 2]), atol=1e-6)
        assert f.camera_frame == r.camera_frame and f.arrival_s == r.arrival_s
        assert f.ready_s >= f.arrival_s and f.plan_id == 0
        assert list(f.offsets_um) == [-2.0, 0.0, 2.0]
    assert compared > 0
    assert_threads_gone(before)


# -------------------------------------------------------------------------- lossless mode


def test_lossless_mode_processes_every_frame_in_order() -> None:
    before = our_threads()
    core = sim_core(exposure_ms=4.0)
    p = make(core, mode="lossless", ring_slots=4)
    planes = Collector(p.subscribe_all(maxsize=512))
    raw = Collector(p.subscribe_raw(maxsize=512))
    p.start()
    wait_until(processed(p, 40))
    p.stop()
    planes.join()
    raw.join()
    s = p.stats()
    assert s.dropped_engine == 0 and s.in_flight == 0 and s.discarded_at_stop == 0
    assert s.frames_processed == s.frames_in >= 40
    assert planes.indices == list(range(s.frames_in))
    assert raw.indices == list(range(s.frames_in))
    assert not planes.sub.missed_frames() and not raw.sub.missed_frames()
    assert_threads_gone(before)


def test_lossless_refuses_clearly_when_the_engine_is_too_slow() -> None:
    before = our_threads()
    core = sim_core(exposure_ms=2.0)
    p = make(core, FakeBackend(delay=0.03), mode="lossless", ring_slots=4, lossless_max_backlog=15)
    est = p.estimate_capacity(n_frames=2)
    assert not est.sustainable and est.engine_fps < est.camera_fps
    planes = Collector(p.subscribe_all(maxsize=256))
    display = p.subscribe_latest()
    p.start()
    wait_until(lambda: p.state == "error")
    assert isinstance(p.exception, EngineTooSlowError)
    assert p.error is not None
    assert p.error.startswith("engine too slow for lossless at ")
    assert "fps: measured " in p.error
    planes.join()
    assert isinstance(planes.error, PipelineError) and str(planes.error) == p.error
    # what was processed before the refusal arrived complete and in order
    assert planes.indices == list(range(len(planes.indices)))
    with pytest.raises(PipelineError, match="engine too slow"):
        while True:  # newest frames first, then the error
            display.get_latest()
    assert_threads_gone(before)  # the threads ended by themselves
    p.stop()
    s = p.stats()
    assert p.state == "error" and s.error == p.error
    assert s.frames_in == s.frames_processed + s.dropped_engine


def test_capacity_estimate_of_a_fast_engine_is_sustainable() -> None:
    p = make(sim_core(exposure_ms=10.0))
    est = p.estimate_capacity(n_frames=3)
    assert est.sustainable and est.n_planes == 3 and (est.height, est.width) == SHAPE
    assert est.camera_fps == pytest.approx(100.0)


# ---------------------------------------------------------------------- slow subscribers


def test_slow_recorders_are_told_exactly_which_frames_they_missed() -> None:
    core = sim_core(exposure_ms=3.0)
    p = make(core, mode="lossless", ring_slots=3, plane_slots=2)
    planes = p.subscribe_all(maxsize=2)
    raw = p.subscribe_raw(maxsize=3)
    p.start()
    first = planes.get(timeout=10)  # then it sleeps while the pipeline runs on
    assert first is not None and first.index == 0
    wait_until(processed(p, 30))
    p.stop()
    got_planes = [first]
    got_planes += list(planes)
    got_raw = list(raw)
    s = p.stats()
    assert s.frames_processed == s.frames_in  # the pipeline itself lost nothing

    for sub, got, total in ((planes, got_planes, s.frames_processed), (raw, got_raw, s.frames_in)):
        missed = sub.missed_frames()
        delivered = [f.index for f in got]
        assert missed, "a recorder this slow must have missed frames"
        assert sorted(delivered + missed) == list(range(total))  # exactly the rest
        told = [i for f in got for i in f.missed_before]
        assert told == missed  # each frame says which ones were missed right before it
        assert (sub.delivered, sub.missed) == (len(delivered), len(missed))
    assert s.missed_by_subscribers == len(planes.missed_frames()) + len(raw.missed_frames())


def test_subscriber_made_while_running_starts_at_the_next_frame() -> None:
    p = make(sim_core(exposure_ms=3.0), mode="lossless")
    with p:
        wait_until(processed(p, 5))
        sub = p.subscribe_all()
        f = sub.get(timeout=10)
        assert f is not None and f.index >= 5
        g = sub.get(timeout=10)
        assert g is not None and g.index == f.index + 1
    assert p.state == "idle"
    assert sub.get(timeout=1) is not None or sub.ended
    list(sub)  # drains to the end of the run
    assert sub.ended


# --------------------------------------------------------------------------- camera drops


def test_camera_drops_are_counted_from_frame_number_gaps() -> None:
    core = sim_core(exposure_ms=2.0)
    core.setProperty(SIM_CAMERA, "DropEvery", 4)  # frames 3, 7, 11, ... never delivered
    p = make(core, mode="lossless")
    raw = Collector(p.subscribe_raw(maxsize=512))
    p.start()
    wait_until(processed(p, 30))
    p.stop()
    raw.join()
    s = p.stats()
    numbers = [f.camera_frame for f in raw.frames]
    assert numbers[0] == 0 and len(numbers) == s.frames_in
    assert not [n for n in numbers if n % 4 == 3]
    assert s.dropped_camera == numbers[-1] + 1 - len(numbers) > 0


def test_pop_race_is_retried_and_image_number_gaps_counted() -> None:
    flaky = FlakyCore(sim_core(exposure_ms=2.0), fail_every=3, gap_every=5)
    p = make(flaky, mode="lossless", frame_number_key="ImageNumber")
    raw = Collector(p.subscribe_raw(maxsize=512))
    p.start()
    wait_until(processed(p, 30))
    p.stop()
    raw.join()
    s = p.stats()
    assert flaky.failures > 0 and p.state == "idle" and p.error is None
    assert raw.indices == list(range(s.frames_in))  # no frame lost to the race
    assert s.frames_processed == s.frames_in
    assert s.dropped_camera == flaky.injected > 0


@pytest.mark.filterwarnings(THREAD_EXC)
def test_pop_that_keeps_failing_is_a_camera_error() -> None:
    before = our_threads()
    flaky = FlakyCore(sim_core(exposure_ms=2.0), fail_every=1)
    p = make(flaky)
    p.start()
    wait_until(lambda: p.state == "error")
    assert isinstance(p.exception, CameraError)
    assert "popNextImageAndMD failed" in (p.error or "")
    assert_threads_gone(before)
    p.stop()


# ------------------------------------------------------------------------------- errors


def test_engine_error_reaches_state_subscribers_and_ends_threads() -> None:
    before = our_threads()
    core = sim_core(exposure_ms=3.0)
    backend = FakeBackend(fail_after=5)
    p = make(core, backend, mode="lossless")
    rec = Collector(p.subscribe_all(maxsize=64))
    display = p.subscribe_latest()
    p.start()
    wait_until(lambda: p.state == "error")
    assert p.error is not None and "GPU on fire" in p.error and "inference failed" in p.error
    rec.join()
    assert rec.indices == [0, 1, 2, 3, 4], (rec.indices, rec.error)  # then the error
    assert isinstance(rec.error, PipelineError) and "GPU on fire" in str(rec.error)
    with pytest.raises(PipelineError, match="GPU on fire"):
        while True:
            display.get_latest()
    assert_threads_gone(before)
    assert not core.isSequenceRunning()
    s = p.stats()
    assert s.state == "error" and s.frames_processed == 5
    assert s.frames_in == s.frames_processed + s.dropped_engine
    # stop() keeps the error; start() again runs a fresh run
    p.stop()
    assert p.state == "error"
    backend.fail_after = None
    p.start()
    assert p.state == "running" and p.error is None
    wait_until(processed(p, 3))
    assert display.get_latest() is not None
    p.stop()
    assert p.state == "idle"
    assert_threads_gone(before)


@pytest.mark.filterwarnings(THREAD_EXC)
def test_camera_failure_reaches_state_and_subscribers() -> None:
    before = our_threads()
    core = sim_core(exposure_ms=2.0)
    core.setProperty(SIM_CAMERA, "FailAfterFrames", 12)
    p = make(core, mode="lossless")
    raw = Collector(p.subscribe_raw(maxsize=64))
    p.start()
    wait_until(lambda: p.state == "error")
    assert isinstance(p.exception, CameraError)
    assert "camera stopped streaming after 12 frames" in (p.error or "")
    assert "FailAfterFrames" in (p.error or "")  # the camera's own message
    raw.join()
    assert raw.indices == list(range(12))  # the frames delivered before the failure
    assert isinstance(raw.error, PipelineError)
    assert_threads_gone(before)
    p.stop()
    assert p.state == "error"


def test_start_refuses_a_core_that_is_already_streaming() -> None:
    core = sim_core()
    core.startContinuousSequenceAcquisition(0)
    try:
        with pytest.raises(CameraError, match="already running"):
            make(core).start()
    finally:
        core.stopSequenceAcquisition()


# -------------------------------------------------------------------- start/stop cycles


@pytest.mark.timeout(180)
def test_hundred_start_stop_cycles_leave_no_thread() -> None:
    before = our_threads()
    core = sim_core(exposure_ms=1.0, shape=(32, 32))
    p = make(core, offsets=[0.0], ring_slots=4, plane_slots=2)
    display = p.subscribe_latest()
    for i in range(100):
        if i % 2:
            p.start()
        else:
            p.__enter__()
        wait_until(processed(p, 1))
        assert display.get_latest() is not None or p.stats().frames_processed >= 1
        if i % 3:
            p.stop(timeout=5)
        else:
            p.__exit__(None, None, None)
        assert p.state == "idle"
        assert not core.isSequenceRunning()
    assert_threads_gone(before)


def test_restart_keeps_the_normalisation() -> None:
    p = make(sim_core(exposure_ms=3.0))
    p.start()
    wait_until(processed(p, 2))
    norm = p.normalization
    p.restart()
    wait_until(processed(p, 2))
    assert p.normalization is norm
    p.refit_normalization()
    wait_until(lambda: p.normalization is not norm)
    p.stop()


def test_frames_carry_the_normalisation_version_of_their_pop() -> None:
    """A refit applies to frames popped after it was asked for (stamped at the pop), so a
    backlog of older frames keeps the normalisation they were acquired under."""
    p = make(sim_core(exposure_ms=3.0), FakeBackend(delay=0.01), mode="lossless")
    planes = Collector(p.subscribe_all(maxsize=512))
    raw = Collector(p.subscribe_raw(maxsize=512))
    p.start()
    wait_until(processed(p, 3))
    p.refit_normalization()
    wait_until(lambda: any(f.norm_version == 1 for f in list(planes.frames)))
    wait_until(processed(p, p.stats().frames_processed + 3))
    p.stop()
    planes.join()
    raw.join()
    assert [f.norm_version for f in raw.frames] == sorted(f.norm_version for f in raw.frames)
    assert {f.norm_version for f in raw.frames} == {0, 1}
    by_version: dict[int, set[int]] = {}
    for f in planes.frames:
        by_version.setdefault(f.norm_version, set()).add(id(f.normalization))
    assert set(by_version) == {0, 1}
    assert len(by_version[0]) == 1 and len(by_version[1]) == 1  # one fit per version
    assert by_version[0] != by_version[1]


# ----------------------------------------------------------------------------- plans


def test_set_plan_while_running_takes_effect_on_the_next_frame() -> None:
    backend = FakeBackend(delay=0.002)
    p = make(sim_core(exposure_ms=3.0), backend, offsets=[0.0], max_planes=3, mode="lossless")
    rec = Collector(p.subscribe_all(maxsize=512))
    raw = Collector(p.subscribe_raw(maxsize=512))
    p.start()
    wait_until(processed(p, 5))
    pid = p.set_plan(StaticPlanePlan([-5.0, 5.0]))
    assert pid == 1 and p.plan_id == 1
    with pytest.raises(DPMRangeError):
        p.set_plan(StaticPlanePlan([0.0, 12.0]))  # outside the model's range: refused at once
    with pytest.raises(InputError, match="room for 3"):
        p.set_plan(StaticPlanePlan([-1.0, 0.0, 1.0, 2.0]))
    assert p.plan_id == 1
    n = p.stats().frames_processed
    wait_until(processed(p, n + 5))
    p.stop()
    rec.join()
    raw.join()
    ids = [f.plan_id for f in rec.frames]
    assert ids == sorted(ids) and ids[0] == 0 and ids[-1] == 1  # switches once, for good
    assert (64, 64, 2) in backend.prepared
    norm = p.normalization
    assert norm is not None
    by_index = {f.index: f for f in raw.frames}
    for f in rec.frames:
        want = [0.0] if f.plan_id == 0 else [-5.0, 5.0]
        assert list(f.offsets_um) == want and f.planes.shape == (len(want), *SHAPE)
        assert f.plan["offsets_um"] == want
        np.testing.assert_allclose(
            f.planes, expected_planes(by_index[f.index], norm, want), atol=1e-6
        )


class RampPlan:
    """A dynamic plan: one plane at ``(frame_index % 5) * step`` µm, a new array per frame."""

    def __init__(self, step: float = 1.0) -> None:
        self.offsets_um = np.zeros(1)
        self.step = step

    def dpms_for_frame(self, frame_index: int, timestamp_ms: float, shape: Any) -> np.ndarray:
        return np.full((1, *shape), (frame_index % 5) * self.step, np.float32)

    def describe(self) -> dict[str, Any]:
        return {"type": "ramp", "step": self.step}


def test_dynamic_plan_is_asked_every_frame() -> None:
    core = sim_core(exposure_ms=3.0)
    p = LivePipeline(
        core,
        FakeBackend(),
        RampPlan(),
        z_range_um=Z_RANGE,
        dpm_scale_um=SCALE,
        mode="lossless",
        normalization=Normalization(background=1000.0, scale=400.0),
    )
    rec = Collector(p.subscribe_all(maxsize=256))
    raw = Collector(p.subscribe_raw(maxsize=256))
    p.start()
    wait_until(processed(p, 12))
    p.stop()
    rec.join()
    raw.join()
    assert p.normalization == Normalization(1000.0, 400.0)  # a fixed one is never refitted
    for f, r in zip(rec.frames, raw.frames, strict=False):
        assert f.index == r.index
        want = (r.image.astype(np.float32) - 1000) / 400 + np.float32((f.index % 5) / 10)
        np.testing.assert_allclose(f.planes[0], want, atol=1e-5)
        assert f.plan == {"type": "ramp", "step": 1.0}


class FollowPlan(RampPlan):
    """A feedback plan (like drift compensation): DPM = mean of the frame it last saw."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, float]] = []
        self.level = 0.0

    def update(self, image_norm: np.ndarray, frame_index: int, timestamp_ms: float) -> None:
        self.level = float(np.clip(image_norm.mean(), -5.0, 5.0))
        self.seen.append((frame_index, self.level))

    def dpms_for_frame(self, frame_index: int, timestamp_ms: float, shape: Any) -> np.ndarray:
        assert self.seen and self.seen[-1][0] == frame_index  # update came first
        return np.full((1, *shape), self.level, np.float32)

    def describe(self) -> dict[str, Any]:
        return {"type": "follow", "level": self.level}


def test_feedback_plan_sees_each_normalised_frame_first_and_is_recorded_per_frame() -> None:
    norm = Normalization(background=1000.0, scale=400.0)
    plan = FollowPlan()
    p = LivePipeline(
        sim_core(exposure_ms=3.0),
        FakeBackend(),
        plan,
        z_range_um=Z_RANGE,
        dpm_scale_um=SCALE,
        mode="lossless",
        normalization=norm,
    )
    rec = Collector(p.subscribe_all(maxsize=256))
    raw = Collector(p.subscribe_raw(maxsize=256))
    p.start()
    wait_until(processed(p, 8))
    p.stop()
    rec.join()
    raw.join()
    seen = dict(plan.seen)
    for f, r in zip(rec.frames, raw.frames, strict=False):
        level = float(np.clip(norm.apply(r.image).mean(), -5.0, 5.0))
        assert seen[f.index] == pytest.approx(level, rel=1e-5)
        assert f.plan == {"type": "follow", "level": pytest.approx(level, rel=1e-5)}


def test_dynamic_plan_leaving_the_range_stops_with_a_clear_error() -> None:
    before = our_threads()
    p = LivePipeline(
        sim_core(exposure_ms=3.0),
        FakeBackend(),
        RampPlan(step=4.0),  # reaches 16 µm at frame 4
        z_range_um=Z_RANGE,
        dpm_scale_um=SCALE,
        mode="lossless",
    )
    p.start()
    wait_until(lambda: p.state == "error")
    assert isinstance(p.exception, DPMRangeError)
    assert "trained axial range" in (p.error or "")
    assert p.stats().frames_processed == 3  # frames 0-2 were within range
    assert_threads_gone(before)
    p.stop()


def test_bad_arguments_are_refused() -> None:
    core = sim_core()
    with pytest.raises(InputError, match="mode"):
        make(core, mode="fast")
    with pytest.raises(DPMRangeError):
        make(core, offsets=[-20.0, 0.0])
    with pytest.raises(InputError):
        make(core).subscribe_all(maxsize=0)


# --------------------------------------------------------------------------- real model


@pytest.mark.timeout(120)
def test_tiny_real_generator_through_the_torch_backend() -> None:
    torch = pytest.importorskip("torch")
    from live_deepz.engine import create_backend
    from live_deepz.engine.backends import relative_error
    from live_deepz.network import DeepZConfig, DeepZGenerator

    torch.manual_seed(0)
    gen = DeepZGenerator(DeepZConfig(width=0.125))
    # a LoadedModel's shape: the card gives the axial range and the DPM scale
    model = SimpleNamespace(
        card=SimpleNamespace(z_range_um=Z_RANGE, dpm_scale_um=SCALE), generator=gen
    )
    core = sim_core(exposure_ms=10.0, shape=(48, 48))
    p = LivePipeline.from_model(
        core,
        model,
        StaticPlanePlan([-4.0, 0.0, 4.0]),
        backend="torch",
        precision="fp32",
        device="cpu",
        mode="live",
    )
    backend = p.backend
    assert backend.describe()["name"] == "torch"
    rec = Collector(p.subscribe_all(maxsize=64))
    raw = Collector(p.subscribe_raw(maxsize=512))
    p.start()
    wait_until(processed(p, 4), timeout=60)
    p.stop()
    rec.join()
    raw.join()
    s = p.stats()
    assert p.error is None and s.frames_in == s.frames_processed + s.dropped_engine
    norm = p.normalization
    assert norm is not None
    # the same frame through a separate backend gives the same planes
    ref = create_backend("torch", gen, precision="fp32", device="cpu")
    dpm = (StaticPlanePlan([-4.0, 0.0, 4.0]).dpms_for_frame(0, 0.0, (48, 48)) / SCALE).astype(
        np.float32
    )
    by_index = {f.index: f for f in raw.frames}
    for f in rec.frames[:2]:
        out = np.empty((3, 48, 48), np.float32)
        ref.infer(norm.apply(by_index[f.index].image), dpm, out)
        assert np.isfinite(f.planes).all()
        assert relative_error(f.planes, out) < 1e-5
    assert backend.counters["dpm_uploads"] == 1  # a static plan is uploaded once


@pytest.mark.gpu
@pytest.mark.timeout(300)
def test_cuda_backend_gets_pinned_plane_slots() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from live_deepz.network import DeepZConfig, DeepZGenerator

    gen = DeepZGenerator(DeepZConfig(width=0.125))
    model = SimpleNamespace(
        card=SimpleNamespace(z_range_um=Z_RANGE, dpm_scale_um=SCALE), generator=gen
    )
    p = LivePipeline.from_model(
        sim_core(exposure_ms=5.0),
        model,
        StaticPlanePlan([-2.0, 2.0]),
        backend="torch",
        precision="fp32",
        device="cuda",
        mode="live",
    )
    rec = Collector(p.subscribe_all(maxsize=16))
    p.start()
    wait_until(processed(p, 5), timeout=120)
    run = p._run
    assert run is not None
    assert torch.from_numpy(run.planes._slots[0].arrays["planes"]).is_pinned()
    p.stop()
    rec.join()
    assert p.error is None and rec.frames and np.isfinite(rec.frames[-1].planes).all()
