"""``live-deepz train``: train Deep-Z (or Deep-Z+ with ``--labels``) on your own z-stacks.

Examples::

    live-deepz train --data fov1.ome.tif fov2.ome.tif -o models/mine
    live-deepz train --data wf1.tif --labels confocal1.tif --z-step 0.2 -o models/plus
    torchrun --nproc_per_node=4 -m live_deepz.cli train --data *.tif -o models/big  # DDP

    live-deepz train --recipe fast --time-budget 30 --data *.ome.tif -o models/quick

Two recipes (``--recipe``, see :mod:`live_deepz.training.recipes`): ``fast``, the default on a
CPU (global-residual width-0.25 network, MSE, warm-up + cosine learning rate, crops centred on
objects with focus-targeted target planes, 16000 steps ≈ 17 min on one idle core), and
``paper``, the default on CUDA (the published L1 + LS-GAN schedule: width 1.0, 1000 L1 then
20000 GAN steps; on a CPU width 0.25 and 2000 L1-only steps). ``--steps`` is the TOTAL number
of optimisation steps, one batch each; with ``paper`` the first ``--pretrain-steps`` of them
are L1-only and the rest GAN iterations. A duration estimate is printed after a few timed
steps. Prepared stacks are cached (``--cache``) and reused by later runs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from ..errors import InputError
from ..optics import Optics

T = TypeVar("T")


def pick(value: T | None, default: T) -> T:
    """``value`` when given on the command line, else the recipe's ``default``."""
    return default if value is None else value


def _split_steps(
    recipe_name: str,
    total: int,
    pretrain: int | None,
    default_pre: int | None,
    gan_steps: int | None = None,
) -> tuple[int, int]:
    """``(L1/generator steps, GAN iterations)`` of a run of ``total`` steps."""
    if recipe_name == "fast":
        if pretrain is not None:
            raise InputError(
                "--pretrain-steps belongs to the paper recipe; with --recipe fast the GAN "
                "phase is the last --gan-steps of the --steps (default none)"
            )
        gan = gan_steps or 0
        if not 0 <= gan <= total:
            raise InputError(
                f"--gan-steps {gan} must be between 0 and --steps {total}: --steps is the "
                "TOTAL number of steps, and the GAN iterations are the last of them"
            )
        return total - gan, gan
    if gan_steps is not None:
        raise InputError(
            "--gan-steps belongs to --recipe fast; with --recipe paper the GAN iterations are "
            "the --steps after the first --pretrain-steps"
        )
    pre = min(total, default_pre or 0) if pretrain is None else pretrain
    if pre > total:
        raise InputError(
            f"--pretrain-steps {pre} is more than --steps {total}: --steps is the TOTAL number "
            f"of steps (L1 pre-training + GAN iterations). For {pre} L1-only steps write "
            f"--steps {pre} --pretrain-steps {pre}; for {pre} L1 then N GAN steps write "
            f"--steps {pre}+N"
        )
    return pre, total - pre


