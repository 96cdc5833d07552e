"""What a new user trips over on the command line (issue 15): fast help without torch/Qt,
the '--planes=-N' hint, one sample-name spelling, a default home for trained models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _recording_support import make_tiny_model

from live_deepz.cli import main, negative_value_hint
from live_deepz.model_home import default_models_home, model_output_folder
from live_deepz.sample_names import SAMPLE_NAMES, canonical_sample

HEAVY = ("torch", "qtpy", "PyQt5", "PyQt6", "PySide6", "pyqtgraph")

_HELP_SCRIPT = """
import sys
from live_deepz.cli import COMMANDS, main
heavy = {heavy!r}
for argv in [["--help"]] + [[c, "--help"] for c in COMMANDS]:
    try:
        main(argv)
    except SystemExit:
        pass
    loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))
    if loaded:
        print("HEAVY", argv, loaded, file=sys.stderr)
        sys.exit(3)
print("CLEAN")
"""


def test_help_imports_neither_torch_nor_qt() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _HELP_SCRIPT.format(heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "CLEAN" in proc.stdout, proc.stderr[-2000:]


def test_negative_plane_values_get_the_equals_hint(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["refocus", "img.tif", "--planes", "-10:10:2", "-o", "o.ome.tif"])
    err = capsys.readouterr().err
    assert "write --planes=-10:10:2" in err
    assert negative_value_hint("argument --sweep: expected one argument", ["--sweep", "-5:5:1"])
    assert negative_value_hint("argument --sweep: invalid choice", ["--sweep", "-5"]) == ""


@pytest.mark.parametrize(
    "spelling", ["beads_tilted", "beads-tilted", "Beads_Cylinder", "beads_flat"]
)
def test_sample_spellings_are_one(spelling: str) -> None:
    assert canonical_sample(spelling) in SAMPLE_NAMES


def test_demo_help_lists_the_samples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name in SAMPLE_NAMES:
        assert name in out


@pytest.mark.parametrize("name", [*SAMPLE_NAMES, "beads_tilted", "beads_volume"])
def test_every_sample_name_works_in_simulate(name: str, tmp_path: Path) -> None:
    out = tmp_path / "s.ome.tif"
    argv = ["simulate", "--sample", name, "--size", "32", "--z-range", "0", "0", "--quiet"]
    assert main([*argv, "--no-noise", "-o", str(out)]) == 0 and out.exists()


@pytest.mark.parametrize("name", [*SAMPLE_NAMES, "beads_tilted"])
def test_every_sample_name_opens_the_simulated_microscope(name: str) -> None:
    """demo and record --sim both open the simulated microscope with the sample's name."""
    from live_deepz.microscope import open_core

    core = open_core("sim", sample=name, size=32)
    core.snapImage()
    assert core.getImage().shape == (32, 32)


def test_demo_and_record_parse_both_spellings() -> None:
    from live_deepz.cli import build_parser

    for cmd, opt in (("demo", "--sample"), ("record", "--sim-sample")):
        parser = build_parser(only=cmd)
        extra = ["--sim", "-o", "x.ome.tif"] if cmd == "record" else []
        for spelling in ("beads_tilted", "beads-tilted"):
            args = parser.parse_args([cmd, opt, spelling, *extra])
            assert getattr(args, opt.lstrip("-").replace("-", "_")) == "beads-tilted"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_record_sim_with_an_underscore_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_tiny_model(tmp_path)
    out = tmp_path / "r.ome.tif"
    argv = ["record", "--sim", "--sim-size", "64", "--sim-sample", "beads_tilted", "--frames"]
    fast = ["--backend", "torch", "--precision", "fp32", "--no-progress", "--planes=0"]
    assert main([*argv, "3", "--model", str(model), *fast, "-o", str(out)]) == 0
    capsys.readouterr()


def test_trained_models_have_a_default_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LIVE_DEEPZ_MODELS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    home = default_models_home()
    assert home == tmp_path / "data" / "live-deepz" / "models"
    assert model_output_folder("mine") == home / "mine"
    assert model_output_folder("./mine") == Path("./mine")
    assert model_output_folder(tmp_path / "x") == tmp_path / "x"
    make_tiny_model(home, "mine")
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(r["name"] == "mine" for r in rows)
    assert main(["models"]) == 0
    assert str(home) in capsys.readouterr().out
    monkeypatch.setenv("LIVE_DEEPZ_MODELS", str(tmp_path / "env"))
    assert model_output_folder("mine") == tmp_path / "env" / "mine"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_train_with_a_bare_name_lands_in_the_models_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("live_deepz.io")
    import tifffile
    from _training_data import synth_stack

    monkeypatch.setenv("LIVE_DEEPZ_MODELS", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    data = []
    for i in range(2):
        tifffile.imwrite(tmp_path / f"fov{i}.tif", synth_stack(seed=40 + i))
        data.append(str(tmp_path / f"fov{i}.tif"))
    argv = ["train", "--z-step", "0.5", "--z-half-range", "2", "--patch", "32", "--width"]
    argv += ["0.0625", "--batch", "4", "--val-every", "2", "--max-val-pairs", "8", "--quiet"]
    argv += ["--recipe", "paper", "--steps", "1", "--cache", str(tmp_path / "cache")]
    assert main([*argv, "--data", *data, "-o", "mine"]) == 0
    assert (tmp_path / "home" / "mine" / "model.safetensors").exists()
    assert not (tmp_path / "mine").exists()
    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    assert any(r["name"] == "mine" for r in json.loads(capsys.readouterr().out))


def test_joined_messages_have_no_double_full_stop() -> None:
    from live_deepz.errors import CameraError, clause

    assert clause("file not found.") == "file not found"
    assert clause("wait...") == "wait..."
    assert f"{clause(CameraError('no such device.'))}. Check it." == "no such device. Check it."


def test_screenshot_to_an_unwritable_place_fails_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    t0 = time.perf_counter()
    rc = main(["demo", "--screenshot", str(blocker / "out.png"), "--seconds", "10"])
    assert rc == 1 and time.perf_counter() - t0 < 5
    assert "cannot write the screenshot" in capsys.readouterr().err
    rc = main(["demo", "--screenshot", str(tmp_path / "out.txt"), "--seconds", "10"])
    assert rc == 1 and ".png" in capsys.readouterr().err


@pytest.mark.parametrize(("cost", "size", "n_planes"), [(1e-6, 256, 5), (4e-6, 128, 5)])
def test_cpu_demo_picks_the_largest_field_that_keeps_up(
    monkeypatch: pytest.MonkeyPatch, cost: float, size: int, n_planes: int
) -> None:
    """On a CPU the demo times the engine and shrinks the field/planes until the planes
    refresh at least TARGET_FPS times a second (here with a stand-in timing per pixel)."""
    import torch

    from live_deepz.commands import _cpu_demo

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(_cpu_demo, "_time_frame", lambda e, s, k: cost * s * s * k)
    threads = torch.get_num_threads()
    try:
        choice = _cpu_demo.choose_cpu_demo(None, "torch", "fp32")
    finally:
        torch.set_num_threads(threads)
    assert choice is not None and (choice.size, choice.n_planes) == (size, n_planes)
    assert choice.expected_fps >= _cpu_demo.TARGET_FPS
    assert f"{size}×{size} px centred field" in choice.describe()
