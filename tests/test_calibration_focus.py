"""Focus estimation with the physics oracle, bead FWHM, and the engine refocus function."""

from __future__ import annotations

import math

import numpy as np
import pytest

from live_deepz import dpm
from live_deepz.calibration import (
    FWHM_PER_SIGMA,
    FocusMap,
    bead_fwhm,
    engine_refocus_fn,
    estimate_focus_beads,
    estimate_focus_tiles,
    fit_beads,
    fit_surface,
    fwhm_summary,
    sweep_offsets,
    virtual_sweep,
)
from live_deepz.calibration.testing import (
    GaussianBeamScene,
    PlaneRenderOracle,
    random_points,
    tilted_bead_scene,
)
from live_deepz.errors import DPMRangeError, InputError

PX = 0.325


def _match(fmap: FocusMap, scene: GaussianBeamScene) -> tuple[np.ndarray, np.ndarray]:
    """Per detected bead: distance to the nearest true bead (px) and the z error (µm)."""
    d = np.hypot(*(fmap.points_yx_px[:, None, :] - scene.points_yx_px[None]).transpose(2, 0, 1))
    j = d.argmin(axis=1)
    return d.min(axis=1), fmap.z_um - scene.true_focus_um()[j]


def test_tilted_bead_field_gives_tilt() -> None:
    """128² field tilted 1.5°: per-bead focus to a few 10 nm, plane tilt within 0.15°."""
    scene = tilted_bead_scene(
        (128, 128), PX, 1.5, 30.0, n_beads=40, seed=0, noise_std=0.02, refocus_noise_std=0.02
    )
    fmap = estimate_focus_beads(scene, scene.input_image(), PX, offsets_um="-3:3:0.5")
    assert fmap.method == "beads" and fmap.shape == (128, 128)
    assert len(fmap) >= 15
    dist, err = _match(fmap, scene)
    assert dist.max() < 1.0
    assert np.sqrt(np.mean(err**2)) < 0.05
    assert np.all((fmap.confidence > 0) & (fmap.confidence <= 1))
    assert fmap.z_std_um is not None and np.all(fmap.z_std_um < 0.2)
    assert fmap.info["rejected"]["edge"] > 0  # beads near the border are not used
    assert "max_projection" in fmap.arrays
    fit = fit_surface(fmap, "plane")
    assert abs(fit.tilt_deg - 1.5) < 0.15
    assert min(abs(fit.azimuth_deg - 30.0), 360 - abs(fit.azimuth_deg - 30.0)) < 10.0


def test_spots_painted_where_the_input_has_no_light_are_rejected() -> None:
    """A refocuser that paints a bright spot at DPM −4 µm in an empty corner: the spot is
    a "bead" of the sweep's maximum projection, but the input holds no light for it."""
    scene = tilted_bead_scene(
        (128, 128), PX, 0.0, 0.0, n_beads=12, seed=2, noise_std=0.02, refocus_noise_std=0.0
    )
    image = scene.input_image()
    empty = _emptiest_spot(image)

    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    blob = np.exp(-((yy - empty[0]) ** 2 + (xx - empty[1]) ** 2) / 2.0)

    def painting(img: np.ndarray, dpms: np.ndarray) -> np.ndarray:
        out = np.asarray(scene(img, dpms)).copy()
        for k in range(len(dpms)):  # sharpest at DPM −4 µm, like a bead's focus curve
            out[k] += np.exp(-((float(dpms[k].mean()) + 4.0) ** 2) / 2.0) * blob
        return out

    painting.z_range_um = scene.z_range_um  # type: ignore[attr-defined]

    def ghosts(fmap: FocusMap) -> int:
        d = np.hypot(*(fmap.points_yx_px - np.asarray(empty, dtype=float)).T)
        return int(np.count_nonzero(d < 3))

    lax = estimate_focus_beads(painting, image, PX, offsets_um="-6:6:0.5", flux_snr_min=0)
    assert ghosts(lax) == 1 and "no_input_light" not in lax.info["rejected"]
    fmap = estimate_focus_beads(painting, image, PX, offsets_um="-6:6:0.5")
    assert ghosts(fmap) == 0 and fmap.info["rejected"]["no_input_light"] == 1
    assert len(fmap) == len(lax) - 1  # every real bead is kept


