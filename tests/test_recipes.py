"""Training recipes: the residual generator, the focus sampler, the schedule, the ``fast``
recipe end to end, and models whose training did not finish."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from _training_data import (
    TINY_FAST,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    small_bead_data,
    synth_stack,
)

from live_deepz.architectures import architecture_of
from live_deepz.errors import InputError
from live_deepz.modelfile import (
    UnfinishedModelWarning,
    default_model_path,
    load_card,
    load_model,
    model_summary,
)
from live_deepz.network import DeepZConfig, DeepZGenerator, DefocusDiskBank
from live_deepz.training import FocusSampler, SamplingConfig, recipe
from live_deepz.training.pairs import FieldStack, PairConfig, PairData, build_pairs
from live_deepz.training.trainer import TrainConfig, Trainer, load_checkpoint_tensors, train


def _checkpoint(folder):  # type: ignore[no-untyped-def]
    return load_checkpoint_tensors(folder / "checkpoint")[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> PairData:
    return small_bead_data(tmp_path_factory.mktemp("cache"), seed=60)


# ---------------------------------------------------------------------------------------
# the global residual


def test_untrained_residual_generator_is_the_identity_on_the_image() -> None:
    torch.manual_seed(0)
    g = DeepZGenerator(DeepZConfig(width=0.0625, residual=True)).eval()
    x = torch.rand(2, 2, 40, 24)  # not a multiple of 16: padded and cropped back
    with torch.no_grad():
        y = g(x)
    assert torch.equal(y, x[:, :1])
    plain = DeepZGenerator(DeepZConfig(width=0.0625)).eval()
    with torch.no_grad():
        assert not torch.allclose(plain(x), x[:, :1])


def test_residual_is_recorded_in_the_card_and_absent_means_plain(data, tmp_path) -> None:
    train(data, dataclasses.replace(TINY_FAST, pretrain_steps=2), tmp_path / "r")
    card = load_card(tmp_path / "r")
    assert card.architecture == {"type": "deepz-unet", "width": 0.0625, "residual": True}
    assert card.generator_config.residual is True
    bundled = load_card(default_model_path())
    assert "residual" not in bundled.architecture
    assert bundled.generator_config.residual is False
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnfinishedModelWarning)  # the bundled model is finished
        model = load_model(default_model_path())
    assert model.generator.config.residual is False


# ---------------------------------------------------------------------------------------
# the DPM modulation (FiLM)


def test_dpm_modulated_generator_starts_as_its_plain_twin_and_then_uses_the_dpm() -> None:
    torch.manual_seed(0)
    plain = DeepZGenerator(DeepZConfig(width=0.0625, residual=True)).eval()
    torch.nn.init.normal_(plain.head.weight, std=0.1)  # a trained-looking head, not zero
    film = DeepZGenerator(DeepZConfig(width=0.0625, residual=True, dpm_film=True)).eval()
    assert film.down_film is not None and len(film.down_film) == 4  # levels 2-5
    assert film.up_film is not None and len(film.up_film) == 3  # levels 2-4
    film.load_state_dict({**film.state_dict(), **plain.state_dict()})
    x = torch.rand(2, 2, 40, 24)
    with torch.no_grad():
        assert torch.equal(film(x), plain(x))
        torch.nn.init.normal_(film.up_film[0].out.weight, std=0.5)
        changed = film(x) - plain(x)
        x_far = x.clone()
        x_far[:, 1] = 3.0  # another DPM: another modulation
        changed_far = film(x_far) - plain(x_far)
    assert changed.abs().max() > 1e-4
    assert not torch.allclose(changed, changed_far, atol=1e-5)
    with pytest.raises(ValueError, match="DPM input channel"):
        DeepZConfig(width=0.0625, in_channels=1, dpm_film=True)


@pytest.mark.parametrize(
    ("option", "flag"), [("dpm_film", "--dpm-film"), ("disk_features", "--disk-features")]
)
def test_an_option_warm_starts_from_a_plain_model_and_is_recorded(
    data, tmp_path, option: str, flag: str
) -> None:
    cfg = dataclasses.replace(TINY_FAST, pretrain_steps=2, min_useful_steps=1)
    train(data, cfg, tmp_path / "plain")
    plain = load_model(tmp_path / "plain")
    new_cfg = dataclasses.replace(cfg, init_from=str(tmp_path / "plain"), **{option: True})
    train(data, dataclasses.replace(new_cfg, lr_g=0.0), tmp_path / "new")
    new = load_model(tmp_path / "new")
    assert new.card.architecture[option] is True and getattr(new.generator.config, option)
    assert option in new.card.training["init_from"]["added"]
    x = torch.rand(1, 2, 32, 32)
    with torch.no_grad():  # lr 0: the new model is still its plain start
        assert torch.equal(new.generator(x), plain.generator(x))
    assert option not in plain.card.architecture  # absent = plain (older files)
    # a start with the option needs a run with it
    with pytest.raises(InputError, match=flag):
        train(data, dataclasses.replace(cfg, init_from=str(tmp_path / "new")), tmp_path / "x")
    assert not (tmp_path / "x" / "model.safetensors").exists()
    if option == "disk_features":  # and the gain its weights were trained with
        other = dataclasses.replace(new_cfg, init_from=str(tmp_path / "new"), disk_gain=2.0)
        with pytest.raises(InputError, match="--disk-gain 1"):
            train(data, other, tmp_path / "x")


# ---------------------------------------------------------------------------------------
# the defocus-disk features


def test_disk_bank_filters_are_zero_sum_and_pick_the_radius_of_a_disk() -> None:
    bank = DefocusDiskBank()
    assert torch.allclose(bank.bank.sum(dim=(1, 2, 3)), torch.zeros(bank.channels), atol=1e-5)
    yy, xx = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    for k, r_half in enumerate(bank.RADII_HALF_PX):
        # a defocused bead: a uniform disk of radius 2 r (full resolution) on a flat field
        disk = ((yy - 64) ** 2 + (xx - 64) ** 2 <= (2 * r_half) ** 2).float() + 1.0
        with torch.no_grad():
            centre = bank(disk[None, None])[0, :, 32, 32]
        assert int(centre.argmax()) == k
    assert not any(
        "bank" in key
        for key in DeepZGenerator(DeepZConfig(width=0.0625, disk_features=True)).state_dict()
    )


def test_disk_features_start_as_the_plain_twin_and_then_see_a_defocused_disk() -> None:
    torch.manual_seed(0)
    plain = DeepZGenerator(DeepZConfig(width=0.0625, residual=True)).eval()
    torch.nn.init.normal_(plain.head.weight, std=0.1)
    disks = DeepZGenerator(DeepZConfig(width=0.0625, residual=True, disk_features=True)).eval()
    disks.load_state_dict({**disks.state_dict(), **plain.state_dict()})
    x = torch.rand(1, 2, 64, 64)
    with torch.no_grad():
        assert torch.equal(disks(x), plain(x))
        assert disks.disk_in is not None
        torch.nn.init.normal_(disks.disk_in.weight, std=0.5)
        assert (disks(x) - plain(x)).abs().max() > 1e-4
    # the gain is part of the architecture: recorded, rebuilt, and checked
    arch = architecture_of(
        DeepZGenerator(DeepZConfig(width=0.0625, disk_features=True, disk_gain=8.0))
    )
    assert arch["disk_gain"] == 8.0
    assert DeepZConfig.from_architecture(arch).disk_gain == 8.0
    older = {k: v for k, v in arch.items() if k != "disk_gain"}  # files before the gain
    assert DeepZConfig.from_architecture(older).disk_gain == 1.0
    with pytest.raises(ValueError, match="disk_gain"):
        DeepZConfig(width=0.0625, disk_features=True, disk_gain=0.0)


# ---------------------------------------------------------------------------------------
# the sampler


def test_focus_sampler_crops_inside_training_regions_and_targets_the_focus(data) -> None:
    cfg = SamplingConfig(crop=16, jitter_px=4, centred_fraction=1.0, focus_target_fraction=1.0)
    s = FocusSampler(data, cfg, seed=3)
    assert s.n_peaks > 5 and all(r.split == "train" for r in s.regions)
    rng = np.random.default_rng(0)
    focused = 0
    for _ in range(200):
        ri, y, x, zin, zt, aug, foc = s.item(rng)
        r = s.regions[ri]
        assert r.y <= y <= r.y + r.size - 16 and r.x <= x <= r.x + r.size - 16
        assert r.inputs[0] <= zin <= r.inputs[1] and r.targets[0] <= zt <= r.targets[1]
        assert 0 <= aug < 8
        focused += foc
    assert focused > 100  # the synthetic beads are in focus near the window's middle
    # the focus plane found for the synthetic beads is the stack's best focus (plane 4 of 9)
    assert np.median(s.peak_focus) == 4
    uniform = FocusSampler(data, dataclasses.replace(cfg, centred_fraction=0.0), seed=3)
    assert not any(uniform.item(rng)[-1] for _ in range(50))


def test_unbiased_targets_weigh_the_focus_targeted_draws_back_to_uniform(data) -> None:
    # Half of the centred items target the object's focus (± 1 plane): unweighted, those
    # planes are drawn several times more often than the rest of the window; with the
    # importance weights every plane of the window carries the same total weight.
    cfg = SamplingConfig(
        crop=16,
        jitter_px=4,
        centred_fraction=1.0,
        focus_target_fraction=0.5,
        unbiased_targets=True,
    )
    s = FocusSampler(data, cfg, seed=5)
    rng = np.random.default_rng(1)
    lo, hi = s.regions[0].targets
    assert all(r.targets == (lo, hi) for r in s.regions)
    n = hi - lo + 1
    counts, weights = np.zeros(n), np.zeros(n)
    for _ in range(6000):
        (_ri, _y, _x, _zin, zt, _aug, _foc), w = s.weighted_item(rng)
        counts[zt - lo] += 1
        weights[zt - lo] += w
    assert counts.max() > 3 * counts.min()
    assert weights.sum() / 6000 == pytest.approx(1.0, abs=0.05)
    np.testing.assert_allclose(weights / weights.sum(), 1.0 / n, rtol=0.15)
    x, _z, w = s.batch_weighted(0, 6)
    assert w.shape == (6,) and torch.equal(s.batch(0, 6)[0], x)
    plain = FocusSampler(data, dataclasses.replace(cfg, unbiased_targets=False), seed=5)
    assert torch.equal(plain.batch_weighted(0, 6)[2], torch.ones(6))
    with pytest.raises(InputError, match="--mirror-target-fraction"):
        dataclasses.replace(cfg, mirror_target_fraction=0.5)


def test_focus_sampler_batches_are_a_pure_function_of_seed_and_batch(data) -> None:
    s = FocusSampler(data, SamplingConfig(crop=16), seed=1)
    x1, z1 = s.batch(7, 4)
    x2, z2 = s.batch(7, 4)
    assert x1.shape == (4, 2, 16, 16) and z1.shape == (4, 1, 16, 16)
    assert torch.equal(x1, x2) and torch.equal(z1, z2)
    assert not torch.equal(s.batch(8, 4)[0], x1)


def test_focus_sampler_balances_stacks_on_request(tmp_path) -> None:
    stacks = [
        FieldStack(synth_stack(size=64, seed=70, n_beads=n), 0.5, 0.325, name=f"b{n}.tif")
        for n in (40, 4)
    ]
    unequal = build_pairs(stacks, PairConfig(patch=32, z_half_range_um=2.0, align=False), tmp_path)
    cfg = SamplingConfig(crop=16, jitter_px=4, centred_fraction=1.0)

    def dense_share(balance: str) -> float:
        s = FocusSampler(unequal, dataclasses.replace(cfg, balance=balance), seed=0)
        rng = np.random.default_rng(1)
        return float(np.mean([s.regions[s.item(rng)[0]].field == 0 for _ in range(600)]))

    by_object = dense_share("objects")
    assert by_object > 0.75  # the 40-bead stack holds most objects
    assert abs(dense_share("stacks") - 0.5) < 0.08
    with pytest.raises(InputError, match="--balance"):
        SamplingConfig(balance="regions")


def test_distinct_planes_never_pairs_a_plane_with_itself(data) -> None:
    base = SamplingConfig(crop=16, jitter_px=4, centred_fraction=0.5, focus_target_fraction=0.5)
    rng = np.random.default_rng(0)
    same = FocusSampler(data, base, seed=2)
    assert any(zin == zt for *_, zin, zt, _a, _f in (same.item(rng) for _ in range(400)))
    s = FocusSampler(data, dataclasses.replace(base, distinct_planes=True), seed=2)
    focused = 0
    for _ in range(400):
        ri, _y, _x, zin, zt, _aug, foc = s.item(rng)
        r = s.regions[ri]
        assert zt != zin and r.targets[0] <= zt <= r.targets[1]
        focused += foc
    assert focused > 50  # focus-targeted draws survive (a colliding one moves within ±1)
    # off by default, so earlier runs draw exactly what they drew
    assert not SamplingConfig().distinct_planes


def test_second_exposure_targets_share_no_noise_with_their_inputs(tmp_path) -> None:
    def stacks(noise_seed: int | None) -> list[FieldStack]:
        return [
            FieldStack(
                synth_stack(size=64, seed=60 + i, n_beads=20, noise_seed=noise_seed),
                0.5,
                0.325,
                name=f"s{i}{'' if noise_seed is None else '-b'}.tif",
            )
            for i in range(2)
        ]

    cfg = PairConfig(patch=32, z_half_range_um=2.0, align=False)
    first, second = stacks(None), stacks(1)
    twin = build_pairs(first, cfg, tmp_path / "cache", second=second)
    assert len(twin.fields) == 4 and twin.summary.extra["targets"] == "second exposure"
    for r in twin.regions:
        assert r.target_field == r.field + 2
        assert twin.fields[r.target_field].normalization == twin.fields[r.field].normalization
    sampler = FocusSampler(twin, SamplingConfig(crop=16, jitter_px=4), seed=1)
    rng = np.random.default_rng(0)
    items = [sampler.item(rng) for _ in range(400)]
    same = [it for it in items if it[3] == it[4]]
    assert same  # a DPM-0 pair ...
    ri, y, x, z, _, _, _ = same[0]
    r = sampler.regions[ri]
    inp = twin.fields[r.field].array[z, y : y + 16, x : x + 16]
    tgt = twin.fields[r.target_field].array[z, y : y + 16, x : x + 16]
    assert not np.array_equal(inp, tgt)  # ... whose target is the other exposure
    assert np.corrcoef(inp.ravel(), tgt.ravel())[0, 1] > 0.5
    xb, zb = sampler.batch(0, 4)
    assert xb.shape == (4, 2, 16, 16) and zb.shape == (4, 1, 16, 16)
    with pytest.raises(InputError, match="one second exposure per --data stack"):
        build_pairs(first, cfg, tmp_path / "cache", second=second[:1])
    other = [FieldStack(synth_stack(n_planes=7, size=64, seed=60), 0.5, name="short.tif")]
    with pytest.raises(InputError, match=r"not a second exposure of s0\.tif"):
        build_pairs(first[:1], cfg, tmp_path / "cache", second=other)
    with pytest.raises(InputError, match=r"identical to s0\.tif: a second exposure needs"):
        build_pairs(first[:1], cfg, tmp_path / "cache", second=first[:1])


def test_mean_targets_and_swapped_exposures_read_the_right_exposures(tmp_path) -> None:
    # the second exposure carries a large offset, so a crop's mean says which it came from
    first = [
        FieldStack(synth_stack(size=64, seed=60 + i, n_beads=20), 0.5, 0.325, name=f"s{i}.tif")
        for i in range(2)
    ]
    second = [
        FieldStack(
            synth_stack(size=64, seed=60 + i, n_beads=20, noise_seed=1) + 3000,
            0.5,
            0.325,
            name=f"s{i}-b.tif",
        )
        for i in range(2)
    ]
    cfg = PairConfig(patch=32, z_half_range_um=2.0, align=False)
    twin = build_pairs(first, cfg, tmp_path / "cache", second=second)
    lo = float(twin.fields[0].array.mean())
    hi = float(twin.fields[2].array.mean())
    mid = (lo + hi) / 2

    def which(crops: torch.Tensor) -> np.ndarray:
        """-1: the first exposure, +1: the second, 0: their mean."""
        m = crops.mean(dim=(-3, -2, -1)).numpy()
        return np.where(m < (lo + mid) / 2, -1, np.where(m > (mid + hi) / 2, 1, 0))

    base = SamplingConfig(crop=16, jitter_px=4)
    x, z = FocusSampler(twin, base, seed=1).batch(0, 64)
    assert (which(x[:, :1]) == -1).all() and (which(z) == 1).all()

    x, z = FocusSampler(twin, dataclasses.replace(base, mean_targets=True), seed=1).batch(0, 64)
    same_plane = (x[:, 1] == 0).flatten(1).all(dim=1).numpy()  # DPM 0: the input's plane
    assert same_plane.any() and not same_plane.all()
    assert (which(x[:, :1]) == -1).all()
    assert (which(z)[same_plane] == 1).all() and (which(z)[~same_plane] == 0).all()

    x, z = FocusSampler(twin, dataclasses.replace(base, swap_exposures=True), seed=1).batch(0, 64)
    src, tgt = which(x[:, :1]), which(z)
    assert 16 <= (src == 1).sum() <= 48  # about half swapped
    assert (src == -tgt).all()  # input and target always from different exposures

    single = build_pairs(first, cfg, tmp_path / "cache")
    with pytest.raises(InputError, match="add --second-exposure"):
        FocusSampler(single, dataclasses.replace(base, mean_targets=True))


def test_target_half_range_widens_only_the_target_window(tmp_path) -> None:
    stacks = [
        FieldStack(synth_stack(n_planes=21, size=64, seed=60 + i, n_beads=20), 0.5, name=f"w{i}")
        for i in range(2)
    ]
    cfg = PairConfig(patch=32, z_half_range_um=2.0, align=False)
    base = build_pairs(stacks, cfg, tmp_path / "c")
    wide = build_pairs(stacks, dataclasses.replace(cfg, target_half_range_um=4.0), tmp_path / "c")
    assert [r.inputs for r in wide.regions] == [r.inputs for r in base.regions]
    for r in wide.regions:
        assert r.targets == (r.mid - 8, r.mid + 8)  # the sharpest plane ± 4 µm
    assert wide.summary.extra["target_half_range_um"] == 4.0
    assert wide.summary.dpm_range_um[1] > base.summary.dpm_range_um[1]
    with pytest.raises(InputError, match="--target-half-range"):
        PairConfig(z_half_range_um=2.0, target_half_range_um=1.0)


def test_focus_sampler_refuses_crops_larger_than_the_regions(data) -> None:
    with pytest.raises(InputError, match="do not fit"):
        FocusSampler(data, SamplingConfig(crop=48))
    with pytest.raises(InputError, match="centred"):
        SamplingConfig(centred_fraction=1.5)


# ---------------------------------------------------------------------------------------
# schedule, validation, the fast recipe end to end


def test_warmup_then_cosine_to_the_final_fraction() -> None:
    cfg = TrainConfig(lr_schedule="cosine", warmup_steps=100, lr_final_fraction=0.02)
    assert cfg.lr_factor(0, 0.0) == pytest.approx(0.01)
    assert cfg.lr_factor(99, 0.0) == pytest.approx(1.0)
    assert cfg.lr_factor(5000, 0.5) == pytest.approx(0.51)
    assert cfg.lr_factor(9999, 1.0) == pytest.approx(0.02)
    assert cfg.lr_factor(9999, 3.0) == pytest.approx(0.02)  # past a time budget: stays low
    assert TrainConfig().lr_factor(10, 0.7) == 1.0  # the paper's constant rate


def test_balanced_validation_mae_sees_a_dropped_peak(data, tmp_path) -> None:
    trainer = Trainer(TINY_FAST, data, tmp_path / "x")

    class Zero(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(x[:, :1])

    val = trainer.validate_all(Zero())
    # predicting the background everywhere: small plain MAE, large error on the bright pixels
    assert val["val_fg_mae"] > 5 * val["val_bg_mae"]
    assert val["val_balanced_mae"] == pytest.approx(0.5 * (val["val_fg_mae"] + val["val_bg_mae"]))
    assert val["val_balanced_mae"] > 3 * val["val_mae"]


def test_tiny_fast_recipe_run_records_the_recipe(data, tmp_path) -> None:
    res = train(data, dataclasses.replace(TINY_FAST, pretrain_steps=4), tmp_path / "fast")
    with pytest.warns(UnfinishedModelWarning, match="trained only 4 steps"):
        model = load_model(tmp_path / "fast")
    t = model.card.training
    assert t["recipe"] == "fast" and t["loss"] == "mse" and t["complete"] is True
    assert t["stopped_by"] == "steps" and t["short"] is True and t["crop"] == 16
    assert t["selection_metric"] == "val_balanced_mae"
    assert t["sampling"]["objects"] > 0 and t["sampling"]["crop"] == 16
    assert t["validation"]["val_balanced_mae"] == pytest.approx(res.best_score)
    hist = json.loads((tmp_path / "fast" / "training_history.json").read_text())
    assert [h["step"] for h in hist] == [0, 2, 4]
    # the rate of the last step before the validation (step index 1 of 4: progress 0.25)
    assert hist[1]["lr_g"] == pytest.approx(1e-3 * TINY_FAST.lr_factor(1, 0.25), rel=1e-6)
    assert all(np.isfinite(h["val_balanced_mae"]) for h in hist)


def test_select_last_keeps_the_final_weights(data, tmp_path) -> None:
    cfg = dataclasses.replace(TINY_FAST, pretrain_steps=4, select_on="last", val_every=1)
    res = train(data, cfg, tmp_path / "last")
    assert res.best_step == 4
    with pytest.warns(UnfinishedModelWarning):
        model = load_model(tmp_path / "last")
    assert model.card.training["best_step"] == 4
    assert model.card.training["selection_metric"] == "last"
    final = {k[2:]: v for k, v in _checkpoint(tmp_path / "last").items() if k.startswith("G/")}
    assert all(torch.equal(final[k], v) for k, v in model.generator.state_dict().items())


def test_time_budget_ends_the_run_and_anneals(data, tmp_path) -> None:
    cfg = dataclasses.replace(TINY_FAST, pretrain_steps=10_000, time_budget_s=1e-3)
    res = train(data, cfg, tmp_path / "budget")
    assert res.steps < 10_000
    with pytest.warns(UnfinishedModelWarning):
        t = load_model(tmp_path / "budget").card.training
    assert t["stopped_by"] == "time_budget" and t["complete"] is True
    assert t["planned_steps"] == 10_000 and t["time_budget_s"] == 1e-3


def test_an_interrupted_run_leaves_a_model_that_says_so(data, tmp_path) -> None:
    cfg = dataclasses.replace(TINY_FAST, pretrain_steps=6, min_useful_steps=0)
    trainer = Trainer(cfg, data, tmp_path / "cut")
    real = trainer.sampler.batch_weighted

    def batch(k: int, n: int):  # type: ignore[no-untyped-def]
        if k == 3:
            raise KeyboardInterrupt
        return real(k, n)

    trainer.sampler.batch_weighted = batch
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    with pytest.warns(UnfinishedModelWarning, match="interrupted after 2 of 6 steps"):
        model = load_model(tmp_path / "cut")
    assert model.card.training["complete"] is False
    assert "interrupted" in model_summary(tmp_path / "cut")["warning"]


def test_resume_refuses_other_sampling_options_and_reads_missing_ones_as_defaults(
    data, tmp_path
) -> None:
    cfg = dataclasses.replace(TINY_FAST, pretrain_steps=2, select_on="last")
    train(data, cfg, tmp_path / "m")
    longer = dataclasses.replace(cfg, pretrain_steps=4)
    other = dataclasses.replace(cfg.sampling, focus_target_fraction=0.25)
    with pytest.raises(InputError, match=r"focus_target_fraction=0\.5, this run asks for 0\.25"):
        train(data, dataclasses.replace(longer, sampling=other), tmp_path / "m", resume=True)
    with pytest.raises(InputError, match="focus-centred sampling"):
        train(data, dataclasses.replace(longer, sampling=None), tmp_path / "m", resume=True)
    # a checkpoint written before an option existed was trained with its default
    state = tmp_path / "m" / "checkpoint" / "state.json"
    meta = json.loads(state.read_text())
    del meta["config"]["sampling"]["unbiased_targets"]
    state.write_text(json.dumps(meta))
    assert train(data, longer, tmp_path / "m", resume=True).steps == 4
    meta = json.loads(state.read_text())
    del meta["config"]["sampling"]["unbiased_targets"]
    state.write_text(json.dumps(meta))
    unbiased = dataclasses.replace(cfg.sampling, unbiased_targets=True)
    with pytest.raises(InputError, match="unbiased_targets=False"):
        train(data, dataclasses.replace(longer, sampling=unbiased), tmp_path / "m", resume=True)


def test_init_from_a_model_starts_from_its_weights_and_checks_the_architecture(
    data, tmp_path
) -> None:
    cfg = dataclasses.replace(TINY_FAST, pretrain_steps=2, min_useful_steps=3)
    train(data, cfg, tmp_path / "base")
    with pytest.warns(UnfinishedModelWarning):  # 2 steps < 3: short
        base = load_model(tmp_path / "base")
    # lr 0 and no steps beyond the validation: the fine-tuned model is the starting one
    tuned = dataclasses.replace(cfg, init_from=str(tmp_path / "base"), lr_g=0.0, seed=5)
    with pytest.warns(UnfinishedModelWarning, match="'base'"):  # starting from a short one
        train(data, tuned, tmp_path / "tuned")
    model = load_model(tmp_path / "tuned")  # 2 + 2 steps >= 3: not short
    t = model.card.training
    assert t["init_from"]["weights_sha256"] == base.weights_sha256
    assert t["init_from"]["steps"] == 2 and t["short"] is False
    assert t["init_from"]["init_from"] is None and t["init_from"]["total_steps"] == 2
    for k, v in model.generator.state_dict().items():
        assert torch.equal(v, base.generator.state_dict()[k]), k
    # a second warm restart keeps the whole chain and counts all its steps
    again = dataclasses.replace(tuned, init_from=str(tmp_path / "tuned"), min_useful_steps=6)
    train(data, again, tmp_path / "again")
    t = load_model(tmp_path / "again").card.training  # 2 + (2 + 2) >= 6: not short
    chain = t["init_from"]
    assert t["short"] is False and chain["total_steps"] == 4
    assert chain["init_from"]["weights_sha256"] == base.weights_sha256
    # a random start with the same seed differs
    fresh = Trainer(dataclasses.replace(tuned, init_from=None), data, tmp_path / "fresh")
    fresh.fit()
    with pytest.warns(UnfinishedModelWarning):
        other = load_model(tmp_path / "fresh").generator.state_dict()
    assert not all(torch.equal(v, other[k]) for k, v in base.generator.state_dict().items())
    wider = dataclasses.replace(tuned, width=0.125)
    with pytest.raises(InputError, match="architecture"), pytest.warns(UnfinishedModelWarning):
        train(data, wider, tmp_path / "wider")
    assert not (tmp_path / "wider" / "model.safetensors").exists()


# ---------------------------------------------------------------------------------------
# the command line


def _write(path, stack) -> str:
    import tifffile

    tifffile.imwrite(path, stack)
    return str(path)


def _cli(tmp_path, *extra: str) -> list[str]:
    return [
        "train",
        "--z-step", "0.5",
        "--z-half-range", "2",
        "--width", "0.0625",
        "--batch", "4",
        "--val-every", "2",
        "--max-val-pairs", "8",
        "--cache", str(tmp_path / "cache"),
        "--quiet",
        *extra,
    ]  # fmt: skip


def test_cli_fast_recipe_is_the_cpu_default_and_steps_are_the_total(tmp_path, capsys) -> None:
    pytest.importorskip("live_deepz.io")
    from live_deepz.cli import main

    data = [_write(tmp_path / f"fov{i}.tif", synth_stack(seed=70 + i)) for i in range(2)]
    out = tmp_path / "fastcli"
    base = _cli(tmp_path, "--data", *data, "-o", str(out), "--patch", "16", "--region", "32")
    threads = torch.get_num_threads()
    try:
        assert main([*base, "--steps", "3", "--threads", str(threads + 1)]) == 0
        assert torch.get_num_threads() == threads + 1  # --threads is used, not ignored
    finally:
        torch.set_num_threads(threads)
    with pytest.warns(UnfinishedModelWarning):
        card = load_model(out).card
    t = card.training
    assert t["recipe"] == "fast" and t["steps"] == 3 and t["gan_iterations"] == 0
    assert card.architecture.get("residual") is True and t["amp"] in ("off", "bfloat16")
    capsys.readouterr()
    cases = {
        "belongs to the paper recipe": [*base, "--steps", "3", "--pretrain-steps", "1"],
        "TOTAL number": [*base, "--recipe", "paper", "--pretrain-steps", "5", "--steps", "0"],
        "--region differs": [*base, "--recipe", "paper", "--steps", "1"],
        "--distinct-planes needs --recipe fast": [
            *_cli(tmp_path, "--data", *data, "-o", str(out)),
            *("--recipe", "paper", "--distinct-planes"),
        ],
        "no model named 'nope'": [*base, "--steps", "1", "--init", "nope"],
        "--second-exposure works with --recipe fast": [
            *_cli(tmp_path, "--data", *data, "-o", str(out)),
            *("--recipe", "paper", "--second-exposure", *data),
        ],
        "give one per --data stack": [*base, "--steps", "1", "--second-exposure", data[0]],
        "must be between 0 and --steps 3": [*base, "--steps", "3", "--gan-steps", "4"],
        "belongs to --recipe fast": [*base, "--recipe", "paper", "--gan-steps", "1"],
        "weights its losses with --alpha": [*base, "--recipe", "paper", "--adv-weight", "1"],
        "--adv-weight must be > 0": [*base, "--gan-steps", "1", "--adv-weight", "0"],
        "add --gan-steps N": [*base, "--steps", "2", "--disc-conditional"],
        "add --disk-features": [*base, "--steps", "1", "--disk-gain", "8"],
        "--disk-gain must be > 0": [*base, "--steps", "1", "--disk-features", "--disk-gain", "0"],
        "smoothing of --lowpass-weight": [*base, "--steps", "1", "--lowpass-sigma", "2"],
        "--threads must be >= 1": [*base, "--steps", "1", "--threads", "0"],
        "--unbiased-targets needs --recipe fast": [
            *_cli(tmp_path, "--data", *data, "-o", str(out)),
            *("--recipe", "paper", "--unbiased-targets"),
        ],
        "--unbiased-from needs --unbiased-targets": [*base, "--steps", "1", "--unbiased-from", "1"],
        "cannot be combined with --mirror-target-fraction": [
            *base,
            *("--steps", "1", "--unbiased-targets", "--mirror-target-fraction", "0.5"),
        ],
        "--l1-weight adds an absolute-error term": [
            *base,
            *("--steps", "1", "--loss", "l1", "--l1-weight", "0.3"),
        ],
        "more than --pretrain-steps": [
            *base,
            "--recipe",
            "paper",
            "--steps",
            "1",
            "--disc-blur",
            "1",
        ],
    }
    for message, args in cases.items():
        assert main([*args, "--overwrite"]) == 1
        assert message in capsys.readouterr().err, message


def _fast_cli(tmp_path, name: str) -> tuple:  # type: ignore[type-arg]
    """Two small stacks written to ``tmp_path``, the output folder ``name`` and the common
    arguments of a tiny fast-recipe CLI run on them."""
    data = [_write(tmp_path / f"fov{i}.tif", synth_stack(seed=70 + i)) for i in range(2)]
    out = tmp_path / name
    args = _cli(tmp_path, "--data", *data, "-o", str(out), "--patch", "16", "--region", "32")
    return out, data, args


def test_cli_unbiased_targets_train_and_are_recorded(tmp_path) -> None:
    pytest.importorskip("live_deepz.io")
    from live_deepz.cli import main

    out, _data, args = _fast_cli(tmp_path, "unbiased")
    assert main([*args, "--steps", "2", "--unbiased-targets", "--unbiased-from", "0.5"]) == 0
    with pytest.warns(UnfinishedModelWarning):
        sampling = load_model(out).card.training["sampling"]
    assert sampling["unbiased_targets"] is True and sampling["unbiased_from"] == 0.5


def test_cli_focus_map_weight_trains_and_is_recorded(tmp_path, capsys) -> None:
    pytest.importorskip("live_deepz.io")
    from live_deepz.cli import main

    out, data, args = _fast_cli(tmp_path, "focusmap")
    assert main([*args, "--steps", "2", "--focus-map-weight", "0.01"]) == 0
    with pytest.warns(UnfinishedModelWarning):
        assert load_model(out).card.training["focus_map_weight"] == 0.01
    paper = _cli(tmp_path, "--data", *data, "-o", str(tmp_path / "p"), "--patch", "16")
    assert main([*paper, "--steps", "2", "--recipe", "paper", "--focus-map-weight", "1"]) == 1
    assert "--focus-map-weight needs the fast recipe" in capsys.readouterr().err


def test_unbiased_from_weighs_items_only_from_that_progress_on(data, tmp_path) -> None:
    sampling = dataclasses.replace(
        TINY_FAST.sampling, unbiased_targets=True, unbiased_from=0.5, focus_target_fraction=1.0
    )
    cfg = dataclasses.replace(TINY_FAST, sampling=sampling, pretrain_steps=4)
    trainer = Trainer(cfg, data, tmp_path / "m")
    x0, z0, w0, _ = trainer._batch(3, progress=0.49)
    x1, z1, w1, _ = trainer._batch(3, progress=0.5)
    assert w0 is None and w1 is not None and w1.shape == (TINY_FAST.batch_size,)
    assert torch.equal(x0, x1) and torch.equal(z0, z1)  # the same items, now weighted
    assert not torch.allclose(w1, torch.ones_like(w1))
    # training passes the schedule's progress (here steps done / total steps)
    seen: list[float] = []
    real = trainer._batch

    def batch(k: int, progress: float = 1.0):  # type: ignore[no-untyped-def]
        seen.append(progress)
        return real(k, progress)

    trainer._batch = batch  # type: ignore[method-assign]
    trainer.fit()
    assert seen == [0.0, 0.25, 0.5, 0.75]
    with pytest.raises(InputError, match="unbiased-from must lie in"):
        dataclasses.replace(sampling, unbiased_from=1.5)


def test_cli_fast_gan_phase_is_the_last_of_the_steps_and_is_recorded(tmp_path) -> None:
    pytest.importorskip("live_deepz.io")
    from live_deepz.cli import main

    out, _data, base = _fast_cli(tmp_path, "gan")
    assert main([*base, "--steps", "4", "--gan-steps", "2"]) == 0
    with pytest.warns(UnfinishedModelWarning):
        t = load_model(out).card.training
    assert (t["steps"], t["pretrain_steps"], t["gan_iterations"]) == (4, 2, 2)
    assert t["updates_per_iteration"] == {"G": 1, "D": 1}
    assert (t["adv_weight"], t["disc_blur_px"]) == (1e-3, 1.0)  # the fast defaults
    hist = json.loads((out / "training_history.json").read_text())
    assert any("loss_d" in h and "loss_g_adv" in h for h in hist)
    assert main([*base, "--steps", "2", "--overwrite"]) == 0  # no GAN phase: nothing recorded
    with pytest.warns(UnfinishedModelWarning):
        t = load_model(out).card.training
    assert t["gan_iterations"] == 0 and t["adv_weight"] is None and t["disc_blur_px"] == 0.0


def test_cli_second_exposure_trains_on_the_other_exposure(tmp_path) -> None:
    from live_deepz.cli import main

    data = [_write(tmp_path / f"fov{i}.tif", synth_stack(seed=70 + i)) for i in range(2)]
    second = [
        _write(tmp_path / f"fov{i}b.tif", synth_stack(seed=70 + i, noise_seed=1)) for i in range(2)
    ]
    out = tmp_path / "n2n"
    base = _cli(tmp_path, "--data", *data, "-o", str(out), "--patch", "16", "--region", "32")
    assert main([*base, "--steps", "3", "--second-exposure", *second]) == 0
    with pytest.warns(UnfinishedModelWarning):
        t = load_model(out).card.training
    assert t["data"]["extra"]["targets"] == "second exposure"
    assert t["data"]["extra"]["second_exposures"] == ["fov0b.tif", "fov1b.tif"]


def test_recipes_have_the_documented_defaults() -> None:
    fast, paper = recipe("fast", "cpu"), recipe("paper", "cpu")
    assert (fast.loss, fast.residual, fast.lr_g, fast.batch, fast.patch) == (
        "mse",
        True,
        1e-3,
        8,
        64,
    )
    assert fast.sampling is not None and fast.sampling.centred_fraction == 0.8
    assert fast.select_on == "last" and paper.select_on == "val_mae"
    assert (paper.loss, paper.residual, paper.lr_g, paper.sampling) == ("l1", False, 1e-4, None)
    assert recipe("paper", "cuda").steps == 21000 and recipe("paper", "cuda").width == 1.0
    with pytest.raises(InputError, match="unknown recipe"):
        recipe("slow")


def test_focus_input_draws_start_sharp_and_leave_earlier_runs_unchanged(data) -> None:
    base = SamplingConfig(crop=16, jitter_px=4, centred_fraction=1.0, focus_target_fraction=0.0)
    plain, sharp = (
        FocusSampler(data, dataclasses.replace(base, focus_input_fraction=f), seed=4)
        for f in (0.0, 1.0)
    )
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    near_plain = near_sharp = 0
    for _ in range(300):
        *_, zin_a, _zt_a, _aug_a, foc_a = plain.item(rng_a)
        ri, _y, _x, zin_b, zt_b, _aug_b, foc_b = sharp.item(rng_b)
        r = sharp.regions[ri]
        assert not foc_a and not foc_b
        assert r.inputs[0] <= zin_b <= r.inputs[1] and r.targets[0] <= zt_b <= r.targets[1]
        near_plain += abs(zin_a - 4) <= 1  # the synthetic beads' focus is plane 4 of 9
        near_sharp += abs(zin_b - 4) <= 1
    assert near_sharp > 250 and near_plain < 200
    assert SamplingConfig().focus_input_fraction == 0.0  # off by default
    with pytest.raises(InputError, match="focus-input-fraction must lie in"):
        SamplingConfig(focus_input_fraction=1.5)


def test_far_input_draws_put_the_input_far_from_the_targeted_focus(data) -> None:
    base = SamplingConfig(crop=16, jitter_px=4, centred_fraction=1.0, focus_target_fraction=1.0)
    plain, far = (
        FocusSampler(data, dataclasses.replace(base, far_input_fraction=f, far_input_min_um=1.5))
        for f in (0.0, 1.0)
    )
    z = data.fields[0].z_um
    gaps: dict[str, list[float]] = {"plain": [], "far": []}
    for name, sampler in (("plain", plain), ("far", far)):
        rng = np.random.default_rng(3)
        for _ in range(300):
            ri, _y, _x, zin, zt, _aug, focused = sampler.item(rng)
            r = sampler.regions[ri]
            assert r.inputs[0] <= zin <= r.inputs[1]
            if focused:
                gaps[name].append(abs(float(z[zin] - z[zt])))
    assert min(gaps["far"]) >= 1.5 and len(gaps["far"]) > 200
    assert np.mean(np.asarray(gaps["plain"]) < 1.5) > 0.3  # uniform inputs are often near
    assert SamplingConfig().far_input_fraction == 0.0  # off by default
    with pytest.raises(InputError, match="far-input-fraction must lie in"):
        SamplingConfig(far_input_fraction=-0.1)


def test_mirror_target_draws_put_the_target_at_the_focus_mirrored_about_the_input(data) -> None:
    base = SamplingConfig(crop=16, jitter_px=4, centred_fraction=1.0, focus_target_fraction=0.0)
    mirrored = FocusSampler(data, dataclasses.replace(base, mirror_target_fraction=1.0))
    plain = FocusSampler(data, base)
    z = data.fields[0].z_um
    step = float(np.median(np.diff(z)))
    hits = {"plain": 0, "mirrored": 0}
    inside = 0
    for name, sampler in (("plain", plain), ("mirrored", mirrored)):
        rng = np.random.default_rng(5)
        for _ in range(300):
            ri, y, x, zin, zt, _aug, focused = sampler.item(rng)
            assert not focused
            r = sampler.regions[ri]
            assert r.targets[0] <= zt <= r.targets[1]
            # the object the crop is centred on: the nearest peak of this region
            d = (sampler.peak_y - (y + 8)) ** 2 + (sampler.peak_x - (x + 8)) ** 2
            k = int(np.argmin(np.where(sampler.peak_region == ri, d, np.iinfo(d.dtype).max)))
            mirror = 2 * z[zin] - z[sampler.peak_focus[k]]
            if name == "mirrored" and z[r.targets[0]] <= mirror <= z[r.targets[1]]:
                inside += 1
            hits[name] += abs(z[zt] - mirror) <= step + 1e-9
    assert inside > 100
    assert hits["mirrored"] >= 0.8 * inside and hits["plain"] < 0.5 * hits["mirrored"]
    assert SamplingConfig().mirror_target_fraction == 0.0  # off by default
    with pytest.raises(InputError, match="mirror-target-fraction must lie in"):
        SamplingConfig(mirror_target_fraction=2.0)


def test_self_normalised_items_rescale_input_and_target_by_the_input_planes_own_fit(
    data,
) -> None:
    base = SamplingConfig(crop=16, jitter_px=4, centred_fraction=1.0)
    plain = FocusSampler(data, base, seed=6)
    own = FocusSampler(data, dataclasses.replace(base, self_norm_fraction=1.0), seed=6)
    x0, z0 = plain.batch(2, 3)
    x1, z1 = own.batch(2, 3)
    # the first item's draws are the same in both; only its intensities are refitted
    ri, *_, zin, _zt, _aug, _foc = own.item(np.random.default_rng([6, 303, 2]))
    fit = own.plane_normalization(own.regions[ri].field, zin)
    assert fit is not None and fit.scale != 1.0
    torch.testing.assert_close(x1[0, 0], torch.from_numpy(fit.apply(x0[0, 0].numpy())))
    torch.testing.assert_close(z1[0], torch.from_numpy(fit.apply(z0[0].numpy())))
    torch.testing.assert_close(x1[0, 1], x0[0, 1])  # the DPM channel is untouched
    assert SamplingConfig().self_norm_fraction == 0.0
