"""The simulated microscope through pymmcore-plus' UniMMCore: streaming, stages, faults.

No test times anything tightly: pacing is checked on the camera's own timestamps (which can
only be late, never early) and with lower bounds on wall time.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pymmcore_plus import CMMCorePlus

from live_deepz.errors import CameraError
from live_deepz.microscope import (
    META_CAMERA_TIME_MS,
    META_FRAME,
    META_STAGE_X_UM,
    META_STAGE_Y_UM,
    META_STAGE_Z_UM,
    SIM_CAMERA,
    SIM_FOCUS,
    SIM_XY,
    NoiseFrameSource,
    SimCamera,
    open_core,
)

SHAPE = (96, 128)
HAS_SCENE = importlib.util.find_spec("live_deepz.sim.scene") is not None


class RampSource:
    """Deterministic source: pixel value = 4 * (x + y * W) mod 60000, plus 10 * z."""

    def __init__(self, shape: tuple[int, int] = SHAPE) -> None:
        self.shape = shape
        h, w = shape
        self.base = ((np.arange(h * w, dtype=np.int64).reshape(h, w) * 4) % 60000).astype(np.uint16)

    def render_frame(
        self,
        t_s: float,
        stage_z_um: float,
        stage_xy_um: tuple[float, float] = (0.0, 0.0),
        exposure_ms: float = 10.0,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        img = self.base + np.uint16(10 * stage_z_um)
        if out is None:
            return img
        out[...] = img
        return out


def pop_frames(core: CMMCorePlus, n: int, timeout_s: float = 20.0) -> list[tuple[Any, Any]]:
    """Pop ``n`` frames, waiting on getRemainingImageCount (tolerates the empty-buffer race)."""
    frames: list[tuple[Any, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(frames) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(frames)} of {n} frames within {timeout_s} s")
        if core.getRemainingImageCount() > 0:
            try:
                frames.append(core.popNextImageAndMD())
            except IndexError:
                continue
        else:
            time.sleep(0.002)
    return frames


def wait_stopped(core: CMMCorePlus, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while core.isSequenceRunning():
        if time.monotonic() > deadline:
            raise AssertionError("sequence still running")
        time.sleep(0.005)


@pytest.fixture
def core(monkeypatch: pytest.MonkeyPatch) -> Iterator[CMMCorePlus]:
    # psygnal events (delivered in the emitting thread), as outside the app: with a
    # QApplication left by an earlier test, pymmcore-plus would pick Qt signals and queue
    # the camera thread's events behind an event loop that these tests do not run
    monkeypatch.setenv("PYMM_SIGNALS_BACKEND", "psygnal")
    c = open_core("sim", scene=NoiseFrameSource(SHAPE, seed=1))
    yield c
    if c.isSequenceRunning():
        c.stopSequenceAcquisition()


@pytest.fixture
def ramp_core() -> Iterator[CMMCorePlus]:
    c = open_core("sim", scene=RampSource())
    yield c
    if c.isSequenceRunning():
        c.stopSequenceAcquisition()


def camera_of(core: CMMCorePlus) -> SimCamera:
    dev = core._pydevices[SIM_CAMERA]  # type: ignore[attr-defined]
    assert isinstance(dev, SimCamera)
    return dev


def test_open_sim_core_configuration(core: CMMCorePlus) -> None:
    assert core.getCameraDevice() == SIM_CAMERA
    assert core.getFocusDevice() == SIM_FOCUS
    assert core.getXYStageDevice() == SIM_XY
    assert core.getPixelSizeUm() == pytest.approx(0.325)
    assert core.getExposure() == pytest.approx(10.0)
    assert (core.getImageHeight(), core.getImageWidth()) == SHAPE
    assert core.getBytesPerPixel() == 2
    assert open_core(core) is core


def test_continuous_stream_frames_and_metadata(core: CMMCorePlus) -> None:
    core.setPosition(3.0)
    core.setXYPosition(12.0, -4.0)
    core.startContinuousSequenceAcquisition()
    frames = pop_frames(core, 20)
    core.stopSequenceAcquisition()
    assert not core.isSequenceRunning()
    imgs = [f[0] for f in frames]
    mds = [f[1] for f in frames]
    assert all(i.shape == SHAPE and i.dtype == np.uint16 for i in imgs)
    numbers = [int(md[META_FRAME]) for md in mds]
    assert numbers == list(range(20))
    assert [int(md["ImageNumber"]) for md in mds] == list(range(20))
    times = np.array([float(md[META_CAMERA_TIME_MS]) for md in mds])
    assert np.all(np.diff(times) > 0)
    assert all(float(md[META_STAGE_Z_UM]) == 3.0 for md in mds)
    assert all(float(md[META_STAGE_X_UM]) == 12.0 for md in mds)
    assert all(float(md[META_STAGE_Y_UM]) == -4.0 for md in mds)


def test_focus_move_changes_delivered_frames(core: CMMCorePlus) -> None:
    core.startContinuousSequenceAcquisition()
    pop_frames(core, 2)
    core.setPosition(5.0)
    # frames exposed after the move carry z = 5 (earlier ones may still be in the buffer)
    deadline = time.monotonic() + 20
    while True:
        (img, md), *_ = pop_frames(core, 1)
        if float(md[META_STAGE_Z_UM]) == 5.0:
            break
        assert time.monotonic() < deadline
    core.stopSequenceAcquisition()
    core.setPosition(0.0)
    core.snapImage()
    in_focus = core.getImage().astype(float)
    # the stand-in's contrast falls with |z|
    assert img.astype(float).std() < 0.5 * in_focus.std()


def test_sequence_of_n_delivers_exactly_n(core: CMMCorePlus) -> None:
    core.startSequenceAcquisition(7, 0, True)
    wait_stopped(core)
    assert core.getRemainingImageCount() == 7
    frames = pop_frames(core, 7)
    assert [int(md[META_FRAME]) for _, md in frames] == list(range(7))
    assert core.getRemainingImageCount() == 0
    with pytest.raises(IndexError):
        core.popNextImageAndMD()


def _camera_periods_ms(core: CMMCorePlus, exposure_ms: float, n: int = 8) -> tuple[Any, float]:
    core.setExposure(exposure_ms)
    t0 = time.perf_counter()
    core.startSequenceAcquisition(n, 0, True)
    frames = pop_frames(core, n)
    wall = time.perf_counter() - t0
    wait_stopped(core)
    times = np.array([float(md[META_CAMERA_TIME_MS]) for _, md in frames])
    return np.diff(times), wall


def test_exposure_sets_frame_period(core: CMMCorePlus) -> None:
    core.setProperty(SIM_CAMERA, "ReadoutTime", 1.0)
    for exposure in (5.0, 25.0):
        periods, wall = _camera_periods_ms(core, exposure)
        # the camera schedule can fall behind (re-anchor) but is never early
        assert periods.min() >= exposure * 0.99
        assert np.median(periods) < exposure * 3
        assert wall >= 7 * exposure / 1000 * 0.9  # lower bound only: pacing is real
    # readout time bounds the period from below
    core.setProperty(SIM_CAMERA, "ReadoutTime", 20.0)
    periods, _ = _camera_periods_ms(core, 2.0, n=4)
    assert periods.min() >= 20.0 * 0.99


def test_stage_and_property_events(core: CMMCorePlus) -> None:
    got: list[tuple[Any, ...]] = []
    core.events.stagePositionChanged.connect(lambda *a: got.append(("z", *a)))
    core.events.XYStagePositionChanged.connect(lambda *a: got.append(("xy", *a)))
    core.events.exposureChanged.connect(lambda *a: got.append(("exp", *a)))
    core.events.propertyChanged.connect(lambda *a: got.append(("prop", *a)))
    core.setPosition(2.5)
    core.setRelativePosition(1.0)
    core.setXYPosition(10.0, -5.0)
    core.setExposure(20.0)
    core.setProperty(SIM_CAMERA, "Binning", 2)
    assert ("z", SIM_FOCUS, 2.5) in got
    assert ("z", SIM_FOCUS, 3.5) in got
    assert ("xy", SIM_XY, 10.0, -5.0) in got
    assert ("exp", SIM_CAMERA, 20.0) in got
    assert ("prop", SIM_CAMERA, "Binning", "2") in got
    assert core.getPosition() == pytest.approx(3.5)
    assert core.getXYPosition() == pytest.approx((10.0, -5.0))


def test_stage_origin_and_speed(core: CMMCorePlus) -> None:
    core.setPosition(4.0)
    core.setOrigin()
    assert core.getPosition() == pytest.approx(0.0)
    # the scene still sees the physical position
    focus = core._pydevices[SIM_FOCUS]  # type: ignore[attr-defined]
    assert focus.physical_position_um() == pytest.approx(4.0)
    core.setProperty(SIM_FOCUS, "Speed-um/s", 1.0)
    core.setPosition(50.0)  # a 50 s move
    assert core.deviceBusy(SIM_FOCUS)
    assert 0.0 <= core.getPosition() < 50.0
    core.stop(SIM_FOCUS)
    assert not core.deviceBusy(SIM_FOCUS)
    assert 0.0 <= core.getPosition() < 50.0


def test_fault_injection_surfaces(core: CMMCorePlus, monkeypatch: pytest.MonkeyPatch) -> None:
    hooked: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", hooked.append)
    props: list[tuple[str, str, str]] = []
    core.events.propertyChanged.connect(lambda *a: props.append(a))
    core.setProperty(SIM_CAMERA, "FailAfterFrames", 3)
    core.startContinuousSequenceAcquisition()
    wait_stopped(core)
    # the frames before the failure are still there
    assert core.getRemainingImageCount() == 3
    assert len(hooked) == 1
    exc = hooked[0].exc_value
    assert isinstance(exc, RuntimeError)
    assert isinstance(exc.__cause__, CameraError)
    assert "FailAfterFrames=3" in str(exc)
    assert "FailAfterFrames" in core.getProperty(SIM_CAMERA, "LastError")
    assert any(p[:2] == (SIM_CAMERA, "LastError") for p in props)
    core.stopSequenceAcquisition()  # harmless after the failure
    # a new sequence without the fault clears LastError
    core.setProperty(SIM_CAMERA, "FailAfterFrames", 0)
    core.startSequenceAcquisition(2, 0, True)
    wait_stopped(core)
    assert core.getProperty(SIM_CAMERA, "LastError") == ""


def test_drop_every_leaves_gaps_in_frame_counter(core: CMMCorePlus) -> None:
    core.setExposure(2.0)
    core.setProperty(SIM_CAMERA, "DropEvery", 3)
    core.startSequenceAcquisition(6, 0, True)
    frames = pop_frames(core, 6)
    wait_stopped(core)
    assert [int(md[META_FRAME]) for _, md in frames] == [0, 1, 3, 4, 6, 7]
    assert [int(md["ImageNumber"]) for _, md in frames] == list(range(6))


def test_replay_frames_cycles_a_prerendered_bank(core: CMMCorePlus) -> None:
    """ReplayFrames=N: N independent frames rendered at the start, then streamed cyclically
    with continuous frame numbers; refused while streaming; 0 renders every frame again."""
    core.setExposure(2.0)
    core.setProperty(SIM_CAMERA, "ReplayFrames", 3)
    core.startSequenceAcquisition(7, 0, True)
    frames = pop_frames(core, 1)  # the camera thread is streaming from here on
    with pytest.raises(Exception, match="ReplayFrames"):
        core.setProperty(SIM_CAMERA, "ReplayFrames", 0)
    frames += pop_frames(core, 6)
    wait_stopped(core)
    imgs = [img for img, _ in frames]
    assert [int(md[META_FRAME]) for _, md in frames] == list(range(7))
    for i in range(3, 7):
        np.testing.assert_array_equal(imgs[i], imgs[i - 3])
    assert not np.array_equal(imgs[0], imgs[1])  # independent noise within the bank
    core.setProperty(SIM_CAMERA, "ReplayFrames", 0)
    core.startSequenceAcquisition(4, 0, True)
    fresh = [img for img, _ in pop_frames(core, 4)]
    wait_stopped(core)
    assert not np.array_equal(fresh[3], fresh[0])


def test_replay_bank_over_the_memory_limit_is_a_camera_fault(
    core: CMMCorePlus, monkeypatch: pytest.MonkeyPatch
) -> None:
    from live_deepz import _sim_devices

    monkeypatch.setattr(_sim_devices, "_REPLAY_MAX_BYTES", 10 * SHAPE[0] * SHAPE[1] * 2)
    hooked: list[Any] = []  # the fault ends UniMMCore's acquisition thread (see the module)
    monkeypatch.setattr(threading, "excepthook", hooked.append)
    core.setProperty(SIM_CAMERA, "ReplayFrames", 11)
    core.startSequenceAcquisition(3, 0, True)
    wait_stopped(core)
    assert core.getRemainingImageCount() == 0
    msg = core.getProperty(SIM_CAMERA, "LastError")
    assert "ReplayFrames=11" in msg and "lower ReplayFrames" in msg
    assert len(hooked) == 1 and "ReplayFrames=11" in str(hooked[0].exc_value)


def test_binning_and_roi(ramp_core: CMMCorePlus) -> None:
    core = ramp_core
    base = RampSource().base.astype(np.int64)
    core.snapImage()
    np.testing.assert_array_equal(core.getImage(), base)

    core.setROI(10, 20, 30, 16)
    core.snapImage()
    np.testing.assert_array_equal(core.getImage(), base[20:36, 10:40])
    core.clearROI()

    core.setProperty(SIM_CAMERA, "Binning", "2")  # GUIs send the string form
    assert core.getPixelSizeUm() == pytest.approx(0.65)
    h, w = SHAPE[0] // 2, SHAPE[1] // 2
    blocks = base.reshape(h, 2, w, 2).sum(axis=(1, 3))
    core.snapImage()
    np.testing.assert_array_equal(core.getImage(), (blocks + 2) // 4)
    core.setProperty(SIM_CAMERA, "BinningMode", "Sum")
    core.setROI(4, 2, 8, 6)
    core.startSequenceAcquisition(2, 0, True)
    (img, md), _ = pop_frames(core, 2)
    np.testing.assert_array_equal(img, np.minimum(blocks, 65535)[2:8, 4:12])
    assert md["Binning"] == "2"
    wait_stopped(core)
    core.setProperty(SIM_CAMERA, "Binning", 1)  # allowed again once the sequence ended
    assert (core.getImageHeight(), core.getImageWidth()) == SHAPE


def test_snap_after_stream_and_prompt_stop(core: CMMCorePlus) -> None:
    core.setExposure(20_000.0)  # a 20 s exposure: stop must not wait it out
    cam = camera_of(core)
    core.startContinuousSequenceAcquisition()
    deadline = time.monotonic() + 20
    while not cam.is_streaming():  # wait until the camera sits in its first exposure
        assert time.monotonic() < deadline
        time.sleep(0.005)
    core.stopSequenceAcquisition()
    assert not cam.is_streaming()  # the camera's generator has ended (join did not time out)
    core.setExposure(1.0)
    core.snapImage()  # UniMMCore's stop event is still set here: snap must still work
    assert core.getImage().shape == SHAPE


def test_changing_geometry_while_streaming_is_refused(core: CMMCorePlus) -> None:
    core.startContinuousSequenceAcquisition()
    pop_frames(core, 1)
    with pytest.raises(RuntimeError, match="stop it first"):
        core.setProperty(SIM_CAMERA, "Binning", 2)
    core.stopSequenceAcquisition()


def test_open_core_bad_sources(tmp_path: Any) -> None:
    with pytest.raises(CameraError, match=r"missing\.cfg"):
        open_core("missing.cfg")
    bad = tmp_path / "bad.cfg"
    bad.write_text("Device,Cam,NoSuchAdapterXYZ,DCam\n")
    with pytest.raises(CameraError, match=r"bad\.cfg"):
        open_core(bad)
    with pytest.raises(CameraError, match="sim"):
        open_core("not-a-source")


@pytest.mark.slow  # builds the scene's defocus table (PSF): a few seconds
@pytest.mark.skipif(not HAS_SCENE, reason="live_deepz.sim.scene not available")
def test_real_scene_streams_and_refocuses() -> None:
    core = open_core("sim", sample="beads", size=128, seed=0)
    try:
        assert (core.getImageHeight(), core.getImageWidth()) == (128, 128)
        core.startContinuousSequenceAcquisition()
        frames = pop_frames(core, 20)
        core.stopSequenceAcquisition()
        assert [int(md[META_FRAME]) for _, md in frames] == list(range(20))
        assert all(img.dtype == np.uint16 and img.shape == (128, 128) for img, _ in frames)

        def snap_at(z: float) -> np.ndarray:
            core.setPosition(z)
            core.snapImage()
            return core.getImage().astype(np.float64)

        def peak_contrast(img: np.ndarray) -> float:  # bead peaks above background
            return float(np.percentile(img, 99.9) - np.median(img))

        a, a2, b = snap_at(0.0), snap_at(0.0), snap_at(5.0)
        # the beads lie in focus at z = 0: 5 µm away their peaks are far dimmer
        assert peak_contrast(b) < 0.3 * peak_contrast(a)
        assert peak_contrast(a2) == pytest.approx(peak_contrast(a), rel=0.3)
    finally:
        if core.isSequenceRunning():
            core.stopSequenceAcquisition()