def _emptiest_spot(image: np.ndarray) -> tuple[int, int]:
    """The interior pixel (20 px from the edges) with the lowest 31 px local mean."""
    from scipy import ndimage

    m = ndimage.uniform_filter(image, 31)
    m[:20], m[-20:], m[:, :20], m[:, -20:] = np.inf, np.inf, np.inf, np.inf
    y, x = np.unravel_index(int(np.argmin(m)), m.shape)
    return int(y), int(x)


def test_sign_convention_deeper_sample_needs_positive_dpm() -> None:
    """Beads 3 µm deeper than the focal plane are focused by DPM +3 µm."""
    pts = random_points((96, 96), 12, 14, seed=1, margin_px=12)
    scene = GaussianBeamScene((96, 96), PX, pts, np.full(len(pts), 3.0))
    fmap = estimate_focus_beads(scene, scene.input_image(), PX, offsets_um="-6:6:0.5")
    assert len(fmap) >= 8
    np.testing.assert_allclose(fmap.z_um, 3.0, atol=0.03)


def test_oracle_refocus_with_non_uniform_dpm() -> None:
    """Refocusing onto the true surface brings every bead into focus (the preview path)."""
    scene = tilted_bead_scene((128, 128), PX, 1.5, 0.0, n_beads=20, min_separation_px=20)
    img = scene.input_image()
    surface = dpm.tilted_plane((128, 128), PX, 1.5, 0.0)
    corrected = scene(img, surface[None])[0]
    focused = scene.render(0.0)
    scene.z_um[:] = 0.0
    flat = scene.render(0.0)
    np.testing.assert_allclose(corrected, flat, atol=0.02)
    assert not np.allclose(focused, flat, atol=0.02)


def test_plane_render_oracle_matches_gaussian_scene() -> None:
    scene = tilted_bead_scene((64, 64), PX, 2.0, 45.0, n_beads=8, min_separation_px=16)
    oracle = PlaneRenderOracle(scene.render, (64, 64), PX, level_step_um=0.05)
    img = oracle.input_image()
    d = np.stack([np.full((64, 64), 1.0, np.float32), dpm.tilted_plane((64, 64), PX, 2.0, 45.0)])
    out = oracle(img, d)
    np.testing.assert_allclose(out[0], scene.render(1.0), atol=1e-5)
    np.testing.assert_allclose(out[1], scene(img, d[1:])[0], atol=0.05)
    crop = img[10:42, 20:52]
    np.testing.assert_allclose(
        oracle(crop, np.zeros((1, 32, 32), np.float32))[0], img[10:42, 20:52], atol=1e-6
    )


def test_no_beads_found() -> None:
    rng = np.random.default_rng(0)
    scene = GaussianBeamScene((64, 64), PX, np.zeros((0, 2)), np.zeros(0), refocus_noise_std=0.01)
    with pytest.raises(InputError, match="no beads found"):
        estimate_focus_beads(scene, rng.normal(0, 0.01, (64, 64)), PX, offsets_um="-2:2:1")


def test_beads_outside_sweep_are_rejected() -> None:
    pts = random_points((96, 96), 10, 16, seed=2, margin_px=12)
    z = np.where(np.arange(len(pts)) % 2 == 0, 1.0, 6.0)
    scene = GaussianBeamScene((96, 96), PX, pts, z)
    fmap = estimate_focus_beads(scene, scene.input_image(), PX, offsets_um="-3:3:0.5")
    assert fmap.info["rejected"]["outside_sweep"] >= 3
    np.testing.assert_allclose(fmap.z_um, 1.0, atol=0.03)


