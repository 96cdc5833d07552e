"""Soak test: the live pipeline for N minutes on the simulated 100 fps camera.

A small generator (default width 0.0625, 64², 3 planes, 1 CPU thread: what keeps up with
100 fps on the 2-core development VM) runs in live mode with a display-style consumer
(``subscribe_latest`` polled at ``--display-hz``). Every few seconds it samples the
process's resident memory (psutil if installed, else ``VmRSS`` from ``/proc/self/status``)
and :meth:`LivePipeline.stats`.

Pass criteria (exit 0 when all hold, 1 otherwise):

- resident memory growth from the end of the warm-up (``--warmup-s``, default 30 s) to the
  end of the run < ``--max-growth-mb`` (default 50 MB);
- counters consistent at every sample (``frames_in = frames_processed + dropped_engine +
  in_flight``, ``0 <= in_flight <= frame ring slots + 2``, no counter decreasing) and after
  the stop (``in_flight = 0``, so ``frames_in = frames_processed + dropped_engine``; frames
  left in the camera's buffer are counted apart as ``discarded_at_stop``);
- zero camera drops (gaps in the camera's frame counter) and no pipeline error.

Engine drops (live mode skips frames when the engine is slower than the camera) are reported,
not failed; ``estimate_capacity`` before the run says whether the engine should keep up.

The core's sequence buffer: pymmcore-plus preallocates it (1 GiB by default) with
``np.empty``, and its ring pointer touches fresh pages frame after frame until it wraps, so
RSS climbs by one frame per frame until then (at 64² x 100 fps: 0.8 MB/s for ~22 min; at
512²: the whole GiB in ~20 s), which is not a leak. The soak sets the buffer
(``--buffer-mb``, default: small enough to wrap within half the warm-up) so that this ends
before the growth is measured.

Writes ``--json`` (default ``benchmarks/results/soak.json``) and a PNG plot of RSS and
frames/s over time (``--plot``, default next to the JSON)::

    python benchmarks/bench_soak.py                    # 10 minutes
    python benchmarks/bench_soak.py --minutes 0.5      # a quick check (warm-up shortened)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "soak.json"


def rss_mb() -> float:
    """Resident set size of this process in MB (10^6 bytes)."""
    try:
        import psutil  # type: ignore[import-untyped]

        return float(psutil.Process().memory_info().rss) / 1e6
    except ImportError:
        pass
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) * 1024 / 1e6  # kB
    return math.nan


def rss_source() -> str:
    try:
        import psutil  # type: ignore[import-untyped]  # noqa: F401

        return "psutil"
    except ImportError:
        return "/proc/self/status VmRSS"


def check_sample(st: Any, prev: Any | None) -> list[str]:
    """Accounting problems in one stats snapshot (and against the previous one)."""
    bad = []
    if st.frames_in != st.frames_processed + st.dropped_engine + st.in_flight:
        bad.append(
            f"frames_in {st.frames_in} != processed {st.frames_processed} + dropped_engine "
            f"{st.dropped_engine} + in_flight {st.in_flight}"
        )
    if not 0 <= st.in_flight <= st.frame_ring_slots + 2:
        bad.append(f"in_flight {st.in_flight} outside [0, {st.frame_ring_slots + 2}]")
    if prev is not None:
        for name in ("frames_in", "frames_processed", "dropped_engine", "dropped_camera"):
            if getattr(st, name) < getattr(prev, name):
                bad.append(f"{name} decreased: {getattr(prev, name)} -> {getattr(st, name)}")
    return bad


def plot(samples: list[dict[str, Any]], warmup_s: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([s["t_s"] for s in samples]) / 60.0
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    ax1.plot(t, [s["rss_mb"] for s in samples], ".-", color="C0")
    ax1.axvline(warmup_s / 60.0, color="grey", ls="--", lw=1, label="end of warm-up")
    ax1.set_ylabel("resident memory (MB)")
    ax1.legend(loc="lower right")
    ax1.set_title(title, fontsize=9)
    ax2.plot(t, [s["fps_in_interval"] for s in samples], ".-", label="frames in (camera)")
    ax2.plot(t, [s["fps_out_interval"] for s in samples], ".-", label="frames processed")
    ax2.set_ylabel("frames/s (per sample interval)")
    ax2.set_xlabel("time (min)")
    ax2.set_ylim(bottom=0)
    ax2.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--width", type=float, default=0.0625, help="generator width (random weights)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--planes", type=int, default=3)
    p.add_argument("--backend", default="torch")
    p.add_argument("--precision", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: leave torch's)")
    p.add_argument("--sample", default="beads")
    p.add_argument("--exposure-ms", type=float, default=10.0)
    p.add_argument("--interval-s", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--warmup-s", type=float, default=30.0)
    p.add_argument("--display-hz", type=float, default=30.0, help="0: no display consumer")
    p.add_argument("--max-growth-mb", type=float, default=50.0)
    p.add_argument(
        "--buffer-mb",
        type=float,
        default=None,
        help="core sequence buffer (default: wraps within half the warm-up; see docstring)",
    )
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    p.add_argument("--plot", type=Path, default=None, help="PNG (default: JSON name .png)")
    args = p.parse_args(argv)
    if not args.minutes > 0:
        p.error("--minutes must be > 0")

    import torch

    from live_deepz.dpm import StaticPlanePlan
    from live_deepz.engine import LivePipeline, create_backend
    from live_deepz.microscope import SIM_CAMERA, open_core
    from live_deepz.network import DeepZConfig, DeepZGenerator

    duration = 60.0 * args.minutes
    warmup = args.warmup_s
    notes = []
    if warmup >= duration / 2:
        warmup = duration / 3
        notes.append(
            f"warm-up shortened to {warmup:.0f} s for a {duration:.0f} s run "
            f"(asked {args.warmup_s:g} s)"
        )
    interval = min(args.interval_s, max(0.5, duration / 20))
    threads = args.threads or None
    if threads:
        torch.set_num_threads(threads)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    torch.manual_seed(0)
    gen = DeepZGenerator(DeepZConfig(width=args.width)).eval()
    backend = create_backend(
        args.backend, gen, precision=args.precision, device=args.device, num_threads=threads
    )
    core = open_core("sim", sample=args.sample, size=args.size, exposure_ms=args.exposure_ms)
    camera_fps = 1000.0 / args.exposure_ms
    frame_bytes = int(core.getImageWidth()) * int(core.getImageHeight()) * 2
    buffer_mb = args.buffer_mb
    if buffer_mb is None:
        buffer_mb = max(4.0, min(1024.0, math.ceil(frame_bytes * camera_fps * warmup / 2 / 2**20)))
    core.setCircularBufferMemoryFootprint(buffer_mb)
    wrap_s = buffer_mb * 2**20 / (frame_bytes * camera_fps)
    if wrap_s > warmup:
        notes.append(
            f"the core's {buffer_mb:g} MiB sequence buffer wraps after {wrap_s:.0f} s, later "
            f"than the {warmup:.0f} s warm-up: RSS grows by a frame per frame until then"
        )
    k = args.planes
    plan = StaticPlanePlan(np.linspace(-8.0, 8.0, k) if k > 1 else [0.0])
    pipeline = LivePipeline(
        core, backend, plan, z_range_um=(-10.0, 10.0), dpm_scale_um=10.0, mode="live"
    )
    cap = pipeline.estimate_capacity(n_frames=20, warmup=3)
    say(
        f"soak: {args.minutes:g} min, {backend.name} {backend.precision} on {backend.device}, "
        f"width {args.width:g}, {args.size}², {k} planes; engine {cap.engine_fps:.0f} frames/s "
        f"vs camera {cap.camera_fps:.0f} fps ({'keeps up' if cap.sustainable else 'SLOWER'})"
    )
    display = pipeline.subscribe_latest() if args.display_hz > 0 else None
    shown = 0

    samples: list[dict[str, Any]] = []
    problems: list[str] = []
    rss_start = rss_mb()
    t0 = time.perf_counter()
    pipeline.start()
    prev = None
    prev_t = 0.0
    next_sample = 0.0
    poll = 1.0 / args.display_hz if display is not None else 0.05
    try:
        while True:
            now = time.perf_counter() - t0
            if display is not None and display.get_latest() is not None:
                shown += 1
            if now >= next_sample:
                st = pipeline.stats()
                if st.state == "error":
                    problems.append(f"pipeline error at {now:.0f} s: {st.error}")
                    break
                bad = check_sample(st, prev)
                problems += [f"at {now:.1f} s: {b}" for b in bad]
                dt_s = now - prev_t if prev is not None else now
                d_in = st.frames_in - (prev.frames_in if prev else 0)
                d_out = st.frames_processed - (prev.frames_processed if prev else 0)
                s = {
                    "t_s": round(now, 3),
                    "rss_mb": round(rss_mb(), 2),
                    "frames_in": st.frames_in,
                    "frames_processed": st.frames_processed,
                    "dropped_camera": st.dropped_camera,
                    "dropped_engine": st.dropped_engine,
                    "in_flight": st.in_flight,
                    "fps_in": round(st.fps_in, 2),
                    "fps_out": round(st.fps_out, 2),
                    "fps_in_interval": round(d_in / dt_s, 2) if dt_s > 0 else None,
                    "fps_out_interval": round(d_out / dt_s, 2) if dt_s > 0 else None,
                    "latency_p50_ms": round(st.latency_p50_ms, 2),
                    "shown": shown,
                }
                samples.append(s)
                say(
                    f"[{now:6.1f} s] RSS {s['rss_mb']:.1f} MB, in {st.frames_in} "
                    f"({s['fps_in_interval']} fps), processed {st.frames_processed} "
                    f"({s['fps_out_interval']} fps), drops camera {st.dropped_camera} "
                    f"engine {st.dropped_engine}, in flight {st.in_flight}"
                )
                prev, prev_t = st, now
                next_sample += interval
                if now >= duration:
                    break
            time.sleep(poll)
    except KeyboardInterrupt:
        notes.append("interrupted")
    finally:
        pipeline.stop()
    final = pipeline.stats()
    if final.state == "error":
        problems.append(f"pipeline error: {final.error}")
    if final.in_flight != 0:
        problems.append(f"after stop: in_flight {final.in_flight} != 0")
    if final.frames_in != final.frames_processed + final.dropped_engine:
        problems.append(
            f"after stop: frames_in {final.frames_in} != processed {final.frames_processed} "
            f"+ dropped_engine {final.dropped_engine}"
        )
    problems += [f"after stop: {b}" for b in check_sample(final, prev)]
    try:
        actual_interval = float(core.getProperty(SIM_CAMERA, "ActualInterval-ms"))
    except Exception:
        actual_interval = math.nan

    after = [s for s in samples if s["t_s"] >= warmup]
    base = after[0] if after else (samples[-1] if samples else None)
    last = samples[-1] if samples else None
    growth = last["rss_mb"] - base["rss_mb"] if base and last else math.nan
    max_growth = max(s["rss_mb"] for s in after) - base["rss_mb"] if after and base else math.nan
    slope = math.nan
    if len(after) >= 3:
        tt = np.array([s["t_s"] for s in after]) / 60.0
        rr = np.array([s["rss_mb"] for s in after])
        slope = float(np.polyfit(tt, rr, 1)[0])
    checks = {
        "rss_growth_ok": bool(growth < args.max_growth_mb),
        "counters_ok": not problems,
        "no_camera_drops": final.dropped_camera == 0,
    }
    if not after:
        checks["rss_growth_ok"] = False
        problems.append("no sample after the warm-up")
    passed = all(checks.values())
    result = {
        "benchmark": "soak",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "host": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "backend": backend.describe(),
        "settings": {
            "minutes": args.minutes,
            "width": args.width,
            "size": args.size,
            "planes": k,
            "camera_fps": camera_fps,
            "sample": args.sample,
            "interval_s": interval,
            "warmup_s": warmup,
            "display_hz": args.display_hz,
            "max_growth_mb": args.max_growth_mb,
            "core_buffer_mb": buffer_mb,
            "core_buffer_wrap_s": wrap_s,
        },
        "capacity": {
            "engine_fps": cap.engine_fps,
            "infer_ms": cap.infer_ms,
            "camera_fps": cap.camera_fps,
            "sustainable": cap.sustainable,
        },
        "rss_source": rss_source(),
        "rss_mb": {
            "at_start": rss_start,
            "after_warmup": base["rss_mb"] if base else None,
            "at_end": last["rss_mb"] if last else None,
            "growth": growth,
            "max_growth": max_growth,
            "slope_mb_per_min": slope,
        },
        "final": final.as_dict(),
        "camera_actual_interval_ms": actual_interval,
        "display_frames_shown": shown,
        "checks": checks,
        "passed": passed,
        "problems": problems[:50],
        "n_problems": len(problems),
        "notes": notes,
        "samples": samples,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=float) + "\n")
    png = args.plot or args.json.with_suffix(".png")
    title = (
        f"soak {args.minutes:g} min: {backend.name} {backend.precision}, width {args.width:g}, "
        f"{args.size}², {k} planes, camera {1000.0 / args.exposure_ms:g} fps"
    )
    if samples:
        plot(samples, warmup, png, title)
    el = final.elapsed_s
    print(
        f"soak {'PASSED' if passed else 'FAILED'}: {el:.0f} s, frames in {final.frames_in} "
        f"({final.frames_in / el:.1f} fps), processed {final.frames_processed} "
        f"({final.frames_processed / el:.1f} fps), drops camera {final.dropped_camera} engine "
        f"{final.dropped_engine}, discarded at stop {final.discarded_at_stop}\n"
        f"  RSS {rss_start:.0f} MB at start, {result['rss_mb']['after_warmup']} MB after the "
        f"{warmup:.0f} s warm-up, growth {growth:+.1f} MB (max {max_growth:+.1f}, slope "
        f"{slope:+.2f} MB/min; limit {args.max_growth_mb:g} MB)\n"
        f"  checks: {checks}"
    )
    for prob in problems[:10]:
        print(f"  problem: {prob}")
    for note in notes:
        print(f"  note: {note}")
    print(f"wrote {args.json} and {png}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
