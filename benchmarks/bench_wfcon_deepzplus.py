"""The 2D Deep-Z+ baseline beside WFCON-Net on the same simulated thick-slice pairs.

Run after ``bench_wfcon.py`` (it reuses that run's training stacks and held-out seeds)::

    OMP_NUM_THREADS=1 flock /work/heavy.lock .venv/bin/python benchmarks/bench_wfcon_deepzplus.py

Trains a Deep-Z+ model (``live-deepz train --data WF... --labels CONF...``, the project's own
cross-modal Deep-Z+ path: its registration and axial zero, L1 only, width 0.125) on the same
wide-field / confocal training stacks, then refocuses ONE wide-field plane of each held-out
stack (the middle one, the paper's Fig. 6b protocol) onto every depth with uniform DPMs and
scores the result against the confocal truth per depth like ``bench_wfcon.py``. The Deep-Z+
output is on its own intensity scale, so its stack is normalised by its 0.1 / 99.9
percentiles like the truth (WFCON-Net's output is left as it is). Results are added to
``benchmarks/results/wfcon.json`` under ``deepz_plus``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_wfcon import RESULTS, _log, _pair, per_depth  # noqa: E402


def deepzplus_stack(model_path: Path, wf_raw: np.ndarray, z_step: float) -> np.ndarray:
    from live_deepz.modelfile import load_model
    from live_deepz.normalize import normalize_image

    m = load_model(model_path)
    lo, hi = m.card.z_range_um
    k0 = len(wf_raw) // 2
    img, _ = normalize_image(wf_raw[k0].astype(np.float32))
    out = np.empty(wf_raw.shape, dtype=np.float32)
    with torch.inference_mode():
        for k in range(len(wf_raw)):
            dz = float(np.clip((k - k0) * z_step, lo, hi))
            dpm = np.full(img.shape, dz / m.card.dpm_scale_um, dtype=np.float32)
            x = torch.from_numpy(np.stack([img, dpm]))[None]
            out[k] = m.generator(x)[0, 0].numpy()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_wfcon")
    ap.add_argument("--json", type=Path, default=RESULTS / "wfcon.json")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--patch", type=int, default=64)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from live_deepz.sim.thick import ThickSampleParams
    from live_deepz.stack3d import unit_normalize

    res = json.loads(args.json.read_text())
    params = ThickSampleParams(
        **{**res["sample"], "soma_radius_um": tuple(res["sample"]["soma_radius_um"])}
    )
    wf = sorted(str(p) for p in args.work.glob("train*_widefield.ome.tif"))
    cf = [w.replace("_widefield", "_confocal") for w in wf]
    half = (params.n_planes - 1) * params.z_step_um / 2 - 0.25
    model = args.work / "deepzplus-bench"
    cmd = [
        sys.executable,
        "-m",
        "live_deepz.cli",
        "train",
        "--data",
        *wf,
        "--labels",
        *cf,
        "-o",
        str(model),
        "--width",
        str(args.width),
        "--patch",
        str(args.patch),
        "--batch",
        "8",
        "--recipe",
        "paper",
        "--steps",
        str(args.steps),
        "--pretrain-steps",
        str(args.steps),
        "--z-half-range",
        f"{half:.2f}",
        "--cache",
        str(args.work / "cache"),
        "--overwrite",
        "--quiet",
        "--device",
        "cpu",
    ]
    t0 = time.perf_counter()
    _log("training Deep-Z+: " + " ".join(cmd[3:]))
    subprocess.run(cmd, check=True)
    train_min = (time.perf_counter() - t0) / 60
    card = json.loads((model / "card.json").read_text())
    seeds = res["held_out_samples"] and [s["seed"] for s in res["held_out_samples"]]
    from live_deepz.analysis.evaluation import pearson
    from live_deepz.engine._stack3d import infer_stack
    from live_deepz.modelfile import load_model

    wfcon = load_model(args.work / "wfcon-bench")
    rows = []
    corr: dict[str, list] = {"input": [], "wfcon": [], "deepz_plus": []}
    for s in seeds:
        p = _pair(params, s)
        conf = unit_normalize(p["confocal"])
        wf = unit_normalize(p["widefield"])
        pred = unit_normalize(deepzplus_stack(model, p["widefield"], params.z_step_um))
        rows.append(per_depth(pred, conf))
        # Pearson r per depth: blind to offset and scale, so it cannot flatter by them
        for key, st in (
            ("input", wf),
            ("wfcon", infer_stack(wfcon.generator, wf)),
            ("deepz_plus", pred),
        ):
            corr[key].append([pearson(a, b) for a, b in zip(st, conf, strict=True)])
        _log(
            f"Deep-Z+ held-out seed {s}: SSIM {np.mean(rows[-1]['ssim']):.3f} "
            f"RMSE {np.mean(rows[-1]['rmse']):.4f}"
        )
    r = np.mean([x["rmse"] for x in rows], axis=0)
    q = np.mean([x["ssim"] for x in rows], axis=0)
    res["deepz_plus"] = {
        "command": " ".join(["live-deepz", *cmd[3:]]),
        "train_minutes": train_min,
        "trained_dpm_range_um": card["z_range_um"],
        "validation_mae": card.get("training", {}).get("validation_mae"),
        "input_plane": "middle plane of each held-out stack; uniform DPM to every depth",
        "rmse_mean": float(np.mean(r)),
        "ssim_mean": float(np.mean(q)),
        "rmse_per_depth": np.round(r, 4).tolist(),
        "ssim_per_depth": np.round(q, 4).tolist(),
    }
    res["pearson_per_depth"] = {
        k: {"mean": float(np.mean(v)), "per_depth": np.round(np.mean(v, axis=0), 4).tolist()}
        for k, v in corr.items()
    }
    args.json.write_text(json.dumps(res, indent=1, default=float))
    _log(
        "Pearson r vs confocal truth: "
        + ", ".join(f"{k} {v['mean']:.3f}" for k, v in res["pearson_per_depth"].items())
    )
    _log(f"Deep-Z+: RMSE {np.mean(r):.4f} SSIM {np.mean(q):.3f} (trained {train_min:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
