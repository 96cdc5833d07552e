"""A live session without Qt: core, model(s), backend(s), plan, pipeline and recorder.

``live-deepz record`` and the app both drive one (the app through its Qt adapter,
``live_deepz.ui.Session``). The plan comes from outside (calibration builds surfaces and
the drift plan; the engine never imports calibration). Events are psygnal signals (a
pymmcore-plus dependency; a Qt adapter forwards them to Qt signals on the UI thread).

::

    live = LiveSession.create(core, model, StaticPlanePlan("-4:4:2"), backend="auto")
    live.start()                            # camera -> engine -> rings
    live.start_recording("run.ome.tif")     # attaches: the camera keeps streaming
    ...
    summary = live.stop_recording()         # detaches, completes skipped planes
    live.close()
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from psygnal import Signal

from live_deepz.errors import InputError

from ._pipeline import LivePipeline
from ._recorder import _BUFFER_MB, Recorder, RecordingSummary

__all__ = ["LiveSession", "recorder_ring_slots"]

logger = logging.getLogger("live_deepz.engine")


def recorder_ring_slots(
    frame_shape: tuple[int, int], n_planes: int, bytes_per_pixel: int = 2
) -> tuple[int, int]:
    """``(ring_slots, plane_slots)`` that let a recorder attached to a running pipeline lag
    as far as one started with it (``Recorder(buffer_mb=...)``'s default)."""
    h, w = frame_shape
    frame_mb = h * w * bytes_per_pixel / 2**20
    planes_mb = max(1, n_planes) * h * w * 4 / 2**20
    raw = int(max(32, min(4096, _BUFFER_MB / max(frame_mb, 1e-6))))
    planes = int(max(4, min(256, _BUFFER_MB / max(planes_mb, 1e-6))))
    return raw, planes


class LiveSession:
    """Owns the pieces of a live session and their order of operations.

    Signals (psygnal; emitted from the calling thread, recorder errors from a recorder
    thread): ``started()``, ``stopped()``, ``planChanged(plan_id, plan)``,
    ``recordingStarted(path)``, ``recordingFinished(summary)``, ``recordingFailed(message)``.
    """

    started = Signal()
    stopped = Signal()
    planChanged = Signal(int, object)
    recordingStarted = Signal(str)
    recordingFinished = Signal(object)
    recordingFailed = Signal(str)

    def __init__(
        self,
        core: Any,
        models: Any,
        backends: Any,
        plan: Any,
        *,
        channels: Sequence[Any] | None = None,
        mode: str = "live",
        allow_out_of_range: bool = False,
        max_planes: int | None = None,
        reserve_recorder_rings: bool = False,
        **pipeline_options: Any,
    ) -> None:
        self.core = core
        self.models = list(models) if isinstance(models, Sequence) else [models]
        backend_list = list(backends) if isinstance(backends, Sequence) else [backends]
        if len({float(m.card.dpm_scale_um) for m in self.models}) > 1:
            raise InputError(
                "the channels' models have different DPM scales ("
                + ", ".join(f"{m.card.name}: {m.card.dpm_scale_um:g} µm" for m in self.models)
                + "); use models trained with the same DPM scale"
            )
        z_range = (  # the range every channel's model was trained for
            max(float(m.card.z_range_um[0]) for m in self.models),
            min(float(m.card.z_range_um[1]) for m in self.models),
        )
        if reserve_recorder_rings:  # a recorder may attach later without a restart
            shape = (int(core.getImageHeight()), int(core.getImageWidth()))
            k = max(int(max_planes or 0), len(plan.offsets_um))
            raw, planes = recorder_ring_slots(shape, k, int(core.getBytesPerPixel()))
            pipeline_options.setdefault("ring_slots", raw)
            pipeline_options.setdefault("plane_slots", planes)
        self.pipeline = LivePipeline(
            core,
            backend_list if len(backend_list) > 1 else backend_list[0],
            plan,
            z_range_um=z_range,
            dpm_scale_um=float(self.models[0].card.dpm_scale_um),
            mode=mode,  # type: ignore[arg-type]
            allow_out_of_range=allow_out_of_range,
            max_planes=max_planes,
            channels=channels,
            **pipeline_options,
        )
        self.recorder: Recorder | None = None

    @classmethod
    def create(
        cls,
        core: Any,
        models: Any,
        plan: Any,
        *,
        backend: str = "auto",
        precision: str = "auto",
        device: str = "auto",
        **kwargs: Any,
    ) -> LiveSession:
        """A session whose backends are built here (one per distinct model)."""
        from .backends import create_backend

        model_list = list(models) if isinstance(models, Sequence) else [models]
        made: dict[int, Any] = {}
        for m in model_list:
            if id(m) not in made:
                made[id(m)] = create_backend(
                    backend, m.generator, precision=precision, device=device
                )
        return cls(core, model_list, [made[id(m)] for m in model_list], plan, **kwargs)

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> Any:
        """The (first channel's) model."""
        return self.models[0]

    @property
    def backend(self) -> Any:
        return self.pipeline.backend

    @property
    def plan(self) -> Any:
        return self.pipeline.plan

    @property
    def state(self) -> str:
        return str(self.pipeline.state)

    @property
    def recording(self) -> bool:
        return self.recorder is not None

    # ------------------------------------------------------------------ live
    def start(self) -> None:
        """Start the camera stream and the engine."""
        self.pipeline.start()
        self.started.emit()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the stream (a recording keeps its files open until :meth:`stop_recording`)."""
        self.pipeline.stop(timeout)
        self.stopped.emit()

    def set_plan(self, plan: Any) -> int:
        """Use ``plan`` from the next camera frame on (frames carry their plan's id)."""
        pid = self.pipeline.set_plan(plan)
        self.planChanged.emit(pid, plan)
        return pid

    def try_set_plan(self, plan: Any) -> bool:
        """:meth:`set_plan`, or False when the running pipeline has no room for the plan's
        planes (then :meth:`set_plan_stopped` and start again); other refusals raise."""
        try:
            self.set_plan(plan)
        except InputError as exc:
            if "room" not in str(exc) or self.state not in ("running", "stopping"):
                raise
            return False
        return True

    def set_plan_stopped(self, plan: Any, timeout: float = 5.0) -> None:
        """Stop the stream and use ``plan`` (more planes than the running pipeline has room
        for; the caller starts live again)."""
        self.pipeline.stop(timeout)
        self.pipeline.set_plan(plan)

    # ------------------------------------------------------------------ recording
    def recorder_for(
        self,
        path: str | Path,
        *,
        model: Any = ...,
        metadata: Mapping[str, Any] | None = None,
        **recorder_options: Any,
    ) -> Recorder:
        """A :class:`Recorder` of this session's pipeline, not started (its write errors
        are emitted as ``recordingFailed``)."""
        return Recorder(
            self.pipeline,
            path,
            model=self.model if model is ... else model,
            metadata=metadata,
            on_error=lambda err: self.recordingFailed.emit(str(err)),
            **recorder_options,
        )

    def start_recording(self, path: str | Path | Recorder, **recorder_options: Any) -> Recorder:
        """Record raw frames and planes to ``path`` (or with a :meth:`recorder_for`).

        While live the recorder attaches to the running pipeline (the camera is not
        restarted; frame numbers continue) and :meth:`stop_recording` detaches it. Before
        :meth:`start` it records the run from its first frame and :meth:`stop_recording`
        stops the stream.
        """
        if self.recorder is not None:
            raise RuntimeError("a recording is already running; stop it first")
        rec = path if isinstance(path, Recorder) else self.recorder_for(path, **recorder_options)
        rec.start()
        self.recorder = rec
        self.recordingStarted.emit(str(rec.path))
        return rec

    def stop_recording(self, complete: bool | None = None) -> RecordingSummary | None:
        """Finish the recording (detach, or stop the stream it started with), complete the
        planes the engine skipped; returns its summary (None: no recording)."""
        rec = self.recorder
        if rec is None:
            return None
        try:
            summary = rec.stop(complete=complete)
        finally:
            self.recorder = None
        self.recordingFinished.emit(summary)
        return summary

    def record(self, recorder: Recorder, timeout: float = 5.0) -> bool:
        """Start ``recorder`` (a :meth:`recorder_for`): attached to the running stream (the
        camera keeps streaming), or, when not live, the stream starts with it (returns
        True; a stream that fails to start ends the recording). A stream that stopped or
        failed is stopped first (waiting up to ``timeout`` s)."""
        p = self.pipeline
        if p.state in ("stopping", "error"):
            p.stop(timeout)
        self.start_recording(recorder)
        if p.state == "running":
            return False
        try:
            p.start()
        except BaseException:
            self.stop_recording(complete=False)
            raise
        return True

    def finish_recording(
        self, complete: bool | None = None, *, stop_stream: bool = False, timeout: float = 5.0
    ) -> RecordingSummary | None:
        """:meth:`stop_recording`, stopping the stream first when ``stop_stream`` or when
        the recording started it (the engine may need seconds to finish its frame)."""
        rec = self.recorder
        stops = stop_stream or (rec is not None and rec.stops_pipeline)
        if stops and self.pipeline.state in ("running", "stopping"):
            self.pipeline.stop(timeout)
        return self.stop_recording(complete=complete)

    def abandon_recording(self, recorder: Recorder | None = None) -> None:
        """Close a recording without completing its planes (the app closes); logs how to
        complete it later. ``recorder``: one not (yet) attached here."""
        rec = recorder or self.recorder
        self.recorder = None
        if rec is None:
            return
        with contextlib.suppress(Exception):
            summary = rec.stop(complete=False)
            logger.warning(
                "recording %s closed with the window; %d frame(s) without planes: run "
                "`live-deepz complete %s`",
                summary.path,
                summary.incomplete,
                summary.path,
            )

    def close(self, timeout: float = 5.0) -> None:
        """Stop recording and streaming; close a plan that holds threads (drift)."""
        with contextlib.suppress(Exception):
            self.stop_recording(complete=False)
        self.pipeline.stop(timeout)
        close = getattr(self.pipeline.plan, "close", None)
        if callable(close):
            close()
