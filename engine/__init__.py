"""live_deepz.engine: inference backends, ring buffers and the live pipeline (no Qt).

The live pipeline (:class:`LivePipeline`) pops camera frames from a pymmcore-plus core into a
:class:`FrameRing`, turns each into K refocused planes with a backend
(:func:`create_backend`) into a :class:`PlaneRing`, and hands them to a display
(:meth:`LivePipeline.subscribe_latest`) and recorders (:meth:`LivePipeline.subscribe_all`,
:meth:`LivePipeline.subscribe_raw`); :meth:`LivePipeline.stats` counts every frame.
"""

from ._pipeline import CapacityEstimate, LivePipeline
from ._rings import FrameMeta, FrameRing, PlaneMeta, PlaneRing, RingClosed, SlotRing
from ._stats import STAGES, PipelineStats, SubscriberStats
from ._subscribers import (
    EngineTooSlowError,
    LatestSubscriber,
    PipelineError,
    PlaneFrame,
    RawFrame,
    StreamSubscriber,
)
from .backends import Backend, BackendUnavailableError, available_backends, create_backend

__all__ = [
    "STAGES",
    "Backend",
    "BackendUnavailableError",
    "CapacityEstimate",
    "EngineTooSlowError",
    "FrameMeta",
    "FrameRing",
    "LatestSubscriber",
    "LivePipeline",
    "PipelineError",
    "PipelineStats",
    "PlaneFrame",
    "PlaneMeta",
    "PlaneRing",
    "RawFrame",
    "RingClosed",
    "SlotRing",
    "StreamSubscriber",
    "SubscriberStats",
    "available_backends",
    "create_backend",
]
