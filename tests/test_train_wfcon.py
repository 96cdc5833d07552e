"""A tiny WFCON-Net training run: a loadable 3D model, resume, the perceptual-loss hook."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from live_deepz.cli import main
from live_deepz.errors import InputError
from live_deepz.modelfile import load_model
from live_deepz.training.wfcon import (
    StackPair,
    VGGFeatures,
    WFConTrainConfig,
    load_vgg,
    train_wfcon,
)


def _pairs(n: int = 2) -> list[StackPair]:
    from scipy.ndimage import gaussian_filter

    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        conf = gaussian_filter((rng.random((10, 40, 40)) > 0.97).astype(np.float32), 1.0)
        conf /= conf.max()
        wf = gaussian_filter(conf, (2.0, 2.5, 2.5)) * 0.8 + 0.2
        out.append(StackPair(f"p{i}", wf.astype(np.float32), conf, (0.0, 0.0, 0.0), "none"))
    return out


CFG = WFConTrainConfig(
    width=0.0625,
    patch=(4, 32, 32),
    batch=1,
    pretrain_steps=4,
    gan_steps=2,
    val_every=3,
    d_width=0.03125,
    val_patches=2,
)


@pytest.mark.slow
def test_tiny_training_gives_a_loadable_model_and_resumes(tmp_path) -> None:
    out = tmp_path / "wf-tiny"
    res = train_wfcon(_pairs(), out, CFG, progress=False)
    assert res["steps"] == 6
    m = load_model(out)
    assert m.card.architecture["type"] == "wfcon3d"
    assert m.card.modality == {"input": "widefield", "output": "confocal"}
    assert "no --vgg-weights" in m.card.training["perceptual_loss"]
    x = torch.rand(1, 1, 4, 32, 32)
    with torch.no_grad():
        assert m.generator(x).shape == x.shape
    hist = json.loads((out / "training_history.json").read_text())
    assert any("loss_d" in h for h in hist)  # the GAN phase ran
    assert (out / "training_curve.png").exists()
    # a second run into the same folder refuses without --resume; with it, it continues
    with pytest.raises(InputError, match="resume"):
        train_wfcon(_pairs(), out, CFG, progress=False)
    more = WFConTrainConfig(**{**CFG.__dict__, "gan_steps": 4})
    res2 = train_wfcon(_pairs(), out, more, resume=True, progress=False)
    assert res2["steps"] == 8


def test_lr_schedule_warms_up_then_decays() -> None:
    cfg = WFConTrainConfig(pretrain_steps=100)
    f = [cfg.lr_factor(k) for k in range(100)]
    assert f[0] < f[4] <= 1.0 and f[-1] < 0.1
    assert max(f) == pytest.approx(1.0)


def test_vgg_weights_from_safetensors(tmp_path) -> None:
    from safetensors.torch import save_file

    # the first two VGG-19 convs (torchvision names), random weights
    t = {
        "features.0.weight": torch.randn(64, 3, 3, 3),
        "features.0.bias": torch.zeros(64),
        "features.2.weight": torch.randn(64, 64, 3, 3),
        "features.2.bias": torch.zeros(64),
    }
    save_file(t, str(tmp_path / "vgg.safetensors"))
    v = load_vgg(tmp_path / "vgg.safetensors")
    assert isinstance(v, VGGFeatures)
    assert v(torch.rand(2, 1, 3, 16, 16)).shape == (6, 64, 16, 16)
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(InputError, match="safetensors"):
        load_vgg(tmp_path / "bad.safetensors")


def test_cli_needs_labels(tmp_path) -> None:
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((4, 8, 8), np.uint16))
    rc = main(
        ["train", "--arch", "wfcon3d", "--data", str(tmp_path / "a.tif"), "-o", str(tmp_path / "m")]
    )
    assert rc == 1


@pytest.mark.slow
def test_gan_step_with_perceptual_term() -> None:
    from live_deepz.training.wfcon import _gan_step
    from live_deepz.wfcon3d import (
        WFConConfig,
        WFConDiscriminator,
        WFConDiscriminatorConfig,
        WFConGenerator,
    )

    torch.manual_seed(0)
    g = WFConGenerator(WFConConfig(width=0.0625))
    d = WFConDiscriminator(WFConDiscriminatorConfig(width=0.03125))
    vgg = VGGFeatures(
        {"features.0.weight": torch.randn(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}
    )
    opt_g = torch.optim.Adam(g.parameters(), 1e-3)
    opt_d = torch.optim.Adam(d.parameters(), 1e-4)
    x, y = torch.rand(1, 1, 4, 32, 32), torch.rand(1, 1, 4, 32, 32)
    before = [p.clone() for p in g.parameters()]
    rec = _gan_step(g, d, opt_g, opt_d, x, y, CFG, vgg, __import__("contextlib").nullcontext)
    assert {"loss_d", "loss_g_adv", "train_mae", "loss_vgg"} <= set(rec)
    assert all(np.isfinite(v) for v in rec.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, g.parameters(), strict=True))
