"""``live-deepz simulate`` writes a z-stack OME-TIFF and its truth JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from live_deepz.cli import main
from live_deepz.io import read_stack


def test_simulate_beads_tilted(tmp_path, capsys) -> None:
    out = tmp_path / "stack.ome.tif"
    rc = main(
        [
            "simulate",
            "--sample",
            "beads-tilted",
            "--tilt-deg",
            "2",
            "--size",
            "48",
            "--z-range",
            "-1",
            "1",
            "--z-step",
            "0.5",
            "--seed",
            "3",
            "--quiet",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    s = read_stack(out)
    assert s.data.shape == (5, 48, 48) and s.data.dtype == np.uint16
    np.testing.assert_allclose(s.z_positions_um, [-1.0, -0.5, 0.0, 0.5, 1.0])
    assert s.pixel_size_um == pytest.approx(0.325)
    assert s.metadata["seed"] == 3 and s.metadata["optics"]["na"] == 0.75
    truth = json.loads((tmp_path / "stack.truth.json").read_text())
    obj = truth["sample"]["objects"]
    assert truth["seed"] == 3 and truth["sample"]["params"]["tilt_deg"] == 2.0
    assert len(obj["centres_zyx_um"]) == len(obj["focus_z_um"]) == len(obj["pixel_rc"])
    np.testing.assert_allclose(
        obj["focus_z_um"], np.asarray(obj["centres_zyx_um"])[:, 0], atol=1e-4
    )
    assert any(obj["in_field"])


def test_simulate_worm_two_channels_no_noise(tmp_path) -> None:
    out = tmp_path / "worm.ome.tif"
    args = ["simulate", "--sample", "worm", "--channel", "all", "--no-noise", "--quiet"]
    args += ["--size", "32", "--z-range", "0", "1", "--z-step", "1", "-o", str(out)]
    assert main(args) == 0
    s = read_stack(out)
    assert s.axes == "ZCYX" and s.data.shape == (2, 2, 32, 32)
    assert s.channel_names == ["nuclei", "calcium"]
    truth = json.loads((tmp_path / "worm.truth.json").read_text())
    assert "activity_at_t" in truth["sample"]


def test_simulate_bad_arguments(tmp_path, capsys) -> None:
    out = str(tmp_path / "x.ome.tif")
    assert main(["simulate", "--z-step", "0", "-o", out, "--quiet"]) == 1
    assert "--z-step" in capsys.readouterr().err
    assert main(["simulate", "--channel", "3", "--size", "16", "-o", out, "--quiet"]) == 1
    assert "channel" in capsys.readouterr().err


def test_simulate_bead_density(tmp_path, capsys) -> None:
    """--density scales the number of beads (per area; per volume for beads-volume)."""
    counts = []
    for density in ("1", "4"):
        out = tmp_path / f"d{density}.ome.tif"
        args = ["simulate", "--sample", "beads", "--density", density, "--size", "16"]
        assert main([*args, "--z-range", "0", "0", "--quiet", "-o", str(out)]) == 0
        truth = json.loads((tmp_path / f"d{density}.truth.json").read_text())
        counts.append(len(truth["sample"]["objects"]["centres_zyx_um"]))
    assert counts[1] == pytest.approx(4 * counts[0], rel=0.05)
    out = str(tmp_path / "x.ome.tif")
    assert main(["simulate", "--sample", "worm", "--density", "2", "-o", out, "--quiet"]) == 1
    assert "--density applies to the bead samples" in capsys.readouterr().err
    assert main(["simulate", "--density", "0", "-o", out, "--quiet"]) == 1
    assert "--density must be > 0" in capsys.readouterr().err


def test_noise_seed_is_a_second_exposure_of_the_same_field(tmp_path, capsys) -> None:
    def sim(name: str, *extra: str) -> np.ndarray:
        out = tmp_path / name
        args = ["simulate", "--size", "48", "--z-range", "-1", "1", "--density", "8"]
        assert main([*args, "--seed", "4", "--quiet", *extra, "-o", str(out)]) == 0
        return read_stack(out).data.astype(np.float64)

    first, second, again = (
        sim("a.ome.tif"),
        sim("b.ome.tif", "--noise-seed", "1"),
        sim("c.ome.tif", "--noise-seed", "1"),
    )
    truth = [json.loads((tmp_path / f"{k}.truth.json").read_text()) for k in "ab"]
    assert truth[0]["sample"]["objects"] == truth[1]["sample"]["objects"]
    np.testing.assert_array_equal(second, again)  # the noise seed decides the draw
    diff = first - second
    assert np.abs(diff).mean() > 1.0  # another draw of the noise ...
    assert abs(diff.mean()) < 0.05 * first.std()  # ... of the same expected counts
    assert np.corrcoef(first.ravel(), second.ravel())[0, 1] > 0.5
    assert read_stack(tmp_path / "b.ome.tif").metadata["noise_seed"] == 1
    assert main(["simulate", "--noise-seed", "-1", "-o", str(tmp_path / "x.ome.tif")]) == 1
    assert "--noise-seed" in capsys.readouterr().err
