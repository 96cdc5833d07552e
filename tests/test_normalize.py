"""Paper normalisation: triangle threshold, background mean, 1 % saturation, EDF reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.filters import threshold_triangle

from live_deepz.errors import InputError
from live_deepz.normalize import (
    Normalization,
    extended_depth_of_field,
    fit_normalization,
    normalize_image,
    normalize_stack,
)


def _synthetic(seed: int = 0, shape: tuple[int, int] = (256, 256)) -> tuple[np.ndarray, np.ndarray]:
    """Background 100 + noise (σ 3); ~8 % foreground squares with values 400…1400."""
    rng = np.random.default_rng(seed)
    img = 100.0 + rng.normal(0.0, 3.0, shape)
    mask = np.zeros(shape, dtype=bool)
    for _ in range(40):
        y, x = rng.integers(0, shape[0] - 12), rng.integers(0, shape[1] - 12)
        mask[y : y + 12, x : x + 12] = True
    img[mask] = rng.uniform(400.0, 1400.0, int(mask.sum()))
    return img, mask


def _edges(seed: int, shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros(shape)
    ys, xs = rng.integers(4, shape[0] - 4, 120), rng.integers(4, shape[1] - 4, 120)
    img[ys, xs] = 1000.0
    return img


def test_fit_recovers_background_and_saturates_one_percent() -> None:
    img, mask = _synthetic()
    raw = img.astype(np.uint16)
    norm = fit_normalization(raw)
    assert norm.background == pytest.approx(100.0, abs=1.0)
    out = norm.apply(raw)
    assert out.dtype == np.float32
    fg = raw > threshold_triangle(raw)
    assert mask.sum() <= fg.sum() < 1.2 * mask.sum()  # the threshold finds the squares
    frac = np.count_nonzero(out[fg] > 1.0) / fg.sum()
    assert frac == pytest.approx(0.01, abs=0.001)
    # The background ends near 0.
    assert abs(float(np.mean(out[~fg]))) < 0.01
    assert norm.scale == pytest.approx(np.quantile(raw[fg] - norm.background, 0.99), rel=1e-6)


def test_saturate_fraction_parameter() -> None:
    img, _ = _synthetic(1)
    norm = fit_normalization(img, saturate_fraction=0.05)
    fg = img > threshold_triangle(img)
    frac = np.count_nonzero(norm.apply(img)[fg] > 1.0) / fg.sum()
    assert frac == pytest.approx(0.05, abs=0.002)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(InputError, match="saturate_fraction"):
            fit_normalization(img, saturate_fraction=bad)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_any_real_dtype(dtype: type) -> None:
    img, _ = _synthetic(2)
    if dtype is np.uint8:
        img = img / 6.0
    out, norm = normalize_image(img.astype(dtype))
    assert out.dtype == np.float32 and out.shape == img.shape
    assert norm.scale > 0


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.full((32, 32), 7.0), "constant"),
        (np.zeros((32, 32), dtype=np.uint16), "constant"),
        (np.zeros((4, 32, 32)), r"\(Y, X\)"),
        (np.zeros(32), r"\(Y, X\)"),
        (np.zeros((0, 4)), "empty"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), "non-finite"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]), "non-finite"),
        (np.ones((4, 4), dtype=complex), "real numbers"),
        (np.ones((4, 4), dtype=bool), "real numbers"),
        (np.array([["a", "b"]], dtype=object), "real numbers"),
    ],
)
def test_fit_rejects_bad_references(bad: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        fit_normalization(bad)


def test_normalization_dataclass() -> None:
    n = Normalization(background=100.0, scale=50.0)
    x = np.array([[100, 150], [200, 75]], dtype=np.uint16)
    y = n.apply(x)
    np.testing.assert_allclose(y, [[0.0, 1.0], [2.0, -0.5]])
    np.testing.assert_allclose(n.invert(y), x)
    assert n.invert(y).dtype == np.float32
    buf = np.empty((2, 2), dtype=np.float32)
    assert n.apply(x, out=buf) is buf
    np.testing.assert_allclose(buf, y)
    assert Normalization.from_dict(n.to_dict()) == n
    assert isinstance(n.to_dict()["background"], float)
    with pytest.raises(InputError):
        Normalization(background=0.0, scale=0.0)
    with pytest.raises(InputError):
        Normalization(background=float("nan"), scale=1.0)
    with pytest.raises(InputError):
        Normalization.from_dict({"scale": 1.0})
    with pytest.raises(InputError):
        n.apply(np.ones(3, dtype=complex))


def _two_focus_stack() -> tuple[np.ndarray, np.ndarray]:
    """Left half in focus at plane 1, right half at plane 4; blur grows with defocus."""
    objects = _edges(3, (96, 128))
    nz, focus = 6, np.where(np.arange(128) < 64, 1, 4)[None, :].repeat(96, axis=0)
    stack = np.empty((nz, 96, 128))
    for z in range(nz):
        left = ndimage.gaussian_filter(objects, 0.7 + 1.5 * abs(z - 1))
        right = ndimage.gaussian_filter(objects, 0.7 + 1.5 * abs(z - 4))
        stack[z] = np.where(focus == 1, left, right)
    sharp = np.where(focus == 1, stack[1], stack[4])
    return 50.0 + stack, 50.0 + sharp


def test_edf_picks_the_sharp_plane() -> None:
    stack, sharp = _two_focus_stack()
    edf = extended_depth_of_field(stack.astype(np.float32))
    assert edf.dtype == np.float32 and edf.shape == sharp.shape
    # Away from the seam between the halves, the EDF is the in-focus plane.
    inner = np.s_[8:-8, np.r_[8:52, 76:120]]
    err = np.abs(edf[inner] - sharp[inner]).mean()
    worst_single = min(np.abs(stack[z][inner] - sharp[inner]).mean() for z in range(6))
    assert err < 0.05 * worst_single + 1e-3
    assert edf.max() == pytest.approx(sharp.max(), rel=0.02)
    np.testing.assert_array_equal(extended_depth_of_field(stack[:1]), stack[0].astype(np.float32))
    with pytest.raises(InputError, match=r"\(Z, Y, X\)"):
        extended_depth_of_field(stack[0])


def test_normalize_stack_same_offset_and_scale_on_all_planes() -> None:
    stack, _ = _two_focus_stack()
    raw = stack.astype(np.uint16) + np.uint16(40)
    out, norm = normalize_stack(raw)
    assert out.dtype == np.float32 and out.shape == raw.shape
    edf_norm = fit_normalization(extended_depth_of_field(raw))
    assert norm == edf_norm
    for z in range(raw.shape[0]):
        np.testing.assert_allclose(out[z], (raw[z] - norm.background) / norm.scale, rtol=1e-5)
    # A given reference is used instead of the EDF.
    img, _ = _synthetic(4, raw.shape[1:])
    out2, norm2 = normalize_stack(raw, reference=img)
    assert norm2 == fit_normalization(img)
    np.testing.assert_allclose(norm2.invert(out2), raw, rtol=1e-5, atol=1e-2)


def test_normalize_stack_bad_inputs() -> None:
    stack, _ = _two_focus_stack()
    with pytest.raises(InputError, match="reference"):
        normalize_stack(stack, reference=np.ones((5, 5)))
    with pytest.raises(InputError, match=r"\(Z, Y, X\)"):
        normalize_stack(stack[0])
    bad = stack.copy()
    bad[2, 3, 4] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        normalize_stack(bad)
    with pytest.raises(InputError, match="real numbers"):
        normalize_stack(stack.astype(complex))
