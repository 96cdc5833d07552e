"""``live-deepz record`` and ``live-deepz complete`` on the simulated microscope (64 px)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from _recording_support import make_tiny_model

from live_deepz.cli import main
from live_deepz.recording import open_recording

pytestmark = pytest.mark.timeout(240)

FAST = ["--backend", "torch", "--precision", "fp32", "--no-progress"]
SIM = ["--sim", "--sim-size", "64", "--fps", "50"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch

    torch.set_num_threads(1)
    return str(make_tiny_model(tmp_path_factory.mktemp("models")))


def test_record_sim_frames_prints_a_summary_and_writes_a_complete_file(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.ome.tif"
    rc = main(
        [
            "record",
            *SIM,
            "--frames",
            "15",
            "--planes=-2:2:2",
            "--model",
            model,
            *FAST,
            "-o",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    for key in (
        "frames acquired",
        "frames written       15",
        "planes live",
        "planes completed",
        "dropped by camera",
        "raw frames lost      0",
        "planes incomplete    0",
    ):
        assert key in text, text
    assert tifffile.imread(out).shape == (15, 64, 64)
    with open_recording(out) as r:
        assert r.n_frames == 15 and r.complete.all() and r.finished
        assert np.all(np.diff(r.frame_numbers) == 1)
        np.testing.assert_array_equal(r.offsets_um, [-2, 0, 2])
        assert r.metadata["model"]["card"]["name"] == "tiny"
        assert r.metadata["command"].startswith("live-deepz record")
        assert np.isfinite(np.asarray(r.planes)).all()


def test_record_zarr_without_completion_then_complete_cli(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.ome.zarr"
    rc = main(
        [
            "record",
            *SIM,
            "--frames",
            "12",
            "--offset-um",
            "1",
            "--model",
            model,
            *FAST,
            "--no-complete",
            "--format",
            "zarr",
            "-o",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    with open_recording(out) as r:
        n, done = r.n_frames, int(r.complete.sum())
    assert n == 12
    rc = main(["complete", str(out), *FAST])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert f"completed now      {n - done}" in text and "incomplete         0" in text
    with open_recording(out) as r:
        assert r.complete.all()
    rc = main(["complete", str(out), "--model", model, *FAST])  # idempotent
    assert rc == 0


def test_complete_refuses_a_different_model(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from live_deepz.recording import FrameInfo, RecordingWriter

    w = RecordingWriter(
        tmp_path / "r.ome.tif",
        frame_shape=(16, 16),
        offsets_um=[0.0],
        metadata={"model": {"path": model, "weights_sha256": "0" * 64}},
    )
    w.append_frame(np.ones((16, 16), np.uint16), FrameInfo(index=0))
    w.close()
    rc = main(["complete", str(tmp_path / "r.ome.tif"), *FAST])
    text = capsys.readouterr().err
    assert rc == 1 and "sha256" in text and "--any-model" in text


@pytest.mark.parametrize("flag", [["--channels", "GFP,RFP", "--drift-compensation"]])
def test_unbuilt_options_say_so_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: list[str]
) -> None:
    rc = main(["record", "--sim", *flag, "-o", str(tmp_path / "x.ome.tif")])
    assert rc == 2 and "not built yet" in capsys.readouterr().err
    assert not (tmp_path / "x.ome.tif").exists()


class _DriftingFocus:
    """A fake refocus function whose focus peak drifts with time (0.5 µm/s from +1 µm):
    each plane is the input scaled by a Gaussian of its distance to the current focus, so the
    focus measure peaks there. Tests the command's wiring, not focus estimation."""

    z_range_um = (-10.0, 10.0)
    pixel_size_um = 0.325

    def __init__(self) -> None:
        import time

        self.t0 = time.monotonic()

    def __call__(self, image: np.ndarray, dpms_um: np.ndarray) -> np.ndarray:
        import time

        focus = 1.0 + 0.5 * (time.monotonic() - self.t0)
        d = np.asarray(dpms_um, dtype=np.float32)
        gain = np.exp(-((d[:, 0, 0] - focus) ** 2) / (2 * 1.5**2)).astype(np.float32)
        return gain[:, None, None] * np.asarray(image, np.float32)[None]


