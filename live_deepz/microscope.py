"""The microscope connection: a pymmcore-plus core, simulated or real.

``open_core("sim")`` gives a :class:`~pymmcore_plus.experimental.unicore.UniMMCore` with a
simulated camera, focus drive and XY stage (Python devices, no Micro-Manager install needed);
``open_core("path/to/system.cfg")`` loads a Micro-Manager configuration. Both return a
:class:`~pymmcore_plus.CMMCorePlus`, so everything downstream is the same.

Streaming from the returned core::

    core = open_core("sim", sample="beads")
    core.startContinuousSequenceAcquisition()
    while ...:
        if core.getRemainingImageCount():
            img, md = core.popNextImageAndMD()   # copy of the frame; md values are strings
            z = float(md[META_STAGE_Z_UM])
    core.stopSequenceAcquisition()

See :mod:`live_deepz._sim_devices` for the simulated camera's pacing, metadata keys, fault
injection (``FailAfterFrames``, ``DropEvery``) and how a failure mid-stream surfaces.
"""

from __future__ import annotations

import importlib
import logging
import os
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pymmcore_plus import CMMCorePlus

from ._sim_devices import (
    META_CAMERA_TIME_MS,
    META_CHANNEL,
    META_EXPOSURE_MS,
    META_FRAME,
    META_STAGE_X_UM,
    META_STAGE_Y_UM,
    META_STAGE_Z_UM,
    FrameSource,
    NoiseFrameSource,
    SimCamera,
    SimFocusStage,
    SimXYStage,
)
from .errors import CameraError
from .optics import Optics
from .sample_names import GENERATOR_OF

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "META_CAMERA_TIME_MS",
    "META_CHANNEL",
    "META_EXPOSURE_MS",
    "META_FRAME",
    "META_STAGE_X_UM",
    "META_STAGE_Y_UM",
    "META_STAGE_Z_UM",
    "PIXEL_CONFIG",
    "SIM_CAMERA",
    "SIM_CHANNEL_GROUP",
    "SIM_FOCUS",
    "SIM_SAMPLES",
    "SIM_XY",
    "FrameSource",
    "NoiseFrameSource",
    "SimCamera",
    "SimFocusStage",
    "SimXYStage",
    "build_scene",
    "open_core",
    "sim_camera",
]

SIM_CAMERA = "Camera"
"""Device label of the simulated camera."""
SIM_FOCUS = "Z"
"""Device label of the simulated focus drive."""
SIM_XY = "XY"
"""Device label of the simulated XY stage."""
SIM_CHANNEL_GROUP = "Channel"
"""Channel group of ``open_core("sim")``: one preset per scene channel (MDA channels)."""
PIXEL_CONFIG = "Res1x"
"""Name of the pixel-size configuration ``open_core("sim")`` defines."""

SIM_SAMPLES = dict(GENERATOR_OF)
"""Sample names accepted by ``open_core("sim", sample=...)`` (:mod:`live_deepz.sample_names`;
underscores work too) -> ``live_deepz.sim.samples`` generator names (any other generator name
in that module is accepted as well)."""


def open_core(source: str | os.PathLike[str] | CMMCorePlus = "sim", **kwargs: Any) -> CMMCorePlus:
    """Open a microscope core.

    Parameters
    ----------
    source
        ``"sim"``: a simulated microscope (see :func:`_open_sim` for the keyword arguments
        ``sample``, ``size``, ``seed``, ``scene``, ``exposure_ms``, ``optics``). A path to a
        Micro-Manager ``.cfg`` file: a :class:`~pymmcore_plus.CMMCorePlus` with it loaded (a
        ``UniMMCore`` when the file declares Python devices with ``#py`` lines). An existing
        core object: returned unchanged.

    Raises
    ------
    CameraError
        The configuration file is missing or does not load, or ``source`` is not understood.
    """
    if isinstance(source, CMMCorePlus):
        if kwargs:
            raise TypeError(f"open_core(<core>) takes no options, got {sorted(kwargs)}")
        return source
    if isinstance(source, str) and source.strip().lower() == "sim":
        return _open_sim(**kwargs)
    path = Path(os.fspath(source)).expanduser()
    if path.suffix.lower() != ".cfg":
        raise CameraError(
            f"Unknown microscope source {str(source)!r}: use 'sim' for the simulated "
            "microscope or the path of a Micro-Manager configuration file (*.cfg)."
        )
    if kwargs:
        raise TypeError(f"open_core(<cfg file>) takes no options, got {sorted(kwargs)}")
    return _open_cfg(path)


def _open_cfg(path: Path) -> CMMCorePlus:
    if not path.is_file():
        raise CameraError(
            f"Micro-Manager configuration file not found: {path} (resolved: {path.resolve()}). "
            "Give the path of a .cfg saved by Micro-Manager's Hardware Configuration Wizard, "
            "or use 'sim' for the simulated microscope."
        )
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise CameraError(f"Cannot read Micro-Manager configuration file {path}: {e}") from e
    has_py_devices = any(line.lstrip().startswith("#py ") for line in text.splitlines())
    core: CMMCorePlus
    if has_py_devices:
        from pymmcore_plus.experimental.unicore import UniMMCore

        core = UniMMCore()
    else:
        core = CMMCorePlus()
    try:
        core.loadSystemConfiguration(str(path))
    except Exception as e:
        raise CameraError(
            f"Could not load the Micro-Manager configuration {path}: {str(e).strip()}\n"
            "Check that the file "
            "loads in Micro-Manager itself and that pymmcore-plus finds a matching "
            "Micro-Manager installation (run `mmcore install`, or set MICROMANAGER_PATH)."
        ) from e
    return core


