"""Opening a live view (no Qt): the microscope core, the model, a backend prepared for the
camera's frame and a :class:`LiveSession` for the planes, plus the app's plain-words
messages about them. The app's Qt adapter (``live_deepz.ui.Session``) runs these on worker
threads."""

from __future__ import annotations

import contextlib
import math
import time
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
    "describe_backend",
    "grab_frame",
    "live_error_text",
    "make_live_session",
    "open_error_text",
    "open_live_setup",
    "plain_error",
    "rebuild_live_session",
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


def rebuild_live_session(
    old: Any,
    core: Any,
    model: Any,
    grid: np.ndarray,
    depth_um: float,
    engine: tuple[str, str, str],
    *,
    model_path: str | None = None,
    standin: bool = False,
    timeout: float = 5.0,
) -> LiveSetup:
    """Stop the ``old`` pipeline (or session) and make a live session for another model
    (``model_path``: loaded here, else ``model``) and/or ``engine`` = ``(backend,
    precision, device)``."""
    if old is not None:
        old.stop(timeout)
    if model_path is not None:
        from live_deepz.modelfile import load_model, resolve_model

        model, standin = load_model(resolve_model(model_path)), False
    setup = make_live_session(core, model, grid, depth_um, *engine)
    setup.standin = standin
    return setup


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


def open_error_text(exc: BaseException) -> str:
    """What to tell people when opening the microscope or the model failed."""
    from live_deepz.errors import ModelFileError

    if isinstance(exc, ModelFileError):
        return f"No model could be loaded: {plain_error(exc)}"
    return (
        f"The microscope could not be started: {plain_error(exc)}. Check the configuration "
        "and start live-deepz again."
    )


def describe_backend(backend: Any) -> str:
    """``name · precision · device`` of a backend ("" for None)."""
    if backend is None:
        return ""
    name = getattr(backend, "name", type(backend).__name__)
    return f"{name} · {getattr(backend, 'precision', '?')} · {getattr(backend, 'device', '?')}"


def grab_frame(core: Any, pipeline: Any = None, timeout_s: float = 5.0) -> tuple[np.ndarray, str]:
    """A copy of the current camera frame and where it came from (blocks: call it off the
    UI thread). While ``pipeline`` runs, its newest frame (live keeps running); otherwise
    one snapped frame (takes one exposure)."""
    if core is None:
        raise CameraError("the microscope is not ready yet")
    if pipeline is not None and pipeline.state == "running":
        sub = pipeline.subscribe_latest("raw")
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                f = sub.get_latest(copy=True)
                if f is not None:
                    return np.array(f.image), (
                        f"the newest live frame (frame {f.camera_frame}; live keeps running)"
                    )
                if time.monotonic() > deadline:
                    raise CameraError(f"no frame came from the live stream in {timeout_s:g} s")
                time.sleep(0.01)
        finally:
            sub.close()
    if core.isSequenceRunning():
        raise CameraError("the camera is streaming for another program: stop it first")
    core.snapImage()
    return np.array(core.getImage()), "a snapped frame (live is off)"
