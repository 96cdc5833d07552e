"""``live-deepz refocus``: refocus images, time-lapses, z-stacks offline onto planes/surfaces.

Examples::

    live-deepz refocus img.tif --planes=-10:10:0.5 -o img.planes.ome.tif
    live-deepz refocus movie.ome.tif --tilt-deg 1.5 --tilt-azimuth-deg 30 --planes=-2:2:1 \
        -o out.ome.tif
    live-deepz refocus stack.ome.tif --input-plane 12 --surface surface.json -o out.ome.zarr
    live-deepz refocus twocolour.ome.tif --model green,red --offset-um 4 -o out.ome.tif

The output holds ``(T, [C,] Z, Y, X)`` float32 planes in normalised intensity, or with
``--units counts`` in the input's camera units (see ``live_deepz.recording``), with the plane
offsets, the DPM definition, the model's identity and the optics;
``live_deepz.recording.open_recording`` reads it back.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..dpm import StaticPlanePlan, parse_planes, surface_from_spec, tilted_plane
from ..errors import InputError

__all__ = [
    "add_arguments",
    "add_plan_arguments",
    "add_units_argument",
    "build_plan",
    "load_surface_file",
    "run",
]


def add_units_argument(parser: argparse.ArgumentParser) -> None:
    """``--units normalized|counts`` (shared by refocus, record and complete)."""
    parser.add_argument(
        "--units",
        choices=("normalized", "counts"),
        default="normalized",
        help="intensity of the virtual planes: 'normalized' (the network's output, "
        "(raw - background) / scale; default) or 'counts' (the normalisation undone: the "
        "input's camera units)",
    )


def add_plan_arguments(parser: argparse.ArgumentParser, default_planes: str | None) -> None:
    """The DPM options shared by ``refocus`` and ``record``."""
    g = parser.add_argument_group("virtual planes (DPMs)")
    g.add_argument(
        "--planes",
        default=None,
        help="plane offsets in µm, 'start:stop:step' (both ends included), a number or a "
        "comma list; with a surface, offsets from the surface"
        + (f" (default {default_planes})" if default_planes else ""),
    )
    g.add_argument("--offset-um", type=float, default=None, help="one uniform plane at D µm")
    g.add_argument("--tilt-deg", type=float, default=None, help="refocus onto a tilted plane")
    g.add_argument(
        "--tilt-azimuth-deg",
        type=float,
        default=0.0,
        help="in-plane direction in which the tilted plane gets deeper (0 = +x, 90 = +y)",
    )
    g.add_argument(
        "--surface",
        default=None,
        help="surface.json from `live-deepz calibrate` (or a surface spec JSON) to refocus onto",
    )
    g.add_argument(
        "--dpm",
        default=None,
        help="a DPM TIFF in µm: (H, W) surface (plus --planes offsets) or (K, H, W) planes",
    )
    g.add_argument(
        "--allow-out-of-range",
        action="store_true",
        help="extrapolate beyond the model's trained axial range (warns) instead of refusing",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input", nargs="?", help="TIFF / OME-TIFF: (Y,X), (T,Y,X), z-stack, multi-channel"
    )
    parser.add_argument("-o", "--output", required=True, help="NAME.ome.tif or NAME.ome.zarr")
    add_plan_arguments(parser, default_planes=None)
    parser.add_argument(
        "--input-plane",
        type=int,
        default=None,
        help="the plane of a z-stack to refocus from (0-based; required for z-stacks)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="model name or folder; one per channel, comma-separated (default: the bundled one)",
    )
    parser.add_argument("--backend", default="auto", help="auto, torch, compile, ... (see info)")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16, fp16")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--tile", type=int, default=512, help="tile edge for large frames (0: never tile)"
    )
    parser.add_argument("--format", choices=("tiff", "zarr"), default=None)
    add_units_argument(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from .refocus_stack import add_stack_arguments

    add_stack_arguments(parser)


# --------------------------------------------------------------------------- surfaces


def _quadratic(coeffs: dict[str, float], shape: tuple[int, int], px: float) -> np.ndarray:
    h, w = shape
    y = (np.arange(h, dtype=np.float64) - (h - 1) / 2.0)[:, None] * px
    x = (np.arange(w, dtype=np.float64) - (w - 1) / 2.0)[None, :] * px
    c = {k: float(coeffs.get(k, 0.0)) for k in ("c0", "x", "y", "xx", "xy", "yy")}
    z = c["c0"] + c["x"] * x + c["y"] * y + c["xx"] * x * x + c["xy"] * x * y + c["yy"] * y * y
    return z.astype(np.float32)


def load_surface_file(
    path: str | os.PathLike[str], shape: tuple[int, int], pixel_size_um: float
) -> tuple[np.ndarray, dict[str, Any]]:
    """A surface ``(H, W)`` µm and its description from a surface JSON file.

    Accepted: a ``surface.json`` of ``live-deepz calibrate`` (its ``surface_spec`` when it
    has one; ``fit: plane`` → tilt/azimuth/offset; ``fit: quadratic`` → its coefficients;
    ``fit: smooth`` → the calibration's spline), or a bare surface spec
    (``{"kind": "tilted_plane", ...}``, see ``live_deepz.dpm.surface_from_spec``), or
    ``{"fit": "plane", "tilt_deg": A, "azimuth_deg": B, "offset_um": D}``.
    """
    p = Path(path).expanduser()
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"surface file {p} does not exist") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read surface file {p} as JSON: {exc}") from None
    if not isinstance(d, dict):
        raise InputError(f"surface file {p} must hold a JSON object")
    if "shape" in d and isinstance(d["shape"], list) and tuple(d["shape"]) != tuple(shape):
        raise InputError(
            f"surface file {p} was calibrated on {d['shape'][0]}×{d['shape'][1]} px frames, "
            f"but the frames are {shape[0]}×{shape[1]} px; calibrate again for this size"
        )
    px = float(d.get("pixel_size_um") or pixel_size_um)
    spec = d.get("surface_spec") or d.get("spec") or (d if "kind" in d else None)
    if isinstance(spec, dict):
        return surface_from_spec(spec, shape, px), dict(spec)
    fit = d.get("fit")
    src = {"kind": "array", "source": p.name, "fit": fit}
    if fit == "plane":
        try:
            tilt, az = float(d["tilt_deg"]), float(d.get("azimuth_deg", 0.0))
        except (KeyError, TypeError, ValueError):
            raise InputError(
                f"surface file {p}: a plane fit needs tilt_deg (and azimuth_deg)"
            ) from None
        off = float(d.get("offset_um", (d.get("coefficients") or {}).get("c0", 0.0)))
        spec = {"kind": "tilted_plane", "tilt_deg": tilt, "azimuth_deg": az, "offset_um": off}
        return tilted_plane(shape, px, tilt, az, offset_um=off), spec
    if fit == "quadratic" and isinstance(d.get("coefficients"), dict):
        return _quadratic(d["coefficients"], shape, px), src
    if fit in ("smooth", "cylinder"):
        try:
            from ..calibration import SurfaceFit  # type: ignore[import-not-found]
        except ImportError:
            raise InputError(
                f"surface file {p} holds a {fit!r} fit, which needs live_deepz.calibration"
            ) from None
        return SurfaceFit.from_json(d).dpm(shape), src
    raise InputError(
        f"surface file {p}: cannot tell the surface (no 'surface_spec', 'kind' or known 'fit'); "
        "give a surface.json from `live-deepz calibrate`, a surface spec such as "
        '{"kind": "tilted_plane", "tilt_deg": 1, "azimuth_deg": 0}, or '
        '{"fit": "plane", "tilt_deg": 1, "azimuth_deg": 0, "offset_um": 0}'
    )


def core_pixel_size_um(core: Any, model: Any) -> float:
    """The microscope's pixel size (µm), or the model card's when the core has none set."""
    try:
        px = float(core.getPixelSizeUm())
    except Exception:
        px = 0.0
    if not px > 0:
        px = float(model.card.optics.get("pixel_size_um", 1.0))
    return px


def build_plan(
    args: argparse.Namespace,
    shape: tuple[int, int],
    pixel_size_um: float,
    default_planes: str | None = None,
) -> Any:
    """The plane plan the DPM options describe, for frames of ``shape``."""
    sources = [
        n
        for n, v in (
            ("--tilt-deg", args.tilt_deg),
            ("--surface", args.surface),
            ("--dpm", args.dpm),
        )
        if v is not None
    ]
    if len(sources) > 1:
        raise InputError(f"give one surface at most, not {' and '.join(sources)}")
    if args.planes is not None and args.offset_um is not None:
        raise InputError("give --planes or --offset-um, not both")
    planes: Any = args.planes
    if args.offset_um is not None:
        planes = [args.offset_um]
    if planes is None:
        planes = "0" if sources else default_planes
    if planes is None:
        raise InputError(
            "say where to refocus: --planes=-10:10:0.5, --offset-um D, --tilt-deg A, "
            "--surface surface.json or --dpm dpm.tif"
        )
    px = float(pixel_size_um)
    if args.tilt_deg is not None:
        spec = {
            "kind": "tilted_plane",
            "tilt_deg": args.tilt_deg,
            "azimuth_deg": args.tilt_azimuth_deg,
        }
        return StaticPlanePlan.from_spec(planes, spec, shape, px)
    if args.surface is not None:
        surface, spec = load_surface_file(args.surface, shape, px)
        if spec.get("kind") != "array":
            return StaticPlanePlan.from_spec(planes, spec, shape, px)
        return StaticPlanePlan(planes, surface, surface_spec=spec)
    if args.dpm is not None:
        import tifffile

        p = Path(args.dpm).expanduser()
        try:
            arr = np.asarray(tifffile.imread(p))
        except FileNotFoundError:
            raise InputError(f"DPM file {p} does not exist") from None
        except Exception as exc:
            raise InputError(f"cannot read DPM file {p} as a TIFF: {exc}") from None
        squeezed = arr.reshape([n for n in arr.shape if n != 1] or [1])
        if squeezed.ndim == 3:
            if args.planes is not None or args.offset_um is not None:
                raise InputError(
                    f"DPM file {p} holds {squeezed.shape[0]} planes already; drop --planes"
                )
            from ..engine import ArrayPlan  # type: ignore[import-not-found]

            plan = ArrayPlan(squeezed, source=str(p))
            plan.dpms_for_frame(0, 0.0, shape)  # size check
            return plan
        return StaticPlanePlan(
            planes,
            _surface_of_size(squeezed, shape, p),
            surface_spec={"kind": "array", "path": str(p.resolve())},
        )
    return StaticPlanePlan(parse_planes(planes))


def _surface_of_size(arr: np.ndarray, shape: tuple[int, int], p: Path) -> np.ndarray:
    if arr.ndim != 2 or arr.shape != tuple(shape):
        raise InputError(
            f"DPM file {p} has shape {arr.shape}; it must be (H, W) = {tuple(shape)} µm "
            "(or (K, H, W))"
        )
    if arr.dtype.kind not in "iuf":
        raise InputError(f"DPM file {p} must hold real numbers (µm), got {arr.dtype}")
    return arr


def load_models(spec: str | None) -> list[Any]:
    from ..modelfile import load_model, resolve_model

    names = [None] if spec is None else [s.strip() for s in spec.split(",")]
    if any(n == "" for n in names):
        raise InputError(f"--model {spec!r}: empty model name in the list")
    loaded: dict[Any, Any] = {}
    return [loaded.setdefault(n, load_model(resolve_model(n))) for n in names]


# --------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    if getattr(args, "stack", None):
        from .refocus_stack import run_stack

        return run_stack(args)
    if not args.input:
        raise InputError("give an image / video to refocus (or --stack STACK for a 3D model)")
    from ..engine import read_input, refocus_file  # type: ignore[import-not-found]

    models = load_models(args.model)
    source = read_input(args.input, input_plane=args.input_plane)
    try:
        px = source.pixel_size_um or float(models[0].card.optics.get("pixel_size_um", math.nan))
        if not (px and math.isfinite(px) and px > 0):
            px = 1.0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plan = build_plan(args, (source.height, source.width), px)
        for w in caught:
            print(f"live-deepz refocus: warning: {w.message}", file=sys.stderr)
    except BaseException:
        source.close()
        raise
    summary = refocus_file(
        source,
        args.output,
        plan,
        models,
        backend=args.backend,
        precision=args.precision,
        device=args.device,
        tile=args.tile,
        allow_out_of_range=args.allow_out_of_range,
        format=args.format,
        overwrite=args.overwrite,
        units=args.units,
        progress=not args.no_progress,
        metadata={"command": "live-deepz refocus " + " ".join(sys.argv[2:])},
    )
    for line in summary.lines():
        print(line)
    return 0
