"""Simulated pymmcore-plus devices: a self-pacing camera, a focus drive and an XY stage.

The devices are Python devices for :class:`pymmcore_plus.experimental.unicore.UniMMCore`
(no Micro-Manager installation needed). Use :func:`live_deepz.microscope.open_core` to get a
core with all three loaded; build them by hand only to wire in a custom frame source.

How the camera behaves (the contract the live pipeline relies on)
-----------------------------------------------------------------
- Stream mode for ``startContinuousSequenceAcquisition`` and ``startSequenceAcquisition(n)``;
  ``snapImage`` renders one frame (and waits one frame period, as a real camera would).
- **Pacing**: the camera paces itself (UniMMCore ignores ``intervalMs`` for Python cameras).
  Frame period = ``max(Exposure, ReadoutTime)``; exposure ``k`` starts at
  ``t0 + k * period`` (deadlines from ``time.perf_counter``, so the rate does not drift; the
  wait is an ``Event.wait``/``sleep``, never a busy spin). A late frame (the host was busy)
  is caught up on by delivering the next ones without waiting, as a camera with on-board
  buffering would, so the sustained rate stays exact under load; if the lag exceeds
  ``max(4 periods, 50 ms)`` the schedule is re-anchored instead: the camera then simply
  runs slower, and ``ActualInterval-ms`` shows the measured period.
- ``stopSequenceAcquisition`` ends the wait at once (the camera waits on UniMMCore's stop
  event, handed over by ``open_core``), so a long exposure does not delay the stop.
- Exposure changes during a stream apply from the next frame. Binning and ROI changes are
  refused while streaming (stop first), as on most real cameras.
- **Binning** 1 or 2 (``Binning``), mode ``BinningMode``: ``"Average"`` (default; the
  2x2 mean, rounded, keeps the intensity scale of unbinned frames) or ``"Sum"`` (saturates at
  65535, like on-sensor charge binning). Binning clears the ROI.
- **ROI**: hardware-style crop, in binned pixel coordinates (``core.setROI``); the full
  sensor is rendered and the ROI copied out.
- Pixels are ``uint16``.
- **Replay** (``ReplayFrames`` = N > 0, default 0): at the start of each sequence the camera
  renders N consecutive frames once (at the stage position of that moment, with independent
  noise) and then streams them cyclically, paced and numbered as usual. Each frame then costs
  the host one copy, like a real camera's DMA, instead of a full simulation (a few ms per
  512² frame): benchmarks use it so that the simulator's own CPU load is not charged to the
  pipeline. Stage moves during such a sequence do not change the images (metadata still
  reports the stage); leave it at 0 for anything that follows the sample.

Per-frame metadata (values arrive as strings through ``popNextImageAndMD``)
----------------------------------------------------------------------------
``META_FRAME`` ("live_deepz.frame"): camera frame counter, from 0 at each sequence start; it
counts exposures, so it shows gaps where frames were dropped (``DropEvery``), while the
core's own ``ImageNumber`` counts delivered frames (gaps in it mean the core's buffer
overflowed and overwrote unread frames: ``core.isBufferOverflowed()``).
``META_CAMERA_TIME_MS``: exposure start, ms since the sequence started (camera clock).
``META_STAGE_Z_UM``, ``META_STAGE_X_UM``, ``META_STAGE_Y_UM``: stage position at the start of
the exposure (sampled when the frame is rendered, which is later only while catching up), in
the stage's reported (user) coordinates, as ``core.getPosition()`` gives; the scene renders
at the same instant, so image and recorded position always agree.
``META_EXPOSURE_MS``: the exposure used. ``META_CHANNEL`` ("live_deepz.channel"): the scene
channel the frame shows, only while ``ChannelSequence`` is set. The core adds
``ImageNumber``, ``ElapsedTime-ms`` (host arrival time), ``Camera``, ``Width``, ``Height``,
``Binning``, ``ROI-X-start`` ...

Interleaved channels (``ChannelSequence``)
------------------------------------------
Fast multi-colour set-ups let the camera's trigger output step the light source, so the
stream interleaves the channels frame by frame. ``ChannelSequence`` = "1,0" (scene channel
indices, comma-separated; "" = off, the scene's own channel) renders exposure ``k`` in
channel ``seq[k % len(seq)]`` (the exposure counter: a dropped exposure drops that
channel's frame, as a skipped trigger would) and reports it as ``META_CHANNEL``. The
read-only ``ChannelNames`` lists the source's channels ("nuclei,calcium" for the worm).
Set it while stopped; it cannot be combined with ``ReplayFrames``.

Fault injection (for tests)
---------------------------
``FailAfterFrames`` = N > 0: every sequence raises :class:`~live_deepz.errors.CameraError`
after delivering N frames; ``snapImage`` (one-frame sequences outside the acquisition
thread, e.g. the events of a pymmcore-plus MDA) raises once N snaps were delivered since
the property was set. ``DropEvery`` = N > 0: every N-th exposure (frame counter
``k % N == N - 1``) is skipped: the camera waits the frame period but renders and delivers
nothing, so the frame counter in the metadata has a gap (``DropEvery=1`` is refused).

How a failure surfaces through UniMMCore 0.18 (measured)
--------------------------------------------------------
The exception leaves ``start_sequence`` inside UniMMCore's ``AcquisitionThread``, which wraps it
as ``RuntimeError("Error in device 'Camera' during sequence acquisition: <msg>")`` (the
original exception is its ``__cause__``) and re-raises it, so the thread dies and the
exception goes to :func:`threading.excepthook` (default: a traceback on stderr; the thread is
``args.thread``, an ``AcquisitionThread`` with ``.label``). Nothing is raised in the caller's
thread and the core emits **no** event. Afterwards ``core.isSequenceRunning()`` is ``False``,
the frames delivered before the failure stay in the buffer and can still be popped, and
``stopSequenceAcquisition()`` is harmless (it emits ``sequenceAcquisitionStopped``). A consumer
therefore detects a failure as "the sequence stopped although nobody stopped it and it was
not a finished ``startSequenceAcquisition(n)``". In addition this simulated camera keeps the
error in :attr:`SimCamera.last_error`, shows it in its read-only ``LastError`` property and
emits ``core.events.propertyChanged(label, "LastError", message)`` before raising.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from pymmcore_plus import Keyword
from pymmcore_plus.experimental.unicore import CameraDevice, Device, StageDevice, XYStageDevice

from .errors import CameraError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from numpy.typing import DTypeLike

__all__ = [
    "META_CAMERA_TIME_MS",
    "META_CHANNEL",
    "META_EXPOSURE_MS",
    "META_FRAME",
    "META_STAGE_X_UM",
    "META_STAGE_Y_UM",
    "META_STAGE_Z_UM",
    "FrameSource",
    "NoiseFrameSource",
    "SimCamera",
    "SimFocusStage",
    "SimXYStage",
]

_REPLAY_MAX_BYTES = 1 << 30
"""Largest ``ReplayFrames`` bank (bytes) a sequence may render up front."""

META_FRAME = "live_deepz.frame"
"""Camera frame counter (exposures since sequence start; gaps = dropped frames)."""
META_CAMERA_TIME_MS = "live_deepz.camera_time_ms"
"""Exposure start in ms since the sequence started, on the camera's clock."""
META_STAGE_Z_UM = "live_deepz.stage_z_um"
"""Focus position (µm, reported coordinates) at the start of the exposure."""
META_STAGE_X_UM = "live_deepz.stage_x_um"
"""XY-stage x (µm, reported coordinates) at the start of the exposure."""
META_STAGE_Y_UM = "live_deepz.stage_y_um"
"""XY-stage y (µm, reported coordinates) at the start of the exposure."""
META_EXPOSURE_MS = "live_deepz.exposure_ms"
"""Exposure time used for the frame, ms."""
META_CHANNEL = "live_deepz.channel"
"""Scene channel index of the frame (only while the camera's ``ChannelSequence`` is set)."""