class _DropNoMMWarning(logging.Filter):
    """Hide pymmcore-plus' 'no Micro-Manager installation' error: the sim needs none."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Could not find a compatible Micro-Manager" not in record.getMessage()


@contextmanager
def _quiet_mm_discovery() -> Iterator[None]:
    logger = logging.getLogger("pymmcore-plus")
    filt = _DropNoMMWarning()
    logger.addFilter(filt)
    try:
        yield
    finally:
        logger.removeFilter(filt)


def build_scene(
    sample: Any = "beads",
    size: int | tuple[int, int] = 512,
    seed: int = 0,
    optics: Optics | None = None,
) -> FrameSource:
    """Build the real simulated scene (:class:`live_deepz.sim.scene.SimScene`).

    ``sample`` is a short name (:data:`SIM_SAMPLES`), the name of a generator in
    ``live_deepz.sim.samples``, or a sample object that ``SimScene`` accepts.
    """
    try:
        sim_samples = importlib.import_module("live_deepz.sim.samples")
        SimScene = importlib.import_module("live_deepz.sim.scene").SimScene
    except ImportError as e:
        raise CameraError(
            f"The simulated scene is not available ({e}); pass scene=... to open_core "
            "or install live-deepz completely."
        ) from e
    shape = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    optics = optics or Optics()
    if isinstance(sample, str):
        from .sample_names import GENERATOR_OF, canonical_sample, samples_help

        name = GENERATOR_OF.get(canonical_sample(sample), sample)
        gen = getattr(sim_samples, name, None)
        if gen is None or not callable(gen):
            raise CameraError(
                f"Unknown simulated sample {sample!r}: use one of {samples_help()} or the "
                "name of a generator in live_deepz.sim.samples."
            )
        sample = gen(seed=seed)
    scene: FrameSource = SimScene(sample, optics, shape=shape, seed=seed)
    return scene


_SIM_CAMERAS: weakref.WeakKeyDictionary[Any, SimCamera] = weakref.WeakKeyDictionary()


def sim_camera(core: Any) -> SimCamera | None:
    """The :class:`SimCamera` of a core made by ``open_core("sim")`` (None otherwise)."""
    try:
        return _SIM_CAMERAS.get(core)
    except TypeError:  # not weak-referenceable: not ours
        return None


def _open_sim(
    *,
    sample: Any = "beads",
    size: int | tuple[int, int] = 512,
    seed: int = 0,
    scene: FrameSource | None = None,
    exposure_ms: float = 10.0,
    optics: Optics | None = None,
) -> CMMCorePlus:
    """A ``UniMMCore`` with :class:`SimCamera`, :class:`SimFocusStage`, :class:`SimXYStage`.

    ``scene`` (any :class:`FrameSource`) overrides ``sample``/``size``/``seed``; otherwise the
    real :class:`~live_deepz.sim.scene.SimScene` is built from them (see :func:`build_scene`).
    The pixel size (``optics.pixel_size_um``, default 0.325 µm) is set through the pixel-size
    configuration :data:`PIXEL_CONFIG`; the core scales it by the binning.
    """
    from pymmcore_plus.experimental.unicore import UniMMCore

    optics = optics or Optics()
    if scene is None:
        scene = build_scene(sample, size=size, seed=seed, optics=optics)
    if not isinstance(scene, FrameSource):
        raise CameraError(f"scene {scene!r} has no render_frame(...) and shape")

    with _quiet_mm_discovery():
        core = UniMMCore()
    focus = SimFocusStage()
    xy = SimXYStage()
    # UniMMCore's private stop event lets the camera end a long exposure wait at once on
    # stopSequenceAcquisition; without it (other versions) the camera finishes the frame.
    stop_event = getattr(core, "_stop_event", None)
    camera = SimCamera(scene, focus=focus, xy=xy, stop_event=stop_event)
    for label, dev in ((SIM_CAMERA, camera), (SIM_FOCUS, focus), (SIM_XY, xy)):
        core.loadPyDevice(label, dev)
    _SIM_CAMERAS[core] = camera
    core.initializeAllDevices()
    core.setCameraDevice(SIM_CAMERA)
    core.setFocusDevice(SIM_FOCUS)
    core.setXYStageDevice(SIM_XY)
    px = float(optics.pixel_size_um)
    core.definePixelSizeConfig(PIXEL_CONFIG)
    core.setPixelSizeUm(PIXEL_CONFIG, px)
    core.setPixelSizeAffine(PIXEL_CONFIG, [px, 0.0, 0.0, 0.0, px, 0.0])
    core.setPixelSizeConfig(PIXEL_CONFIG)
    core.setExposure(float(exposure_ms))
    # no shutter device: with auto-shutter on, pymmcore-plus' MDA engine would try to close
    # the (missing) shutter after every snap and fail
    core.setAutoShutter(False)
    _define_channel_group(core, camera)
    return core


def _define_channel_group(core: CMMCorePlus, camera: SimCamera) -> None:
    """Channel group :data:`SIM_CHANNEL_GROUP`: one preset per scene channel (the camera's
    ``ChannelNames``), each selecting that channel through ``ChannelSequence``, so that
    ``useq.MDASequence(channels=["nuclei", "calcium"])`` switches channels between snaps."""
    names = [n for n in str(core.getProperty(SIM_CAMERA, "ChannelNames")).split(",") if n]
    if len(names) < 2:  # one channel: nothing to switch (a preset still names it)
        names = names[:1]
    for i, name in enumerate(names):
        value = str(i) if len(names) > 1 else ""
        core.defineConfig(SIM_CHANNEL_GROUP, name, SIM_CAMERA, "ChannelSequence", value)
    if names:
        core.setChannelGroup(SIM_CHANNEL_GROUP)
