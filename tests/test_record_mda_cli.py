"""``live-deepz record --mda SEQUENCE`` and ``complete`` of MDA recordings (sim, 64 px)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import useq
import zarr
from _recording_support import make_tiny_model

from live_deepz.cli import main
from live_deepz.recording import MDARecording, open_recording

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

FAST = ["--backend", "torch", "--precision", "fp32", "--no-progress"]
SIM = ["--sim", "--sim-size", "64", "--exposure-ms", "2"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch

    torch.set_num_threads(1)
    return str(make_tiny_model(tmp_path_factory.mktemp("models")))


def write_sequence(path: Path, n_t: int = 2, **extra: object) -> Path:
    seq = useq.MDASequence(
        stage_positions=[(0, 0, 0), (60, 0, 0), (0, 60, 0)],
        channels=["beads"],
        time_plan={"interval": 0.05, "loops": n_t},
        axis_order="tpcz",
        **extra,  # type: ignore[arg-type]
    )
    if path.suffix == ".json":
        path.write_text(seq.model_dump_json(exclude_unset=True))
    else:
        path.write_text(seq.yaml(exclude_unset=True))
    return path


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_record_mda_writes_raw_and_planes(
    tmp_path: Path, model: str, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seq = write_sequence(tmp_path / f"seq{suffix}")
    out = tmp_path / "mda.ome.zarr"
    rc = main(
        [
            "record",
            *SIM,
            "--mda",
            str(seq),
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
    assert "frames acquired    6" in text and "without planes     0" in text
    root = zarr.open_group(str(out), mode="r")  # pymmcore-plus' own OME-Zarr
    assert [root[str(p)]["0"].shape for p in range(3)] == [(2, 1, 64, 64)] * 3
    with open_recording(out) as rec:
        assert isinstance(rec, MDARecording)
        assert rec.planes.shape == (3, 2, 1, 3, 64, 64)
        assert rec.acquired.all() and rec.complete.all()
        assert np.isfinite(np.asarray(rec.planes[:])).all()
        assert rec.metadata["metadata"]["model"]["card"]["name"] == "tiny"
        assert rec.metadata["mda_sequence"]["time_plan"]["loops"] == 2
        assert rec.metadata["metadata"]["command"].startswith("live-deepz record")


def test_record_mda_no_complete_then_complete_cli(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seq = write_sequence(tmp_path / "seq.yaml", n_t=2)
    out = tmp_path / "mda.ome.tiff"
    args = ["record", *SIM, "--mda", str(seq), "--planes=0,1", "--model", model, *FAST]
    rc = main([*args, "--no-complete", "-o", str(out)])
    assert rc == 0, capsys.readouterr()
    capsys.readouterr()
    with open_recording(out) as rec:
        done = int(rec.complete.sum())
    rc = main(["complete", str(tmp_path / "mda.planes.zarr"), *FAST])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert f"completed now      {6 - done}" in text and "incomplete         0" in text
    with open_recording(out) as rec:
        assert rec.complete.all()
    # an existing recording is not overwritten without --overwrite
    rc = main([*args, "-o", str(out)])
    assert rc == 1 and "--overwrite" in capsys.readouterr().err


def test_record_mda_bad_sequences(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "x.ome.zarr")
    zseq = write_sequence(tmp_path / "z.yaml", z_plan={"range": 2, "step": 1})
    rc = main(["record", *SIM, "--mda", str(zseq), "--model", model, *FAST, "-o", out])
    assert rc == 1 and "z-plan" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"channels": ["no-such-preset"]}))
    rc = main(["record", *SIM, "--mda", str(bad), "--model", model, *FAST, "-o", out])
    err = capsys.readouterr().err
    assert rc == 1 and "no preset 'no-such-preset'" in err and "beads" in err
    rc = main(
        ["record", *SIM, "--mda", str(tmp_path / "nope.yaml"), "--model", model, *FAST, "-o", out]
    )
    assert rc == 1 and "no such file" in capsys.readouterr().err
    rc = main(["record", *SIM, "--mda", str(zseq), "--frames", "3", "-o", out])
    assert rc == 1 and "--frames does not apply to --mda" in capsys.readouterr().err
    assert not (tmp_path / "x.ome.zarr").exists() and not (tmp_path / "x.planes.zarr").exists()