_UINT16_MAX = 65535


class _IntChoices(tuple):  # type: ignore[type-arg]
    """Allowed integer values that also accept their string form.

    UniMMCore validates ``setProperty`` values with ``value in allowed_values`` and lists them
    as strings; GUIs send back the string ("2"), scripts the int (2): accept both.
    """

    def __contains__(self, value: object) -> bool:
        try:
            return int(str(value)) in tuple(self)
        except ValueError:
            return False


@runtime_checkable
class FrameSource(Protocol):
    """What the simulated camera renders from: :class:`live_deepz.sim.scene.SimScene` fits.

    ``render_frame`` returns a ``uint16`` image of :attr:`shape`; when ``out`` is given it
    should fill and return it (the camera copies the result into its buffer otherwise).
    ``t_s`` is the experiment time in seconds (camera clock since the camera was created),
    ``stage_z_um``/``stage_xy_um`` the *physical* stage position.
    """

    @property
    def shape(self) -> tuple[int, int]:
        """Sensor shape ``(height, width)``."""
        ...

    def render_frame(
        self,
        t_s: float,
        stage_z_um: float,
        stage_xy_um: tuple[float, float] = (0.0, 0.0),
        exposure_ms: float = 10.0,
        out: np.ndarray | None = None,
    ) -> np.ndarray: ...


