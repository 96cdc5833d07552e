"""Engine and live-pipeline benchmark: the logic behind ``live-deepz bench`` and ``benchmarks/``.

One run (:func:`run_bench`) measures, at one (backend, precision, frame size, K) setting:

1. the device's dense matmul ceiling in bf16 and fp32 (:func:`measure_matmul_ceiling`),
   before the timed phases and again after them (the machines are shared: the median of
   the two is the ceiling, and the ratio to it drifts less than absolute numbers);
2. **engine only**: ``backend.infer`` of K planes on a static input, repeated for
   ``seconds`` (at least :data:`MIN_CALLS` calls, after warm-up calls), the device
   synchronised before each clock read; frames/s and planes/s from the median call time;
   achieved TFLOP/s = planes/s x H x W x ``generator_flops_per_pixel`` / 1e12, and its ratio
   to the ceiling of the matching precision (bf16 for bf16/fp16, fp32 for fp32);
3. with ``pipeline=True``: the whole :class:`LivePipeline` (live mode) on the simulated
   camera (``open_core("sim")``, 100 fps at the default 10 ms exposure) with the *same*
   backend object, for ``seconds`` after two processed frames of warm-up. The
   ``frames_processed`` counter is polled (every 20-50 ms); when frames are slower than the
   polls, the frame rate is the median interval between processed frames (like the engine's
   median call time), otherwise the mean over the window (``rate_method``). Latency p50/p99
   and the drops come from :meth:`LivePipeline.stats`.

With ``rounds > 1`` the phases are interleaved (engine, pipeline, engine, pipeline, ...) and
the medians over rounds are reported; ``pipeline_over_engine`` is the median of the per-round
ratios (adjacent phases see the most similar machine load).

``realtime_100fps``: the pipeline kept the camera's rate (pipeline and popped frames/s within
5 % of the nominal camera rate, no camera and no engine drops in the measured window).
On the development CPU at 512² x 11 planes with the paper-size network it does not (the
engine makes a frame every few seconds); the summary says so and by how much.

Caveat for CPU runs: the simulated camera renders its frames in a Python thread of the same
process, on the same cores as the engine (a few ms per 512² frame at 100 fps), which a real
camera does not; the pipeline/engine ratio on a 2-core machine includes that cost.
``camera_replay=N`` (``--camera-replay N``) has the camera render N frames before the stream
and replay them (one copy per frame, like a real camera's DMA), so that the ratio measures
the pipeline's own cost (the "plumbing"). Before the rounds the camera streams one pass
through the core's sequence buffer (:func:`_touch_sequence_buffer`), so that the first-touch
page faults of its memory pool are not charged to the first pipeline phase.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import gc
import itertools
import math
import mmap
import os
import platform
import shlex
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from live_deepz.errors import InputError

from ._ceiling import measure_matmul_ceiling
from ._refocuser import Refocuser
from ._subscribers import PipelineError

__all__ = [
    "MIN_CALLS",
    "SCHEMA",
    "BenchConfig",
    "check_setting",
    "format_summary",
    "result_filename",
    "run_bench",
]

SCHEMA = "live-deepz-bench/1"
MIN_CALLS = 3
"""At least this many timed ``infer`` calls (engine) / processed frames (pipeline) per phase."""
WARMUP_CALLS = 2
"""Untimed ``infer`` calls before the first engine phase (1 before later rounds)."""
REALTIME_TOLERANCE = 0.95
"""The pipeline "kept the camera rate" when it made at least this fraction of it."""
PIPELINE_TARGET = 0.95
"""The target pipeline planes/s / engine-only planes/s (when the engine is the bottleneck)."""
_REPORT_EVERY_S = 2.0
_ENV_KEYS = (
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "KMP_BLOCKTIME",
    "MKL_NUM_THREADS",
    "ONEDNN_MAX_CPU_ISA",
    "CUDA_VISIBLE_DEVICES",
)

Progress = Callable[[str], None]


@dataclass
class BenchConfig:
    """One benchmark setting (the CLI's options)."""

    backend: str = "auto"
    width: float | None = None
    """Generator width for random weights (default 1.0); ignored with ``model``."""
    model: str | None = None
    """A model name or folder (``resolve_model``); None: random weights of ``width``."""
    size: int = 512
    planes: int = 11
    precision: str = "auto"
    device: str = "auto"
    seconds: float = 20.0
    """Duration of each timed phase (engine, pipeline) in each round."""
    pipeline: bool = False
    threads: int | None = None
    """CPU threads for torch (ceiling and engine); None: leave torch's setting."""
    rounds: int | None = None
    """Interleaved rounds; None: 2 with ``pipeline``, else 1."""
    max_batch: int | None = None
    ceiling_n: int = 4096
    ceiling_repeats: int = 5
    exposure_ms: float = 10.0
    """Simulated camera exposure (10 ms = 100 fps)."""
    sample: str = "beads"
    seed: int = 0
    camera_replay: int = 0
    """Simulated camera ``ReplayFrames``: N > 0 renders N frames once and streams them
    cyclically (a copy per frame, like a real camera's host cost); 0 renders every frame."""
    engine_thread: str = "worker"
    """Where the engine phase and the ceiling run: ``"worker"`` (a fresh thread per phase,
    like the pipeline's inference thread) or ``"main"`` (the calling thread)."""

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad value."""
        checks = [
            (self.size >= 8, f"--size must be >= 8, got {self.size}"),
            (self.planes >= 1, f"--planes must be >= 1, got {self.planes}"),
            (self.seconds > 0, f"--seconds must be > 0, got {self.seconds}"),
            (self.width is None or self.width > 0, f"--width must be > 0, got {self.width}"),
            (self.threads is None or self.threads >= 1, f"--threads must be >= 1: {self.threads}"),
            (self.rounds is None or self.rounds >= 1, f"--rounds must be >= 1: {self.rounds}"),
            (
                self.max_batch is None or self.max_batch >= 1,
                f"--max-batch must be >= 1, got {self.max_batch}",
            ),
            (self.ceiling_n >= 16, f"--ceiling-n must be >= 16, got {self.ceiling_n}"),
            (self.ceiling_repeats >= 1, f"--ceiling-repeats must be >= 1: {self.ceiling_repeats}"),
            (self.exposure_ms > 0, f"--exposure-ms must be > 0, got {self.exposure_ms}"),
            (
                0 <= self.camera_replay <= 1024,
                f"--camera-replay must be in 0..1024, got {self.camera_replay}",
            ),
            (
                self.engine_thread in ("worker", "main"),
                f"--engine-thread must be 'worker' or 'main', got {self.engine_thread!r}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise InputError(msg)

    @property
    def n_rounds(self) -> int:
        return self.rounds if self.rounds is not None else (2 if self.pipeline else 1)

    def cli_args(self) -> list[str]:
        """The ``live-deepz bench`` options for this setting (without ``--json``)."""
        a = ["--backend", self.backend]
        if self.model is not None:
            a += ["--model", self.model]
        else:
            a += ["--width", f"{self.width if self.width is not None else 1.0:g}"]
        a += ["--size", str(self.size), "--planes", str(self.planes)]
        a += ["--precision", self.precision, "--device", self.device]
        a += ["--seconds", f"{self.seconds:g}", "--rounds", str(self.n_rounds)]
        if self.pipeline:
            a.append("--pipeline")
        if self.threads is not None:
            a += ["--threads", str(self.threads)]
        if self.max_batch is not None:
            a += ["--max-batch", str(self.max_batch)]
        a += ["--ceiling-n", str(self.ceiling_n), "--ceiling-repeats", str(self.ceiling_repeats)]
        if self.pipeline:
            a += ["--exposure-ms", f"{self.exposure_ms:g}", "--sample", self.sample]
            if self.camera_replay:
                a += ["--camera-replay", str(self.camera_replay)]
        if self.engine_thread != "worker":
            a += ["--engine-thread", self.engine_thread]
        return a

    def command(self) -> str:
        """The equivalent ``live-deepz bench`` command line (shell-quoted)."""
        return "live-deepz bench " + shlex.join(self.cli_args())


# --------------------------------------------------------------------------- helpers


class _Clock:
    """Progress lines prefixed with the time since the run started."""

    def __init__(self, progress: Progress | None) -> None:
        self.t0 = time.perf_counter()
        self.progress = progress

    def __call__(self, msg: str) -> None:
        if self.progress is not None:
            self.progress(f"[{time.perf_counter() - self.t0:6.1f} s] {msg}")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def _run_in(where: str, threads: int | None, fn: Callable[[], Any]) -> Any:
    """``fn()`` in the calling thread (``"main"``) or in a fresh thread (``"worker"``).

    On the 2-core development VM under load, the same ``infer`` ran 2-40x slower in the
    process's main thread than in a fresh thread with libgomp's default wait policy (equal
    with ``OMP_WAIT_POLICY=PASSIVE``); the pipeline infers in a worker thread, so the
    engine-only phase does too by default, and the comparison is like with like.
    """
    if where == "main":
        return fn()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            if threads is not None:
                torch.set_num_threads(threads)
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    t = threading.Thread(target=target, name="live-deepz-bench-engine", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _median(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(statistics.median(vals)) if vals else math.nan


def _finite_or_none(x: Any) -> Any:
    """JSON-safe: NaN/inf -> None, recursively; numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _ceiling_precision(precision: str) -> str:
    return "fp32" if precision == "fp32" else "bf16"


def _load_generator(cfg: BenchConfig) -> tuple[torch.nn.Module, dict[str, Any], tuple, float]:
    """(generator, model info, z_range_um, dpm_scale_um)."""
    from live_deepz.network import DeepZConfig, DeepZGenerator

    if cfg.model is not None:
        from live_deepz.modelfile import load_model, resolve_model

        m = load_model(resolve_model(cfg.model))
        width = float(m.card.architecture.get("width", math.nan))
        info = {
            "name": m.card.name,
            "path": str(m.path),
            "weights_sha256": m.weights_sha256,
            "random_weights": False,
            "width": width,
        }
        if cfg.width is not None and not math.isclose(cfg.width, width):
            info["note"] = f"--width {cfg.width:g} ignored: the model's width is {width:g}"
        return m.generator, info, tuple(m.card.z_range_um), float(m.card.dpm_scale_um)
    width = 1.0 if cfg.width is None else float(cfg.width)
    torch.manual_seed(cfg.seed)
    gen = DeepZGenerator(DeepZConfig(width=width)).eval()
    info = {"name": None, "path": None, "random_weights": True, "width": width}
    return gen, info, (-10.0, 10.0), 10.0


def _offsets(k: int, z_range: tuple) -> np.ndarray:
    lo, hi = float(z_range[0]), float(z_range[1])
    if k == 1:
        return np.array([0.5 * (lo + hi)])
    return np.linspace(lo, hi, k)


def _host_info() -> dict[str, Any]:
    from .backends import compute_devices

    devices = compute_devices()
    load = None
    with contextlib.suppress(OSError, AttributeError):
        load = [round(v, 2) for v in os.getloadavg()]
    return {
        "cpu": devices[0].get("name"),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_avg_at_start": load,
        "devices": devices,
        "env": {k: os.environ[k] for k in _ENV_KEYS if k in os.environ},
    }


# --------------------------------------------------------------------------- phases


def _measure_ceilings(cfg: BenchConfig, device: str, log: _Clock, when: str) -> dict[str, float]:
    out = {}
    for prec in ("bf16", "fp32"):
        out[prec] = measure_matmul_ceiling(
            device, prec, n=cfg.ceiling_n, repeats=cfg.ceiling_repeats, warmup=1
        )
    log(
        f"matmul ceiling ({when}, {cfg.ceiling_n}²): bf16 {out['bf16']:.3g} TFLOP/s, "
        f"fp32 {out['fp32']:.3g} TFLOP/s"
    )
    return out


def _engine_phase(
    backend: Any,
    image: np.ndarray,
    dpms: np.ndarray,
    out: np.ndarray,
    *,
    seconds: float,
    warmup: int,
    device: str,
    k: int,
    log: _Clock,
    label: str,
) -> dict[str, Any]:
    for _ in range(warmup):
        backend.infer(image, dpms, out)
    _sync(device)
    times: list[float] = []
    t_start = time.perf_counter()
    last = t_start
    while True:
        _sync(device)
        t0 = time.perf_counter()
        backend.infer(image, dpms, out)
        _sync(device)
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if t1 - t_start >= seconds and len(times) >= MIN_CALLS:
            break
        if t1 - last >= _REPORT_EVERY_S:
            med = statistics.median(times)
            log(
                f"{label}: {len(times)} calls, {k / med:.3g} planes/s "
                f"({t1 - t_start:.0f}/{seconds:g} s)"
            )
            last = t1
    med = statistics.median(times)
    total = sum(times)
    res = {
        "calls": len(times),
        "seconds": t1 - t_start,
        "ms_per_frame_median": med * 1e3,
        "ms_per_frame_min": min(times) * 1e3,
        "ms_per_frame_max": max(times) * 1e3,
        "frames_per_s": 1.0 / med,
        "planes_per_s": k / med,
        "planes_per_s_mean": k * len(times) / total,
    }
    log(
        f"{label}: {res['planes_per_s']:.3g} planes/s, {res['frames_per_s']:.3g} frames/s "
        f"(median of {len(times)} calls, {med * 1e3:.1f} ms per frame)"
    )
    return res


def _pipeline_phase(
    pipeline: Any,
    *,
    seconds: float,
    k: int,
    expected_frame_s: float,
    camera_fps: float,
    log: _Clock,
    label: str,
) -> dict[str, Any]:
    """Start, warm up (2 processed frames), measure ``seconds``, stop; rates and counters."""
    period = 1.0 / camera_fps if camera_fps > 0 else 0.01
    frame_s = max(expected_frame_s, period)
    # stats() costs ~0.2 ms of GIL-holding Python: at most 50 polls/s keeps it below ~1 %
    poll = min(0.05, max(0.02, frame_s / 20.0))
    warm_limit = max(60.0, 20.0 * frame_s)
    hard_limit = max(3.0 * seconds, seconds + 10.0 * MIN_CALLS * frame_s)
    stop_timeout = max(5.0, 3.0 * expected_frame_s + 5.0)

    def check(st: Any) -> None:
        if st.state == "error" or pipeline.state == "error":
            raise PipelineError(f"the pipeline failed during the benchmark: {pipeline.error}")

    pipeline.start()
    try:
        t_start = time.perf_counter()
        while True:
            st = pipeline.stats()
            check(st)
            if st.frames_processed >= 2:
                break
            if time.perf_counter() - t_start > warm_limit:
                raise PipelineError(
                    f"the pipeline processed {st.frames_processed} frames in {warm_limit:.0f} s "
                    f"of warm-up ({st.frames_in} frames in from the camera)"
                )
            time.sleep(poll)
        s0 = pipeline.stats()
        t0 = time.perf_counter()
        events: list[tuple[float, int]] = []  # (time first seen, frames_processed)
        last_n = s0.frames_processed
        last_report = t0
        while True:
            time.sleep(poll)
            now = time.perf_counter()
            st = pipeline.stats()
            check(st)
            if st.frames_processed != last_n:
                last_n = st.frames_processed
                events.append((now, last_n))
            done = events[-1][1] - events[0][1] if len(events) >= 2 else 0
            if now - t0 >= seconds and done >= MIN_CALLS - 1 and len(events) >= MIN_CALLS:
                break
            if now - t0 >= hard_limit:
                break
            if now - last_report >= _REPORT_EVERY_S:
                log(
                    f"{label}: {st.frames_processed - s0.frames_processed} frames processed, "
                    f"{st.fps_in:.1f} fps in, {st.fps_out * k:.3g} planes/s out "
                    f"({now - t0:.0f}/{seconds:g} s)"
                )
                last_report = now
        s1 = pipeline.stats()
        t1 = time.perf_counter()
    finally:
        pipeline.stop(timeout=stop_timeout)
    final = pipeline.stats()
    if final.state == "error":
        raise PipelineError(f"the pipeline failed: {final.error}")

    periods = [
        (t - tp) / (n - np_)
        for (tp, np_), (t, n) in itertools.pairwise(events)
        if n > np_ and t > tp
    ]
    med = _median(periods)
    span_t = events[-1][0] - events[0][0] if len(events) >= 2 else 0.0
    span_n = events[-1][1] - events[0][1] if len(events) >= 2 else 0
    fps_median = 1.0 / med if med > 0 else math.nan
    fps_mean = span_n / span_t if span_t > 0 else math.nan
    steps = [n - np_ for (_, np_), (_, n) in itertools.pairwise(events)]
    # one frame per poll: the intervals are frame times (median, robust to hiccups, like the
    # engine's median call); several per poll: the poll quantises them, the window mean is exact
    single = bool(steps) and statistics.median(steps) <= 1
    fps = fps_median if single else fps_mean
    window_s = t1 - t0
    d_in = s1.frames_in - s0.frames_in
    dropped = {
        "camera": s1.dropped_camera - s0.dropped_camera,
        "engine": s1.dropped_engine - s0.dropped_engine,
    }
    fps_in = d_in / window_s if window_s > 0 else math.nan
    kept_up = (
        dropped["camera"] == 0
        and dropped["engine"] == 0
        and fps_in >= REALTIME_TOLERANCE * camera_fps
        and fps_mean >= REALTIME_TOLERANCE * camera_fps
    )
    consistent = final.in_flight == 0 and (
        final.frames_in == final.frames_processed + final.dropped_engine
    )
    res = {
        "frames_per_s": fps,
        "planes_per_s": k * fps,
        "rate_method": "median_interval" if single else "window_mean",
        "frames_per_s_median_interval": fps_median,
        "frames_per_s_mean": fps_mean,
        "planes_per_s_mean": k * fps_mean,
        "frames_measured": span_n + (1 if span_n else 0),
        "window_s": window_s,
        "fps_in": fps_in,
        "camera_fps_measured": s1.camera_fps,
        "latency_ms": {
            "p50": s1.latency_p50_ms,
            "p99": s1.latency_p99_ms,
            "max": s1.latency_max_ms,
        },
        "dropped": dropped,
        "stage_ms": dict(s1.stage_ms),
        "kept_camera_rate": bool(kept_up),
        "counters": {
            "frames_in": final.frames_in,
            "frames_processed": final.frames_processed,
            "dropped_camera": final.dropped_camera,
            "dropped_engine": final.dropped_engine,
            "in_flight": final.in_flight,
            "discarded_at_stop": final.discarded_at_stop,
            "consistent": bool(consistent),
        },
    }
    log(
        f"{label}: {res['planes_per_s']:.3g} planes/s, {fps:.3g} frames/s out, "
        f"{fps_in:.1f} fps in, latency p50 {s1.latency_p50_ms:.0f} ms, drops camera "
        f"{dropped['camera']} engine {dropped['engine']}"
    )
    return res


def _touch_sequence_buffer(core: Any, timeout_s: float = 30.0) -> dict[str, Any]:
    """Map every page of the core's sequence buffer before the timed phases.

    The buffer's memory pool (1 GB by default) is mapped lazily: until a stream has cycled
    through it once, every new frame slot costs the kernel page faults (measured: the
    simulated camera thread at 16.7 % of a core in the first 10 s at 100 fps 512², 2.5 %
    after one pass). A long acquisition pays that once; the benchmark pays it here so the
    timed phases see the steady state. UniMMCore keeps the pool as a numpy array
    (``_seq_buffer._pool``, private): one write per page maps it. Other cores: one streamed
    pass at the fastest exposure, at most ``timeout_s``.
    """
    t0 = time.perf_counter()
    mb = float(core.getCircularBufferMemoryFootprint())
    pool = getattr(getattr(core, "_seq_buffer", None), "_pool", None)
    if isinstance(pool, np.ndarray) and pool.dtype == np.uint8 and pool.ndim == 1:
        pool[:: mmap.PAGESIZE] = 0
        return {"method": "page writes", "buffer_mb": mb, "seconds": time.perf_counter() - t0}
    n = int(core.getBufferTotalCapacity()) + 8
    exposure = float(core.getExposure())
    popped = 0
    core.setExposure(min(exposure, 1.0))
    try:
        core.startContinuousSequenceAcquisition(0)
        while popped < n and time.perf_counter() - t0 < timeout_s:
            if core.getRemainingImageCount() > 0:
                with contextlib.suppress(IndexError):
                    core.popNextImage()
                    popped += 1
            else:
                time.sleep(0.0005)
    finally:
        core.stopSequenceAcquisition()
        core.setExposure(exposure)
        with contextlib.suppress(Exception):
            core.clearCircularBuffer()
    return {
        "method": f"streamed {popped} frames",
        "buffer_mb": mb,
        "seconds": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------- the run


def check_setting(cfg: BenchConfig) -> tuple[str, str]:
    """Validate ``cfg`` without running anything slow; return ``(device, precision)``.

    Raises :class:`InputError` (or its subclass ``BackendUnavailableError``) naming the
    problem: a bad value, an unknown backend, a backend or precision this machine cannot run.
    """
    from .backends import (
        BACKENDS,
        BackendUnavailableError,
        resolve_device,
        resolve_precision,
        unavailable_reason,
    )

    cfg.validate()
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    if cfg.backend != "auto":
        if cfg.backend not in BACKENDS:
            raise InputError(
                f"unknown backend {cfg.backend!r}; choose from auto, {', '.join(BACKENDS)}"
            )
        reason = unavailable_reason(cfg.backend, device)
        if reason:
            raise BackendUnavailableError(f"backend {cfg.backend!r} unavailable: {reason}")
    return device, precision


def run_bench(cfg: BenchConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run one benchmark setting; return the JSON-able result (see the module docstring).

    ``progress`` receives one human-readable line per step (None: silent).

    Raises
    ------
    InputError
        A bad setting (the message names it), including
        :class:`~live_deepz.engine.backends.BackendUnavailableError`.
    """
    from live_deepz.dpm import StaticPlanePlan
    from live_deepz.network import generator_flops_per_pixel

    from .backends import create_backend, pinned_host_array

    device, precision = check_setting(cfg)
    log = _Clock(progress)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    generator, model_info, z_range, dpm_scale = _load_generator(cfg)
    width = float(model_info["width"])
    fpp = generator_flops_per_pixel(config=getattr(generator, "config", None))
    h = w = int(cfg.size)
    k = int(cfg.planes)
    n_rounds = cfg.n_rounds
    started = _dt.datetime.now(_dt.timezone.utc)
    host = _host_info()
    log(
        f"bench: backend {cfg.backend}, {precision} on {device}, width {width:g} "
        f"({fpp / 1e6:.3g} MFLOP/pixel), {h}x{w}, {k} planes, {cfg.seconds:g} s per phase, "
        f"{n_rounds} round(s){', with the pipeline' if cfg.pipeline else ''}"
    )

    def ceilings_now(when: str) -> dict[str, float]:
        return _run_in(  # type: ignore[no-any-return]
            cfg.engine_thread, cfg.threads, lambda: _measure_ceilings(cfg, device, log, when)
        )

    ceilings_before = ceilings_now("before")

    opts: dict[str, Any] = {"precision": precision, "device": device}
    if cfg.threads is not None:
        opts["num_threads"] = cfg.threads
    if cfg.max_batch is not None:
        opts["max_batch"] = cfg.max_batch
    log(f"building the {cfg.backend} backend and preparing {h}x{w}x{k} ...")
    t_build = time.perf_counter()
    backend = create_backend(cfg.backend, generator, prepare_shape=(h, w, k), **opts)
    build_s = time.perf_counter() - t_build
    log(f"backend {backend.name} ready in {build_s:.1f} s")

    plan = StaticPlanePlan(_offsets(k, z_range))
    dpms = Refocuser.from_range(z_range, dpm_scale).network_dpms(
        plan.dpms_for_frame(0, 0.0, (h, w))
    )
    dpms.flags.writeable = False  # like the pipeline's static plan: uploaded once
    rng = np.random.default_rng(cfg.seed)
    cuda = device.startswith("cuda")
    image = pinned_host_array((h, w)) if cuda else np.empty((h, w), np.float32)
    image[...] = rng.standard_normal((h, w), dtype=np.float32)
    out = pinned_host_array((k, h, w)) if cuda else np.empty((k, h, w), np.float32)

    pipeline = None
    core = None
    camera_fps = 1000.0 / cfg.exposure_ms
    warm: dict[str, Any] | None = None
    if cfg.pipeline:
        from live_deepz.microscope import open_core
        from live_deepz.normalize import fit_normalization

        from ._pipeline import LivePipeline

        log(f"opening the simulated camera ({cfg.sample}, {h}x{w}, {camera_fps:g} fps) ...")
        core = open_core(
            "sim", sample=cfg.sample, size=(h, w), seed=cfg.seed, exposure_ms=cfg.exposure_ms
        )
        if cfg.camera_replay:
            from live_deepz.microscope import SIM_CAMERA

            core.setProperty(SIM_CAMERA, "ReplayFrames", cfg.camera_replay)
        warm = _touch_sequence_buffer(core)
        log(
            f"camera buffer mapped ({warm['buffer_mb']:.0f} MB, {warm['method']}) "
            f"in {warm['seconds']:.1f} s"
        )
        norm = None
        with contextlib.suppress(Exception):  # no snap: the pipeline fits on its first frame
            core.snapImage()
            snap = np.asarray(core.getImage(), dtype=np.float32)
            norm = fit_normalization(snap)
            image[...] = norm.apply(snap)  # the engine phase sees a real normalised frame
        pipeline = LivePipeline(
            core,
            backend,
            plan,
            z_range_um=z_range,
            dpm_scale_um=dpm_scale,
            mode="live",
            normalization=norm,
        )

    engine_rounds: list[dict[str, Any]] = []
    pipe_rounds: list[dict[str, Any]] = []
    try:
        for r in range(n_rounds):
            tag = f" {r + 1}/{n_rounds}" if n_rounds > 1 else ""
            phase = functools.partial(
                _engine_phase,
                backend,
                image,
                dpms,
                out,
                seconds=cfg.seconds,
                warmup=WARMUP_CALLS if r == 0 else 1,
                device=device,
                k=k,
                log=log,
                label=f"engine{tag}",
            )
            e: dict[str, Any] = _run_in(cfg.engine_thread, cfg.threads, phase)
            e["thread"] = cfg.engine_thread
            engine_rounds.append(e)
            if pipeline is not None:
                p = _pipeline_phase(
                    pipeline,
                    seconds=cfg.seconds,
                    k=k,
                    expected_frame_s=e["ms_per_frame_median"] / 1e3,
                    camera_fps=camera_fps,
                    log=log,
                    label=f"pipeline{tag}",
                )
                p["over_engine"] = p["planes_per_s"] / e["planes_per_s"]
                pipe_rounds.append(p)
    finally:
        if pipeline is not None:
            pipeline.stop(timeout=10.0)
        if core is not None:
            with contextlib.suppress(Exception):
                core.unloadAllDevices()

    ceilings_after = ceilings_now("after")
    ceilings = {p: _median([ceilings_before[p], ceilings_after[p]]) for p in ("bf16", "fp32")}
    ceil_prec = _ceiling_precision(precision)

    eng_pps = _median([e["planes_per_s"] for e in engine_rounds])
    engine = {
        "planes_per_s": eng_pps,
        "frames_per_s": eng_pps / k,
        "ms_per_frame": 1e3 * k / eng_pps,
        "ms_per_plane": 1e3 / eng_pps,
        "planes_per_s_mean": _median([e["planes_per_s_mean"] for e in engine_rounds]),
        "calls": sum(e["calls"] for e in engine_rounds),
        "rounds": engine_rounds,
    }
    tflops = eng_pps * h * w * fpp / 1e12
    desc = backend.describe()
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "date": started.isoformat(timespec="seconds"),
        "command": cfg.command(),
        "backend": backend.name,
        "backend_requested": cfg.backend,
        "precision": precision,
        "device": device,
        "device_name": desc.get("device_name"),
        "host_cpu": host["cpu"],
        "host": host,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "width": width,
        "model": model_info,
        "size": h,
        "planes": k,
        "flops_per_pixel": fpp,
        "seconds_per_phase": cfg.seconds,
        "engine_thread": cfg.engine_thread,
        "rounds": n_rounds,
        "build_s": build_s,
        "backend_describe": desc,
        "engine": engine,
        "tflops": tflops,
        "ceiling_precision": ceil_prec,
        "ceiling_tflops": ceilings[ceil_prec],
        "ceiling_ratio": tflops / ceilings[ceil_prec],
        "ceilings_tflops": ceilings,
        "ceiling_runs": {"before": ceilings_before, "after": ceilings_after},
        "ceiling_n": cfg.ceiling_n,
    }
    if pipe_rounds:
        pps = _median([p["planes_per_s"] for p in pipe_rounds])
        bound = "engine" if engine["frames_per_s"] < REALTIME_TOLERANCE * camera_fps else "camera"
        kept = all(p["kept_camera_rate"] for p in pipe_rounds)
        dropped = {
            "camera": sum(p["dropped"]["camera"] for p in pipe_rounds),
            "engine": sum(p["dropped"]["engine"] for p in pipe_rounds),
        }
        result["pipeline"] = {
            "mode": "live",
            "camera": {
                "sample": cfg.sample,
                "exposure_ms": cfg.exposure_ms,
                "fps": camera_fps,
                "replay_frames": cfg.camera_replay,
                "buffer_warmup": warm,
            },
            "planes_per_s": pps,
            "frames_per_s": pps / k,
            "planes_per_s_mean": _median([p["planes_per_s_mean"] for p in pipe_rounds]),
            "tflops": pps * h * w * fpp / 1e12,
            "latency_ms": {
                "p50": _median([p["latency_ms"]["p50"] for p in pipe_rounds]),
                "p99": _median([p["latency_ms"]["p99"] for p in pipe_rounds]),
            },
            "dropped": dropped,
            "bound": bound,
            "counters_consistent": all(p["counters"]["consistent"] for p in pipe_rounds),
            "rounds": pipe_rounds,
        }
        result["pipeline_over_engine"] = _median([p["over_engine"] for p in pipe_rounds])
        result["pipeline_target"] = PIPELINE_TARGET
        result["latency_ms"] = dict(result["pipeline"]["latency_ms"], source="pipeline")
        result["dropped"] = dropped
        result["realtime_100fps"] = kept if math.isclose(camera_fps, 100.0) else None
        result["realtime"] = {
            "camera_fps": camera_fps,
            "kept_up": kept,
            "needed_speedup": camera_fps / (pps / k) if pps > 0 else math.inf,
        }
    else:
        times = [e["ms_per_frame_median"] for e in engine_rounds]
        result["latency_ms"] = {
            "p50": _median(times),
            "p99": max(e["ms_per_frame_max"] for e in engine_rounds),
            "source": "engine (one infer call of K planes; run with --pipeline for the live "
            "pipeline's latency)",
        }
        result["dropped"] = None
        result["realtime_100fps"] = None
        result["pipeline_over_engine"] = None
    result["notes"] = _notes(result, device)
    gc.collect()
    return _finite_or_none(result)  # type: ignore[no-any-return]


def _notes(r: dict[str, Any], device: str) -> list[str]:
    notes = []
    load = r["host"].get("load_avg_at_start")
    cores = r["host"].get("cores") or 1
    if load and load[0] > 0.5 * cores:
        notes.append(
            f"the machine was busy (1-min load {load[0]:.1f} on {cores} cores): "
            "absolute numbers are noisy; compare ratios and re-run on a quiet machine"
        )
    p = r.get("pipeline")
    if p is not None and not device.startswith("cuda"):
        if p["camera"].get("replay_frames"):
            notes.append(
                "the simulated camera replays pre-rendered frames (one copy per frame, like a "
                "real camera's host cost): the pipeline/engine ratio is the plumbing's cost"
            )
        else:
            notes.append(
                "the simulated camera renders its frames on the same CPU cores as the engine; "
                "a real camera does not, so the pipeline/engine ratio here is a lower bound "
                "(--camera-replay N measures the plumbing alone)"
            )
    if p is not None and p["bound"] == "camera":
        notes.append(
            "the engine is faster than the camera: the pipeline is camera-bound, so "
            "pipeline_over_engine compares with the camera rate, not the engine's"
        )
    if r["model"].get("note"):
        notes.append(r["model"]["note"])
    return notes


# --------------------------------------------------------------------------- report


def result_filename(r: dict[str, Any]) -> str:
    """``engine_<backend>_<precision>_<size>_k<K>_w<width>[_pipeline].json``."""
    width = f"{r['width']:g}".replace(".", "p")
    tail = "_pipeline" if r.get("pipeline") else ""
    return f"engine_{r['backend']}_{r['precision']}_{r['size']}_k{r['planes']}_w{width}{tail}.json"


def _f(x: Any, spec: str = ".3g") -> str:
    return "n/a" if x is None else format(x, spec)


def format_summary(r: dict[str, Any]) -> str:
    """A readable multi-line summary of a :func:`run_bench` result."""
    e = r["engine"]
    model = r["model"]
    what = model["name"] or f"random weights, width {r['width']:g}"
    lines = [
        f"live-deepz bench  {r['date']}",
        f"  backend      {r['backend']} ({r['precision']}) on {r['device']} "
        f"[{r['device_name']}], torch {r['torch']}, threads={r['threads']}",
        f"  model        {what} ({r['flops_per_pixel'] / 1e6:.3g} MFLOP per output pixel)",
        f"  frame        {r['size']}x{r['size']}, {r['planes']} planes per frame; "
        f"{r['rounds']} round(s) of {r['seconds_per_phase']:g} s per phase",
        f"  engine only  {_f(e['planes_per_s'])} planes/s = {_f(e['frames_per_s'])} frames/s "
        f"({_f(e['ms_per_frame'], '.1f')} ms per frame, {_f(e['ms_per_plane'], '.1f')} ms "
        f"per plane; median of {e['calls']} calls)",
        f"  achieved     {_f(r['tflops'])} TFLOP/s = {_f(100 * r['ceiling_ratio'], '.0f')} % of "
        f"the {r['ceiling_precision']} matmul ceiling {_f(r['ceiling_tflops'])} TFLOP/s "
        f"(ceilings this run: bf16 {_f(r['ceilings_tflops']['bf16'])}, "
        f"fp32 {_f(r['ceilings_tflops']['fp32'])})",
    ]
    p = r.get("pipeline")
    if p is None:
        lines.append(
            "  pipeline     not measured (add --pipeline for the live pipeline on the "
            "simulated camera)"
        )
    else:
        ratio = r["pipeline_over_engine"]
        if p["bound"] == "engine":
            verdict = "met" if ratio is not None and ratio >= PIPELINE_TARGET else "NOT met"
            target = f"target >= {PIPELINE_TARGET:g}: {verdict}"
        else:
            target = "camera-bound: the engine waits for frames, ratio not a target check"
        lines += [
            f"  pipeline     {_f(p['planes_per_s'])} planes/s = {_f(p['frames_per_s'])} "
            f"frames/s out (live mode, sim camera {p['camera']['fps']:g} fps)",
            f"  pipe/engine  {_f(ratio, '.3f')} ({target})",
            f"  latency      p50 {_f(p['latency_ms']['p50'], '.1f')} ms, p99 "
            f"{_f(p['latency_ms']['p99'], '.1f')} ms (camera frame popped -> planes ready)",
            f"  drops        camera {p['dropped']['camera']}, engine {p['dropped']['engine']} "
            "(live mode skips the frames the engine has no time for)",
            f"  counters     {'consistent' if p['counters_consistent'] else 'INCONSISTENT'} "
            "(frames_in = processed + dropped_engine after stop)",
        ]
        cam = r["realtime"]["camera_fps"]
        if r["realtime"]["kept_up"]:
            lines.append(f"  realtime     YES: kept {cam:g} fps with no drops at these settings")
        else:
            lines.append(
                f"  realtime     NO: the pipeline makes {_f(p['frames_per_s'])} frames/s of "
                f"{r['planes']} planes, the camera sends {cam:g} fps; keeping up needs "
                f"{_f(r['realtime']['needed_speedup'], '.3g')}x faster at these settings "
                "(live mode shows the newest frame it can)"
            )
    for note in r.get("notes", []):
        lines.append(f"  note         {note}")
    return "\n".join(lines)


def config_from_dict(d: dict[str, Any]) -> BenchConfig:
    """A :class:`BenchConfig` from a dict with a subset of its field names."""
    names = {f.name for f in dataclasses.fields(BenchConfig)}
    unknown = set(d) - names
    if unknown:
        raise InputError(f"unknown bench settings: {sorted(unknown)}")
    return BenchConfig(**d)
