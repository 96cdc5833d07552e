"""z-stacks → training pairs: alignment, cover, sharpest plane, DPMs, splits, cache."""

from __future__ import annotations

import numpy as np
import pytest
from _training_data import (
    one_torch_thread,  # noqa: F401 (autouse fixture)
    synth_stack,
)

from live_deepz.errors import InputError
from live_deepz.training.pairs import (
    FieldStack,
    PairConfig,
    augment,
    build_pairs,
    foreground_mask,
    greedy_cover,
    plane_detail_snr,
    plane_shifts,
    prepare_field,
)

CFG = PairConfig(patch=32, z_half_range_um=2.0)  # 9 planes at 0.5 um: ±4 planes


def _stacks(n: int = 2, size: int = 64, **kw) -> list[FieldStack]:
    return [
        FieldStack(synth_stack(size=size, seed=10 + i, **kw), 0.5, 0.325, name=f"s{i}.tif")
        for i in range(n)
    ]


def test_plane_alignment_recovers_known_subpixel_shifts() -> None:
    drift = np.zeros((9, 2))
    drift[:, 0] = np.linspace(-1.3, 1.1, 9)
    drift[:, 1] = [0.0, 0.3, -0.7, 0.25, 0.0, 0.6, 1.0, -0.4, 0.2]
    stack = synth_stack(seed=4, size=96, n_beads=40, shifts=drift, photons=20000)
    est = plane_shifts(stack)
    # est[z] moves plane z into the sharpest plane's frame: est + drift is the same for all
    ref = int(np.argmin(np.abs(est).sum(axis=1)))
    np.testing.assert_allclose(est[ref], 0.0)
    np.testing.assert_allclose(est + drift, np.broadcast_to(drift[ref], drift.shape), atol=0.1)


def test_plane_alignment_does_not_walk_on_drift_free_defocused_planes() -> None:
    # ±10 µm around focus: most planes are noise with a faint haze; summing their
    # registrations used to walk several pixels away
    stack = synth_stack(n_planes=41, seed=5, size=96, n_beads=15, photons=3000)
    snr = plane_detail_snr(stack)
    assert snr[20] > 5 and snr[0] < 2 and snr[-1] < 2
    assert np.abs(plane_shifts(stack)).max() <= 0.3


def test_greedy_cover_covers_foreground_with_small_overlap() -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((160, 200), bool)
    for _ in range(12):
        y0, x0 = rng.integers(0, 150), rng.integers(0, 190)
        mask[y0 : y0 + rng.integers(5, 40), x0 : x0 + rng.integers(5, 40)] = True
    patch = 32
    corners = greedy_cover(mask, patch, overlap=0.05)
    covered = np.zeros_like(mask)
    taken = np.zeros(mask.shape, np.int32)
    overlaps: list[float] = []
    for y, x in corners:
        assert 0 <= y <= mask.shape[0] - patch and 0 <= x <= mask.shape[1] - patch
        overlaps.append(float(taken[y : y + patch, x : x + patch].astype(bool).mean()))
        covered[y : y + patch, x : x + patch] = True
        taken[y : y + patch, x : x + patch] += 1
    assert covered[mask].mean() > 0.97  # (almost) every foreground pixel lies in a region
    assert np.mean(np.array(overlaps) <= 0.05) >= 0.6  # most regions respect the 5 % overlap
    assert max(overlaps) <= 0.5  # and none is a near-duplicate
    duplicated = 1 - covered.sum() / (len(corners) * patch * patch)
    assert duplicated < 0.1  # ~5 % of the regions' area is covered twice
    # a full mask is tiled without overlap, with the minimum number of regions
    full = greedy_cover(np.ones((96, 96), bool), 32)
    assert sorted(full) == [(y, x) for y in (0, 32, 64) for x in (0, 32, 64)]
    assert greedy_cover(np.zeros((96, 96), bool), 32) == []


def test_foreground_mask_keeps_dim_pixels_connected_to_bright_ones() -> None:
    edf = np.zeros((40, 40), np.float32)
    edf[10:20, 10:20] = 0.1  # dim plateau...
    edf[14, 14] = 5.0  # ...with a bright seed: kept
    edf[30:35, 30:35] = 0.1  # dim plateau without a seed: dropped
    m = foreground_mask(edf)
    assert m[12, 12] and m[18, 18] and not m[32, 32] and not m[0, 0]


def test_regions_are_centred_on_the_sharpest_plane(tmp_path) -> None:
    stacks = [
        FieldStack(synth_stack(n_planes=13, focus=7, seed=s, photons=5000), 0.5, name=f"s{s}")
        for s in (1, 2)
    ]
    data = build_pairs(stacks, CFG, tmp_path)
    assert data.regions
    for r in data.regions:
        assert r.mid == 7
        assert r.inputs == (3, 11) and r.targets == (3, 11)  # ±4 planes = ±2 um


