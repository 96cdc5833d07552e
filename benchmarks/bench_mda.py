"""Does live-deepz slow down a pymmcore-plus MDA? And does a slow engine lose anything?

Simulated microscope (``open_core("sim")`` with the fast stand-in frame source, 512² px,
10 ms exposure), ``useq.MDASequence`` s of 3 positions x 2 channels. pymmcore-plus writes the
raw frames to OME-Zarr in both arms.

1. **overhead**: the MDA's wall time (``core.mda.run`` start to return) without live-deepz
   and with an :class:`~live_deepz.engine.MDAProcessor` attached (fast stand-in engine
   ``out = image + dpm``, ``--planes`` (5), planes written to ``NAME.planes.zarr``),
   alternating A/B in one run; medians, ratios, and the time until the processor's planes
   were all written (after the MDA returned). Two sequences: a **burst** (``--loops`` time
   points at interval 0: the camera as fast as it goes, the hardest case) and a
   **time-lapse** (``--interval-loops`` x ``--interval-s``, what time-lapse users run).
2. **slow engine**: the same sequence with an engine that sleeps ``--slow-ms`` per frame:
   every raw frame kept, how many planes were skipped live and completed after, counts
   in = written (checked by reopening the files).

Run (one thread, under the lock)::

    OMP_NUM_THREADS=1 flock /work/heavy.lock python benchmarks/bench_mda.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from live_deepz.engine.testing import FakeBackend

HERE = Path(__file__).resolve().parent


class SleepBackend(FakeBackend):
    """The stand-in plus ``delay_s`` of sleep per frame: an engine slower than the camera."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def infer(self, image: np.ndarray, dpms_net: np.ndarray, out: np.ndarray) -> None:
        time.sleep(self.delay_s)
        super().infer(image, dpms_net, out)

    def describe(self) -> dict[str, Any]:
        return {"name": "sleep", "delay_s": self.delay_s}


def make_core(size: int, exposure_ms: float) -> Any:
    from live_deepz.microscope import NoiseFrameSource, open_core

    return open_core("sim", scene=NoiseFrameSource((size, size), seed=1), exposure_ms=exposure_ms)


def make_sequence(loops: int, interval_s: float = 0.0) -> Any:
    import useq

    return useq.MDASequence(
        stage_positions=[(0, 0, 0), (100, 0, 0), (0, 100, 0)],
        channels=["pattern", "bright pattern"],
        time_plan={"interval": interval_s, "loops": loops},
        axis_order="tpcz",
    )


def run_once(core: Any, seq: Any, out: Path, backend: Any | None, planes: str) -> dict[str, Any]:
    from live_deepz.dpm import StaticPlanePlan
    from live_deepz.engine import MDAProcessor

    for p in (out, out.with_name(out.name.replace(".ome.zarr", ".planes.zarr"))):
        shutil.rmtree(p, ignore_errors=True)
    if backend is None:
        t0 = time.perf_counter()
        core.mda.run(seq, output=str(out))
        return {"mda_s": time.perf_counter() - t0}
    proc = MDAProcessor(
        core, backend, StaticPlanePlan(planes), dpm_scale_um=10.0, output=out, ring_slots=8
    )
    with proc:
        t0 = time.perf_counter()
        core.mda.run(seq, output=str(out))
        t1 = time.perf_counter()
        s = proc.wait(600)
        t2 = time.perf_counter()
    return {"mda_s": t1 - t0, "planes_done_after_s": t2 - t1, "summary": s.to_dict()}


def verify(out: Path, n_expected: int) -> dict[str, Any]:
    """Reopen the files: every raw frame there and every frame's planes computed?"""
    from live_deepz.recording import open_recording

    with open_recording(out) as rec:
        raw = np.asarray(rec.raw)
        planes = np.asarray(rec.planes[:])
        return {
            "raw_frames_in_files": int(
                (raw.reshape(-1, *raw.shape[-2:]).max(axis=(1, 2)) > 0).sum()
            ),
            "frames_acquired": int(rec.acquired.sum()),
            "frames_with_planes": int(rec.complete.sum()),
            "frames_with_finite_planes": int(np.isfinite(planes).all(axis=(-3, -2, -1)).sum()),
            "expected": n_expected,
        }


