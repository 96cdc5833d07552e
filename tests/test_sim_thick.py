"""The thick brain-slice simulator: two modalities of one sample, and exact known shifts."""

from __future__ import annotations

import numpy as np
import pytest

from live_deepz.errors import InputError
from live_deepz.sim.thick import ThickSampleParams, brain_slice_volume, render_thick

P = ThickSampleParams(size_px=48, n_planes=8)


@pytest.fixture(scope="module")
def sample():
    return brain_slice_volume(P, seed=3)


def test_same_seed_same_sample_and_confocal_sections(sample) -> None:
    again = brain_slice_volume(P, seed=3)
    np.testing.assert_array_equal(sample.density, again.density)
    assert not np.array_equal(brain_slice_volume(P, seed=4).density, sample.density)
    wf = render_thick(sample, "widefield")
    cf = render_thick(sample, "confocal")
    assert wf.shape == cf.shape == (8, 48, 48)
    # optical sectioning: the confocal planes hold far more contrast than the wide-field ones
    assert np.mean(cf.std(axis=(1, 2)) / cf.mean(axis=(1, 2))) > 2 * np.mean(
        wf.std(axis=(1, 2)) / wf.mean(axis=(1, 2))
    )
    # the same sample: the confocal planes correlate with the wide-field ones
    r = np.corrcoef(wf[4].ravel(), cf[4].ravel())[0, 1]
    assert r > 0.3


def test_known_shift_is_exact(sample) -> None:
    cf = render_thick(sample, "confocal")
    moved = render_thick(sample, "confocal", (1.0, 3.0, -2.0))
    expect = np.roll(cf, (3, -2), axis=(1, 2))
    np.testing.assert_allclose(moved[1:], expect[:-1], rtol=1e-3, atol=1e-3 * cf.max())


def test_bad_params() -> None:
    with pytest.raises(InputError, match="size"):
        ThickSampleParams(size_px=4)
    with pytest.raises(InputError, match="modality"):
        render_thick(brain_slice_volume(P, 0), "lightsheet")
