"""Benchmark ``live-deepz activity`` on simulated two-channel worm recordings with truth.

A worm (:func:`live_deepz.sim.samples.worm`, nuclei + calcium channels) is imaged at ONE
focal plane, the body's mid-plane (stage z = 0), by the simulated camera (noise included),
the two channels interleaved (calcium half a time step after nuclei); every frame is refocused
to a virtual stack, the recording is written with :class:`RecordingWriter` (OME-TIFF, the
format ``record`` writes) and analysed by the same code as ``live-deepz activity``
(:func:`analyse_recording`), then scored against the simulator's truth
(:func:`score_activity`: 3D recall/precision within 2 µm laterally / 2.5 µm axially for the
neurons within ±10 µm of the input plane, the same for the 2D input alone, median Pearson r
of the traces, adjusted Rand index of the clusters).

Refocusers:

- ``oracle``: an ideal Deep-Z: the simulator renders each virtual plane noise-free (the
  camera's mean, normalised like the input), as ``bench_calibration.py --oracle
  --noiseless-oracle`` does;
- ``model``: the default bundled model (``deepz-sim20x-default``, or ``--model``) run on the
  noisy camera frame, one normalisation per channel fitted on its first frame.

Each case runs with and without body motion (``--motion both``). Sizes are kept small for a
2-core CPU: ``--size`` px frames, ``--frames`` time points at ``--fps``, ``--planes``.

    OMP_NUM_THREADS=1 flock /work/heavy.lock python benchmarks/bench_activity.py
    python benchmarks/bench_activity.py --refocuser oracle --frames 60   # quick look
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from live_deepz.analysis.activity import (
    ActivityParams,
    analyse_recording,
    recording_truth,
    score_activity,
    write_outputs,
)
from live_deepz.dpm import parse_planes
from live_deepz.normalize import fit_normalization
from live_deepz.optics import Optics
from live_deepz.recording import FrameInfo, RecordingWriter, open_recording

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "activity.json"
TARGETS = {"recall_3d": 0.8, "precision_3d": 0.8, "trace_r_median": 0.8, "ari_active": 0.7}


def make_recording(
    path: Path, args: argparse.Namespace, *, motion: bool, refocuser: str
) -> tuple[dict[str, Any], dict[str, float]]:
    """Write the simulated recording; returns (truth, timings)."""
    from tqdm import tqdm

    from live_deepz.sim.samples import worm
    from live_deepz.sim.scene import SimScene

    px = Optics().pixel_size_um
    shape = (args.size, args.size)
    sample = worm(args.seed, size_um=args.size * px, n_neurons=args.neurons, motion=motion)
    t0 = time.perf_counter()
    scene = SimScene(sample, Optics(), shape, seed=args.seed)
    scene.build(1)
    build_s = time.perf_counter() - t0
    offsets = np.asarray(parse_planes(args.planes), dtype=np.float64)
    n_t, dt = args.frames, 1.0 / args.fps
    times = np.stack([np.arange(n_t) * dt, np.arange(n_t) * dt + dt / 2], axis=1)
    exp = args.exposure_ms
    refocus = None
    if refocuser == "model":
        from live_deepz.calibration import engine_refocus_fn

        refocus = engine_refocus_fn(
            args.model, "torch", precision="fp32", device="cpu", max_planes=len(offsets)
        )
    writer = RecordingWriter(
        path,
        frame_shape=shape,
        offsets_um=offsets,
        channels=["nuclei", "calcium"],
        pixel_size_um=px,
        metadata={"benchmark": "bench_activity", "refocuser": refocuser},
        overwrite=True,
    )
    norms: list[Any] = [None, None]
    t_ref = 0.0
    try:
        for t in tqdm(range(n_t), desc=f"{refocuser} motion={motion}", unit="tp", leave=False):
            raw = np.stack(
                [scene.render_frame(times[t, c], 0.0, exposure_ms=exp, channel=c) for c in (0, 1)]
            )
            planes = np.empty((2, len(offsets), *shape), np.float32)
            for c in (0, 1):
                if norms[c] is None:
                    norms[c] = fit_normalization(raw[c].astype(np.float32))
                t1 = time.perf_counter()
                if refocus is None:
                    for k, o in enumerate(offsets):
                        mean = scene.camera.mean_adu(
                            scene.expected_frame(times[t, c], float(o), channel=c), exp
                        )
                        planes[c, k] = norms[c].apply(mean.astype(np.float32))
                else:
                    img = norms[c].apply(raw[c].astype(np.float32))
                    dpms = np.broadcast_to(offsets[:, None, None], (len(offsets), *shape))
                    planes[c] = refocus(img, np.ascontiguousarray(dpms, dtype=np.float32))
                t_ref += time.perf_counter() - t1
            info = FrameInfo(
                index=t, camera_frame=2 * t, camera_time_ms=1000 * times[t, 0], stage_z_um=0.0,
                exposure_ms=exp, plan_id=0,
            )  # fmt: skip
            writer.append_frame(raw, info)
            writer.write_planes(t, planes)
    finally:
        writer.close()
    truth = recording_truth(scene, times, stage_z_um=0.0, pixel_size_um=px)
    return truth, {"scene_build_s": build_s, "refocus_s": t_ref}


def run_case(args: argparse.Namespace, refocuser: str, motion: bool, tmp: Path) -> dict[str, Any]:
    path = tmp / f"worm_{refocuser}_{'motion' if motion else 'still'}.ome.tif"
    truth, timing = make_recording(path, args, motion=motion, refocuser=refocuser)
    t0 = time.perf_counter()
    with open_recording(path) as rec:
        res = analyse_recording(rec, "nuclei", "calcium", ActivityParams(), progress=True)
    timing["analysis_s"] = time.perf_counter() - t0
    if args.keep:
        out = Path(args.keep) / path.name.replace(".ome.tif", "")
        write_outputs(res, out, plots=True, overwrite=True)
        (out / "truth.json").write_text(json.dumps(truth))
    score = score_activity(res, truth)
    score["n_active_found"] = int(res.active.sum())
    score["max_abs_shift_um"] = [float(v) for v in np.abs(res.shifts_um).max(axis=0)]
    true_motion = np.asarray(truth["time_points"]["motion_zyx_um"], dtype=np.float64)
    score["max_abs_true_motion_um"] = [
        float(v) for v in np.abs(true_motion - true_motion[0]).max(0)
    ]
    shift_err = (true_motion - true_motion[0]) + res.shifts_um  # registration undoes motion
    score["registration_rmse_zyx_um"] = [float(v) for v in np.sqrt((shift_err**2).mean(0))]
    score["meets_targets"] = bool(
        all(score[k] >= v for k, v in TARGETS.items())
        and score["n_found_3d"] > score["n_found_input_plane"]
    )
    return {"refocuser": refocuser, "motion": motion, **score, "timing_s": timing}


def _json_ready(v: Any) -> Any:
    """NaN -> None (strict JSON), recursively."""
    if isinstance(v, dict):
        return {k: _json_ready(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_ready(x) for x in v]
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(v) else None
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--refocuser", choices=("oracle", "model", "both"), default="both")
    ap.add_argument("--motion", choices=("off", "on", "both"), default="both")
    ap.add_argument("--model", default="deepz-sim20x-default")
    ap.add_argument("--seed", type=int, default=11, help="worm seed (tests use others)")
    ap.add_argument("--neurons", type=int, default=40)
    ap.add_argument("--size", type=int, default=192, help="frame edge, px (0.325 µm)")
    ap.add_argument("--frames", type=int, default=216, help="time points")
    ap.add_argument("--fps", type=float, default=3.6, help="time points per second (paper 3.6)")
    ap.add_argument("--planes", default="-10:10:0.5", help="virtual planes (paper -10:10:0.5)")
    ap.add_argument("--exposure-ms", type=float, default=20.0)
    ap.add_argument("--keep", default=None, help="also write each analysis (with plots) here")
    ap.add_argument("--json", default=str(DEFAULT_JSON))
    args = ap.parse_args(argv)
    refocusers = ["oracle", "model"] if args.refocuser == "both" else [args.refocuser]
    motions = {"off": [False], "on": [True], "both": [False, True]}[args.motion]
    cases = []
    with tempfile.TemporaryDirectory(prefix="bench-activity-") as tmp:
        for r in refocusers:
            for m in motions:
                case = run_case(args, r, m, Path(tmp))
                cases.append(case)
                print(json.dumps({k: v for k, v in case.items() if k != "timing_s"}))
    import torch

    result = {
        "benchmark": "bench_activity",
        "command": "python benchmarks/bench_activity.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} CPU, torch threads {torch.get_num_threads()}",
        "sizes": {
            "frame_px": args.size,
            "field_um": round(args.size * Optics().pixel_size_um, 2),
            "time_points": args.frames,
            "fps": args.fps,
            "planes": args.planes,
            "neurons": args.neurons,
            "seed": args.seed,
            "exposure_ms": args.exposure_ms,
        },
        "targets": {**TARGETS, "n_found_3d > n_found_input_plane": True},
        "cases": cases,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(_json_ready(result), indent=2, default=float) + "\n")
    for c in cases:
        print(
            f"{c['refocuser']:6s} motion={c['motion']!s:5s} 3D {c['n_found_3d']:3d} "
            f"(R {c['recall_3d']:.2f} P {c['precision_3d']:.2f})  input plane "
            f"{c['n_found_input_plane']:3d} (R {c['recall_input_plane']:.2f} "
            f"P {c['precision_input_plane']:.2f})  trace r {c['trace_r_median']:.2f}  "
            f"ARI {c['ari_active']:.2f} (all {c['ari_all']:.2f})  k {c['n_clusters_found']}"
            f"  targets {'met' if c['meets_targets'] else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
