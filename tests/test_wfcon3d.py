"""WFCON-Net 3D generator and discriminator: shapes, parameter counts, architecture dicts."""

from __future__ import annotations

import pytest
import torch

from live_deepz.wfcon3d import (
    WFConConfig,
    WFConDiscriminator,
    WFConDiscriminatorConfig,
    WFConGenerator,
    _validate,
    count_parameters,
)


def _block(a: int, b: int) -> int:
    proj = a * b + b if a != b else 0
    return 27 * a * b + b + 2 * b + 27 * b * b + b + 2 * b + proj


def _expected_generator(width: float) -> int:
    c = WFConConfig(width=width).channels
    n = _block(1, c[0])
    for k in range(1, 5):
        n += _block(c[k - 1], c[k])  # encoder
        n += 27 * c[k] * c[k - 1] + c[k - 1] + _block(2 * c[k - 1], c[k - 1])  # decoder
    return n + c[0] + 1


@pytest.mark.parametrize("width", [1.0, 0.25, 0.125])
def test_generator_parameter_count(width: float) -> None:
    with torch.device("meta"):
        g = WFConGenerator(WFConConfig(width=width))
    assert count_parameters(g) == _expected_generator(width)


def test_paper_size_counts() -> None:
    with torch.device("meta"):
        g = WFConGenerator(WFConConfig(width=1.0))
        d = WFConDiscriminator(WFConDiscriminatorConfig(width=1.0))
    assert WFConConfig().channels == (32, 64, 128, 256, 512)
    assert count_parameters(g) == 26_238_401
    # 3D version of Deep-Z's discriminator: 27-tap kernels, Deep-Z's channel counts
    assert count_parameters(d) == 264_133_249


@pytest.mark.parametrize("shape", [(12, 64, 64), (7, 50, 45), (4, 16, 16)])
def test_generator_keeps_the_stack_shape(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    g = WFConGenerator(WFConConfig(width=0.125)).eval()
    x = torch.rand(2, 1, *shape)
    with torch.no_grad():
        y = g(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_z_pools_change_the_pooling() -> None:
    cfg = WFConConfig(width=0.125, z_pools=1)
    assert [cfg.pool(k) for k in range(1, 5)] == [(2, 2, 2), (1, 2, 2), (1, 2, 2), (1, 2, 2)]
    assert cfg.z_multiple == 2


def test_discriminator_output() -> None:
    d = WFConDiscriminator(WFConDiscriminatorConfig(width=0.0625))
    p = d(torch.rand(3, 1, 8, 32, 32))
    assert p.shape == (3, 1)
    assert ((p > 0) & (p < 1)).all()


def test_architecture_dict_round_trip_and_validation() -> None:
    cfg = WFConConfig(width=0.25, z_pools=1, global_residual=False)
    assert WFConConfig.from_arch(cfg.to_arch()) == cfg
    assert _validate(cfg.to_arch()) is None
    assert _validate({"type": "wfcon3d"}) == ("width", "is missing")
    assert _validate({"type": "wfcon3d", "width": -1})[0] == "width"
    assert _validate({"type": "wfcon3d", "width": 1, "z_pools": 7})[0] == "z_pools"
