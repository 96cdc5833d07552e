"""How far from the MSE optimum is a model on planes refocused away from a bead volume? (issue 14)

The beads row of ``live-deepz eval`` that keeps the old default (input 5 µm below the bead slab,
Δz −3…−7 µm, further from every bead) fails because the virtual plane correlates worse with
the scan than the lightly smoothed input. This benchmark asks whether that is a limit of the
information in one image or a fault of the fit: on a freshly simulated bead volume (the eval's
slab, another seed) it refocuses the input 5 µm below the slab centre to planes away from and
toward the beads, and reports per plane and model the mean squared error against the
noise-free scan, the same after blurring the output with a Gaussian (σ = 4 px), and the
Pearson r beside the σ = 1 px smoothed input's. A trained network at the MSE optimum (the
conditional mean of the target) cannot be improved by a fixed blur, so an MSE that falls
several-fold under blurring (``blur_gain`` = MSE / MSE after the blur, > 1) measures structure
the model paints that is not there. A PNG shows one corner of the input, each model's plane at
the first Δz and the noise-free truth.

Usage::

    python benchmarks/bench_far_plane_fit.py --model runs/D2 --model runs/IW \\
        --model deepz-sim20x-default --json benchmarks/results/far_plane_fit.json \\
        --png benchmarks/results/far_plane_fit.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_defocus_direction import add_run_arguments, start  # this folder, on sys.path

SIZE_PX = 256
INPUT_UM = -5.0
BLUR_PX = 4.0
EXPOSURE_MS = 20.0
SEED_OFFSET = 500
"""The sample seed is ``SAMPLE_SEED_BASE + SEED_OFFSET + --seed``: not an eval scene."""


def simulate(seed: int, optics: Any, dzs: list[float]) -> dict[str, Any]:
    """The eval's bead slab (8 µm, 1 bead per 1000 µm³) at another seed: the noisy input at
    ``INPUT_UM`` from the slab centre and the noise-free planes at ``INPUT_UM + dz``, normalised
    as ``live-deepz eval`` does (on the EDF of a noisy scan)."""
    from live_deepz.analysis.evaluation import SAMPLE_SEED_BASE, sample_for
    from live_deepz.normalize import extended_depth_of_field, fit_normalization
    from live_deepz.sim import CameraModel, Renderer

    sample = sample_for("beads", SEED_OFFSET + seed, SIZE_PX, optics)
    renderer = Renderer(optics, (SIZE_PX, SIZE_PX))
    z = np.asarray([INPUT_UM] + [INPUT_UM + d for d in dzs] + list(np.arange(-10.0, 10.5, 1.0)))
    rates = renderer.render_stack(sample, z, channel=0, t_s=0.0)
    cam = CameraModel()
    rng = np.random.default_rng(np.random.SeedSequence([SAMPLE_SEED_BASE + SEED_OFFSET + seed]))
    noisy = np.stack([cam.expose(r, EXPOSURE_MS, rng) for r in rates])
    norm = fit_normalization(extended_depth_of_field(noisy[1 + len(dzs) :]))
    clean = [norm.apply(cam.mean_adu(r, EXPOSURE_MS)) for r in rates[1 : 1 + len(dzs)]]
    return {"input": norm.apply(noisy[0]), "clean": clean, "n_beads": sample_beads(sample)}


def sample_beads(sample: Any) -> int:
    obj = sample.objects or {}
    return int(np.asarray(obj.get("centres_zyx_um", np.zeros((0, 3)))).reshape(-1, 3).shape[0])


def plane_figures(out: np.ndarray, truth: np.ndarray, smooth_input: np.ndarray) -> dict[str, float]:
    """MSE (×1e4) of ``out`` and of its σ = ``BLUR_PX`` blur against ``truth``, their ratio,
    and the Pearson r of ``out`` and of the smoothed input."""
    from scipy.ndimage import gaussian_filter

    from live_deepz.analysis.evaluation import pearson

    mse = float(np.mean((out - truth) ** 2)) * 1e4
    mse_blur = float(np.mean((gaussian_filter(out, BLUR_PX) - truth) ** 2)) * 1e4
    return {
        "mse_x1e4": round(mse, 4),
        "mse_blurred_x1e4": round(mse_blur, 4),
        "blur_gain": round(mse / mse_blur, 3) if mse_blur > 0 else float("nan"),
        "pearson": round(pearson(out, truth), 4),
        "pearson_smoothed_input": round(pearson(smooth_input, truth), 4),
    }


def main(argv: list[str] | None = None) -> int:
    from scipy.ndimage import gaussian_filter

    from live_deepz.engine import Refocuser, create_backend

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", required=True, help="repeat to compare models")
    p.add_argument("--dz-um", type=float, nargs="+", default=[-3.0, -5.0, -7.0, 3.0, 5.0])
    add_run_arguments(p)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    models, optics = start(args)
    scene = simulate(args.seed, optics, list(args.dz_um))
    smooth = gaussian_filter(scene["input"], 1.0)
    outputs: dict[str, np.ndarray] = {}
    report: dict[str, Any] = {}
    for name, model in models.items():
        backend = create_backend("auto", model.generator, precision="fp32", device="cpu")
        out = np.asarray(Refocuser(model, backend).refocus(scene["input"], np.asarray(args.dz_um)))
        outputs[name] = out
        report[name] = {
            f"{dz:+g}": plane_figures(out[k], scene["clean"][k], smooth)
            for k, dz in enumerate(args.dz_um)
        }
        print(
            f"{name}: "
            + "  ".join(
                f"dz {dz}: MSE {v['mse_x1e4']:.3f} (blurred {v['mse_blurred_x1e4']:.3f}) "
                f"r {v['pearson']:.3f} (smoothed input {v['pearson_smoothed_input']:.3f})"
                for dz, v in report[name].items()
            )
        )
    result = {
        "benchmark": "far_plane_fit",
        "command": "python benchmarks/bench_far_plane_fit.py "
        + " ".join(f"--model {m}" for m in args.model)
        + f" --seed {args.seed}",
        "scene": {
            "sample": "beads (eval slab: 8 µm, 1 bead per 1000 µm³)",
            "seed": f"SAMPLE_SEED_BASE + {SEED_OFFSET} + {args.seed}",
            "size_px": SIZE_PX,
            "n_beads": scene["n_beads"],
            "input_um_from_slab_centre": INPUT_UM,
            "blur_sigma_px": BLUR_PX,
        },
        "models": report,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    if args.png:
        draw(args.png, scene, outputs, args.dz_um[0])
    return 0


def draw(path: Path, scene: dict[str, Any], outputs: dict[str, np.ndarray], dz: float) -> None:
    """One 128² corner: the input, each model's plane at ``dz``, the noise-free truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(f"input ({INPUT_UM:+g} µm)", scene["input"])]
    panels += [(f"{name} Δz {dz:+g}", out[0]) for name, out in outputs.items()]
    panels.append((f"noise-free truth ({INPUT_UM + dz:+g} µm)", scene["clean"][0]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.5))
    for ax, (title, img) in zip(axes, panels, strict=True):
        crop = img[:128, :128]
        lo, hi = np.percentile(crop, [1, 99.8])
        ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=70)


if __name__ == "__main__":
    raise SystemExit(main())