def test_dpm_is_z_step_times_index_difference_and_crops_match(tmp_path) -> None:
    data = build_pairs(_stacks(), CFG, tmp_path)
    pairs = np.concatenate([data.pairs[s] for s in ("train", "val")])
    np.testing.assert_allclose(pairs["dpm_um"], 0.5 * (pairs["ztg"] - pairs["zin"]), atol=1e-6)
    assert data.summary.dpm_range_um == (-4.0, 4.0)
    assert data.summary.targets_per_input == 5
    # each input plane has 5 distinct targets
    for r_i in np.unique(pairs["region"]):
        rows = pairs[pairs["region"] == r_i]
        for zi in np.unique(rows["zin"]):
            tg = rows["ztg"][rows["zin"] == zi]
            assert len(tg) == 5 and len(set(tg.tolist())) == 5
    ds = data.dataset("val")
    assert not ds.augment and data.dataset("train").augment
    x, z = ds.sample(3)
    row = data.pairs["val"][3]
    reg = data.regions[row["region"]]
    arr = data.fields[reg.field].array
    p = reg.size
    np.testing.assert_array_equal(x[0], arr[row["zin"], reg.y : reg.y + p, reg.x : reg.x + p])
    np.testing.assert_array_equal(z[0], arr[row["ztg"], reg.y : reg.y + p, reg.x : reg.x + p])
    assert np.all(x[1] == np.float32(row["dpm_um"] / 10.0))
    xb, zb = data.dataset("train").batch([0, 1], [0, 5])
    assert xb.shape == (2, 2, 32, 32) and zb.shape == (2, 1, 32, 32)
    # the field is normalised: background near 0, the bright tail near 1
    edf = data.fields[0].edf
    assert abs(float(np.median(edf))) < 0.1 and 0.5 < float(np.quantile(edf, 0.999)) < 5


def test_augment_gives_the_eight_flips_and_rotations() -> None:
    a = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    outs = {augment(a, k).tobytes() for k in range(8)}
    assert len(outs) == 8
    np.testing.assert_array_equal(augment(a, 0), a)


def test_held_out_regions_never_share_pixels_with_training(tmp_path) -> None:
    cfg = PairConfig(patch=32, z_half_range_um=2.0, holdout_right=0.5)
    data = build_pairs(_stacks(size=128, n_beads=40), cfg, tmp_path)
    test = [r for r in data.regions if r.split == "test"]
    fit = [r for r in data.regions if r.split != "test"]
    assert test and fit and {r.split for r in fit} == {"train", "val"}
    for r in fit:
        assert r.x + r.size <= 64
    for r in test:
        assert r.x >= 64
    assert data.summary.pairs["test"] == len(data.pairs["test"]) > 0
    assert len(data.test_regions()) == len(test)

    cfg = PairConfig(patch=32, z_half_range_um=2.0, holdout_stacks=(2,))
    data = build_pairs(_stacks(n=3), cfg, tmp_path)
    assert {r.split for r in data.regions if r.field == 2} == {"test"}
    assert "test" not in {r.split for r in data.regions if r.field != 2}


def test_prepared_stacks_are_cached_and_reused(tmp_path) -> None:
    stack = _stacks(n=1)[0]
    first = prepare_field(stack, tmp_path)
    mtime = first.path.stat().st_mtime_ns
    again = prepare_field(stack, tmp_path)
    assert not first.from_cache and again.from_cache
    assert again.path == first.path and again.path.stat().st_mtime_ns == mtime
    assert isinstance(again.array, np.memmap)
    np.testing.assert_array_equal(np.asarray(again.array), np.asarray(first.array))
    assert again.normalization == first.normalization
    # other settings -> another cache entry
    other = prepare_field(stack, tmp_path, align=False)
    assert other.path != first.path and not other.from_cache


def test_bad_inputs_raise_input_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="too few"):
        build_pairs(_stacks(), PairConfig(patch=32, z_half_range_um=10.0), tmp_path)
    with pytest.raises(InputError, match="smaller than the 64 px patch"):
        build_pairs(_stacks(size=48), PairConfig(patch=64, z_half_range_um=2.0), tmp_path)
    rng = np.random.default_rng(0)
    dark = [FieldStack(rng.poisson(100, (9, 64, 64)).astype(np.uint16), 0.5, name="dark")]
    with pytest.raises(InputError, match="no foreground"):
        build_pairs(dark, CFG, tmp_path)
    with pytest.raises(InputError, match="z step"):
        FieldStack(np.zeros((9, 8, 8), np.uint16), 0.0)
    with pytest.raises(InputError, match=r"\(Z, Y, X\)"):
        FieldStack(np.zeros((8, 8), np.uint16), 0.5)
    with pytest.raises(InputError, match="multiple of 16"):
        PairConfig(patch=30)
    with pytest.raises(InputError, match="held-out stack index"):
        build_pairs(
            _stacks(), PairConfig(patch=32, z_half_range_um=2.0, holdout_stacks=(5,)), tmp_path
        )


def test_load_stacks_reports_unreadable_files(tmp_path) -> None:
    pytest.importorskip("live_deepz.io")
    from live_deepz.training.pairs import load_stacks

    with pytest.raises(InputError, match="no such file"):
        load_stacks([tmp_path / "missing.tif"], 0.5)
    junk = tmp_path / "junk.tif"
    junk.write_text("not a tiff")
    with pytest.raises(InputError):
        load_stacks([junk], 0.5)
