"""Recordings: format round trips, the live Recorder on the simulated microscope, a slow
engine completed after stop, a real ``kill -9`` mid-recording, write errors, torn files.

Frames are 64x64, a few dozen per test; the engine is a ``FakeBackend`` (exact, no torch)
except where a tiny real generator is named. No test asserts a duration.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from _recording_support import (
    SHAPE,
    FakeBackend,
    SlowBackend,
    kill_9_after,
    recorder_child_script,
    sim_core,
    wait_for,
)

from live_deepz.dpm import StaticPlanePlan, to_network_units
from live_deepz.engine import Refocuser
from live_deepz.engine._pipeline import LivePipeline
from live_deepz.engine._recorder import Recorder
from live_deepz.errors import LiveDeepzError
from live_deepz.normalize import Normalization
from live_deepz.recording import (
    FrameInfo,
    LazyFrames,
    RecordingError,
    RecordingWriter,
    complete_recording,
    open_recording,
)
from live_deepz.recording._writer_tiff import TiffPageFile, scan_tiff

pytestmark = pytest.mark.timeout(120)

OFFSETS = [-2.0, 0.0, 2.0]


def _name(tmp_path: Path, fmt: str) -> Path:
    return tmp_path / ("run.ome.tif" if fmt == "tiff" else "run.ome.zarr")


def _expected_planes(rec: Any, t: int) -> np.ndarray:
    """What FakeBackend computes for frame t: normalised raw + DPM in network units."""
    norm = rec.metadata["normalizations"][0]
    x = Normalization(norm["background"], norm["scale"]).apply(rec.raw[t])
    dpms = StaticPlanePlan(rec.offsets_um).dpms_for_frame(0, 0.0, SHAPE)
    return x[None] + to_network_units(dpms, 10.0)


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt", ["tiff", "zarr"])
def test_writer_round_trip_with_gaps_and_metadata(tmp_path: Path, fmt: str) -> None:
    path = _name(tmp_path, fmt)
    w = RecordingWriter(
        path,
        frame_shape=(32, 24),
        offsets_um=OFFSETS,
        pixel_size_um=0.325,
        metadata={"model": {"name": "m", "weights_sha256": "ab" * 32}},
    )
    w.add_plan(0, {"type": "static", "offsets_um": OFFSETS, "surface": None}, first_index=0)
    for i in range(6):
        t = w.append_frame(
            np.full((32, 24), 100 + i, np.uint16),
            FrameInfo(index=i, camera_frame=10 + i, camera_time_ms=5.0 * i, stage_z_um=1.5),
        )
        if i % 2 == 0:
            w.write_planes(t, np.full((3, 32, 24), i, np.float32), plan_id=0)
    w.close({"note": "ok"})

    with open_recording(path) as r:
        assert r.finished and r.kind == "recording"
        assert r.raw is not None and r.raw.shape == (6, 32, 24)
        assert r.planes.shape == (6, 3, 32, 24)
        assert list(r.frame_numbers) == list(range(10, 16))
        assert r.timestamps_ms.tolist() == [0, 5, 10, 15, 20, 25]
        assert r.complete.tolist() == [True, False] * 3
        np.testing.assert_array_equal(r.offsets_um, OFFSETS)
        assert r.raw[3][0, 0] == 103
        planes = np.asarray(r.planes)
        assert np.isnan(planes[1]).all() and (planes[4] == 4).all()
        assert r.metadata["model"]["weights_sha256"] == "ab" * 32
        assert r.metadata["software"]["live_deepz"]
    if fmt == "tiff":
        with tifffile.TiffFile(tmp_path / "run.planes.ome.tif") as tf:
            assert tf.is_ome and tf.series[0].axes == "TZYX"
            assert tf.series[0].shape == (6, 3, 32, 24)
            # one timestamp per frame, the same for its K planes
            planes_xml = str(tf.ome_metadata).split("<Plane ")[1:]
            assert len(planes_xml) == 18
            times = [p.split('DeltaT="')[1].split('"')[0] for p in planes_xml]
            assert times[0:3] == ["0.0"] * 3 and times[3:6] == ["5.0"] * 3
        assert tifffile.imread(tmp_path / "run.ome.tif").shape == (6, 32, 24)
    else:
        import zarr

        g: Any = zarr.open_group(str(path), mode="r")
        assert g["raw/0"].shape == (6, 32, 24) and g["planes/0"].shape == (6, 3, 32, 24)
        assert g["planes"].attrs["ome"]["multiscales"][0]["axes"][1]["name"] == "z"
        assert g.attrs["live_deepz"]["planes"]["offsets_um"] == OFFSETS


def test_multichannel_layout_is_tczyx(tmp_path: Path) -> None:
    w = RecordingWriter(
        tmp_path / "mc.ome.tif",
        frame_shape=(16, 16),
        offsets_um=[0.0, 1.0],
        channels=["g", "r"],
    )
    t = w.append_frame(np.zeros((2, 16, 16), np.uint16), FrameInfo(index=0))
    planes = np.arange(2 * 2 * 16 * 16, dtype=np.float32).reshape(2, 2, 16, 16)
    w.write_planes(t, planes)
    w.close()
    with tifffile.TiffFile(tmp_path / "mc.planes.ome.tif") as tf:
        assert tf.series[0].axes == "CZYX" and tf.series[0].shape == (2, 2, 16, 16)
    with open_recording(tmp_path / "mc.ome.tif") as r:
        assert r.planes.shape == (1, 2, 2, 16, 16) and r.axes_planes == "tczyx"
        np.testing.assert_array_equal(r.planes[0], planes)


def test_lazy_frames_indexing() -> None:
    data = np.arange(5 * 2 * 3).reshape(5, 2, 3)
    lazy = LazyFrames(5, (2, 3), data.dtype, lambda ts: data[ts])
    np.testing.assert_array_equal(lazy[1], data[1])
    np.testing.assert_array_equal(lazy[-1, 1], data[-1, 1])
    np.testing.assert_array_equal(lazy[1:4, :, 2], data[1:4, :, 2])
    np.testing.assert_array_equal(lazy[[0, 3]], data[[0, 3]])
    np.testing.assert_array_equal(np.asarray(lazy), data)
    assert lazy.shape == (5, 2, 3) and len(lazy) == 5
    with pytest.raises(IndexError):
        lazy[5]


def test_existing_recording_is_not_overwritten(tmp_path: Path) -> None:
    kw: dict[str, Any] = {"frame_shape": (8, 8), "offsets_um": [0.0]}
    RecordingWriter(tmp_path / "a.ome.tif", **kw).close()
    with pytest.raises(RecordingError, match=r"already exists.*--overwrite"):
        RecordingWriter(tmp_path / "a.ome.tif", **kw)
    RecordingWriter(tmp_path / "a.ome.tif", overwrite=True, **kw).close()


def test_unwritable_target_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(RecordingError, match=r"cannot write.*not a folder"):
        RecordingWriter(blocker / "run.ome.tif", frame_shape=(8, 8), offsets_um=[0.0])


# --------------------------------------------------------------------------- crash states


def test_torn_tail_and_broken_journal_line_are_dropped_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "torn.ome.tif"
    w = RecordingWriter(path, frame_shape=(16, 16), offsets_um=[0.0])
    rng = np.random.default_rng(0)
    for i in range(4):
        frame = (100 + 1000 * (rng.random((16, 16)) > 0.8)).astype(np.uint16)
        frame[0, 0] = i
        w.append_frame(frame, FrameInfo(index=i, camera_frame=i))
    w.abort()  # as if killed: no OME-XML, no end line
    raw = tmp_path / "torn.ome.tif"
    with open(raw, "ab") as fh:  # a half-written page after the last linked one
        fh.write(b"\x01" * 700)
    with open(tmp_path / "torn.journal.jsonl", "ab") as fh:
        fh.write(b'{"type":"frame","t":4,"ind')  # the line a kill cut short
    assert tifffile.imread(raw).shape == (4, 16, 16)
    with open_recording(path) as r:
        assert not r.finished and r.n_frames == 4 and r.journal_lines_skipped == 1
        assert r.raw is not None
        assert r.raw[3][0, 0] == 3
    report = complete_recording(path, Refocuser.for_recording(path, FakeBackend()), progress=False)
    assert report.completed == 4 and report.complete
    assert scan_tiff(raw).file_size < os.path.getsize(raw) + 1  # tail cut, XML appended
    with tifffile.TiffFile(raw) as tf:
        assert tf.is_ome and tf.series[0].shape == (4, 16, 16)
    with open_recording(path) as r:
        assert r.finished and r.complete.all()


def test_placeholder_pages_are_sparse_and_filled_later(tmp_path: Path) -> None:
    f = TiffPageFile(tmp_path / "p.tif", (256, 256), np.float32)
    f.append(np.ones((256, 256), np.float32), placeholders=20)
    f.close()
    size = os.path.getsize(tmp_path / "p.tif")
    used = os.stat(tmp_path / "p.tif").st_blocks * 512
    assert size > 21 * 256 * 256 * 4 and used < 0.5 * size  # holes, not zeros on disk
    a = tifffile.imread(tmp_path / "p.tif")
    assert a.shape == (21, 256, 256) and a[:20].max() == 0 and a[20].min() == 1
    f = TiffPageFile(tmp_path / "p.tif", (256, 256), np.float32, mode="a")
    f.overwrite(3, np.full((256, 256), 7, np.float32))
    f.close()
    assert tifffile.imread(tmp_path / "p.tif")[3].min() == 7


# --------------------------------------------------------------------------- live recorder


def _pipeline(backend: Any, exposure_ms: float = 10.0) -> LivePipeline:
    return LivePipeline(
        sim_core(exposure_ms),
        backend,
        StaticPlanePlan(OFFSETS),
        z_range_um=(-10.0, 10.0),
        dpm_scale_um=10.0,
        mode="live",
    )


@pytest.mark.parametrize("fmt", ["tiff", "zarr"])
def test_simulated_recording_reads_back_frame_by_frame(tmp_path: Path, fmt: str) -> None:
    pl = _pipeline(FakeBackend())
    rec = Recorder(pl, _name(tmp_path, fmt), progress=False, max_frames=25)
    rec.start()
    pl.start()
    assert wait_for(lambda: rec.frames_written >= 25)
    s = rec.stop()
    assert s.error is None and s.raw_lost == 0 and s.incomplete == 0
    assert s.frames_recorded == 25 and s.processed_live + s.completed_after == 25
    with open_recording(_name(tmp_path, fmt)) as r:
        assert r.n_frames == 25 and r.complete.all() and r.finished
        assert np.all(np.diff(r.frame_numbers) == 1)  # continuous: nothing dropped
        assert np.all(np.diff(r.frame_indices) == 1)
        assert np.all(np.diff(r.timestamps_ms) > 0)
        assert np.isfinite(r.core_timestamps_ms).all() and np.isfinite(r.exposure_ms).all()
        np.testing.assert_array_equal(r.offsets_um, OFFSETS)
        assert r.planes.shape == (25, 3, *SHAPE)
        assert r.metadata["plans"][0]["plan"]["offsets_um"] == OFFSETS
        assert r.metadata["camera"]["image_height"] == SHAPE[0]
        for t in (0, 12, 24):  # each frame's K planes come from that frame's raw pixels
            np.testing.assert_allclose(r.planes[t], _expected_planes(r, t), rtol=1e-6, atol=1e-5)


def test_engine_slower_than_the_camera_is_completed_after_stop(tmp_path: Path) -> None:
    slow = SlowBackend(FakeBackend(), delay=0.06)
    pl = _pipeline(slow, exposure_ms=5.0)
    rec = Recorder(pl, tmp_path / "slow.ome.tif", progress=False)
    rec.start()
    pl.start()
    assert wait_for(lambda: rec.frames_written >= 40)
    slow.slow = False
    s = rec.stop()
    assert s.error is None and s.raw_lost == 0
    assert s.skipped_by_engine > 0 and s.completed_after > 0
    assert s.incomplete == 0 and s.processed_live + s.completed_after == s.frames_recorded
    with open_recording(tmp_path / "slow.ome.tif") as r:
        assert r.complete.all() and r.n_frames == s.frames_recorded
        assert np.all(np.diff(r.frame_numbers) == 1)
        planes = np.asarray(r.planes)
        assert not np.isnan(planes).any()
        for t in range(r.n_frames):
            np.testing.assert_allclose(planes[t], _expected_planes(r, t), rtol=1e-6, atol=1e-5)
        lines = (tmp_path / "slow.journal.jsonl").read_text().splitlines()
        sources = [json.loads(line).get("source") for line in lines if '"planes"' in line]
        assert "live" in sources and "completed" in sources


def test_tiny_real_generator_live_and_completed_planes_agree(tmp_path: Path) -> None:
    import torch
    from _recording_support import make_tiny_model

    from live_deepz.engine.backends import create_backend
    from live_deepz.modelfile import load_model

    torch.set_num_threads(1)
    model = load_model(make_tiny_model(tmp_path))
    backend = create_backend("torch", model.generator, precision="fp32", device="cpu")
    slow = SlowBackend(backend, delay=0.03)
    pl = LivePipeline.from_model(sim_core(10.0), model, StaticPlanePlan(OFFSETS), backend=slow)
    rec = Recorder(pl, tmp_path / "real.ome.tif", model=model, progress=False, max_frames=12)
    rec.start()
    pl.start()
    assert wait_for(lambda: rec.frames_written >= 12)
    slow.slow = False
    s = rec.stop()
    assert s.error is None and s.incomplete == 0 and s.frames_recorded == 12
    with open_recording(tmp_path / "real.ome.tif") as r:
        assert r.metadata["model"]["weights_sha256"] == model.weights_sha256
        assert r.metadata["model"]["card"]["name"] == "tiny"
        norm = r.metadata["normalizations"][0]
        nz = Normalization(norm["background"], norm["scale"])
        net = to_network_units(StaticPlanePlan(OFFSETS).dpms_for_frame(0, 0, SHAPE), 10.0)
        out = np.empty((3, *SHAPE), np.float32)
        assert r.raw is not None
        for t in range(r.n_frames):  # live and completed planes = the same computation
            backend.infer(nz.apply(r.raw[t]), net, out)
            np.testing.assert_allclose(r.planes[t], out, rtol=1e-5, atol=1e-5)


def test_disk_full_stops_the_recording_clearly_and_keeps_it_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = TiffPageFile.append
    calls = {"raw": 0}

    def append(self: TiffPageFile, *a: Any, **kw: Any) -> None:
        if self.path.name == "full.ome.tif":
            if calls["raw"] >= 15:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            calls["raw"] += 1
        original(self, *a, **kw)

    monkeypatch.setattr(TiffPageFile, "append", append)
    pl = _pipeline(FakeBackend())
    stopped: list[RecordingError] = []
    rec = Recorder(pl, tmp_path / "full.ome.tif", progress=False, on_error=stopped.append)
    rec.start()
    pl.start()
    assert wait_for(lambda: rec.error is not None)
    s = rec.stop()
    msg = str(rec.error)
    assert isinstance(rec.error, LiveDeepzError) and stopped == [rec.error]
    assert "disk full" in msg and "after 15 frame" in msg and "readable" in msg
    assert "live-deepz complete" in msg and s.error == msg
    assert tifffile.imread(tmp_path / "full.ome.tif").shape == (15, *SHAPE)
    with open_recording(tmp_path / "full.ome.tif") as r:
        assert r.n_frames == 15 and np.all(np.diff(r.frame_numbers) == 1)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_camera_failure_mid_stream_keeps_the_frames_and_says_why(tmp_path: Path) -> None:
    from live_deepz.microscope import SIM_CAMERA

    pl = _pipeline(FakeBackend())
    pl.core.setProperty(SIM_CAMERA, "FailAfterFrames", 10)
    rec = Recorder(pl, tmp_path / "fail.ome.tif", progress=False)
    rec.start()
    pl.start()
    assert wait_for(lambda: pl.state == "error")
    s = rec.stop()
    assert s.error is None and s.pipeline_error and "camera" in s.pipeline_error
    assert s.frames_recorded == 10 and s.incomplete == 0
    with open_recording(tmp_path / "fail.ome.tif") as r:
        assert r.n_frames == 10 and r.complete.all() and r.finished


# --------------------------------------------------------------------------- kill -9


@pytest.mark.parametrize("fmt", ["tiff", "zarr"])
def test_kill_9_leaves_a_readable_recording_that_complete_finishes(
    tmp_path: Path, fmt: str
) -> None:
    out = _name(tmp_path, fmt)
    script = recorder_child_script(out, OFFSETS)
    flushed = kill_9_after(script, 30)
    assert flushed >= 30, "the recording subprocess did not start"

    # readable with the plain libraries, with at least the frames reported written
    if fmt == "tiff":
        raw = tifffile.imread(tmp_path / "run.ome.tif")
        assert raw.ndim == 3 and raw.shape[0] >= flushed and raw.shape[1:] == SHAPE
        tifffile.imread(tmp_path / "run.planes.ome.tif")
    else:
        import zarr

        raw = np.asarray(zarr.open_array(str(out / "raw" / "0"), mode="r")[:])
        assert raw.shape[0] >= flushed
        zarr.open_array(str(out / "planes" / "0"), mode="r")[:]
    with open_recording(out) as r:
        assert not r.finished and r.n_frames >= flushed
        assert np.all(np.diff(r.frame_numbers[:flushed]) == 1)
        assert not r.complete.all()  # the slow engine left planes to complete
        n = r.n_frames

    report = complete_recording(out, Refocuser.for_recording(out, FakeBackend()), progress=False)
    assert report.complete and report.n_frames == n
    with open_recording(out) as r:
        assert r.finished and r.complete.all() and r.n_frames == n
        for t in (0, n // 2, n - 1):
            np.testing.assert_allclose(r.planes[t], _expected_planes(r, t), rtol=1e-6, atol=1e-5)
    if fmt == "tiff":
        with tifffile.TiffFile(tmp_path / "run.planes.ome.tif") as tf:
            assert tf.is_ome and tf.series[0].shape == (n, 3, *SHAPE)
