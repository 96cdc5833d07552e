"""``live-deepz record --mda SEQUENCE.yaml|json``: a pymmcore-plus multi-dimensional acquisition
with live Deep-Z.

The sequence is useq-schema's own YAML/JSON (``useq.MDASequence.from_file``), e.g.::

    stage_positions: [[0, 0, 0], [150, 0, 0], [0, 150, 0]]
    channels: [nuclei, calcium]          # presets of the core's channel group
    time_plan: {interval: 1, loops: 20}  # seconds
    axis_order: tpcz

pymmcore-plus runs it and writes the raw frames itself (``-o NAME.ome.zarr`` or
``NAME.ome.tiff``); :class:`~live_deepz.engine.MDAProcessor` refocuses every frame in its
own thread into ``NAME.planes.zarr`` ``(P, T, C, Z, Y, X)``, and computes the planes it had
to skip when the sequence ends. Ctrl-C cancels the acquisition (files stay readable).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["load_sequence", "run_mda_record"]


def load_sequence(path: str) -> Any:
    """The ``useq.MDASequence`` in ``path`` (YAML or JSON), with a clear error."""
    import useq

    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"--mda {path}: no such file (give a useq MDASequence as .yaml or .json)")
    if p.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise InputError(f"--mda {path}: give the sequence as .yaml, .yml or .json")
    try:
        return useq.MDASequence.from_file(p)
    except Exception as exc:
        raise InputError(f"--mda {path} is not a valid useq MDASequence: {exc}") from None


def _check_channels(core: Any, sequence: Any, path: str) -> list[str]:
    names = [str(ch.config) for ch in sequence.channels]
    for ch in sequence.channels:
        group = ch.group or core.getChannelGroup()
        if not group or not core.isGroupDefined(group):
            raise InputError(
                f"--mda {path}: channel {ch.config!r} needs a channel group, and the microscope "
                "defines none (set the sequence's channel `group`, or Core-ChannelGroup)"
            )
        presets = list(core.getAvailableConfigs(group))
        if ch.config not in presets:
            raise InputError(
                f"--mda {path}: the channel group {group!r} has no preset {ch.config!r}; its "
                f"presets are {', '.join(presets) or '(none)'}"
            )
    return names


def run_mda_record(args: argparse.Namespace, open_core: Any, drift_plan: Any) -> int:
    """Run ``record --mda`` (``open_core(args)`` / ``drift_plan(model, offsets, shape, ...)``
    come from the record command, so both modes open the microscope the same way)."""
    from ..dpm import StaticPlanePlan
    from ..engine import MDAProcessor, create_backend  # type: ignore[import-not-found]
    from ..recording import mda_paths, mda_sizes
    from .refocus import build_plan, core_pixel_size_um, load_models

    for opt, value in (
        ("--frames", args.frames),
        ("--seconds", args.seconds),
        ("--channels", args.channels),
        ("--fps", args.fps),
    ):
        if value is not None:
            raise InputError(
                f"{opt} does not apply to --mda: the sequence file says what to acquire "
                "(time_plan, channels, stage_positions)"
            )
    sequence = load_sequence(args.mda)
    n_p, n_t, n_c = mda_sizes(sequence)
    paths = mda_paths(args.output)
    if paths.existing() and not args.overwrite:
        raise InputError(
            f"{', '.join(str(p) for p in paths.existing())} already exist(s); pass --overwrite"
        )
    models = load_models(",".join(args.model) if args.model else None)
    if len(models) == 1:
        models *= n_c
    if len(models) != n_c:
        raise InputError(
            f"{len(models)} models for the sequence's {n_c} channels: give one --model for all "
            "or one per channel, in the sequence's channel order"
        )
    if len({float(m.card.dpm_scale_um) for m in models}) > 1:
        raise InputError("the channels' models have different DPM scales; use one scale")
    model = models[0]
    z_range = (
        max(float(m.card.z_range_um[0]) for m in models),
        min(float(m.card.z_range_um[1]) for m in models),
    )
    core = open_core(args)
    names = _check_channels(core, sequence, args.mda)
    shape = (int(core.getImageHeight()), int(core.getImageWidth()))
    px = core_pixel_size_um(core, model)
    base = build_plan(args, shape, px, default_planes="-4:4:2")
    made: dict[int, Any] = {}
    for m in models:
        if id(m) not in made:
            made[id(m)] = create_backend(
                args.backend, m.generator, precision=args.precision, device=args.device
            )
    backends = [made[id(m)] for m in models]
    drift_plans: list[Any] = []
    plan: Any = base
    if args.drift_compensation:
        if not isinstance(base, StaticPlanePlan) or base.surface_um is not None:
            raise InputError("--drift-compensation refocuses onto flat planes; drop the surface")

        def plan(position: int) -> Any:  # one tracked focus per position
            dp = drift_plan(
                model,
                base.offsets_um,
                shape,
                device=str(backends[0].device),
                precision=str(backends[0].precision),
                every_n=args.drift_every_n or 1,
                track=args.drift_track,
            )
            drift_plans.append(dp)
            return dp

    proc = MDAProcessor(
        core,
        backends,
        plan,
        dpm_scale_um=float(model.card.dpm_scale_um),
        z_range_um=z_range,
        output=paths.raw,
        complete_on_finish=not args.no_complete,
        allow_out_of_range=args.allow_out_of_range,
        models=models,
        metadata={"command": "live-deepz record " + " ".join(sys.argv[2:]), "channels": names},
        overwrite=args.overwrite,
    )
    n_events = n_p * n_t * n_c
    if not args.no_progress:
        print(
            f"MDA: {n_p} position(s) x {n_t} time point(s) x {n_c} channel(s) = {n_events} "
            f"frames, {base.offsets_um.size} virtual planes each -> {paths.raw}, {paths.planes}",
            file=sys.stderr,
        )
    interrupted = False
    with proc:
        failed: list[BaseException] = []

        def acquire() -> None:  # pymmcore-plus' runner, as core.run_mda would start it
            try:
                core.mda.run(sequence, output=str(paths.raw), overwrite=args.overwrite)
            except BaseException as exc:
                failed.append(exc)

        thread = threading.Thread(target=acquire, name="mda-acquisition", daemon=True)
        thread.start()
        try:
            last = 0.0
            while thread.is_alive():
                thread.join(0.1)
                now = time.perf_counter()
                if not args.no_progress and now - last >= 1.0:
                    live = proc.latest()
                    print(
                        f"\racquiring: {proc.frames_acquired}/{n_events} frames"
                        + (f", last refocused {live.key}" if live else ""),
                        end="",
                        file=sys.stderr,
                        flush=True,
                    )
                    last = now
        except KeyboardInterrupt:
            interrupted = True
            core.mda.cancel()
            thread.join()
        if not args.no_progress:
            print(file=sys.stderr)
        summary = proc.wait()
    for dp in drift_plans:
        close = getattr(dp, "close", None)
        if callable(close):
            close()
    for line in summary.lines():
        print(line)
    if failed:
        print(f"live-deepz record: error: the acquisition failed: {failed[0]}", file=sys.stderr)
        return 1
    if summary.error:
        print(f"live-deepz record: error: {summary.error}", file=sys.stderr)
        return 1
    if summary.camera_error:
        print(
            f"live-deepz record: camera error, acquisition stopped: {summary.camera_error}; the "
            f"{summary.frames_acquired} frame(s) acquired are in {paths.raw} and {paths.planes}",
            file=sys.stderr,
        )
        return 1
    if interrupted:
        return 130
    if summary.incomplete and not args.no_complete:
        return 1
    return 0


def run_mda_complete(args: argparse.Namespace, models_for: Any) -> int:
    """``live-deepz complete`` of an MDA recording (``models_for(header, args)``: the
    complete command's model choice, checked against the recorded weights)."""
    from ..engine import Refocuser, create_backend  # type: ignore[import-not-found]
    from ..recording import complete_mda_recording, open_mda_recording

    if getattr(args, "units", None) == "counts":
        raise InputError(
            f"{args.recording} stores its planes normalised (MDA recordings always do); "
            "--units counts cannot apply. Convert afterwards: counts = normalized x scale + "
            "background with the (position, channel) normalisation in its journal"
        )
    with open_mda_recording(args.recording) as rec:
        header = rec.metadata
    models = models_for(header, args)
    made: dict[int, Any] = {}
    for m in models:
        if id(m) not in made:
            backend: Any = create_backend(
                args.backend, m.generator, precision=args.precision, device=args.device
            )
            if args.tile:
                from ..engine import TiledBackend  # type: ignore[import-not-found]

                backend = TiledBackend(backend, tile=args.tile)
            made[id(m)] = backend
    report = complete_mda_recording(
        args.recording,
        [Refocuser(m, made[id(m)], allow_out_of_range=args.allow_out_of_range) for m in models],
        progress=not args.no_progress,
    )
    with open_mda_recording(args.recording) as rec:
        n, done = int(rec.acquired.sum()), int((rec.complete & rec.acquired).sum())
    print(f"completed: {report.path}")
    print(f"  frames             {n}")
    print(f"  already complete   {report.already_complete}")
    print(f"  completed now      {report.completed} in {report.seconds:.1f} s")
    print(f"  incomplete         {n - done}")
    return 0 if done == n else 1
