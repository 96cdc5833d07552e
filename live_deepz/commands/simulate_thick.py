"""``live-deepz simulate --sample brain-slice``: one modality of a thick scattering sample.

Example (a wide-field / confocal pair of one sample, the confocal moved by a known shift)::

    live-deepz simulate --sample brain-slice --size 128 --planes 32 --seed 4 -o wf.ome.tif
    live-deepz simulate --sample brain-slice --modality confocal --shift 1.5 2 -3 \\
        --size 128 --planes 32 --seed 4 -o conf.ome.tif

The paper's optics (60×/1.4 oil, 108.3 nm pixels; 0.5 µm steps by default); see
``live_deepz.sim.thick``. The truth JSON beside the stack holds the shift and the shift that
aligns the confocal stack with the wide-field one (``align_shift_zyx``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..errors import InputError


def run_thick(args: argparse.Namespace) -> int:
    from ..io import write_ome_tiff
    from ..sim.camera import CameraModel
    from ..sim.thick import (
        THICK_OPTICS,
        ThickSampleParams,
        brain_slice_volume,
        expose_stack,
        render_thick,
        thick_truth,
    )
    from .simulate import _truth_path

    shift = tuple(float(v) for v in args.shift)
    if args.modality == "widefield" and any(shift):
        raise InputError("--shift moves the confocal stack; use it with --modality confocal")
    if not all(np.isfinite(shift)):
        raise InputError(f"--shift must be finite, got {list(shift)}")
    params = ThickSampleParams(size_px=args.size, n_planes=args.planes, z_step_um=args.z_step)
    out = Path(args.output)
    t0 = time.perf_counter()
    if not args.quiet:
        print(
            f"rendering brain-slice ({args.modality}): {params.n_planes} planes x "
            f"{params.z_step_um:g} µm, {args.size}x{args.size} px at 60x/1.4 oil"
        )
    sample = brain_slice_volume(params, args.seed)
    photons = render_thick(sample, args.modality, shift)  # type: ignore[arg-type]
    camera = CameraModel()
    stream = 0 if args.modality == "widefield" else 1
    stack = expose_stack(photons, camera, args.seed, stream, bool(args.noise))
    truth = thick_truth(sample, shift)  # type: ignore[arg-type]
    truth.update(
        modality=args.modality, camera=camera.to_dict(), noise=bool(args.noise), seed=args.seed
    )
    z = (np.arange(params.n_planes) + 0.5) * params.z_step_um
    write_ome_tiff(
        out,
        stack,
        axes="ZYX",
        pixel_size_um=THICK_OPTICS.pixel_size_um,
        z_step_um=params.z_step_um,
        z_positions_um=z,
        channel_names=[args.modality],
        extra_metadata={
            "generator": "live-deepz simulate",
            "sample": "brain-slice",
            "modality": args.modality,
            "seed": args.seed,
            "truth_json": _truth_path(out).name,
        },
        compress=args.compress,
    )
    tp = _truth_path(out)
    tp.write_text(json.dumps(truth, indent=1))
    if not args.quiet:
        print(f"wrote {out} {stack.shape} uint16 and {tp} in {time.perf_counter() - t0:.1f} s")
    return 0
