"""Does a model defocus a bead further, or refocus it onto the wrong side? (issue 14)

The rows that keep the old default include planes refocused *away* from a bead volume
(``live-deepz eval``: beads, input 5 µm below the slab centre, Δz −3…−7 µm), where the models
correlate worse with the scan than the lightly smoothed input. This benchmark isolates that case
on a sparse flat bead slide (isolated beads, one known focus): an input ``a`` µm from focus is
refocused to planes ``a + sign(a)·Δ`` (further from focus on the same side; the truth is a wider
ring) and to the focus itself (Δ = −|a|). Each virtual plane's Pearson r with the noise-free
scanned plane is reported beside the input smoothed by σ = 1 px, for every ``--model`` in one
run, with the median over the isolated beads of the peak a model puts at the focus mirrored
about the input plane over its peak at the focus (``mirror_over_focus_peak``; the scan's own
ratio beside it), and a PNG shows one bead for the first input position.

Usage::

    python benchmarks/bench_defocus_direction.py --model runs/D2 \\
        --model deepz-sim20x-default --json benchmarks/results/defocus_direction.json \\
        --png benchmarks/results/defocus_direction.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_mirror_focus import peak_above_median, smoothed  # this folder, on sys.path

SIZE_PX = 512
MIN_GAP_PX = 24.0
EXPOSURE_MS = 20.0
SCAN_HALF_RANGE_UM = 14.0
SCAN_STEP_UM = 0.5


def peak_ratio(mirror: np.ndarray, focus: np.ndarray, beads_rc: np.ndarray) -> float:
    """Median over the isolated beads of the peak at the focus mirrored about the input plane
    over the peak at the focus (σ = 1 px smoothing): the light put on the wrong side."""
    m, f = smoothed(mirror), smoothed(focus)
    pairs = [(peak_above_median(m, r, c), peak_above_median(f, r, c)) for r, c in beads_rc]
    ratios = [a / b for a, b in pairs if b > 0]  # a bead without a focus peak has no ratio
    return float(np.median(ratios)) if ratios else float("nan")


def simulate(seed: int, density: float, optics: Any) -> dict[str, Any]:
    """A sparse flat bead slide: noise-free and noisy scans, normalised as ``live-deepz eval``
    does (triangle threshold on the noisy scan's EDF image), and the bead focus (µm)."""
    from live_deepz.analysis.evaluation import SAMPLE_SEED_BASE, isolated_mask
    from live_deepz.normalize import extended_depth_of_field, fit_normalization
    from live_deepz.sim import CameraModel, Renderer, samples

    size_um = SIZE_PX * optics.pixel_size_um + 80.0
    sample = samples.beads_flat(
        SAMPLE_SEED_BASE + seed, size_um=size_um, density_per_100um2=density
    )
    renderer = Renderer(optics, (SIZE_PX, SIZE_PX))
    obj = sample.objects or {}
    centres = np.asarray(obj["centres_zyx_um"], dtype=np.float64).reshape(-1, 3)
    depth = np.asarray(obj.get("depth_um", sample.ref_depth_um + centres[:, 0]), dtype=np.float64)
    focus = float(np.median(renderer.object_focus_um(centres, depth, sample)))
    r, c = renderer.pixel_of(centres[:, 1], centres[:, 2])
    rc = np.stack([r, c], axis=1)
    beads_rc = np.round(rc[isolated_mask(rc, (SIZE_PX, SIZE_PX), MIN_GAP_PX, 20)]).astype(int)
    z = focus + np.arange(-SCAN_HALF_RANGE_UM, SCAN_HALF_RANGE_UM + 1e-6, SCAN_STEP_UM)
    rates = renderer.render_stack(sample, z, channel=0, t_s=0.0)
    cam = CameraModel()
    rng = np.random.default_rng(np.random.SeedSequence([SAMPLE_SEED_BASE + seed, 11]))
    noisy = np.stack([cam.expose(r, EXPOSURE_MS, rng) for r in rates])
    clean = np.stack([cam.mean_adu(r, EXPOSURE_MS) for r in rates])
    norm = fit_normalization(extended_depth_of_field(noisy))
    inputs = {k: norm.apply(cam.expose(rates[k], EXPOSURE_MS, rng)) for k in range(len(z))}
    return {
        "z": z,
        "focus": focus,
        "clean": norm.apply(clean),
        "inputs": inputs,
        "n_in_sample": len(centres),
        "beads_rc": beads_rc,
    }


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The options these model benchmarks share: sample seed, threads, JSON and PNG output."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path)
    p.add_argument("--png", type=Path)


def start(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """Apply ``--threads`` and load the ``--model`` list (see :func:`load_models`)."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return load_models(args.model)


def load_models(names: list[str]) -> tuple[dict[str, Any], Any]:
    """The models by name and their common optics (SystemExit when they differ)."""
    from live_deepz.modelfile import load_model, resolve_model

    models = {name: load_model(resolve_model(name)) for name in names}
    optics = {name: m.card.optics_obj for name, m in models.items()}
    first = optics[names[0]]
    if any(o != first for o in optics.values()):
        raise SystemExit(
            "the models were trained for different optics ("
            + "; ".join(f"{n}: {o}" for n, o in optics.items())
            + "): compare them in separate runs"
        )
    return models, first


def main(argv: list[str] | None = None) -> int:
    from live_deepz.analysis.evaluation import pearson
    from live_deepz.engine import Refocuser, create_backend

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", required=True, help="repeat to compare models")
    p.add_argument(
        "--input-um",
        type=float,
        nargs="+",
        default=[-4.0, -2.5, 2.5, 4.0],
        help="input positions relative to the bead focus, µm",
    )
    p.add_argument(
        "--further-um",
        type=float,
        nargs="+",
        default=[2.0, 3.0, 4.0, 6.0],
        help="refocus distances further from focus, µm",
    )
    p.add_argument("--density", type=float, default=0.15, help="beads per 100 µm²")
    add_run_arguments(p)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    models, optics = start(args)
    sim = simulate(args.seed, args.density, optics)
    z, focus, clean = sim["z"], sim["focus"], sim["clean"]

    def index(pos_um: float) -> int:
        k = int(np.argmin(np.abs(z - pos_um)))
        if abs(z[k] - pos_um) > 1e-6:
            raise SystemExit(f"{pos_um - focus:+g} µm from focus is off the {SCAN_STEP_UM} µm grid")
        return k

    refocusers = {
        n: Refocuser(m, create_backend("auto", m.generator, precision="fp32", device="cpu"))
        for n, m in models.items()
    }
    rows: list[dict[str, Any]] = []
    pictures: dict[str, Any] = {}
    for a in args.input_um:
        x = sim["inputs"][index(focus + a)]
        dpms = [-a] + [float(np.sign(a)) * d for d in args.further_um]
        targets = [index(focus + a + d) for d in dpms]
        row: dict[str, Any] = {
            "input_from_focus_um": a,
            "dpm_um": dpms,
            "smoothed_input": [pearson(smoothed(x), clean[k]) for k in targets],
            "models": {},
            "mirror_over_focus_peak": {},
        }
        mirror = index(focus + 2 * a)  # the focus mirrored about the input plane
        mirror_dpm = a  # from the input: as far as the focus, on the other side
        row["mirror_over_focus_peak"]["noise-free scan"] = peak_ratio(
            clean[mirror], clean[targets[0]], sim["beads_rc"]
        )
        for name, ref in refocusers.items():
            out = np.asarray(ref.refocus(x, np.asarray(dpms, dtype=np.float32)))
            row["models"][name] = [pearson(o, clean[k]) for o, k in zip(out, targets, strict=True)]
            at_mirror = np.asarray(ref.refocus(x, np.asarray([mirror_dpm], dtype=np.float32)))[0]
            row["mirror_over_focus_peak"][name] = peak_ratio(at_mirror, out[0], sim["beads_rc"])
            if a == args.input_um[0]:
                pictures[name] = out
        if a == args.input_um[0]:
            pictures["noise-free scan"] = np.stack([clean[k] for k in targets])
        rows.append(row)
        cells = " | ".join(
            f"{n}: " + " ".join(f"{d:+g}:{v:.2f}" for d, v in zip(dpms, r, strict=True))
            for n, r in [("smoothed", row["smoothed_input"]), *row["models"].items()]
        )
        hedge = " ".join(
            f"{Path(n).name} {v:.3f}" for n, v in row["mirror_over_focus_peak"].items()
        )
        print(f"input {a:+g} µm | {cells} | mirror/focus peak: {hedge}")
    report = {
        "benchmark": "defocus_direction",
        "protocol": __doc__.split("\n\n")[1].replace("\n", " "),
        "sample": {
            "generator": "beads_flat",
            "seed": args.seed,
            "density_per_100um2": args.density,
            "n_beads_in_sample": sim["n_in_sample"],
            "n_isolated": len(sim["beads_rc"]),
            "size_px": SIZE_PX,
            "exposure_ms": EXPOSURE_MS,
        },
        "models": list(models),
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    if args.png:
        plot(
            pictures,
            [-args.input_um[0]] + [np.sign(args.input_um[0]) * d for d in args.further_um],
            args.input_um[0],
            clean[index(focus)],
            args.png,
        )
    return 0


def plot(
    pictures: dict[str, np.ndarray],
    dpms: list[float],
    a: float,
    in_focus: np.ndarray,
    path: Path,
    half: int = 40,
) -> None:
    """One bead (the brightest away from the border) per model and refocus distance, each
    panel on its own grey scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import ndimage

    s = ndimage.gaussian_filter(in_focus, 2.0)
    inner = s[half:-half, half:-half]
    r, c = np.unravel_index(int(np.argmax(inner)), inner.shape)
    sl = np.s_[r : r + 2 * half, c : c + 2 * half]
    names = ["noise-free scan"] + [n for n in pictures if n != "noise-free scan"]
    fig, ax = plt.subplots(
        len(names), len(dpms), figsize=(2.0 * len(dpms), 2.1 * len(names)), squeeze=False
    )
    for i, n in enumerate(names):
        for j, d in enumerate(dpms):
            im = pictures[n][j][sl]
            ax[i, j].imshow(im, cmap="gray", vmin=min(0.0, float(im.min())), vmax=float(im.max()))
            ax[i, j].set_title(f"{Path(n).name}, DPM {d:+g}", fontsize=7)
            ax[i, j].axis("off")
    fig.suptitle(f"input {a:+g} µm from focus (each panel on its own scale)", fontsize=8)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.4 / height))  # room for the title
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
