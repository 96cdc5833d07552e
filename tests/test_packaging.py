"""The four code folders install under one namespace; no generic top-level modules leak."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import live_deepz
from live_deepz import cli

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("engine", "calibration", "ui")


def _run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_installed_namespace_has_subpackages_and_no_top_level_leaks(tmp_path: Path) -> None:
    code = (
        "import importlib.util, live_deepz.engine, live_deepz.calibration, live_deepz.ui\n"
        f"print([importlib.util.find_spec(m) is None for m in {SUBPACKAGES!r}])"
    )
    proc = _run_python(code, cwd=tmp_path)  # outside the repository: only the install counts
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[True, True, True]"


@pytest.mark.slow
def test_wheel_contains_only_the_live_deepz_namespace(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("live_deepz-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"live_deepz"}
    for sub in SUBPACKAGES:
        assert f"live_deepz/{sub}/__init__.py" in names
    # every package folder of the repository lands in the wheel (none forgotten in pyproject)
    roots = {
        "live_deepz": "live_deepz",
        "engine": "live_deepz/engine",
        "calibration": "live_deepz/calibration",
        "ui": "live_deepz/ui",
    }
    for folder, target in roots.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.relative_to(REPO / folder).as_posix()
            assert f"{target}/{rel}" in names, f"{folder}/{rel} missing from the wheel"
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "live-deepz = live_deepz.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_core_does_not_import_other_layers() -> None:
    code = (
        "import sys, live_deepz, live_deepz.cli\n"
        "import live_deepz.commands.info\n"
        "bad = [m for m in sys.modules if m.startswith(('live_deepz.engine', "
        "'live_deepz.calibration', 'live_deepz.ui', 'qtpy', 'PyQt', 'PySide', 'tensorrt'))]\n"
        "print(bad)"
    )
    proc = _run_python(code, cwd=REPO.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_every_subcommand_is_listed_and_unbuilt_ones_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = {
        "info",
        "models",
        "simulate",
        "train",
        "eval",
        "refocus",
        "record",
        "bench",
        "calibrate",
        "demo",
        "gui",
    }
    assert expected <= set(cli.COMMANDS)
    for name in cli.COMMANDS:
        if not cli._is_built(name):
            assert cli.main([name]) == cli.NOT_BUILT_EXIT
            assert "not built yet" in capsys.readouterr().err


def test_info_reports_versions_devices_backends_models_optics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    assert cli.main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["versions"]["live-deepz"] == live_deepz.__version__
    assert info["devices"][0]["device"] == "cpu"
    assert info["simulator_optics"]["na"] == 0.75
    assert info["simulator_optics"]["pixel_size_um"] == 0.325
    assert "backends" in info and "models" in info


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "live-deepz"
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and live_deepz.__version__ in proc.stdout


def test_core_modules_never_import_engine_calibration_or_ui() -> None:
    """Only the CLI's command modules may reach up the layers (lazily, inside a command)."""
    import re

    upward = re.compile(
        r"^\s*(from|import)\s+(live_deepz\.(engine|calibration|ui)|\.\.?(engine|calibration|ui))\b",
        re.M,
    )
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "live_deepz").rglob("*.py")
        if "commands" not in path.parts and upward.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
