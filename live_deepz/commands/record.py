"""``live-deepz record``: record the raw stream and the virtual planes from a camera.

Examples::

    live-deepz record --sim --frames 200 --planes=-4:4:2 --model mymodel -o run.ome.tif
    live-deepz record --config scope.cfg --seconds 60 --format zarr -o run.ome.zarr

Every camera frame is written losslessly; the engine refocuses what it can live and the
planes it skipped are computed after the stop from the raw frames (``--no-complete``
leaves them for ``live-deepz complete``). Ctrl-C stops the recording cleanly. The summary
at the end counts frames acquired, written, processed live, completed after, dropped by
the camera and lost (never silently).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import warnings
from typing import Any

from ..errors import InputError
from .refocus import add_plan_arguments, build_plan, load_models

__all__ = ["add_arguments", "run"]

DEFAULT_PLANES = "-4:4:2"
NOT_BUILT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--sim", action="store_true", help="the simulated microscope")
    src.add_argument("--config", default=None, help="a Micro-Manager configuration (.cfg)")
    parser.add_argument("-o", "--output", required=True, help="NAME.ome.tif or NAME.ome.zarr")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--frames", type=int, default=None, help="record this many frames")
    stop.add_argument("--seconds", type=float, default=None, help="record this long")
    parser.add_argument(
        "--fps", type=float, default=None, help="frame rate (sets the exposure when none given)"
    )
    parser.add_argument("--exposure-ms", type=float, default=None, help="camera exposure, ms")
    add_plan_arguments(parser, default_planes=DEFAULT_PLANES)
    parser.add_argument(
        "--drift-compensation", action="store_true", help="follow focus drift (not built yet)"
    )
    parser.add_argument(
        "--channels", default=None, help="multi-channel acquisition (not built yet)"
    )
    parser.add_argument("--format", choices=("tiff", "zarr"), default=None)
    parser.add_argument("--model", default=None, help="model name or folder")
    parser.add_argument("--backend", default="auto", help="auto, torch, compile, ... (see info)")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16, fp16")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--no-complete",
        action="store_true",
        help="leave the planes the engine skipped for `live-deepz complete`",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing recording")
    parser.add_argument("--sim-sample", default="beads", help="simulated sample (--sim)")
    parser.add_argument("--sim-size", type=int, default=512, help="simulated frame size (--sim)")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")


def _open_core(args: argparse.Namespace) -> Any:
    from ..microscope import SIM_CAMERA, open_core

    if args.fps is not None and not args.fps > 0:
        raise InputError(f"--fps must be > 0, got {args.fps}")
    if args.exposure_ms is not None and not args.exposure_ms > 0:
        raise InputError(f"--exposure-ms must be > 0, got {args.exposure_ms}")
    exposure = args.exposure_ms
    if exposure is None and args.fps is not None:
        exposure = 1000.0 / args.fps
    if args.sim:
        core = open_core(
            "sim", sample=args.sim_sample, size=args.sim_size, exposure_ms=exposure or 10.0
        )
    else:
        core = open_core(args.config)
        if exposure is not None:
            core.setExposure(float(exposure))
    if args.fps is not None:
        period = 1000.0 / args.fps
        if exposure is not None and exposure > period * 1.0001:
            raise InputError(
                f"--exposure-ms {exposure:g} is longer than the frame period {period:g} ms of "
                f"--fps {args.fps:g}"
            )
        cam = core.getCameraDevice()
        if args.sim and cam == SIM_CAMERA:  # the simulated camera paces by its readout time
            core.setProperty(cam, "ReadoutTime", period)
        elif exposure is not None and exposure < period * 0.999:
            print(
                "live-deepz record: warning: --fps is applied through the exposure only; set the "
                "camera's frame rate in its own properties",
                file=sys.stderr,
            )
    return core


def run(args: argparse.Namespace) -> int:
    if args.drift_compensation or args.channels:
        what = "--drift-compensation" if args.drift_compensation else "--channels"
        print(
            f"live-deepz record: {what} is not built yet in this version; record without it "
            "(the raw stream keeps everything needed to refocus later).",
            file=sys.stderr,
        )
        return NOT_BUILT
    if args.frames is not None and args.frames < 1:
        raise InputError(f"--frames must be >= 1, got {args.frames}")
    if args.seconds is not None and not args.seconds > 0:
        raise InputError(f"--seconds must be > 0, got {args.seconds}")

    from ..engine._pipeline import LivePipeline  # type: ignore[import-not-found]
    from ..engine._recorder import Recorder  # type: ignore[import-not-found]
    from ..engine.backends import create_backend  # type: ignore[import-not-found]

    models = load_models(args.model)
    if len(models) != 1:
        raise InputError("record takes one --model (multi-channel recording is not built yet)")
    model = models[0]
    core = _open_core(args)
    shape = (int(core.getImageHeight()), int(core.getImageWidth()))
    try:
        px = float(core.getPixelSizeUm())
    except Exception:
        px = 0.0
    if not px > 0:
        px = float(model.card.optics.get("pixel_size_um", 1.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = build_plan(args, shape, px, default_planes=DEFAULT_PLANES)
        backend = create_backend(
            args.backend, model.generator, precision=args.precision, device=args.device
        )
        pipeline = LivePipeline(
            core,
            backend,
            plan,
            z_range_um=model.card.z_range_um,
            dpm_scale_um=model.card.dpm_scale_um,
            mode="live",
            allow_out_of_range=args.allow_out_of_range,
        )
    for w in caught:
        print(f"live-deepz record: warning: {w.message}", file=sys.stderr)

    stop_now = threading.Event()
    recorder = Recorder(
        pipeline,
        args.output,
        format=args.format,
        model=model,
        overwrite=args.overwrite,
        max_frames=args.frames,
        complete_on_stop=not args.no_complete,
        progress=not args.no_progress,
        metadata={"command": "live-deepz record " + " ".join(sys.argv[2:])},
        on_error=lambda err: stop_now.set(),
    )
    recorder.start()
    interrupted = False
    t0 = time.perf_counter()
    try:
        pipeline.start()
        last_print = t0
        while not stop_now.is_set():
            now = time.perf_counter()
            if args.frames is not None and recorder.frames_written >= args.frames:
                break
            if args.seconds is not None and now - t0 >= args.seconds:
                break
            if pipeline.state == "error":
                break
            if not args.no_progress and now - last_print >= 1.0:
                st = pipeline.stats()
                print(
                    f"\rrecording: {recorder.frames_written} frames written, "
                    f"{st.fps_in:.1f} fps in, {st.frames_processed} processed live",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
                last_print = now
            stop_now.wait(0.02)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if not args.no_progress:
            print(file=sys.stderr)
        try:
            summary = recorder.stop()
        except KeyboardInterrupt:  # a second Ctrl-C: the files are consistent anyway
            print(
                f"live-deepz record: stopped before the planes were completed; run "
                f"`live-deepz complete {args.output}`",
                file=sys.stderr,
            )
            return 130
    for line in summary.lines():
        print(line)
    if interrupted:
        print("  (stopped by Ctrl-C)")
    if summary.error:
        print(f"live-deepz record: error: {summary.error}", file=sys.stderr)
        return 1
    if summary.pipeline_error:
        print(
            f"live-deepz record: error: the live pipeline stopped: {summary.pipeline_error}; "
            f"the {summary.frames_recorded} frame(s) recorded are in {summary.path}",
            file=sys.stderr,
        )
        return 1
    if summary.incomplete and not args.no_complete:
        return 1
    limited = args.frames is not None or args.seconds is not None
    return 130 if interrupted and limited else 0
