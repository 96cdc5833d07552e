"""Simulated camera: scene render time and sustained stream rate through ``open_core("sim")``.

For each demo sample (and the NoiseFrameSource test stand-in, which measures pacing alone):

- render time of one frame at ``--size``² (``SimScene.render_frame`` with ``out=``), after a
  warm-up: median and p99 over ``--render-reps`` frames at varying focus;
- sustained stream: ``startContinuousSequenceAcquisition`` at ``--exposure-ms``, frames
  counted by popping with ``popNextImageAndMD`` for ``--seconds`` after a warm-up,
  ``--repeats`` times; reports the median fps, the camera's own frame period and the gaps
  in the camera frame counter (dropped frames) and in ``ImageNumber`` (buffer overwrites).

Usage::

    python benchmarks/bench_sim_camera.py                       # beads, worm, stand-in
    python benchmarks/bench_sim_camera.py --samples beads --seconds 3 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from live_deepz.microscope import (
    META_CAMERA_TIME_MS,
    META_FRAME,
    SIM_CAMERA,
    FrameSource,
    NoiseFrameSource,
    build_scene,
    open_core,
)

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "sim_camera.json"


def bench_render(scene: FrameSource, reps: int, exposure_ms: float) -> dict[str, float]:
    out = np.empty(scene.shape, dtype=np.uint16)
    zs = np.linspace(-5.0, 5.0, 11)
    for i in range(3):  # warm-up
        scene.render_frame(0.01 * i, float(zs[i]), (0.0, 0.0), exposure_ms, out)
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        scene.render_frame(0.01 * i, float(zs[i % len(zs)]), (0.0, 0.0), exposure_ms, out)
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1000.0
    return {
        "median_ms": float(np.median(ms)),
        "p99_ms": float(np.percentile(ms, 99)),
        "min_ms": float(ms.min()),
        "reps": reps,
    }


def _gaps(values: list[int]) -> int:
    """Number of missing values in an increasing integer sequence."""
    if len(values) < 2:
        return 0
    d = np.diff(np.asarray(values))
    return int(np.sum(d[d > 1] - 1))


def bench_stream(
    scene: FrameSource, seconds: float, exposure_ms: float, warmup_s: float
) -> dict[str, Any]:
    core = open_core("sim", scene=scene, exposure_ms=exposure_ms)
    core.startContinuousSequenceAcquisition()
    try:
        t_end_warm = time.perf_counter() + warmup_s
        while time.perf_counter() < t_end_warm:  # drain during warm-up
            if core.getRemainingImageCount():
                with contextlib.suppress(IndexError):
                    core.popNextImageAndMD()
            else:
                time.sleep(0.001)
        frames: list[int] = []
        numbers: list[int] = []
        cam_ms: list[float] = []
        t0 = time.perf_counter()
        t_end = t0 + seconds
        while (now := time.perf_counter()) < t_end:
            if core.getRemainingImageCount():
                try:
                    _, md = core.popNextImageAndMD()
                except IndexError:
                    continue
                frames.append(int(md[META_FRAME]))
                numbers.append(int(md["ImageNumber"]))
                cam_ms.append(float(md[META_CAMERA_TIME_MS]))
            else:
                time.sleep(0.001)
        elapsed = now - t0
        actual_interval = float(core.getProperty(SIM_CAMERA, "ActualInterval-ms"))
    finally:
        core.stopSequenceAcquisition()
    periods = np.diff(cam_ms) if len(cam_ms) > 1 else np.array([np.nan])
    return {
        "fps": len(frames) / elapsed,
        "frames": len(frames),
        "seconds": elapsed,
        "camera_period_median_ms": float(np.median(periods)),
        "camera_period_max_ms": float(np.max(periods)),
        "actual_interval_ms": actual_interval,
        "frame_counter_gaps": _gaps(frames),
        "image_number_gaps": _gaps(numbers),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", nargs="*", default=["beads", "worm"])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exposure-ms", type=float, default=10.0)
    p.add_argument("--seconds", type=float, default=5.0, help="stream duration per repeat")
    p.add_argument("--warmup-s", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--render-reps", type=int, default=50)
    p.add_argument("--no-standin", action="store_true", help="skip the NoiseFrameSource row")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = p.parse_args(argv)

    sources: list[tuple[str, FrameSource | None, str]] = []
    for name in args.samples:
        t0 = time.perf_counter()
        try:
            scene: FrameSource | None = build_scene(name, size=args.size, seed=args.seed)
            note = f"built in {time.perf_counter() - t0:.2f} s"
        except Exception as e:  # report and go on: the other rows still measure
            scene, note = None, f"unavailable: {e}"
        sources.append((name, scene, note))
    if not args.no_standin:
        sources.append(("standin", NoiseFrameSource((args.size, args.size), args.seed), ""))

    results: dict[str, Any] = {
        "benchmark": "sim_camera",
        "size": args.size,
        "exposure_ms": args.exposure_ms,
        "target_fps": 1000.0 / args.exposure_ms,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "load_avg_1min_at_start": os.getloadavg()[0],
        },
        "sources": {},
    }
    for name, scene, note in sources:
        row: dict[str, Any] = {"note": note}
        if scene is not None:
            row["render"] = bench_render(scene, args.render_reps, args.exposure_ms)
            runs = [
                bench_stream(scene, args.seconds, args.exposure_ms, args.warmup_s)
                for _ in range(args.repeats)
            ]
            fps = [r["fps"] for r in runs]
            row["stream"] = {"fps_median": float(np.median(fps)), "runs": runs}
        results["sources"][name] = row

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))

    print(
        f"sim camera, {args.size}x{args.size}, exposure {args.exposure_ms} ms "
        f"(target {1000 / args.exposure_ms:.0f} fps), {args.repeats}x{args.seconds:.0f} s"
    )
    print(f"{'source':10s} {'render med':>10s} {'p99':>8s} {'fps med':>8s} {'gaps':>5s}  note")
    for name, row in results["sources"].items():
        if "render" not in row:
            print(f"{name:10s} {'-':>10s} {'-':>8s} {'-':>8s} {'-':>5s}  {row['note']}")
            continue
        r, s = row["render"], row["stream"]
        gaps = sum(x["frame_counter_gaps"] + x["image_number_gaps"] for x in s["runs"])
        print(
            f"{name:10s} {r['median_ms']:8.2f}ms {r['p99_ms']:6.2f}ms {s['fps_median']:8.1f} "
            f"{gaps:5d}  {row['note']}"
        )
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
