"""The training-only focus-map head: the sampler's focus maps, the loss, and training with it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from _training_data import (
    TINY_FAST,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    small_bead_data,
)

from live_deepz.architectures import build_network
from live_deepz.errors import InputError
from live_deepz.modelfile import UnfinishedModelWarning, load_model
from live_deepz.training import FocusSampler
from live_deepz.training.focus_head import FocusMapHead, focus_map_loss
from live_deepz.training.pairs import PairData, augment
from live_deepz.training.trainer import load_checkpoint_tensors, train


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> PairData:
    return small_bead_data(tmp_path_factory.mktemp("cache"), seed=80)


def test_focus_map_labels_each_object_with_the_dpm_that_focuses_it(data) -> None:
    s = FocusSampler(data, TINY_FAST.sampling, seed=3)
    last = data.fields[0].array.shape[0] - 1
    j = int(np.flatnonzero((s.peak_focus > 0) & (s.peak_focus < last))[0])
    ri = int(s.peak_region[j])
    r, p = s.regions[ri], s.cfg.crop
    y0 = int(np.clip(s.peak_y[j] - p // 2, r.y, r.y + r.size - p))
    x0 = int(np.clip(s.peak_x[j] - p // 2, r.x, r.x + r.size - p))
    zin = r.inputs[0]
    m = s.focus_map(ri, y0, x0, zin, radius_px=1)
    py, px = int(s.peak_y[j]) - y0, int(s.peak_x[j]) - x0
    z_um = data.fields[r.target_field].z_um
    want = (z_um[s.peak_focus[j]] - data.fields[r.field].z_um[zin]) / data.cfg.dpm_scale_um
    assert m[1, py, px] == 1.0
    assert m[0, py, px] == pytest.approx(want)
    assert np.all(m[0][m[1] == 0] == 0)  # values only on the labelled disks
    assert 0 < m[1].sum() < p * p / 2  # small disks around the objects, not the crop
    # one plane further into the stack: the same objects are one z-step closer / further
    m2 = s.focus_map(ri, y0, x0, zin + 1, radius_px=1)
    step = (data.fields[r.field].z_um[zin + 1] - data.fields[r.field].z_um[zin]) / 10.0
    np.testing.assert_allclose(m2[0][m2[1] > 0], m[0][m[1] > 0] - step, atol=1e-6)


def test_focus_maps_leave_the_batch_unchanged_and_follow_its_augmentation(data) -> None:
    s = FocusSampler(data, TINY_FAST.sampling, seed=3)
    x, z, w = s.batch_weighted(2, 6)
    x2, z2, w2, maps = s.batch_with_focus_maps(2, 6)
    assert torch.equal(x, x2) and torch.equal(z, z2) and torch.equal(w, w2)
    assert maps.shape == (6, 2, 16, 16)
    rng = np.random.default_rng([3, 303, 2])  # replay the batch's items
    for i in range(6):
        (ri, y0, x0, zin, _zt, aug, _), _w = s.weighted_item(rng)
        want = augment(s.focus_map(ri, y0, x0, zin), aug)
        np.testing.assert_array_equal(maps[i].numpy(), want)
    assert maps[:, 1].sum() > 0


def test_focus_map_loss_uses_only_labelled_pixels_and_counts_the_far_sign() -> None:
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, 0, :2] = torch.tensor([0.8, -0.6])  # two far objects
    maps[0, 0, 1, 0] = 0.2  # a near one
    maps[0, 1, 0, :2] = 1.0
    maps[0, 1, 1, 0] = 1.0
    pred = torch.full((1, 1, 4, 4), 5.0)  # wrong everywhere off the labels: not counted
    pred[0, 0, 0, :2] = torch.tensor([0.6, 0.4])  # right sign, then wrong sign
    pred[0, 0, 1, 0] = 0.2
    loss, logs = focus_map_loss(pred, maps)
    assert float(loss) == pytest.approx((0.2**2 + 1.0**2 + 0.0) / 3)
    assert logs["train_focus_far_px"] == 2 and logs["train_focus_right_px"] == 1
    loss0, _ = focus_map_loss(pred, torch.zeros(1, 2, 4, 4))  # nothing labelled
    assert float(loss0) == 0.0


def test_focus_map_head_reads_the_features_entering_the_output_conv() -> None:
    g = build_network({"type": "deepz-unet", "width": 0.0625, "residual": True})
    head = FocusMapHead(g)
    with pytest.raises(RuntimeError, match="run the generator"):
        head()
    deep = FocusMapHead(g, "deepest")
    g(torch.rand(2, 2, 32, 32))
    assert head().shape == (2, 1, 32, 32)
    assert deep().shape == (2, 1, 32, 32)  # from 2 x 2 upsampled
    assert deep.conv.in_channels > head.conv.in_channels
    head.detach_hook()
    with pytest.raises(ValueError, match="focus-map level"):
        FocusMapHead(g, "middle")
    with pytest.raises(TypeError, match="Deep-Z generator"):
        FocusMapHead(torch.nn.Linear(2, 2))


def test_training_with_the_focus_map_head_changes_the_generator_but_not_its_file(
    data, tmp_path
) -> None:
    cfg = dataclasses.replace(TINY_FAST, pretrain_steps=4, focus_map_weight=1.0)
    train(data, dataclasses.replace(cfg, focus_map_weight=0.0), tmp_path / "plain")
    res = train(data, cfg, tmp_path / "head")
    assert any("train_focus_map_mse" in row for row in res.history)
    with pytest.warns(UnfinishedModelWarning):
        plain, head = load_model(tmp_path / "plain"), load_model(tmp_path / "head")
    assert head.card.training["focus_map_weight"] == 1.0
    sd_plain, sd_head = plain.generator.state_dict(), head.generator.state_dict()
    assert sd_plain.keys() == sd_head.keys()  # the head is not in the model file
    tensors = load_checkpoint_tensors(tmp_path / "head" / "checkpoint")[0]
    last_plain = load_checkpoint_tensors(tmp_path / "plain" / "checkpoint")[0]
    assert "F/conv.weight" in tensors and "F/conv.weight" not in last_plain
    g_keys = [k for k in tensors if k.startswith("G/")]
    assert any(not torch.equal(tensors[k], last_plain[k]) for k in g_keys)  # it trained G
    more = train(data, dataclasses.replace(cfg, pretrain_steps=6), tmp_path / "head", resume=True)
    assert more.steps == 6
    with pytest.raises(InputError, match="focus_map_weight"):
        train(data, dataclasses.replace(cfg, focus_map_weight=0.5), tmp_path / "head", resume=True)
    deep = dataclasses.replace(cfg, focus_map_level="deepest")
    with pytest.raises(InputError, match="focus_map_level"):
        train(data, deep, tmp_path / "head", resume=True)
    train(data, deep, tmp_path / "deep")
    deep_head = load_checkpoint_tensors(tmp_path / "deep" / "checkpoint")[0]["F/conv.weight"]
    assert deep_head.shape[1] > tensors["F/conv.weight"].shape[1]  # read at the deepest level


def test_focus_map_weight_is_checked(data, tmp_path) -> None:
    from live_deepz.training.ddp import DistEnv
    from live_deepz.training.trainer import Trainer

    two = DistEnv(rank=0, world_size=2)
    cfg = dataclasses.replace(TINY_FAST, batch_size=4, focus_map_weight=1.0)
    with pytest.raises(InputError, match="one process only"):
        Trainer(cfg, data, tmp_path / "ddp", env=two)
    with pytest.raises(InputError, match="--focus-map-weight must be >= 0"):
        dataclasses.replace(TINY_FAST, focus_map_weight=-1.0)
    with pytest.raises(InputError, match="--focus-map-level must be one of"):
        dataclasses.replace(TINY_FAST, focus_map_level="middle")
    with pytest.raises(InputError, match="needs the fast recipe"):
        dataclasses.replace(TINY_FAST, sampling=None, focus_map_weight=1.0)
