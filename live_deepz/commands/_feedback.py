"""What the commands tell the user about time: completion estimates and progress lines."""

from __future__ import annotations

import sys
from typing import Any

__all__ = [
    "LONG_COMPLETION_S",
    "completion_notice",
    "format_duration",
    "live_cpu_threads",
    "record_progress_line",
]

LONG_COMPLETION_S = 20.0
"""A completion after ``record`` longer than this gets its estimate and the choices printed."""


def format_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``1.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def completion_notice(n_frames: int, estimate_s: float | None, output: str, n_planes: int) -> str:
    """The message printed before ``record`` completes ``n_frames`` frames' planes."""
    est = "an unknown time" if estimate_s is None else f"about {format_duration(estimate_s)}"
    return (
        f"live-deepz record: computing the virtual planes of {n_frames} frame(s) the live "
        f"engine skipped ({n_planes} plane(s) each): {est} on this machine. Ctrl-C stops it "
        f"and keeps the recording; finish later with `live-deepz complete {output}`. To "
        "avoid it: --no-complete, fewer planes (e.g. --planes=-4:4:4), a smaller field "
        "(--sim-size 256 or a camera ROI), or fewer frames (--frames N)"
    )


def print_completion_notice(
    n_frames: int, estimate_s: float | None, output: str, n_planes: int
) -> None:
    """Print :func:`completion_notice` when the completion is long (or its time unknown)."""
    if estimate_s is None or estimate_s >= LONG_COMPLETION_S:
        print(completion_notice(n_frames, estimate_s, output, n_planes), file=sys.stderr)


def record_progress_line(frames_written: int, stats: Any) -> str:
    """The one-line progress of ``record`` (``stats``: the pipeline's, or None)."""
    if stats is None or int(getattr(stats, "frames_in", 0)) == 0:
        return "recording: starting the camera and the engine (first frames)..."
    behind = max(0, int(stats.frames_in) - int(stats.frames_processed))
    line = (
        f"recording: {frames_written} frames written, {stats.fps_in:.1f} fps in, "
        f"{stats.frames_processed} processed live"
    )
    ms = None
    try:
        ms = float(stats.stage_ms["infer"])
    except (KeyError, TypeError, ValueError):
        ms = None
    if behind and ms is not None and ms > 0:
        line += f", {behind} to complete after stop (~{format_duration(behind * ms / 1000)})"
    return line


def live_cpu_threads(device: str) -> int | None:
    """Inference threads for a live engine: 1 on a CPU of at most 4 cores (the camera and
    the recorder need the others; with 2 OpenMP threads on a busy 2-core machine one
    completion frame took 3.2 s instead of 0.35 s), else None (torch's default)."""
    import os

    if str(device).startswith("cuda"):
        return None
    if device == "auto":
        import torch

        if torch.cuda.is_available():
            return None
    return 1 if (os.cpu_count() or 1) <= 4 else None
