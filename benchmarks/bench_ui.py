"""UI responsiveness while streaming: the event loop's latency with the live window running.

Runs the live-deepz window offscreen on the simulated microscope and measures, with
:class:`live_deepz.ui.EventLoopProbe` (a 5 ms precise timer; lateness = how much later than
5 ms after the previous firing it ran), the UI thread's responsiveness in two phases:

- ``idle``: the window open, live stopped (the floor set by the machine and Qt);
- ``streaming``: camera at 100 fps, the engine refocusing K planes per frame, every view
  redrawn by the display timer;
- ``streaming_without_display``: the same, with the display timer stopped: the cost of the
  camera and engine threads (and of other jobs on the machine) alone, for comparison.

It also times the display timer's own work (``refresh_display``: pulling the newest frames
and drawing raw, grid, single plane, MIP and x–z) and reports the pipeline's numbers
(camera/processed fps, drops, latency) and the display rate. Writes JSON.

Usage::

    python benchmarks/bench_ui.py                          # 20 s streaming, 512², beads
    python benchmarks/bench_ui.py --seconds 10 --size 256 --json out.json
    python benchmarks/bench_ui.py --model path/to/model    # a trained model instead of the
                                                           # untrained stand-in
"""

from __future__ import annotations

import argparse
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


def _phase(win: Any, seconds: float) -> dict[str, Any]:
    from live_deepz.ui import wait_for

    win.probe.reset()
    win._display_calls = []
    s0 = win.session.pipeline.stats() if win.session.pipeline is not None else None
    shown0 = win.grid.frames_shown
    t0 = time.perf_counter()
    wait_for(lambda: False, seconds)
    dt = time.perf_counter() - t0
    loop = win.probe.stats()
    calls = np.asarray(win._display_calls, dtype=np.float64)
    out: dict[str, Any] = {
        "seconds": dt,
        "event_loop_latency_ms": {
            "p50": loop.p50_ms,
            "p99": loop.p99_ms,
            "max": loop.max_ms,
            "mean": loop.mean_ms,
            "samples": loop.samples,
            "probe_interval_ms": loop.interval_ms,
        },
        "display_refresh_ms": {
            "calls": int(calls.size),
            "p50": float(np.percentile(calls, 50)) if calls.size else math.nan,
            "p99": float(np.percentile(calls, 99)) if calls.size else math.nan,
            "max": float(calls.max()) if calls.size else math.nan,
        },
        "plane_frames_drawn_per_s": (win.grid.frames_shown - shown0) / dt,
    }
    st = win.session.pipeline.stats() if win.session.pipeline is not None else None
    if st is not None and st.state == "running":
        out["pipeline"] = {
            "camera_fps": st.camera_fps,
            "fps_in": st.fps_in,
            "processed_fps": (st.frames_processed - (s0.frames_processed if s0 else 0)) / dt,
            "dropped_camera": st.dropped_camera - (s0.dropped_camera if s0 else 0),
            "dropped_engine": st.dropped_engine - (s0.dropped_engine if s0 else 0),
            "latency_p50_ms": st.latency_p50_ms,
            "latency_p99_ms": st.latency_p99_ms,
            "infer_ms": st.stage_ms.get("infer"),
            "backend": win.session.backend_description(),
        }
    return out


def _no_nan(obj: Any) -> Any:
    """NaN -> None, so that the file is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_nan(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="streaming phase length")
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--sample", default="beads")
    ap.add_argument("--planes", default="-10:10:2")
    ap.add_argument("--model", default=None, help="model folder (default: untrained stand-in)")
    ap.add_argument("--json", default=str(HERE / "results" / "ui.json"))
    args = ap.parse_args(argv)

    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from live_deepz.ui import (
        MainWindow,
        SessionConfig,
        ensure_app,
        freeze_gc,
        tune_for_latency,
        wait_for,
    )

    app = ensure_app()
    tune_for_latency()  # as run_app does
    win = MainWindow()
    calls: list[float] = []
    refresh = win.refresh_display

    def timed_refresh() -> None:
        t = time.perf_counter()
        refresh()
        win._display_calls.append((time.perf_counter() - t) * 1e3)

    win._display_calls = calls
    win._display_timer.timeout.disconnect()
    win._display_timer.timeout.connect(timed_refresh)
    win.resize(1600, 1000)
    win.show()
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    config = SessionConfig(
        sample=args.sample,
        size=args.size,
        model=args.model,
        planes=args.planes,
        autostart=False,
        remembered_model="",
    )
    if args.model is None:
        os.environ["LIVE_DEEPZ_MODELS"] = ""
    win.session.opened.connect(freeze_gc)  # as run_app does
    win.open(config)
    if not wait_for(lambda: win.session.ready, 300):
        print(win.messages.text(), file=sys.stderr)
        return 1
    wait_for(lambda: False, 1.0)
    idle = _phase(win, args.idle_seconds)
    win.session.start_live()
    # warm-up: the first plane frame (normalisation fit, first inference)
    wait_for(lambda: win.grid.frames_shown > 0, 120)
    wait_for(lambda: False, 2.0)
    streaming = _phase(win, args.seconds)
    # the same load without drawing: what the machine (camera thread, engine, other jobs)
    # costs the UI thread by itself, to compare with
    win._display_timer.stop()
    no_display = _phase(win, max(3.0, args.seconds / 2))
    win._display_timer.start()
    result = {
        "benchmark": "ui",
        "what": "event-loop latency of the live window (5 ms probe timer lateness)",
        "size": args.size,
        "sample": args.sample,
        "planes": args.planes,
        "model": args.model or "untrained stand-in (width 0.125)",
        "window": [win.width(), win.height()],
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1min_at_start": load0,
        },
        "idle": idle,
        "streaming": streaming,
        "streaming_without_display": no_display,
    }
    win.close()
    app.processEvents()
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_no_nan(result), indent=2) + "\n")
    lat = streaming["event_loop_latency_ms"]
    lat0 = idle["event_loop_latency_ms"]
    lat1 = no_display["event_loop_latency_ms"]
    print(
        f"event loop lateness while streaming: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} "
        f"ms, max {lat['max']:.1f} ms (idle: p50 {lat0['p50']:.2f}, p99 {lat0['p99']:.2f}, "
        f"max {lat0['max']:.1f} ms; streaming without drawing: p50 {lat1['p50']:.2f}, p99 "
        f"{lat1['p99']:.2f}, max {lat1['max']:.1f} ms); display refresh p50 "
        f"{streaming['display_refresh_ms']['p50']:.2f} ms, p99 "
        f"{streaming['display_refresh_ms']['p99']:.2f} ms -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
