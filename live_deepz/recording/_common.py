"""Shared pieces of the recording format: errors, file naming, frame records, lazy arrays."""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import LiveDeepzError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "FrameInfo",
    "LazyFrames",
    "RecordingError",
    "RecordingPaths",
    "recording_paths",
    "write_error",
]

FORMAT_NAME = "live-deepz-recording"
FORMAT_VERSION = 1
Format = Literal["tiff", "zarr"]
FORMATS: tuple[str, ...] = ("tiff", "zarr")

_TIFF_SUFFIXES = (".planes.ome.tiff", ".planes.ome.tif", ".ome.tiff", ".ome.tif", ".tiff", ".tif")
_JOURNAL_SUFFIX = ".journal.jsonl"


class RecordingError(LiveDeepzError):
    """A recording could not be written or read; the message says what is safe and what to do."""


@dataclass(frozen=True)
class RecordingPaths:
    """Where the parts of one recording live.

    TIFF: ``NAME.ome.tif`` (raw), ``NAME.planes.ome.tif`` (virtual planes),
    ``NAME.journal.jsonl`` (per-frame journal). A refocus output has no raw file and its
    planes file is the path the user gave. Zarr: one folder ``NAME.ome.zarr`` holding the
    image groups ``raw`` and ``planes`` and ``journal.jsonl``.
    """

    format: str
    base: Path
    """What the user names: ``NAME.ome.tif`` or ``NAME.ome.zarr``."""
    raw: Path | None
    planes: Path
    journal: Path
    stem: str

    @property
    def folder(self) -> Path:
        return self.journal.parent

    def existing(self) -> list[Path]:
        parts = [self.raw, self.planes, self.journal] if self.format == "tiff" else [self.base]
        return [p for p in parts if p is not None and p.exists()]


def _tiff_stem(name: str) -> str:
    low = name.lower()
    for suf in _TIFF_SUFFIXES:
        if low.endswith(suf):
            return name[: -len(suf)]
    if low.endswith(_JOURNAL_SUFFIX):
        return name[: -len(_JOURNAL_SUFFIX)]
    return name


def guess_format(path: str | os.PathLike[str]) -> str:
    """``"zarr"`` for ``*.zarr`` (or a folder holding ``zarr.json``), else ``"tiff"``."""
    p = Path(path)
    if p.name.lower().rstrip("/").endswith(".zarr") or (p.is_dir() and (p / "zarr.json").exists()):
        return "zarr"
    return "tiff"


