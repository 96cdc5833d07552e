"""Stack-to-stack inference: 3D tiling with overlap, z interpolation, normalisation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from live_deepz.engine._stack3d import infer_stack, tile_starts
from live_deepz.errors import InputError
from live_deepz.stack3d import interpolate_planes, subsample_planes, unit_normalize
from live_deepz.wfcon3d import WFConConfig, WFConGenerator


class _Local(nn.Module):
    """A purely local 3D operation: tiling must reproduce it exactly away from seams."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x + 1.0


def test_tile_starts_cover_the_axis() -> None:
    assert tile_starts(10, 16, 4) == [0]
    s = tile_starts(100, 32, 8)
    assert s[0] == 0 and s[-1] == 68
    assert all(b - a <= 24 for a, b in itertools.pairwise(s))


def test_tiled_equals_whole_for_a_local_model() -> None:
    rng = np.random.default_rng(0)
    s = rng.random((20, 70, 50)).astype(np.float32)
    out = infer_stack(_Local(), s, tile=(8, 32, 32), overlap=(2, 8, 8))
    np.testing.assert_allclose(out, 2 * s + 1, rtol=1e-5)


def test_tiled_generator_close_to_whole() -> None:
    torch.manual_seed(0)
    g = WFConGenerator(WFConConfig(width=0.0625)).eval()
    s = np.random.default_rng(1).random((8, 64, 64)).astype(np.float32)
    whole = infer_stack(g, s, tile=(8, 64, 64))
    tiled = infer_stack(g, s, tile=(8, 48, 48), overlap=(0, 16, 16))
    assert whole.shape == tiled.shape == s.shape
    # a U-Net's receptive field crosses tiles: close, not identical
    assert np.abs(whole - tiled).mean() < 0.2 * np.abs(whole).mean()


def test_interpolate_planes() -> None:
    full = np.linspace(0, 1, 9, dtype=np.float32)[:, None, None] * np.ones((1, 4, 4))
    sub = subsample_planes(full, 4)
    assert len(sub) == 3
    back = interpolate_planes(sub, 4)
    np.testing.assert_allclose(back, full, atol=1e-6)  # linear in z: exact
    assert interpolate_planes(sub, 4, n_planes=11).shape[0] == 11
    with pytest.raises(InputError):
        interpolate_planes(sub, 0)


def test_unit_normalize() -> None:
    s = np.random.default_rng(2).random((4, 16, 16)) * 1000 + 100
    n = unit_normalize(s)
    assert n.dtype == np.float32
    assert abs(np.percentile(n, 0.1)) < 1e-5 and abs(np.percentile(n, 99.9) - 1) < 1e-5
    with pytest.raises(InputError, match="constant"):
        unit_normalize(np.ones((3, 8, 8)))


def _tiny_model(folder) -> None:
    from live_deepz.modelfile import ModelCard, save_model
    from live_deepz.sim.thick import THICK_OPTICS

    torch.manual_seed(0)
    g = WFConGenerator(WFConConfig(width=0.0625))
    card = ModelCard.for_generator(
        "wf-tiny",
        g,
        THICK_OPTICS,
        (0.0, 4.0),
        modality={"input": "widefield", "output": "confocal"},
        extra={"z_step_um": 0.5},
    )
    save_model(folder, g, card)


def test_cli_refocus_stack(tmp_path) -> None:
    import tifffile

    from live_deepz.cli import main
    from live_deepz.io import read_stack

    _tiny_model(tmp_path / "wf-tiny")
    stack = np.random.default_rng(3).integers(100, 1000, (6, 40, 40)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "wf.tif", stack)
    out = tmp_path / "out.ome.tif"
    args = ["refocus", "--stack", str(tmp_path / "wf.tif"), "--model", str(tmp_path / "wf-tiny")]
    assert main([*args, "-o", str(out), "--no-progress"]) == 0
    assert read_stack(out).data.shape == (6, 40, 40)
    out2 = tmp_path / "out2.ome.tif"
    assert main([*args, "-o", str(out2), "--z-subsample", "2", "--no-progress"]) == 0
    assert read_stack(out2).data.shape == (11, 40, 40)
    # an existing output is not replaced; a 2D model is refused for --stack
    assert main([*args, "-o", str(out), "--no-progress"]) == 1
    bad = ["refocus", "--stack", str(tmp_path / "wf.tif"), "-o", str(tmp_path / "x.tif")]
    assert main(bad) == 1
    assert not (tmp_path / "x.tif").exists()


def test_deepz_model_still_loads_and_refocuses_identically() -> None:
    from safetensors.torch import load_file

    from live_deepz.modelfile import default_model_path, load_model
    from live_deepz.network import DeepZGenerator

    m = load_model(default_model_path())
    assert type(m.generator).__name__ == "DeepZGenerator"
    ref = DeepZGenerator(m.card.generator_config).eval()
    ref.load_state_dict(load_file(str(m.path / "model.safetensors")))
    x = torch.rand(1, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(m.generator(x), ref(x))
