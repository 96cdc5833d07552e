"""live_deepz.engine: inference backends, ring buffers and the live pipeline (no Qt).

The live pipeline (:class:`LivePipeline`) pops camera frames from a pymmcore-plus core into a
:class:`FrameRing`, turns each into K refocused planes with a backend
(:func:`create_backend`) into a :class:`PlaneRing`, and hands them to a display
(:meth:`LivePipeline.subscribe_latest`) and recorders (:meth:`LivePipeline.subscribe_all`,
:meth:`LivePipeline.subscribe_raw`); :meth:`LivePipeline.stats` counts every frame.

:class:`MDAProcessor` does the same inside pymmcore-plus multi-dimensional acquisitions
(``core.run_mda(useq.MDASequence(...))``): every frame refocused off the acquisition thread,
planes written beside pymmcore-plus' own raw files.
"""

from ._bench import BenchConfig, format_summary, result_filename, run_bench
from ._ceiling import measure_matmul_ceiling
from ._live_plans import (
    DEFAULT_PLANES,
    MAX_LIVE_PLANES,
    LivePlans,
    SurfaceCalibration,
    clip_to_range,
    is_drift_plan,
)
from ._live_session import LiveSession, recorder_ring_slots
from ._live_setup import (
    LiveSetup,
    SessionConfig,
    describe_backend,
    grab_frame,
    live_error_text,
    make_live_session,
    open_error_text,
    open_live_setup,
    plain_error,
    rebuild_live_session,
    stop_timeout_s,
)
from ._mda import MDAPlanes, MDAProcessor, MDASummary
from ._offline import ArrayPlan, RefocusInput, RefocusSummary, read_input, refocus_file
from ._onnx import export_onnx
from ._pipeline import CapacityEstimate, LivePipeline
from ._recorder import (
    ChannelClock,
    PlanTimeline,
    Recorder,
    RecordingSummary,
    model_metadata,
    recorder_metadata,
)
from ._refocuser import Refocuser
from ._rings import FrameMeta, FrameRing, PlaneMeta, PlaneRing, RingClosed, SlotRing
from ._session_models import (
    NA_TOLERANCE,
    PIXEL_TOLERANCE,
    STANDIN_NAME,
    model_notices,
    optics_mismatch,
    pick_model,
    pixel_size_of,
    scope_na,
    standin_model,
)
from ._stack3d import DEFAULT_OVERLAP, DEFAULT_TILE, infer_stack
from ._stats import STAGES, PipelineStats, SubscriberStats
from ._subscribers import (
    EngineTooSlowError,
    LatestSubscriber,
    PipelineError,
    PlaneFrame,
    RawFrame,
    StreamSubscriber,
)
from ._tiling import ALIGN, TiledBackend, infer_tiled
from .backends import (
    AUTO_ORDER,
    BACKENDS,
    Backend,
    BackendUnavailableError,
    available_backends,
    create_backend,
    pinned_host_array,
    relative_error,
)

__all__ = [
    "ALIGN",
    "AUTO_ORDER",
    "BACKENDS",
    "DEFAULT_OVERLAP",
    "DEFAULT_PLANES",
    "DEFAULT_TILE",
    "MAX_LIVE_PLANES",
    "NA_TOLERANCE",
    "PIXEL_TOLERANCE",
    "STAGES",
    "STANDIN_NAME",
    "ArrayPlan",
    "Backend",
    "BackendUnavailableError",
    "BenchConfig",
    "CapacityEstimate",
    "ChannelClock",
    "EngineTooSlowError",
    "FrameMeta",
    "FrameRing",
    "LatestSubscriber",
    "LivePipeline",
    "LivePlans",
    "LiveSession",
    "LiveSetup",
    "MDAPlanes",
    "MDAProcessor",
    "MDASummary",
    "PipelineError",
    "PipelineStats",
    "PlanTimeline",
    "PlaneFrame",
    "PlaneMeta",
    "PlaneRing",
    "RawFrame",
    "Recorder",
    "RecordingSummary",
    "RefocusInput",
    "RefocusSummary",
    "Refocuser",
    "RingClosed",
    "SessionConfig",
    "SlotRing",
    "StreamSubscriber",
    "SubscriberStats",
    "SurfaceCalibration",
    "TiledBackend",
    "available_backends",
    "clip_to_range",
    "create_backend",
    "describe_backend",
    "export_onnx",
    "format_summary",
    "grab_frame",
    "infer_stack",
    "infer_tiled",
    "is_drift_plan",
    "live_error_text",
    "make_live_session",
    "measure_matmul_ceiling",
    "model_metadata",
    "model_notices",
    "open_error_text",
    "open_live_setup",
    "optics_mismatch",
    "pick_model",
    "pinned_host_array",
    "pixel_size_of",
    "plain_error",
    "read_input",
    "rebuild_live_session",
    "recorder_metadata",
    "recorder_ring_slots",
    "refocus_file",
    "relative_error",
    "result_filename",
    "run_bench",
    "scope_na",
    "standin_model",
    "stop_timeout_s",
]
