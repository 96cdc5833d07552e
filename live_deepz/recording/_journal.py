"""The append-only JSON-lines journal of a recording.

One JSON object per line, each written with a single ``write`` system call on an
``O_APPEND`` descriptor, so a killed process leaves at most its last line incomplete (the
reader skips it). Records, by ``"type"``:

``header`` (first line)
    format, version, kind (``recording``/``refocus``), files, shapes, dtypes, plane offsets,
    model identity and card, optics, software version, camera, first plan.
``frame``
    ``t`` (position in the file) and :class:`~._common.FrameInfo` fields; written *after*
    the frame's raw pixels reached the OS. An interleaved multi-channel recording adds
    ``c`` (the line is about that channel's frame of time point ``t``; without ``c``: all
    channels), and ``"missing": true`` for a channel frame the camera dropped.
``planes``
    ``t`` (and ``c``), ``plan_id``, ``source`` (``live`` or ``completed``): the K virtual
    planes of frame ``t`` are written (absent: the frame's planes are still to be completed).
``plan``
    ``plan_id``, ``first_index``, ``plan`` (its ``describe()``), ``offsets_um`` and, for a
    user-array surface, ``surface_file``.
``normalization``
    ``first_index``, ``background``, ``scale`` (the intensity normalisation in use).
``event``
    anything worth knowing later (missed frames, errors), with a ``message``; ``drift``
    events hold a drift-compensation plan's per-frame DPM timeline.
``end``
    the recording was closed in order; ``frames``, ``complete`` and a summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

__all__ = ["Journal", "read_journal"]


class Journal:
    """Append JSON lines to ``path`` (created, or appended to when it exists)."""

    def __init__(self, path: Path, *, create: bool) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        if create:
            flags |= os.O_TRUNC
        self._fd: int | None = os.open(path, flags, 0o644)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._fd is None:
                raise ValueError("journal is closed")
            view = memoryview(line)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]

    def sync(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None


def read_journal(path: Path) -> tuple[list[dict[str, Any]], int]:
    """All complete records of a journal, and how many broken lines were skipped."""
    records: list[dict[str, Any]] = []
    bad = 0
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):  # the last line of a killed writer
                bad += 1
                continue
            try:
                rec = json.loads(raw)
            except ValueError:
                bad += 1
                continue
            if isinstance(rec, dict):
                records.append(rec)
            else:
                bad += 1
    return records, bad
