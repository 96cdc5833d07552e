"""Deep-Z inside pymmcore-plus MDAs: MDAProcessor + MDA recordings (raw by pymmcore-plus,
planes beside it), on the simulated microscope with a two-channel stand-in scene."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import useq
import zarr
from _recording_support import FakeBackend, SlowBackend

from live_deepz.dpm import StaticPlanePlan
from live_deepz.engine import MDAProcessor, Refocuser
from live_deepz.errors import InputError
from live_deepz.microscope import SIM_CAMERA, NoiseFrameSource, open_core
from live_deepz.normalize import Normalization
from live_deepz.recording import (
    MDARecording,
    complete_mda_recording,
    mda_sizes,
    open_recording,
)

SCALE = 10.0
CHANNELS = ["pattern", "bright pattern"]
POSITIONS = [(0.0, 0.0, 0.0), (40.0, 10.0, 0.0), (-20.0, 30.0, 1.0)]


@pytest.fixture
def core() -> Any:
    return open_core("sim", scene=NoiseFrameSource((48, 64), seed=3), exposure_ms=1.0)


def sequence(n_t: int = 3, n_p: int = 3, channels: list[str] = CHANNELS) -> useq.MDASequence:
    return useq.MDASequence(
        stage_positions=POSITIONS[:n_p],
        channels=channels,
        time_plan={"interval": 0, "loops": n_t},
        axis_order="tpcz",
    )


def run_mda(core: Any, proc: MDAProcessor, seq: useq.MDASequence, out: Path) -> Any:
    with proc:
        core.mda.run(seq, output=str(out))
    return proc.wait(30)


def expected_planes(rec: MDARecording, key: tuple[int, int, int]) -> np.ndarray:
    """What FakeBackend gives: normalised raw + DPM in network units, per plane."""
    p, t, c = key
    n = next(r for r in rec.metadata["normalizations"] if (r["position"], r["channel"]) == (p, c))
    x = Normalization(n["background"], n["scale"]).apply(rec.raw[p, t, c])
    return x[None] + (rec.offsets_um / SCALE)[:, None, None].astype(np.float32)


def check_all_planes(rec: MDARecording) -> None:
    planes = np.asarray(rec.planes[:])
    for key in zip(*np.nonzero(rec.acquired)):
        np.testing.assert_allclose(planes[key], expected_planes(rec, key), atol=1e-5)
    assert np.isnan(planes[~rec.acquired]).all()


@pytest.mark.slow  # the first MDA of a process initialises pymmcore-plus' writers (~3 s)
@pytest.mark.parametrize("ext", ["ome.zarr", "ome.tiff"])
def test_mda_every_axis_and_frame(core: Any, tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"run.{ext}"
    plan = StaticPlanePlan("-2:2:2")
    proc = MDAProcessor(
        core, FakeBackend(), plan, dpm_scale_um=SCALE, z_range_um=(-10, 10), output=out
    )
    s = run_mda(core, proc, sequence(3), out)
    assert s.error is None
    assert s.frames_expected == s.frames_acquired == 18
    assert s.planes_live + s.planes_completed == 18 and s.incomplete == 0
    rec = open_recording(out)
    assert isinstance(rec, MDARecording)
    with rec:
        assert rec.planes.shape == (3, 3, 2, 3, 48, 64)
        assert tuple(rec.planes.metadata.dimension_names) == ("p", "t", "c", "z", "y", "x")
        assert rec.acquired.all() and rec.complete.all() and rec.finished
        assert rec.channels == CHANNELS
        assert [pos["x"] for pos in rec.metadata["positions"]] == [p[0] for p in POSITIONS]
        assert rec.sequence.sizes["p"] == 3 and rec.metadata["offsets_um"] == [-2, 0, 2]
        assert rec.metadata["metadata"]["dpm_scale_um"] == SCALE
        assert rec.metadata["plans"][0]["plan"]["offsets_um"] == [-2.0, 0.0, 2.0]
        check_all_planes(rec)
        raw = np.asarray(rec.raw)
        assert raw.shape == (3, 3, 2, 48, 64) and raw.dtype == np.uint16
        assert (raw.reshape(18, -1).max(axis=1) > 0).all()
        # the two channels differ (each event switched the camera's channel)
        assert raw[:, :, 1].std() > 1.5 * raw[:, :, 0].std()
    # pymmcore-plus' own files, read without live-deepz, hold the same frames
    if ext == "ome.zarr":
        root = zarr.open_group(str(out), mode="r")
        for p in range(3):
            np.testing.assert_array_equal(np.asarray(root[str(p)]["0"]), raw[p])
    else:
        files = sorted(glob.glob(str(tmp_path / "run" / "run_p*.ome.tiff")))
        assert len(files) == 3
        for p, f in enumerate(files):
            np.testing.assert_array_equal(tifffile.imread(f).reshape(3, 2, 48, 64), raw[p])
    planes_zarr = zarr.open_array(str(tmp_path / "run.planes.zarr" / "planes"), mode="r")
    assert planes_zarr.shape == (3, 3, 2, 3, 48, 64)


def test_mda_slow_engine_keeps_raw_and_completes(core: Any, tmp_path: Path) -> None:
    out = tmp_path / "slow.ome.zarr"
    slow = SlowBackend(FakeBackend(), delay=0.04)
    proc = MDAProcessor(
        core, slow, StaticPlanePlan([-1.0, 1.0]), dpm_scale_um=SCALE, output=out, ring_slots=2
    )
    s = run_mda(core, proc, sequence(4), out)
    assert s.frames_acquired == 24
    assert s.planes_skipped_live > 0, s.lines()
    assert s.planes_live + s.planes_skipped_live == 24
    assert s.planes_completed == s.planes_skipped_live and s.incomplete == 0
    assert any("not refocused live" in line for line in s.lines())
    with open_recording(out) as rec:
        assert rec.acquired.all() and rec.complete.all()
        check_all_planes(rec)
        sources = [r for r in rec.metadata["end"].items()]
        assert rec.metadata["end"]["planes_completed"] == s.planes_completed
        assert sources


def test_mda_cancel_midway_leaves_readable_files(core: Any, tmp_path: Path) -> None:
    out = tmp_path / "cancel.ome.tiff"
    proc = MDAProcessor(
        core, FakeBackend(), StaticPlanePlan([0.0, 2.0]), dpm_scale_um=SCALE, output=out
    )
    n = [0]

    def cancel_after_7(*_: Any) -> None:
        n[0] += 1
        if n[0] == 7:
            core.mda.cancel()

    core.mda.events.frameReady.connect(cancel_after_7)
    s = run_mda(core, proc, sequence(5), out)
    assert s.cancelled and s.frames_acquired == 7 and s.incomplete == 0
    with open_recording(out) as rec:
        assert int(rec.acquired.sum()) == 7 and (rec.complete == rec.acquired).all()
        assert rec.acquired[:, 0].all() and rec.acquired[0, 1, 0]  # t=0 everywhere, then p0 c0
        check_all_planes(rec)
        assert rec.metadata["end"]["cancelled"] is True


def test_mda_camera_error_midway(core: Any, tmp_path: Path) -> None:
    out = tmp_path / "err.ome.zarr"
    proc = MDAProcessor(core, FakeBackend(), StaticPlanePlan([0.0]), dpm_scale_um=SCALE, output=out)
    core.setProperty(SIM_CAMERA, "FailAfterFrames", 5)
    s = run_mda(core, proc, sequence(3), out)
    assert s.frames_acquired == 5 and s.frames_missing == 1 and s.cancelled
    assert s.camera_error and "FailAfterFrames" in s.camera_error
    with open_recording(out) as rec:
        assert int(rec.acquired.sum()) == 5 and rec.complete[rec.acquired].all()
        assert list(rec.missing) == [(2, 0, 1)]  # the 6th event: t0, p2, channel 1
        check_all_planes(rec)


def test_complete_mda_recording_later(core: Any, tmp_path: Path) -> None:
    out = tmp_path / "later.ome.zarr"
    slow = SlowBackend(FakeBackend(), delay=0.05)
    proc = MDAProcessor(
        core,
        slow,
        StaticPlanePlan([-1.0, 1.0]),
        dpm_scale_um=SCALE,
        output=out,
        ring_slots=2,
        complete_on_finish=False,
    )
    s = run_mda(core, proc, sequence(4, n_p=2), out)  # 16 frames, the ring holds 8
    assert s.incomplete > 0 and s.planes_completed == 0
    with open_recording(out) as rec:
        assert not rec.complete.all()
        assert np.isnan(np.asarray(rec.planes[:])[~rec.complete]).all()
    report = complete_mda_recording(out, Refocuser.from_range(None, SCALE, FakeBackend()))
    assert report.completed == s.incomplete and report.complete
    with open_recording(tmp_path / "later.planes.zarr") as rec:
        assert rec.complete.all()
        check_all_planes(rec)


class PlusBackend(FakeBackend):
    """FakeBackend + a constant: tells which backend made a frame's planes."""

    def __init__(self, extra: float) -> None:
        super().__init__()
        self.extra = extra

    def infer(self, image: np.ndarray, dpms_net: np.ndarray, out: np.ndarray) -> None:
        super().infer(image, dpms_net, out)
        out += self.extra


