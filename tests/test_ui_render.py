"""Display arithmetic (no window): levels, depth-coded MIP, x–z section, grid layout."""

from __future__ import annotations

import numpy as np
import pytest
from _ui_support import SIZE  # noqa: F401  (skips the module without a Qt binding)

from live_deepz.ui._render import (
    auto_levels,
    decimation,
    depth_mip,
    grid_shape,
    line_coords,
    match_offsets,
    xz_section,
)

pytestmark = pytest.mark.qt


def test_auto_levels_percentiles_and_flat_images() -> None:
    img = np.arange(10000, dtype=np.float32).reshape(100, 100)
    lo, hi = auto_levels(img, 1, 99)
    assert lo == pytest.approx(99.99, abs=1) and hi == pytest.approx(9899, abs=2)
    lo, hi = auto_levels(np.full((8, 8), 5.0))
    assert lo < 5.0 < hi
    lo, hi = auto_levels(np.full((8, 8), np.nan))
    assert (lo, hi) == (0.0, 1.0)


def test_depth_mip_colours_by_the_plane_of_the_maximum() -> None:
    planes = np.zeros((3, 2, 2), np.float32)
    planes[0, 0, 0] = 1.0  # brightest in plane 0
    planes[2, 1, 1] = 0.5  # half bright in plane 2
    colors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    rgb = depth_mip(planes, colors, (0.0, 1.0))
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [255, 0, 0]
    assert rgb[1, 1].tolist() == [0, 0, 127]
    assert rgb[0, 1].tolist() == [0, 0, 0]
    with pytest.raises(ValueError):
        depth_mip(planes, colors[:2], (0.0, 1.0))


def test_xz_section_samples_the_line_and_sorts_by_depth() -> None:
    k, h, w = 3, 10, 20
    planes = np.zeros((k, h, w), np.float32)
    for i in range(k):
        planes[i] = i * 100 + np.arange(w)[None, :]
    section, z = xz_section(planes, np.array([2.0, -2.0, 0.0]), (0, 5), (19, 5))
    assert section.shape == (3, 20)
    np.testing.assert_array_equal(z, [-2.0, 0.0, 2.0])
    np.testing.assert_array_equal(section[0], 100 + np.arange(20))  # plane at -2 µm first
    rows, cols = line_coords((-5, -5), (30, 30), (h, w))
    assert rows.max() == h - 1 and cols.max() == w - 1 and rows.min() == 0


def test_match_offsets_grid_shape_decimation() -> None:
    np.testing.assert_array_equal(
        match_offsets(np.array([-2.0, 0.0, 3.7]), np.array([0.0, 3.7, 5.0])), [1, 2, -1]
    )
    assert grid_shape(11, 800, 600) == (3, 4)
    assert grid_shape(1, 100, 100) == (1, 1)
    assert grid_shape(5, 1000, 100) == (1, 5)
    assert decimation(2048, 500) == 4 and decimation(512, 600) == 1 and decimation(512, 0) == 1