def ab(
    core: Any, seq: Any, out: Path, planes: str, repeats: int, n: int, name: str
) -> dict[str, Any]:
    """MDA wall time without / with live-deepz, alternating, ``repeats`` pairs."""
    plain: list[float] = []
    attached: list[float] = []
    done_after: list[float] = []
    summaries = []
    for i in range(repeats):
        a = run_once(core, seq, out, None, planes)
        b = run_once(core, seq, out, FakeBackend(), planes)
        plain.append(a["mda_s"])
        attached.append(b["mda_s"])
        done_after.append(b["planes_done_after_s"])
        summaries.append(b["summary"])
        print(
            f"  {name} {i + 1}: without {a['mda_s']:.3f} s, with live-deepz {b['mda_s']:.3f} s "
            f"(planes done {b['planes_done_after_s']:.3f} s after), live "
            f"{b['summary']['planes_live']}/{n}, completed {b['summary']['planes_completed']}"
        )
    files = verify(out, n)
    med_a, med_b = statistics.median(plain), statistics.median(attached)
    ratios = [b / a for a, b in zip(plain, attached)]
    print(
        f"{name}: median {med_a:.3f} s without, {med_b:.3f} s with (ratio of medians "
        f"{med_b / med_a:.3f}, median pair ratio {statistics.median(ratios):.3f}); files: {files}"
    )
    return {
        "mda_s_without": plain,
        "mda_s_with": attached,
        "median_without_s": med_a,
        "median_with_s": med_b,
        "ratio_of_medians": med_b / med_a,
        "pair_ratios": ratios,
        "median_pair_ratio": statistics.median(ratios),
        "per_frame_ms_without": 1000 * med_a / n,
        "per_frame_ms_with": 1000 * med_b / n,
        "planes_done_after_mda_s_median": statistics.median(done_after),
        "planes_live": [s["planes_live"] for s in summaries],
        "planes_completed": [s["planes_completed"] for s in summaries],
        "last_run_files": files,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--exposure-ms", type=float, default=10.0)
    ap.add_argument("--loops", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--interval-s", type=float, default=0.5)
    ap.add_argument("--interval-loops", type=int, default=10)
    ap.add_argument("--interval-repeats", type=int, default=3)
    ap.add_argument("--planes", default="-4:4:2", help="record's default: 5 planes")
    ap.add_argument("--slow-ms", type=float, default=100.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--output", default=str(HERE / "results" / "mda.json"))
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import logging

    logging.getLogger("pymmcore-plus").setLevel(logging.ERROR)

    core = make_core(args.size, args.exposure_ms)
    tmp = Path(tempfile.mkdtemp(prefix="bench_mda_"))
    out = tmp / "run.ome.zarr"
    n = 3 * 2 * args.loops
    n_i = 3 * 2 * args.interval_loops
    estimate = (
        2 * args.repeats * n * 0.025
        + 2 * args.interval_repeats * args.interval_loops * args.interval_s
        + n * args.slow_ms / 1000
    )
    print(
        f"3 positions x 2 channels, {args.size}² px, {args.exposure_ms:g} ms exposure, planes "
        f"{args.planes}: burst {args.loops} time points (interval 0) x {args.repeats} A/B, "
        f"time-lapse {args.interval_loops} x {args.interval_s:g} s x {args.interval_repeats} "
        f"A/B (estimate ~{estimate:.0f} s)"
    )
    burst = make_sequence(args.loops)
    run_once(core, burst, out, None, args.planes)  # warm up: scene, writers, imports
    run_once(core, burst, out, FakeBackend(), args.planes)
    overhead = ab(core, burst, out, args.planes, args.repeats, n, "burst")
    lapse = ab(
        core,
        make_sequence(args.interval_loops, args.interval_s),
        out,
        args.planes,
        args.interval_repeats,
        n_i,
        "time-lapse",
    )
    seq = burst
    slow = run_once(core, seq, out, SleepBackend(args.slow_ms / 1000), args.planes)
    check_slow = verify(out, n)
    s = slow["summary"]
    print(
        f"slow engine ({args.slow_ms:g} ms/frame): MDA {slow['mda_s']:.2f} s, acquired "
        f"{s['frames_acquired']}, live {s['planes_live']}, skipped {s['planes_skipped_live']}, "
        f"completed {s['planes_completed']} in {s['completion_s']:.1f} s, without planes "
        f"{s['incomplete']}; files {check_slow}"
    )
    result = {
        "benchmark": "bench_mda",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "threads": args.threads,
        "frame": [args.size, args.size],
        "exposure_ms": args.exposure_ms,
        "planes": args.planes,
        "burst": {
            "sequence": {"positions": 3, "channels": 2, "time_points": args.loops, "interval_s": 0},
            "frames_per_mda": n,
            "repeats": args.repeats,
            **overhead,
        },
        "time_lapse": {
            "sequence": {
                "positions": 3,
                "channels": 2,
                "time_points": args.interval_loops,
                "interval_s": args.interval_s,
            },
            "frames_per_mda": n_i,
            "repeats": args.interval_repeats,
            **lapse,
        },
        "slow_engine": {
            "delay_ms": args.slow_ms,
            "mda_s": slow["mda_s"],
            "planes_done_after_mda_s": slow["planes_done_after_s"],
            "summary": s,
            "files": check_slow,
        },
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