def test_mda_per_channel_backends_and_per_position_plans(core: Any, tmp_path: Path) -> None:
    out = tmp_path / "pc.ome.zarr"
    plans = {p: StaticPlanePlan([float(p), p + 1.0]) for p in range(2)}
    proc = MDAProcessor(
        core,
        {"pattern": PlusBackend(0.0), "bright pattern": PlusBackend(100.0)},
        lambda p: plans[p],
        dpm_scale_um=SCALE,
        output=out,
    )
    s = run_mda(core, proc, sequence(2, n_p=2), out)
    assert s.incomplete == 0
    with open_recording(out) as rec:
        pl = np.asarray(rec.planes[:])
        n = {(r["position"], r["channel"]): r for r in rec.metadata["normalizations"]}
        assert len(n) == 4  # one normalisation per (position, channel)
        assert [r["plan"]["offsets_um"] for r in rec.metadata["plans"]] == [[0, 1], [1, 2]]
        for p in range(2):
            for t in range(2):
                for c in range(2):
                    nr = n[(p, c)]
                    x = Normalization(nr["background"], nr["scale"]).apply(rec.raw[p, t, c])
                    for k in range(2):  # plane k of position p: (p + k) µm = (p + k) / 10
                        want = x + (p + k) / SCALE + (100.0 if c == 1 else 0.0)
                        np.testing.assert_allclose(pl[p, t, c, k], want, atol=1e-4)


