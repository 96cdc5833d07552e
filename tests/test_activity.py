"""The activity analysis (``live_deepz.analysis.activity``, ``live-deepz activity``): each
stage on a small synthetic case with a known answer, the CLI end to end on a tiny two-channel
recording, its bad inputs, and the simulated worm's truth file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import adjusted_rand_score

from live_deepz.analysis.activity import (
    LocaliseParams,
    TraceExtractor,
    activity_snr,
    apply_shift,
    cluster_traces,
    delta_f_over_f,
    estimate_shift,
    localise,
    match_3d,
    recording_truth,
    truth_path,
)
from live_deepz.cli import main
from live_deepz.errors import InputError
from live_deepz.recording import FrameInfo, RecordingWriter

SPACING = (0.5, 0.325, 0.325)  # the paper's virtual stack: 0.5 µm planes, 0.325 µm pixels


def _blobs(shape: tuple[int, ...], centres_vox: np.ndarray, sigma_vox: tuple[float, ...],
           amps: np.ndarray) -> np.ndarray:  # fmt: skip
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    out = np.zeros(shape)
    for c, a in zip(centres_vox, amps):
        out += a * np.exp(
            -sum((g - ci) ** 2 / (2 * s * s) for g, ci, s in zip(grids, c, sigma_vox))
        )
    return out


def _planted(n: int = 6, shape: tuple[int, int, int] = (17, 48, 48), seed: int = 0) -> np.ndarray:
    """Blob centres (voxels) at least ~8 px apart laterally, inside the stack."""
    rng = np.random.default_rng(seed)
    pts: list[np.ndarray] = []
    while len(pts) < n:
        c = np.array([rng.uniform(4, shape[0] - 5), rng.uniform(6, shape[1] - 7),
                      rng.uniform(6, shape[2] - 7)])  # fmt: skip
        if all(np.hypot(*(c[1:] - p[1:])) > 9 for p in pts):
            pts.append(c)
    return np.array(pts)


# ------------------------------------------------------------------ registration
def test_registration_recovers_a_known_3d_shift() -> None:
    cen = _planted(8)
    ref = _blobs((17, 48, 48), cen, (2.0, 2.5, 2.5), np.full(8, 100.0))
    true = np.array([1.4, -2.3, 3.6])
    moved = ndimage.shift(ref, true, order=3, mode="constant")
    est = estimate_shift(ref, moved)
    np.testing.assert_allclose(est, -true, atol=0.15)
    back = apply_shift(moved, est)
    inner = (slice(4, -4), slice(8, -8), slice(8, -8))
    assert np.abs(back[inner] - ref[inner]).max() < 0.1 * ref.max()  # linear interpolation
    assert np.abs(moved[inner] - ref[inner]).max() > 0.5 * ref.max()
    np.testing.assert_array_equal(estimate_shift(ref, np.zeros_like(ref)), [0, 0, 0])


# ------------------------------------------------------------------ localisation
def test_localisation_finds_planted_blobs_in_3d_and_2d() -> None:
    rng = np.random.default_rng(1)
    cen = _planted(7, seed=2)
    amps = rng.uniform(60, 120, len(cen))
    stack = _blobs((17, 48, 48), cen, (2.0, 3.0, 3.0), amps) + 10 + rng.normal(0, 1, (17, 48, 48))
    det = localise(stack, SPACING)
    assert len(det) == len(cen)
    pairs = match_3d(det.positions_vox * SPACING, cen * SPACING, lateral_um=0.3, axial_um=0.3)
    assert len(pairs) == len(cen)
    # every neuron gets a voxel mask around its centre, disjoint from the others
    for i, j in pairs:
        z, y, x = np.round(cen[j]).astype(int)
        assert det.labels[z, y, x] == i + 1
    det2 = localise(stack[8], SPACING[1:])
    assert 1 <= len(det2) <= len(cen)
    assert det2.positions_vox.shape[1] == 2
    # a flat stack has nothing; NaN is refused
    assert len(localise(np.full((5, 20, 20), 3.0), SPACING)) == 0
    bad = stack.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        localise(bad, SPACING)


def test_min_distance_merges_closer_maxima_only() -> None:
    img = _blobs((60, 60), np.array([[30, 20], [30, 32]]), (2.0, 2.0), np.array([50.0, 40.0]))
    two = localise(img, (0.325, 0.325), LocaliseParams(min_distance_um=(2.0, 2.0, 2.0)))
    one = localise(img, (0.325, 0.325), LocaliseParams(min_distance_um=(5.0, 5.0, 5.0)))
    assert (len(two), len(one)) == (2, 1)


# ------------------------------------------------------------------ traces
def _planted_dff(n_t: int = 40, seed: int = 3) -> np.ndarray:
    """Three neurons: two with transients (zero baseline half of the time), one silent."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_t)
    d = np.zeros((3, n_t))
    for i, onset in enumerate((8, 22)):
        d[i] = np.where(t >= onset, 1.5 * np.exp(-(t - onset) / 4.0), 0.0)
        d[i] += (rng.uniform(size=n_t) < 0.0) * 0
    return d


