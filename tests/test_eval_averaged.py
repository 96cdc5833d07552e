"""benchmarks/eval_averaged.py: flips/rotations and model averaging around a refocuser."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _benchmarks import load_benchmark
from scipy import ndimage


class _Fn:
    """A stand-in refocuser: ``fn(image, dpms) -> (K, H, W)``."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def refocus(self, image: np.ndarray, dpms: Any) -> np.ndarray:
        return np.asarray(self.fn(image, np.asarray(dpms)), dtype=np.float32)


def _blur(image: np.ndarray, dpms: np.ndarray) -> np.ndarray:  # rotation-equivariant
    return np.stack([ndimage.gaussian_filter(image, 0.5 + abs(float(d))) for d in dpms])


def test_transforms_are_undone_and_an_equivariant_refocuser_is_unchanged() -> None:
    ea = load_benchmark("eval_averaged")
    rng = np.random.default_rng(0)
    image = rng.random((20, 14), dtype=np.float32)  # not square: a wrong inverse breaks shapes
    dz = np.array([-2.0, 0.0, 3.0], np.float32)
    identity = _Fn(lambda im, d: np.stack([im] * len(d)))
    np.testing.assert_allclose(
        ea.AveragedRefocuser([identity], 8).refocus(image, dz)[1], image, rtol=1e-6
    )
    blur = _Fn(_blur)
    plain = blur.refocus(image, dz)
    np.testing.assert_array_equal(ea.AveragedRefocuser([blur], 1).refocus(image, dz), plain)
    np.testing.assert_allclose(ea.AveragedRefocuser([blur], 8).refocus(image, dz), plain, atol=1e-5)
    # a refocuser that is not equivariant (a shift) is changed: the transforms are applied
    shift = _Fn(lambda im, d: np.stack([np.roll(im, 1, axis=1)] * len(d)))
    assert not np.allclose(
        ea.AveragedRefocuser([shift], 8).refocus(image, dz), shift.refocus(image, dz)
    )
    # DPM maps turn with the image: a refocuser that returns its DPMs gets them back
    maps = rng.random((2, 20, 14), dtype=np.float32)
    echo = _Fn(lambda im, d: d)
    np.testing.assert_allclose(
        ea.AveragedRefocuser([echo], 8).refocus(image, maps), maps, rtol=1e-6
    )


def test_models_are_averaged_and_bad_settings_are_refused() -> None:
    ea = load_benchmark("eval_averaged")
    image = np.ones((8, 8), np.float32)
    one = _Fn(lambda im, d: np.stack([im] * len(d)))
    three = _Fn(lambda im, d: np.stack([3 * im] * len(d)))
    out = ea.AveragedRefocuser([one, three], 2).refocus(image, [0.0])
    np.testing.assert_array_equal(out, 2 * np.ones((1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="dihedral"):
        ea.AveragedRefocuser([one], 9)
    with pytest.raises(ValueError, match="at least one"):
        ea.AveragedRefocuser([], 1)