def test_sequence_axes_refused() -> None:
    with pytest.raises(InputError, match="z-plan"):
        mda_sizes(useq.MDASequence(z_plan={"range": 4, "step": 1}))
    assert mda_sizes(useq.MDASequence(time_plan={"interval": 0, "loops": 4})) == (1, 4, 1)


class ShiftPlan:
    """A dynamic plan like drift compensation: correction = 0.5 µm per frame it was fed."""

    def __init__(self, offsets: list[float]) -> None:
        self.offsets_um = np.asarray(offsets, dtype=np.float64)
        self.seen: list[int] = []

    def update(self, image_norm: np.ndarray, frame_index: int, timestamp_ms: float) -> None:
        self.seen.append(frame_index)

    def correction_um(self, timestamp_ms: float | None = None) -> float:
        return 0.5 * len(self.seen)

    def dpms_for_frame(self, i: int, t_ms: float, shape: tuple[int, int]) -> np.ndarray:
        c = self.correction_um()
        return np.stack([np.full(shape, c + o, np.float32) for o in self.offsets_um])

    def describe(self) -> dict[str, Any]:
        return {"type": "drift", "offsets_um": self.offsets_um.tolist()}


def test_mda_dynamic_plan_per_position(core: Any, tmp_path: Path) -> None:
    out = tmp_path / "drift.ome.zarr"
    plans: dict[int, ShiftPlan] = {}

    def factory(p: int) -> ShiftPlan:
        assert p not in plans  # one plan per position, made once
        plans[p] = ShiftPlan([0.0, 1.0])
        return plans[p]

    proc = MDAProcessor(
        core,
        FakeBackend(),
        factory,
        dpm_scale_um=SCALE,
        output=out,
        ring_slots=16,  # holds every frame: all refocused in order (during pauses or after)
    )
    seq = useq.MDASequence(
        stage_positions=POSITIONS[:2],
        channels=CHANNELS,
        time_plan={"interval": 0.15, "loops": 3},
        axis_order="tpcz",
    )
    s = run_mda(core, proc, seq, out)
    assert s.incomplete == 0 and s.planes_live == 12
    # each position's plan was fed its own first-channel frames, in time order
    assert plans[0].seen == [0, 1, 2] and plans[1].seen == [0, 1, 2]
    with open_recording(out) as rec:
        pl = np.asarray(rec.planes[:])
        for p in range(2):
            for t in range(3):
                for c in range(2):
                    x = expected_planes(rec, (p, t, c))[0]  # plane 0 at 0 µm
                    corr = 0.5 * (t + 1)  # fed frame t (channel 0) before refocusing it
                    np.testing.assert_allclose(pl[p, t, c, 0], x + corr / SCALE, atol=1e-5)
        assert [r["plan"]["type"] for r in rec.metadata["plans"]] == ["drift", "drift"]


