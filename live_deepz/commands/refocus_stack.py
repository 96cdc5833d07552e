"""``live-deepz refocus --stack``: a wide-field z-stack → a confocal-like z-stack (WFCON-Net).

Example::

    live-deepz refocus --stack wf.ome.tif --model models/wfcon -o conf_pred.ome.tif
    live-deepz refocus --stack wf_1um.ome.tif --z-subsample 2 --model models/wfcon -o out.ome.tif

The stack is normalised to [0, 1] (the card's percentiles), run through the 3D generator in
overlapping 3D tiles (``--tile-3d Z Y X``) and written as float32 OME-TIFF in the normalised
confocal scale. ``--z-subsample K``: the input was taken every K of the model's z steps;
the missing planes are interpolated linearly first (the paper's Fig. 9), so the output has
``(Z - 1) * K + 1`` planes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ..errors import InputError


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("3D models (wide-field stack → confocal stack, WFCON-Net)")
    g.add_argument("--stack", default=None, help="a wide-field z-stack for a 3D model")
    g.add_argument(
        "--z-subsample",
        type=int,
        default=1,
        choices=(1, 2, 4),
        help="the stack has a plane every K model z-steps; interpolate the rest (1)",
    )
    g.add_argument(
        "--tile-3d",
        nargs=3,
        type=int,
        default=None,
        metavar=("Z", "Y", "X"),
        help="3D tile size (default 32 128 128; overlap 4 16 16)",
    )


def run_stack(args: argparse.Namespace) -> int:
    from ..engine import DEFAULT_TILE, infer_stack  # type: ignore[import-not-found]
    from ..io import read_stack, write_ome_tiff
    from ..modelfile import load_model, resolve_model
    from ..stack3d import interpolate_planes, unit_normalize

    if args.input:
        raise InputError("give either an image/video input or --stack STACK, not both")
    if args.model and "," in args.model:
        raise InputError("--stack takes one model")
    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    model = load_model(resolve_model(args.model), device="cpu")
    arch_type = model.card.architecture.get("type")
    if arch_type != "wfcon3d":
        raise InputError(
            f"--stack needs a 3D (wfcon3d) model; {model.card.name!r} is a {arch_type!r} model "
            "that refocuses single images (use it without --stack)"
        )
    st = read_stack(args.stack, z_step_um=float(model.card.extra.get("z_step_um", 0.5)))
    if st.data.ndim != 3:
        raise InputError(f"{args.stack}: a single-channel (Z, Y, X) stack is needed")
    k = int(args.z_subsample)
    t0 = time.perf_counter()
    norm = unit_normalize(st.data)
    if k > 1:
        norm = interpolate_planes(norm, k)
    if len(norm) < 2:
        raise InputError(f"{args.stack}: {len(norm)} plane(s); a 3D model needs a z-stack")
    tile = tuple(args.tile_3d) if args.tile_3d else DEFAULT_TILE
    pred = infer_stack(model.generator, norm, tile=tile, progress=not args.no_progress)
    z_step = float(model.card.extra.get("z_step_um", st.z_step_um / k))
    tmp = out.with_name(out.name + ".partial.tif")
    try:
        write_ome_tiff(
            tmp,
            pred,
            axes="ZYX",
            pixel_size_um=st.pixel_size_um,
            z_step_um=z_step,
            channel_names=["confocal (predicted)"],
            extra_metadata={
                "generator": "live-deepz refocus --stack",
                "model": model.card.name,
                "weights_sha256": model.weights_sha256,
                "input": str(args.stack),
                "z_subsample": k,
                "intensity": "normalised confocal scale (the card's normalization)",
                "command": "live-deepz refocus " + " ".join(sys.argv[2:]),
            },
        )
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    print(
        f"wrote {out} {pred.shape} float32 from {st.data.shape[0]} planes"
        + (f" (x{k} interpolated)" if k > 1 else "")
        + f" in {time.perf_counter() - t0:.1f} s"
    )
    return 0
