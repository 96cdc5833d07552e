"""The calibration wizard's pages (offscreen) on a physics oracle, and applying its surface to
the live session (a tiny model on the simulated microscope)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from _ui_support import (  # noqa: F401  (close_windows: an autouse fixture)
    SIZE,
    close_windows,
    noise_core,
    open_window,
    save_tiny_model,
)

from live_deepz.calibration import CalibrationWizardModel, DriftCompensationPlan, StepResult
from live_deepz.calibration.testing import GaussianBeamScene, tilted_bead_scene

pytestmark = [pytest.mark.qt, pytest.mark.timeout(180)]

PX = 0.325
SWEEP = "-3:3:0.5"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: two OpenMP threads per op are erratic
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models"))


def _scene(**kw: Any) -> GaussianBeamScene:
    args: dict[str, Any] = {"n_beads": 30, "seed": 1, "noise_std": 0.01, "refocus_noise_std": 0.01}
    args.update(kw)
    return tilted_bead_scene((SIZE, SIZE), PX, 1.5, 30.0, **args)


def _tif(scene: GaussianBeamScene, path: Path) -> Path:
    raw = np.clip(100 + 2000 * scene.input_image(), 0, 65535).astype(np.uint16)
    tifffile.imwrite(path, raw)
    return path


def _wizard(
    qtbot: Any, model: CalibrationWizardModel, session: Any = None, folder: str = ""
) -> Any:
    from live_deepz.ui import CalibrationWizard

    wiz = CalibrationWizard(session=session, model=model, folder=folder)
    qtbot.addWidget(wiz)
    wiz.show()
    return wiz


def _run(qtbot: Any, wiz: Any, action: Any) -> Any:
    """Do ``action`` (starts a step) and wait for the step's result."""
    with qtbot.waitSignal(wiz.stepFinished, timeout=TIMEOUT_MS) as blocker:
        action()
    qtbot.waitUntil(lambda: not wiz.busy, timeout=5_000)
    return blocker.args[1]


def _next_enabled(wiz: Any) -> bool:
    from qtpy.QtWidgets import QWizard

    return bool(wiz.button(QWizard.WizardButton.NextButton).isEnabled())


def test_pages_run_through_and_save(qtbot: Any, tmp_path: Path) -> None:
    from qtpy.QtWidgets import QWizard

    scene = _scene()
    model = CalibrationWizardModel(scene, PX, sweep_um=SWEEP)
    wiz = _wizard(qtbot, model, folder=str(tmp_path / "cal"))
    acquire, estimate, review, preview, save = wiz.pages
    assert not acquire.live_button.isEnabled()  # no session, no snapshot: files only
    assert not _next_enabled(wiz)

    res = _run(qtbot, wiz, lambda: acquire.load_path(_tif(scene, tmp_path / "beads.tif")))
    assert res.ok and "128×128" in acquire.message.text()
    assert acquire.image.frames_shown == 1 and _next_enabled(wiz)

    res = _run(qtbot, wiz, wiz.next)  # the sweep starts on entering the page
    assert wiz.currentPage() is estimate
    assert res.ok and "beads in focus" in estimate.message.text()
    assert estimate.bar.value() == estimate.bar.maximum()
    assert _next_enabled(wiz)

    res = _run(qtbot, wiz, wiz.next)  # the fit
    assert wiz.currentPage() is review and res.ok
    sf = model.surface_fit
    assert sf is not None and abs(sf.tilt_deg - 1.5) < 0.15 and abs(sf.azimuth_deg - 30) < 10
    text = review.numbers.toPlainText()
    assert f"tilt {sf.tilt_deg:.3f}°" in text and "residual RMS" in text
    assert f"over {sf.n_inliers} of {sf.n_points} points" in text
    n_in = int(sf.inliers.sum())
    assert len(review.points.data) == n_in and len(review.res_in.data) == n_in
    assert len(review.isocurves) >= 2  # contour lines of the fitted surface
    assert review.colorbar is not None

    # a failed re-fit disables Next (the model keeps the earlier fit) until one succeeds
    fit = model.fit
    model.fit = lambda kind=None, **kw: StepResult(False, "too few points for a cylinder")  # type: ignore[method-assign]
    res = _run(qtbot, wiz, review.refit.click)
    assert not res.ok and "too few points" in review.message.text()
    assert not _next_enabled(wiz) and len(review.points.data) == 0
    model.fit = fit  # type: ignore[method-assign]
    assert _run(qtbot, wiz, review.refit.click).ok and _next_enabled(wiz)

    res = _run(qtbot, wiz, wiz.next)  # the preview
    assert wiz.currentPage() is preview and res.ok
    assert "Median lateral FWHM" in preview.fwhm.text()
    assert preview.before.frames_shown == 1 and preview.after.frames_shown == 1

    wiz.next()
    assert wiz.currentPage() is save
    assert not save.apply_button.isEnabled()  # no live session
    assert not wiz.button(QWizard.WizardButton.FinishButton).isEnabled()
    assert save.json_path.text().startswith(str(tmp_path / "cal"))  # default folder
    save.json_path.setText(str(tmp_path / "out" / "cal.json"))
    save.tif_path.setText(str(tmp_path / "out" / "cal.dpm.tif"))
    res = _run(qtbot, wiz, save.save_button.click)
    assert res.ok and "saved" in save.message.text()
    d = json.loads((tmp_path / "out" / "cal.json").read_text())
    assert d["fit"] == "plane" and abs(d["tilt_deg"] - 1.5) < 0.15
    assert tifffile.imread(tmp_path / "out" / "cal.dpm.tif").shape == (SIZE, SIZE)
    assert wiz.button(QWizard.WizardButton.FinishButton).isEnabled()


