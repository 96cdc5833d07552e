"""The demo's configuration on a CPU: a field and plane count whose planes visibly move.

The full demo (512² px, 11 planes + the depth plane) refreshes the virtual planes every
5–10 s on a 2-core CPU while the raw view streams at ~80 fps. On a CPU (and only when the
user chose neither ``--size`` nor ``--planes``) :func:`choose_cpu_demo` times the model's
engine on the machine for a few candidate fields (centred, smaller) and plane counts, and
takes the largest that processes at least :data:`TARGET_FPS` frames per second, with one
inference thread (the simulated camera and the window need the other core) and a 40 ms
exposure (25 fps raw: smooth, and the simulator's rendering leaves the engine room).
On a GPU the full configuration is kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CANDIDATES", "TARGET_FPS", "CpuDemoChoice", "choose_cpu_demo"]

TARGET_FPS = 3.0
"""Processed frames per second aimed at (the engine alone; the camera and UI take some)."""
CANDIDATES: tuple[tuple[int, str], ...] = (
    (256, "-8:8:4"),
    (192, "-8:8:4"),
    (128, "-8:8:4"),
    (128, "-6:6:6"),
    (96, "-6:6:6"),
)
"""(field side px, planes) from the most to the least informative; the depth plane (0 µm)
is one of the planes."""
CPU_EXPOSURE_MS = 40.0


@dataclass
class CpuDemoChoice:
    size: int
    planes: str
    n_planes: int
    seconds_per_frame: float
    threads: int
    exposure_ms: float

    @property
    def expected_fps(self) -> float:
        return 1.0 / self.seconds_per_frame if self.seconds_per_frame > 0 else float("inf")

    def describe(self) -> str:
        return (
            f"live-deepz demo: on this CPU the engine refocuses a {self.size}×{self.size} px "
            f"centred field onto {self.n_planes} planes ({self.planes} µm) with "
            f"{self.threads} thread(s), measured {self.seconds_per_frame:.2f} s per frame "
            f"(~{self.expected_fps:.1f} processed frames/s), and the camera runs at "
            f"{1000 / self.exposure_ms:.0f} fps. For the full view pass --size 512 "
            "--planes=-10:10:2 (on a CPU the planes then refresh every few seconds)"
        )


def _time_frame(backend: Any, size: int, n_planes: int, repeats: int = 2) -> float:
    rng = np.random.default_rng(0)
    x = rng.random((size, size), dtype=np.float32)
    d = np.zeros((n_planes, size, size), np.float32)
    d.flags.writeable = False
    out = np.empty((n_planes, size, size), np.float32)
    backend.infer(x, d, out)  # prepare + warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        backend.infer(x, d, out)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def choose_cpu_demo(
    model_spec: str | None, backend: str = "auto", precision: str = "auto"
) -> CpuDemoChoice | None:
    """Time the model on this CPU and pick the demo's field and planes; None when the
    engine runs on a GPU (keep the full configuration) or no model can be loaded."""
    import torch

    from live_deepz.dpm import parse_planes
    from live_deepz.engine.backends import create_backend
    from live_deepz.errors import LiveDeepzError
    from live_deepz.modelfile import load_model, resolve_model

    if torch.cuda.is_available():
        return None
    try:
        model = load_model(resolve_model(model_spec))
    except LiveDeepzError:
        return None  # the session reports the model problem itself
    torch.set_num_threads(1)
    engine = create_backend(
        backend or "auto", model.generator, precision=precision or "auto", device="cpu"
    )
    budget = 1.0 / TARGET_FPS
    # time one small configuration, predict the others by pixels × planes, then verify the
    # largest predicted to fit (two timings instead of one per candidate: a quick start)
    ref_size, ref_planes = 128, CANDIDATES[2][1]
    ref_k = int(parse_planes(ref_planes).size)
    per_px = _time_frame(engine, ref_size, ref_k) / (ref_size * ref_size * ref_k)
    best: CpuDemoChoice | None = None
    for size, planes in CANDIDATES:
        k = int(parse_planes(planes).size)
        if per_px * size * size * k > budget and (size, planes) != CANDIDATES[-1]:
            continue
        s = _time_frame(engine, size, k)
        best = CpuDemoChoice(size, planes, k, s, 1, CPU_EXPOSURE_MS)
        if s <= budget * 1.2:
            break
    return best
