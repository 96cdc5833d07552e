"""WFCON-Net on simulated thick brain slices: registration, a short CPU training, per-depth quality.

Run (one thread, through the shared lock)::

    OMP_NUM_THREADS=1 flock /work/heavy.lock .venv/bin/python benchmarks/bench_wfcon.py

What it measures (JSON: ``benchmarks/results/wfcon.json``, plots ``wfcon_*.png``):

1. **Registration error** of ``psf`` (paper Eq. 2-3) and ``xcorr`` against known shifts on
   noisy thin (3 µm tissue) and thick (tissue filling the stack) samples; random sub-voxel
   shifts; median / max absolute error per axis and the fraction within 0.5 px / plane.
2. **Training**: simulated wide-field / confocal pairs (known random shifts) registered with
   ``psf`` and a width-``W`` WFCON-Net trained L1-only (warm-up + cosine) for ``--minutes``
   on one CPU thread (the GAN and VGG terms are left out on this CPU: no VGG weights here and
   the Deep-Z CPU runs showed the GAN phase does not pay at this budget).
3. **Held-out samples** (other seeds, no shift): RMSE and SSIM against the confocal truth per
   depth for the prediction and for the wide-field input (all stacks normalised to [0, 1] by
   their 0.1 / 99.9 percentiles); signal / background sharpness per depth (paper Fig. 5b:
   the largest / smallest mean gradient ``|∂x I| + |∂y I|`` of 32×32 patches); the 2× / 4×
   axial sub-sampling rows (input planes ``::k``, interpolated back, same model).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------- data


def _pair(params, seed: int, shift=(0.0, 0.0, 0.0)):
    from live_deepz.sim.thick import simulate_pair

    return simulate_pair(params, seed, shift)


def registration_rows(n: int, size: int, planes: int, rng: np.random.Generator) -> dict:
    from live_deepz.analysis.registration import register
    from live_deepz.sim.thick import ThickSampleParams

    out: dict = {}
    for kind, tissue in (("thin", 3.0), ("thick", None)):
        params = ThickSampleParams(size_px=size, n_planes=planes, tissue_um=tissue)
        errs: dict[str, list] = {"psf": [], "xcorr": []}
        secs: dict[str, list] = {"psf": [], "xcorr": []}
        profiles = {}
        for i in range(n):
            shift = (rng.uniform(-3, 3), rng.uniform(-4, 4), rng.uniform(-4, 4))
            p = _pair(params, 500 + i, shift)
            truth = np.array(p["truth"]["align_shift_zyx"])
            for m in ("psf", "xcorr"):
                r = register(p["widefield"], p["confocal"], m)
                errs[m].append((np.array(r.shift_zyx) - truth).tolist())
                secs[m].append(r.seconds)
                if i == 0:
                    profiles[m] = r
            _log(
                f"registration {kind} {i + 1}/{n}: true {np.round(truth, 2)} errors "
                f"psf {np.round(errs['psf'][-1], 2)} xcorr {np.round(errs['xcorr'][-1], 2)}"
            )
        rows = {}
        for m in ("psf", "xcorr"):
            e = np.abs(np.array(errs[m]))
            rows[m] = {
                "median_abs_error_zyx": np.median(e, axis=0).round(3).tolist(),
                "max_abs_error_zyx": e.max(axis=0).round(3).tolist(),
                "within_half_voxel_fraction": float(np.mean((e <= 0.5).all(axis=1))),
                "median_seconds": float(np.median(secs[m])),
                "errors_zyx": np.round(errs[m], 3).tolist(),
            }
        out[kind] = {"tissue_um": tissue, "n": n, "methods": rows, "_profiles": profiles}
    return out


# ---------------------------------------------------------------------------------- metrics


def sharpness(stack: np.ndarray, patch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Per plane: the largest / smallest mean ``|∂x I| + |∂y I|`` over 32×32 patches."""
    gx = np.abs(np.diff(stack, axis=2))[:, :-1, :]
    gy = np.abs(np.diff(stack, axis=1))[:, :, :-1]
    g = gx + gy
    z, h, w = g.shape
    hp, wp = h // patch, w // patch
    tiles = g[:, : hp * patch, : wp * patch].reshape(z, hp, patch, wp, patch).mean(axis=(2, 4))
    tiles = tiles.reshape(z, -1)
    return tiles.max(axis=1), tiles.min(axis=1)