def test_traces_recover_a_planted_dff() -> None:
    shape = (9, 40, 40)
    cen = np.array([[4, 10, 10], [4, 28, 12], [5, 20, 30]], dtype=float)
    labels = np.zeros(shape, np.int32)
    for i, c in enumerate(cen):
        zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
        ball = ((zz - c[0]) / 3) ** 2 + ((yy - c[1]) / 5) ** 2 + ((xx - c[2]) / 5) ** 2 <= 1
        labels[ball] = i + 1
    dff = _planted_dff()
    ex = TraceExtractor(labels, n_brightest=20)
    assert ex.n_neurons == 3 and (ex.voxels_used == 20).all()
    f = np.empty((3, dff.shape[1]))
    bg = 7.0
    for t in range(dff.shape[1]):
        stack = bg + np.zeros(shape)
        for i, c in enumerate(cen):
            stack += 50.0 * (1 + dff[i, t]) * _blobs(shape, c[None], (1.5, 2.0, 2.0), [1.0])
        f[:, t] = ex(stack)
    got, f0 = delta_f_over_f(f, background=bg, baseline_percentile=20)
    assert (f0 > 0).all()
    np.testing.assert_allclose(got, dff, atol=3e-3)  # the neighbours' tails add ~0.1 %
    act, snr = activity_snr(got + np.random.default_rng(0).normal(0, 0.01, got.shape))
    assert act[0] > 0.3 and act[2] < 0.05
    assert snr[0] > 10 and snr[1] > 10 and snr[2] < 2
    with pytest.raises(InputError):
        ex(np.zeros((2, 2, 2)))


# ------------------------------------------------------------------ clustering
def test_spectral_clustering_recovers_planted_groups() -> None:
    rng = np.random.default_rng(4)
    n_t, groups = 150, np.repeat([0, 1, 2], [9, 7, 5])
    kernel = np.exp(-np.arange(20) / 4.0)
    templates = []
    for _ in range(3):
        spikes = (rng.uniform(size=n_t) < 0.03) * rng.uniform(1, 2, n_t)
        templates.append(np.convolve(spikes, kernel)[:n_t])
    traces = np.array([templates[g] * rng.uniform(0.8, 1.2) for g in groups])
    traces += rng.normal(0, 0.05, traces.shape)
    res = cluster_traces(traces, sigma=1.5)
    assert res.k == 3
    assert adjusted_rand_score(groups, res.labels) == pytest.approx(1.0)
    assert res.affinity.shape == (21, 21) and np.all(np.diag(res.affinity) == 0)
    assert np.bincount(res.labels).tolist() == [9, 7, 5]  # ordered by size
    forced = cluster_traces(traces, sigma=1.5, k=2)
    assert forced.k == 2 and set(forced.labels.tolist()) == {0, 1}


# ------------------------------------------------------------------ CLI end to end
OFFSETS = np.arange(-2.0, 2.01, 0.5)  # 9 planes
SHAPE = (40, 40)


