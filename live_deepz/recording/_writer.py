"""The recording writer: raw frames, virtual planes and the journal, in OME-TIFF or OME-Zarr.

:class:`RecordingWriter` is format-neutral and thread-safe for one raw-writing thread plus
one plane-writing thread. Every call writes straight through to the operating system (no
process-side buffering), so a killed process loses nothing that a call had finished
writing. Every ``OSError`` becomes a :class:`~._common.RecordingError` that says how many
frames are safe and what to do; after such an error the writer refuses further frames but
:meth:`RecordingWriter.close` still finishes the metadata where it can.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import shutil
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ._common import (
    FORMAT_NAME,
    FORMAT_VERSION,
    FrameInfo,
    RecordingError,
    RecordingPaths,
    recording_paths,
    write_error,
)
from ._journal import Journal, read_journal

__all__ = ["RecordingWriter", "dpm_timeline", "load_journal"]

PLANES_UNITS = (
    "normalised intensity, y = (raw - background) / scale with the normalisation recorded "
    "for the frame (float32, exact network output)"
)
PLANES_UNITS_COUNTS = (
    "camera counts, y * scale + background: the network output with the frame's recorded "
    "normalisation undone, in the raw frames' units (float32)"
)
UNITS = ("normalized", "counts")
"""Plane intensity units: ``normalized`` (the network's output) or ``counts`` (the input's
camera units: the normalisation undone)."""


def _software() -> dict[str, str]:
    import importlib.metadata as md

    out = {"live_deepz": __version__, "numpy": np.__version__}
    for name in ("tifffile", "zarr", "torch"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[name] = md.version(name)
    return out


def _json_safe(obj: Any) -> Any:
    """Numbers, strings, lists and dicts only; NaN/inf -> None; numpy -> Python."""
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def _uniform_step(offsets: Sequence[float] | np.ndarray) -> float | None:
    o = np.asarray(offsets, dtype=np.float64)
    if o.size < 2:
        return None
    d = np.diff(o)
    return float(d[0]) if d[0] > 0 and np.allclose(d, d[0], rtol=1e-6, atol=1e-9) else None


def dpm_timeline(events: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]] | None:
    """The DPM timeline of a recording made with a drift-compensation plan: per processed
    frame (pipeline ``frame_index``) its camera time and the correction served (µm; plane k
    of the frame was refocused to correction + offset k), joined from the journal's ``drift``
    events in order. None when the recording has none."""
    out: dict[str, list[Any]] = {"frame_index": [], "t_ms": [], "correction_um": []}
    for ev in events:
        if ev.get("message") != "drift":
            continue
        n = len(ev.get("frame_index") or [])
        for key in out:
            vals = list(ev.get(key) or [])
            out[key] += (vals + [None] * n)[:n]
    return out if out["frame_index"] else None


class _State:
    """The per-frame tables (shared by the writer and the reader of the journal).

    One entry per *slot*: a camera frame of one channel at one time point, slot
    ``t * n_channels + c`` (with one channel: slot = time point ``t``). ``acquired`` is False
    for a slot whose camera frame never arrived (a dropped frame of an interleaved
    multi-channel stream: its raw frame reads as 0 and it cannot be completed).
    """

    def __init__(self, n_channels: int = 1) -> None:
        self.n_channels = max(1, int(n_channels))
        self.frames: list[FrameInfo] = []
        self.complete: list[bool] = []
        self.planes_plan: list[int] = []
        self.acquired: list[bool] = []
        self.plans: dict[int, dict[str, Any]] = {}
        self.normalizations: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.end: dict[str, Any] | None = None

    def grow(self, n_slots: int) -> None:
        """Make room for ``n_slots`` slots (new ones: unknown metadata, no planes; not
        acquired unless there is one channel, where every slot on disk is a frame)."""
        while len(self.frames) < n_slots:
            self.frames.append(FrameInfo())
            self.complete.append(False)
            self.planes_plan.append(-1)
            self.acquired.append(self.n_channels == 1)

    def cut(self, n_slots: int) -> None:
        del self.frames[n_slots:], self.complete[n_slots:], self.planes_plan[n_slots:]
        del self.acquired[n_slots:]

    def slots(self, rec: Mapping[str, Any]) -> range:
        """The slots a journal record (``t`` and optional ``c``) is about: one channel's,
        or all channels of time point ``t``."""
        t, c, n = int(rec["t"]), rec.get("c"), self.n_channels
        if c is None:
            return range(t * n, (t + 1) * n)
        return range(t * n + int(c), t * n + int(c) + 1)

    def columns(self) -> dict[str, list[Any]]:
        f = self.frames
        extra = {"acquired": [bool(a) for a in self.acquired]} if self.n_channels > 1 else {}
        return {
            "index": [x.index for x in f],
            "camera_frame": [x.camera_frame for x in f],
            "camera_time_ms": [_json_safe(x.camera_time_ms) for x in f],
            "core_time_ms": [_json_safe(x.core_time_ms) for x in f],
            "stage_z_um": [_json_safe(x.stage_z_um) for x in f],
            "exposure_ms": [_json_safe(x.exposure_ms) for x in f],
            "plan_id": [
                p if p >= 0 else x.plan_id for x, p in zip(f, self.planes_plan, strict=False)
            ],
            "complete": [bool(c) for c in self.complete],
            **extra,
        }


def load_journal(path: Path) -> tuple[dict[str, Any], _State, int]:
    """Header, tables and number of broken lines of a journal."""
    records, bad = read_journal(path)
    if not records or records[0].get("type") != "header":
        raise RecordingError(f"{path} is not a live-deepz journal (no header line)")
    header = records[0]
    if header.get("format") != FORMAT_NAME:
        raise RecordingError(f"{path} is not a live-deepz recording journal")
    if int(header.get("format_version", 0)) > FORMAT_VERSION:
        raise RecordingError(
            f"{path} was written by a newer live-deepz (format {header.get('format_version')});"
            " upgrade live-deepz to read it"
        )
    st = _State(len(header.get("channels") or ()) or 1)
    for rec in records[1:]:
        kind = rec.get("type")
        if kind == "frame":
            slots = st.slots(rec)
            st.grow(slots.stop)
            for s in slots:
                st.frames[s] = FrameInfo.from_json(rec)
                st.acquired[s] = not rec.get("missing", False)
        elif kind == "planes":
            if int(rec["t"]) < 0:
                continue
            slots = st.slots(rec)
            st.grow(slots.stop)  # its frame line was lost: the data decides later
            for s in slots:
                st.complete[s] = True
                st.planes_plan[s] = int(rec.get("plan_id", -1))
        elif kind == "plan":
            st.plans[int(rec["plan_id"])] = rec
        elif kind == "normalization":
            st.normalizations.append(rec)
        elif kind == "event":
            st.events.append(rec)
        elif kind == "end":
            st.end = rec
    return header, st, bad


class RecordingWriter:
    """Write a recording: every raw frame, the K virtual planes of each frame, a journal.

    Parameters
    ----------
    path
        ``NAME.ome.tif`` (TIFF: ``NAME.ome.tif`` raw, ``NAME.planes.ome.tif`` planes,
        ``NAME.journal.jsonl``) or ``NAME.ome.zarr`` (one folder). For ``kind="refocus"``
        (no raw stream) the planes go to ``path`` itself.
    frame_shape
        ``(Y, X)`` of a camera frame.
    offsets_um
        ``(K,)`` nominal axial offset of each virtual plane (µm, > 0 deeper).
    format
        ``"tiff"`` or ``"zarr"`` (default: from the suffix of ``path``).
    raw_dtype
        The camera's pixel type (raw frames are stored as they came, losslessly).
    channels
        Channel names: adds a C axis (raw ``T, C, Y, X``; planes ``T, C, Z, Y, X``). A time
        point is written whole, or one channel at a time (``append_frame(..., channel=c)``,
        an interleaved camera stream); the tables then hold one *slot* per channel and time
        point (``t * C + c``), each camera frame its own metadata.
    pixel_size_um
        Camera pixel size at the sample.
    metadata
        JSON-able extras stored in the header and the files' metadata (model, optics,
        camera, plan, ...).
    overwrite
        Replace an existing recording of that name (otherwise: :class:`RecordingError`).
    sync_interval_s
        ``fdatasync`` the files at most this often (protects against power loss; a killed
        process loses nothing either way).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        frame_shape: tuple[int, int],
        offsets_um: Sequence[float] | np.ndarray,
        format: str | None = None,
        kind: str = "recording",
        raw_dtype: Any = "uint16",
        channels: Sequence[str] | None = None,
        pixel_size_um: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        sync_interval_s: float = 5.0,
        units: str = "normalized",
        _reopen: tuple[dict[str, Any], _State] | None = None,
    ) -> None:
        if kind not in ("recording", "refocus"):
            raise ValueError(f"kind must be 'recording' or 'refocus', got {kind!r}")
        self.kind = kind
        if units not in UNITS:
            raise RecordingError(f"plane units must be one of {', '.join(UNITS)}, not {units!r}")
        self.units = units
        self.paths: RecordingPaths = recording_paths(path, format, with_raw=kind == "recording")
        self.format = self.paths.format
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self.offsets_um = np.asarray(offsets_um, dtype=np.float64).reshape(-1)
        self.n_planes = int(self.offsets_um.size)
        if self.n_planes < 1:
            raise RecordingError("a recording needs at least one virtual plane offset")
        self.channels = None if channels is None else [str(c) for c in channels]
        self.n_channels = 1 if self.channels is None else len(self.channels)
        self.raw_dtype = np.dtype(raw_dtype) if kind == "recording" else None
        self.pixel_size_um = None if pixel_size_um is None else float(pixel_size_um)
        self.sync_interval_s = float(sync_interval_s)
        h, w = self.frame_shape
        c = () if self.channels is None else (self.n_channels,)
        self.raw_frame_shape: tuple[int, ...] = (*c, h, w)
        self.planes_frame_shape: tuple[int, ...] = (*c, self.n_planes, h, w)
        self.raw_axes = "t" + ("c" if c else "") + "yx"
        self.planes_axes = "t" + ("c" if c else "") + "zyx"
        self._raw_lock = threading.Lock()
        self._planes_lock = threading.Lock()
        self._meta_lock = threading.Lock()
        self._error: RecordingError | None = None
        self._closed = False
        self._raw_tiff: Any = None
        self._planes_tiff: Any = None
        self._raw_zarr: Any = None
        self._planes_zarr: Any = None
        self._root: Any = None
        if _reopen is None:
            self.state = _State(self.n_channels)
            self.header = self._make_header(metadata or {})
            self._create(overwrite)
        else:
            self.header, self.state = _reopen
            self.units = str(self.header.get("planes", {}).get("unit_name", "normalized"))
            self._open_existing()

    # ------------------------------------------------------------------ set-up
    def _make_header(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        files = (
            {
                "raw": self.paths.raw.name if self.paths.raw else None,
                "planes": self.paths.planes.name,
            }
            if self.format == "tiff"
            else {"raw": "raw/0" if self.kind == "recording" else None, "planes": "planes/0"}
        )
        return _json_safe(
            {
                "type": "header",
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "kind": self.kind,
                "storage": self.format,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "software": _software(),
                "files": files,
                "frame_shape": list(self.frame_shape),
                "raw_dtype": None if self.raw_dtype is None else self.raw_dtype.name,
                "raw_axes": self.raw_axes if self.kind == "recording" else None,
                "channels": self.channels,
                "pixel_size_um": self.pixel_size_um,
                "planes": {
                    "n_planes": self.n_planes,
                    "offsets_um": [float(v) for v in self.offsets_um],
                    "dtype": "float32",
                    "axes": self.planes_axes,
                    "units": PLANES_UNITS if self.units == "normalized" else PLANES_UNITS_COUNTS,
                    "unit_name": self.units,
                    "incomplete": "frames whose planes are not computed yet read as NaN "
                    "through live_deepz.recording.open_recording (stored: 0 in TIFF, NaN in "
                    "Zarr); see the complete flags",
                },
                "metadata": dict(metadata),
            }
        )

    def _fail(self, exc: OSError, what: str) -> RecordingError:
        err = write_error(exc, what, len(self.state.frames), self.paths.base)
        if self._error is None:
            self._error = err
        return err

    def _create(self, overwrite: bool) -> None:
        p = self.paths
        existing = p.existing()
        if existing and not overwrite:
            raise RecordingError(
                f"{existing[0]} already exists; choose another output name or pass "
                "--overwrite to replace it"
            )
        folder = p.folder if self.format == "tiff" else p.base.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise RecordingError(
                f"cannot write {p.base}: {folder} (or a folder above it) is a file, not a folder"
            ) from None
        except OSError as exc:
            raise self._fail(exc, str(p.base)) from None
        try:
            if self.format == "zarr":
                from ._writer_zarr import ZarrImage, frame_scale, open_root

                if overwrite and p.base.exists():
                    shutil.rmtree(p.base)
                self._root = open_root(p.base, create=True, overwrite=overwrite)
                if self.kind == "recording":
                    self._raw_zarr = ZarrImage(
                        self._root,
                        "raw",
                        frame_shape=self.raw_frame_shape,
                        dtype=self.raw_dtype,
                        fill_value=0,
                        axes=self.raw_axes,
                        scale=frame_scale(self.pixel_size_um, None, self.raw_axes),
                        per_channel=self.channels is not None,
                    )
                self._planes_zarr = ZarrImage(
                    self._root,
                    "planes",
                    frame_shape=self.planes_frame_shape,
                    dtype=np.float32,
                    fill_value=float("nan"),
                    axes=self.planes_axes,
                    scale=frame_scale(
                        self.pixel_size_um, _uniform_step(self.offsets_um), self.planes_axes
                    ),
                    per_channel=self.channels is not None and self.kind == "recording",
                )
            else:
                from ._writer_tiff import TiffPageFile

                if self.kind == "recording" and p.raw is not None:
                    self._raw_tiff = TiffPageFile(
                        p.raw,
                        self.frame_shape,
                        self.raw_dtype,
                        overwrite=overwrite,
                        pixel_size_um=self.pixel_size_um,
                        sync_interval_s=self.sync_interval_s,
                    )
                self._planes_tiff = TiffPageFile(
                    p.planes,
                    self.frame_shape,
                    np.float32,
                    overwrite=overwrite,
                    pixel_size_um=self.pixel_size_um,
                    sync_interval_s=self.sync_interval_s,
                )
            self.journal = Journal(p.journal, create=True)
            self.journal.write(self.header)
        except FileExistsError as exc:
            self._close_files()
            raise RecordingError(
                f"{exc.filename} already exists; choose another output name or pass --overwrite"
            ) from None
        except OSError as exc:
            self._close_files()
            raise self._fail(exc, str(p.base)) from None

    @classmethod
    def reopen(cls, path: str | os.PathLike[str]) -> RecordingWriter:
        """Open an existing (finished or interrupted) recording to add or complete planes.

        Torn tails left by a killed writer are dropped (the journal and the data files are
        reconciled: the data on disk decides how many frames exist).
        """
        journal, fmt = find_journal(path)
        header, st, _bad = load_journal(journal)
        base: Path = journal.parent if fmt == "zarr" else Path(path)
        if fmt == "tiff" and header.get("kind") == "recording":
            base = journal.parent / header["files"]["raw"]
        elif fmt == "tiff":
            base = journal.parent / header["files"]["planes"]
        planes = header.get("planes", {})
        return cls(
            base,
            frame_shape=tuple(header["frame_shape"]),  # type: ignore[arg-type]
            offsets_um=planes.get("offsets_um", [0.0]),
            format=fmt,
            kind=header.get("kind", "recording"),
            raw_dtype=header.get("raw_dtype") or "uint16",
            channels=header.get("channels"),
            pixel_size_um=header.get("pixel_size_um"),
            _reopen=(header, st),
        )

    def _open_existing(self) -> None:
        p = self.paths
        st = self.state
        try:
            if self.format == "zarr":
                from ._writer_zarr import ZarrImage, open_root

                self._root = open_root(p.base, create=False)
                if self.kind == "recording":
                    self._raw_zarr = ZarrImage(self._root, "raw", create=False)
                    n_tp = self._raw_zarr.committed_length()
                    self._raw_zarr.set_length(n_tp)
                    n = n_tp * self.n_channels
                else:
                    n = len(st.frames)
                self._planes_zarr = ZarrImage(self._root, "planes", create=False)
                for leftover in p.base.rglob("*.partial"):  # temp files of a killed writer
                    leftover.unlink(missing_ok=True)
                n_slots = self._planes_zarr.length * self.n_channels
            else:
                from ._writer_tiff import TiffPageFile

                if self.kind == "recording" and p.raw is not None:
                    self._raw_tiff = TiffPageFile(
                        p.raw,
                        self.frame_shape,
                        self.raw_dtype,
                        mode="a",
                        pixel_size_um=self.pixel_size_um,
                        sync_interval_s=self.sync_interval_s,
                    )
                    n = self._raw_tiff.n_pages  # one page per slot
                else:
                    n = len(st.frames)
                if p.planes.exists():
                    self._planes_tiff = TiffPageFile(
                        p.planes,
                        self.frame_shape,
                        np.float32,
                        mode="a",
                        pixel_size_um=self.pixel_size_um,
                        sync_interval_s=self.sync_interval_s,
                    )
                else:
                    self._planes_tiff = TiffPageFile(
                        p.planes,
                        self.frame_shape,
                        np.float32,
                        pixel_size_um=self.pixel_size_um,
                        sync_interval_s=self.sync_interval_s,
                    )
                n_slots = self._planes_tiff.n_pages // self.n_planes
                self._planes_tiff.truncate(min(n_slots, n) * self.n_planes)
                n_slots = min(n_slots, n)
            self.journal = Journal(p.journal, create=False)
        except OSError as exc:
            self._close_files()
            raise self._fail(exc, str(p.base)) from None
        except ValueError as exc:
            self._close_files()
            raise RecordingError(f"{p.base}: {exc}") from None
        # reconcile the tables (slots) with the data on disk
        recovered = 0
        n_c = self.n_channels
        while len(st.frames) < n:
            slot = len(st.frames)
            t, c = divmod(slot, n_c)
            # an interleaved Zarr recording has a chunk per channel: none, no frame
            on_disk = self._raw_zarr is None or n_c == 1 or self._raw_zarr.has_chunk(t, c)
            rec: dict[str, Any] = {"type": "frame", "t": t}
            if n_c > 1:
                rec["c"] = c
            rec["recovered" if on_disk else "missing"] = True
            st.grow(slot + 1)
            st.acquired[slot] = on_disk
            recovered += on_disk
            try:
                self.journal.write(rec)
            except OSError as exc:
                raise self._fail(exc, str(p.journal)) from None
        st.cut(n)
        for slot in range(min(n, len(st.complete))):
            if slot >= n_slots:
                st.complete[slot] = False
        if recovered:
            self.event(f"{recovered} frame(s) on disk had no journal line (killed writer)")
        try:
            self._pad_time_point()
        except OSError as exc:
            raise self._fail(exc, str(p.base)) from None

    # ------------------------------------------------------------------ properties
    @property
    def n_frames(self) -> int:
        """Time points begun (with several channels: the last one may still be partial)."""
        return -(-len(self.state.frames) // self.n_channels)

    @property
    def n_slots(self) -> int:
        """Camera frames' places so far: ``t * n_channels + c`` (= :attr:`n_frames` with one
        channel); see :class:`_State`."""
        return len(self.state.frames)

    @property
    def error(self) -> RecordingError | None:
        """The first write error (the writer refuses frames after it)."""
        return self._error

    def complete_mask(self) -> np.ndarray:
        """Per slot: its virtual planes are written."""
        with self._meta_lock:
            return np.array(self.state.complete, dtype=bool)

    def acquired_mask(self) -> np.ndarray:
        """Per slot: its camera frame was recorded (False: dropped, see :class:`_State`)."""
        with self._meta_lock:
            return np.array(self.state.acquired, dtype=bool)

    def incomplete(self) -> list[int]:
        """Slots (frames, with one channel) recorded but without virtual planes yet."""
        with self._meta_lock:
            st = self.state
            return [i for i, (a, c) in enumerate(zip(st.acquired, st.complete)) if a and not c]

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise RecordingError(f"the recording {self.paths.base} is closed")

    # ------------------------------------------------------------------ writing
    def append_frame(
        self,
        raw: np.ndarray | None,
        info: FrameInfo,
        *,
        channel: int | None = None,
        t: int | None = None,
    ) -> int:
        """Store one camera frame; returns its time point ``t`` in the recording.

        Without ``channel``: a whole time point after the last one, ``raw`` ``[C,] Y, X``
        (None for a refocus output). With ``channel`` (an interleaved multi-channel stream):
        that channel's frame ``Y, X`` at time point ``t`` (default: the channel's next free
        slot). Slots passed over on the way (frames the camera dropped) are journaled as
        missing and stay empty (0), so nothing shifts. The frame is on disk (in the OS) and
        journaled when this returns.
        """
        self._check_open()
        n_c = self.n_channels
        with self._raw_lock:
            n0 = len(self.state.frames)
            if channel is None:
                t = -(-n0 // n_c)
                first, stop, shape = t * n_c, (t + 1) * n_c, self.raw_frame_shape
            else:
                if self.channels is None or not 0 <= int(channel) < n_c:
                    raise RecordingError(
                        f"channel {channel} of a recording with channels {self.channels}"
                    )
                c = int(channel)
                if t is None:
                    t = (n0 + (c - n0) % n_c) // n_c
                first = int(t) * n_c + c
                stop, shape = first + 1, self.frame_shape
                if first < n0:
                    raise RecordingError(
                        f"channel {c} ({self.channels[c]}) of time point {t} is already "
                        "recorded; frames are recorded in order"
                    )
            if raw is not None:
                if self.raw_dtype is None:
                    raise RecordingError("this recording has no raw stream")
                arr = np.asarray(raw)
                if arr.shape != shape:
                    raise RecordingError(f"raw frame of shape {arr.shape}, expected {shape}")
                try:
                    if self._raw_tiff is not None:
                        self._raw_tiff.append(
                            arr.astype(self.raw_dtype, copy=False), placeholders=first - n0
                        )
                    elif self._raw_zarr is not None:
                        self._raw_zarr.write(t, arr, channel=channel)
                except OSError as exc:
                    raise self._fail(exc, str(self.paths.raw)) from None
            try:
                self._journal_missing(n0, first)
                rec: dict[str, Any] = {"type": "frame", "t": t}
                if channel is not None:
                    rec["c"] = int(channel)
                self.journal.write({**rec, **info.to_json()})
            except OSError as exc:
                raise self._fail(exc, str(self.paths.journal)) from None
            with self._meta_lock:
                self.state.grow(stop)
                for slot in range(first, stop):
                    self.state.frames[slot] = info
                    self.state.acquired[slot] = True
            return t

    def _journal_missing(self, first: int, stop: int) -> None:
        """Slots ``first .. stop-1`` got no camera frame: journal them as missing."""
        n_c = self.n_channels
        for slot in range(first, stop):
            self.journal.write(
                {"type": "frame", "t": slot // n_c, "c": slot % n_c, "missing": True}
            )
        with self._meta_lock:
            self.state.grow(stop)

    def _pad_time_point(self) -> None:
        """End an interleaved recording on a whole time point: the channels of the last one
        that never came are missing (raw placeholder pages, journal lines)."""
        n_c, n0 = self.n_channels, len(self.state.frames)
        if n_c == 1 or n0 % n_c == 0 or self.kind != "recording":
            return
        stop = -(-n0 // n_c) * n_c
        with self._raw_lock:
            if self._raw_tiff is not None:
                self._raw_tiff.append(None, placeholders=stop - n0)
            self._journal_missing(n0, stop)

    def write_planes(
        self,
        t: int,
        planes: np.ndarray,
        *,
        plan_id: int = 0,
        source: str = "live",
        channel: int | None = None,
    ) -> None:
        """Store the virtual planes of frame ``t``: ``[C,] K, Y, X`` float32, or with
        ``channel`` that channel's ``K, Y, X``."""
        self._check_open()
        n_c, k = self.n_channels, self.n_planes
        if channel is None:
            first, stop, shape = t * n_c, (t + 1) * n_c, self.planes_frame_shape
        else:
            first = t * n_c + int(channel)
            stop, shape = first + 1, (k, *self.frame_shape)
        if not 0 <= t < self.n_frames or stop > self.n_slots:
            raise IndexError(f"frame {t} is not recorded yet ({self.n_frames} frames)")
        arr = np.asarray(planes, dtype=np.float32)
        if arr.shape != shape:
            raise RecordingError(
                f"planes of shape {arr.shape}, expected {shape} ([channels,] planes, height, width)"
            )
        if self.units == "counts":
            arr = self._to_counts(t, arr, channel)
        with self._planes_lock:
            try:
                if self._planes_tiff is not None:
                    pages = arr.reshape(-1, *self.frame_shape)
                    have = self._planes_tiff.n_pages // k  # slots with pages
                    n_over = max(0, min(stop, have) - first)
                    if n_over:
                        self._planes_tiff.overwrite(first * k, pages[: n_over * k])
                    if stop > have:
                        self._planes_tiff.append(
                            pages[n_over * k :], placeholders=(max(first, have) - have) * k
                        )
                else:
                    self._planes_zarr.write(t, arr, channel=channel)
            except OSError as exc:
                raise self._fail(exc, str(self.paths.planes)) from None
            rec: dict[str, Any] = {"type": "planes", "t": t}
            if channel is not None:
                rec["c"] = int(channel)
            try:
                self.journal.write({**rec, "plan_id": int(plan_id), "source": source})
            except OSError as exc:
                raise self._fail(exc, str(self.paths.journal)) from None
            with self._meta_lock:
                for slot in range(first, stop):
                    self.state.complete[slot] = True
                    self.state.planes_plan[slot] = int(plan_id)

    def _normalization_of(self, t: int, channel: int) -> tuple[float, float]:
        """``(background, scale)`` for time point ``t`` of ``channel``: the record with the
        largest ``first_index`` <= the frame's camera index, else the earliest one (as
        :func:`~live_deepz.recording.complete_recording` picks it)."""
        with self._meta_lock:
            slot = t * self.n_channels + channel
            info = self.state.frames[slot] if slot < len(self.state.frames) else None
            index = info.index if info is not None and info.index >= 0 else slot
            recs = [r for r in self.state.normalizations if int(r.get("channel", 0)) == channel]
        best: dict[str, Any] | None = None
        for rec in sorted(recs, key=lambda r: int(r.get("first_index", 0))):
            if best is None or int(rec.get("first_index", 0)) <= index:
                best = rec
        if best is None:
            raise RecordingError(
                f"planes in camera counts need the intensity normalisation of frame {t}; "
                "call set_normalization first"
            )
        return float(best["background"]), float(best["scale"])

    def _to_counts(self, t: int, arr: np.ndarray, channel: int | None) -> np.ndarray:
        """Undo the normalisation: ``y · scale + background`` per channel."""
        out = np.array(arr, dtype=np.float32)
        if channel is not None or self.channels is None:
            bg, sc = self._normalization_of(t, 0 if channel is None else int(channel))
            return np.add(np.multiply(out, np.float32(sc), out=out), np.float32(bg), out=out)
        for c in range(self.n_channels):
            bg, sc = self._normalization_of(t, c)
            np.add(np.multiply(out[c], np.float32(sc), out=out[c]), np.float32(bg), out=out[c])
        return out

    def add_plan(
        self,
        plan_id: int,
        description: Mapping[str, Any],
        *,
        first_index: int,
        offsets_um: Sequence[float] | np.ndarray | None = None,
        surface_um: np.ndarray | None = None,
    ) -> None:
        """Journal a plane plan (its ``describe()``) from frame index ``first_index`` on.

        A surface given as a plain array (``{"kind": "array"}`` without a path) is saved
        next to the journal (``plan<ID>.surface.tif``) so that the planes can be rebuilt.
        """
        if plan_id in self.state.plans:
            return
        rec: dict[str, Any] = {
            "type": "plan",
            "plan_id": int(plan_id),
            "first_index": int(first_index),
            "plan": _json_safe(dict(description)),
        }
        if offsets_um is not None:
            rec["offsets_um"] = [float(v) for v in np.asarray(offsets_um).reshape(-1)]
        surface: Any = (description or {}).get("surface")
        needs_array = isinstance(surface, Mapping) and surface.get("kind") == "array"
        if surface_um is not None and needs_array and "path" not in surface:
            name = f"{self.paths.stem}.plan{int(plan_id)}.surface.tif"
            target = self.paths.folder / name
            try:
                import tifffile

                tifffile.imwrite(target, np.asarray(surface_um, dtype=np.float32))
                rec["surface_file"] = name
            except OSError as exc:
                raise self._fail(exc, str(target)) from None
        try:
            self.journal.write(rec)
        except OSError as exc:
            raise self._fail(exc, str(self.paths.journal)) from None
        with self._meta_lock:
            self.state.plans[int(plan_id)] = rec

    def set_normalization(
        self, background: float, scale: float, *, first_index: int, channel: int = 0
    ) -> None:
        """Journal the intensity normalisation used from frame index ``first_index`` on."""
        rec = {
            "type": "normalization",
            "first_index": int(first_index),
            "channel": int(channel),
            "background": float(background),
            "scale": float(scale),
        }
        try:
            self.journal.write(rec)
        except OSError as exc:
            raise self._fail(exc, str(self.paths.journal)) from None
        with self._meta_lock:
            self.state.normalizations.append(rec)

    def event(self, message: str, **fields: Any) -> None:
        """Journal something worth knowing later (never raises)."""
        rec = _json_safe({"type": "event", "message": message, **fields})
        with self._meta_lock:
            self.state.events.append(rec)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self.journal.write(rec)

    # ------------------------------------------------------------------ reading back
    def read_raw(self, t: int) -> np.ndarray:
        """Raw frame ``t`` as stored (``[C,] Y, X``; a missing channel frame reads as 0)."""
        if self._raw_tiff is not None:
            n_c = self.n_channels
            out = np.zeros((n_c, *self.frame_shape), self.raw_dtype)
            for j in range(n_c):
                if t * n_c + j >= self._raw_tiff.n_pages:
                    continue
                off = self._raw_tiff.data_offsets[t * n_c + j]
                buf = os.pread(self._raw_tiff._fdx(), self._raw_tiff.nbytes, off)
                out[j] = np.frombuffer(buf, self._raw_tiff.dtype).reshape(self.frame_shape)
            return out.reshape(self.raw_frame_shape)
        if self._raw_zarr is not None:
            return np.asarray(self._raw_zarr.array[t])
        raise RecordingError("this recording has no raw stream")

    # ------------------------------------------------------------------ closing
    def metadata(self) -> dict[str, Any]:
        """The recording's metadata as stored in the files at close."""
        header = {k: v for k, v in self.header.items() if k != "type"}
        with self._meta_lock:
            st = self.state
            return _json_safe(
                {
                    **header,
                    "plans": [
                        {k: v for k, v in rec.items() if k != "type"}
                        for _, rec in sorted(st.plans.items())
                    ],
                    "normalizations": [
                        {k: v for k, v in rec.items() if k != "type"} for rec in st.normalizations
                    ],
                    "events": [
                        {k: v for k, v in rec.items() if k != "type"} for rec in st.events[-100:]
                    ],
                    "n_frames": -(-len(st.frames) // self.n_channels),
                    "n_complete": int(sum(st.complete)),
                }
            )

    def _finalize(self, summary: Mapping[str, Any] | None) -> None:
        meta = self.metadata()
        timeline = dpm_timeline(self.state.events)
        if timeline is not None:  # whole, while the stored events are the last 100
            meta["dpm_timeline"] = timeline
        if summary:
            meta["summary"] = _json_safe(dict(summary))
        with self._meta_lock:
            cols = self.state.columns()
        n = self.n_frames
        offsets = [float(v) for v in self.offsets_um]
        step = _uniform_step(offsets)
        if self.format == "tiff":
            from ._writer_tiff import ome_xml

            times = [x.camera_time_ms for x in self.state.frames]
            base = self.frame_shape
            common = dict(
                size_y=base[0],
                size_x=base[1],
                size_t=n,
                size_c=self.n_channels,
                pixel_size_um=self.pixel_size_um,
                channel_names=self.channels,
                plane_times_ms=times,
                plane_exposure_ms=[x.exposure_ms for x in self.state.frames],
                plane_stage_z_um=[x.stage_z_um for x in self.state.frames],
                annotations={"recording": meta, "frames": cols},
                creator=f"live-deepz {__version__}",
            )
            if self._planes_tiff is not None:
                k, n_slots = self.n_planes, n * self.n_channels
                slots = self._planes_tiff.n_pages // k
                if slots < n_slots:  # frames never processed: empty (sparse) placeholders
                    self._planes_tiff.append(None, placeholders=(n_slots - slots) * k)
                if n:
                    self._planes_tiff.set_description(
                        ome_xml(
                            name=f"{self.paths.stem} virtual planes",
                            dtype=np.float32,
                            size_z=self.n_planes,
                            z_step_um=step,
                            description=f"virtual planes at offsets {offsets} um",
                            **common,  # type: ignore[arg-type]
                        )
                    )
            if self._raw_tiff is not None and n:
                self._raw_tiff.set_description(
                    ome_xml(
                        name=f"{self.paths.stem} raw",
                        dtype=self.raw_dtype,
                        size_z=1,
                        **common,  # type: ignore[arg-type]
                    )
                )
        else:
            from ._writer_zarr import set_root_attrs

            if self._planes_zarr is not None:
                self._planes_zarr.set_length(n)
            set_root_attrs(self._root, {"live_deepz": {**meta, "frames": cols}})

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        """Write the final metadata (OME-XML / Zarr attributes), the ``end`` line, close.

        Frames whose planes were never written get empty placeholders (reported as
        incomplete). Raises :class:`RecordingError` if that fails; the data written stays
        readable either way.
        """
        if self._closed:
            return
        err: RecordingError | None = None
        try:
            self._pad_time_point()
            self._finalize(summary)
        except OSError as exc:
            err = self._fail(exc, f"the metadata of {self.paths.base}")
        with contextlib.suppress(OSError, AttributeError, ValueError):
            mask = self.complete_mask()
            end = {
                "type": "end",
                "frames": int(mask.size),
                "complete": int(mask.sum()),
                "error": None if self._error is None else str(self._error),
                "summary": _json_safe(dict(summary or {})),
            }
            self.journal.write(end)
            self.state.end = end
        self._close_files()
        self._closed = True
        if err is not None:
            raise err

    def abort(self) -> None:
        """Close the files without the final metadata (after an error; never raises)."""
        if self._closed:
            return
        self._close_files()
        self._closed = True

    def discard(self) -> None:
        """Close and delete everything this writer created (a failed command leaves nothing
        behind); never raises."""
        self.abort()
        p = self.paths
        extra = list(p.folder.glob(f"{p.stem}.plan*.surface.tif")) if self.format == "tiff" else []
        for path in [*p.existing(), *extra]:
            with contextlib.suppress(OSError):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()

    def _close_files(self) -> None:
        for f in (self._raw_tiff, self._planes_tiff):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        j = getattr(self, "journal", None)
        if j is not None:
            j.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            with contextlib.suppress(RecordingError):
                self.close()


def find_journal(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """The journal of the recording named by ``path`` (any part of it) and its format."""
    from ._common import guess_format

    p = Path(path).expanduser()
    if p.name == "journal.jsonl" and p.parent.name.lower().endswith(".zarr"):
        return p, "zarr"
    fmt = guess_format(p)
    paths = recording_paths(p, fmt)
    if paths.journal.exists():
        return paths.journal, fmt
    if fmt == "tiff":
        alt = recording_paths(p, fmt, with_raw=False).journal
        if alt.exists():
            return alt, fmt
    if not p.exists():
        raise RecordingError(f"{p} does not exist")
    raise RecordingError(
        f"{p} has no journal ({paths.journal.name}); it was not written by live-deepz record, "
        "or the journal was not copied along with it"
    )