def per_depth(pred: np.ndarray, truth: np.ndarray) -> dict:
    from live_deepz.analysis.evaluation import rmse, ssim

    return {
        "rmse": [rmse(p, t) for p, t in zip(pred, truth, strict=True)],
        "ssim": [ssim(p, t, data_range=1.0) for p, t in zip(pred, truth, strict=True)],
    }


def evaluate(model_path: Path, params, seeds: list[int]) -> dict:
    from live_deepz.engine._stack3d import infer_stack
    from live_deepz.modelfile import load_model
    from live_deepz.stack3d import interpolate_planes, subsample_planes, unit_normalize

    m = load_model(model_path)
    rows: dict = {"seeds": seeds, "samples": []}
    for s in seeds:
        p = _pair(params, s)
        wf = unit_normalize(p["widefield"])
        conf = unit_normalize(p["confocal"])
        t0 = time.perf_counter()
        pred = infer_stack(m.generator, wf)
        t_inf = time.perf_counter() - t0
        sample = {
            "seed": s,
            "inference_s": t_inf,
            "input": per_depth(wf, conf),
            "model": per_depth(pred, conf),
            "sharpness": {},
        }
        for name, st in (("WF", wf), ("CON", conf), ("RECON", pred)):
            sig, bg = sharpness(st)
            sample["sharpness"][name] = {"signal": sig.tolist(), "background": bg.tolist()}
        for k in (2, 4):
            wk = interpolate_planes(subsample_planes(wf, k), k, n_planes=len(wf))
            sample[f"model_sub{k}"] = per_depth(infer_stack(m.generator, wk), conf)
            sample[f"input_sub{k}"] = per_depth(wk, conf)
        rows["samples"].append(sample)
        if s == seeds[0]:
            rows["_example"] = {"wf": wf, "conf": conf, "pred": pred}
        _log(
            f"held-out seed {s}: SSIM model {np.mean(sample['model']['ssim']):.3f} vs input "
            f"{np.mean(sample['input']['ssim']):.3f}; RMSE {np.mean(sample['model']['rmse']):.4f}"
            f" vs {np.mean(sample['input']['rmse']):.4f}"
        )
    return rows


def summarise(ev: dict) -> dict:
    def mean_of(key: str, metric: str) -> list[float]:
        return np.mean([s[key][metric] for s in ev["samples"]], axis=0).tolist()

    out: dict = {}
    for key in ("input", "model", "input_sub2", "model_sub2", "input_sub4", "model_sub4"):
        r = mean_of(key, "rmse")
        q = mean_of(key, "ssim")
        out[key] = {
            "rmse_mean": float(np.mean(r)),
            "ssim_mean": float(np.mean(q)),
            "rmse_per_depth": np.round(r, 4).tolist(),
            "ssim_per_depth": np.round(q, 4).tolist(),
        }
    m, i = np.array(out["model"]["ssim_per_depth"]), np.array(out["input"]["ssim_per_depth"])
    out["model_beats_input_ssim_depths"] = f"{int((m > i).sum())}/{len(m)}"
    per_sample = [
        int((np.array(s["model"]["ssim"]) > np.array(s["input"]["ssim"])).sum())
        for s in ev["samples"]
    ]
    out["model_beats_input_ssim_depths_per_sample"] = per_sample
    sh = {}
    for name in ("WF", "CON", "RECON"):
        sh[name] = {
            part: np.mean([s["sharpness"][name][part] for s in ev["samples"]], axis=0)
            .round(5)
            .tolist()
            for part in ("signal", "background")
        }
    out["sharpness_per_depth"] = sh
    return out


# ---------------------------------------------------------------------------------- plots


