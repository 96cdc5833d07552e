"""Model folders: round trip, helpful errors for every bad file, lookup, `live-deepz models`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from live_deepz import cli, modelfile
from live_deepz.errors import ModelFileError
from live_deepz.modelfile import (
    CARD_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    ModelCard,
    load_card,
    load_model,
    resolve_model,
    save_model,
    weights_sha256,
)
from live_deepz.network import DeepZConfig, DeepZGenerator
from live_deepz.optics import Optics

WIDTH = 0.0625


def _card(name: str = "tiny", **kw: Any) -> ModelCard:
    kw.setdefault("training", {"steps": 10, "validation_mae": 0.0123, "command": "pytest"})
    gen = DeepZGenerator(DeepZConfig(width=WIDTH))
    return ModelCard.for_generator(name, gen, Optics(), (-10.0, 10.0), **kw)


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    gen = DeepZGenerator(DeepZConfig(width=WIDTH))
    return save_model(tmp_path / "tiny", gen, _card(description="a test model"))


def _edit_card(folder: Path, **changes: Any) -> None:
    d = json.loads((folder / CARD_FILE).read_text())
    for key, value in changes.items():
        if value is None:
            del d[key]
        else:
            d[key] = value
    (folder / CARD_FILE).write_text(json.dumps(d))


def _error(path: Path) -> str:
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    return str(info.value)


# -- round trip --------------------------------------------------------------------------


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(1)
    gen = DeepZGenerator(DeepZConfig(width=WIDTH)).eval()
    card = _card()
    folder = save_model(tmp_path / "m", gen, card)
    loaded = load_model(folder)
    assert not loaded.generator.training
    assert loaded.card == card
    assert loaded.path == folder
    assert loaded.weights_sha256 == weights_sha256(folder / WEIGHTS_FILE)
    x = torch.randn(1, 2, 37, 53)
    with torch.no_grad():
        assert torch.equal(loaded.generator(x), gen(x))
    # either file of the folder works too
    assert load_model(folder / CARD_FILE).weights_sha256 == loaded.weights_sha256
    assert load_card(folder / WEIGHTS_FILE) == card


def test_card_json_is_sorted_and_round_trips(model_dir: Path) -> None:
    text = (model_dir / CARD_FILE).read_text()
    d = json.loads(text)
    assert list(d) == sorted(d)
    assert d["format_version"] == FORMAT_VERSION
    assert d["architecture"] == {"type": "deepz-unet", "width": WIDTH}
    assert d["dpm_scale_um"] == 10.0
    assert set(d["optics"]) == {"na", "wavelength_um", "pixel_size_um", "immersion_ri", "sample_ri"}
    card = ModelCard.from_dict(d)
    assert card.to_dict() == d
    assert card.optics_obj == Optics()
    assert card.validation_mae == pytest.approx(0.0123)
    assert card.generator_config == DeepZConfig(width=WIDTH)


def test_save_refuses_a_card_for_another_architecture(tmp_path: Path) -> None:
    gen = DeepZGenerator(DeepZConfig(width=0.125))
    with pytest.raises(ValueError, match="does not match"):
        save_model(tmp_path / "x", gen, _card())


# -- bad files ---------------------------------------------------------------------------


def test_missing_folder_and_missing_file(tmp_path: Path, model_dir: Path) -> None:
    msg = _error(tmp_path / "nope")
    assert "does not exist" in msg and "--model" in msg
    (model_dir / CARD_FILE).unlink()
    msg = _error(model_dir)
    assert "has no card.json" in msg and str(model_dir) in msg


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_corrupt_weights(model_dir: Path, how: str) -> None:
    path = model_dir / WEIGHTS_FILE
    data = path.read_bytes()
    bad = {"truncated": data[: len(data) // 2], "garbage": b"\x00\x01" * 1000, "empty": b""}
    path.write_bytes(bad[how])
    msg = _error(model_dir)
    assert "corrupt or truncated" in msg and WEIGHTS_FILE in msg and "copy" in msg


def test_foreign_safetensors_without_our_metadata(model_dir: Path) -> None:
    save_file({"encoder.weight": torch.zeros(3, 3)}, model_dir / WEIGHTS_FILE, {"format": "pt"})
    msg = _error(model_dir)
    assert "not a live-deepz model file" in msg and "'pt'" in msg


def test_foreign_tensor_names_with_our_metadata(model_dir: Path) -> None:
    meta = {"format": "live-deepz", "format_version": "1", "architecture": "{}"}
    save_file({"encoder.weight": torch.zeros(3, 3)}, model_dir / WEIGHTS_FILE, meta)
    msg = _error(model_dir)
    assert "none of its tensors" in msg and "encoder.weight" in msg


def test_missing_tensor(model_dir: Path) -> None:
    from safetensors.torch import load_file, safe_open

    path = model_dir / WEIGHTS_FILE
    with safe_open(path, "pt") as fh:
        meta = fh.metadata()
    tensors = load_file(path)
    del tensors["head.bias"]
    save_file(tensors, path, meta)
    msg = _error(model_dir)
    assert "missing tensors ['head.bias']" in msg


def test_shape_mismatch_names_tensor_and_both_shapes(model_dir: Path) -> None:
    _edit_card(model_dir, architecture={"type": "deepz-unet", "width": 0.125})
    msg = _error(model_dir)
    # first tensor: down.0.conv_a.weight, (4, 2, 3, 3) saved vs (4, 2, 3, 3) needed is equal
    # at these widths, so the first mismatch is conv_b: 4 (=48/16) vs 6 (=48/8) channels
    assert "tensor 'down.0.conv_b.weight' has shape [4, 4, 3, 3]" in msg
    assert "needs [6, 4, 3, 3]" in msg
    assert "do not belong together" in msg


def test_unknown_format_versions(model_dir: Path) -> None:
    _edit_card(model_dir, format_version=FORMAT_VERSION + 1)
    msg = _error(model_dir)
    assert "newer live-deepz" in msg and "Upgrade live-deepz" in msg and CARD_FILE in msg
    _edit_card(model_dir, format_version=0)
    msg = _error(model_dir)
    assert "unknown format_version 0" in msg


def test_bad_json(model_dir: Path) -> None:
    (model_dir / CARD_FILE).write_text('{"name": "tiny",')
    msg = _error(model_dir)
    assert "not valid JSON" in msg and CARD_FILE in msg


@pytest.mark.parametrize("key", ["z_range_um", "optics", "architecture", "name"])
def test_missing_card_key(model_dir: Path, key: str) -> None:
    _edit_card(model_dir, **{key: None})
    msg = _error(model_dir)
    assert f"card key '{key}' is missing" in msg and CARD_FILE in msg


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"architecture": {"type": "resnet", "width": 1.0}}, "'architecture.type'"),
        ({"architecture": {"type": "deepz-unet"}}, "'architecture.width' is missing"),
        ({"z_range_um": [5, -5]}, "'z_range_um' must be [min, max]"),
        ({"z_range_um": "10"}, "'z_range_um' must be a list"),
        ({"dpm_scale_um": "10"}, "'dpm_scale_um' must be a number"),
        ({"modality": {"input": "widefield", "output": "sted"}}, "'modality.output'"),
        ({"optics": {"na": 0.75}}, "'optics.wavelength_um' is missing"),
        ({"optics": {**Optics().to_dict(), "na": 1.2}}, "'optics' is invalid"),
        ({"colour": "red"}, "'colour' is not a known card key"),
    ],
)
def test_bad_card_values(model_dir: Path, changes: dict[str, Any], words: str) -> None:
    _edit_card(model_dir, **changes)
    assert words in _error(model_dir)


# -- lookup --------------------------------------------------------------------------------


@pytest.fixture()
def no_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bundled"
    empty.mkdir()
    monkeypatch.setattr(modelfile, "bundled_models_dir", lambda: empty)
    monkeypatch.delenv(modelfile.MODELS_ENV, raising=False)


def test_no_default_model_yet(no_bundled: None) -> None:
    assert modelfile.bundled_models() == []
    with pytest.raises(ModelFileError, match=r"no default model.*--model"):
        resolve_model(None)


def test_resolve_by_name_and_path(
    no_bundled: None, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(modelfile.MODELS_ENV, str(model_dir.parent))
    assert resolve_model("tiny") == model_dir
    assert resolve_model(str(model_dir / WEIGHTS_FILE)) == model_dir
    with pytest.raises(ModelFileError, match=r"no model named 'other' \(known models: tiny\)"):
        resolve_model("other")
    with pytest.raises(ModelFileError, match="does not exist"):
        resolve_model(str(model_dir.parent / "gone" / WEIGHTS_FILE))


def test_bundled_default_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = DeepZGenerator(DeepZConfig(width=WIDTH))
    name = modelfile.DEFAULT_MODEL_NAME
    folder = save_model(tmp_path / name, gen, _card(name))
    monkeypatch.setattr(modelfile, "bundled_models_dir", lambda: tmp_path)
    assert modelfile.bundled_models() == [folder]
    assert resolve_model(None) == folder


# -- the CLI -------------------------------------------------------------------------------


def test_models_command_lists_models(
    no_bundled: None,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broken = model_dir.parent / "broken"
    broken.mkdir()
    (broken / WEIGHTS_FILE).write_bytes(b"junk")
    (broken / CARD_FILE).write_text("{}")
    monkeypatch.setenv(modelfile.MODELS_ENV, str(model_dir.parent))
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "width 0.0625" in out and "MAE 0.0123" in out
    assert "-10 .. +10 um" in out and "NA 0.75" in out and "widefield -> widefield" in out
    assert "BROKEN" in out and "format_version" in out
    assert cli.main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    tiny = next(r for r in rows if r["name"] == "tiny")
    n_params = sum(p.numel() for p in DeepZGenerator(DeepZConfig(width=WIDTH)).parameters())
    assert tiny["parameters"] == n_params and tiny["validation_mae"] == pytest.approx(0.0123)
    assert tiny["path"] == str(model_dir)


def test_models_command_with_none(no_bundled: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["models"]) == 0
    assert "No models found" in capsys.readouterr().out
