"""The model-family registry: lookups, errors naming the known types, a second family."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from live_deepz import architectures
from live_deepz.architectures import (
    DEEPZ_UNET,
    architecture_of,
    architecture_types,
    build_network,
    get_architecture,
    register_architecture,
)
from live_deepz.errors import ModelFileError
from live_deepz.modelfile import (
    WEIGHTS_FILE,
    ModelCard,
    default_model_path,
    load_model,
    save_model,
)
from live_deepz.network import DeepZConfig, DeepZGenerator
from live_deepz.optics import Optics


class _TinyStack(nn.Module):
    """A stand-in second family: one 3-D conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv3d(1, channels, 3, padding=1)


@pytest.fixture()
def tiny3d(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(architectures, "_REGISTRY", dict(architectures._REGISTRY))

    def validate(arch: dict[str, Any]) -> tuple[str, str] | None:
        return None if isinstance(arch.get("channels"), int) else ("channels", "is missing")

    def describe(m: nn.Module) -> dict[str, Any] | None:
        return {"type": "tiny3d", "channels": m.channels} if isinstance(m, _TinyStack) else None

    register_architecture(
        "tiny3d",
        lambda arch: _TinyStack(int(arch["channels"])),
        dims=3,
        description="test family",
        validate=validate,
        describe=describe,
    )
    return "tiny3d"


def test_deepz_is_registered_and_builds_the_paper_network() -> None:
    assert DEEPZ_UNET in architecture_types()
    family = get_architecture(DEEPZ_UNET)
    assert family.dims == 2
    net = build_network({"type": DEEPZ_UNET, "width": 0.125})
    assert isinstance(net, DeepZGenerator) and net.config == DeepZConfig(width=0.125)
    assert architecture_of(net) == {"type": DEEPZ_UNET, "width": 0.125}


def test_unknown_type_names_the_known_types() -> None:
    with pytest.raises(ModelFileError, match=r"'resnet'.*'deepz-unet'"):
        get_architecture("resnet")
    with pytest.raises(TypeError, match="Linear"):
        architecture_of(nn.Linear(2, 2))


def test_card_with_unknown_type_lists_the_known_types() -> None:
    with pytest.raises(ModelFileError, match=r"card key 'architecture\.type'.*'deepz-unet'"):
        ModelCard("x", {"type": "resnet", "width": 1.0}, Optics().to_dict(), (-5, 5))


def test_bundled_model_output_unchanged_by_the_registry() -> None:
    """The registry builds the same network: outputs equal a hand-built DeepZGenerator's."""
    folder = default_model_path()
    loaded = load_model(folder)
    ref = DeepZGenerator(loaded.card.generator_config).eval()
    ref.load_state_dict(load_file(folder / WEIGHTS_FILE))
    x = torch.randn(1, 2, 48, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.generator(x), ref(x))


def test_a_second_family_saves_and_loads(tmp_path: Path, tiny3d: str) -> None:
    torch.manual_seed(0)
    net = _TinyStack(3)
    card = ModelCard.for_generator("t3", net, Optics(), (-4.0, 4.0))
    assert card.architecture == {"type": tiny3d, "channels": 3}
    save_model(tmp_path / "t3", net, card)
    loaded = load_model(tmp_path / "t3")
    assert isinstance(loaded.generator, _TinyStack)
    assert torch.equal(loaded.generator.conv.weight, net.conv.weight)
    with pytest.raises(ModelFileError, match=r"'architecture\.channels' is missing"):
        ModelCard("t3", {"type": tiny3d}, Optics().to_dict(), (-4, 4))
    with pytest.raises(ValueError, match="does not match"):
        save_model(tmp_path / "t4", _TinyStack(2), card)