class NoiseFrameSource:
    """TEST STAND-IN, not a microscope simulation: a fixed pattern plus noise.

    A seeded random texture whose contrast falls off with ``|stage_z_um|`` (so moving the
    focus changes the image), scaled by the exposure, plus noise cycled from a small bank of
    precomputed noise frames (cheap: about 1 ms at 512²). Used by tests that must not depend
    on the real scene; :func:`~live_deepz.microscope.open_core` never uses it by default.
    Two channels (``channel=1``: twice the contrast on a higher background).
    """

    channel_names: tuple[str, ...] = ("pattern", "bright pattern")

    def __init__(
        self, shape: tuple[int, int] = (512, 512), seed: int = 0, n_noise: int = 8
    ) -> None:
        self._shape = (int(shape[0]), int(shape[1]))
        rng = np.random.default_rng(seed)
        h, w = self._shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        texture = np.sin(xx * 0.21 + rng.uniform(0, 6.3)) * np.cos(yy * 0.17)
        texture += 0.5 * rng.standard_normal((h, w)).astype(np.float32)
        self._texture = texture.astype(np.float32)  # (H, W), zero-mean-ish
        self._noise = rng.normal(0.0, 8.0, size=(n_noise, h, w)).astype(np.float32)
        self._i = 0
        self._scratch = np.empty((h, w), dtype=np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    def render_frame(
        self,
        t_s: float,
        stage_z_um: float,
        stage_xy_um: tuple[float, float] = (0.0, 0.0),
        exposure_ms: float = 10.0,
        out: np.ndarray | None = None,
        *,
        channel: int | None = None,
    ) -> np.ndarray:
        if out is None:
            out = np.empty(self._shape, dtype=np.uint16)
        c = int(channel or 0)
        contrast = 400.0 * (1 + c) * (exposure_ms / 10.0) / (1.0 + (stage_z_um / 3.0) ** 2)
        s = self._scratch
        np.multiply(self._texture, contrast, out=s)
        s += self._noise[self._i % len(self._noise)]
        s += 1000.0 + 1000.0 * c
        np.clip(s, 0, _UINT16_MAX, out=s)
        out[...] = s  # float32 -> uint16 (truncation, values already clipped)
        self._i += 1
        return out


# --------------------------------------------------------------------------- stages


class _Motion:
    """Linear motion from ``start`` to ``target`` at ``speed`` (0 = instantaneous).

    Immutable; stages replace the whole object, so a reader in another thread always sees a
    consistent (start, target, t0) triple.
    """

    __slots__ = ("_duration", "speed", "start", "t0", "target")

    def __init__(
        self, start: tuple[float, ...], target: tuple[float, ...], speed: float, t0: float
    ) -> None:
        self.start = start
        self.target = target
        self.speed = speed
        self.t0 = t0
        dist = math.hypot(*(b - a for a, b in zip(start, target)))
        self._duration = dist / speed if speed > 0 else 0.0

    def duration(self) -> float:
        return self._duration

    def at(self, t: float) -> tuple[float, ...]:
        dur = self.duration()
        if dur <= 0 or t >= self.t0 + dur:
            return self.target
        f = max(0.0, (t - self.t0) / dur)
        return tuple(a + f * (b - a) for a, b in zip(self.start, self.target))

    def moving(self, t: float) -> bool:
        return t < self.t0 + self.duration()


class _StageSpeed(Device):
    """The ``Speed-um/s`` property accessors both simulated stages share (0 = instant moves)."""

    _speed: float

    def _get_speed(self) -> float:
        return self._speed

    def _set_speed(self, val: float) -> None:
        self._speed = float(val)
        if self._core_proxy_ is not None:
            self.core.events.propertyChanged.emit(self.get_label(), "Speed-um/s", str(val))


class SimFocusStage(_StageSpeed, StageDevice):
    """Simulated focus drive, positions in µm.

    Moves instantly by default; ``Speed-um/s`` > 0 makes moves take ``distance / speed``
    (``busy()`` is True meanwhile, ``getPosition`` interpolates). Emits
    ``core.events.stagePositionChanged(label, target)`` when commanded (UniMMCore does not
    emit it for Python devices). ``setOrigin``/``setAdapterOrigin`` shift the reported
    coordinates only: the sample does not move, and the scene sees the physical position.
    """

    def __init__(self, position_um: float = 0.0) -> None:
        super().__init__()
        self._speed = 0.0
        self._offset = 0.0  # reported = physical - offset
        self._motion = _Motion((position_um,), (position_um,), 0.0, time.perf_counter())
        self.register_property(
            "Position",
            getter=SimFocusStage.get_position_um,
            setter=SimFocusStage._set_pos_prop,
            property_type=float,
        )
        self.register_property(
            "Speed-um/s",
            getter=SimFocusStage._get_speed,
            setter=SimFocusStage._set_speed,
            property_type=float,
            limits=(0.0, 1e6),
        )

    def physical_position_um(self) -> float:
        """Where the focus really is (what the scene renders), µm."""
        return self._motion.at(time.perf_counter())[0]

    def sample_positions(self) -> tuple[float, float]:
        """(physical, reported) position from one snapshot; safe from any thread."""
        motion, offset = self._motion, self._offset
        phys = motion.at(time.perf_counter())[0]
        return phys, phys - offset

    def set_position_um(self, val: float) -> None:
        now = time.perf_counter()
        phys = float(val) + self._offset
        self._motion = _Motion(self._motion.at(now), (phys,), self._speed, now)
        self._emit(float(val))

    def get_position_um(self) -> float:
        return self.physical_position_um() - self._offset

    def busy(self) -> bool:
        return self._motion.moving(time.perf_counter())

    def home(self) -> None:
        self.set_position_um(-self._offset)  # physical zero

    def stop(self) -> None:
        now = time.perf_counter()
        here = self._motion.at(now)
        self._motion = _Motion(here, here, 0.0, now)
        self._emit(here[0] - self._offset)

    def set_origin(self) -> None:
        self.set_adapter_origin_um(0.0)

    def set_adapter_origin_um(self, newZUm: float) -> None:
        self._offset = self.physical_position_um() - float(newZUm)
        self._emit(self.get_position_um())

    def _emit(self, reported: float) -> None:
        if self._core_proxy_ is not None:
            self.core.events.stagePositionChanged.emit(self.get_label(), reported)

    def _set_pos_prop(self, val: float) -> None:
        self.set_position_um(float(val))


class SimXYStage(_StageSpeed, XYStageDevice):
    """Simulated XY stage, positions in µm; same motion, origin and event rules as
    :class:`SimFocusStage` (emits ``XYStagePositionChanged(label, x, y)``)."""

    def __init__(self, position_um: tuple[float, float] = (0.0, 0.0)) -> None:
        super().__init__()
        self._speed = 0.0
        self._offset = (0.0, 0.0)
        p = (float(position_um[0]), float(position_um[1]))
        self._motion = _Motion(p, p, 0.0, time.perf_counter())
        self.register_property(
            "Speed-um/s",
            getter=SimXYStage._get_speed,
            setter=SimXYStage._set_speed,
            property_type=float,
            limits=(0.0, 1e6),
        )

    def physical_position_um(self) -> tuple[float, float]:
        """Where the stage really is (what the scene renders), µm."""
        x, y = self._motion.at(time.perf_counter())
        return (x, y)

    def sample_positions(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """(physical, reported) position from one snapshot; safe from any thread."""
        motion, (ox, oy) = self._motion, self._offset
        x, y = motion.at(time.perf_counter())
        return (x, y), (x - ox, y - oy)

    def set_position_um(self, x: float, y: float) -> None:
        now = time.perf_counter()
        target = (float(x) + self._offset[0], float(y) + self._offset[1])
        self._motion = _Motion(self._motion.at(now), target, self._speed, now)
        self._emit(float(x), float(y))

    def get_position_um(self) -> tuple[float, float]:
        x, y = self.physical_position_um()
        return (x - self._offset[0], y - self._offset[1])

    def busy(self) -> bool:
        return self._motion.moving(time.perf_counter())

    def home(self) -> None:
        self.set_position_um(-self._offset[0], -self._offset[1])

    def stop(self) -> None:
        now = time.perf_counter()
        here = self._motion.at(now)
        self._motion = _Motion(here, here, 0.0, now)
        self._emit(*self.get_position_um())

    def set_origin_x(self) -> None:
        self._offset = (self.physical_position_um()[0], self._offset[1])
        self._emit(*self.get_position_um())

    def set_origin_y(self) -> None:
        self._offset = (self._offset[0], self.physical_position_um()[1])
        self._emit(*self.get_position_um())

    def set_adapter_origin_um(self, x: float, y: float) -> None:
        px, py = self.physical_position_um()
        self._offset = (px - float(x), py - float(y))
        self._emit(*self.get_position_um())

    def _emit(self, x: float, y: float) -> None:
        if self._core_proxy_ is not None:
            self.core.events.XYStagePositionChanged.emit(self.get_label(), x, y)


# --------------------------------------------------------------------------- camera


class SimCamera(CameraDevice):
    """Simulated 16-bit camera streaming frames rendered by a :class:`FrameSource`.

    Parameters
    ----------
    source
        Renders the sensor image (full sensor, ``source.shape``).
    focus, xy
        Stages whose position each frame records (and the source renders at); ``None``
        means position 0.
    stop_event
        Optional event that, when set during a stream, ends the pacing wait at once (so
        ``stopSequenceAcquisition`` does not wait out a long exposure). ``open_core`` passes
        UniMMCore's own stop event; without it the camera just finishes the current frame.

    See the module docstring for pacing, binning, ROI, metadata and fault injection.
    """

    def __init__(
        self,
        source: FrameSource,
        focus: SimFocusStage | None = None,
        xy: SimXYStage | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        super().__init__()
        self._source = source
        self._focus = focus
        self._xy = xy
        self._stop_event = stop_event
        self._exposure_ms = 10.0
        self._readout_ms = 2.0
        self._binning = 1
        self._binning_mode = "Average"
        self._roi: tuple[int, int, int, int] | None = None  # x, y, w, h in binned pixels
        self._fail_after = 0
        self._snaps = 0  # snaps delivered since FailAfterFrames was set
        self._drop_every = 0
        self._replay_frames = 0
        self._channel_seq: tuple[int, ...] = ()
        self._actual_interval_ms = 0.0
        self._stream_thread: threading.Thread | None = None
        self._clock0 = time.perf_counter()  # experiment clock origin for the scene
        self.stream_origin_s = 0.0
        """Scene time (s) of the last sequence's camera time 0: a frame stamped
        ``camera_time_ms`` was rendered at scene time ``stream_origin_s + camera_time_ms/1000``
        (ground truth of simulated recordings)."""
        self.last_error: BaseException | None = None
        """The error that ended the last sequence (``None`` if it ended normally)."""

        self.set_property_limits(Keyword.Exposure, (0.01, 60_000.0))
        self.set_property_allowed_values(Keyword.Binning, _IntChoices((1, 2)))
        self.set_property_limits(Keyword.ReadoutTime, (0.0, 1000.0))
        self.register_property(
            "BinningMode",
            getter=SimCamera._get_binning_mode,
            setter=SimCamera._set_binning_mode,
            property_type=str,
            allowed_values=("Average", "Sum"),
        )
        self.register_property(
            "FailAfterFrames",
            getter=SimCamera._get_fail_after,
            setter=SimCamera._set_fail_after,
            property_type=int,
            limits=(0, 2**31 - 1),
        )
        self.register_property(
            "DropEvery",
            getter=SimCamera._get_drop_every,
            setter=SimCamera._set_drop_every,
            property_type=int,
            limits=(0, 2**31 - 1),
        )
        self.register_property(
            "ReplayFrames",
            getter=SimCamera._get_replay_frames,
            setter=SimCamera._set_replay_frames,
            property_type=int,
            limits=(0, 1024),
        )
        self.register_property(
            "ChannelSequence",
            getter=SimCamera._get_channel_sequence,
            setter=SimCamera._set_channel_sequence,
            property_type=str,
        )
        self.register_property(
            "ChannelNames",
            getter=SimCamera._get_channel_names,
            property_type=str,
            is_read_only=True,
        )
        self.register_property(
            "LastError",
            getter=SimCamera._get_last_error,
            property_type=str,
            is_read_only=True,
        )

    @property
    def source(self) -> FrameSource:
        """What the camera renders (the :class:`~live_deepz.sim.scene.SimScene`)."""
        return self._source

    # ------------------------------------------------------------ mandatory API

    def get_exposure(self) -> float:
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        self._exposure_ms = float(exposure)
        if self._core_proxy_ is not None:
            label = self.get_label()
            self.core.events.exposureChanged.emit(label, self._exposure_ms)
            self.core.events.propertyChanged.emit(label, Keyword.Exposure, str(exposure))

    def sensor_shape(self) -> tuple[int, int]:
        h, w = self._source.shape
        return (int(h), int(w))

    def shape(self) -> tuple[int, int]:
        if self._roi is not None:
            return (self._roi[3], self._roi[2])
        h, w = self.sensor_shape()
        return (h // self._binning, w // self._binning)

    def dtype(self) -> DTypeLike:
        return np.uint16

    # ------------------------------------------------------------ standard props

    def get_binning(self) -> int:
        return self._binning

    def set_binning(self, value: int) -> None:
        self._refuse_while_streaming("Binning")
        b = int(value)
        if b not in (1, 2):
            raise ValueError(f"Binning must be 1 or 2, got {value!r}")
        self._binning = b
        self._roi = None  # ROI is in binned pixels: a binning change invalidates it
        self._emit_prop(Keyword.Binning, b)

    def get_readout_time(self) -> float:
        """Minimum frame period in ms (the frame period is max(exposure, this))."""
        return self._readout_ms

    def set_readout_time(self, value: float) -> None:
        self._readout_ms = float(value)
        self._emit_prop(Keyword.ReadoutTime, value)

    def get_actual_interval_ms(self) -> float:
        """Mean frame period of the current (or last) stream, ms (0 before any)."""
        return self._actual_interval_ms

    def get_camera_name(self) -> str:
        return "live-deepz SimCamera"

    # ------------------------------------------------------------ custom props

    def _get_binning_mode(self) -> str:
        return self._binning_mode

    def _set_binning_mode(self, value: str) -> None:
        self._binning_mode = str(value)
        self._emit_prop("BinningMode", value)

    def _get_fail_after(self) -> int:
        return self._fail_after

    def _set_fail_after(self, value: int) -> None:
        self._fail_after = int(value)
        self._snaps = 0
        self._emit_prop("FailAfterFrames", self._fail_after)

    def _get_drop_every(self) -> int:
        return self._drop_every

    def _set_drop_every(self, value: int) -> None:
        v = int(value)
        if v == 1:
            raise ValueError("DropEvery=1 would drop every frame; use 0 (off) or >= 2")
        self._drop_every = v
        self._emit_prop("DropEvery", v)

    def _get_replay_frames(self) -> int:
        return self._replay_frames

    def _set_replay_frames(self, value: int) -> None:
        self._refuse_while_streaming("ReplayFrames")
        self._replay_frames = int(value)

    def channel_names(self) -> tuple[str, ...]:
        """The frame source's channel names (empty: it renders one channel only)."""
        names = getattr(self._source, "channel_names", None)
        if names is None:
            names = getattr(getattr(self._source, "sample", None), "channel_names", None)
        return tuple(str(n) for n in names or ())

    def _get_channel_names(self) -> str:
        return ",".join(self.channel_names())

    def _get_channel_sequence(self) -> str:
        return ",".join(str(c) for c in self._channel_seq)

    def _set_channel_sequence(self, value: str) -> None:
        self._refuse_while_streaming("ChannelSequence")
        text = str(value).strip()
        if text and self._replay_frames:
            raise ValueError("ChannelSequence cannot be combined with ReplayFrames; set it to 0")
        names = self.channel_names()
        try:
            seq = tuple(int(v) for v in text.split(",")) if text else ()
        except ValueError:
            raise ValueError(
                f"ChannelSequence {text!r}: give comma-separated channel indices, e.g. '0,1'"
            ) from None
        bad = [c for c in seq if not 0 <= c < len(names)]
        if bad:
            raise ValueError(
                f"ChannelSequence {text!r}: the source has {len(names)} channel(s) "
                f"({', '.join(names) or 'no channel choice'}); channel {bad[0]} does not exist"
            )
        self._channel_seq = seq
        self._emit_prop("ChannelSequence", text)

    def _get_last_error(self) -> str:
        return "" if self.last_error is None else str(self.last_error)

    def _emit_prop(self, name: str, value: Any) -> None:
        if self._core_proxy_ is not None:
            self.core.events.propertyChanged.emit(self.get_label(), name, str(value))

    def is_streaming(self) -> bool:
        """True while a sequence (not a snap) runs in UniMMCore's acquisition thread."""
        t = self._stream_thread
        return t is not None and t.is_alive()

    def _refuse_while_streaming(self, what: str) -> None:
        if self.is_streaming():
            raise RuntimeError(f"Cannot change {what} while the camera streams; stop it first.")

    # ------------------------------------------------------------ ROI

    def get_roi(self) -> tuple[int, int, int, int]:
        if self._roi is not None:
            return self._roi
        h, w = self.shape()
        return (0, 0, w, h)

    def set_roi(self, x: int, y: int, width: int, height: int) -> None:
        self._refuse_while_streaming("the ROI")
        h, w = self.sensor_shape()
        h, w = h // self._binning, w // self._binning
        if x < 0 or y < 0 or width <= 0 or height <= 0 or x + width > w or y + height > h:
            raise ValueError(
                f"ROI ({x}, {y}, {width}, {height}) does not fit the {w}x{h} "
                f"(binning {self._binning}) sensor."
            )
        self._roi = (int(x), int(y), int(width), int(height))

    def clear_roi(self) -> None:
        self._refuse_while_streaming("the ROI")
        self._roi = None

    # ------------------------------------------------------------ streaming

    def _frame_period_s(self) -> float:
        return max(self._exposure_ms, self._readout_ms) / 1000.0

    def _positions(self) -> tuple[float, tuple[float, float], float, tuple[float, float]]:
        """(physical z, physical xy, reported z, reported xy)."""
        z_phys, z_rep = (0.0, 0.0) if self._focus is None else self._focus.sample_positions()
        origin = (0.0, 0.0)
        xy_phys, xy_rep = (origin, origin) if self._xy is None else self._xy.sample_positions()
        return z_phys, xy_phys, z_rep, xy_rep

    def start_sequence(
        self,
        n: int | None,
        get_buffer: Callable[[Sequence[int], DTypeLike], np.ndarray],
    ) -> Iterator[Mapping]:
        """Yield frames paced to the frame period until ``n`` are delivered or stopped."""
        shape = self.shape()
        sensor = self.sensor_shape()
        b = self._binning
        roi = self._roi
        direct = b == 1 and roi is None  # render straight into the core's buffer
        full = None if direct else np.empty(sensor, dtype=np.uint16)
        acc = None if b == 1 else np.empty(shape, dtype=np.uint32)
        if roi is None:
            x0, y0 = 0, 0
        else:
            x0, y0 = roi[0], roi[1]
        # Honour the stop event only in UniMMCore's acquisition thread (the core clears it
        # before starting one); snapImage runs in the caller's thread, where the event is
        # still set from the previous sequence.
        in_thread = type(threading.current_thread()).__name__ == "AcquisitionThread"
        stop = self._stop_event if in_thread else None
        fail_after = self._fail_after
        drop_every = self._drop_every
        seq = self._channel_seq
        if seq and self._replay_frames:
            err = CameraError(
                "ChannelSequence cannot be combined with ReplayFrames (the replayed frames "
                "show one channel); set one of them to its default"
            )
            self.last_error = err
            self._emit_prop("LastError", err)
            raise err
        bank = None
        if self._replay_frames:
            try:
                bank = self._render_bank(shape, acc, b, x0, y0)
            except Exception as e:  # a broken source surfaces like a camera fault
                self.last_error = e
                self._emit_prop("LastError", e)
                raise

        self.last_error = None
        if in_thread:
            # the thread ends when the core stops iterating (stop, n reached, error), even
            # if this generator is left suspended at a yield
            self._stream_thread = threading.current_thread()
        t_start = time.perf_counter()
        self.stream_origin_s = t_start - self._clock0
        next_start = t_start
        k = 0  # camera frame counter (exposures)
        delivered = 0
        snap = not in_thread and n == 1  # snapImage (e.g. each event of an MDA)
        if snap and fail_after and self._snaps >= fail_after:
            err = CameraError(
                f"SimCamera fault injected after {self._snaps} snaps (FailAfterFrames={fail_after})"
            )
            self.last_error = err
            self._emit_prop("LastError", err)
            raise err
        try:
            while n is None or delivered < n:
                if fail_after and delivered >= fail_after:
                    err = CameraError(
                        f"SimCamera fault injected after {delivered} frames "
                        f"(FailAfterFrames={fail_after})"
                    )
                    self.last_error = err
                    self._emit_prop("LastError", err)
                    raise err
                now = time.perf_counter()
                period = self._frame_period_s()
                # catch up on a short lag (camera timestamps stay on schedule); re-anchor
                # (run slower) when the source cannot keep up at all
                s = next_start if now - next_start <= max(4 * period, 0.05) else now
                deadline = s + period
                exposure = self._exposure_ms
                z_phys, xy_phys, z_rep, xy_rep = self._positions()
                dropped = drop_every > 0 and k % drop_every == drop_every - 1
                ch = seq[k % len(seq)] if seq else None
                kw: dict[str, Any] = {} if ch is None else {"channel": ch}
                if not dropped:
                    buf = get_buffer(shape, np.uint16)
                    t_scene = s - self._clock0
                    try:
                        if bank is not None:
                            buf[...] = bank[k % len(bank)]
                        elif direct:
                            img = self._source.render_frame(
                                t_scene, z_phys, xy_phys, exposure, buf, **kw
                            )
                            if img is not buf:
                                buf[...] = img
                        else:
                            assert full is not None
                            img = self._source.render_frame(
                                t_scene, z_phys, xy_phys, exposure, full, **kw
                            )
                            self._bin_crop(img, buf, acc, b, x0, y0)
                    except Exception as e:  # a broken source surfaces like a camera fault
                        self.last_error = e
                        self._emit_prop("LastError", e)
                        raise
                if self._wait_until(deadline, stop):
                    return
                next_start = deadline
                frame = k
                k += 1
                if dropped:
                    continue
                delivered += 1
                if snap:
                    self._snaps += 1
                self._actual_interval_ms = (time.perf_counter() - t_start) * 1000.0 / k
                yield {
                    META_FRAME: frame,
                    META_CAMERA_TIME_MS: round((s - t_start) * 1000.0, 4),
                    META_STAGE_Z_UM: z_rep,
                    META_STAGE_X_UM: xy_rep[0],
                    META_STAGE_Y_UM: xy_rep[1],
                    META_EXPOSURE_MS: exposure,
                    "Exposure-ms": exposure,
                    **({} if ch is None else {META_CHANNEL: ch}),
                }
        finally:
            if self._stream_thread is threading.current_thread():
                self._stream_thread = None

    def _render_bank(
        self, shape: tuple[int, int], acc: np.ndarray | None, b: int, x0: int, y0: int
    ) -> np.ndarray:
        """``ReplayFrames`` consecutive frames, rendered now, binned and cropped."""
        n = self._replay_frames
        need = n * int(np.prod(shape)) * 2
        if need > _REPLAY_MAX_BYTES:
            raise CameraError(
                f"ReplayFrames={n} at {shape[1]}x{shape[0]} needs {need / 2**30:.1f} GiB, over "
                f"the {_REPLAY_MAX_BYTES / 2**30:.0f} GiB limit: lower ReplayFrames or the "
                "frame size"
            )
        period = self._frame_period_s()
        z_phys, xy_phys, _, _ = self._positions()
        full = np.empty(self.sensor_shape(), dtype=np.uint16)
        bank = np.empty((n, *shape), dtype=np.uint16)
        t0 = time.perf_counter() - self._clock0
        for i in range(n):
            t = t0 + i * period
            img = self._source.render_frame(t, z_phys, xy_phys, self._exposure_ms, full)
            self._bin_crop(img, bank[i], acc, b, x0, y0)
        return bank

    def _bin_crop(
        self, img: np.ndarray, out: np.ndarray, acc: np.ndarray | None, b: int, x0: int, y0: int
    ) -> None:
        h, w = out.shape
        region = img[y0 * b : (y0 + h) * b, x0 * b : (x0 + w) * b]
        if b == 1 or acc is None:
            out[...] = region
            return
        # (h*b, w*b) -> (h, b, w, b) -> sum over the b x b blocks
        np.sum(region.reshape(h, b, w, b), axis=(1, 3), dtype=np.uint32, out=acc)
        if self._binning_mode == "Sum":
            np.minimum(acc, _UINT16_MAX, out=acc)
        else:  # Average, rounded half up
            acc += (b * b) // 2
            acc //= b * b
        out[...] = acc

    @staticmethod
    def _wait_until(deadline: float, stop: threading.Event | None) -> bool:
        """Sleep until ``deadline`` (perf_counter seconds); True if ``stop`` was set."""
        remaining = deadline - time.perf_counter()
        if stop is not None:
            if remaining > 0:
                return stop.wait(remaining)
            return stop.is_set()
        if remaining > 0:
            time.sleep(remaining)
        return False
