"""``live-deepz simulate``: a simulated ground-truth z-stack (OME-TIFF) and its truth JSON.

Example::

    live-deepz simulate --sample beads-tilted --tilt-deg 1.5 --z-range -10 10 --z-step 0.5 \\
        --size 256 --seed 3 -o stack.ome.tif

writes ``stack.ome.tif`` (Z, Y, X) uint16 camera counts, or (Z, C, Y, X) with
``--channel all``, and ``stack.truth.json`` beside it. The z positions (OME
``Plane/PositionZ``) are stage focus positions in µm relative to the stage position that
focuses the sample's reference plane (deeper positive; see ``live_deepz.sim.samples``): for
beads on a slide the reference plane is the slide surface, for the bead volume, worm and
filaments it is the middle of the sample. The truth JSON lists the object positions (µm and
pixels) and, for each object, the stage focus at which it is sharpest (``focus_z_um``, which
includes the index-mismatch focal shift for objects inside the sample), plus the sample
parameters, optics, PSF and camera settings and the seed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..optics import Optics
from ..sample_names import SAMPLE_NAMES, sample_argument, samples_help

SAMPLES = (*SAMPLE_NAMES, "brain-slice")
"""The simulated microscope's samples plus the thick 60× brain-slice preset (simulate only)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sample",
        type=sample_argument(SAMPLES),  # type: ignore[arg-type]
        default="beads",
        metavar="SAMPLE",
        help=f"what to simulate: {samples_help(SAMPLES)}",
    )
    parser.add_argument(
        "--z-range",
        nargs=2,
        type=float,
        default=(-10.0, 10.0),
        metavar=("LOW", "HIGH"),
        help="focus range, µm, relative to the sample's reference plane (default -10 10)",
    )
    parser.add_argument("--z-step", type=float, default=0.5, help="focus step, µm (0.5)")
    parser.add_argument("--size", type=int, default=256, help="image side, pixels (256)")
    parser.add_argument("--seed", type=int, default=0, help="sample and noise seed (0)")
    parser.add_argument(
        "--noise-seed",
        type=int,
        default=None,
        help="another camera-noise draw of the same sample (default: from --seed); two "
        "stacks that differ only here are two exposures of one field (Noise2Noise targets "
        "for train --second-exposure)",
    )
    parser.add_argument("--tilt-deg", type=float, default=1.5, help="beads-tilted: tilt (1.5)")
    parser.add_argument(
        "--azimuth-deg", type=float, default=0.0, help="beads-tilted: tilt direction from +x"
    )
    parser.add_argument(
        "--radius-um", type=float, default=3600.0, help="beads-cylinder: tube radius (3600)"
    )
    parser.add_argument(
        "--thickness-um", type=float, default=20.0, help="beads-volume: slab thickness (20)"
    )
    parser.add_argument(
        "--density",
        type=float,
        default=None,
        help="bead samples: beads per 100 µm² (beads, beads-tilted, beads-cylinder; default 1) "
        "or per 1000 µm³ (beads-volume; default 0.5)",
    )
    parser.add_argument(
        "--channel",
        default="0",
        help="channel index, or 'all' for a (Z, C, Y, X) stack (worm: 0 nuclei, 1 calcium)",
    )
    parser.add_argument("--t-s", type=float, default=0.0, help="time (worm activity), s (0)")
    parser.add_argument("--exposure-ms", type=float, default=20.0, help="exposure, ms (20)")
    parser.add_argument(
        "--noise",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="camera noise (--no-noise: the expected counts, rounded)",
    )
    parser.add_argument(
        "--modality",
        choices=("widefield", "confocal"),
        default="widefield",
        help="brain-slice: which microscope images the sample (same seed = same sample)",
    )
    parser.add_argument(
        "--planes", type=int, default=32, help="brain-slice: planes spanning the slice (32)"
    )
    parser.add_argument(
        "--shift",
        nargs=3,
        type=float,
        default=(0.0, 0.0, 0.0),
        metavar=("Z", "Y", "X"),
        help="brain-slice confocal: move the content by (planes, px, px), for registration tests",
    )
    parser.add_argument("--compress", action="store_true", help="lossless zlib compression")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("-o", "--output", required=True, help="output .ome.tif path")


