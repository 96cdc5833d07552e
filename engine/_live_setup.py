"""Opening a live view (no Qt): the microscope core, the model, a backend prepared for the
camera's frame and a :class:`LiveSession` for the planes, plus the app's plain-words
messages about them. The app's Qt adapter (``live_deepz.ui.Session``) runs these on worker
threads."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from live_deepz.dpm import StaticPlanePlan, parse_planes
from live_deepz.errors import CameraError, LiveDeepzError, clause

from ._live_plans import DEFAULT_PLANES, clip_to_range
from ._live_session import LiveSession
from ._session_models import pick_model, scope_na

__all__ = [
    "LiveSetup",
    "SessionConfig",
    "live_error_text",
    "make_live_session",
    "open_live_setup",
    "plain_error",
    "stop_timeout_s",
]


@dataclass
class SessionConfig:
    """What to open. ``source``: ``"sim"``, a Micro-Manager ``.cfg`` path or a core object."""

    source: Any = "sim"
    sample: str = "beads"
    """Simulated sample (``open_core("sim", sample=...)``)."""
    size: int = 512
    """Simulated frame size (px)."""
    seed: int = 0
    model: str | None = None
    """Model name or folder; ``None``: the last one used, the default, the first installed,
    or (demo only) an untrained stand-in with a warning."""
    planes: str = DEFAULT_PLANES
    """The grid's planes; ``""``: from the settings (``run_app``) or the default."""
    depth_um: float | None = 0.0
    """The depth slider's plane; ``None``: from the settings or 0."""
    backend: str = "auto"
    """Inference backend (``""``: from the settings or auto)."""
    precision: str = "auto"
    device: str = "auto"
    exposure_ms: float | None = None
    autostart: bool = True
    allow_standin: bool = True
    remembered_model: str = ""
    """The model used last time (from the settings), tried when ``model`` is None."""

    def describe_source(self) -> str:
        src = self.source
        if isinstance(src, str) and src.strip().lower() == "sim":
            return f"simulated microscope ({self.sample}, {self.size}×{self.size} px)"
        if isinstance(src, str | Path):
            return f"Micro-Manager configuration {Path(src).name}"
        return "microscope"

    @property
    def is_sim(self) -> bool:
        return isinstance(self.source, str) and self.source.strip().lower() == "sim"


@dataclass
class LiveSetup:
    """What :func:`open_live_setup` / :func:`make_live_session` built, for the UI thread to
    adopt: the grid and depth are the requested ones clipped to the model's range."""

    live: LiveSession
    grid: np.ndarray
    depth: float
    core: Any = None
    model: Any = None
    standin: bool = False
    na: float | None = None


def make_live_session(
    core: Any,
    model: Any,
    grid: np.ndarray,
    depth_um: float,
    backend_name: str,
    precision: str,
    device: str,
) -> LiveSetup:
    """A backend prepared for the camera's frame and a live session of the flat plan of
    ``grid ∪ {depth}``, clipped to the model's range (room for one more plane: the drift
    plan's 0; rings reserved so that a recording attaches without a camera restart)."""
    from .backends import create_backend

    grid, depth = clip_to_range(np.asarray(grid, dtype=float), depth_um, model.card.z_range_um)
    offsets = parse_planes([*grid.tolist(), depth])
    backend = create_backend(backend_name, model.generator, precision=precision, device=device)
    h, w = int(core.getImageHeight()), int(core.getImageWidth())
    backend.prepare(h, w, int(offsets.size))
    live = LiveSession(
        core,
        model,
        backend,
        StaticPlanePlan(offsets),
        mode="live",
        max_planes=int(grid.size) + 2,  # + the depth plane + 0 (drift-corrected feed)
        reserve_recorder_rings=True,
    )
    return LiveSetup(live, grid, depth, core=core, model=model)


def open_live_setup(
    config: SessionConfig, grid: np.ndarray, depth_um: float, adopt_core: Any = None
) -> LiveSetup:
    """Open the core (simulated or a Micro-Manager configuration), pick the model and make
    the live session; ``adopt_core(core)`` runs right after the core exists."""
    from live_deepz.microscope import open_core

    if config.is_sim:
        kw: dict[str, Any] = {"sample": config.sample, "size": config.size, "seed": config.seed}
        if config.exposure_ms:
            kw["exposure_ms"] = config.exposure_ms
        core = open_core("sim", **kw)
    else:
        core = open_core(config.source)
        if config.exposure_ms:
            core.setExposure(float(config.exposure_ms))
    if adopt_core is not None:
        adopt_core(core)
    model, standin = pick_model(config.model, config.remembered_model, config.allow_standin)
    setup = make_live_session(
        core, model, grid, depth_um, config.backend, config.precision, config.device
    )
    setup.standin = standin
    setup.na = scope_na(core, config.is_sim)
    return setup


def stop_timeout_s(pipeline: Any) -> float:
    """How long to wait for the engine to finish its frame when stopping: a CPU engine may
    need seconds per frame (several times the median inference time, >= 10 s; 30 s when
    not known yet)."""
    infer_ms = math.nan
    if pipeline is not None:
        with contextlib.suppress(Exception):
            infer_ms = float(pipeline.stats().stage_ms.get("infer", math.nan))
    if not math.isfinite(infer_ms):
        return 30.0
    return max(10.0, 4.0 * infer_ms / 1e3 + 2.0)


def plain_error(exc: BaseException) -> str:
    """The message of an error for people (without the exception class for ours)."""
    if isinstance(exc, LiveDeepzError):
        return clause(exc)
    return f"{type(exc).__name__}: {clause(exc)}"


def live_error_text(exc: BaseException | None, message: str) -> str:
    """What to tell people when the live stream stopped with ``exc``/``message``."""
    if isinstance(exc, CameraError):
        return (
            f"The camera stopped: {clause(message)}. Check the camera (power, cable, Micro-Manager "
            "settings) and press Start live to try again."
        )
    from ._subscribers import EngineTooSlowError

    if isinstance(exc, EngineTooSlowError):
        return f"Live stopped: {message}"
    return (
        f"The refocusing engine stopped: {clause(message)}. Press Start live to try again; if it "
        "happens again, choose another backend or model."
    )
