"""Recordings of pymmcore-plus multi-dimensional acquisitions (useq ``MDASequence``).

Layout for ``-o NAME.ome.zarr`` (or ``NAME.ome.tiff``)::

    NAME.ome.zarr / NAME.ome.tiff   raw frames, written by pymmcore-plus itself (its
                                    ome-writers sink: ``core.run_mda(seq, output=...)``)
    NAME.planes.zarr/               virtual planes (Zarr v3, written here)
        planes                      (P, T, C, Z, Y, X) float32, NaN = not computed
        journal.jsonl               header (sequence, plans, models), frames, planes, end
        surface_p<P>.tif            a position's plan surface (only for surface arrays)

``P`` positions, ``T`` time points, ``C`` channels of the sequence, ``Z`` virtual planes.
A frame is keyed by its event's index ``(p, t, c)``; the raw frame of ``(p, t, c)`` is
found in pymmcore-plus' files (Zarr: by the array's dimension names; TIFF: one file per
position, pages in acquisition order, which the journal records per frame as ``page``).
The journal is append-only and written before the Zarr attributes, so a killed or
cancelled acquisition leaves everything acquired readable (:func:`open_mda_recording`), and
:func:`complete_mda_recording` computes the planes the live engine skipped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, LiveDeepzError
from ..normalize import Normalization, fit_normalization
from ._common import RecordingError
from ._complete import CompletionReport, RefocusLike, plan_from_record
from ._journal import Journal, read_journal

__all__ = [
    "MDA_AXES",
    "MDAPaths",
    "MDAPlaneWriter",
    "MDARecording",
    "complete_mda_recording",
    "event_key",
    "is_mda_recording",
    "mda_paths",
    "mda_sizes",
    "open_mda_recording",
]

MDA_KIND = "mda"
MDA_AXES = ("p", "t", "c", "z", "y", "x")
"""Axes of the planes array: position, time point, channel, virtual plane, y, x."""
PLANES_SUFFIX = ".planes.zarr"
_RAW_SUFFIXES = {".ome.zarr": "zarr", ".zarr": "zarr", ".ome.tiff": "tiff", ".ome.tif": "tiff"}
Key = tuple[int, int, int]


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class MDAPaths:
    """Where an MDA recording's parts live."""

    raw: Path
    """What pymmcore-plus is given as ``output`` (a file or folder it creates)."""
    planes: Path
    """``NAME.planes.zarr``."""
    format: str
    """Raw format: ``"zarr"`` or ``"tiff"``."""

    @property
    def journal(self) -> Path:
        return self.planes / "journal.jsonl"

    def existing(self) -> list[Path]:
        out = [self.planes] if self.planes.exists() else []
        if self.raw.exists():
            out.append(self.raw)
        folder = self._tiff_folder()
        if folder is not None and folder.exists():
            out.append(folder)
        return out

    def _tiff_folder(self) -> Path | None:
        """pymmcore-plus writes one OME-TIFF per position into ``NAME/`` (several positions)."""
        if self.format != "tiff":
            return None
        return self.raw.parent / _stem(self.raw.name)[0]


def _stem(name: str) -> tuple[str, str]:
    low = name.lower()
    for suf in sorted(_RAW_SUFFIXES, key=len, reverse=True):
        if low.endswith(suf):
            return name[: -len(suf)], _RAW_SUFFIXES[suf]
    raise RecordingError(
        f"{name}: an MDA recording's output must end in .ome.zarr or .ome.tiff (pymmcore-plus "
        "writes the raw frames in that format; the virtual planes go to NAME.planes.zarr)"
    )


def mda_paths(output: str | os.PathLike[str]) -> MDAPaths:
    """The parts of the MDA recording written for ``output`` (``NAME.ome.zarr|.ome.tiff``)."""
    p = Path(output).expanduser()
    stem, fmt = _stem(p.name)
    return MDAPaths(raw=p, planes=p.parent / (stem + PLANES_SUFFIX), format=fmt)


