"""Deep-Z+ data: registration between modalities, axial zero, confocal-like labels."""

from __future__ import annotations

import numpy as np
import pytest
from _training_data import (
    bead_object,
    gaussian_psf_stack,
    modality_pair,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    render,
)
from scipy import ndimage
from skimage.transform import AffineTransform, warp

from live_deepz.errors import InputError
from live_deepz.sim.confocal import confocal_psf_stack
from live_deepz.training.crossmodal import (
    CrossModalConfig,
    axial_zero,
    build_crossmodal_pairs,
    focus_curve,
    register_images,
)
from live_deepz.training.pairs import FieldStack, PairConfig, prepare_field


def _textured(size: int = 128) -> np.ndarray:
    return ndimage.gaussian_filter(bead_object(size, 60, seed=1, blobs=25), 1.0)


def _corners_error(matrix: np.ndarray, true: np.ndarray, size: int) -> float:
    pts = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], float).T
    a, b = matrix @ pts, true @ pts
    return float(np.abs(a[:2] / a[2] - b[:2] / b[2]).max())


@pytest.mark.parametrize("transform", ["affine", "projective"])
def test_feature_registration_recovers_a_known_affine(transform: str) -> None:
    fixed = _textured()
    true = AffineTransform(rotation=np.deg2rad(3), scale=1.03, translation=(4.3, -2.7))
    moving = warp(fixed, true.inverse, output_shape=fixed.shape, order=3)  # moving(T p) = fixed(p)
    reg = register_images(fixed, moving, CrossModalConfig(transform=transform))
    assert reg.method in (f"orb-{transform}", f"sift-{transform}") and reg.n_inliers >= 12
    assert _corners_error(reg.matrix, true.params, 128) < 1.0


def test_translation_fallback_and_pixel_size_ratio() -> None:
    fixed = _textured()
    moving = ndimage.shift(fixed, (3.4, -5.2), order=3)
    reg = register_images(fixed, moving, CrossModalConfig(features=()))
    assert reg.method == "phase-translation"
    np.testing.assert_allclose(reg.matrix[:2, 2], [-5.2, 3.4], atol=0.1)
    # moving image sampled twice as finely: prescale 2 maps fixed pixels to moving pixels
    fine = ndimage.zoom(fixed, 2, order=3)
    reg = register_images(fixed, fine, CrossModalConfig(features=()), prescale=2.0)
    np.testing.assert_allclose(reg.matrix[:2, :2], 2 * np.eye(2), atol=1e-6)
    assert np.abs(reg.matrix[:2, 2]).max() < 1.0


def test_axial_zero_is_the_peak_of_a_four_point_quadratic() -> None:
    z = np.arange(12) * 0.2
    curve = 0.9 - 0.5 * (z - 1.13) ** 2
    assert axial_zero(curve, z) == pytest.approx(1.13, abs=1e-9)
    # only the 4 highest points count: an outlier far away does not move the peak
    curve2 = curve.copy()
    curve2[0] = -50
    assert axial_zero(curve2, z) == pytest.approx(1.13, abs=1e-9)
    # a monotonic curve: the peak stays within the fitted points
    assert 1.6 <= axial_zero(z, z) <= 2.2


def test_focus_curve_finds_the_focal_plane_of_a_stack(tmp_path) -> None:
    z = np.arange(11) * 0.5
    obj = bead_object(64, 30, seed=3)
    stack = render(obj, gaussian_psf_stack(z - 2.3), photons=3000.0, background=100.0, seed=0)
    f = prepare_field(FieldStack(stack, 0.5, name="s"), tmp_path)
    zero = axial_zero(focus_curve(f.array, f.edf), f.z_um)
    assert zero == pytest.approx(2.3, abs=0.25)


def test_confocal_psf_sections_optically() -> None:
    z = np.linspace(-3, 3, 13)
    wf = gaussian_psf_stack(z)
    conf = confocal_psf_stack(wf)
    sums_wf, sums_conf = wf.sum(axis=(1, 2)), conf.sum(axis=(1, 2))
    np.testing.assert_allclose(sums_wf, 1.0, rtol=1e-5)  # wide field: same energy per slice
    assert sums_conf[6] == pytest.approx(1.0) and sums_conf[0] < 0.2 * sums_conf[6]
    np.testing.assert_allclose(conf, wf**2 / (wf**2).sum(axis=(1, 2)).max(), rtol=1e-5, atol=1e-12)
    # a finite pinhole passes more out-of-focus light than a point pinhole
    wide = confocal_psf_stack(wf, pinhole_au=2.0, airy_unit_px=4.0)
    assert wide.sum(axis=(1, 2))[0] > sums_conf[0]
    with pytest.raises(InputError):
        confocal_psf_stack(wf[0])


def _pair(seed: int, shift: tuple[float, float]) -> tuple[FieldStack, FieldStack]:
    wf, conf = modality_pair(seed, shift)
    return FieldStack(wf, 0.5, name=f"wf{seed}"), FieldStack(conf, 0.5, name=f"conf{seed}")


def test_crossmodal_pairs_register_and_centre_both_stacks(tmp_path) -> None:
    pairs = [_pair(1, (3.0, -2.0)), _pair(2, (3.0, -2.0))]
    cfg = PairConfig(patch=32, z_half_range_um=1.5, targets_per_input=4)
    data = build_crossmodal_pairs([p[0] for p in pairs], [p[1] for p in pairs], cfg, tmp_path)
    assert data.summary.modality == {"input": "widefield", "output": "confocal"}
    regs = data.summary.extra["registrations"]
    assert len(regs) == 2 and len(data.fields) == 4
    for reg in regs:
        m = np.asarray(reg["matrix"])
        np.testing.assert_allclose(m[:2, 2], [-2.0, 3.0], atol=0.5)  # conf = wf + (dy, dx)
        assert reg["zero_input_um"] == pytest.approx(2.0, abs=0.25)
        assert reg["zero_label_um"] == pytest.approx(2.75, abs=0.25)
    for r in data.regions:
        assert r.target_field == r.field + 1
        assert abs(r.ty - r.y) <= 1 and abs(r.tx - r.x) <= 1
        valid = data.fields[r.target_field].valid
        assert valid is not None and valid[r.ty : r.ty + 32, r.tx : r.tx + 32].all()
    rows = np.concatenate([data.pairs["train"], data.pairs["val"]])
    r0 = data.regions[rows["region"][0]]
    z_in, z_out = data.fields[r0.field].z_um, data.fields[r0.target_field].z_um
    np.testing.assert_allclose(
        rows["dpm_um"][0], z_out[rows["ztg"][0]] - z_in[rows["zin"][0]], atol=1e-6
    )
    # the DPM is measured between the zero-centred heights of the two stacks
    assert np.abs(rows["dpm_um"] % 0.5 - 0.25).min() < 0.3
    # the warped confocal target of an in-focus input shows the same beads
    x, t = data.dataset("val").sample(0)
    assert x.shape == (2, 32, 32) and t.shape == (1, 32, 32)


def test_crossmodal_needs_one_label_stack_per_input(tmp_path) -> None:
    wf, conf = _pair(1, (0.0, 0.0))
    with pytest.raises(InputError, match="one label stack per input"):
        build_crossmodal_pairs(
            [wf, wf], [conf], PairConfig(patch=32, z_half_range_um=1.5), tmp_path
        )