def recording_paths(
    path: str | os.PathLike[str], format: str | None = None, *, with_raw: bool = True
) -> RecordingPaths:
    """The file names of the recording named by ``path`` (any of its parts, or the base).

    ``with_raw=False`` (a refocus output): the planes file is ``path`` itself.
    """
    p = Path(path).expanduser()
    fmt = format or guess_format(p)
    if fmt not in FORMATS:
        raise RecordingError(f"unknown recording format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "zarr":
        name = p.name
        if name.lower().endswith(".journal.jsonl") or name == "journal.jsonl":
            p = p.parent if name == "journal.jsonl" else p
        stem = _tiff_stem(p.name)
        if stem.lower().endswith(".zarr"):
            stem = stem[:-5]
        if stem.lower().endswith(".ome"):
            stem = stem[:-4]
        base = p if p.name.lower().endswith(".zarr") else p.with_name(stem + ".ome.zarr")
        return RecordingPaths(
            "zarr",
            base,
            base / "raw" if with_raw else None,
            base / "planes",
            base / "journal.jsonl",
            stem,
        )
    stem = _tiff_stem(p.name)
    folder = p.parent
    if not with_raw:
        planes = p if p.suffix.lower() in (".tif", ".tiff") else folder / (stem + ".ome.tif")
        return RecordingPaths("tiff", planes, None, planes, folder / (stem + _JOURNAL_SUFFIX), stem)
    return RecordingPaths(
        "tiff",
        folder / (stem + ".ome.tif"),
        folder / (stem + ".ome.tif"),
        folder / (stem + ".planes.ome.tif"),
        folder / (stem + _JOURNAL_SUFFIX),
        stem,
    )


def write_error(exc: OSError, what: str, n_frames: int, base: Path) -> RecordingError:
    """A :class:`RecordingError` for an OS error while writing, saying what is safe."""
    keep = (
        f"the {n_frames} frame(s) already written are readable"
        if n_frames
        else "no frame was written yet"
    )
    fix = f"run `live-deepz complete {base}` to finish the virtual planes"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return RecordingError(
            f"disk full writing {what} after {n_frames} frame(s); {keep}; free space and {fix}"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return RecordingError(
            f"no permission to write {what} ({exc.strerror}); choose a folder you can write "
            "to with -o"
        )
    reason = exc.strerror or str(exc)
    return RecordingError(
        f"cannot write {what} after {n_frames} frame(s): {reason} (errno {exc.errno}); "
        f"{keep}; {fix}"
    )


def _num(v: Any) -> float | None:
    """JSON-safe float: NaN/inf become None."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@dataclass
class FrameInfo:
    """What the journal keeps about one recorded frame (the same for all its K planes)."""

    index: int = -1
    """The pipeline's frame index (every frame popped from the camera, from 0 per run)."""
    camera_frame: int = -1
    """The camera's frame number (gaps: frames the camera dropped); -1 unknown."""
    camera_time_ms: float = math.nan
    """The camera's timestamp of the exposure (ms since the sequence started)."""
    core_time_ms: float = math.nan
    """The core's timestamp (``ElapsedTime-ms``)."""
    arrival_s: float = math.nan
    """``time.perf_counter()`` when the pipeline popped the frame."""
    stage_z_um: float = math.nan
    exposure_ms: float = math.nan
    plan_id: int = -1
    """The plane plan in effect when the frame was recorded (-1 unknown)."""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for k, v in asdict(self).items():
            d[k] = int(v) if k in ("index", "camera_frame", "plan_id") else _num(v)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FrameInfo:
        def f(key: str) -> float:
            v = d.get(key)
            return math.nan if v is None else float(v)

        return cls(
            index=int(d.get("index", -1)),
            camera_frame=int(d.get("camera_frame", -1)),
            camera_time_ms=f("camera_time_ms"),
            core_time_ms=f("core_time_ms"),
            arrival_s=f("arrival_s"),
            stage_z_um=f("stage_z_um"),
            exposure_ms=f("exposure_ms"),
            plan_id=int(d.get("plan_id", -1)),
        )


class LazyFrames:
    """A read-only array-like ``(T, ...)`` that reads frames only when indexed.

    ``get(ts)`` returns the frames ``ts`` (a sorted-or-not list of ints) stacked as
    ``(len(ts), *frame_shape)``. Supports ``a[t]``, ``a[t0:t1]``, ``a[[t, ...]]``,
    ``a[t, ...]`` with further indices on the frame axes, ``len(a)``, ``np.asarray(a)``.
    """

    def __init__(
        self,
        n: int,
        frame_shape: Sequence[int],
        dtype: Any,
        get: Callable[[list[int]], np.ndarray],
    ) -> None:
        self._n = int(n)
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.dtype = np.dtype(dtype)
        self._get = get

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._n, *self.frame_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.frame_shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        if key and key[0] is Ellipsis:
            key = (slice(None), *key)
        first, rest = (key[0], key[1:]) if key else (slice(None), ())
        if isinstance(first, int | np.integer):
            t = int(first)
            if t < 0:
                t += self._n
            if not 0 <= t < self._n:
                raise IndexError(f"frame {first} out of range for {self._n} frames")
            return self._get([t])[0][rest] if rest else self._get([t])[0]
        if isinstance(first, slice):
            ts = list(range(*first.indices(self._n)))
        else:
            arr = np.asarray(first)
            if arr.dtype == bool:
                ts = [int(i) for i in np.flatnonzero(arr)]
            else:
                ts = [int(i) + (self._n if int(i) < 0 else 0) for i in arr.reshape(-1)]
            if any(not 0 <= t < self._n for t in ts):
                raise IndexError(f"frame index out of range for {self._n} frames")
        out = self._get(ts) if ts else np.empty((0, *self.frame_shape), self.dtype)
        return out[(slice(None), *rest)] if rest else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self[:]
        return a.astype(dtype) if dtype is not None else a

    def __repr__(self) -> str:
        return f"<LazyFrames shape={self.shape} dtype={self.dtype}>"
