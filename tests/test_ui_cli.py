"""``live-deepz demo``: the no-display message, and a headless screenshot whose views are
visibly filled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _ui_support import save_tiny_model

from live_deepz import cli

pytestmark = [pytest.mark.qt, pytest.mark.timeout(300)]


def test_demo_without_display_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert cli.main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "no display" in err and "--screenshot out.png" in err
    assert cli.main(["gui", "--config", "scope.cfg"]) == 2
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")  # needs an X server, which is not there
    assert cli.main(["demo"]) == 2


def test_demo_screenshot_shows_filled_views(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path)
    png = tmp_path / "shot.png"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)  # --screenshot must go offscreen by itself
    env["LIVE_DEEPZ_MODELS"] = str(tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "live_deepz.cli",
        "demo",
        "--size",
        "128",
        "--model",
        str(model),
        "--planes=-4:4:2",
        "--screenshot",
        str(png),
        "--seconds",
        "1",
        "--settings",
        str(tmp_path / "settings.ini"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=280, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert png.is_file()
    regions = json.loads(
        next(line for line in proc.stdout.splitlines() if line.startswith("regions "))[8:]
    )
    from PIL import Image

    img = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    assert img.shape == (1000, 1600)
    for name in ("raw", "grid", "mip", "status"):
        x, y, w, h = regions[name]
        patch = img[y : y + h, x : x + w]
        assert patch.size > 0 and patch.std() > 5.0, f"{name} looks empty (std {patch.std():.1f})"
    assert "processed" in proc.stdout


def test_gui_with_a_missing_config_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], qapp: object
) -> None:
    missing = tmp_path / "scope.cfg"
    rc = cli.main(
        ["gui", "--config", str(missing), "--screenshot", str(tmp_path / "x.png"), "--seconds", "0"]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "could not be started" in err and "configuration file not found" in err
    assert not (tmp_path / "x.png").exists()
