"""The live window on the simulated microscope (offscreen, 128² frames, a tiny model)."""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _ui_support import (  # noqa: F401  (close_windows: an autouse fixture)
    _OPEN,
    PLANES,
    SIZE,
    close_windows,
    noise_core,
    open_window,
    save_tiny_model,
)

from live_deepz.microscope import SIM_CAMERA, open_core

pytestmark = [pytest.mark.qt, pytest.mark.timeout(180)]

THREAD_EXC = "ignore::pytest.PytestUnhandledThreadExceptionWarning"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "tiny": save_tiny_model(root),
        "mismatch": save_tiny_model(root, "tiny-065", pixel_size_um=0.65),
    }


def test_frames_reach_every_view(qtbot: Any, models: dict[str, Path]) -> None:
    core = open_core("sim", sample="beads", size=SIZE)
    win = open_window(qtbot, models["tiny"], core=core)
    qtbot.waitUntil(
        lambda: (
            min(
                win.raw_view.frames_shown,
                win.grid.frames_shown,
                win.single.frames_shown,
                win.mip.frames_shown,
                win.xz.frames_shown,
            )
            > 0
        ),
        timeout=60_000,
    )
    assert win.raw_view.image.image is not None
    assert len(win.grid.tiles) == 5  # -4:4:2
    assert [t[2].textItem.toPlainText().strip() for t in win.grid.tiles] == [
        "-4 µm",
        "-2 µm",
        "0 µm (focus)",
        "+2 µm",
        "+4 µm",
    ]
    for _, img, _ in win.grid.tiles:
        assert img.image is not None and np.isfinite(img.image).all()
    assert win.mip.rgb is not None and win.mip.rgb.shape == (SIZE, SIZE, 3)
    assert win.xz.section is not None and win.xz.section.shape[0] == 5
    qtbot.waitUntil(lambda: "camera" in win.status.text() and "fps" in win.status.text())
    assert "LIVE" in win.status.text()
    assert not win.messages.has("model")  # a real (tiny) model: no stand-in banner
    # fixed levels: the second frame does not change them
    levels = win.grid.levels
    n = win.grid.frames_shown
    qtbot.waitUntil(lambda: win.grid.frames_shown > n, timeout=30_000)
    assert win.grid.levels == levels


def test_depth_slider_changes_the_plan(qtbot: Any, models: dict[str, Path]) -> None:
    win = open_window(qtbot, models["tiny"])
    win.single.spin.setValue(3.7)  # as typed; the slider follows
    assert win.single.slider.value() == 37
    qtbot.waitUntil(lambda: 3.7 in win.session.pipeline.plan.offsets_um, timeout=5_000)
    qtbot.waitUntil(
        lambda: win.last_planes is not None and np.isclose(win.last_planes.offsets_um, 3.7).any(),
        timeout=60_000,
    )
    pf = win.last_planes
    assert set(np.round(pf.offsets_um, 6)) == {-4.0, -2.0, 0.0, 2.0, 4.0, 3.7}
    qtbot.waitUntil(lambda: "+3.7 µm" in win.single.overlay.textItem.toPlainText())
    assert win.grid.highlight == pytest.approx(3.7)


def test_record_button_writes_a_readable_recording(
    qtbot: Any, models: dict[str, Path], tmp_path: Path
) -> None:
    from live_deepz.recording import open_recording

    win = open_window(qtbot, models["tiny"])
    panel = win.recording_panel
    panel.folder.setText(str(tmp_path))
    panel.name.setText("run1")
    panel.complete.setChecked(False)  # keep the test short: no completion after stop
    qtbot.waitUntil(lambda: panel.button.isEnabled(), timeout=10_000)
    pipeline = win.session.pipeline
    qtbot.waitUntil(lambda: pipeline.stats().frames_in >= 3, timeout=30_000)
    n_before = pipeline.stats().frames_in  # the live run's frames so far
    panel.button.click()
    qtbot.waitUntil(lambda: win.session.recorder is not None, timeout=5_000)
    qtbot.waitUntil(
        lambda: win.session.recorder is not None and win.session.recorder.frames_written >= 10,
        timeout=30_000,
    )
    assert not win.plan_editor.edit.isEnabled()  # the plane set is fixed while recording
    with qtbot.waitSignal(win.session.recordingFinished, timeout=60_000) as blocker:
        panel.button.click()
    summary = blocker.args[0]
    assert summary.error is None and summary.frames_recorded >= 10
    assert "frames written" in panel.summary.toPlainText()
    # the recording attached to the running stream: no camera restart, counting went on
    assert win.session.pipeline is pipeline and pipeline.state == "running"
    assert pipeline.stats().frames_in >= n_before + summary.frames_recorded
    rec = open_recording(tmp_path / "run1.ome.tif")
    try:
        assert rec.n_frames == summary.frames_recorded
        assert int(rec.frame_indices[0]) >= n_before  # pipeline indices continue
        numbers = [int(v) for v in rec.frame_numbers]
        assert numbers[0] >= n_before and numbers == list(range(numbers[0], numbers[-1] + 1))
        assert rec.raw is not None and rec.raw[0].shape == (SIZE, SIZE)
        assert rec.planes.shape[1:] == (5, SIZE, SIZE)
        assert rec.complete.sum() == summary.processed_live
    finally:
        rec.close()
    qtbot.waitUntil(lambda: win.session.state == "running", timeout=30_000)  # still live