def test_sweep_checks() -> None:
    with pytest.raises(DPMRangeError, match="focus sweep"):
        sweep_offsets("-12:12:1", (-10.0, 10.0))
    with pytest.raises(InputError, match="at least 3 planes"):
        sweep_offsets("0,1")
    np.testing.assert_allclose(sweep_offsets("2,-1,0"), [-1, 0, 2])
    # the default sweep (−10…10 / 0.5) is clipped to a narrower model range (40×: ±4 µm)
    np.testing.assert_allclose(sweep_offsets(None, (-4.0, 4.0)), np.arange(-4, 4.01, 0.5))
    assert len(sweep_offsets()) == 41
    scene = tilted_bead_scene((64, 64), PX, n_beads=5)
    with pytest.raises(DPMRangeError):  # the oracle's z_range (-10, 10) is honoured
        estimate_focus_beads(scene, scene.input_image(), PX, offsets_um="-12:12:1")


def test_virtual_sweep_chunks_balanced() -> None:
    calls: list[tuple[int, float, float]] = []

    def fake(image: np.ndarray, dpms: np.ndarray) -> np.ndarray:
        calls.append((dpms.shape[0], float(dpms[0, 0, 0]), float(dpms[-1, 0, 0])))
        return np.repeat(dpms[:, :1, :1], 1, axis=0) * np.ones_like(dpms)

    seen: dict[int, float] = {}
    offsets = np.linspace(-10, 10, 41)
    virtual_sweep(fake, np.zeros((8, 8)), offsets, lambda k, p: seen.__setitem__(k, p[0, 0]))
    assert [c[0] for c in calls] == [7] * 6  # 41 planes in 6 chunks of 7 (last one padded)
    assert sorted(seen) == list(range(41))
    np.testing.assert_allclose([seen[k] for k in range(41)], offsets, atol=1e-6)


def test_tiles_on_dense_tilted_sample() -> None:
    scene = tilted_bead_scene(
        (128, 128), PX, 2.0, 90.0, n_beads=300, min_separation_px=4, refocus_noise_std=0.005
    )
    fmap = estimate_focus_tiles(scene, scene.input_image(), PX, offsets_um="-4:4:0.5", tile_px=32)
    assert fmap.method == "tiles" and len(fmap) == 16
    truth = dpm.tilted_plane((128, 128), PX, 2.0, 90.0)
    iy, ix = np.round(fmap.points_yx_px).astype(int).T
    assert np.abs(fmap.z_um - truth[iy, ix]).max() < 0.25
    fit = fit_surface(fmap, "plane")
    assert abs(fit.tilt_deg - 2.0) < 0.3
    assert min(abs(fit.azimuth_deg - 90.0), 360 - abs(fit.azimuth_deg - 90.0)) < 10.0
    with pytest.raises(InputError, match="focus measure"):
        estimate_focus_tiles(scene, scene.input_image(), PX, measure="entropy")