def test_event_iterables_are_left_alone(core: Any, tmp_path: Path) -> None:
    out = tmp_path / "gen.ome.zarr"
    proc = MDAProcessor(core, FakeBackend(), StaticPlanePlan([0.0]), dpm_scale_um=SCALE, output=out)
    events = [useq.MDAEvent(index={"t": i}) for i in range(3)]
    with proc:
        core.mda.run(iter(events))  # the MDA itself runs as without live-deepz
    assert proc.summary is None and not (tmp_path / "gen.planes.zarr").exists()


def test_mda_surface_plan_is_saved_and_completed_from_the_journal(
    core: Any, tmp_path: Path
) -> None:
    out = tmp_path / "surf.ome.zarr"
    yy, xx = np.mgrid[0:48, 0:64]
    surface = (0.02 * xx - 0.01 * yy).astype(np.float32)  # a tilt, µm
    proc = MDAProcessor(
        core,
        FakeBackend(),
        StaticPlanePlan([-1.0, 1.0], surface),
        dpm_scale_um=SCALE,
        output=out,
        ring_slots=2,
        complete_on_finish=False,
    )
    s = run_mda(core, proc, sequence(4, n_p=2), out)  # a burst: most frames left to completion
    assert s.incomplete > 0
    assert (tmp_path / "surf.planes.zarr" / "surface_p0.tif").is_file()
    report = complete_mda_recording(out, Refocuser.from_range(None, SCALE, FakeBackend()))
    assert report.complete
    with open_recording(out) as rec:
        pl = np.asarray(rec.planes[:])
        for key in zip(*np.nonzero(rec.acquired)):
            n = next(
                r
                for r in rec.metadata["normalizations"]
                if (r["position"], r["channel"]) == (key[0], key[2])
            )
            x = Normalization(n["background"], n["scale"]).apply(rec.raw[key])
            for k, off in enumerate((-1.0, 1.0)):  # planes follow the surface (journal-rebuilt)
                np.testing.assert_allclose(pl[key][k], x + (surface + off) / SCALE, atol=1e-5)
