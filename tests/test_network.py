"""Deep-Z generator / discriminator: paper sizes, shapes, init, FLOPs, export paths."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from live_deepz.network import (
    DeepZConfig,
    DeepZGenerator,
    Discriminator,
    DiscriminatorConfig,
    count_parameters,
    generator_flops_per_pixel,
    scale_channels,
)

TINY = DeepZConfig(width=0.125)


@pytest.fixture(scope="module")
def tiny() -> DeepZGenerator:
    torch.manual_seed(0)
    return DeepZGenerator(TINY).eval()


def _meta_generator(width: float) -> DeepZGenerator:
    with torch.device("meta"):  # shapes only, no memory, no init cost
        return DeepZGenerator(DeepZConfig(width=width))


def test_paper_configuration_has_17_45_m_parameters() -> None:
    n = count_parameters(_meta_generator(1.0))
    assert abs(n - 17.45e6) / 17.45e6 < 0.005, n


def test_paper_channel_counts() -> None:
    g = _meta_generator(1.0)
    assert [b.conv_a.out_channels for b in g.down] == [25, 72, 144, 288, 576]
    assert [b.conv_b.out_channels for b in g.down] == [48, 96, 192, 384, 768]
    assert g.down[0].conv_a.in_channels == 2
    assert [u.conv_c.out_channels for u in g.up] == [72, 144, 288, 576]
    assert [u.conv_d.out_channels for u in g.up] == [48, 96, 192, 384]
    assert [(u.up.in_channels, u.up.out_channels) for u in g.up] == [
        (96, 48),
        (192, 96),
        (384, 192),
        (768, 384),
    ]
    assert (g.head.in_channels, g.head.out_channels) == (48, 1)


def test_width_scaling_rounds_half_up_with_a_floor() -> None:
    assert scale_channels(48, 0.5) == 24
    assert scale_channels(25, 0.5) == 13  # 12.5 -> 13
    assert scale_channels(25, 0.01) == 4
    with pytest.raises(ValueError):
        DeepZConfig(width=0)


@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (1, 17)])
def test_output_shape_equals_input_shape(tiny: DeepZGenerator, shape: tuple[int, int]) -> None:
    x = torch.randn(2, 2, *shape)
    with torch.no_grad():
        y = tiny(x)
    assert y.shape == (2, 1, *shape)
    assert torch.isfinite(y).all()


def test_init_bias_0_1_xavier_and_replicate_padding(tiny: DeepZGenerator) -> None:
    layers = [m for m in tiny.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert len(layers) == 2 * 5 + 3 * 4 + 1
    for m in layers:
        assert m.bias is not None
        assert torch.all(m.bias == 0.1)
        fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight[:, 0].numel()
        fan_out = m.weight[:, 0].numel() if isinstance(m, nn.Conv2d) else m.weight[0].numel()
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        assert m.weight.abs().max() <= bound + 1e-6
        if isinstance(m, nn.Conv2d):
            assert m.kernel_size == (3, 3) and m.stride == (1, 1)
            assert m.padding == (1, 1) and m.padding_mode == "replicate"
        else:
            assert m.kernel_size == (2, 2) and m.stride == (2, 2)


def test_down_block_residual_zero_pads_channels(tiny: DeepZGenerator) -> None:
    block = tiny.down[0]
    x = torch.randn(1, 2, 8, 8)
    with torch.no_grad():
        saved = block.conv_b.bias.clone()
        block.conv_b.bias.fill_(-1e6)  # ReLU(conv_b) == 0: only the residual is left
        try:
            y = block(x)
        finally:
            block.conv_b.bias.copy_(saved)
    assert y.shape[1] == block.conv_b.out_channels
    assert torch.equal(y[:, :2], x)
    assert torch.all(y[:, 2:] == 0)


def test_flops_per_pixel_paper_numbers() -> None:
    f = generator_flops_per_pixel(1.0)
    assert f == pytest.approx(0.99e6, rel=0.01)
    assert f * 512 * 512 == pytest.approx(0.26e12, rel=0.01)
    assert f * 2048 * 2048 == pytest.approx(4.2e12, rel=0.01)


@pytest.mark.parametrize("width", [0.0625, 0.125])
@pytest.mark.parametrize("option", [None, "dpm_film", "disk_features"])
def test_flops_analytic_matches_counted(width: float, option: str | None) -> None:
    cfg = DeepZConfig(width=width, **({option: True} if option else {}))
    g = DeepZGenerator(cfg)
    x = torch.randn(1, 2, 32, 48)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        g(x)
    counted = counter.get_total_flops() / (32 * 48)
    assert counted == pytest.approx(generator_flops_per_pixel(config=cfg), rel=1e-9)


def test_channels_last_matches_and_bf16_autocast_runs(tiny: DeepZGenerator) -> None:
    x = torch.randn(1, 2, 37, 53)
    cl = DeepZGenerator(TINY).eval()
    cl.load_state_dict(tiny.state_dict())
    cl = cl.to(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = tiny(x)
        y = cl(x.to(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yb = tiny(x)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)
    assert yb.shape == ref.shape and yb.dtype == torch.bfloat16
    assert (yb.float() - ref).abs().max() < 0.1 * ref.abs().max() + 0.05


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_traced_graph_keeps_padding_dynamic(tiny: DeepZGenerator) -> None:
    """Padding is computed from shapes as graph ops, not baked in for the traced size."""
    with torch.no_grad():
        traced = torch.jit.trace(tiny, torch.randn(1, 2, 37, 53), check_trace=False)
        x = torch.randn(1, 2, 40, 29)
        torch.testing.assert_close(traced(x), tiny(x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_onnx_export_with_dynamic_axes(tiny: DeepZGenerator) -> None:
    onnx = pytest.importorskip("onnx")
    buf = io.BytesIO()
    torch.onnx.export(
        tiny,
        (torch.randn(1, 2, 37, 53),),
        buf,
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "h", 3: "w"}},
    )
    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    ops = {n.op_type for n in model.graph.node}
    assert {"Conv", "ConvTranspose", "MaxPool", "Pad"} <= ops


def test_discriminator_output_in_unit_interval() -> None:
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig(width=0.0625)).eval()
    with torch.no_grad():
        p = d(torch.randn(3, 1, 64, 64))
    assert p.shape == (3, 1)
    assert torch.all((p >= 0) & (p <= 1))
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs] == [(1, 1), (2, 2)] * 6
    assert all(c.padding_mode == "replicate" for c in convs)


def test_discriminator_paper_widths() -> None:
    with torch.device("meta"):
        d = Discriminator(DiscriminatorConfig())
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs[::2]] == [48, 96, 192, 384, 768, 1536]
    assert [c.out_channels for c in convs[1::2]] == [96, 192, 384, 768, 1536, 3072]
    assert d.fc1.weight.shape == (3072, 3072) and d.fc2.weight.shape == (1, 3072)
    assert d.fc1.bias is not None and d.fc1.bias.device.type == "meta"
