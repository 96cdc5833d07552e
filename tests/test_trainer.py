"""The LS-GAN trainer on tiny data: model file, learning, determinism, resume, errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from _training_data import (
    one_torch_thread,  # noqa: F401 (autouse fixture)
    synth_stack,
)

from live_deepz.errors import InputError
from live_deepz.modelfile import load_model
from live_deepz.training.pairs import PAIR_DTYPE, FieldStack, PairConfig, PairData, build_pairs
from live_deepz.training.trainer import (
    CURVE_FILE,
    TrainConfig,
    Trainer,
    dz_weighted_mean,
    gaussian_smoother,
    load_checkpoint_tensors,
    patch_correlation,
    reconstruction_loss,
    train,
    update_schedule,
    weighted_mae,
)

TINY = TrainConfig(width=0.0625, batch_size=4, val_every=2, max_val_pairs=16, progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> PairData:
    stacks = [
        FieldStack(synth_stack(size=64, seed=20 + i, n_beads=20), 0.5, 0.325, name=f"s{i}.tif")
        for i in range(2)
    ]
    cfg = PairConfig(patch=32, z_half_range_um=2.0)
    return build_pairs(stacks, cfg, tmp_path_factory.mktemp("cache"))


def _g_tensors(folder) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint_tensors(folder / "checkpoint")
    return {k: v for k, v in tensors.items() if not k.startswith("D/")}


def test_update_schedule_interleaves_six_g_and_three_d() -> None:
    assert "".join(update_schedule(6, 3)) == "DGGDGGDGG"
    assert "".join(update_schedule(1, 0)) == "G"


def test_tiny_training_writes_a_loadable_model_with_a_full_card(data, tmp_path) -> None:
    out = tmp_path / "mine"
    cfg = dataclasses.replace(TINY, pretrain_steps=2, steps=1)
    res = train(data, cfg, out, command="live-deepz train --data s0.tif s1.tif")
    model = load_model(out)
    card = model.card
    assert card.name == "mine" and card.architecture == {"type": "deepz-unet", "width": 0.0625}
    assert card.z_range_um == (-4.0, 4.0) == tuple(data.summary.dpm_range_um)
    assert card.modality == {"input": "widefield", "output": "widefield"}
    assert card.optics["pixel_size_um"] == 0.325
    tr = card.training
    assert tr["steps"] == 3 and tr["pretrain_steps"] == 2 and tr["gan_iterations"] == 1
    assert tr["validation_mae"] == pytest.approx(res.best_val_mae)
    assert tr["validation_mae"] <= tr["initial_validation_mae"]
    assert tr["command"] == "live-deepz train --data s0.tif s1.tif"
    assert tr["data"]["pairs"]["train"] == len(data.pairs["train"]) and tr["wall_time_s"] >= 0
    assert tr["data"]["sources"] == ["s0.tif", "s1.tif"]
    assert (out / CURVE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    hist = json.loads((out / "training_history.json").read_text())
    assert [h["step"] for h in hist] == [0, 2, 3]
    assert "loss_d" in hist[-1] and "loss_g_adv" in hist[-1]
    # the kept generator is the one with the lowest validation MAE
    trainer = Trainer(cfg, data, tmp_path / "unused")
    assert trainer.validate(model.generator) == pytest.approx(res.best_val_mae, rel=1e-5)


def test_l1_pretraining_learns_the_identity_at_dpm_zero(data, tmp_path) -> None:
    # a trivially learnable task: every target is the input plane itself (DPM 0)
    same = {}
    for split in ("train", "val"):
        p = np.array(data.pairs[split], dtype=PAIR_DTYPE)
        p["ztg"], p["dpm_um"] = p["zin"], 0.0
        same[split] = p
    ident = PairData(
        data.fields, data.regions, np.concatenate(list(same.values())), data.cfg, data.summary
    )
    cfg = dataclasses.replace(TINY, pretrain_steps=30, lr_g=1e-3, val_every=10)
    res = train(ident, cfg, tmp_path / "ident")
    assert res.best_val_mae < 0.5 * res.initial_val_mae
    maes = [h["val_mae"] for h in res.history]
    assert maes[-1] < maes[0]


def test_same_seed_gives_identical_weights(data, tmp_path) -> None:
    cfg = dataclasses.replace(TINY, pretrain_steps=2, steps=1)
    train(data, cfg, tmp_path / "a")
    train(data, cfg, tmp_path / "b")
    a, b = _g_tensors(tmp_path / "a"), _g_tensors(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = dataclasses.replace(cfg, seed=1, steps=0)
    train(data, other, tmp_path / "c")
    c = _g_tensors(tmp_path / "c")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_continues_exactly_like_an_uninterrupted_run(data, tmp_path) -> None:
    full = dataclasses.replace(TINY, pretrain_steps=1, steps=2, val_every=1)
    ref = train(data, full, tmp_path / "ref")
    part = dataclasses.replace(full, steps=1)
    train(data, part, tmp_path / "cont")
    res = train(data, full, tmp_path / "cont", resume=True)
    a, b = _g_tensors(tmp_path / "ref"), _g_tensors(tmp_path / "cont")
    assert all(torch.equal(a[k], b[k]) for k in a)  # G and both Adam states
    assert res.steps == ref.steps == 3 and res.best_val_mae == ref.best_val_mae
    strip = [{k: v for k, v in h.items() if k != "wall_s"} for h in res.history]
    assert strip == [{k: v for k, v in h.items() if k != "wall_s"} for h in ref.history]
    assert load_model(tmp_path / "cont").card.training["steps"] == 3


def test_resume_refuses_another_config_or_a_missing_checkpoint(data, tmp_path) -> None:
    cfg = dataclasses.replace(TINY, pretrain_steps=1)
    train(data, cfg, tmp_path / "m")
    with pytest.raises(InputError, match="width"):
        train(data, dataclasses.replace(cfg, width=0.125), tmp_path / "m", resume=True)
    with pytest.raises(InputError, match="no training checkpoint"):
        train(data, cfg, tmp_path / "empty", resume=True)


def test_cpu_bf16_autocast_trains(data, tmp_path) -> None:
    cfg = dataclasses.replace(TINY, pretrain_steps=1, steps=1, amp="on")
    res = train(data, cfg, tmp_path / "bf16")
    assert np.isfinite(res.best_val_mae)
    assert load_model(tmp_path / "bf16").card.training["amp"] == "bfloat16"


def test_foreground_weighting_makes_bright_target_pixels_count() -> None:
    target = torch.tensor([0.0, 0.0, 0.0, 2.0])
    err = torch.tensor([1.0, 1.0, 1.0, 1.0])
    assert float(weighted_mae(err, target, 10.0)) == pytest.approx(1.0)  # uniform error
    only_bead = torch.tensor([0.0, 0.0, 0.0, 1.0])
    # plain mean 0.25; weights 1, 1, 1, 21: the bead pixel's error carries 21/24
    assert float(weighted_mae(only_bead, target, 10.0)) == pytest.approx(21 / 24)
    assert float(weighted_mae(only_bead, target, 0.0)) == pytest.approx(0.25)
    negative = torch.tensor([-5.0, 0.0, 0.0, 0.0])  # below-background noise gets weight 1
    assert float(weighted_mae(err, negative, 10.0)) == pytest.approx(1.0)


def test_foreground_weighted_training_is_recorded_and_resume_checks_it(data, tmp_path) -> None:
    cfg = dataclasses.replace(TINY, pretrain_steps=2, fg_weight=10.0)
    res = train(data, cfg, tmp_path / "fg")
    assert np.isfinite(res.best_val_mae)
    assert load_model(tmp_path / "fg").card.training["fg_weight"] == 10.0
    with pytest.raises(InputError, match="fg_weight"):
        train(data, dataclasses.replace(cfg, fg_weight=0.0), tmp_path / "fg", resume=True)


def test_bad_training_configs_raise_input_errors(data, tmp_path) -> None:
    with pytest.raises(InputError, match="--fg-weight"):
        TrainConfig(fg_weight=-1.0)
    with pytest.raises(InputError, match="--batch"):
        TrainConfig(batch_size=0)
    with pytest.raises(InputError, match="--amp"):
        TrainConfig(amp="fp8")
    with pytest.raises(InputError, match="fp16 needs CUDA"):
        Trainer(dataclasses.replace(TINY, amp="fp16", device="cpu"), data, tmp_path)


# ---------------------------------------------------------------------------------------
# live-deepz train


def _write(path, stack) -> str:
    import tifffile

    tifffile.imwrite(path, stack)
    return str(path)


def _cli(tmp_path, *extra: str) -> list[str]:
    return [
        "train",
        "--z-step", "0.5",
        "--z-half-range", "2",
        "--patch", "32",
        "--width", "0.0625",
        "--batch", "4",
        "--val-every", "2",
        "--max-val-pairs", "8",
        "--cache", str(tmp_path / "cache"),
        "--quiet",
        *extra,
    ]  # fmt: skip


def _paper(tmp_path, *extra: str) -> list[str]:
    return _cli(tmp_path, "--recipe", "paper", *extra)


def test_cli_trains_resumes_and_refuses_to_overwrite(tmp_path, capsys) -> None:
    pytest.importorskip("live_deepz.io")
    from live_deepz.cli import main

    data = [_write(tmp_path / f"fov{i}.tif", synth_stack(seed=40 + i)) for i in range(2)]
    out = str(tmp_path / "models" / "mine")
    args = _paper(tmp_path, "--data", *data, "-o", out, "--steps", "2")  # 2 L1-only steps
    assert main(args) == 0
    card = load_model(out).card
    assert card.training["steps"] == 2 and card.z_range_um == (-4.0, 4.0)
    assert card.training["pretrain_steps"] == 2 and card.training["recipe"] == "paper"
    assert "model:" in capsys.readouterr().out
    assert main(args) == 1
    assert "--resume" in capsys.readouterr().err
    # --steps is the total: 2 L1 steps (done) + one GAN iteration more
    assert main([*args, "--steps", "3", "--pretrain-steps", "2", "--resume"]) == 0
    card = load_model(out).card
    assert card.training["steps"] == 3 and card.training["gan_iterations"] == 1


def test_cli_deepz_plus_with_labels_makes_a_confocal_model(tmp_path) -> None:
    pytest.importorskip("live_deepz.io")
    from _training_data import modality_pair

    from live_deepz.cli import main

    wf, conf = zip(*(modality_pair(s, (2.0, 1.0)) for s in (1, 2)), strict=True)
    data = [_write(tmp_path / f"wf{i}.tif", s) for i, s in enumerate(wf)]
    labels = [_write(tmp_path / f"conf{i}.tif", s) for i, s in enumerate(conf)]
    out = tmp_path / "plus"
    args = ["--data", *data, "--labels", *labels, "-o", str(out), "--steps", "1"]
    assert main(_cli(tmp_path, *args, "--z-half-range", "1.5")) == 0
    card = load_model(out).card
    assert card.modality == {"input": "widefield", "output": "confocal"}
    assert card.training["data"]["targets_per_input"] == 4


def test_cli_reports_bad_inputs(tmp_path, capsys) -> None:
    pytest.importorskip("live_deepz.io")
    from live_deepz.cli import main

    good = [_write(tmp_path / f"g{i}.tif", synth_stack(seed=50 + i)) for i in range(2)]
    junk = tmp_path / "junk.tif"
    junk.write_text("not a tiff")
    rng = np.random.default_rng(0)
    noise = _write(tmp_path / "noise.tif", rng.poisson(100, (9, 64, 64)).astype(np.uint16))
    cases = {
        "no such file": ["--data", str(tmp_path / "missing.tif")],
        "junk.tif": ["--data", str(junk)],
        "one label stack per input": ["--data", *good, "--labels", good[0]],
        "too few": ["--data", *good, "--z-half-range", "10"],
        "no foreground": ["--data", noise, noise],
    }
    for message, extra in cases.items():
        out = tmp_path / "out"
        assert main(_paper(tmp_path, *extra, "-o", str(out), "--steps", "1")) == 1
        err = capsys.readouterr().err
        assert message in err, (message, err)


def test_weight_average_is_what_gets_saved_and_resumes_exactly(data, tmp_path) -> None:
    raw = dataclasses.replace(TINY, select_on="last", val_every=1)
    train(data, dataclasses.replace(raw, pretrain_steps=1), tmp_path / "w1")
    train(data, dataclasses.replace(raw, pretrain_steps=2), tmp_path / "w2")
    w1, w2 = _g_tensors(tmp_path / "w1"), _g_tensors(tmp_path / "w2")
    ema = dataclasses.replace(raw, pretrain_steps=2, ema_decay=0.5)
    train(data, ema, tmp_path / "ema")
    tensors, _ = load_checkpoint_tensors(tmp_path / "ema" / "checkpoint")
    saved = load_model(tmp_path / "ema")
    assert saved.card.training["ema_decay"] == 0.5
    for name, value in saved.generator.state_dict().items():
        g = f"G/{name}"
        assert torch.equal(tensors[g], w2[g])  # the raw weights train as without the average
        if value.is_floating_point():  # after two updates: the mean of the two weights
            assert torch.allclose(value, 0.5 * (w1[g] + w2[g]), atol=1e-6)
            assert torch.equal(tensors[f"E/module.{name}"], value)
    # resuming restores the average too: the same result as one uninterrupted run
    train(data, dataclasses.replace(ema, pretrain_steps=1), tmp_path / "cont")
    train(data, ema, tmp_path / "cont", resume=True)
    a, b = _g_tensors(tmp_path / "ema"), _g_tensors(tmp_path / "cont")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(InputError, match="ema_decay"):
        train(data, dataclasses.replace(ema, ema_decay=0.9), tmp_path / "cont", resume=True)
    with pytest.raises(InputError, match="--ema"):
        dataclasses.replace(ema, ema_decay=1.0)


def test_patch_correlation_is_pearson_per_item_with_a_bounded_flat_output_gradient() -> None:
    rng = np.random.default_rng(0)
    t = torch.tensor(rng.normal(size=(3, 1, 16, 16)), dtype=torch.float32)
    noise = torch.tensor(rng.normal(size=(3, 1, 16, 16)), dtype=torch.float32)
    p = t + noise
    r = patch_correlation(p, t, floor_var=0.0)
    for i in range(3):
        expect = np.corrcoef(p[i].flatten().numpy(), t[i].flatten().numpy())[0, 1]
        assert float(r[i]) == pytest.approx(expect, abs=1e-5)
    assert float(patch_correlation(2.0 * t + 5.0, t, floor_var=0.0)[0]) == pytest.approx(1.0)
    assert float(patch_correlation(t, torch.zeros_like(t))[0]) == 0.0  # flat target
    flat = torch.full((1, 1, 16, 16), 0.3, requires_grad=True)  # a flat output (background)
    (1 - patch_correlation(flat, t[:1])).sum().backward()
    assert flat.grad is not None and torch.isfinite(flat.grad).all()
    assert float(flat.grad.abs().max()) < 10.0


def test_correlation_loss_changes_training_and_is_recorded(data, tmp_path) -> None:
    base = dataclasses.replace(TINY, pretrain_steps=2, loss="mse", select_on="last")
    train(data, base, tmp_path / "mse")
    cfg = dataclasses.replace(base, pcc_weight=0.5)
    train(data, cfg, tmp_path / "pcc")
    saved = load_model(tmp_path / "pcc")
    assert saved.card.training["pcc_weight"] == 0.5
    history = json.loads((tmp_path / "pcc" / "training_history.json").read_text())
    assert any("train_pcc" in h for h in history)
    a, b = _g_tensors(tmp_path / "mse"), _g_tensors(tmp_path / "pcc")
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the term reaches the weights
    with pytest.raises(InputError, match="pcc_weight"):
        train(data, dataclasses.replace(cfg, pcc_weight=0.0), tmp_path / "pcc", resume=True)
    with pytest.raises(InputError, match="--pcc-weight"):
        TrainConfig(pcc_weight=-0.1)


def test_absolute_error_term_drops_a_minority_spot_that_mse_hedges() -> None:
    # One pixel of 20 targets: 1 in 20 is a focused spot (1.0), the rest background (0.0),
    # with camera-like noise. The MSE's best constant output is the mean (a 5 % hedge); with
    # the absolute-error term it moves towards the median, the background.
    gen = torch.Generator().manual_seed(0)
    z = 0.05 * torch.randn(20, 1, 4, 4, generator=gen)
    z[0] += 1.0
    x = torch.zeros(20, 2, 4, 4)

    def fit(cfg: TrainConfig) -> float:
        y = torch.zeros(1, 1, 4, 4, requires_grad=True)
        opt = torch.optim.SGD([y], lr=0.2)
        for _ in range(400):
            loss, _ = reconstruction_loss(y.expand_as(z), z, x, cfg, 10.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(y.detach().mean())

    mse = TrainConfig(loss="mse")
    hedge = fit(mse)
    assert hedge == pytest.approx(float(z.mean()), abs=5e-3)
    assert abs(fit(dataclasses.replace(mse, l1_weight=1.0))) < 0.4 * hedge
    logs = reconstruction_loss(z, z, x, dataclasses.replace(mse, l1_weight=1.0), 10.0)[1]
    assert logs == {"train_mae": 0.0, "train_mse": 0.0}


def test_lowpass_term_weighs_smooth_errors_not_pixel_noise() -> None:
    # The smoothed-error term adds little for pixel noise (white noise loses most of its
    # variance in a σ = 3 px blur) and about W times the MSE for a wide, smooth error.
    x = torch.zeros(4, 2, 64, 64)
    z = torch.zeros(4, 1, 64, 64)
    noise = 0.1 * torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    ring = 0.1 * torch.exp(-((((yy - 32) ** 2 + (xx - 32) ** 2).sqrt() - 15) ** 2) / 50)
    plain, lowpass = TrainConfig(loss="mse"), TrainConfig(loss="mse", lowpass_weight=10.0)

    def ratio(err: torch.Tensor) -> float:
        with_term, logs = reconstruction_loss(err, z, x, lowpass, 10.0)
        assert "train_lowpass_mse" in logs
        return float(with_term) / float(reconstruction_loss(err, z, x, plain, 10.0)[0])

    assert ratio(noise) < 1.2
    assert ratio(ring.expand(4, 1, 64, 64)) > 8.0


def test_item_weights_scale_each_items_share_of_every_loss_term() -> None:
    gen = torch.Generator().manual_seed(2)
    fake, z = torch.rand(3, 1, 32, 32, generator=gen), torch.rand(3, 1, 32, 32, generator=gen)
    x = torch.zeros(3, 2, 32, 32)
    w = torch.tensor([0.5, 2.0, 0.0])
    for cfg in (
        TrainConfig(loss="mse", l1_weight=0.3, lowpass_weight=2.0),
        TrainConfig(loss="l1", pcc_weight=0.5),
    ):
        whole = reconstruction_loss(fake, z, x, cfg, 10.0, weights=torch.ones(3))[0]
        assert float(whole) == pytest.approx(float(reconstruction_loss(fake, z, x, cfg, 10.0)[0]))
        each = [
            float(reconstruction_loss(fake[i : i + 1], z[i : i + 1], x[:1], cfg, 10.0)[0])
            for i in range(3)
        ]
        weighted = float(reconstruction_loss(fake, z, x, cfg, 10.0, weights=w)[0])
        assert weighted == pytest.approx(float(np.dot(w.numpy(), each)) / 3, rel=1e-5)


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [("l1_weight", 0.5, "--l1-weight"), ("lowpass_weight", 5.0, "--lowpass-weight")],
)
def test_loss_terms_are_recorded_and_resume_keys(data, tmp_path, field, value, flag) -> None:
    base = dataclasses.replace(TINY, pretrain_steps=2, loss="mse", select_on="last")
    train(data, base, tmp_path / "mse")
    cfg = dataclasses.replace(base, **{field: value})
    train(data, cfg, tmp_path / "term")
    assert load_model(tmp_path / "term").card.training[field] == value
    a, b = _g_tensors(tmp_path / "mse"), _g_tensors(tmp_path / "term")
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the term reaches the weights
    with pytest.raises(InputError, match=field):
        train(data, dataclasses.replace(cfg, **{field: 0.0}), tmp_path / "term", resume=True)
    with pytest.raises(InputError, match=flag):
        TrainConfig(loss="mse", **{field: -0.1})
    with pytest.raises(InputError, match="--loss mse only"):
        TrainConfig(loss="l1", **{field: value})
    with pytest.raises(InputError, match="--lowpass-sigma"):
        TrainConfig(loss="mse", lowpass_weight=1.0, lowpass_sigma_px=0.0)


def test_dz_weighting_counts_far_refocus_pixels_more_and_is_recorded(data, tmp_path) -> None:
    err = torch.ones(2, 1, 4, 4)
    err[1] = 3.0
    x = torch.zeros(2, 2, 4, 4)
    assert float(dz_weighted_mean(err, x, 10.0, 2.0)) == pytest.approx(2.0)  # DPM 0: plain
    x[1, 1] = 1.0  # item 1 at DPM 10 µm (channel 1 = DPM / 10 µm): weight 1 + 2 = 3
    assert float(dz_weighted_mean(err, x, 10.0, 2.0)) == pytest.approx((1 + 3 * 3) / 4)
    x[1, 1] = -0.5  # -5 µm: weight 2, the sign does not matter
    assert float(dz_weighted_mean(err, x, 10.0, 2.0)) == pytest.approx((1 + 2 * 3) / 3)
    cfg = dataclasses.replace(TINY, pretrain_steps=2, loss="mse", dz_weight=2.0)
    res = train(data, cfg, tmp_path / "dz")
    assert np.isfinite(res.best_val_mae)
    assert load_model(tmp_path / "dz").card.training["dz_weight"] == 2.0
    with pytest.raises(InputError, match="dz_weight"):
        train(data, dataclasses.replace(cfg, dz_weight=0.0), tmp_path / "dz", resume=True)
    with pytest.raises(InputError, match="--dz-weight"):
        TrainConfig(dz_weight=-1.0)
    with pytest.raises(InputError, match="two error weightings"):
        TrainConfig(dz_weight=1.0, fg_weight=1.0)


def test_discriminator_blur_keeps_the_mean_and_removes_pixel_noise() -> None:
    x = torch.randn(2, 1, 48, 48, generator=torch.Generator().manual_seed(0)) + 3.0
    assert torch.equal(gaussian_smoother(0.0)(x), x)
    y = gaussian_smoother(1.0)(x)
    assert y.shape == x.shape
    assert float(y.mean()) == pytest.approx(float(x.mean()), abs=0.02)
    assert float(y.std()) < 0.4 * float(x.std())  # white noise: σ falls ~3.5x at 1 px
    assert not any(p.requires_grad for p in gaussian_smoother(1.0).parameters())


def test_weighted_gan_phase_reaches_the_generator_and_is_a_resume_key(data, tmp_path) -> None:
    base = dataclasses.replace(
        TINY, pretrain_steps=1, steps=2, g_updates=1, d_updates=1, loss="mse", select_on="last"
    )
    for name, w in (("weak", 1e-6), ("strong", 10.0)):
        train(data, dataclasses.replace(base, adv_weight=w, disc_blur_px=1.0), tmp_path / name)
    a, b = _g_tensors(tmp_path / "weak"), _g_tensors(tmp_path / "strong")
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the adversarial term reaches G
    t = load_model(tmp_path / "strong").card.training
    assert (t["adv_weight"], t["disc_blur_px"], t["gan_iterations"]) == (10.0, 1.0, 2)
    again = dataclasses.replace(base, steps=3, adv_weight=1.0, disc_blur_px=1.0)
    with pytest.raises(InputError, match="adv_weight"):
        train(data, again, tmp_path / "strong", resume=True)
    with pytest.raises(InputError, match="--adv-weight"):
        TrainConfig(adv_weight=0.0)
    with pytest.raises(InputError, match="--disc-blur"):
        TrainConfig(disc_blur_px=-1.0)


def test_conditional_discriminator_sees_the_input_and_is_recorded(data, tmp_path) -> None:
    cfg = dataclasses.replace(
        TINY,
        pretrain_steps=1,
        steps=2,
        g_updates=1,
        d_updates=1,
        loss="mse",
        adv_weight=1.0,
        disc_conditional=True,
    )
    trainer = Trainer(cfg, data, tmp_path / "cond")
    trainer.fit()
    assert trainer.discriminator is not None
    assert trainer.discriminator.config.in_channels == 3  # output + image + DPM
    t = load_model(tmp_path / "cond").card.training
    assert t["disc_conditional"] is True and t["gan_iterations"] == 2
    with pytest.raises(InputError, match="disc_conditional"):
        again = dataclasses.replace(cfg, steps=3, disc_conditional=False)
        train(data, again, tmp_path / "cond", resume=True)
