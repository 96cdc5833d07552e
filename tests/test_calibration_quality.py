"""The calibration quality gate: noise and featureless images never give an unqualified
surface; a genuine tilted bead slide (physics oracle) passes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from live_deepz.calibration import (
    CalibrationWizardModel,
    FocusMap,
    assess_calibration,
    fit_surface,
    known_failures_of,
)
from live_deepz.calibration.testing import GaussianBeamScene, tilted_bead_scene

PX = 0.325
SWEEP = "-3:3:0.5"


def _raw(scene: GaussianBeamScene) -> np.ndarray:
    return np.clip(100 + 2000 * scene.input_image(), 0, 65535).astype(np.uint16)


class BlurRefocus:
    """Refocuses by blurring more the farther from 0: every tile looks sharpest at 0, as the
    bundled model does on a pure-noise frame (a consistent, meaningless 'flat surface')."""

    z_range_um = (-10.0, 10.0)

    def __call__(self, image: np.ndarray, dpms_um: np.ndarray) -> np.ndarray:
        return np.stack(
            [ndimage.gaussian_filter(image, 0.3 + abs(float(d.flat[0]))) for d in dpms_um]
        )


def _tiles_wizard(image: np.ndarray) -> CalibrationWizardModel:
    wiz = CalibrationWizardModel(
        BlurRefocus(), PX, method="tiles", sweep_um=SWEEP, estimate_options={"tile_px": 32}
    )
    assert wiz.set_image(image).ok
    assert wiz.estimate().ok  # the focus curves themselves look fine ...
    return wiz


def test_pure_noise_is_below_the_gate() -> None:
    rng = np.random.default_rng(0)
    wiz = _tiles_wizard(rng.poisson(200, (128, 128)).astype(np.uint16))
    res = wiz.fit("plane")  # ... but the gate sees no structure above the noise
    assert not res.ok and "below the quality gate" in res.message
    assert "without structure above the camera noise" in res.message
    assert wiz.surface_fit is None


def test_featureless_gradient_is_below_the_gate() -> None:
    rng = np.random.default_rng(1)
    _, xx = np.mgrid[0:128, 0:128]
    img = (200 + 2.0 * xx + rng.poisson(5, (128, 128))).astype(np.uint16)
    res = _tiles_wizard(img).fit("plane")
    assert not res.ok and "featureless" in res.message


def test_force_keeps_the_problems_as_warnings(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    wiz = _tiles_wizard(rng.poisson(200, (128, 128)).astype(np.uint16))
    wiz.force = True
    res = wiz.fit("plane")
    assert res.ok and any(w.startswith("accepted with --force") for w in res.warnings)
    assert wiz.save(tmp_path / "c.json").ok
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["quality"]["level"] == "forced"
    assert any("accepted with --force" in w for w in saved["warnings"])


def test_tilted_bead_slide_passes(tmp_path: Path) -> None:
    scene = tilted_bead_scene(
        (128, 128), PX, 1.5, 30.0, n_beads=30, seed=1, noise_std=0.01, refocus_noise_std=0.01
    )
    wiz = CalibrationWizardModel(scene, PX, sweep_um=SWEEP)
    assert wiz.set_image(_raw(scene)).ok and wiz.estimate().ok
    res = wiz.fit("plane")
    assert res.ok, res.message
    assert wiz.quality is not None and wiz.quality.level in ("ok", "warn")
    assert wiz.quality.stats["p_flat"] < 1e-6  # the tilt is highly significant
    assert wiz.save(tmp_path / "c.json").ok
    assert json.loads((tmp_path / "c.json").read_text())["quality"]["n_usable"] >= 6


def test_level_slide_warns_that_the_tilt_is_not_significant() -> None:
    scene = tilted_bead_scene(
        (128, 128), PX, 0.0, 0.0, n_beads=40, seed=1, noise_std=0.01, refocus_noise_std=0.01
    )
    wiz = CalibrationWizardModel(scene, PX, sweep_um=SWEEP)
    assert wiz.set_image(_raw(scene)).ok and wiz.estimate().ok
    res = wiz.fit("plane")
    assert res.ok
    assert any("not significantly different from a flat surface" in w for w in res.warnings)
    assert wiz.surface_fit is not None
    assert any("not significantly" in w for w in wiz.surface_fit.warnings)  # in the JSON too


def test_model_known_to_fail_on_beads_is_below_the_gate() -> None:
    scene = tilted_bead_scene((128, 128), PX, 1.5, 30.0, n_beads=30, seed=1, noise_std=0.01)
    wiz = CalibrationWizardModel(
        scene, PX, sweep_um=SWEEP, known_failures={"beads": "drops sparse peaks"}
    )
    assert wiz.set_image(_raw(scene)).ok and wiz.estimate().ok
    res = wiz.fit("plane")
    assert not res.ok and "known to fail on beads" in res.message
    assert "drops sparse peaks" in res.message


def test_too_few_and_imprecise_points() -> None:
    rng = np.random.default_rng(3)
    pts = rng.uniform(10, 118, (8, 2))
    fmap = FocusMap(
        pts, rng.normal(0, 0.3, 8), np.full(8, 0.02), "beads", (128, 128), PX, np.full(8, 0.7)
    )
    q = assess_calibration(fmap, fit_surface(fmap, "plane"))
    assert q.level == "fail" and "8 imprecise" in q.problems[0]
    fmap.z_std_um = np.full(8, 0.05)
    q = assess_calibration(fmap, fit_surface(fmap, "plane"))
    assert q.level == "warn" and "only 8 usable" in q.warnings[0]  # near the gate


def test_bundled_card_names_its_known_failures() -> None:
    from live_deepz.modelfile import default_model_path, load_card

    assert "beads" in known_failures_of(load_card(default_model_path()))
    assert known_failures_of(object()) == {}


@pytest.mark.parametrize("kind", ["quadratic"])
def test_higher_order_fit_needs_more_points(kind: str) -> None:
    rng = np.random.default_rng(4)
    pts = rng.uniform(10, 118, (8, 2))
    z = 0.01 * (pts[:, 1] - 64) * PX
    fmap = FocusMap(pts, z, np.ones(8), "beads", (128, 128), PX, np.full(8, 0.02))
    q = assess_calibration(fmap, fit_surface(fmap, kind))
    assert q.level == "fail" and "needs at least 10" in q.problems[0]