def test_no_beads_keeps_next_disabled(qtbot: Any, tmp_path: Path) -> None:
    blank = GaussianBeamScene((96, 96), PX, np.zeros((0, 2)), np.zeros(0), refocus_noise_std=0.01)
    model = CalibrationWizardModel(blank, PX, sweep_um=SWEEP)
    wiz = _wizard(qtbot, model)
    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "empty.tif", rng.poisson(100, (96, 96)).astype(np.uint16))
    assert _run(qtbot, wiz, lambda: wiz.pages[0].load_path(tmp_path / "empty.tif")).ok
    res = _run(qtbot, wiz, wiz.next)
    page = wiz.pages[1]
    assert not res.ok and "no beads found" in page.message.text()
    assert page.message.objectName() == "error"
    assert not page.isComplete() and not _next_enabled(wiz)
    assert page.run.isEnabled()  # the user can change the method and try again


def test_surface_outside_the_range_is_explained(qtbot: Any, tmp_path: Path) -> None:
    steep = tilted_bead_scene((SIZE, SIZE), PX, 4.0, 0.0, offset_um=9.2, n_beads=40, seed=2)
    model = CalibrationWizardModel(steep, PX, sweep_um="-10:10:0.5")
    wiz = _wizard(qtbot, model)
    assert _run(qtbot, wiz, lambda: wiz.pages[0].load_path(_tif(steep, tmp_path / "s.tif"))).ok
    assert _run(qtbot, wiz, wiz.next).ok
    res = _run(qtbot, wiz, wiz.next)
    assert not res.ok and "outside the model's trained axial range" in wiz.pages[2].message.text()
    assert not _next_enabled(wiz)


def test_live_frame_and_apply_to_the_session(qtbot: Any, model_path: Path, tmp_path: Path) -> None:
    from live_deepz.microscope import open_core

    core = open_core("sim", sample="beads", size=SIZE)
    win = open_window(qtbot, model_path, core=core, planes="-2:2:2")
    s = win.session
    # the window's own wizard (menu action): its first page takes the newest live frame
    win.calibrate_action.trigger()
    wiz = win.wizard
    assert wiz is not None and wiz.isVisible()
    res = _run(qtbot, wiz, wiz.pages[0].live_button.click)
    assert res.ok and "live keeps running" in wiz.pages[0].message.text()
    assert wiz.model.raw_image is not None and wiz.model.raw_image.shape == (SIZE, SIZE)
    assert s.state == "running"
    wiz.close()

    # a wizard on the oracle, applied to the live planes
    scene = _scene()
    model = CalibrationWizardModel(scene, PX, sweep_um=SWEEP)
    wiz = _wizard(qtbot, model, session=s)
    assert _run(qtbot, wiz, lambda: wiz.pages[0].load_path(_tif(scene, tmp_path / "b.tif"))).ok
    for _ in range(3):  # estimate, fit, preview
        assert _run(qtbot, wiz, wiz.next).ok
    wiz.next()
    save = wiz.pages[4]
    assert save.apply_button.isEnabled()
    with qtbot.waitSignal(s.calibrationChanged, timeout=5_000):
        save.apply_button.click()
    assert "now follow the fitted surface" in save.message.text()
    plan = s.pipeline.plan
    d = plan.describe()
    assert d["type"] == "static" and d["surface"]["kind"] == "tilted_plane"
    assert np.hypot(*d["surface"]["gradient"]) == pytest.approx(np.tan(np.radians(1.5)), rel=0.1)
    np.testing.assert_allclose(sorted(d["offsets_um"]), [-2, 0, 2])
    sf = model.surface_fit
    assert sf is not None
    np.testing.assert_allclose(plan.surface_um, sf.dpm(), atol=1e-5)
    assert f"tilt {sf.tilt_deg:.3f}°" in win.calibration_controls.surface.text()
    # new planes keep the surface; Remove goes back to flat planes
    assert s.set_planes("-4:4:4") == ""
    assert s.pipeline.plan.describe()["surface"]["kind"] == "tilted_plane"
    win.calibration_controls.remove.click()
    assert s.calibration is None and s.pipeline.plan.describe()["surface"] is None
    assert not isinstance(s.pipeline.plan, DriftCompensationPlan)
    assert "flat" in win.calibration_controls.surface.text()


def test_calibration_of_another_frame_size_is_refused(
    qtbot: Any, model_path: Path, tmp_path: Path
) -> None:
    win = open_window(qtbot, model_path, core=noise_core(), autostart=False)
    scene = tilted_bead_scene((96, 96), PX, 1.5, 30.0, n_beads=20, seed=1)
    model = CalibrationWizardModel(scene, PX, sweep_um=SWEEP)
    assert model.set_image(scene.input_image()).ok
    assert model.estimate().ok and model.fit().ok
    err = win.session.apply_calibration(model)
    assert "96×96 px surface" in err and f"{SIZE}×{SIZE} px" in err
    assert win.session.calibration is None