#: The fast recipe's GAN phase (``--gan-steps``): adversarial weight and discriminator blur.
FAST_ADV_WEIGHT = 1e-3
FAST_DISC_BLUR_PX = 1.0


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "live-deepz" / "stacks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = parser.add_argument_group("data")
    d.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="STACK",
        help="wide-field z-stacks (TIFF/OME-TIFF, one field of view each)",
    )
    d.add_argument(
        "--labels",
        nargs="+",
        metavar="STACK",
        help="Deep-Z+: label stacks of another modality (confocal), one per --data "
        "stack, same fields, same order",
    )
    d.add_argument(
        "--second-exposure",
        nargs="+",
        metavar="STACK",
        help="fast recipe: another exposure of each --data stack (same field and planes, "
        "independent camera noise; same order): targets are read from it, so the network "
        "learns the noise-free plane at every DPM, 0 included (Noise2Noise)",
    )
    d.add_argument(
        "--z-step", type=float, metavar="UM", help="axial step (um) when the files do not say it"
    )
    d.add_argument(
        "--channel", type=int, metavar="K", help="channel to train on (multi-channel stacks)"
    )
    d.add_argument(
        "--z-half-range",
        type=float,
        default=10.0,
        metavar="UM",
        help="use planes within ±this of each region's sharpest plane (default 10)",
    )
    d.add_argument(
        "--target-half-range",
        type=float,
        metavar="UM",
        help="target planes within ±this of each region's sharpest plane (default: "
        "--z-half-range); wider, it trains refocusing further from the sample",
    )
    d.add_argument(
        "--patch", type=int, help="training patch side, px (default: paper 256, fast 64)"
    )
    d.add_argument(
        "--region",
        type=int,
        help="side of the foreground regions crops are drawn from, px (default: paper = the "
        "patch, exact crops; fast 128)",
    )
    d.add_argument(
        "--targets-per-input",
        type=int,
        help="random target planes per input plane (default 5; Deep-Z+: 4)",
    )
    d.add_argument(
        "--holdout-stack",
        type=int,
        action="append",
        default=[],
        metavar="K",
        help="hold stack K (0-based) out as test data (repeatable)",
    )
    d.add_argument(
        "--holdout-right",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="hold the right FRACTION of every field out as test data",
    )
    d.add_argument("--no-align", action="store_true", help="do not align the planes laterally")
    d.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help=f"where prepared stacks are cached (default {_default_cache()})",
    )

    o = parser.add_argument_group("optics (default: from the stack files, else the paper's)")
    o.add_argument("--na", type=float, help="numerical aperture")
    o.add_argument("--wavelength-um", type=float, help="emission wavelength (um)")
    o.add_argument("--pixel-size-um", type=float, help="pixel size in the sample (um)")
    o.add_argument("--immersion-ri", type=float, help="immersion refractive index")
    o.add_argument("--sample-ri", type=float, help="sample refractive index")

    t = parser.add_argument_group("training")
    t.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="FOLDER",
        help="model folder to write (its name is the model's name); a bare NAME goes into "
        "the user models folder ($LIVE_DEEPZ_MODELS, default ~/.local/share/live-deepz/"
        "models) that `live-deepz models` lists",
    )
    t.add_argument(
        "--recipe",
        choices=("paper", "fast"),
        help="training recipe (default: fast on a CPU, paper on CUDA and for --labels)",
    )
    t.add_argument(
        "--width",
        type=float,
        help="network width (1.0 = paper; default: paper 1.0 on CUDA / 0.25 on CPU, fast 0.25)",
    )
    t.add_argument(
        "--steps",
        type=int,
        help="TOTAL optimisation steps, one batch each (default: fast 16000; paper 21000 on "
        "CUDA = 1000 L1 + 20000 GAN, 2000 L1-only on CPU)",
    )
    t.add_argument(
        "--pretrain-steps",
        type=int,
        help="paper recipe: how many of --steps are L1-only (the rest are GAN iterations; "
        "default 1000 on CUDA, all on CPU)",
    )
    t.add_argument(
        "--gan-steps",
        type=int,
        metavar="N",
        help="fast recipe: the last N of --steps are LS-GAN iterations (1 generator + 1 "
        "discriminator update each, about 2x the cost of a step; default 0 = no GAN phase)",
    )
    t.add_argument(
        "--adv-weight",
        type=float,
        metavar="W",
        help="fast recipe's GAN phase: generator loss = reconstruction + W * adversarial "
        "(default 1e-3)",
    )
    t.add_argument(
        "--disc-blur",
        type=float,
        metavar="PX",
        help="the discriminator sees output and target smoothed by a Gaussian of PX pixels, "
        "so that it cannot tell them apart by camera noise (default: fast 1.0, paper 0)",
    )
    t.add_argument(
        "--disc-conditional",
        action="store_true",
        default=None,
        help="the discriminator also sees the input image and DPM (pix2pix), so it can judge "
        "whether an output fits the refocus distance (default: it sees the output alone)",
    )
    t.add_argument(
        "--time-budget",
        type=float,
        metavar="MIN",
        help="wall-time budget in minutes: the learning rate anneals by time as well and "
        "training stops at the budget or after --steps, whichever comes first",
    )
    t.add_argument("--batch", type=int, help="global batch size (default: paper 20, fast 8)")
    t.add_argument(
        "--loss", choices=("l1", "mse"), help="reconstruction loss (default: paper l1, fast mse)"
    )
    t.add_argument(
        "--lr-schedule",
        choices=("constant", "cosine"),
        help="learning-rate schedule (default: paper constant, fast cosine with warm-up)",
    )
    t.add_argument(
        "--residual",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="global residual generator, output = input + net (default: fast yes, paper no)",
    )
    t.add_argument(
        "--dpm-film",
        action="store_true",
        help="scale and shift the features of every level below full resolution by the DPM "
        "(FiLM; off by default); "
        "with --init a plain model, the modulation is added as the identity",
    )
    t.add_argument(
        "--disk-features",
        action="store_true",
        help="add the responses of fixed defocus-disk filters of the image (radii 8-30 px) "
        "to the second level (off by default); with --init a model without them, they are "
        "added as the identity",
    )
    t.add_argument(
        "--disk-gain",
        type=float,
        default=None,
        metavar="G",
        help="with --disk-features: fixed factor on the disk responses, which are ~30x smaller "
        "than the second level's activations on normalised images (default 32)",
    )
    t.add_argument(
        "--centred-fraction",
        type=float,
        help="fast: fraction of crops centred on an object (default 0.8)",
    )
    t.add_argument(
        "--balance",
        choices=("objects", "stacks"),
        help="fast: a centred crop picks any object equally (objects, default) or a stack "
        "first, each equally, then one of its objects (stacks)",
    )
    t.add_argument(
        "--distinct-planes",
        action="store_true",
        default=None,
        help="fast: never pair a plane with itself, so input and target are separate "
        "exposures and the network also denoises at DPM 0 (Noise2Noise). Off by default: "
        "measured worse for beads (benchmarks/RESULTS.md, session 6)",
    )
    t.add_argument(
        "--far-input-fraction",
        type=float,
        metavar="F",
        help="fast: fraction of the focus-targeted items whose input is at least 5 um from "
        "the object's focus (more practice at far refocusing; default 0 = uniform input)",
    )
    t.add_argument(
        "--mirror-target-fraction",
        type=float,
        metavar="F",
        help="fast: fraction of the other object-centred items whose target is the object's "
        "focus mirrored about the input plane (a ring as wide as the input's, on the other "
        "side of focus; default 0 = uniform target)",
    )
    t.add_argument(
        "--mean-targets",
        action="store_true",
        default=None,
        help="fast, with --second-exposure: a target on another plane than the input's is "
        "the mean of both exposures (half the noise, still independent of the input)",
    )
    t.add_argument(
        "--swap-exposures",
        action="store_true",
        default=None,
        help="fast, with --second-exposure: half of the items take their input from the "
        "second exposure and their target from the first",
    )
    t.add_argument(
        "--unbiased-targets",
        action="store_true",
        default=None,
        help="fast: weight each object-centred item's loss so that its expectation is that of "
        "uniformly drawn targets; the focus-targeted draws then no longer teach the network "
        "that the DPM points at an object's focus (off by default)",
    )
    t.add_argument(
        "--unbiased-from",
        type=float,
        metavar="F",
        default=None,
        help="fast, with --unbiased-targets: apply the weights only from this fraction of the "
        "run on (0-1, the learning-rate schedule's progress); before it the focus-targeted "
        "draws count with their bias (default 0: weighted from the start)",
    )
    t.add_argument(
        "--init",
        metavar="MODEL",
        help="start from this model's weights (name or folder) instead of a random "
        "initialisation: fine-tune a bundled model on your own stacks",
    )
    t.add_argument(
        "--ema",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="validate, keep and save an exponential moving average of the generator's "
        "weights with this decay per step (e.g. 0.999 = about the last 1000 steps); "
        "default 0 = the raw weights",
    )
    t.add_argument(
        "--focus-target-fraction",
        type=float,
        help="fast: fraction of centred crops whose target is the object's focus ±1 (0.5)",
    )
    t.add_argument(
        "--focus-input-fraction",
        type=float,
        help="fast: fraction of the other centred crops whose input is the object's focus ±1 "
        "and whose target is uniform: sharp objects rendered defocused (default 0)",
    )
    t.add_argument(
        "--self-norm-fraction",
        type=float,
        help="fast: fraction of items normalised by a fit on their input plane itself, as "
        "`refocus` and the live pipeline normalise one image (default 0: the stack's fit)",
    )
    t.add_argument(
        "--val-every",
        type=int,
        help="validate and checkpoint every N steps (default: paper 50, fast 500)",
    )
    t.add_argument(
        "--max-val-pairs", type=int, help="validation pairs used (default: paper 256, fast 128)"
    )
    t.add_argument(
        "--alpha", type=float, default=0.02, help="MAE weight in the generator loss (paper: 0.02)"
    )
    t.add_argument(
        "--fg-weight",
        type=float,
        default=0.0,
        help="weight bright target pixels in the MAE by 1 + W*target (not in the paper; "
        "helps sparse samples such as beads; default 0 = plain MAE)",
    )
    t.add_argument(
        "--pcc-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="add W * (1 - Pearson r) of each output patch with its target to the loss, so "
        "faint far-defocus targets count as much as bright ones (default 0 = off)",
    )
    t.add_argument(
        "--l1-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="with --loss mse: add W * the mean absolute error, so the network stops hedging "
        "a faint focused spot on the unlikely side of focus (default 0 = off)",
    )
    t.add_argument(
        "--lowpass-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="with --loss mse: add W * the MSE of the error smoothed by a Gaussian "
        "(--lowpass-sigma), so wide faint far-defocus rings weigh more than the targets' "
        "pixel noise (default 0 = off)",
    )
    t.add_argument(
        "--lowpass-sigma",
        type=float,
        default=None,
        metavar="PX",
        help="σ of the --lowpass-weight smoothing, px (default 3)",
    )
    t.add_argument(
        "--dz-weight",
        type=float,
        default=0.0,
        metavar="K",
        help="weight each pixel's error by 1 + K * |DPM| / 10 um, so far refocus distances "
        "(faint targets) count more; the best output stays the expected target (default 0)",
    )
    t.add_argument(
        "--focus-map-weight",
        type=float,
        default=0.0,
        metavar="K",
        help="fast recipe: add K times the error of a training-only head that predicts, at "
        "each object, the DPM that brings it into focus (a direct signal for the side of "
        "focus; the saved model does not contain the head; default 0 = off)",
    )
    t.add_argument(
        "--focus-map-level",
        choices=("last", "deepest"),  # focus_head.LEVELS (the parser imports no torch)
        default="last",
        help="where the --focus-map-weight head reads the generator: the features entering "
        "its output conv (last, default) or its deepest, 1/16-resolution level",
    )
    t.add_argument(
        "--lr-g", type=float, help="generator learning rate (default: paper 1e-4, fast 1e-3)"
    )
    t.add_argument("--lr-d", type=float, default=3e-5, help="discriminator learning rate")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the training checkpointed in the output folder, with the same "
        "options (another architecture, loss, data or sampling option is refused)",
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh even if the output folder holds a training checkpoint",
    )
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    t.add_argument(
        "--amp",
        nargs="?",
        const="on",
        default="auto",
        choices=("auto", "on", "off", "bf16", "fp16"),
        help="mixed precision: --amp alone = on (bf16 on CPU); default: paper auto (CUDA "
        "only), fast bf16 on CPU too",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    from .train_wfcon import add_wfcon_arguments

    add_wfcon_arguments(parser)


def _optics(args: argparse.Namespace, stacks: list) -> Optics:
    base: dict = {}
    meta = stacks[0].metadata if stacks else {}
    if isinstance(meta.get("optics"), dict):
        base.update(meta["optics"])
    if stacks and stacks[0].pixel_size_um:
        base["pixel_size_um"] = stacks[0].pixel_size_um
    for key, arg in (
        ("na", args.na),
        ("wavelength_um", args.wavelength_um),
        ("pixel_size_um", args.pixel_size_um),
        ("immersion_ri", args.immersion_ri),
        ("sample_ri", args.sample_ri),
    ):
        if arg is not None:
            base[key] = arg
    return Optics.from_dict(base)


def _command_line() -> str:
    """The command as typed (``live-deepz ...`` also under ``python -m`` / torchrun)."""
    prog = Path(sys.argv[0]).name
    if prog in ("cli.py", "__main__.py", "live-deepz"):
        prog = "live-deepz"
    return shlex.join([prog, *sys.argv[1:]])


DEFAULT_DISK_GAIN = 32.0


def _lowpass_sigma(args: argparse.Namespace) -> float:
    """``--lowpass-sigma``, which only means something with ``--lowpass-weight``."""
    if args.lowpass_sigma is not None and not args.lowpass_weight:
        raise InputError("--lowpass-sigma sets the smoothing of --lowpass-weight; add it")
    from ..training.trainer import TrainConfig

    return TrainConfig.lowpass_sigma_px if args.lowpass_sigma is None else args.lowpass_sigma


def _disk_gain(args: argparse.Namespace) -> float:
    """``--disk-gain``, which only means something with ``--disk-features``."""
    if args.disk_gain is not None and not args.disk_features:
        raise InputError("--disk-gain sets the gain of --disk-features; add --disk-features")
    return DEFAULT_DISK_GAIN if args.disk_gain is None else float(args.disk_gain)


def _set_threads(threads: int | None) -> None:
    """``--threads N``: PyTorch's CPU threads for either architecture (None: unchanged)."""
    if threads is None:
        return
    if threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> int:
    from ..model_home import model_output_folder

    given, args.output = args.output, model_output_folder(args.output)
    if Path(given) != args.output:
        print(
            f"live-deepz train: writing the model to {args.output} (listed by `live-deepz "
            f"models`; -o ./{given} writes into the current folder)",
            file=sys.stderr,
        )
    _set_threads(getattr(args, "threads", None))
    if getattr(args, "arch", "deepz-unet") == "wfcon3d":
        if args.init is not None:
            raise InputError("--init fine-tunes Deep-Z models; it is not available for wfcon3d")
        for flag in ("dpm_film", "disk_features"):
            if getattr(args, flag):
                name = "--" + flag.replace("_", "-")
                raise InputError(
                    f"{name} is a Deep-Z U-Net option; it is not available for wfcon3d"
                )
        from .train_wfcon import run_wfcon

        return run_wfcon(args)
    from ..training import (
        CrossModalConfig,
        PairConfig,
        TrainConfig,
        build_crossmodal_pairs,
        build_pairs,
        default_recipe,
        load_stacks,
        recipe,
    )
    from ..training.ddp import barrier, cleanup, init_distributed
    from ..training.sampling import OPTIONS as SAMPLING_OPTIONS
    from ..training.trainer import CHECKPOINT_DIR, Trainer, resolve_device

    device = resolve_device(args.device)
    env = init_distributed(device.type)
    try:
        out: Path = args.output
        if (out / CHECKPOINT_DIR).exists() and not (args.resume or args.overwrite):
            raise InputError(
                f"{out} already holds a training checkpoint: pass --resume to continue it, "
                "--overwrite to start afresh, or another -o folder"
            )
        if args.labels is not None and len(args.labels) != len(args.data):
            raise InputError(
                f"{len(args.data)} --data stack(s) but {len(args.labels)} --labels stack(s): "
                "give one label stack per input stack, in the same order"
            )
        cross = args.labels is not None
        dev_type = "cuda" if device.type == "cuda" else "cpu"
        rec = recipe(args.recipe or default_recipe(dev_type, cross), dev_type)
        if cross and rec.name == "fast":
            raise InputError(
                "--recipe fast is for Deep-Z (wide-field targets); Deep-Z+ (--labels) trains "
                "with --recipe paper"
            )
        second_exposure = args.second_exposure
        if second_exposure is not None and (cross or rec.name != "fast"):
            raise InputError(
                "--second-exposure works with --recipe fast (Deep-Z), not with --recipe "
                "paper or --labels"
            )
        if second_exposure is not None and len(second_exposure) != len(args.data):
            raise InputError(
                f"{len(args.data)} --data stack(s) but {len(second_exposure)} "
                "--second-exposure stack(s): give one per --data stack, in the same order"
            )
        total = args.steps if args.steps is not None else rec.steps
        pre, gan = _split_steps(
            rec.name, total, args.pretrain_steps, rec.pretrain_steps, args.gan_steps
        )
        fast_gan = rec.name == "fast" and gan > 0
        if rec.name != "fast" and args.adv_weight is not None:
            raise InputError(
                "--adv-weight is the fast recipe's GAN weight; the paper recipe weights its "
                "losses with --alpha"
            )
        gan_options = (args.adv_weight, args.disc_blur, args.disc_conditional)
        if not gan and any(v is not None for v in gan_options):
            how = (
                "add --gan-steps N"
                if rec.name == "fast"
                else "give --steps more than --pretrain-steps (the rest are GAN iterations)"
            )
            raise InputError(
                "--adv-weight, --disc-blur and --disc-conditional act in a GAN phase and this "
                f"run has none: {how}"
            )
        if total < 1:
            raise InputError(f"--steps must be >= 1 (the total number of steps), got {total}")
        patch = args.patch if args.patch is not None else rec.patch
        if args.region is not None:
            region = args.region
        else:  # fast: crops inside larger regions; paper: each region cropped exactly
            region = max(rec.region, patch) if rec.sampling is not None else patch
        if rec.sampling is None and region != patch:
            raise InputError("--region differs from --patch only with --recipe fast")
        sampling = None
        asked = {k: getattr(args, k) for k in SAMPLING_OPTIONS if getattr(args, k) is not None}
        if rec.sampling is not None:
            sampling = replace(rec.sampling, crop=patch, **asked)
        elif asked:
            given = ", ".join("--" + k.replace("_", "-") for k in asked)
            raise InputError(f"{given} {'needs' if len(asked) == 1 else 'need'} --recipe fast")
        pcfg = PairConfig(
            patch=region,
            z_half_range_um=args.z_half_range,
            target_half_range_um=args.target_half_range,
            targets_per_input=args.targets_per_input or (4 if cross else 5),
            holdout_stacks=tuple(args.holdout_stack),
            holdout_right=args.holdout_right,
            align=not args.no_align,
            seed=args.seed,
        )

        tcfg = TrainConfig(
            width=pick(args.width, rec.width),
            steps=gan,
            pretrain_steps=pre,
            batch_size=pick(args.batch, rec.batch),
            alpha=args.alpha,
            fg_weight=args.fg_weight,
            lr_g=pick(args.lr_g, rec.lr_g),
            lr_d=args.lr_d,
            val_every=pick(args.val_every, rec.val_every),
            max_val_pairs=pick(args.max_val_pairs, rec.max_val_pairs),
            seed=args.seed,
            device=str(device),
            amp=rec.amp if args.amp == "auto" else args.amp,
            deterministic=device.type == "cpu",
            progress=not args.quiet,
            recipe=rec.name,
            residual=pick(args.residual, rec.residual),
            dpm_film=args.dpm_film,
            disk_features=args.disk_features,
            disk_gain=_disk_gain(args),
            loss=pick(args.loss, rec.loss),
            lr_schedule=pick(args.lr_schedule, rec.lr_schedule),
            warmup_steps=rec.warmup_steps,
            time_budget_s=None if args.time_budget is None else args.time_budget * 60.0,
            channels_last=rec.channels_last,
            select_on=rec.select_on,
            sampling=sampling,
            min_useful_steps=rec.min_useful_steps,
            init_from=args.init,
            ema_decay=args.ema,
            pcc_weight=args.pcc_weight,
            l1_weight=args.l1_weight,
            lowpass_weight=args.lowpass_weight,
            lowpass_sigma_px=_lowpass_sigma(args),
            dz_weight=args.dz_weight,
            focus_map_weight=args.focus_map_weight,
            focus_map_level=args.focus_map_level,
            adv_weight=pick(args.adv_weight, FAST_ADV_WEIGHT) if fast_gan else None,
            disc_blur_px=pick(args.disc_blur, FAST_DISC_BLUR_PX if fast_gan else 0.0),
            disc_conditional=bool(args.disc_conditional),
            g_updates=1 if fast_gan else TrainConfig.g_updates,
            d_updates=1 if fast_gan else TrainConfig.d_updates,
        )

        def say(msg: str) -> None:
            if env.is_main and not args.quiet:
                print(msg, file=sys.stderr)

        stacks = load_stacks(args.data, args.z_step, args.channel)
        labels = load_stacks(args.labels, args.z_step, args.channel) if cross else []
        second = (
            load_stacks(second_exposure, args.z_step, args.channel)
            if second_exposure is not None
            else None
        )
        cache = args.cache or _default_cache()
        # rank 0 prepares (and caches) the stacks first; the others then read the cache
        data = None
        for turn in (True, False):
            if env.is_main == turn:
                if cross:
                    data = build_crossmodal_pairs(
                        stacks, labels, pcfg, cache, CrossModalConfig(), progress=say
                    )
                else:
                    data = build_pairs(stacks, pcfg, cache, progress=say, second=second)
            barrier(env)
        assert data is not None
        s = data.summary
        say(
            f"data: {s.n_stacks} stack(s), regions {s.regions}, pairs {s.pairs} "
            f"(train = per epoch), DPM range {s.dpm_range_um} um"
        )
        if rec.name == "fast" and tcfg.steps:
            phases = (
                f"{total} steps = {tcfg.pretrain_steps} {tcfg.loss.upper()} + {tcfg.steps} "
                f"GAN iterations (1 G + 1 D update each; adversarial weight "
                f"{tcfg.adv_weight:g}, discriminator blur {tcfg.disc_blur_px:g} px"
                + (", conditional on the input" if tcfg.disc_conditional else "")
                + ")"
            )
        elif rec.name == "fast":
            phases = f"{tcfg.pretrain_steps} {tcfg.loss.upper()} steps (no GAN phase)"
        else:
            phases = (
                f"{total} steps = {tcfg.pretrain_steps} {tcfg.loss.upper()}-only + {tcfg.steps} "
                "GAN iterations (6 G + 3 D updates each)"
            )
        budget = f", time budget {args.time_budget:g} min" if args.time_budget else ""
        say(
            f"training (recipe {rec.name}): width {tcfg.width}"
            + (" residual" if tcfg.residual else "")
            + (", DPM-modulated levels" if tcfg.dpm_film else "")
            + (", defocus-disk features" if tcfg.disk_features else "")
            + f", {phases}, batch {tcfg.batch_size}, patch {patch}"
            + (f" inside {region} px regions" if region != patch else "")
            + f", lr {tcfg.lr_g:g} {tcfg.lr_schedule}{budget}, device {device}"
            + (f", starting from {args.init}" if args.init else "")
            + (f", weight average (EMA) {tcfg.ema_decay:g}" if tcfg.ema_decay else "")
            + (f", correlation loss weight {tcfg.pcc_weight:g}" if tcfg.pcc_weight else "")
            + (f", absolute-error weight {tcfg.l1_weight:g}" if tcfg.l1_weight else "")
            + (
                f", smoothed-error weight {tcfg.lowpass_weight:g} (σ {tcfg.lowpass_sigma_px:g} px)"
                if tcfg.lowpass_weight
                else ""
            )
            + (f", error weight 1 + {tcfg.dz_weight:g}|DPM|/10 um" if tcfg.dz_weight else "")
            + (
                f", focus-map weight {tcfg.focus_map_weight:g} ({tcfg.focus_map_level} level)"
                if tcfg.focus_map_weight
                else ""
            )
            + (f", {env.world_size} processes" if env.distributed else "")
        )
        command = _command_line()
        trainer = Trainer(
            tcfg, data, out, optics=_optics(args, stacks), command=command, env=env, log=say
        )
        if trainer.sampler is not None:
            say(
                f"sampling: {trainer.sampler.n_peaks} objects in "
                f"{len(trainer.sampler.regions)} training regions"
            )
        result = trainer.fit(resume=args.resume)
        if env.is_main:
            print(
                f"model: {result.model_path} (kept step {result.best_step}, "
                + (
                    "the last one"
                    if tcfg.select_on == "last"
                    else f"lowest {tcfg.select_on} {result.best_score:.4g}"
                )
                + f"; validation MAE "
                f"{result.best_val_mae:.4g}, before training {result.initial_val_mae:.4g}); "
                f"{result.steps} steps in {result.wall_s:.0f} s; trained DPM range "
                f"{s.dpm_range_um[0]:g}..{s.dpm_range_um[1]:g} um"
                + (f"; curve: {result.curve_path}" if result.curve_path else "")
                + (
                    "; stopped at the time budget"
                    if trainer_stopped_by(out) == "time_budget"
                    else ""
                )
            )
        return 0
    except OSError as exc:  # e.g. a full disk while writing the model or a checkpoint
        raise InputError(f"cannot write the training output: {exc}") from None
    finally:
        cleanup(env)


def trainer_stopped_by(out: Path) -> str | None:
    """``training.stopped_by`` of the model card just written, if readable."""
    import json

    try:
        return json.loads((out / "card.json").read_text())["training"].get("stopped_by")
    except (OSError, ValueError, KeyError, TypeError):
        return None