def plots(summary: dict, ev: dict, reg: dict, z_step: float, prefix: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from live_deepz.analysis.registration_plots import plot_axial_profiles

    files = []
    n = len(summary["model"]["ssim_per_depth"])
    depth = (np.arange(n) + 0.5) * z_step
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
    for key, label, ls in (
        ("input", "wide-field input", "-"),
        ("model", "WFCON-Net", "-"),
        ("model_sub2", "WFCON-Net, 2x sub-sampled input", "--"),
        ("model_sub4", "WFCON-Net, 4x sub-sampled input", ":"),
    ):
        ax[0].plot(depth, summary[key]["rmse_per_depth"], ls, label=label)
        ax[1].plot(depth, summary[key]["ssim_per_depth"], ls, label=label)
    ax[0].set_title("RMSE vs confocal truth (Fig. 5a)")
    ax[1].set_title("SSIM vs confocal truth")
    for a in ax[:2]:
        a.set_xlabel("depth (µm)")
        a.legend(fontsize=7)
    sh = summary["sharpness_per_depth"]
    for name, c in (("WF", "tab:blue"), ("CON", "tab:green"), ("RECON", "tab:red")):
        ax[2].plot(depth, sh[name]["signal"], "-", color=c, label=f"{name} signal")
        ax[2].plot(depth, sh[name]["background"], "--", color=c, label=f"{name} background")
    ax[2].set_yscale("log")
    ax[2].set_title("sharpness, 32×32 patches (Fig. 5b)")
    ax[2].set_xlabel("depth (µm)")
    ax[2].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    f = prefix.with_name(prefix.name + "_depth.png")
    fig.savefig(f, dpi=100)
    plt.close(fig)
    files.append(str(f))

    ex = ev["_example"]
    planes = [n // 6, n // 2, 5 * n // 6]
    fig, ax = plt.subplots(len(planes) + 1, 3, figsize=(9, 12))
    for r, k in enumerate(planes):
        for c, (name, st) in enumerate(
            (("wide-field", ex["wf"]), ("WFCON-Net", ex["pred"]), ("confocal truth", ex["conf"]))
        ):
            ax[r, c].imshow(np.clip(st[k], 0, 1), cmap="gray", vmin=0, vmax=1)
            ax[r, c].set_title(f"{name}, depth {depth[k]:.1f} µm", fontsize=8)
            ax[r, c].axis("off")
    y = ex["wf"].shape[1] // 2
    for c, st in enumerate((ex["wf"], ex["pred"], ex["conf"])):
        ax[-1, c].imshow(
            np.clip(st[:, y, :], 0, 1), cmap="gray", vmin=0, vmax=1, aspect=z_step / 0.1083
        )
        ax[-1, c].set_title("x-z section", fontsize=8)
        ax[-1, c].axis("off")
    fig.tight_layout()
    f = prefix.with_name(prefix.name + "_examples.png")
    fig.savefig(f, dpi=90)
    plt.close(fig)
    files.append(str(f))

    for kind in ("thin", "thick"):
        prof = reg[kind].get("_profiles")
        if prof:
            f = prefix.with_name(prefix.name + f"_registration_{kind}.png")
            plot_axial_profiles(
                [prof["psf"], prof["xcorr"]], f, title=f"{kind} sample: axial profiles (Fig. 8b)"
            )
            files.append(str(f))
    return files


# ---------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--planes", type=int, default=48)
    ap.add_argument("--train-pairs", type=int, default=6)
    ap.add_argument("--test-pairs", type=int, default=3)
    ap.add_argument("--reg-samples", type=int, default=6)
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--patch", type=int, nargs=3, default=(12, 64, 64))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "wfcon.json")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_wfcon")
    ap.add_argument("--skip-registration", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from live_deepz.io import write_ome_tiff
    from live_deepz.sim.thick import THICK_OPTICS, ThickSampleParams
    from live_deepz.training.wfcon import WFConTrainConfig, load_stack_pairs, train_wfcon

    t_all = time.perf_counter()
    rng = np.random.default_rng(18)
    params = ThickSampleParams(size_px=args.size, n_planes=args.planes)
    result: dict = {
        "machine": f"{platform.processor() or platform.machine()}, 2-core CPU, 1 thread",
        "command": "python " + " ".join(sys.argv),
        "sample": params.to_dict(),
        "optics": THICK_OPTICS.to_dict(),
    }
    reg = {}
    if not args.skip_registration:
        reg = registration_rows(args.reg_samples, args.size, 32, rng)
        result["registration"] = {
            k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in reg.items()
        }

    # training pairs with known random shifts (registered back by psf in load_stack_pairs)
    args.work.mkdir(parents=True, exist_ok=True)
    data, labels, shifts = [], [], []
    for i in range(args.train_pairs):
        shift = (rng.uniform(-2, 2), rng.uniform(-3, 3), rng.uniform(-3, 3))
        p = _pair(params, 100 + i, shift)
        for mod, lst in (("widefield", data), ("confocal", labels)):
            f = args.work / f"train{i}_{mod}.ome.tif"
            write_ome_tiff(
                f,
                p[mod],
                axes="ZYX",
                pixel_size_um=THICK_OPTICS.pixel_size_um,
                z_step_um=params.z_step_um,
            )
            lst.append(str(f))
        shifts.append(p["truth"]["align_shift_zyx"])
    _log(f"{args.train_pairs} training pairs simulated")
    pairs, z_step, px = load_stack_pairs(data, labels, "psf", verbose=False)
    result["training_registration"] = [
        {
            "true_align_shift_zyx": np.round(t, 3).tolist(),
            "psf_shift_zyx": np.round(p.shift_zyx, 3).tolist(),
        }
        for t, p in zip(shifts, pairs, strict=True)
    ]
    cfg = WFConTrainConfig(
        width=args.width,
        patch=tuple(args.patch),
        batch=args.batch,
        pretrain_steps=args.steps,
        gan_steps=0,
        val_every=100,
    )
    model_dir = args.work / "wfcon-bench"
    if (model_dir / "checkpoint").exists():
        import shutil

        shutil.rmtree(model_dir)
    t0 = time.perf_counter()
    tr = train_wfcon(
        pairs,
        model_dir,
        cfg,
        z_step_um=z_step,
        pixel_size_um=px,
        progress=False,
        command="benchmarks/bench_wfcon.py",
    )
    tr["train_minutes"] = (time.perf_counter() - t0) / 60
    result["training"] = {**tr, "config": {**cfg.__dict__, "patch": list(cfg.patch)}}
    _log(
        f"trained {cfg.steps} steps in {tr['train_minutes']:.1f} min, best val L1 "
        f"{tr['best_val_l1']:.4f} at step {tr['best_step']}"
    )

    ev = evaluate(model_dir, params, [200 + i for i in range(args.test_pairs)])
    summary = summarise(ev)
    result["held_out"] = summary
    result["held_out_samples"] = [
        {k: v for k, v in s.items() if k != "sharpness"} for s in ev["samples"]
    ]
    result["paper"] = {
        "rmse": 0.0575,
        "ssim": 0.767,
        "sub2": [0.0598, 0.734],
        "sub4": [0.0657, 0.665],
        "data": "39 measured 2048² mouse-brain-slice pairs (~40 µm, 35-76 planes), batch 24, "
        "6000 GAN iterations on a TitanXp (3 days)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result["plots"] = plots(summary, ev, reg, params.z_step_um, args.out.with_suffix(""))
    result["total_minutes"] = (time.perf_counter() - t_all) / 60
    args.out.write_text(json.dumps(result, indent=1, default=float))
    _log(f"wrote {args.out} in {result['total_minutes']:.1f} min")
    for key in ("input", "model", "model_sub2", "model_sub4"):
        s = summary[key]
        print(f"  {key:11s} RMSE {s['rmse_mean']:.4f}  SSIM {s['ssim_mean']:.3f}")
    print(
        f"  model > input SSIM at {summary['model_beats_input_ssim_depths']} depths "
        f"(per sample {summary['model_beats_input_ssim_depths_per_sample']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