def test_record_with_drift_compensation_journals_the_dpm_timeline(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from live_deepz.commands import record as record_cmd

    monkeypatch.setattr(record_cmd, "_drift_refocus_fn", lambda m: _DriftingFocus())
    out = tmp_path / "drift.ome.tif"
    rc = main(
        [
            "record",
            *SIM,
            "--frames",
            "40",
            "--planes=-2:2:2",
            "--drift-compensation",
            "--drift-every-n",
            "3",
            "--model",
            model,
            *FAST,
            "-o",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    with open_recording(out) as r:
        assert r.n_frames == 40 and r.complete.all()
        (plan,) = r.metadata["plans"]
        assert plan["plan"]["type"] == "drift" and plan["plan"]["estimator"]["every_n"] == 3
        np.testing.assert_allclose(plan["offsets_um"], [-2, 0, 2])
        events = [e for e in r.metadata["events"] if e.get("message") == "drift"]
    assert events
    frames = [f for e in events for f in e["frame_index"]]
    corr = [c for e in events for c in e["correction_um"]]
    raw = [v for e in events for v in e["estimates"]["raw_um"] if v is not None]
    assert len(frames) == len(corr) >= 10 and frames == sorted(frames)
    assert len(raw) >= 3 and max(raw) > min(raw) + 0.05  # the focus moved
    assert len({round(c, 2) for c in corr if c is not None}) >= 3  # the DPMs followed it
    assert min(c for c in corr if c is not None) >= 0.5  # they track the +1 µm start


def test_record_drift_track_keyframe_holds_the_initial_plane(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from live_deepz.commands import record as record_cmd

    monkeypatch.setattr(record_cmd, "_drift_refocus_fn", lambda m: _DriftingFocus())
    out = tmp_path / "keyframe.ome.tif"
    args = ["record", *SIM, "--frames", "12", "--planes=0", "--drift-compensation"]
    rc = main([*args, "--drift-track", "keyframe", "--model", model, *FAST, "-o", str(out)])
    assert rc == 0, capsys.readouterr().out
    with open_recording(out) as r:
        (plan,) = r.metadata["plans"]
    assert plan["plan"]["hold"] == "initial"
    assert plan["plan"]["estimator"]["method"].startswith("virtual sweep matched to a keyframe")
    assert plan["plan"]["estimator"]["anchor_um"] == 0.0


def test_drift_compensation_refuses_a_surface(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["record", *SIM, "--drift-compensation", "--tilt-deg", "1", "--model", model]
    rc = main([*args, *FAST, "-o", str(tmp_path / "x.ome.tif")])
    assert rc == 1 and "cannot be combined with --tilt-deg" in capsys.readouterr().err
    assert not (tmp_path / "x.ome.tif").exists()


def test_bad_record_arguments(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["record", "--sim", "--frames", "0", "-o", str(tmp_path / "x.ome.tif")])
    assert rc == 1 and "--frames must be >= 1" in capsys.readouterr().err
    rc = main(
        [
            "record",
            "--config",
            str(tmp_path / "none.cfg"),
            "--model",
            model,
            "-o",
            str(tmp_path / "x.ome.tif"),
        ]
    )
    assert rc == 1 and "configuration file not found" in capsys.readouterr().err


def test_no_complete_summary_does_not_claim_completion(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.ome.tif"
    argv = ["record", *SIM, "--frames", "20", "--planes=-2:2:2", "--model", model, *FAST]
    rc = main([*argv, "--no-complete", "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "(completed after stop)" not in text and "left for complete" in text


def test_record_and_complete_in_camera_counts(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c.ome.tif"
    argv = ["record", *SIM, "--frames", "8", "--planes=0", "--model", model, *FAST]
    assert main([*argv, "--units", "counts", "--no-complete", "-o", str(out)]) == 0
    rc = main(["complete", str(out), "--units", "normalized", *FAST])
    assert rc == 1 and "stores its planes in counts units" in capsys.readouterr().err
    assert main(["complete", str(out), "--units", "counts", *FAST]) == 0
    with open_recording(out) as r:
        nz = r.metadata["normalizations"][0]
        raw = np.asarray(r.raw, dtype=np.float64)
        planes = np.asarray(r.planes)[:, 0]
    assert r.complete.all()
    # camera counts: the planes sit at the raw frames' level, not around 0..1
    assert abs(np.median(planes) - np.median(raw)) < 0.5 * nz["scale"]
    assert np.median(planes) > nz["background"] * 0.5


def test_completion_estimate_is_printed_before_a_long_completion(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from live_deepz.commands._feedback import print_completion_notice, record_progress_line

    print_completion_notice(3000, 3600.0, "run.ome.tif", 5)
    err = capsys.readouterr().err
    assert "about 60.0 min" in err and "--no-complete" in err and "--planes" in err
    assert "--sim-size" in err and "live-deepz complete run.ome.tif" in err
    print_completion_notice(3, 2.0, "run.ome.tif", 5)  # short: nothing to say
    assert capsys.readouterr().err == ""
    assert "starting" in record_progress_line(0, None)