def _find(path: str | os.PathLike[str]) -> MDAPaths | None:
    """The MDA recording ``path`` names (raw output, planes folder or journal), if any."""
    p = Path(path).expanduser()
    if p.name == "journal.jsonl":
        p = p.parent
    if p.name.lower().endswith(PLANES_SUFFIX):
        journal = p / "journal.jsonl"
        if not journal.is_file():
            return None
        header = _header(journal)
        if header is None:
            return None
        raw = p.parent / str(header.get("raw", {}).get("path", ""))
        return MDAPaths(raw=raw, planes=p, format=str(header.get("raw", {}).get("format")))
    try:
        paths = mda_paths(p)
    except RecordingError:
        return None
    if paths.journal.is_file() and _header(paths.journal) is not None:
        return paths
    return None


def _header(journal: Path) -> dict[str, Any] | None:
    try:
        with open(journal, "rb") as fh:
            first = json.loads(fh.readline() or b"{}")
    except (OSError, ValueError):
        return None
    if isinstance(first, dict) and first.get("type") == "header" and first.get("kind") == MDA_KIND:
        return first
    return None


def is_mda_recording(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is (part of) an MDA recording written by :class:`MDAPlaneWriter`."""
    return _find(path) is not None


# --------------------------------------------------------------------------- sequence


def mda_sizes(sequence: Any) -> tuple[int, int, int]:
    """``(P, T, C)`` of a ``useq.MDASequence``; refuses axes Deep-Z does not take.

    A z-stack (``z_plan``) is what Deep-Z replaces (one frame, many virtual planes) and a
    grid plan would need its own axis: both are refused with a clear message.
    """
    sizes = {k: int(v) for k, v in dict(sequence.sizes).items() if int(v) > 0}
    if sizes.get("z", 0) > 1:
        raise InputError(
            "the MDA sequence has a z-plan: Deep-Z refocuses each single frame into virtual "
            "planes, so acquire one plane per position/channel/time point (remove z_plan) and "
            "give the virtual planes with --planes"
        )
    if sizes.get("g", 0) > 1:
        raise InputError(
            "the MDA sequence has a grid plan: list the grid's tiles as stage positions "
            "instead (each position gets its own planes)"
        )
    other = sorted(k for k, v in sizes.items() if k not in {"p", "t", "c", "z", "g"} and v > 1)
    if other:
        raise InputError(f"the MDA sequence has axes {other} that live-deepz cannot place")
    return max(1, sizes.get("p", 1)), max(1, sizes.get("t", 1)), max(1, sizes.get("c", 1))


def event_key(index: Mapping[str, int]) -> Key:
    """``(p, t, c)`` of an ``MDAEvent.index``."""
    return int(index.get("p", 0)), int(index.get("t", 0)), int(index.get("c", 0))


def _sequence_json(sequence: Any) -> dict[str, Any]:
    dump = getattr(sequence, "model_dump", None)
    if callable(dump):
        return json.loads(json.dumps(dump(mode="json", exclude_unset=True), default=str))
    return {}


# --------------------------------------------------------------------------- writer


class MDAPlaneWriter:
    """Writes ``NAME.planes.zarr`` (planes ``(P, T, C, Z, Y, X)`` + journal) of an MDA.

    Thread-safe. Every method writes through to the OS before returning (chunks are written
    to a temporary file and renamed by zarr-python; journal lines with one ``write``).
    """

    def __init__(
        self,
        output: str | os.PathLike[str],
        *,
        sequence: Any,
        frame_shape: tuple[int, int],
        offsets_um: Sequence[float],
        raw_dtype: Any = "uint16",
        pixel_size_um: float | None = None,
        channel_names: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        _reopen: bool = False,
    ) -> None:
        import zarr

        self.paths = mda_paths(output)
        self._lock = threading.Lock()
        self.header: dict[str, Any]
        self._planes: Any
        self._root: Any
        if _reopen:
            st = _load_state(self.paths.journal)
            self.header = st.header
            self.sizes = tuple(int(v) for v in st.header["sizes"])
            self.frame_shape = tuple(int(v) for v in st.header["frame_shape"])
            self.offsets_um = np.asarray(st.header["offsets_um"], dtype=np.float64)
            self._root = zarr.open_group(str(self.paths.planes), mode="r+", zarr_format=3)
            self._planes = self._root["planes"]
            self._journal = Journal(self.paths.journal, create=False)
            self.state = st
            return
        # the raw files are pymmcore-plus' (created before the sequence starts): only the
        # planes are ours to check
        planes_path = self.paths.planes
        if planes_path.exists():
            if not overwrite:
                raise RecordingError(
                    f"{planes_path} already exists; pass overwrite=True (--overwrite)"
                )
            shutil.rmtree(planes_path) if planes_path.is_dir() else planes_path.unlink()
        n_p, n_t, n_c = mda_sizes(sequence)
        self.sizes = (n_p, n_t, n_c)
        h, w = (int(v) for v in frame_shape)
        self.frame_shape = (h, w)
        self.offsets_um = np.asarray(offsets_um, dtype=np.float64).reshape(-1)
        k = int(self.offsets_um.size)
        names = (
            list(channel_names) if channel_names else [str(ch.config) for ch in sequence.channels]
        )
        positions = [
            {kk: getattr(pos, kk, None) for kk in ("x", "y", "z", "name")}
            for pos in getattr(sequence, "stage_positions", ())
        ]
        self.header = {
            "type": "header",
            "kind": MDA_KIND,
            "axes": "".join(MDA_AXES),
            "sizes": [n_p, n_t, n_c],
            "frame_shape": [h, w],
            "n_planes": k,
            "units": "normalized",
            "offsets_um": [float(v) for v in self.offsets_um],
            "channels": names or None,
            "positions": positions,
            "raw_dtype": np.dtype(raw_dtype).name,
            "pixel_size_um": pixel_size_um,
            "raw": {"path": self.paths.raw.name, "format": self.paths.format},
            "mda_sequence": _sequence_json(sequence),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "metadata": dict(metadata or {}),
        }
        try:
            self._root = zarr.open_group(str(self.paths.planes), mode="w-", zarr_format=3)
            self._planes = self._root.create_array(
                "planes",
                shape=(n_p, n_t, n_c, k, h, w),
                chunks=(1, 1, 1, k, h, w),
                dtype="float32",
                fill_value=float("nan"),
                dimension_names=list(MDA_AXES),
                compressors=None,
            )
            self._root.attrs.update({"live_deepz": {**self.header, "finished": False}})
            self._journal = Journal(self.paths.journal, create=True)
            self._journal.write(self.header)
        except OSError as exc:
            raise RecordingError(f"cannot create {self.paths.planes}: {exc}") from exc
        self.state = _State(header=self.header)

    @classmethod
    def reopen(cls, path: str | os.PathLike[str]) -> MDAPlaneWriter:
        """Reopen an MDA recording (finished, cancelled or killed) for appending."""
        found = _find(path)
        if found is None:
            raise RecordingError(f"{path} is not an MDA recording (no NAME.planes.zarr journal)")
        self = cls.__new__(cls)
        cls.__init__(
            self, found.raw, sequence=None, frame_shape=(0, 0), offsets_um=(), _reopen=True
        )
        self.paths = found
        return self

    # ------------------------------------------------------------------ journal
    def _write(self, record: dict[str, Any]) -> None:
        try:
            self._journal.write(record)
        except OSError as exc:
            raise RecordingError(
                f"cannot write the journal of {self.paths.planes}: {exc}; everything written "
                "so far is readable"
            ) from exc

    def frame(self, key: Key, info: Mapping[str, Any]) -> None:
        """Journal that the raw frame ``key`` was acquired (``info``: event index, times,
        stage position, ``page``: its rank among the position's raw frames)."""
        rec = {"type": "frame", "key": list(key), **_jsonable(info)}
        with self._lock:
            self.state.frames[key] = rec
            self._write(rec)

    def missing(self, key: Key, reason: str) -> None:
        """Journal that the event ``key`` produced no frame (e.g. the camera failed)."""
        with self._lock:
            self.state.missing[key] = reason
            self._write({"type": "missing", "key": list(key), "reason": reason})

    def set_plan(
        self,
        position: int,
        description: Mapping[str, Any],
        offsets_um: Sequence[float],
        surface_um: np.ndarray | None = None,
    ) -> None:
        """Journal position ``position``'s plane plan (its ``describe()``; a surface array is
        saved beside it so that completion can rebuild the DPMs)."""
        desc = _jsonable(dict(description))
        rec: dict[str, Any] = {
            "type": "plan",
            "position": int(position),
            "plan_id": int(position),
            "plan": desc,
            "offsets_um": [float(v) for v in offsets_um],
        }
        surface = desc.get("surface") if isinstance(desc, dict) else None
        if surface_um is not None and isinstance(surface, dict) and surface.get("kind") == "array":
            import tifffile

            name = f"surface_p{int(position)}.tif"
            tifffile.imwrite(self.paths.planes / name, np.asarray(surface_um, np.float32))
            rec["surface_file"] = name
        with self._lock:
            self.state.plans[int(position)] = rec
            self._write(rec)

    def set_normalization(
        self, position: int, channel: int, background: float, scale: float
    ) -> None:
        rec = {
            "type": "normalization",
            "position": int(position),
            "channel": int(channel),
            "background": float(background),
            "scale": float(scale),
        }
        with self._lock:
            self.state.norms[(int(position), int(channel))] = rec
            self._write(rec)

    def event(self, message: str, **fields: Any) -> None:
        with self._lock:
            self._write({"type": "event", "message": message, **_jsonable(fields)})

    # ------------------------------------------------------------------ planes
    def write_planes(
        self,
        key: Key,
        planes: np.ndarray,
        *,
        source: str,
        correction_um: float | None = None,
    ) -> None:
        """Store the ``(Z, Y, X)`` planes of frame ``key`` (``source``: ``"live"`` or
        ``"completed"``); ``correction_um``: a drift plan's correction served to it."""
        p, t, c = key
        k, (h, w) = self.offsets_um.size, self.frame_shape
        arr = np.asarray(planes, dtype=np.float32)
        if arr.shape != (k, h, w):
            raise RecordingError(
                f"planes of shape {arr.shape} for frame {key}; expected {(k, h, w)}"
            )
        try:
            self._planes[p, t, c] = arr
        except OSError as exc:
            raise RecordingError(
                f"cannot write the planes of frame {key} to {self.paths.planes}: {exc}; the raw "
                f"frames are unaffected, run `live-deepz complete {self.paths.raw}` after "
                "freeing space"
            ) from exc
        rec: dict[str, Any] = {"type": "planes", "key": list(key), "source": source}
        if correction_um is not None and math.isfinite(correction_um):
            rec["correction_um"] = float(correction_um)
        with self._lock:
            self.state.planes[key] = rec
            self._write(rec)

    def read_raw(self, key: Key) -> np.ndarray:
        """The raw frame ``key`` from pymmcore-plus' files."""
        return _RawReader(self.paths, self.header, self.state).read(key)

    # ------------------------------------------------------------------ close
    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        """Journal the end and write the summary into the Zarr attributes."""
        st = self.state
        end = {
            **_jsonable(dict(summary or {})),
            "type": "end",
            "frames_acquired": len(st.frames),
            "frames_missing": len(st.missing),
            "planes_live": sum(1 for r in st.planes.values() if r.get("source") == "live"),
            "planes_completed": sum(1 for r in st.planes.values() if r.get("source") != "live"),
        }
        with self._lock:
            self._write(end)
            self._journal.close()
        with contextlib.suppress(OSError):
            attrs = {**self.header, "finished": True, "end": end, "plans": list(st.plans.values())}
            self._root.attrs.update({"live_deepz": _jsonable(attrs)})
        st.end = end


def _jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays and non-finite floats made JSON-safe."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    return str(obj)


# --------------------------------------------------------------------------- state


@dataclass
class _State:
    header: dict[str, Any]
    frames: dict[Key, dict[str, Any]] = field(default_factory=dict)
    missing: dict[Key, str] = field(default_factory=dict)
    planes: dict[Key, dict[str, Any]] = field(default_factory=dict)
    plans: dict[int, dict[str, Any]] = field(default_factory=dict)
    norms: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    skipped_lines: int = 0


def _load_state(journal: Path) -> _State:
    try:
        records, bad = read_journal(journal)
    except OSError as exc:
        raise RecordingError(f"cannot read {journal}: {exc}") from exc
    if not records or records[0].get("type") != "header" or records[0].get("kind") != MDA_KIND:
        raise RecordingError(f"{journal} is not the journal of an MDA recording")
    st = _State(header=records[0], skipped_lines=bad)
    for r in records[1:]:
        kind = r.get("type")
        key = tuple(int(v) for v in r.get("key", ()))
        if kind == "frame" and len(key) == 3:
            st.frames[key] = r  # type: ignore[index]
        elif kind == "missing" and len(key) == 3:
            st.missing[key] = str(r.get("reason", ""))  # type: ignore[index]
        elif kind == "planes" and len(key) == 3:
            st.planes[key] = r  # type: ignore[index]
        elif kind == "plan":
            st.plans[int(r.get("position", 0))] = r
        elif kind == "normalization":
            st.norms[(int(r.get("position", 0)), int(r.get("channel", 0)))] = r
        elif kind == "event":
            st.events.append(r)
        elif kind == "end":
            st.end = r
    return st


# --------------------------------------------------------------------------- raw frames


class _RawReader:
    """Reads raw frames ``(p, t, c)`` from the files pymmcore-plus (ome-writers) wrote."""

    def __init__(self, paths: MDAPaths, header: Mapping[str, Any], state: _State) -> None:
        self.paths = paths
        self.n_p, self.n_t, self.n_c = (int(v) for v in header["sizes"])
        self.state = state
        self._arrays: dict[int, Any] = {}
        self._tiffs: dict[int, Any] = {}

    def _zarr_array(self, p: int) -> Any:
        if p not in self._arrays:
            import zarr

            root: Any = zarr.open_group(str(self.paths.raw), mode="r")
            node = root["0"] if self.n_p == 1 else root[str(p)]["0"]
            self._arrays[p] = node
        return self._arrays[p]

    def _tiff_file(self, p: int) -> Path:
        if self.paths.raw.is_file():
            return self.paths.raw
        stem, _ = _stem(self.paths.raw.name)
        folder = self.paths.raw.parent / stem
        hits = sorted(folder.glob(f"{stem}_p{p:03d}.ome.tif*"))
        if not hits:
            raise RecordingError(
                f"the raw frames of position {p} are missing (no {folder}/{stem}_p{p:03d}.ome.tiff)"
            )
        return hits[0]

    def read(self, key: Key) -> np.ndarray:
        p, t, c = key
        if self.paths.format == "zarr":
            arr = self._zarr_array(p)
            names = tuple(arr.metadata.dimension_names or ())
            idx = tuple(
                {"t": t, "c": c, "p": p}.get(n, 0) if n not in ("y", "x") else slice(None)
                for n in names
            )
            return np.asarray(arr[idx])
        import tifffile

        rec = self.state.frames.get(key)
        # without a journal line: acquisition order t, c (the sequence's usual order)
        page = int(rec["page"]) if rec is not None and "page" in rec else t * self.n_c + c
        if p not in self._tiffs:
            self._tiffs[p] = tifffile.TiffFile(self._tiff_file(p))
        tf = self._tiffs[p]
        if page >= len(tf.pages):
            raise RecordingError(f"raw frame {key} is not in {tf.filename} ({len(tf.pages)} pages)")
        return np.asarray(tf.pages[page].asarray())

    def close(self) -> None:
        for tf in self._tiffs.values():
            tf.close()
        self._tiffs.clear()


# --------------------------------------------------------------------------- reader


class _RawFrames:
    """Lazy ``(P, T, C, Y, X)`` view of the raw frames (frames never acquired read as 0)."""

    def __init__(
        self, reader: _RawReader, acquired: np.ndarray, shape: tuple[int, int], dtype: Any
    ) -> None:
        self._reader = reader
        self._acquired = acquired
        self.shape = (*acquired.shape, *shape)
        self.dtype = np.dtype(dtype)
        self.ndim = 5

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        lead = list(key[:3]) + [slice(None)] * (3 - min(3, len(key)))
        rest = key[3:]
        ranges = []
        for ax, k in enumerate(lead):
            n = self.shape[ax]
            if isinstance(k, int | np.integer):
                i = int(k) + (n if int(k) < 0 else 0)
                if not 0 <= i < n:
                    raise IndexError(f"index {k} out of range for axis {'ptc'[ax]} of size {n}")
                ranges.append(([i], True))
            elif isinstance(k, slice):
                ranges.append((list(range(*k.indices(n))), False))
            else:
                ranges.append(([int(v) for v in np.asarray(k).reshape(-1)], False))
        out = np.zeros((*(len(r) for r, _ in ranges), *self.shape[3:]), self.dtype)
        for a, p in enumerate(ranges[0][0]):
            for b, t in enumerate(ranges[1][0]):
                for d, c in enumerate(ranges[2][0]):
                    if self._acquired[p, t, c]:
                        out[a, b, d] = self._reader.read((p, t, c))
        squeeze = tuple(i for i, (_, single) in enumerate(ranges) if single)
        out = out.reshape([s for i, s in enumerate(out.shape) if i not in squeeze])
        return out[(Ellipsis, *rest)] if rest else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self[:]
        return a.astype(dtype) if dtype is not None else a


@dataclass
class MDARecording:
    """An MDA recording opened for reading (:func:`open_mda_recording`)."""

    path: Path
    """``NAME.planes.zarr``."""
    raw_path: Path
    format: str
    """Raw format (``"zarr"`` or ``"tiff"``, written by pymmcore-plus)."""
    raw: Any
    """``(P, T, C, Y, X)`` lazy raw frames (0 where not acquired)."""
    planes: Any
    """``(P, T, C, Z, Y, X)`` float32 zarr array; NaN where not computed."""
    offsets_um: np.ndarray
    acquired: np.ndarray
    """``(P, T, C)`` bool: the raw frame exists."""
    complete: np.ndarray
    """``(P, T, C)`` bool: its virtual planes are computed."""
    missing: dict[Key, str]
    """Events that produced no frame, with the reason (camera error, ...)."""
    frames: dict[Key, dict[str, Any]]
    """Per acquired frame: event index, times (ms), stage position, raw page, ..."""
    metadata: dict[str, Any]
    """Header (sequence, positions, channels, models, plans, normalisations, end)."""
    finished: bool
    kind: str = MDA_KIND
    axes_planes: str = "ptczyx"
    axes_raw: str = "ptcyx"
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def sizes(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.metadata["sizes"])  # type: ignore[return-value]

    @property
    def channels(self) -> list[str] | None:
        return self.metadata.get("channels")

    @property
    def sequence(self) -> Any:
        """The ``useq.MDASequence`` that was run."""
        import useq

        return useq.MDASequence.model_validate(self.metadata.get("mda_sequence") or {})

    @property
    def n_frames(self) -> int:
        return int(self.acquired.sum())

    def close(self) -> None:
        for fn in self._closers:
            with contextlib.suppress(Exception):
                fn()
        self._closers.clear()

    def __enter__(self) -> MDARecording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_mda_recording(path: str | os.PathLike[str]) -> MDARecording:
    """Open an MDA recording (raw output, ``NAME.planes.zarr`` or its journal) for reading,
    also one whose acquisition was cancelled, failed or killed."""
    import zarr

    found = _find(path)
    if found is None:
        raise RecordingError(f"{path} is not an MDA recording (no NAME.planes.zarr journal)")
    st = _load_state(found.journal)
    header = st.header
    n_p, n_t, n_c = (int(v) for v in header["sizes"])
    acquired = np.zeros((n_p, n_t, n_c), bool)
    for key in st.frames:
        if all(0 <= v < n for v, n in zip(key, (n_p, n_t, n_c))):
            acquired[key] = True
    complete = np.zeros_like(acquired)
    for key in st.planes:
        if all(0 <= v < n for v, n in zip(key, (n_p, n_t, n_c))):
            complete[key] = True
    try:
        planes = zarr.open_array(str(found.planes / "planes"), mode="r")
    except Exception as exc:
        raise RecordingError(f"cannot open the planes of {found.planes}: {exc}") from exc
    reader = _RawReader(found, header, st)
    h, w = (int(v) for v in header["frame_shape"])
    meta = dict(header)
    meta["plans"] = list(st.plans.values())
    meta["normalizations"] = list(st.norms.values())
    meta["events"] = st.events
    meta["end"] = st.end
    meta["journal_lines_skipped"] = st.skipped_lines
    return MDARecording(
        path=found.planes,
        raw_path=found.raw,
        format=found.format,
        raw=_RawFrames(reader, acquired, (h, w), header.get("raw_dtype") or "uint16"),
        planes=planes,
        offsets_um=np.asarray(header["offsets_um"], dtype=np.float64),
        acquired=acquired,
        complete=complete & acquired,
        missing=dict(st.missing),
        frames=dict(st.frames),
        metadata=meta,
        finished=st.end is not None,
        _closers=[reader.close],
    )


# --------------------------------------------------------------------------- completion


def _position_plan(
    st: _State, position: int, shape: tuple[int, int], px: float | None, folder: Path
) -> Any:
    rec = st.plans.get(position) or {
        "plan_id": position,
        "plan": {"type": "static", "offsets_um": st.header["offsets_um"], "surface": None},
    }
    pairs = sorted(
        (k[1], float(r["correction_um"]))
        for k, r in st.planes.items()
        if k[0] == position and "correction_um" in r
    )
    timeline = {"frame_index": [t for t, _ in pairs], "correction_um": [v for _, v in pairs]}
    return plan_from_record(rec, shape, px, folder, timeline)


def complete_mda_recording(
    path: str | os.PathLike[str],
    refocus: RefocusLike | Sequence[RefocusLike],
    *,
    progress: bool = False,
    plans: Mapping[int, Any] | None = None,
    summary: Mapping[str, Any] | None = None,
    keys: Sequence[Key] | None = None,
) -> CompletionReport:
    """Compute the virtual planes of every acquired frame that has none, from its raw frame
    (pymmcore-plus' files), its position/channel normalisation and its position's plan.

    ``refocus``: one refocuser (``refocus(image, dpms_um, out=...)``, a
    ``live_deepz.engine.Refocuser``: its card's range and DPM scale apply) per channel, or
    one for all. ``plans``:
    position -> plan to use instead of rebuilding it from the journal (the live processor
    passes its own). ``keys``: only these frames. Closes the recording (journal ``end``)
    when done, also on an error.
    """
    t0 = time.perf_counter()
    writer = MDAPlaneWriter.reopen(path)
    st = writer.state
    header = st.header
    _, n_t, n_c = writer.sizes
    shape = writer.frame_shape
    k = writer.offsets_um.size
    refocusers = list(refocus) if isinstance(refocus, Sequence) else [refocus]
    if len(refocusers) == 1 and n_c > 1:
        refocusers = refocusers * n_c
    reader = _RawReader(writer.paths, header, st)
    try:
        if len(refocusers) != n_c:
            raise RecordingError(f"{len(refocusers)} refocusers for {n_c} channels")
        acquired = [key for key in sorted(st.frames) if key not in st.missing]
        want = set(keys) if keys is not None else None
        todo = [key for key in acquired if key not in st.planes and (want is None or key in want)]
        report = CompletionReport(writer.paths.planes, len(acquired), len(acquired) - len(todo), 0)
        built: dict[int, Any] = dict(plans or {})
        x = np.empty(shape, np.float32)
        out = np.empty((k, *shape), np.float32)
        bar = None
        if progress and todo:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="completing virtual planes", unit="frame")
        for key in todo:
            p, t, c = key
            raw = reader.read(key)
            nrec = st.norms.get((p, c))
            if nrec is None:  # never processed live: fit on this position/channel's first frame
                first = reader.read(next(kk for kk in acquired if kk[0] == p and kk[2] == c))
                try:
                    nz = fit_normalization(first)
                except InputError as exc:
                    raise RecordingError(
                        f"cannot fit the intensity normalisation of position {p}, channel "
                        f"{c}: {exc}"
                    ) from None
                writer.set_normalization(p, c, nz.background, nz.scale)
                nrec = st.norms[(p, c)]
            Normalization(nrec["background"], nrec["scale"]).apply(raw, out=x)
            plan = built.get(p)
            if plan is None:
                plan = built[p] = _position_plan(
                    st, p, (shape[0], shape[1]), header.get("pixel_size_um"), writer.paths.planes
                )
            dpms = np.asarray(plan.dpms_for_frame(t, 0.0, shape), dtype=np.float32)
            if dpms.shape[0] != k:
                report.skipped.append(p * n_t * n_c + t * n_c + c)
                continue
            refocusers[c].refocus(x, dpms, out=out, what=f"the plan of position {p}")
            corr = getattr(plan, "correction_um", None)
            writer.write_planes(
                key, out, source="completed", correction_um=corr(t) if callable(corr) else None
            )
            report.completed += 1
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        report.seconds = time.perf_counter() - t0
        writer.close({**dict(summary or {}), "completion_s": round(report.seconds, 3)})
        return report
    except BaseException as exc:
        with contextlib.suppress(LiveDeepzError, OSError):
            writer.event(f"completion stopped: {type(exc).__name__}: {exc}")
            writer.close(summary)
        raise
    finally:
        reader.close()