def _write_tiny(path: Path, *, channels: list[str] | None = ("nuclei", "calcium"),
                planes: bool = True, offsets: np.ndarray = OFFSETS,
                shift_px: float = 0.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """A 14-time-point recording of 4 nuclei (calcium: two active, in two groups); the body
    moves ``shift_px`` px along x at t >= 7. Returns (centres zyx µm at t=0, true ΔF/F)."""
    n_t = 14
    cen_vox = np.array([[4, 10, 10], [3, 28, 12], [5, 14, 30], [4, 30, 29]], dtype=float)
    z_um = np.interp(cen_vox[:, 0], np.arange(len(offsets)), offsets)
    cen_um = np.stack([z_um, cen_vox[:, 1] * 0.325, cen_vox[:, 2] * 0.325], axis=1)
    t = np.arange(n_t)
    dff = np.zeros((4, n_t))
    dff[0] = np.where(t >= 3, 1.2 * np.exp(-(t - 3) / 2.0), 0)
    dff[2] = np.where(t >= 9, 1.0 * np.exp(-(t - 9) / 2.0), 0)
    sig = (1.5, 2.0, 2.0)
    w = RecordingWriter(path, frame_shape=SHAPE, offsets_um=offsets,
                        channels=None if channels is None else list(channels),
                        pixel_size_um=0.325)  # fmt: skip
    n_c = 1 if channels is None else len(channels)
    kz = len(offsets)
    for ti in range(n_t):
        c = cen_vox + ([0, 0, shift_px] if ti >= 7 else 0)
        nuc = 5 + _blobs((kz, *SHAPE), c, sig, np.full(4, 100.0))
        cal = 3 + _blobs((kz, *SHAPE), c, sig, 30.0 * (1 + dff[:, ti]))
        stacks = np.stack([nuc, cal])[:n_c].astype(np.float32)
        raw = (stacks[:, kz // 2] * 10).astype(np.uint16)
        info = FrameInfo(index=ti, camera_frame=ti, camera_time_ms=250.0 * ti, stage_z_um=0.0)
        w.append_frame(raw if channels is not None else raw[0], info)
        if planes:
            w.write_planes(ti, stacks if channels is not None else stacks[0])
    w.close()
    return cen_um, dff


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_activity_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = tmp_path / "tiny.ome.tif"
    cen_um, dff = _write_tiny(rec, shift_px=2.0)
    out = tmp_path / "act"
    rc = main(["activity", str(rec), "-o", str(out), "--plots", "--no-progress",
               "--active-snr", "2"])  # fmt: skip
    text = capsys.readouterr()
    assert rc == 0, text.err
    assert "neurons (3D)           4" in text.out
    assert sorted(p.name for p in out.iterdir()) == [
        "affinity.png", "heatmap.png", "neurons.csv", "positions.png", "registration.csv",
        "summary.json", "traces.csv",
    ]  # fmt: skip
    neurons = _csv(out / "neurons.csv")
    found = np.array([[float(r[k]) for k in ("z_um", "y_um", "x_um")] for r in neurons])
    pairs = match_3d(found, cen_um, lateral_um=0.3, axial_um=0.3)
    assert len(pairs) == 4
    traces = _csv(out / "traces.csv")
    assert len(traces) == 14 and list(traces[0]) == ["t_s", "0", "1", "2", "3"]
    assert float(traces[1]["t_s"]) == pytest.approx(0.25)
    for i, j in pairs:
        got = np.array([float(r[str(i)]) for r in traces])
        if dff[j].std() > 0:
            assert np.corrcoef(got, dff[j])[0, 1] > 0.99
            assert neurons[i]["active"] == "1" and int(neurons[i]["cluster"]) >= 0
        else:
            assert neurons[i]["active"] == "0" and neurons[i]["cluster"] == "-1"
    reg = _csv(out / "registration.csv")
    assert float(reg[10]["dx_um"]) == pytest.approx(-2 * 0.325, abs=0.05)
    assert abs(float(reg[3]["dx_um"])) < 0.05
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["neurons_3d"] == 4 and summary["counts"]["active"] == 2
    assert summary["software"]["scikit-learn"] != "not installed"
    assert summary["parameters"]["n_brightest"] == 100
    # an existing folder is kept unless --overwrite
    rc = main(["activity", str(rec), "-o", str(out), "--no-progress"])
    assert rc == 1 and "--overwrite" in capsys.readouterr().err
    assert main(["activity", str(rec), "-o", str(out), "--no-progress", "--overwrite"]) == 0
    assert not (out / "heatmap.png").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("kind", "args", "message"),
    [
        ("one-channel", [], "one channel"),
        ("two", ["--activity-channel", "gcamp"], "no channel 'gcamp'.*nuclei, calcium"),
        ("two", ["--nuclei-channel", "calcium"], "same"),
        ("raw-only", [], "live-deepz complete"),
        ("one-plane", [], "1 virtual plane"),
    ],
)
def test_activity_bad_inputs_say_what_the_recording_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, args: list[str], message: str
) -> None:
    rec = tmp_path / "bad.ome.tif"
    if kind == "one-channel":
        _write_tiny(rec, channels=None)
    elif kind == "raw-only":
        _write_tiny(rec, planes=False)
    elif kind == "one-plane":
        _write_tiny(rec, offsets=np.array([0.0]))
    else:
        _write_tiny(rec)
    out = tmp_path / "never"
    rc = main(["activity", str(rec), "-o", str(out), "--no-progress", *args])
    err = capsys.readouterr().err
    assert rc == 1
    import re

    assert re.search(message, err), err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_activity_command_module_is_light() -> None:
    """``live-deepz activity --help`` builds its parser without torch, Qt or scikit-learn."""
    import subprocess
    import sys

    code = (
        "import argparse, sys\n"
        "from live_deepz.commands import activity\n"
        "activity.add_arguments(argparse.ArgumentParser())\n"
        "print(any(m in sys.modules for m in ('torch', 'sklearn', 'qtpy', 'PySide6')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


# ------------------------------------------------------------------ simulated truth
def test_truth_path() -> None:
    assert truth_path("/a/run.ome.tif") == Path("/a/run.truth.json")
    assert truth_path("/a/run.ome.zarr") == Path("/a/run.truth.json")
    assert truth_path("/a/run.planes.ome.tif") == Path("/a/run.truth.json")


@pytest.mark.slow
def test_worm_truth_is_where_the_simulator_shows_the_neurons() -> None:
    """The truth's centres (+ motion) are where the noise-free virtual planes are brightest,
    and its ΔF/F is what the calcium channel shows."""
    from live_deepz.optics import Optics
    from live_deepz.sim.samples import worm
    from live_deepz.sim.scene import SimScene

    px = Optics().pixel_size_um
    sample = worm(5, size_um=64 * px, n_neurons=6, motion=True)
    scene = SimScene(sample, Optics(), (64, 64), seed=0, z_range_um=(-11, 11))
    times = np.array([[0.0, 0.1], [1.3, 1.4]])
    truth = recording_truth(scene, times, stage_z_um=0.0)
    cen = np.asarray(truth["neurons"]["centres_zyx_um"])
    motion = np.asarray(truth["time_points"]["motion_zyx_um"])
    assert motion.shape == (2, 3) and np.abs(motion[1] - motion[0]).max() > 0.3
    offsets = np.arange(-10, 10.01, 0.5)
    for ti in range(2):
        stack = np.stack([scene.expected_frame(times[ti, 0], o, channel=0) for o in offsets])
        det = localise(stack, (0.5, px, px))
        found = det.positions_vox * [0.5, px, px] + [offsets[0], 0, 0]
        pairs = match_3d(found, cen + motion[ti], lateral_um=0.7, axial_um=1.0)
        assert len(pairs) >= len(cen) - 1, (found, cen + motion[ti])
    dff = np.asarray(truth["time_points"]["dff"])
    np.testing.assert_allclose(dff[1], sample.activity(1.4), atol=1e-5)  # 5 decimals
    assert truth["neurons"]["cluster"] == [
        c if a else -1 for c, a in zip(sample.objects["cluster"], sample.objects["active"])
    ]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_record_sim_worm_writes_its_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from _recording_support import make_tiny_model

    torch.set_num_threads(1)
    model = make_tiny_model(tmp_path, "tiny")
    out = tmp_path / "worm.ome.tif"
    args = ["record", "--sim", "--sim-sample", "worm", "--sim-size", "32", "--fps", "40"]
    args += ["--channels", "nuclei,calcium", "--frames", "3", "--planes=-2:2:2", "--model"]
    args += [str(model), "--backend", "torch", "--precision", "fp32", "--no-progress"]
    assert main([*args, "-o", str(out)]) == 0, capsys.readouterr().err
    truth = json.loads((tmp_path / "worm.truth.json").read_text())
    from live_deepz.sim.samples import worm

    sample = worm(0)
    assert len(truth["neurons"]["centres_zyx_um"]) == sample.n_objects
    t_s = np.array(truth["time_points"]["t_s"], dtype=float)
    assert t_s.shape == (3, 2) and np.isfinite(t_s).all()
    from live_deepz.recording import open_recording

    with open_recording(out) as rec:  # scene time = the stream's origin + camera time
        cam_s = np.asarray(rec.timestamps_ms, dtype=float) / 1000.0
    assert t_s[0, 0] > 0  # the camera was made (scene clock 0) before the stream started
    np.testing.assert_allclose(t_s - t_s[0, 0], cam_s - cam_s[0, 0], atol=1e-5)
    assert (t_s[:, 1] > t_s[:, 0]).all()  # calcium is the second frame of each time point
    dff = np.array(truth["time_points"]["dff"], dtype=float)
    np.testing.assert_allclose(dff[2], sample.activity(t_s[2, 1]), atol=1e-4)  # rounding
    assert np.array(truth["time_points"]["motion_zyx_um"], dtype=float).shape == (3, 3)


def test_match_3d_uses_both_tolerances_one_to_one() -> None:
    true = np.array([[0.0, 10.0, 10.0], [5.0, 10.0, 10.0], [0.0, 20.0, 20.0]])
    found = np.array([[0.4, 10.5, 10.0], [2.4, 10.0, 11.9], [0.0, 22.5, 20.0], [4.0, 10.0, 10.2]])
    pairs = sorted(match_3d(found, true, lateral_um=2.0, axial_um=2.5))
    assert pairs == [(0, 0), (3, 1)]  # found 1 is within reach of true 0 only, which is taken
