"""``live-deepz bench``: benchmark the inference engine and the live pipeline.

Examples::

    live-deepz bench                                  # engine only, auto backend, 512², 11 planes
    live-deepz bench --pipeline --json bench.json     # + the live pipeline on the sim camera
    live-deepz bench --backend compile --precision bf16 --size 1024 --planes 5 --seconds 10

Reports planes/s and frames/s of the engine alone (median ``infer`` call), the achieved
TFLOP/s as a fraction of the device's matmul ceiling measured in the same run, and with
``--pipeline`` the live pipeline's planes/s, latency and drops on the simulated camera
(100 fps), interleaved with the engine measurement (see ``live_deepz.engine._bench``).
The numbers depend on how busy the machine is: compare runs made on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", default="auto", help="auto, torch, compile, cudagraph, tensorrt (see info)"
    )
    parser.add_argument(
        "--width",
        type=float,
        default=None,
        help="generator width with random weights when no --model (default 1.0, the paper's)",
    )
    parser.add_argument("--model", default=None, help="model name or folder (default: random)")
    parser.add_argument("--size", type=int, default=512, help="frame size in pixels (square)")
    parser.add_argument("--planes", type=int, default=11, help="planes per frame (K)")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16, fp16")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="duration of each timed phase per round"
    )
    parser.add_argument(
        "--pipeline",
        action="store_true",
        help="also run the live pipeline on the simulated camera and compare",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved engine/pipeline rounds, medians reported (default 2 with "
        "--pipeline, else 1)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--max-batch", type=int, default=None, help="planes per network call")
    parser.add_argument(
        "--exposure-ms", type=float, default=10.0, help="sim camera exposure (10 ms = 100 fps)"
    )
    parser.add_argument("--sample", default="beads", help="simulated sample (--pipeline)")
    parser.add_argument(
        "--camera-replay",
        type=int,
        default=0,
        metavar="N",
        help="--pipeline: the simulated camera renders N frames once and replays them (host "
        "cost of a real camera: one copy per frame); 0 (default) renders every frame",
    )
    parser.add_argument(
        "--ceiling-n", type=int, default=4096, help="matrix size of the matmul ceiling"
    )
    parser.add_argument(
        "--ceiling-repeats", type=int, default=5, help="timed matmuls per ceiling measurement"
    )
    parser.add_argument(
        "--engine-thread",
        choices=("worker", "main"),
        default="worker",
        help="run the engine-only phase in a fresh thread like the pipeline (default) or in "
        "the main thread",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the result to this file")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from ..engine import (  # type: ignore[import-not-found]
        BenchConfig,
        format_summary,
        run_bench,
    )

    cfg = BenchConfig(
        backend=args.backend,
        width=args.width,
        model=args.model,
        size=args.size,
        planes=args.planes,
        precision=args.precision,
        device=args.device,
        seconds=args.seconds,
        pipeline=args.pipeline,
        threads=args.threads,
        rounds=args.rounds,
        max_batch=args.max_batch,
        ceiling_n=args.ceiling_n,
        ceiling_repeats=args.ceiling_repeats,
        exposure_ms=args.exposure_ms,
        sample=args.sample,
        camera_replay=args.camera_replay,
        engine_thread=args.engine_thread,
    )
    result: dict[str, Any] = run_bench(cfg, progress=None if args.quiet else _progress)
    result["argv"] = list(sys.argv)
    if args.json is not None:  # first: the measurement is kept even if stdout goes away
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(format_summary(result))
    if args.json is not None:
        print(f"wrote {args.json}")
    return 0