@pytest.mark.filterwarnings(THREAD_EXC)
def test_camera_failure_is_shown_and_live_restarts(qtbot: Any, models: dict[str, Path]) -> None:
    core = noise_core()
    core.setProperty(SIM_CAMERA, "FailAfterFrames", 5)
    win = open_window(qtbot, models["tiny"], core=core)
    qtbot.waitUntil(lambda: win.messages.has("live"), timeout=30_000)
    text = win.messages.text()
    assert "The camera stopped" in text and "Start live" in text
    assert win.session.state == "error"
    qtbot.waitUntil(lambda: "ERROR" in win.status.text(), timeout=5_000)
    assert win.live_button.isEnabled() and "Start live" in win.live_button.text()
    # the app stays usable: fix the camera and restart from the banner's button
    core.setProperty(SIM_CAMERA, "FailAfterFrames", 0)
    n = win.raw_view.frames_shown
    win.messages.banners["live"].action.click()
    qtbot.waitUntil(lambda: win.session.state == "running", timeout=10_000)
    assert not win.messages.has("live")
    qtbot.waitUntil(lambda: win.raw_view.frames_shown > n + 5, timeout=30_000)


def test_mismatched_model_is_flagged(qtbot: Any, models: dict[str, Path]) -> None:
    win = open_window(qtbot, models["mismatch"], autostart=False)
    text = win.messages.text()
    assert "Model mismatch" in text and "pixel size of 0.65 µm" in text and "0.325 µm" in text
    assert win.model_panel.warning.isVisibleTo(win.model_panel)
    assert "Mismatch" in win.model_panel.warning.text()


def test_untrained_standin_banner(
    qtbot: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import live_deepz.modelfile as modelfile
    from live_deepz.ui import MainWindow, SessionConfig

    monkeypatch.setenv("LIVE_DEEPZ_MODELS", str(tmp_path))  # no user models
    empty = tmp_path / "no-bundled-models"
    empty.mkdir()
    monkeypatch.setattr(modelfile, "bundled_models_dir", lambda: empty)  # and none bundled
    win = MainWindow()
    qtbot.addWidget(win)
    _OPEN.append(win)
    win.show()
    win.open(SessionConfig(source=noise_core(), model=None, autostart=False))
    qtbot.waitUntil(lambda: win.session.ready, timeout=60_000)
    assert win.session.model_is_standin
    assert "UNTRAINED" in win.messages.text()


def test_plan_editor_shows_errors_inline(qtbot: Any, models: dict[str, Path]) -> None:
    win = open_window(qtbot, models["tiny"], autostart=False)
    ed = win.plan_editor
    qtbot.keyClicks(ed.edit, "")  # focus
    ed.edit.setText("-20:20:5")
    ed.validate()
    assert "outside the model's trained range" in ed.status.text()
    assert not ed.apply.isEnabled()
    ed.edit.setText("1:x")
    ed.validate()
    assert "cannot read" in ed.status.text()
    ed.edit.setText("-6:6:3")
    ed.commit()
    assert ed.status.objectName() == "dim"
    np.testing.assert_allclose(win.session.grid_offsets, [-6, -3, 0, 3, 6])
    assert len(win.grid.tiles) == 5
    np.testing.assert_allclose(sorted(win.session.pipeline.plan.offsets_um), [-6, -3, 0, 3, 6])


def test_disk_error_while_recording_is_shown(
    qtbot: Any, models: dict[str, Path], tmp_path: Path
) -> None:
    from live_deepz.recording import RecordingError

    win = open_window(qtbot, models["tiny"])
    panel = win.recording_panel
    panel.folder.setText(str(tmp_path))
    panel.complete.setChecked(False)
    qtbot.waitUntil(lambda: panel.button.isEnabled(), timeout=10_000)
    panel.button.click()
    qtbot.waitUntil(
        lambda: win.session.recorder is not None and win.session.recorder.frames_written >= 3,
        timeout=30_000,
    )
    writer = win.session.recorder.writer

    def full(*args: Any, **kwargs: Any) -> Any:
        raise RecordingError(
            f"disk full: no space left on device while writing {writer.paths.base}"
        )

    writer.append_frame = full
    qtbot.waitUntil(lambda: win.messages.has("recording"), timeout=30_000)
    assert "Recording stopped: disk full" in win.messages.text()
    qtbot.waitUntil(lambda: win.session.recorder is None, timeout=60_000)
    assert "Record" in panel.button.text()


def test_no_widget_or_thread_leaks(qtbot: Any, models: dict[str, Path]) -> None:
    from qtpy.QtCore import QEvent
    from qtpy.QtWidgets import QApplication

    def n_threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name.startswith("live-deepz"))

    def n_widgets() -> int:
        return len(QApplication.topLevelWidgets())

    threads0, widgets0 = n_threads(), n_widgets()
    win = open_window(qtbot, models["tiny"], track=False)
    qtbot.waitUntil(lambda w=win: w.grid.frames_shown > 0, timeout=60_000)
    assert n_threads() > threads0
    core = win.session.core
    win.close()
    win.deleteLater()
    del win  # what is left must be collectable: nothing global may hold the window

    def collected() -> bool:
        gc.collect()
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        return n_widgets() <= widgets0

    qtbot.waitUntil(collected, timeout=10_000)
    qtbot.waitUntil(lambda: n_threads() <= threads0, timeout=20_000)
    assert not core.isSequenceRunning()