def _make_sample(args: argparse.Namespace) -> Any:
    from ..sim import samples

    # a sample larger than the field: defocus blur from outside it reaches in
    px = Optics().pixel_size_um
    size_um = max(args.size * px + 2 * 40.0, 120.0)
    common: dict[str, Any] = {"size_um": size_um}
    name = args.sample
    density = getattr(args, "density", None)
    if density is not None:
        if not density > 0:
            raise InputError(f"--density must be > 0, got {density}")
        if not name.startswith("beads"):
            raise InputError(f"--density applies to the bead samples, not to {name!r}")
        key = "density_per_1000um3" if name == "beads-volume" else "density_per_100um2"
        common[key] = float(density)
    if name == "beads":
        return samples.beads_flat(args.seed, **common)
    if name == "beads-tilted":
        return samples.beads_tilted(
            args.seed, tilt_deg=args.tilt_deg, azimuth_deg=args.azimuth_deg, **common
        )
    if name == "beads-cylinder":
        return samples.beads_cylinder(args.seed, radius_um=args.radius_um, **common)
    if name == "beads-volume":
        return samples.beads_volume(args.seed, thickness_um=args.thickness_um, **common)
    if name == "worm":
        return samples.worm(args.seed, **common)
    return samples.filaments(args.seed, **common)


def _truth_path(out: Path) -> Path:
    name = out.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return out.with_name(name[: -len(suffix)] + ".truth.json")
    return out.with_name(name + ".truth.json")