def test_tiles_flat_image_rejected() -> None:
    scene = GaussianBeamScene((64, 64), PX, np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(InputError, match="no tile has a usable focus curve"):
        estimate_focus_tiles(scene, np.zeros((64, 64)), PX, offsets_um="-2:2:1", tile_px=32)


# --------------------------------------------------------------------------- FWHM


def _gauss_image(
    shape: tuple[int, int], pts: np.ndarray, sx: float, sy: float, noise: float = 0.0
) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    img = np.zeros(shape)
    for y, x in pts:
        img += np.exp(-((xx - x) ** 2) / (2 * sx * sx) - (yy - y) ** 2 / (2 * sy * sy))
    rng = np.random.default_rng(0)
    return img + 0.05 + rng.normal(0, noise, shape)


@pytest.mark.parametrize(("sx", "sy"), [(1.26, 1.26), (1.2, 2.0), (3.0, 2.5)])
def test_fwhm_of_known_gaussians(sx: float, sy: float) -> None:
    pts = random_points((160, 160), 12, 32, seed=4, margin_px=16)
    fits = fit_beads(_gauss_image((160, 160), pts, sx, sy, noise=0.005), PX)
    assert len(fits) >= 8
    expected = FWHM_PER_SIGMA * (sx * PX + sy * PX) / 2
    np.testing.assert_allclose(fits.fwhm_um, expected, rtol=0.02)
    np.testing.assert_allclose(fits.sigma_x_px, sx, rtol=0.03)
    np.testing.assert_allclose(fits.sigma_y_px, sy, rtol=0.03)


def test_fwhm_skips_edges_and_neighbours() -> None:
    pts = np.array([[5.0, 60.0], [60.0, 60.0], [60.0, 66.0], [100.0, 30.0]])
    fits = fit_beads(_gauss_image((128, 128), pts, 1.3, 1.3), PX)
    assert len(fits) == 1  # edge bead and the close pair are skipped
    np.testing.assert_allclose(fits.points_yx_px[0], [100.0, 30.0], atol=0.05)
    assert len(bead_fwhm(np.zeros((64, 64)), PX)) == 0
    assert fwhm_summary([])["median_um"] is None
    s = fwhm_summary([1.0, 2.0, 3.0])
    assert s["n"] == 3 and s["median_um"] == 2.0
    with pytest.raises(InputError):
        bead_fwhm(np.zeros((2, 3, 4)), PX)


def test_fwhm_input_vs_corrected_on_tilted_field() -> None:
    """Defocused beads of a tilted field are wider; refocusing onto the fit narrows them."""
    scene = tilted_bead_scene((256, 256), PX, 3.0, 0.0, n_beads=40, min_separation_px=24)
    img = scene.input_image()
    before = bead_fwhm(img, PX)
    corrected = scene(img, dpm.tilted_plane((256, 256), PX, 3.0, 0.0)[None])[0]
    after = bead_fwhm(corrected, PX)
    assert np.median(after) == pytest.approx(FWHM_PER_SIGMA * 0.41, rel=0.03)
    assert np.median(before) > 1.3 * np.median(after)


# --------------------------------------------------------------------------- engine


def _tiny_model(tmp_path):  # type: ignore[no-untyped-def]
    import torch

    from live_deepz.modelfile import ModelCard, load_model, save_model
    from live_deepz.network import DeepZConfig, DeepZGenerator
    from live_deepz.optics import Optics

    torch.manual_seed(0)
    gen = DeepZGenerator(DeepZConfig(width=0.0625))
    card = ModelCard.for_generator("tinycal", gen, Optics(), (-10.0, 10.0))
    return load_model(save_model(tmp_path / "tinycal", gen, card))


def test_engine_refocus_fn_units_chunks_and_range(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    model = _tiny_model(tmp_path)
    refocus = engine_refocus_fn(model, "torch", precision="fp32", device="cpu", max_planes=2)
    assert refocus.z_range_um == (-10.0, 10.0)
    assert refocus.pixel_size_um == pytest.approx(0.325)
    rng = np.random.default_rng(0)
    img = rng.random((32, 32)).astype(np.float32)
    dpms = np.stack([np.full((32, 32), v, np.float32) for v in (-5.0, 0.0, 2.5)])
    out = refocus(img, dpms)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    # the same as the generator on [image, dpm / dpm_scale]
    x = torch.from_numpy(np.stack([np.stack([img, d / 10.0]) for d in dpms]))
    with torch.inference_mode():
        ref = model.generator(x)[:, 0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-4)
    assert refocus.backend.counters["frames"] == 2  # chunks of 2 (last padded)
    with pytest.raises(DPMRangeError, match="refocus DPMs"):
        refocus(img, np.full((1, 32, 32), 11.0, np.float32))
    with pytest.raises(InputError):
        refocus(img, np.zeros((1, 16, 16), np.float32))
    assert refocus.describe()["model"] == "tinycal"
    assert math.isfinite(float(out.mean()))
