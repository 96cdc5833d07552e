"""Recording throughput: writers alone, the sustained live recorder, real-model completion.

Three measurements, written to ``benchmarks/results/recording.json``:

1. **writers**: raw 512² uint16 frames (and 11-plane float32 volumes) appended as fast as
   possible by each candidate writer, write-through to the OS (MB/s, frames/s, median of
   ``--repeats``): live-deepz's crash-consistent BigTIFF (:class:`TiffPageFile`), zarr-python
   (one chunk per frame, grown per frame), tifffile's ``TiffWriter`` (``contiguous=True``, the
   mode ome-writers uses) and ome-writers' OME-TIFF stream.
2. **sustained**: the whole live path, simulated camera (512², stand-in frame source) ->
   :class:`LivePipeline` with a fast stand-in backend (``out = image + dpm``) -> the
   :class:`Recorder`, 11 planes per frame, for ``--seconds``. Checks that every camera frame
   was written (frame-number continuity, nothing lost) and reports MB/s and volumes/s,
   planes written live and completed after stop.
3. **completion**: the real paper-size generator (width 1, random weights) completing
   recorded frames offline (frames/s, planes/s): what the CPU can do after a recording whose
   engine could not keep up.

Run::

    python benchmarks/bench_recording.py                 # everything (a few minutes)
    python benchmarks/bench_recording.py --quick         # smaller, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from live_deepz.engine.testing import FakeBackend

HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- stand-ins


def _fresh(d: Path) -> Path:
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


# --------------------------------------------------------------------------- 1. writers


def bench_writers(tmp: Path, n: int, size: int, k: int, repeats: int) -> dict[str, Any]:
    from live_deepz.recording._writer_tiff import TiffPageFile

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 4000, (size, size), dtype=np.uint16)
    volume = rng.random((k, size, size), dtype=np.float32)
    results: dict[str, Any] = {}

    def run(name: str, fn: Any, nbytes: int) -> None:
        times = []
        for _ in range(repeats):
            d = _fresh(tmp / name)
            t0 = time.perf_counter()
            fn(d)
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        results[name] = {
            "frames": n,
            "seconds_median": round(t, 4),
            "frames_per_s": round(n / t, 1),
            "MB_per_s": round(n * nbytes / t / 1e6, 1),
        }
        print(f"  {name:32s} {n / t:8.1f} frames/s  {n * nbytes / t / 1e6:8.1f} MB/s", flush=True)

    def ours_raw(d: Path) -> None:
        with TiffPageFile(d / "a.tif", (size, size), np.uint16, sync_interval_s=0) as f:
            for _ in range(n):
                f.append(frame)

    def ours_planes(d: Path) -> None:
        with TiffPageFile(d / "a.tif", (size, size), np.float32, sync_interval_s=0) as f:
            for _ in range(n):
                f.append(volume)

    def tifffile_contiguous(d: Path) -> None:
        import tifffile

        with tifffile.TiffWriter(d / "a.tif", bigtiff=True) as tw:
            for _ in range(n):
                tw.write(frame, contiguous=True, photometric="minisblack")
                tw._fh.flush()

    def zarr_raw(d: Path) -> None:
        import zarr

        g = zarr.open_group(str(d / "a.zarr"), mode="w", zarr_format=3)
        a = g.create_array(
            "0", shape=(0, size, size), chunks=(1, size, size), dtype="uint16", compressors=None
        )
        for t in range(n):
            a.resize((t + 1, size, size))
            a[t] = frame

    def ome_writers_tiff(d: Path) -> None:
        from ome_writers import AcquisitionSettings, create_stream, dims_from_standard_axes

        settings = AcquisitionSettings(
            root_path=str(d / "a.ome.tif"),
            dimensions=tuple(dims_from_standard_axes({"t": n, "y": size, "x": size})),
            dtype="uint16",
            overwrite=True,
            format="ome-tiff",  # type: ignore[arg-type]
        )
        with create_stream(settings) as stream:
            for _ in range(n):
                stream.append(frame)

    fb = frame.nbytes
    run("live-deepz TiffPageFile raw", ours_raw, fb)
    run(f"live-deepz TiffPageFile {k}-plane f32", ours_planes, volume.nbytes)
    run("tifffile contiguous (no crash safety)", tifffile_contiguous, fb)
    run("zarr-python v3 chunk/frame", zarr_raw, fb)
    try:
        run("ome-writers OME-TIFF", ome_writers_tiff, fb)
    except Exception as exc:  # optional dependency / API drift
        results["ome-writers OME-TIFF"] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"  ome-writers OME-TIFF: {exc}")
    return results


# --------------------------------------------------------------------------- 2. sustained


def bench_sustained(
    tmp: Path, size: int, k: int, seconds: float, exposure_ms: float, fmt: str
) -> dict[str, Any]:
    from live_deepz.dpm import StaticPlanePlan
    from live_deepz.engine._pipeline import LivePipeline
    from live_deepz.engine._recorder import Recorder
    from live_deepz.microscope import NoiseFrameSource, open_core
    from live_deepz.recording import open_recording

    d = _fresh(tmp / f"sustained_{fmt}")
    out = d / ("run.ome.tif" if fmt == "tiff" else "run.ome.zarr")
    core = open_core("sim", scene=NoiseFrameSource((size, size), seed=1), exposure_ms=exposure_ms)
    offsets = np.linspace(-10, 10, k)
    pipeline = LivePipeline(
        core,
        FakeBackend(),
        StaticPlanePlan(offsets),
        z_range_um=(-10, 10),
        dpm_scale_um=10.0,
        mode="live",
    )
    rec = Recorder(pipeline, out, progress=False, sync_interval_s=5.0)
    rec.start()
    pipeline.start()
    t0 = time.perf_counter()
    time.sleep(seconds)
    pipeline.stop()
    t_rec = time.perf_counter() - t0
    s = rec.stop()
    t_all = time.perf_counter() - t0
    with open_recording(out) as r:
        numbers = r.frame_numbers
        continuous = bool(np.all(np.diff(numbers) == 1)) and int(numbers[0]) == 0
        n = r.n_frames
        complete = bool(r.complete.all())
    raw_b = size * size * 2
    vol_b = k * size * size * 4
    live_mb = (n * raw_b + s.processed_live * vol_b) / t_rec / 1e6
    res = {
        "format": fmt,
        "frame": [size, size],
        "planes": k,
        "camera_fps_nominal": round(1000 / exposure_ms, 1),
        "recorded_s": round(t_rec, 2),
        "frames_acquired": s.frames_acquired,
        "frames_written": s.frames_recorded,
        "raw_lost": s.raw_lost,
        "dropped_by_camera": s.dropped_by_camera,
        "frame_numbers_continuous": continuous,
        "skipped_by_engine": s.skipped_by_engine,
        "planes_missed_by_recorder": s.planes_missed,
        "volumes_written_live": s.processed_live,
        "volumes_completed_after": s.completed_after,
        "all_complete": complete,
        "raw_fps": round(n / t_rec, 1),
        "volumes_per_s_live": round(s.processed_live / t_rec, 1),
        "MB_per_s_live": round(live_mb, 1),
        "completion_s": round(s.completion_s, 2),
        "total_s_incl_completion": round(t_all, 2),
        "error": s.error,
    }
    print(
        f"  {fmt}: {n} frames ({res['raw_fps']} fps, lost {s.raw_lost}, continuous "
        f"{continuous}), {s.processed_live} volumes live ({res['volumes_per_s_live']}/s), "
        f"{live_mb:.0f} MB/s, {s.completed_after} completed after in {s.completion_s:.1f} s",
        flush=True,
    )
    shutil.rmtree(d, ignore_errors=True)
    return res


# --------------------------------------------------------------------------- 3. completion


def bench_completion(tmp: Path, size: int, k: int, frames: int, width: float) -> dict[str, Any]:
    import torch

    from live_deepz.engine import Refocuser
    from live_deepz.engine.backends import create_backend
    from live_deepz.network import DeepZConfig, DeepZGenerator
    from live_deepz.recording import FrameInfo, RecordingWriter, complete_recording

    d = _fresh(tmp / "completion")
    rng = np.random.default_rng(0)
    w = RecordingWriter(
        d / "c.ome.tif", frame_shape=(size, size), offsets_um=np.linspace(-10, 10, k)
    )
    for i in range(frames):
        img = (100 + 3000 * (rng.random((size, size)) > 0.95)).astype(np.uint16)
        w.append_frame(img, FrameInfo(index=i, camera_frame=i))
    w.close()
    torch.manual_seed(0)
    gen = DeepZGenerator(DeepZConfig(width=width)).eval()
    backend = create_backend("auto", gen)
    backend.prepare(size, size, k)
    backend.infer(
        np.zeros((size, size), np.float32),
        np.zeros((k, size, size), np.float32),
        np.empty((k, size, size), np.float32),
    )  # warm-up
    t0 = time.perf_counter()
    rep = complete_recording(
        d / "c.ome.tif", Refocuser.for_recording(d / "c.ome.tif", backend), progress=False
    )
    t = time.perf_counter() - t0
    res = {
        "model_width": width,
        "backend": backend.describe().get("name"),
        "precision": backend.precision,
        "device": backend.device,
        "frame": [size, size],
        "planes": k,
        "frames": rep.completed,
        "seconds": round(t, 2),
        "frames_per_s": round(rep.completed / t, 3),
        "planes_per_s": round(rep.completed * k / t, 2),
    }
    print(
        f"  width {width} {res['backend']} {res['precision']}: {res['frames_per_s']} frames/s "
        f"({res['planes_per_s']} planes/s, {k} planes of {size}²)",
        flush=True,
    )
    shutil.rmtree(d, ignore_errors=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--planes", type=int, default=11)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--exposure-ms", type=float, default=10.0, help="camera period (100 fps)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--writer-frames", type=int, default=200)
    ap.add_argument("--completion-frames", type=int, default=2)
    ap.add_argument("--tmp", default=None, help="folder to write into (default: a temp dir)")
    ap.add_argument("--json", default=str(HERE / "results" / "recording.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.seconds, args.writer_frames, args.repeats = 128, 2.0, 40, 1
        args.completion_frames = 1
    tmp = Path(args.tmp) if args.tmp else Path(tempfile.mkdtemp(prefix="bench_rec_"))
    import torch

    print(f"writing into {tmp} ({shutil.disk_usage(tmp).free / 1e9:.0f} GB free)")
    result: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_avg_1min_at_start": os.getloadavg()[0],
            "tmp": str(tmp),
        },
        "args": vars(args),
    }
    print("1. writers (write-through, no fsync)")
    result["writers"] = bench_writers(tmp, args.writer_frames, args.size, args.planes, args.repeats)
    print(f"2. sustained live recording, {args.size}² x {args.planes} planes, stand-in engine")
    result["sustained"] = [
        bench_sustained(tmp, args.size, args.planes, args.seconds, args.exposure_ms, fmt)
        for fmt in ("tiff", "zarr")
    ]
    print("3. completion with the real paper-size generator")
    result["completion"] = bench_completion(
        tmp, args.size, args.planes, args.completion_frames, 0.25 if args.quick else 1.0
    )
    result["machine"]["load_avg_1min_at_end"] = os.getloadavg()[0]
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    if not args.tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    ok = all(s["raw_lost"] == 0 and s["frame_numbers_continuous"] for s in result["sustained"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
