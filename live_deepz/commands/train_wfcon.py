"""``live-deepz train --arch wfcon3d``: train WFCON-Net on wide-field / confocal stack pairs.

Example (CPU-sized)::

    live-deepz train --arch wfcon3d --data wf1.ome.tif wf2.ome.tif \\
        --labels conf1.ome.tif conf2.ome.tif -o models/wfcon --width 0.125 \\
        --patch 64 --patch-z 12 --steps 1200            # L1 only (CPU)
    ... --steps 1500 --pretrain-steps 1200 --vgg-weights vgg19.safetensors  # + 300 GAN

Each confocal stack is registered to its wide-field stack (``--registration psf``, the
paper's PSF-based method) before training. See :mod:`live_deepz.training.wfcon`.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from ..errors import InputError


def add_wfcon_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("3D models (--arch wfcon3d: wide-field stack → confocal stack)")
    g.add_argument(
        "--arch",
        choices=("deepz-unet", "wfcon3d"),
        default="deepz-unet",
        help="model family: deepz-unet (Deep-Z / Deep-Z+, default) or wfcon3d (WFCON-Net)",
    )
    g.add_argument("--patch-z", type=int, default=12, help="wfcon3d: patch planes (paper 12)")
    g.add_argument(
        "--registration",
        choices=("psf", "xcorr", "none"),
        default="psf",
        help="wfcon3d: how each confocal stack is aligned to its wide-field stack (psf)",
    )
    g.add_argument(
        "--vgg-weights",
        default=None,
        metavar="FILE",
        help="wfcon3d: VGG-19 weights (safetensors, torchvision keys) for the perceptual loss; "
        "without it the model trains without that term (the card says so)",
    )
    g.add_argument("--lambda-l1", type=float, default=2.0, help="wfcon3d: L1 weight λ (2)")
    g.add_argument("--zeta-vgg", type=float, default=0.01, help="wfcon3d: VGG weight ζ (0.01)")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def run_wfcon(args: argparse.Namespace) -> int:
    from ..training.wfcon import WFConTrainConfig, load_stack_pairs, train_wfcon

    if not args.labels:
        raise InputError("--arch wfcon3d needs --labels: one confocal stack per --data stack")
    out = args.output
    if getattr(args, "overwrite", False) and (out / "checkpoint").exists():
        import shutil

        shutil.rmtree(out / "checkpoint")
    patch = getattr(args, "patch", None) or 64
    # --steps is the TOTAL (as for Deep-Z): the first --pretrain-steps are L1-only, the
    # rest GAN iterations; without --steps, L1 only (300 steps, or --pretrain-steps)
    if args.steps is None:
        pre = 300 if args.pretrain_steps is None else int(args.pretrain_steps)
        gan = 0
    else:
        pre = int(args.steps) if args.pretrain_steps is None else int(args.pretrain_steps)
        if pre > args.steps:
            raise InputError(
                f"--pretrain-steps {pre} is more than --steps {args.steps}: --steps is the "
                "TOTAL (L1 pre-training + GAN iterations)"
            )
        gan = int(args.steps) - pre
    amp = getattr(args, "amp", "auto")
    device = getattr(args, "device", "auto")
    cfg = WFConTrainConfig(
        width=args.width or 0.125,
        patch=(int(args.patch_z), int(patch), int(patch)),
        batch=args.batch if args.batch not in (None, 20) else 2,
        pretrain_steps=pre,
        gan_steps=gan,
        lr_g=args.lr_g if args.lr_g not in (None, 1e-4) else 1e-3,
        lr_d=args.lr_d if args.lr_d not in (None, 3e-5) else 1e-4,
        l1_weight=float(args.lambda_l1),
        vgg_weight=float(args.zeta_vgg),
        val_every=int(args.val_every or 50),
        seed=int(args.seed or 0),
        amp="off" if amp == "auto" else amp,
        device=device,
    )
    quiet = bool(getattr(args, "quiet", False))
    print(f"registering {len(args.data)} stack pair(s) ({args.registration})")
    pairs, z_step, px = load_stack_pairs(
        list(args.data), list(args.labels), args.registration, verbose=not quiet
    )
    print(
        f"training wfcon3d width {cfg.width}: {cfg.pretrain_steps} L1 + {cfg.gan_steps} GAN "
        f"steps, batch {cfg.batch} of {list(cfg.patch)} patches"
        + ("" if args.vgg_weights else "; no --vgg-weights: no perceptual term")
    )
    res = train_wfcon(
        pairs,
        out,
        cfg,
        z_step_um=z_step,
        pixel_size_um=px,
        vgg_weights=args.vgg_weights,
        resume=bool(getattr(args, "resume", False)),
        progress=not quiet,
        command="live-deepz train " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
    )
    print(
        f"wrote {res['model']}: best validation L1 {res['best_val_l1']:.4f} at step "
        f"{res['best_step']} of {res['steps']} in {res['wall_s'] / 60:.1f} min"
    )
    return 0
