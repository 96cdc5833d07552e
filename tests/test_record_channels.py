"""Interleaved multi-channel recording: the simulated camera's ``ChannelSequence``, the
pipeline's per-channel backends and normalisations, the recording's C axis (exact frame
accounting with dropped frames), ``live-deepz record --channels`` and ``complete``.

Frames are 32x32, a dozen time points; engines are ``FakeBackend`` or tiny random models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _recording_support import (
    FakeBackend,
    SlowBackend,
    kill_9_after,
    make_tiny_model,
    recorder_child_script,
    sim_core,
    wait_for,
)

from live_deepz.cli import main
from live_deepz.dpm import StaticPlanePlan, to_network_units
from live_deepz.engine import Refocuser
from live_deepz.engine._pipeline import LivePipeline
from live_deepz.engine._recorder import Recorder
from live_deepz.microscope import META_CHANNEL, META_FRAME, NoiseFrameSource, SimCamera
from live_deepz.normalize import Normalization
from live_deepz.recording import open_recording

pytestmark = pytest.mark.timeout(240)

SHAPE = (32, 32)
OFFSETS = [-1.0, 0.0, 1.0]
FAST = ["--backend", "torch", "--precision", "fp32", "--no-progress"]


class CfgCamera(SimCamera):
    """A simulated camera a Micro-Manager .cfg can load (``#py pyDevice`` needs no args)."""

    def __init__(self) -> None:
        super().__init__(NoiseFrameSource(SHAPE))


class OffsetBackend(FakeBackend):
    """``FakeBackend`` + 100: tells which channel's backend computed a plane."""

    def infer(self, image: np.ndarray, dpms_net: np.ndarray, out: np.ndarray) -> None:
        super().infer(image, dpms_net, out)
        out += 100.0


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    import torch

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("models")
    return [str(make_tiny_model(folder, name, seed=i)) for i, name in enumerate(("a", "b"))]


def _pop(core: Any, n: int) -> list[dict[str, Any]]:
    core.startSequenceAcquisition(n, 0, True)
    out: list[dict[str, Any]] = []
    assert wait_for(lambda: not core.isSequenceRunning(), 10)
    while core.getRemainingImageCount():
        img, meta = core.popNextImageAndMD()
        md = dict(meta)
        out.append({"frame": int(md[META_FRAME]), "channel": md.get(META_CHANNEL), "img": img})
    return out


def test_sim_camera_interleaves_the_channel_sequence() -> None:
    core = sim_core(2.0, SHAPE)
    cam = core.getCameraDevice()
    assert core.getProperty(cam, "ChannelNames") == "pattern,bright pattern"
    assert all(f["channel"] is None for f in _pop(core, 2))  # off: no channel metadata
    core.setProperty(cam, "ChannelSequence", "1,0")
    core.setProperty(cam, "DropEvery", 3)
    frames = _pop(core, 6)
    assert [f["frame"] for f in frames] == [0, 1, 3, 4, 6, 7]  # exposures 2 and 5 dropped
    assert [int(f["channel"]) for f in frames] == [1, 0, 0, 1, 1, 0]  # seq[frame % 2]
    bright = [f["img"].mean() > 1500 for f in frames]  # channel 1 renders brighter
    assert bright == [int(f["channel"]) == 1 for f in frames]
    with pytest.raises(Exception, match="channel 2 does not exist"):
        core.setProperty(cam, "ChannelSequence", "0,2")
    core.setProperty(cam, "ChannelSequence", "")
    core.setProperty(cam, "ReplayFrames", 2)
    with pytest.raises(Exception, match="ReplayFrames"):  # the replay shows one channel
        core.setProperty(cam, "ChannelSequence", "0,1")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_sim_camera_refuses_a_channel_sequence_with_replay_at_start() -> None:
    core = sim_core(2.0, SHAPE)
    cam = core.getCameraDevice()
    core.setProperty(cam, "ChannelSequence", "0,1")
    core.setProperty(cam, "ReplayFrames", 2)  # set after it: refused when the stream starts
    core.startSequenceAcquisition(2, 0, True)
    assert wait_for(lambda: not core.isSequenceRunning(), 10)
    assert "ReplayFrames" in core.getProperty(cam, "LastError")
    assert core.getRemainingImageCount() == 0


@pytest.mark.parametrize("fmt", ["tiff", "zarr"])
def test_two_channel_recording_with_dropped_frames_reads_back_exactly(
    tmp_path: Path, fmt: str
) -> None:
    core = sim_core(5.0, SHAPE)
    core.setProperty("Camera", "ChannelSequence", "1,0")
    core.setProperty("Camera", "DropEvery", 5)
    backends = [SlowBackend(FakeBackend(), 0.02), SlowBackend(OffsetBackend(), 0.02)]
    pl = LivePipeline(
        core,
        backends,
        StaticPlanePlan(OFFSETS),
        z_range_um=(-10.0, 10.0),
        dpm_scale_um=10.0,
        channels=["1", "0"],
    )
    out = tmp_path / ("mc.ome.tif" if fmt == "tiff" else "mc.ome.zarr")
    rec = Recorder(pl, out, progress=False, max_frames=12, channel_names=["bright", "dim"])
    rec.start()
    pl.start()
    assert wait_for(lambda: rec.frames_written >= 12 and rec.writer.n_slots >= 24)
    s = rec.stop()
    assert s.error is None and s.raw_lost == 0 and s.incomplete == 0
    assert s.frames_recorded == 12 and s.channel_frames_missing >= 4
    assert s.processed_live + s.completed_after == 24 - s.channel_frames_missing
    assert any("channels             2 (bright, dim)" in line for line in s.lines())
    with open_recording(out) as r:
        assert r.channels == ["bright", "dim"] and r.metadata["camera_channels"] == ["1", "0"]
        assert r.raw is not None and r.raw.shape == (12, 2, *SHAPE) and r.axes_raw == "tcyx"
        assert r.planes.shape == (12, 2, 3, *SHAPE) and r.axes_planes == "tczyx"
        np.testing.assert_array_equal(r.offsets_um, OFFSETS)
        numbers = r.frame_numbers
        assert numbers.shape == (12, 2)
        slot = np.arange(24).reshape(12, 2)
        # nothing shifted: exposure k sits in slot k, the dropped ones (k % 5 == 4) are empty
        dropped = slot % 5 == 4
        np.testing.assert_array_equal(r.acquired, ~dropped)
        np.testing.assert_array_equal(numbers[~dropped], slot[~dropped])
        assert (numbers[dropped] == -1).all()
        np.testing.assert_array_equal(r.complete, ~dropped)
        ts = r.timestamps_ms[~dropped]  # slot order = time order
        assert np.all(np.diff(ts) > 0)
        raw = np.asarray(r.raw, np.float64).mean(axis=(2, 3))
        assert (raw[:, 0][~dropped[:, 0]] > 1500).all()  # column 0 = camera channel 1
        assert (raw[:, 1][~dropped[:, 1]] < 1500).all()
        assert (raw[dropped] == 0).all()
        norms = {n["channel"]: n for n in r.metadata["normalizations"]}
        assert set(norms) == {0, 1} and norms[0]["background"] > norms[1]["background"] + 500
        planes = np.asarray(r.planes)
        assert np.isnan(planes[dropped]).all()
        net = to_network_units(StaticPlanePlan(OFFSETS).dpms_for_frame(0, 0.0, SHAPE), 10.0)
        for t, c in zip(*np.nonzero(~dropped), strict=True):
            nz = Normalization(norms[c]["background"], norms[c]["scale"])
            want = nz.apply(r.raw[t, c])[None] + net + (100.0 if c == 1 else 0.0)
            np.testing.assert_allclose(planes[t, c], want, rtol=1e-5, atol=1e-4)


def test_record_channels_on_the_sim_then_complete(
    tmp_path: Path, models: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "worm.ome.tif"
    args = ["record", "--sim", "--sim-sample", "worm", "--sim-size", "32", "--fps", "40"]
    args += ["--channels", "calcium,nuclei", "--frames", "4", "--planes=-2:2:2"]
    args += ["--model", models[0], "--model", models[1], *FAST, "--no-complete"]
    rc = main([*args, "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "channels             2 (calcium, nuclei)" in text
    with open_recording(out) as r:
        assert r.channels == ["calcium", "nuclei"] and r.metadata["camera_channels"] == ["1", "0"]
        assert r.raw is not None and r.raw.shape == (4, 2, *SHAPE)
        assert r.planes.shape == (4, 2, 3, *SHAPE)
        assert [m["card"]["name"] for m in r.metadata["models"]] == ["a", "b"]
        # the camera runs calcium on even exposures, nuclei on odd ones (sequence "1,0")
        assert (r.frame_numbers[:, 0] % 2 == 0).all()
        np.testing.assert_array_equal(r.frame_numbers[:, 1], r.frame_numbers[:, 0] + 1)
        means = np.asarray(r.raw, np.float64).mean(axis=(2, 3))
        assert (means[:, 1] > means[:, 0]).all()  # the nuclei are the brighter channel
        assert r.acquired.all()
    rc = main(["complete", str(out), *FAST])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "frames             8" in text and "incomplete         0" in text
    with open_recording(out) as r:
        assert r.complete.all() and np.isfinite(np.asarray(r.planes)).all()


def _record(tmp_path: Path, *args: str) -> list[str]:
    return ["record", *args, "-o", str(tmp_path / "x.ome.tif")]


def test_bad_channel_inputs_say_what_to_do(
    tmp_path: Path, models: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    worm = ["--sim", "--sim-sample", "worm", "--sim-size", "32", "--model", models[0]]
    rc = main(_record(tmp_path, *worm, "--channels", "nuclei,gfp"))
    err = capsys.readouterr().err
    assert rc == 1 and "no channel 'gfp'" in err and "nuclei, calcium" in err
    rc = main(_record(tmp_path, *worm, "--channels", "nuclei,nuclei"))
    assert rc == 1 and "twice" in capsys.readouterr().err
    three = ["--model", models[1], "--model", models[0]]
    rc = main(_record(tmp_path, *worm, *three, "--channels", "nuclei,calcium"))
    err = capsys.readouterr().err
    assert rc == 1 and "3 models for 2 channels" in err and "one per channel" in err
    rc = main(_record(tmp_path, "--sim", "--model", models[0], "--model", models[1]))
    err = capsys.readouterr().err
    assert rc == 1 and "one per channel only with --channels" in err
    rc = main(_record(tmp_path, *worm, "--channels", "nuclei", "--drift-compensation"))
    assert rc == 2 and "not built yet" in capsys.readouterr().err
    assert not list(tmp_path.glob("x.*"))


def _cfg(path: Path, *, channel_group: bool) -> Path:
    lines = [
        f"#py pyDevice,Camera,{__name__},CfgCamera",
        "#py Property,Core,Initialize,1",
        "#py Property,Core,Camera,Camera",
    ]
    if channel_group:
        lines += [
            "#py ConfigGroup,Channel,GFP,Camera,BinningMode,Average",
            "#py ConfigGroup,Channel,RFP,Camera,BinningMode,Sum",
            "#py Property,Core,ChannelGroup,Channel",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_channels_with_a_micro_manager_config_are_refused_clearly(
    tmp_path: Path, models: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    plain = _cfg(tmp_path / "plain.cfg", channel_group=False)
    rc = main(_record(tmp_path, "--config", str(plain), "--model", models[0], "--channels", "GFP"))
    err = capsys.readouterr().err
    assert rc == 1 and "sets no channel group" in err and "Groups and presets" in err
    grouped = _cfg(tmp_path / "grouped.cfg", channel_group=True)
    base = ["--config", str(grouped), "--model", models[0]]
    rc = main(_record(tmp_path, *base, "--channels", "GFP,CFP"))
    err = capsys.readouterr().err
    assert rc == 1 and "no preset 'CFP'" in err and "GFP, RFP" in err
    rc = main(_record(tmp_path, *base, "--channels", "GFP,RFP"))
    err = capsys.readouterr().err
    assert rc == 2 and "hardware sequencing" in err and "one channel at a time" in err
    assert not list(tmp_path.glob("x.*"))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_pipeline_refuses_frames_of_an_unknown_channel() -> None:
    core = sim_core(5.0, SHAPE)  # ChannelSequence not set: the frames name no channel
    pl = LivePipeline(
        core,
        FakeBackend(),
        StaticPlanePlan(OFFSETS),
        z_range_um=(-10.0, 10.0),
        dpm_scale_um=10.0,
        channels=["0", "1"],
    )
    pl.start()
    assert wait_for(lambda: pl.state == "error", 10)
    pl.stop()
    assert "names no channel" in str(pl.error) and "channel sequence" in str(pl.error)
    with pytest.raises(Exception, match="3 backends for 2 channels"):
        LivePipeline(
            core,
            [FakeBackend()] * 3,
            StaticPlanePlan(OFFSETS),
            z_range_um=(-10.0, 10.0),
            dpm_scale_um=10.0,
            channels=["0", "1"],
        )


@pytest.mark.parametrize("fmt", ["tiff", "zarr"])
def test_kill_9_of_a_two_channel_recording_then_complete(tmp_path: Path, fmt: str) -> None:
    """A real ``kill -9`` mid-recording: the file opens (the partial time point padded, nothing
    shifted), and ``complete_recording`` fills every channel's missing planes."""
    from live_deepz.recording import complete_recording

    out = tmp_path / ("k.ome.tif" if fmt == "tiff" else "k.ome.zarr")
    script = recorder_child_script(out, OFFSETS, SHAPE, channels=["0", "1"])
    flushed = kill_9_after(script, 12)
    assert flushed >= 12, "the recording subprocess did not start"
    with open_recording(out) as r:
        assert not r.finished and r.n_frames >= flushed
        assert r.raw is not None and r.raw.shape[1] == 2 and r.planes.shape[1:3] == (2, 3)
        numbers = r.frame_numbers[:flushed]
        got = numbers >= 0
        slot = np.arange(numbers.size).reshape(numbers.shape)
        np.testing.assert_array_equal(numbers[got], slot[got])  # exposure k in slot k
        assert not r.complete[:flushed][got].all()  # the slow engine left planes to complete
        n = r.n_frames
    report = complete_recording(
        out,
        [Refocuser.for_recording(out, FakeBackend()) for _ in range(2)],
        progress=False,
    )
    assert report.complete
    with open_recording(out) as r:
        assert r.finished and r.n_frames == n
        assert r.complete[r.acquired].all()
        norms = {d["channel"]: d for d in r.metadata["normalizations"]}
        net = to_network_units(StaticPlanePlan(OFFSETS).dpms_for_frame(0, 0.0, SHAPE), 10.0)
        for t, c in zip(*np.nonzero(r.acquired), strict=True):
            if t in (0, n // 2, n - 1):
                nz = Normalization(norms[c]["background"], norms[c]["scale"])
                want = nz.apply(r.raw[t, c])[None] + net
                np.testing.assert_allclose(r.planes[t, c], want, rtol=1e-5, atol=1e-4)
