"""``live-deepz train``: train Deep-Z (or Deep-Z+ with ``--labels``) on your own z-stacks.

Examples::

    live-deepz train --data fov1.ome.tif fov2.ome.tif -o models/mine
    live-deepz train --data wf1.tif --labels confocal1.tif --z-step 0.2 -o models/plus
    torchrun --nproc_per_node=4 -m live_deepz.cli train --data *.tif -o models/big  # DDP

Defaults follow the device: on CUDA the paper's width-1.0 network with 1000 L1 pre-training
steps and 20000 GAN iterations (the paper ran ~400k); on a CPU a width-0.25 network trained
with 2000 L1-only steps (the GAN phase costs 9 network updates per iteration, too slow on a
CPU). Prepared stacks are cached (``--cache``) and reused by later runs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from ..errors import InputError
from ..optics import Optics

#: (width, pretrain steps, GAN steps) when not given, per device type.
AUTO_DEFAULTS = {"cuda": (1.0, 1000, 20000), "cpu": (0.25, 2000, 0)}


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
    d.add_argument("--patch", type=int, default=256, help="training patch side, px (default 256)")
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
        help="model folder to write (its name is the model's name)",
    )
    t.add_argument(
        "--width", type=float, help="network width (1.0 = paper; default 1.0 on CUDA, 0.25 on CPU)"
    )
    t.add_argument("--steps", type=int, help="GAN iterations (default 20000 on CUDA, 0 on CPU)")
    t.add_argument(
        "--pretrain-steps",
        type=int,
        help="L1-only generator steps first (default 1000 on CUDA, 2000 on CPU)",
    )
    t.add_argument("--batch", type=int, default=20, help="global batch size (default 20)")
    t.add_argument(
        "--val-every",
        type=int,
        default=50,
        help="validate and checkpoint every N steps (default 50)",
    )
    t.add_argument(
        "--max-val-pairs", type=int, default=256, help="validation pairs used (default 256)"
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
    t.add_argument("--lr-g", type=float, default=1e-4, help="generator learning rate")
    t.add_argument("--lr-d", type=float, default=3e-5, help="discriminator learning rate")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the training checkpointed in the output folder",
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
        help="mixed precision: --amp alone = on (bf16 on CPU); default auto (CUDA only)",
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


def run(args: argparse.Namespace) -> int:
    if getattr(args, "arch", "deepz-unet") == "wfcon3d":
        from .train_wfcon import run_wfcon

        return run_wfcon(args)
    from ..training import (
        CrossModalConfig,
        PairConfig,
        TrainConfig,
        build_crossmodal_pairs,
        build_pairs,
        load_stacks,
    )
    from ..training.ddp import barrier, cleanup, init_distributed
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
        width, pre, gan = AUTO_DEFAULTS["cuda" if device.type == "cuda" else "cpu"]
        cross = args.labels is not None
        pcfg = PairConfig(
            patch=args.patch,
            z_half_range_um=args.z_half_range,
            targets_per_input=args.targets_per_input or (4 if cross else 5),
            holdout_stacks=tuple(args.holdout_stack),
            holdout_right=args.holdout_right,
            align=not args.no_align,
            seed=args.seed,
        )
        tcfg = TrainConfig(
            width=args.width if args.width is not None else width,
            steps=args.steps if args.steps is not None else gan,
            pretrain_steps=args.pretrain_steps if args.pretrain_steps is not None else pre,
            batch_size=args.batch,
            alpha=args.alpha,
            fg_weight=args.fg_weight,
            lr_g=args.lr_g,
            lr_d=args.lr_d,
            val_every=args.val_every,
            max_val_pairs=args.max_val_pairs,
            seed=args.seed,
            device=str(device),
            amp=args.amp,
            deterministic=device.type == "cpu",
            progress=not args.quiet,
        )

        def say(msg: str) -> None:
            if env.is_main and not args.quiet:
                print(msg, file=sys.stderr)

        stacks = load_stacks(args.data, args.z_step, args.channel)
        labels = load_stacks(args.labels, args.z_step, args.channel) if cross else []
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
                    data = build_pairs(stacks, pcfg, cache, progress=say)
            barrier(env)
        assert data is not None
        s = data.summary
        say(
            f"data: {s.n_stacks} stack(s), regions {s.regions}, pairs {s.pairs} "
            f"(train = per epoch), DPM range {s.dpm_range_um} um"
        )
        say(
            f"training: width {tcfg.width}, {tcfg.pretrain_steps} L1 steps + {tcfg.steps} GAN "
            f"iterations, batch {tcfg.batch_size}, patch {pcfg.patch}, device {device}"
            + (f", {env.world_size} processes" if env.distributed else "")
        )
        command = _command_line()
        trainer = Trainer(tcfg, data, out, optics=_optics(args, stacks), command=command, env=env)
        result = trainer.fit(resume=args.resume)
        if env.is_main:
            print(
                f"model: {result.model_path} (best validation MAE {result.best_val_mae:.4g} at "
                f"step {result.best_step}; before training {result.initial_val_mae:.4g}); "
                f"{result.steps} steps in {result.wall_s:.0f} s; trained DPM range "
                f"{s.dpm_range_um[0]:g}..{s.dpm_range_um[1]:g} um"
                + (f"; curve: {result.curve_path}" if result.curve_path else "")
            )
        return 0
    except OSError as exc:  # e.g. a full disk while writing the model or a checkpoint
        raise InputError(f"cannot write the training output: {exc}") from None
    finally:
        cleanup(env)
