"""``live-deepz complete``: finish the virtual planes of an interrupted or partial recording.

Repairs a recording whose writer was killed (drops torn tails, rewrites the metadata),
computes the planes of every frame that has none from its raw frame, the recorded
normalisation and DPM plan, and the model (the one the recording names, or ``--model``;
the weights' sha256 must match unless ``--any-model``). The planes are written in the
units the recording was made with (``record --units normalized|counts``).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import InputError, ModelFileError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "recording",
        help="NAME.ome.tif, NAME.ome.zarr or NAME.journal.jsonl (an MDA recording: its raw "
        "output or NAME.planes.zarr)",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="model (default: the recording's own); a multi-channel recording: once for all "
        "channels or once per channel",
    )
    parser.add_argument(
        "--any-model",
        action="store_true",
        help="accept a model whose weights differ from those the recording was made with",
    )
    parser.add_argument("--backend", default="auto", help="auto, torch, compile, ...")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16, fp16")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--tile", type=int, default=0, help="tile edge for large frames (0: off)")
    parser.add_argument("--allow-out-of-range", action="store_true")
    parser.add_argument(
        "--units",
        choices=("normalized", "counts"),
        default=None,
        help="the planes' intensity units; a recording keeps the units it was made with "
        "(record --units), so this only checks them (default: the recording's)",
    )
    parser.add_argument("--no-progress", action="store_true")


def _models_for(header: dict[str, Any], args: argparse.Namespace) -> list[Any]:
    """One model per channel (one for a single-channel recording): ``--model`` or the
    recording's own, checked against the recorded weights' sha256."""
    from ..modelfile import load_model, resolve_model

    meta = header.get("metadata") or {}
    channels = [str(c) for c in header.get("channels") or ["(one)"]]
    n_c = len(channels)
    recorded: list[dict[str, Any]] = list(meta.get("models") or [])
    if len(recorded) != n_c:
        recorded = [meta.get("model") or {}] * n_c
    given = [n.strip() for m in args.model or () for n in m.split(",")]
    if len(given) == 1:
        given *= n_c
    if given and len(given) != n_c:
        raise ModelFileError(
            f"{len(given)} --model for a recording of {n_c} channels ({', '.join(channels)}); "
            "give one for all channels or one per channel"
        )
    loaded: dict[str, Any] = {}
    models = []
    for c in range(n_c):
        rec = recorded[c] or {}
        name = given[c] if given else rec.get("path") or rec.get("name")
        which = f" of channel {channels[c]}" if n_c > 1 else ""
        if not name:
            raise ModelFileError(f"the recording names no model{which}; pass --model")
        try:
            if name not in loaded:
                loaded[name] = load_model(resolve_model(name))
        except ModelFileError as exc:
            if given:
                raise
            raise ModelFileError(
                f"the recording's model{which} {name!r} is not available ({exc}); pass --model"
            ) from None
        model = loaded[name]
        sha = rec.get("weights_sha256")
        if sha and model.weights_sha256 != sha and not args.any_model:
            raise ModelFileError(
                f"model {model.path} has weights sha256 {model.weights_sha256[:12]}… but the "
                f"recording{which} was made with {sha[:12]}…; its planes would differ from the "
                "live ones. Pass the original model with --model, or --any-model to use this "
                "one anyway"
            )
        models.append(model)
    return models


def run(args: argparse.Namespace) -> int:
    from ..recording import (
        complete_recording,
        find_journal,
        is_mda_recording,
        load_journal,
        open_recording,
    )

    if is_mda_recording(args.recording):  # record --mda: pymmcore-plus raw + NAME.planes.zarr
        from .record_mda import run_mda_complete

        return run_mda_complete(args, _models_for)

    journal, _fmt = find_journal(args.recording)
    header, _state, _ = load_journal(journal)
    stored = str((header.get("planes") or {}).get("unit_name", "normalized"))
    if args.units is not None and args.units != stored:
        raise InputError(
            f"{args.recording} stores its planes in {stored} units (chosen when it was "
            f"recorded: record --units {stored}); completed planes use the same units, so "
            f"--units {args.units} cannot apply. Convert afterwards: counts = normalized × "
            "scale + background with the normalisation in the journal"
        )
    models = _models_for(header, args)
    from ..engine.backends import create_backend  # type: ignore[import-not-found]

    made: dict[int, Any] = {}  # one backend per distinct model
    for m in models:
        if id(m) in made:
            continue
        backend: Any = create_backend(
            args.backend, m.generator, precision=args.precision, device=args.device
        )
        if args.tile:
            from ..engine import TiledBackend  # type: ignore[import-not-found]

            backend = TiledBackend(backend, tile=args.tile)
        made[id(m)] = backend
    from ..engine import Refocuser  # type: ignore[import-not-found]

    refocusers = [
        Refocuser(m, made[id(m)], allow_out_of_range=args.allow_out_of_range) for m in models
    ]
    report = complete_recording(args.recording, refocusers, progress=not args.no_progress)
    with open_recording(args.recording) as rec:  # camera frames (one per channel)
        n, done = int(rec.acquired.sum()), int((rec.complete & rec.acquired).sum())
    print(f"completed: {report.path}")
    print(f"  frames             {n}")
    print(f"  already complete   {report.already_complete}")
    print(f"  completed now      {report.completed} in {report.seconds:.1f} s")
    print(f"  incomplete         {n - done}")
    if report.skipped:
        print(f"  not completable    {len(report.skipped)} (plan with another plane count)")
    return 0 if done == n else 1
