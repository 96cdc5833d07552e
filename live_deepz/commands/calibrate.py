"""``live-deepz calibrate``: estimate a sample's tilt / curvature surface from one image.

The image is refocused over a virtual focus sweep with the Deep-Z model; the in-focus
position of every bead (or tile) is fitted by a plane, quadratic, cylinder or smooth
surface, checked against the model's axial range, and written as a calibration JSON (and,
with ``--dpm-out``, the DPM as a float32 TIFF in µm) that ``refocus`` and the live app can
use. The calibration and engine are imported inside :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="TIFF with one frame of the sample (raw)")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="calibration JSON to write"
    )
    parser.add_argument("--dpm-out", type=Path, help="also write the DPM (float32 TIFF, µm)")
    parser.add_argument("--model", help="model name or folder (default: the bundled default model)")
    parser.add_argument(
        "--fit",
        choices=("plane", "quadratic", "cylinder", "smooth"),
        default="plane",
        help="surface model (default: plane → tilt angle and azimuth)",
    )
    parser.add_argument(
        "--method",
        choices=("beads", "tiles"),
        default="beads",
        help="focus per bead (sparse beads) or per tile (extended samples); default beads",
    )
    parser.add_argument(
        "--pixel-size-um",
        type=float,
        help="camera pixel size in the sample (default: the model card's)",
    )
    parser.add_argument(
        "--sweep",
        default="-10:10:0.5",
        help="virtual focus sweep start:stop:step in µm, clipped to the model's range "
        "(default -10:10:0.5; write --sweep=-5:5:0.5 for a negative start)",
    )
    parser.add_argument("--tile-px", type=int, default=64, help="tile size for --method tiles")
    parser.add_argument(
        "--plane", type=int, help="pick this plane when the TIFF holds a stack (0-based)"
    )
    parser.add_argument(
        "--preview",
        action="store_true",
        help="also refocus the image onto the fitted surface and report bead FWHM before/after",
    )
    parser.add_argument("--backend", default="auto", help="inference backend (default auto)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--precision", default="auto", help="fp32, bf16, fp16 or auto")
    parser.add_argument(
        "--force",
        action="store_true",
        help="save a calibration below the quality gate (too few usable focus measurements, "
        "no agreement, a model known to fail on the sample); its problems are kept as warnings",
    )
    parser.add_argument("--json", action="store_true", help="print the calibration as JSON")


def _read_image(path: Path, plane: int | None) -> Any:
    import numpy as np
    import tifffile

    if not path.exists():
        raise InputError(f"image file {str(path)!r} does not exist")
    try:
        img = tifffile.imread(path)
    except Exception as exc:
        raise InputError(f"cannot read {str(path)!r} as a TIFF: {exc}") from None
    arr = np.asarray(img)
    squeezed = arr.reshape([n for n in arr.shape if n != 1] or [1])
    if squeezed.ndim == 2:
        return squeezed
    if plane is not None and squeezed.ndim == 3:
        if not 0 <= plane < squeezed.shape[0]:
            raise InputError(f"--plane {plane} is outside the stack's {squeezed.shape[0]} planes")
        return squeezed[plane]
    raise InputError(
        f"{str(path)!r} holds an array of shape {arr.shape}; calibrate needs one 2D frame "
        "(pass --plane N to pick a plane of a stack)"
    )


def run(args: argparse.Namespace) -> int:
    from ..modelfile import load_model, resolve_model

    model = load_model(resolve_model(args.model))
    card_px = float(model.card.optics["pixel_size_um"])
    px = card_px if args.pixel_size_um is None else float(args.pixel_size_um)
    if abs(px - card_px) > 1e-6 * card_px:
        print(
            f"warning: --pixel-size-um {px:g} differs from the model's {card_px:g} µm: "
            "Deep-Z is only valid at the pixel size it was trained for",
            file=sys.stderr,
        )
    image = _read_image(args.image, args.plane)

    from ..calibration import CalibrationWizardModel, engine_refocus_fn, known_failures_of

    refocus = engine_refocus_fn(model, args.backend, precision=args.precision, device=args.device)

    def progress(step: str, fraction: float, message: str) -> None:
        if not args.json and sys.stderr.isatty():
            print(f"\r{step}: {message:70.70s}", end="", file=sys.stderr, flush=True)

    opts: dict[str, Any] = {"tile_px": args.tile_px} if args.method == "tiles" else {}
    wiz = CalibrationWizardModel(
        refocus,
        px,
        method=args.method,
        fit_kind=args.fit,
        sweep_um=args.sweep,
        estimate_options=opts,
        progress=progress,
        known_failures=known_failures_of(model.card),
        force=args.force,
    )
    steps = [
        lambda: wiz.set_image(image, args.image.name),
        wiz.estimate,
        wiz.fit,
    ]
    if args.preview:
        steps.append(wiz.preview)
    steps.append(lambda: wiz.save(args.output, args.dpm_out))
    for step in steps:
        res = step()
        if not args.json and sys.stderr.isatty():
            print(file=sys.stderr)
        if not res.ok:
            print(f"live-deepz calibrate: error: {res.message}", file=sys.stderr)
            return 1
    assert wiz.surface_fit is not None and wiz.focus_map is not None
    if args.json:
        print(json.dumps(wiz.saved, indent=2))
        return 0
    fm = wiz.focus_map
    what = "beads" if fm.method == "beads" else "tiles"
    print(f"{args.image}: {len(fm)} {what} in focus within the sweep")
    print(wiz.surface_fit.summary())
    if wiz.preview_data is not None:
        sb, sa = wiz.preview_data.stats_before, wiz.preview_data.stats_after
        if sb["median_um"] is not None and sa["median_um"] is not None:
            print(
                f"median lateral FWHM {sb['median_um']:.2f} µm ({sb['n']} beads) → "
                f"{sa['median_um']:.2f} µm ({sa['n']} beads) after refocusing"
            )
    print(f"wrote {args.output}" + (f" and {args.dpm_out}" if args.dpm_out else ""))
    return 0
