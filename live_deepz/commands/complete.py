"""``live-deepz complete``: finish the virtual planes of an interrupted or partial recording.

Repairs a recording whose writer was killed (drops torn tails, rewrites the metadata),
computes the planes of every frame that has none from its raw frame, the recorded
normalisation and DPM plan, and the model (the one the recording names, or ``--model``;
the weights' sha256 must match unless ``--any-model``).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import ModelFileError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", help="NAME.ome.tif, NAME.ome.zarr or NAME.journal.jsonl")
    parser.add_argument("--model", default=None, help="model (default: the recording's own)")
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
    parser.add_argument("--no-progress", action="store_true")


def _model_for(header: dict[str, Any], args: argparse.Namespace) -> Any:
    from ..modelfile import load_model, resolve_model

    recorded = (header.get("metadata") or {}).get("model") or {}
    name = args.model or recorded.get("path") or recorded.get("name")
    if not name:
        raise ModelFileError("the recording names no model; pass --model")
    try:
        model = load_model(resolve_model(name))
    except ModelFileError as exc:
        if args.model:
            raise
        raise ModelFileError(
            f"the recording's model {name!r} is not available ({exc}); pass --model"
        ) from None
    sha = recorded.get("weights_sha256")
    if sha and model.weights_sha256 != sha and not args.any_model:
        raise ModelFileError(
            f"model {model.path} has weights sha256 {model.weights_sha256[:12]}… but the "
            f"recording was made with {sha[:12]}…; its planes would differ from the live ones. "
            "Pass the original model with --model, or --any-model to use this one anyway"
        )
    return model


def run(args: argparse.Namespace) -> int:
    from ..recording import complete_recording, find_journal, load_journal, open_recording

    journal, _fmt = find_journal(args.recording)
    header, _state, _ = load_journal(journal)
    model = _model_for(header, args)
    from ..engine.backends import create_backend  # type: ignore[import-not-found]

    backend: Any = create_backend(
        args.backend, model.generator, precision=args.precision, device=args.device
    )
    if args.tile:
        from ..engine._tiling import TiledBackend  # type: ignore[import-not-found]

        backend = TiledBackend(backend, tile=args.tile)
    report = complete_recording(
        args.recording,
        backend.infer,
        dpm_scale_um=model.card.dpm_scale_um,
        z_range_um=tuple(model.card.z_range_um),
        allow_out_of_range=args.allow_out_of_range,
        progress=not args.no_progress,
    )
    with open_recording(args.recording) as rec:
        n, done = rec.n_frames, int(rec.complete.sum())
    print(f"completed: {report.path}")
    print(f"  frames             {n}")
    print(f"  already complete   {report.already_complete}")
    print(f"  completed now      {report.completed} in {report.seconds:.1f} s")
    print(f"  incomplete         {n - done}")
    if report.skipped:
        print(f"  not completable    {len(report.skipped)} (plan with another plane count)")
    return 0 if done == n else 1
