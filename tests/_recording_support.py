"""Helpers for the recording / record / refocus tests: a tiny model, slow backends, a sim."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from live_deepz.engine.testing import FakeBackend, SlowBackend

__all__ = [
    "SHAPE",
    "FakeBackend",
    "SlowBackend",
    "kill_9_after",
    "make_tiny_model",
    "recorder_child_script",
    "sim_core",
    "wait_for",
]

SHAPE = (64, 64)


def make_tiny_model(folder: Path, name: str = "tiny", seed: int = 0) -> Path:
    """A width-0.125 Deep-Z generator saved as a model folder (random weights)."""
    import torch

    from live_deepz.modelfile import ModelCard, save_model
    from live_deepz.network import DeepZConfig, DeepZGenerator
    from live_deepz.optics import Optics

    torch.manual_seed(seed)
    gen = DeepZGenerator(DeepZConfig(width=0.125))
    card = ModelCard.for_generator(name, gen, Optics(), (-10.0, 10.0))
    return save_model(folder / name, gen, card)


def sim_core(exposure_ms: float = 10.0, shape: tuple[int, int] = SHAPE) -> Any:
    from live_deepz.microscope import NoiseFrameSource, open_core

    return open_core("sim", scene=NoiseFrameSource(shape, seed=1), exposure_ms=exposure_ms)


def wait_for(cond: Any, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


_RECORDER_CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from _recording_support import FakeBackend, SlowBackend, sim_core
from live_deepz.dpm import StaticPlanePlan
from live_deepz.engine._pipeline import LivePipeline
from live_deepz.engine._recorder import Recorder
core = sim_core(5.0, {shape!r})
if {channels!r}:
    core.setProperty("Camera", "ChannelSequence", ",".join({channels!r}))
pl = LivePipeline(core, SlowBackend(FakeBackend(), 0.04), StaticPlanePlan({offsets!r}),
                  z_range_um=(-10.0, 10.0), dpm_scale_um=10.0, mode="live",
                  channels={channels!r})
rec = Recorder(pl, {out!r}, progress=False, sync_interval_s=0)
rec.start()
pl.start()
while True:
    print(rec.frames_written, flush=True)
    time.sleep(0.01)
"""


def recorder_child_script(
    out: Path,
    offsets: list[float],
    shape: tuple[int, int] = SHAPE,
    channels: list[str] | None = None,
) -> str:
    """A script for :func:`kill_9_after`: the Recorder on a simulated live pipeline (slow fake
    engine; ``channels`` = an interleaved channel stream) writing ``out``, printing
    ``frames_written`` every 10 ms until killed."""
    tests = str(Path(__file__).resolve().parent)
    return _RECORDER_CHILD.format(
        tests=tests, shape=tuple(shape), offsets=list(offsets), channels=channels, out=str(out)
    )


def kill_9_after(script: str, frames: int, timeout_s: float = 90.0) -> int:
    """Run ``script`` in a fresh interpreter (it prints ``frames_written`` lines), ``kill -9``
    it once it reports ``frames`` written (or at the timeout); return the last count read."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    flushed = 0
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while flushed < frames and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            flushed = int(line)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # mid-run, no cleanup of any kind
        proc.wait(10)
    return flushed