def test_settings_round_trip(qtbot: Any, models: dict[str, Path], tmp_path: Path) -> None:
    from live_deepz.ui import Settings

    ini = tmp_path / "settings.ini"
    st = Settings(ini)
    st.planes = "-3:3:1.5"
    st.depth_um = 1.5
    st.record_folder = str(tmp_path)
    st.record_format = "zarr"
    st.set_colormap("grid", "magma")
    st.sync()
    st2 = Settings(ini)
    assert (st2.planes, st2.depth_um, st2.record_folder, st2.record_format) == (
        "-3:3:1.5",
        1.5,
        str(tmp_path),
        "zarr",
    )
    assert st2.colormap("grid", "gray") == "magma"

    win = open_window(qtbot, models["tiny"], settings=Settings(ini), autostart=False)
    assert win.grid.header.cmap.currentText() == "magma"
    win.plan_editor.edit.setText("-6:6:3")
    win.plan_editor.commit()
    win.docks["drift"].hide()
    win.close()
    st3 = Settings(ini)
    assert st3.planes == "-6:6:3" and st3.model == str(models["tiny"])
    assert st3.window_state is not None and st3.geometry is not None

    win2 = open_window(qtbot, models["tiny"], settings=Settings(ini), autostart=False)
    assert not win2.docks["drift"].isVisible()
    assert win2.docks["raw"].isVisible()


def test_remembered_plan_applies_through_run_app_settings(tmp_path: Path) -> None:
    from live_deepz.ui import SessionConfig, Settings, apply_settings

    st = Settings(tmp_path / "s.ini")
    st.planes, st.depth_um, st.backend = "-2:2:1", -1.0, "torch"
    cfg = SessionConfig(planes="", depth_um=None, backend="", precision="")
    apply_settings(cfg, st)
    assert (cfg.planes, cfg.depth_um, cfg.backend, cfg.precision) == (
        "-2:2:1",
        -1.0,
        "torch",
        "auto",
    )
    cfg = SessionConfig(planes=PLANES, depth_um=None, backend="", precision="")
    apply_settings(cfg, None)
    assert (cfg.planes, cfg.depth_um, cfg.backend) == (PLANES, 0.0, "auto")


def test_switching_models_rechecks_and_restarts_live(qtbot: Any, models: dict[str, Path]) -> None:
    win = open_window(qtbot, models["tiny"])
    assert not win.messages.has("mismatch")
    win.session.change_engine(model_path=str(models["mismatch"]))
    qtbot.waitUntil(lambda: win.session.model.card.name == "tiny-065", timeout=60_000)
    assert win.messages.has("mismatch")
    assert "tiny-065" in win.model_panel.card.text()
    qtbot.waitUntil(lambda: win.session.state == "running", timeout=30_000)  # live again
    n = win.grid.frames_shown
    qtbot.waitUntil(lambda: win.grid.frames_shown > n, timeout=60_000)
    win.session.change_engine(model_path=str(models["tiny"]), precision="fp32")
    qtbot.waitUntil(lambda: win.session.model.card.name == "tiny", timeout=60_000)
    assert not win.messages.has("mismatch")
    assert "fp32" in win.session.backend_description()
