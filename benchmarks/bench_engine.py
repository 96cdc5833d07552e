"""Engine benchmark matrix: (backend x precision x size) runs of ``live-deepz bench``.

Each setting runs :func:`live_deepz.engine._bench.run_bench` (the logic behind
``live-deepz bench``: engine-only planes/s, achieved TFLOP/s vs the matmul ceiling measured
in the same run and, with ``--pipeline``, the live pipeline on the simulated camera) and
writes one JSON per run into ``--out-dir`` (default ``benchmarks/results/``, named
``engine_<backend>_<precision>_<size>_k<K>_w<width>[_pipeline].json``). Settings that cannot
run here (a CUDA backend on a CPU machine, fp16 on the CPU) are listed as skipped with the
reason; a run that fails is listed as failed and the matrix goes on. At the end a markdown
table of all rows is printed and written to ``<out-dir>/engine_matrix.md``.

Usage::

    # GPU machine, everything in one go
    python benchmarks/bench_engine.py --sizes 512 2048 \\
        --backends torch compile cudagraph tensorrt --precisions fp16 bf16

    # CPU, with the pipeline, each run in a fresh process
    python benchmarks/bench_engine.py --backends torch compile --precisions bf16 fp32 \\
        --pipeline --subprocess

    # only print the table of existing results
    python benchmarks/bench_engine.py --table benchmarks/results/engine_*.json
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from live_deepz.engine._bench import (
    BenchConfig,
    check_setting,
    format_summary,
    result_filename,
    run_bench,
)
from live_deepz.errors import LiveDeepzError

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"
TABLE_NAME = "engine_matrix.md"


# --------------------------------------------------------------------------- table


def _fmt(x: Any, spec: str = ".3g") -> str:
    return "–" if x is None else format(x, spec)


COLUMNS = (
    "backend",
    "prec",
    "device",
    "size",
    "K",
    "engine planes/s",
    "ms/frame",
    "TFLOP/s",
    "% ceiling",
    "pipeline planes/s",
    "pipe/engine",
    "p50 ms",
    "p99 ms",
    "drops cam/eng",
    "100 fps",
    "status",
)


def table_row(r: dict[str, Any]) -> list[str]:
    """One markdown table row for a result dict (or a skipped/failed stand-in)."""
    status = r.get("status", "ok")
    if status != "ok":
        reason = str(r.get("reason", "")).replace("|", "/").replace("\n", " ")
        return [
            str(r.get("backend", "?")),
            str(r.get("precision", "?")),
            str(r.get("device", "?")),
            str(r.get("size", "?")),
            str(r.get("planes", "?")),
            *["–"] * 10,
            f"{status}: {reason[:120]}",
        ]
    e = r["engine"]
    p = r.get("pipeline")
    ratio = r.get("ceiling_ratio")
    row = [
        r["backend"],
        r["precision"],
        r.get("device_name") or r["device"],
        str(r["size"]),
        str(r["planes"]),
        _fmt(e["planes_per_s"]),
        _fmt(e.get("ms_per_frame"), ".1f"),
        _fmt(r["tflops"]),
        f"{_fmt(None if ratio is None else 100 * ratio, '.0f')} ({r['ceiling_precision']})",
    ]
    if p is None:
        row += ["–"] * 6
    else:
        rt = r.get("realtime_100fps")
        row += [
            _fmt(p["planes_per_s"]),
            _fmt(r.get("pipeline_over_engine"), ".2f")
            + (" (cam)" if p["bound"] == "camera" else ""),
            _fmt(p["latency_ms"]["p50"], ".1f"),
            _fmt(p["latency_ms"]["p99"], ".1f"),
            f"{p['dropped']['camera']}/{p['dropped']['engine']}",
            "–" if rt is None else ("yes" if rt else "no"),
        ]
    row.append("ok")
    return row


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for r in results:
        lines.append("| " + " | ".join(table_row(r)) + " |")
    ok = [r for r in results if r.get("status", "ok") == "ok"]
    if ok:
        dates = sorted(r["date"] for r in ok)
        hosts = sorted({str(r.get("host_cpu")) for r in ok})
        lines += [
            "",
            f"{len(ok)} run(s), {dates[0]} .. {dates[-1]}, host CPU: {', '.join(hosts)}; "
            "% ceiling: achieved TFLOP/s over the matmul ceiling of the matching precision "
            "measured in the same run; pipe/engine: median of per-round ratios "
            "((cam): camera-bound, not a target check).",
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- runs


def _cleanup() -> None:
    gc.collect()
    with contextlib.suppress(Exception):
        import torch

        torch._dynamo.reset()  # compiled graphs of the previous setting
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run_in_process(cfg: BenchConfig, quiet: bool) -> dict[str, Any]:
    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        return run_bench(cfg, progress=None if quiet else progress)
    finally:
        _cleanup()


def run_in_subprocess(cfg: BenchConfig, quiet: bool, timeout_s: float | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "live_deepz.cli", "bench", *cfg.cli_args(), "--json", str(out)]
        if quiet:
            cmd.append("--quiet")
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout_s)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"exit {proc.returncode}: {proc.stdout[-2000:]}")
        return dict(json.loads(out.read_text()))


def _stand_in(cfg: BenchConfig, status: str, reason: str) -> dict[str, Any]:
    return {
        "status": status,
        "reason": reason,
        "backend": cfg.backend,
        "precision": cfg.precision,
        "device": cfg.device,
        "size": cfg.size,
        "planes": cfg.planes,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", nargs="+", default=["auto"])
    p.add_argument("--precisions", nargs="+", default=["auto"])
    p.add_argument("--sizes", nargs="+", type=int, default=[512])
    p.add_argument("--planes", type=int, default=11)
    p.add_argument("--width", type=float, default=None, help="random-weights width (default 1)")
    p.add_argument("--model", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--pipeline", action="store_true")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-batch", type=int, default=None)
    p.add_argument("--ceiling-n", type=int, default=4096)
    p.add_argument("--ceiling-repeats", type=int, default=5)
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument(
        "--subprocess",
        action="store_true",
        help="run each setting in a fresh process (isolates crashes and memory)",
    )
    p.add_argument("--timeout-s", type=float, default=None, help="per run, with --subprocess")
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--table", nargs="+", type=Path, default=None, help="only print the table of these JSONs"
    )
    args = p.parse_args(argv)

    if args.table:
        results = [json.loads(f.read_text()) for f in args.table]
        print(markdown_table(results))
        return 0

    args.out_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    combos = list(itertools.product(args.backends, args.precisions, args.sizes))
    t0 = time.perf_counter()
    for i, (backend, precision, size) in enumerate(combos, 1):
        cfg = BenchConfig(
            backend=backend,
            width=args.width,
            model=args.model,
            size=size,
            planes=args.planes,
            precision=precision,
            device=args.device,
            seconds=args.seconds,
            pipeline=args.pipeline,
            threads=args.threads,
            rounds=args.rounds,
            max_batch=args.max_batch,
            ceiling_n=args.ceiling_n,
            ceiling_repeats=args.ceiling_repeats,
        )
        print(
            f"=== [{i}/{len(combos)}] {backend} {precision} {size}² "
            f"({time.perf_counter() - t0:.0f} s elapsed)",
            file=sys.stderr,
            flush=True,
        )
        try:
            check_setting(cfg)  # cheap: skip what cannot run here before starting anything
            if args.subprocess:
                r = run_in_subprocess(cfg, args.quiet, args.timeout_s)
            else:
                r = run_in_process(cfg, args.quiet)
        except LiveDeepzError as exc:  # cannot run here (no CUDA, fp16 on CPU, ...)
            print(f"    skipped: {exc}", file=sys.stderr)
            results.append(_stand_in(cfg, "skipped", str(exc)))
            continue
        except Exception as exc:
            if not args.subprocess:
                traceback.print_exc()
            print(f"    FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            results.append(_stand_in(cfg, "failed", f"{type(exc).__name__}: {exc}"))
            continue
        r["status"] = "ok"
        path = args.out_dir / result_filename(r)
        path.write_text(json.dumps(r, indent=2) + "\n")
        print(format_summary(r), file=sys.stderr)
        print(f"    wrote {path}", file=sys.stderr)
        results.append(r)
    table = markdown_table(results)
    (args.out_dir / TABLE_NAME).write_text(table + "\n")
    print(table)
    print(f"\nwrote {args.out_dir / TABLE_NAME}", file=sys.stderr)
    n_failed = sum(r.get("status") == "failed" for r in results)
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
