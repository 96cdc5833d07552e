"""The calibration wizard's model (no Qt) and the headless ``live-deepz calibrate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from live_deepz import dpm
from live_deepz.calibration import CalibrationWizardModel, Step, load_calibration
from live_deepz.calibration.testing import GaussianBeamScene, tilted_bead_scene
from live_deepz.errors import InputError

PX = 0.325
SWEEP = "-3:3:0.5"


def _raw(scene: GaussianBeamScene) -> np.ndarray:
    """A camera-like uint16 frame of the scene."""
    img = scene.input_image()
    return np.clip(100 + 2000 * img, 0, 65535).astype(np.uint16)


@pytest.fixture
def scene() -> GaussianBeamScene:
    return tilted_bead_scene(
        (128, 128), PX, 1.5, 30.0, n_beads=30, seed=1, noise_std=0.01, refocus_noise_std=0.01
    )


def test_happy_path(scene: GaussianBeamScene, tmp_path: Path) -> None:
    events: list[tuple[str, float, str]] = []
    wiz = CalibrationWizardModel(
        scene, PX, sweep_um=SWEEP, progress=lambda s, f, m: events.append((s, f, m))
    )
    assert wiz.step is Step.ACQUIRE and not wiz.can_enter(Step.ESTIMATE)
    assert wiz.z_range_um == (-10.0, 10.0)  # taken from the refocus function
    res = wiz.set_image(_raw(scene), "test")
    assert res.ok and "128×128" in res.message and wiz.step is Step.ESTIMATE
    res = wiz.estimate()
    assert res.ok and "beads in focus" in res.message, res.message
    assert wiz.focus_map is not None and len(wiz.focus_map) >= 10
    res = wiz.fit("plane")
    assert res.ok and wiz.step is Step.PREVIEW
    assert wiz.surface_fit is not None and abs(wiz.surface_fit.tilt_deg - 1.5) < 0.15
    review = wiz.review_data()
    assert review is not None
    assert review.surface_um.shape == (128, 128)
    assert len(review.points_yx_px) == len(review.residual_um) == len(review.inlier)
    assert "tilt" in review.summary and review.fit["fit"] == "plane"
    res = wiz.preview()
    assert res.ok and "median lateral FWHM" in res.message
    pv = wiz.preview_data
    assert pv is not None and pv.corrected_image.shape == (128, 128)
    assert pv.median_after_um is not None and pv.median_before_um is not None
    assert pv.median_after_um < 1.05  # in focus everywhere: ~0.96 µm
    res = wiz.save(tmp_path / "cal.json", tmp_path / "dpm.tif")
    assert res.ok and Step.SAVE in wiz.completed
    saved = json.loads((tmp_path / "cal.json").read_text())
    assert saved["fit"] == "plane" and saved["preview"]["fwhm_after"]["n"] > 0
    assert load_calibration(tmp_path / "cal.json").tilt_deg == pytest.approx(
        wiz.surface_fit.tilt_deg
    )
    plan = wiz.apply_to_plan("-1:1:1")
    assert isinstance(plan, dpm.StaticPlanePlan)
    assert plan.describe()["surface"]["kind"] == "tilted_plane"
    d = plan.dpms_for_frame(0, 0.0, (128, 128))
    np.testing.assert_allclose(d[1], wiz.surface_fit.dpm(), atol=1e-6)
    steps = {e[0] for e in events}
    assert {"acquire", "estimate", "review", "preview", "save"} <= steps
    assert any(0 < e[1] < 1 for e in events if e[0] == "estimate")  # sweep progress


def test_errors_are_messages(scene: GaussianBeamScene, tmp_path: Path) -> None:
    wiz = CalibrationWizardModel(scene, PX, sweep_um=SWEEP)
    res = wiz.estimate()
    assert not res.ok and "acquire or load an image first" in res.message
    assert wiz.error == res.message
    assert not wiz.fit().ok and not wiz.preview().ok and not wiz.save(tmp_path / "x.json").ok
    with pytest.raises(InputError, match="fit a surface"):
        wiz.apply_to_plan()
    res = wiz.acquire()
    assert not res.ok and "no live camera" in res.message
    res = wiz.load_file(tmp_path / "missing.tif")
    assert not res.ok and "does not exist" in res.message
    res = wiz.set_image(np.zeros((3, 64, 64)))
    assert not res.ok and "one 2D frame" in res.message
    res = wiz.set_image(np.zeros((64, 64)))
    assert not res.ok and "constant" in res.message  # cannot be normalised


def test_no_beads_found_message() -> None:
    blank = GaussianBeamScene((96, 96), PX, np.zeros((0, 2)), np.zeros(0), refocus_noise_std=0.01)
    wiz = CalibrationWizardModel(blank, PX, sweep_um=SWEEP)
    rng = np.random.default_rng(0)
    assert wiz.set_image(rng.poisson(100, (96, 96)).astype(np.uint16)).ok
    res = wiz.estimate()
    assert not res.ok and res.message.startswith("no beads found")
    assert wiz.step is Step.ESTIMATE and wiz.focus_map is None


def test_surface_outside_range_is_refused() -> None:
    steep = tilted_bead_scene((128, 128), PX, 4.0, 0.0, offset_um=9.2, n_beads=40, seed=2)
    wiz = CalibrationWizardModel(steep, PX, sweep_um="-10:10:0.5")
    assert wiz.set_image(_raw(steep)).ok
    assert wiz.estimate().ok
    res = wiz.fit()
    assert not res.ok and "outside the model's trained axial range" in res.message
    assert wiz.surface_fit is None


def test_snapshot_and_invalidation(scene: GaussianBeamScene, tmp_path: Path) -> None:
    import tifffile

    wiz = CalibrationWizardModel(scene, PX, sweep_um=SWEEP, snapshot=lambda: _raw(scene))
    assert wiz.acquire().ok and wiz.source == "live snapshot"
    assert wiz.estimate().ok and wiz.fit("quadratic").ok
    assert wiz.surface_fit is not None and wiz.surface_fit.kind == "quadratic"
    # a quadratic has no analytic spec: once saved, the plan names the DPM TIFF
    assert wiz.save(tmp_path / "q.json", tmp_path / "q.tif").ok
    plan = wiz.apply_to_plan(0.0)
    assert plan.describe()["surface"]["kind"] == "array"
    tifffile.imwrite(tmp_path / "frame.tif", _raw(scene))
    assert wiz.load_file(tmp_path / "frame.tif").ok
    assert wiz.focus_map is None and wiz.surface_fit is None and wiz.step is Step.ESTIMATE

    def broken() -> np.ndarray:
        raise RuntimeError("camera unplugged")

    wiz.snapshot = broken
    res = wiz.acquire()
    assert not res.ok and "camera unplugged" in res.message


def test_cli_calibrate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The headless command end to end on a tiny random model (no beads survive it)."""
    import tifffile
    import torch

    from live_deepz.cli import main
    from live_deepz.modelfile import ModelCard, save_model
    from live_deepz.network import DeepZConfig, DeepZGenerator
    from live_deepz.optics import Optics

    torch.manual_seed(0)
    gen = DeepZGenerator(DeepZConfig(width=0.0625))
    folder = save_model(
        tmp_path / "tiny", gen, ModelCard.for_generator("tiny", gen, Optics(), (-2.0, 2.0))
    )
    scene = tilted_bead_scene((64, 64), PX, 1.5, 0.0, n_beads=6, min_separation_px=20)
    tifffile.imwrite(tmp_path / "img.tif", _raw(scene))
    out = tmp_path / "cal.json"
    code = main(
        [
            "calibrate",
            str(tmp_path / "img.tif"),
            "--model",
            str(folder),
            "-o",
            str(out),
            "--sweep=-2:2:1",
            "--backend",
            "torch",
            "--precision",
            "fp32",
        ]
    )
    err = capsys.readouterr().err
    # a random-weight network cannot find beads: a clear message and exit status 1
    assert code == 1 and "live-deepz calibrate: error:" in err and not out.exists()
    code = main(["calibrate", str(tmp_path / "nope.tif"), "--model", str(folder), "-o", str(out)])
    assert code == 1 and "does not exist" in capsys.readouterr().err
