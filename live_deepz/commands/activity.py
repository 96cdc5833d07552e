"""``live-deepz activity``: neurons, ΔF/F0 traces and clusters from a two-channel virtual
multi-plane recording (the Deep-Z paper's C. elegans analysis, Fig. 3).

Examples::

    live-deepz record --sim --sim-sample worm --channels nuclei,calcium --planes=-10:10:0.5 \\
        --frames 200 -o worm.ome.tif
    live-deepz activity worm.ome.tif -o worm_activity --plots

Writes ``DIR/neurons.csv``, ``traces.csv``, ``registration.csv``, ``summary.json`` (and with
``--plots`` ``heatmap.png``, ``positions.png``, ``affinity.png``); see
:mod:`live_deepz.analysis.activity`.
"""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", help="NAME.ome.tif, NAME.ome.zarr (T, C, Z, Y, X planes)")
    parser.add_argument("-o", "--output", required=True, help="output folder (created)")
    parser.add_argument(
        "--nuclei-channel",
        default="nuclei",
        help="name (or index) of the channel that labels the nuclei (default: nuclei)",
    )
    parser.add_argument(
        "--activity-channel",
        default="calcium",
        help="name (or index) of the activity channel (default: calcium)",
    )
    parser.add_argument("--plots", action="store_true", help="also write PNG figures")
    parser.add_argument(
        "--n-brightest",
        type=int,
        default=100,
        help="F = mean of this many brightest voxels per neuron (paper: 100)",
    )
    parser.add_argument(
        "--active-snr",
        type=float,
        default=4.0,
        help="active: std(ΔF/F0) at least this many times its noise level",
    )
    parser.add_argument(
        "--max-active",
        type=int,
        default=None,
        help="cluster at most this many of the most active neurons",
    )
    parser.add_argument(
        "--sigma",
        type=float,
        default=1.5,
        help="width of the Gaussian affinity of ΔF/F0 traces (paper: 1.5)",
    )
    parser.add_argument(
        "--clusters",
        type=int,
        default=None,
        help="number of clusters (default: the eigengap heuristic)",
    )
    parser.add_argument(
        "--no-registration",
        action="store_true",
        help="skip the motion registration (a still sample)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _params(args: argparse.Namespace) -> object:
    from ..analysis.activity import ActivityParams
    from ..errors import InputError

    for name in ("n_brightest", "max_active", "clusters"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if not args.sigma > 0:
        raise InputError(f"--sigma must be > 0, got {args.sigma}")
    return ActivityParams(
        register=not args.no_registration,
        n_brightest=args.n_brightest,
        active_snr=args.active_snr,
        max_active=args.max_active,
        sigma=args.sigma,
        n_clusters=args.clusters,
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..analysis.activity import analyse_recording, write_outputs
    from ..errors import InputError
    from ..recording import RecordingError, open_recording

    params = _params(args)
    out = Path(args.output)
    if out.exists() and not args.overwrite and not (out.is_dir() and not any(out.iterdir())):
        raise InputError(f"{out} already exists; choose another -o or pass --overwrite")
    t0 = time.perf_counter()
    try:
        rec = open_recording(args.recording)
    except RecordingError as exc:
        raise InputError(str(exc)) from None
    with rec:
        n_t, n_c, n_z, h, w = (rec.planes.shape + (0,) * 5)[:5] if rec.channels else (0, 0, 0, 0, 0)
        if not args.no_progress and rec.channels:
            print(
                f"activity: {n_t} time points x {n_c} channels x {n_z} planes of {h}x{w} "
                f"(~{max(1, round(n_t * n_z * h * w * 5e-7))} s on one CPU core)",
                file=sys.stderr,
            )
        res = analyse_recording(
            rec,
            args.nuclei_channel,
            args.activity_channel,
            params,  # type: ignore[arg-type]
            progress=not args.no_progress,
            scratch_dir=out.parent if out.parent.exists() else None,
        )
    write_outputs(res, out, plots=args.plots, overwrite=args.overwrite)
    k = res.clusters.k if res.clusters else 0
    sizes = [int((res.cluster == c).sum()) for c in range(k)]
    print(f"activity: {out}")
    print(f"  neurons (3D)           {res.n_neurons}")
    print(f"  in the input plane     {len(res.input_positions_um)} ({res.input_source})")
    print(f"  active                 {int(res.active.sum())}")
    print(f"  clusters               {k} {sizes if k else ''}".rstrip())
    print(f"  time points            {len(res.t_s)} over {res.t_s[-1]:.1f} s")
    print(f"  took                   {time.perf_counter() - t0:.1f} s")
    return 0