def run(args: argparse.Namespace) -> int:
    from ..io import write_ome_tiff
    from ..sim.camera import CameraModel
    from ..sim.render import Renderer

    if args.sample == "brain-slice":
        from .simulate_thick import run_thick

        return run_thick(args)
    if getattr(args, "modality", "widefield") != "widefield":
        raise InputError("--modality confocal is simulated for --sample brain-slice only")
    lo, hi = sorted(args.z_range)
    if args.z_step <= 0:
        raise InputError(f"--z-step must be > 0, got {args.z_step}")
    if args.size < 16 or args.size > 4096:
        raise InputError(f"--size must be within 16..4096, got {args.size}")
    if args.exposure_ms <= 0:
        raise InputError(f"--exposure-ms must be > 0, got {args.exposure_ms}")
    if args.noise_seed is not None and args.noise_seed < 0:
        raise InputError(f"--noise-seed must be >= 0, got {args.noise_seed}")
    n_planes = int(np.floor((hi - lo) / args.z_step + 1e-9)) + 1
    if n_planes > 2001:
        raise InputError(f"{n_planes} planes is too many; narrow --z-range or raise --z-step")
    z = lo + args.z_step * np.arange(n_planes)
    out = Path(args.output)

    optics = Optics()
    t0 = time.perf_counter()
    sample = _make_sample(args)
    if args.channel == "all":
        channels = list(range(sample.n_channels))
    else:
        try:
            channels = [int(args.channel)]
        except ValueError:
            raise InputError(
                f"--channel must be an integer or 'all', got {args.channel!r}"
            ) from None
        if not 0 <= channels[0] < sample.n_channels:
            raise InputError(
                f"--channel {channels[0]}: sample {args.sample!r} has {sample.n_channels} "
                f"channel(s) {list(sample.channel_names)}"
            )

    renderer = Renderer(optics, (args.size, args.size), progress=not args.quiet)
    camera = CameraModel()
    noise_seed = args.noise_seed
    entropy = [args.seed, 1] if noise_seed is None else [args.seed, 1, 1 + noise_seed]
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    stack = np.empty((n_planes, len(channels), args.size, args.size), dtype=np.uint16)
    for ci, ch in enumerate(channels):
        if not args.quiet:
            print(
                f"rendering {args.sample} channel {ch}: {n_planes} planes {lo:g}..{hi:g} µm, "
                f"{args.size}x{args.size} px"
            )
        rates = renderer.render_stack(sample, z, channel=ch, t_s=args.t_s)
        for k in range(n_planes):
            if args.noise:
                camera.expose(rates[k], args.exposure_ms, rng, out=stack[k, ci])
            else:
                camera.expected_frame(rates[k], args.exposure_ms, out=stack[k, ci])
    data = stack[:, 0] if len(channels) == 1 else stack
    axes = "ZYX" if len(channels) == 1 else "ZCYX"

    truth = _truth(args, sample, renderer, camera, z, channels)
    meta = {
        "generator": "live-deepz simulate",
        "sample": sample.name,
        "sample_params": sample.params,
        "optics": optics.to_dict(),
        "psf": renderer.psf.to_dict(),
        "camera": camera.to_dict(),
        "exposure_ms": args.exposure_ms,
        "noise": bool(args.noise),
        "seed": args.seed,
        "noise_seed": noise_seed,
        "t_s": args.t_s,
        "channels": [sample.channel_names[c] for c in channels],
        "z_convention": (
            "PositionZ: stage focus (µm) relative to the focus on the sample's reference "
            "plane, deeper positive"
        ),
        "truth_json": _truth_path(out).name,
    }
    write_ome_tiff(
        out,
        data,
        axes=axes,
        pixel_size_um=optics.pixel_size_um,
        z_step_um=args.z_step,
        z_positions_um=z,
        channel_names=[sample.channel_names[c] for c in channels],
        extra_metadata=meta,
        compress=args.compress,
    )
    tp = _truth_path(out)
    tp.write_text(json.dumps(truth, indent=1, default=_json_default))
    if not args.quiet:
        print(f"wrote {out} {data.shape} uint16 and {tp} in {time.perf_counter() - t0:.1f} s")
    return 0


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _truth(
    args: argparse.Namespace,
    sample: Any,
    renderer: Any,
    camera: Any,
    z: np.ndarray,
    channels: list[int],
) -> dict[str, Any]:
    t = sample.truth()
    obj = t.get("objects", {})
    centres = obj.get("centres_zyx_um")
    if centres:
        c = np.asarray(centres, dtype=np.float64)
        depth = np.asarray(obj.get("depth_um", sample.ref_depth_um + c[:, 0]), dtype=np.float64)
        if depth.shape != (len(c),):
            depth = np.full(len(c), float(sample.ref_depth_um))
        obj["focus_z_um"] = np.round(renderer.object_focus_um(c, depth, sample), 5).tolist()
        r, col = renderer.pixel_of(c[:, 1], c[:, 2])
        obj["pixel_rc"] = np.round(np.stack([r, col], axis=1), 4).tolist()
        inside = (r >= 0) & (r <= args.size - 1) & (col >= 0) & (col <= args.size - 1)
        obj["in_field"] = inside.tolist()
    if sample.activity_fn is not None:
        t["activity_at_t"] = {"t_s": args.t_s, "dF_over_F": sample.activity(args.t_s).tolist()}
    return {
        "sample": t,
        "seed": args.seed,
        "optics": renderer.optics.to_dict(),
        "psf": renderer.psf.to_dict(),
        "camera": camera.to_dict(),
        "exposure_ms": args.exposure_ms,
        "noise": bool(args.noise),
        "stack": {
            "shape": [
                len(z),
                *([len(channels)] if len(channels) > 1 else []),
                args.size,
                args.size,
            ],
            "axes": "ZYX" if len(channels) == 1 else "ZCYX",
            "channels": [sample.channel_names[c] for c in channels],
            "pixel_size_um": renderer.optics.pixel_size_um,
            "z_positions_um": [float(v) for v in z],
            "pixel_convention": (
                "pixel (row i, column j) shows y = (i - (H-1)/2) * pixel, "
                "x = (j - (W-1)/2) * pixel (µm)"
            ),
            "z_convention": (
                "stage focus (µm) relative to the focus on the sample's reference plane, "
                "deeper positive; focus_z_um: the stage focus where each object is sharpest"
            ),
        },
    }
