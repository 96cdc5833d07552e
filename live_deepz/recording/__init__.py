"""Recordings: every raw camera frame plus the K virtual planes of each frame, crash-safe.

Layout (see ``docs/RECORDING.md``)::

    NAME.ome.tif          raw frames        (T, [C,] Y, X)     camera dtype, lossless
    NAME.planes.ome.tif   virtual planes    (T, [C,] Z, Y, X)  float32
    NAME.journal.jsonl    append-only journal: header, one line per frame, plans, ...

or one folder ``NAME.ome.zarr`` (NGFF 0.5 images ``raw`` and ``planes`` + ``journal.jsonl``).

- :class:`RecordingWriter` writes them (the live ``Recorder`` of ``live_deepz.engine`` and
  offline refocusing use it);
- :func:`open_recording` reads them lazily, also after ``kill -9``;
- :func:`complete_recording` computes the virtual planes the live engine could not.

Multi-dimensional acquisitions (pymmcore-plus ``run_mda`` with a ``useq.MDASequence``): the
raw frames are pymmcore-plus' own OME-Zarr/OME-TIFF, the planes ``NAME.planes.zarr``
``(P, T, C, Z, Y, X)`` (:class:`MDAPlaneWriter`); :func:`open_recording` opens those too
(an :class:`MDARecording`), :func:`complete_mda_recording` completes them.
"""

from ._common import (
    FORMATS,
    FrameInfo,
    LazyFrames,
    RecordingError,
    RecordingPaths,
    guess_format,
    recording_paths,
)
from ._complete import CompletionReport, complete_recording, plan_from_record
from ._mda import (
    MDA_AXES,
    MDAPaths,
    MDAPlaneWriter,
    MDARecording,
    complete_mda_recording,
    event_key,
    is_mda_recording,
    mda_paths,
    mda_sizes,
    open_mda_recording,
)
from ._reader import Recording, open_recording
from ._writer import RecordingWriter, dpm_timeline, find_journal, load_journal

__all__ = [
    "FORMATS",
    "MDA_AXES",
    "CompletionReport",
    "FrameInfo",
    "LazyFrames",
    "MDAPaths",
    "MDAPlaneWriter",
    "MDARecording",
    "Recording",
    "RecordingError",
    "RecordingPaths",
    "RecordingWriter",
    "complete_mda_recording",
    "complete_recording",
    "dpm_timeline",
    "event_key",
    "find_journal",
    "guess_format",
    "is_mda_recording",
    "load_journal",
    "mda_paths",
    "mda_sizes",
    "open_mda_recording",
    "open_recording",
    "plan_from_record",
    "recording_paths",
]
