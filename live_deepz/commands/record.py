"""``live-deepz record``: record the raw stream and the virtual planes from a camera.

Examples::

    live-deepz record --sim --frames 200 --planes=-4:4:2 --model mymodel -o run.ome.tif
    live-deepz record --config scope.cfg --seconds 60 --format zarr -o run.ome.zarr
    live-deepz record --sim --sim-sample worm --channels nuclei,calcium --frames 50 -o two.ome.tif
    live-deepz record --sim --mda sequence.yaml -o mda.ome.zarr   (a useq MDASequence)

Every camera frame is written losslessly; the engine refocuses what it can live and the
planes it skipped are computed after the stop from the raw frames (``--no-complete``
leaves them for ``live-deepz complete``). Ctrl-C stops the recording cleanly. The summary
at the end counts frames acquired, written, processed live, completed after, dropped by
the camera and lost (never silently).

``--drift-compensation`` makes the planes follow the sample's focus drift: the plan is a
:class:`~live_deepz.calibration.DriftCompensationPlan` (planes = tracked focus + ``--planes``
offsets) built by :func:`live_deepz.calibration.drift_compensation_plan`, which the live UI
uses as well. The
recording journals the plan once (its ``describe()``) and the recorder
(:class:`~live_deepz.engine._recorder.PlanTimeline`, the same for recordings made in the
UI) journals the DPM timeline as ``drift`` events about once a second: per processed frame
the correction served (µm) and every raw / filtered drift estimate. ``live-deepz complete``
computes the planes the engine skipped from that timeline.

``--channels A,B`` records an interleaved multi-channel stream (frame 0 channel A, frame 1
B, frame 2 A, ...; one time point = one frame per channel): each channel has its own
normalisation and model (``--model`` once, or once per channel), the files get a C axis
(raw ``T, C, Y, X``, planes ``T, C, Z, Y, X``) and ``--frames`` counts time points. The
simulated camera sequences the scene's channels itself (``--sim-sample worm --channels
nuclei,calcium``); with a Micro-Manager configuration the names are checked against its
channel group and then refused (exit 2): per-frame switching needs hardware sequencing,
which this version does not set up (docs/RECORDING.md).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import warnings
from typing import Any

from ..errors import InputError
from ..sample_names import sample_argument, samples_help
from ._feedback import live_cpu_threads, print_completion_notice, record_progress_line
from .refocus import (
    add_plan_arguments,
    add_units_argument,
    build_plan,
    core_pixel_size_um,
    load_models,
)

__all__ = ["add_arguments", "run"]

DEFAULT_PLANES = "-4:4:2"
NOT_BUILT = 2

# --------------------------------------------------------------------------- the command


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
        "--drift-compensation",
        action="store_true",
        help="planes follow the sample's focus drift (tracked from the frames; flat planes "
        "at the --planes offsets around the tracked focus)",
    )
    parser.add_argument(
        "--drift-track",
        choices=("focus", "keyframe"),
        default="focus",
        help="with --drift-compensation: 'focus' sends the planes to where a focus measure "
        "finds the sample sharpest; 'keyframe' holds the plane in view when recording starts, "
        "following the change found by matching each frame's refocused planes with the first "
        "frame (the reliable mode with a trained model: benchmarks/RESULTS.md, session 7)",
    )
    parser.add_argument(
        "--drift-every-n",
        type=int,
        default=None,
        help="estimate the drift on every N-th camera frame (default: automatic, within "
        "10 %% (CPU) / 25 %% (CUDA) of the live inference work, at least 5 on the CPU)",
    )
    parser.add_argument(
        "--channels",
        default=None,
        help="interleaved multi-channel recording, e.g. nuclei,calcium: the camera stream "
        "alternates the channels frame by frame (--sim: the sample's channel names or "
        "indices, see --sim-sample worm; a Micro-Manager configuration: presets of its channel "
        "group, which needs hardware sequencing: refused for now). Files get a C axis; "
        "--frames counts time points (one frame per channel)",
    )
    parser.add_argument(
        "--mda",
        default=None,
        metavar="SEQUENCE",
        help="run a pymmcore-plus multi-dimensional acquisition from a useq MDASequence "
        "(.yaml/.json: stage_positions, channels, time_plan); -o NAME.ome.zarr|.ome.tiff gets "
        "pymmcore-plus' raw files, NAME.planes.zarr the virtual planes (P, T, C, Z, Y, X)",
    )
    parser.add_argument("--format", choices=("tiff", "zarr"), default=None)
    add_units_argument(parser)
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="model name or folder; with --channels once for all channels or once per channel "
        "in their order (--model a --model b)",
    )
    parser.add_argument("--backend", default="auto", help="auto, torch, compile, ... (see info)")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16, fp16")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--no-complete",
        action="store_true",
        help="leave the planes the engine skipped for `live-deepz complete`",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing recording")
    parser.add_argument(
        "--sim-sample",
        type=sample_argument(),  # type: ignore[arg-type]
        default="beads",
        metavar="SAMPLE",
        help=f"simulated sample (--sim): {samples_help()}",
    )
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


class _NotBuilt(Exception):
    """A combination this version does not support yet (exit status 2)."""


def _channel_list(spec: str) -> list[str]:
    names = [n.strip() for n in str(spec).split(",")]
    if not names or any(not n for n in names):
        raise InputError(f"--channels {spec!r}: give comma-separated channel names, e.g. GFP,RFP")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"--channels {spec!r} names {dup[0]!r} twice; give each channel once")
    return names


def _camera_channels(core: Any, args: argparse.Namespace, names: list[str]) -> list[str]:
    """Make the camera interleave the ``--channels``; returns their names as the source
    calls them and the values the frames' channel metadata will carry.

    The simulated camera sequences them itself (``ChannelSequence``). A Micro-Manager
    configuration is checked (a channel group holding those presets) and then refused:
    switching the channel between two frames of a running stream needs the hardware to do
    it (the camera's trigger output stepping the light source through a loaded sequence),
    which this version does not set up; see docs/RECORDING.md.
    """
    cam = core.getCameraDevice()
    if args.sim:
        avail = [n for n in str(core.getProperty(cam, "ChannelNames")).split(",") if n]
        lower = {n.lower(): i for i, n in enumerate(avail)}
        idx: list[int] = []
        for name in names:
            i = lower.get(name.lower())
            if i is None and name.isdigit() and int(name) < len(avail):
                i = int(name)
            if i is None:
                raise InputError(
                    f"--channels: the simulated sample {args.sim_sample!r} has no channel "
                    f"{name!r}; its channels are {', '.join(avail)} (names or indices 0.."
                    f"{len(avail) - 1}; --sim-sample worm has nuclei,calcium)"
                )
            idx.append(i)
        if len(set(idx)) != len(idx):
            raise InputError(f"--channels {args.channels!r} names one channel twice")
        names[:] = [avail[i] for i in idx]
        core.setProperty(cam, "ChannelSequence", ",".join(str(i) for i in idx))
        return [str(i) for i in idx]
    group = core.getChannelGroup()
    if not group:
        raise InputError(
            f"--channels names presets of the configuration's channel group, but {args.config} "
            "sets no channel group; define a group of channel presets (Micro-Manager: Groups "
            "and presets) and make it the channel group (Core-ChannelGroup), or record "
            "without --channels"
        )
    presets = list(core.getAvailableConfigs(group))
    for name in names:
        if name not in presets:
            raise InputError(
                f"--channels: the channel group {group!r} of {args.config} has no preset "
                f"{name!r}; its presets are {', '.join(presets) or '(none)'}"
            )
    raise _NotBuilt(
        f"--channels {','.join(names)} with a Micro-Manager configuration is not built yet: "
        "the channels must change between two frames of the running camera stream, which "
        "needs hardware sequencing (the camera's trigger output stepping the light source "
        f"through the {group!r} presets, loaded as a property sequence) that this version does "
        "not set up. Record one channel at a time (select the preset, run record without "
        "--channels), or try --channels with --sim."
    )


def _drift_refocus_fn(model: Any) -> Any:
    """The drift estimator's refocus function (None: the model's engine); tests replace it."""
    return None


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except _NotBuilt as exc:
        print(f"live-deepz record: {exc}", file=sys.stderr)
        return NOT_BUILT


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "mda", None):
        if getattr(args, "units", "normalized") == "counts":
            raise _NotBuilt(
                "--units counts with --mda is not built yet: MDA planes are stored normalised; "
                "counts = normalized x scale + background with each (position, channel)'s "
                "normalisation in NAME.planes.zarr/journal.jsonl"
            )
        from ..calibration import drift_compensation_plan  # type: ignore[import-not-found]
        from .record_mda import run_mda_record

        return run_mda_record(args, _open_core, drift_compensation_plan)
    names = None if args.channels is None else _channel_list(args.channels)
    if names is not None and args.drift_compensation:
        raise _NotBuilt(
            "--drift-compensation with --channels is not built yet; record the channels "
            "without it, or one channel with it"
        )
    if args.drift_every_n is not None and args.drift_every_n < 1:
        raise InputError(f"--drift-every-n must be >= 1, got {args.drift_every_n}")
    if args.drift_compensation:
        surfaces = [
            n
            for n, v in (("--tilt-deg", args.tilt_deg), ("--surface", args.surface))
            if v is not None
        ] + (["--dpm"] if args.dpm is not None else [])
        if surfaces:
            raise InputError(
                f"--drift-compensation refocuses onto flat planes around the tracked focus; "
                f"it cannot be combined with {' / '.join(surfaces)} yet"
            )
    if args.frames is not None and args.frames < 1:
        raise InputError(f"--frames must be >= 1, got {args.frames}")
    if args.seconds is not None and not args.seconds > 0:
        raise InputError(f"--seconds must be > 0, got {args.seconds}")

    from ..engine import LiveSession, model_metadata  # type: ignore[import-not-found]
    from ..engine.backends import create_backend  # type: ignore[import-not-found]

    models = load_models(",".join(args.model) if args.model else None)
    n_c = 1 if names is None else len(names)
    if len(models) == 1:
        models *= n_c
    if len(models) != n_c and names is None:
        raise InputError(
            f"{len(models)} models given: record takes one --model (one per channel only with "
            "--channels)"
        )
    if len(models) != n_c:
        raise InputError(
            f"{len(models)} models for {n_c} channels ({', '.join(names or ())}): give one "
            "--model for all channels or one per channel, in the order of --channels"
        )
    model = models[0]
    if len({float(m.card.dpm_scale_um) for m in models}) > 1:
        raise InputError(
            "the channels' models have different DPM scales ("
            + ", ".join(f"{m.card.name}: {m.card.dpm_scale_um:g} µm" for m in models)
            + "); use models trained with the same DPM scale"
        )
    core = _open_core(args)
    camera_channels = None if names is None else _camera_channels(core, args, names)
    shape = (int(core.getImageHeight()), int(core.getImageWidth()))
    px = core_pixel_size_um(core, model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = build_plan(args, shape, px, default_planes=DEFAULT_PLANES)
        made: dict[int, Any] = {}  # one backend per distinct model
        for m in models:
            if id(m) not in made:
                made[id(m)] = create_backend(
                    args.backend,
                    m.generator,
                    precision=args.precision,
                    device=args.device,
                    num_threads=live_cpu_threads(args.device),
                )
        backends = [made[id(m)] for m in models]
        backend = backends[0]
        if args.drift_compensation:
            from ..calibration import drift_compensation_plan  # type: ignore[import-not-found]

            plan = drift_compensation_plan(
                model,
                plan.offsets_um,
                shape,
                device=str(backend.device),
                precision=str(backend.precision),
                refocus_fn=_drift_refocus_fn(model),
                every_n=args.drift_every_n,
                track=args.drift_track,
            )
        live = LiveSession(  # the app drives the same session object
            core,
            models,
            backends,
            plan,
            mode="live",
            allow_out_of_range=args.allow_out_of_range,
            channels=camera_channels,
        )
        pipeline = live.pipeline
    for w in caught:
        print(f"live-deepz record: warning: {w.message}", file=sys.stderr)

    stop_now = threading.Event()
    extra: dict[str, Any] = {"command": "live-deepz record " + " ".join(sys.argv[2:])}
    if names is not None:
        extra["models"] = [model_metadata(m) for m in models]  # per channel
    live.recordingFailed.connect(lambda _msg: stop_now.set())
    recorder = live.start_recording(  # before start(): from the run's first frame
        args.output,
        format=args.format,
        model=model,
        overwrite=args.overwrite,
        max_frames=args.frames,
        complete_on_stop=not args.no_complete,
        progress=not args.no_progress,
        metadata=extra,
        channel_names=names,
        units=args.units,
        before_completion=None
        if args.no_progress
        else lambda n, est: print_completion_notice(
            n, est, args.output, len(getattr(plan, "offsets_um", ()))
        ),
    )
    interrupted = False
    t0 = time.perf_counter()
    try:
        if not args.no_progress:
            print(record_progress_line(0, None), end="", file=sys.stderr, flush=True)
        live.start()
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
                line = record_progress_line(recorder.frames_written, pipeline.stats())
                print(f"\r{line:100.100s}", end="", file=sys.stderr, flush=True)
                last_print = now
            stop_now.wait(0.02)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if not args.no_progress:
            print(file=sys.stderr)
        if args.drift_compensation:  # its last estimates end before the recorder journals them
            try:
                pipeline.stop()
            except Exception as exc:  # the recorder reports the pipeline's state
                print(f"live-deepz record: warning: stopping: {exc}", file=sys.stderr)
            plan.close()
        try:
            summary = live.stop_recording()
            assert summary is not None
        except KeyboardInterrupt:  # a second Ctrl-C: the files are consistent anyway
            print(
                f"live-deepz record: stopped before the planes were completed; run "
                f"`live-deepz complete {args.output}`",
                file=sys.stderr,
            )
            return 130
    for line in summary.lines():
        print(line)
    if args.sim and summary.frames_recorded:  # the simulated worm's truth: NAME.truth.json
        from ..analysis.activity import write_sim_truth

        try:
            write_sim_truth(core, args.output)
        except Exception as exc:  # the recording itself is complete
            print(f"live-deepz record: warning: no truth file: {exc}", file=sys.stderr)
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
