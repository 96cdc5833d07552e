"""Read a recording (finished, interrupted or killed) lazily: :func:`open_recording`."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._common import FrameInfo, LazyFrames, RecordingError, guess_format, recording_paths
from ._mda import MDARecording, is_mda_recording, open_mda_recording
from ._writer import _State, dpm_timeline, find_journal, load_journal

__all__ = ["Recording", "open_recording"]


@dataclass
class Recording:
    """A recording opened for reading (see :func:`open_recording`).

    Arrays are lazy: indexing reads only the frames asked for.
    """

    path: Path
    format: str
    kind: str
    """``"recording"`` (raw + planes) or ``"refocus"`` (planes only)."""
    raw: LazyFrames | None
    """``(T, [C,] Y, X)`` raw camera frames as recorded (None for a refocus output)."""
    planes: LazyFrames
    """``(T, [C,] Z, Y, X)`` float32 virtual planes; NaN where ``complete`` is False."""
    offsets_um: np.ndarray
    """``(Z,)`` axial offset of each virtual plane, µm (> 0: deeper)."""
    frame_indices: np.ndarray
    """``(T,)`` the pipeline's frame index of each frame (gaps: frames not recorded).

    This and the other per-frame arrays are ``(T, C)`` with several channels: an
    interleaved stream has one camera frame (number, time, ...) per channel and time point.
    """
    frame_numbers: np.ndarray
    """``(T,)`` the camera's frame numbers (gaps: frames the camera dropped; -1 unknown)."""
    timestamps_ms: np.ndarray
    """``(T,)`` camera timestamps (the same for all planes of a frame)."""
    core_timestamps_ms: np.ndarray
    stage_z_um: np.ndarray
    exposure_ms: np.ndarray
    plan_ids: np.ndarray
    complete: np.ndarray
    """``(T,)`` bool: the frame's virtual planes are computed."""
    metadata: dict[str, Any]
    """Header (model, optics, camera, software, ...), plans, normalisations, events, end."""
    finished: bool
    """The recording was closed in order (False: interrupted; run ``live-deepz complete``)."""
    acquired: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    """``(T,)`` / ``(T, C)`` bool: the camera frame was recorded (False only for a channel
    frame of an interleaved stream that the camera dropped: its raw frame reads as 0, its
    planes as NaN, and nothing after it shifted)."""
    journal_lines_skipped: int = 0
    axes_raw: str = "tyx"
    axes_planes: str = "tzyx"
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def n_frames(self) -> int:
        """Time points (``T``)."""
        return int(self.complete.shape[0])

    @property
    def channels(self) -> list[str] | None:
        return self.metadata.get("channels")

    @property
    def pixel_size_um(self) -> float | None:
        return self.metadata.get("pixel_size_um")

    def frame_info(self, t: int, channel: int = 0) -> FrameInfo:
        """The metadata of frame ``t`` (of ``channel`` with several channels)."""
        i: Any = t if self.complete.ndim == 1 else (t, channel)
        return FrameInfo(
            index=int(self.frame_indices[i]),
            camera_frame=int(self.frame_numbers[i]),
            camera_time_ms=float(self.timestamps_ms[i]),
            core_time_ms=float(self.core_timestamps_ms[i]),
            stage_z_um=float(self.stage_z_um[i]),
            exposure_ms=float(self.exposure_ms[i]),
            plan_id=int(self.plan_ids[i]),
        )

    def close(self) -> None:
        for c in self._closers:
            with contextlib.suppress(Exception):
                c()
        self._closers.clear()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------ TIFF access


def _tiff_pages(path: Path) -> tuple[np.ndarray, int, Callable[[], None]]:
    """``(n_pages, H, W)`` lazily readable pages of a TIFF: a strided memmap for files
    written by live-deepz, tifffile's page reader otherwise. Returns (array-like, n, close)."""
    from ._writer_tiff import TiffFormatError, scan_tiff

    with contextlib.suppress(TiffFormatError):
        scan = scan_tiff(path)
        reg = scan.regular()
        n = scan.n_pages
        if n == 0:
            return np.empty((0, 0, 0), np.uint16), 0, lambda: None
        if reg is not None:
            first, stride = reg
            h, w = scan.shape
            length = (n - 1) * stride + scan.nbytes
            buf = np.memmap(path, dtype=np.uint8, mode="r", offset=first, shape=(length,))
            isz = scan.dtype.itemsize
            arr = np.ndarray(
                (n, h, w), dtype=scan.dtype, buffer=buf, strides=(stride, w * isz, isz)
            )
            return arr, n, lambda: None
    import tifffile

    tf = tifffile.TiffFile(path)
    pages = tf.pages
    n = len(pages)

    class _Pages:
        shape = (n, *pages.first.shape[-2:])
        dtype = pages.first.dtype

        def __getitem__(self, key: Any) -> np.ndarray:
            idx = np.arange(n)[key]
            if np.ndim(idx) == 0:
                return pages[int(idx)].asarray()  # type: ignore[union-attr]
            return np.stack([pages[int(i)].asarray() for i in idx])  # type: ignore[union-attr]

    return _Pages(), n, tf.close  # type: ignore[return-value]


# ------------------------------------------------------------------------ opening


def _metadata_without_journal(path: Path, fmt: str) -> tuple[dict[str, Any], _State]:
    """Header and tables from the files' own metadata (OME-XML / Zarr attributes)."""
    if fmt == "zarr":
        from ._writer_zarr import read_root_attrs

        base = path if path.name.lower().endswith(".zarr") else path.parent
        meta = read_root_attrs(base).get("live_deepz")
        cols = (meta or {}).get("frames")
    else:
        from ._writer_tiff import TiffFormatError, read_ome_annotations, scan_tiff

        candidates = [
            path,
            *[
                p
                for p in (recording_paths(path, "tiff").raw, recording_paths(path, "tiff").planes)
                if p
            ],
        ]
        meta = cols = None
        for cand in candidates:
            if not cand.exists():
                continue
            try:
                ann = read_ome_annotations(scan_tiff(cand, max_pages=1).description)
            except (TiffFormatError, OSError):
                continue
            if "recording" in ann:
                meta, cols = ann["recording"], ann.get("frames")
                break
    if not meta or not isinstance(cols, dict):
        raise RecordingError(
            f"{path}: neither a journal nor live-deepz metadata found; not a live-deepz "
            "recording (or an interrupted one whose journal is missing)"
        )
    st = _State(len(meta.get("channels") or ()) or 1)
    n = len(cols.get("index", []))

    def col(name: str, default: Any) -> list[Any]:
        v = cols.get(name) or []
        return [default if x is None else x for x in v] + [default] * (n - len(v))

    for i, cf, ct, co, z, e, pid in zip(
        col("index", -1),
        col("camera_frame", -1),
        col("camera_time_ms", math.nan),
        col("core_time_ms", math.nan),
        col("stage_z_um", math.nan),
        col("exposure_ms", math.nan),
        col("plan_id", -1),
        strict=False,
    ):
        st.frames.append(
            FrameInfo(int(i), int(cf), float(ct), float(co), math.nan, float(z), float(e), int(pid))
        )
    st.complete = [bool(c) for c in col("complete", False)]
    st.planes_plan = [int(p) for p in col("plan_id", -1)]
    st.acquired = [bool(a) for a in col("acquired", True)]
    for rec in meta.get("plans", []):
        st.plans[int(rec.get("plan_id", 0))] = rec
    st.normalizations = list(meta.get("normalizations", []))
    st.events = list(meta.get("events", []))
    st.end = {"type": "end", "from": "file metadata"}
    header = {k: v for k, v in meta.items() if k not in ("plans", "normalizations", "events")}
    return header, st


def open_recording(path: str | os.PathLike[str]) -> Recording | MDARecording:
    """Open a recording or refocus output for reading, also one whose writer was killed.

    ``path`` is any part of it: ``NAME.ome.tif``, ``NAME.planes.ome.tif``,
    ``NAME.journal.jsonl`` or ``NAME.ome.zarr``. An MDA recording (pymmcore-plus' raw files
    + ``NAME.planes.zarr``) opens as an :class:`~live_deepz.recording.MDARecording`. The data
    on disk decides how many frames there are (a frame whose journal line was lost gets
    unknown metadata: -1/NaN); the journal (or, without it, the files' OME-XML / Zarr
    attributes) gives the metadata.

    Raises :class:`RecordingError` when it is not a readable live-deepz recording.
    """
    if is_mda_recording(path):
        return open_mda_recording(path)
    p = Path(path).expanduser()
    if not p.exists():
        raise RecordingError(f"{p} does not exist")
    fmt = guess_format(p)
    if p.name == "journal.jsonl" and p.parent.name.lower().endswith(".zarr"):
        fmt = "zarr"
    skipped = 0
    try:
        journal, fmt = find_journal(p)
        header, st, skipped = load_journal(journal)
        folder = journal.parent
    except RecordingError:
        header, st = _metadata_without_journal(p, fmt)
        folder = p if fmt == "zarr" and p.is_dir() else p.parent
    kind = header.get("kind", "recording")
    files = header.get("files", {})
    planes_meta = header.get("planes", {})
    offsets = np.asarray(planes_meta.get("offsets_um", []), dtype=np.float64)
    k = max(1, int(planes_meta.get("n_planes", offsets.size or 1)))
    channels = header.get("channels")
    n_c = 1 if channels is None else len(channels)
    h, w = (int(v) for v in header["frame_shape"])
    raw_shape: tuple[int, ...] = (h, w) if channels is None else (n_c, h, w)
    planes_shape: tuple[int, ...] = (k, h, w) if channels is None else (n_c, k, h, w)
    raw_dtype = np.dtype(header.get("raw_dtype") or "uint16")
    closers: list[Callable[[], None]] = []
    raw_get: Callable[[list[int]], np.ndarray] | None = None
    n_z = k  # (k is reused below)
    n_disk = len(st.frames)  # slots whose raw frame is on disk (refocus: no raw stream)

    def on_disk(slot: int) -> bool:  # whether a slot's raw frame exists (see below)
        return True

    try:
        if fmt == "zarr":
            import zarr

            from ._writer_zarr import ZarrImage

            root_path = folder
            root = zarr.open_group(str(root_path), mode="r", zarr_format=3)
            n_raw = None
            if kind == "recording":
                raw_img = ZarrImage(root, "raw", create=False)
                n_raw = raw_img.committed_length()
                n_disk = n_raw * n_c
                raw_arr: Any = raw_img.array
                if channels is not None:  # a chunk per channel frame

                    def on_disk(slot: int) -> bool:
                        return bool(raw_img.has_chunk(slot // n_c, slot % n_c))

                def raw_get(ts: list[int]) -> np.ndarray:
                    return np.asarray(raw_arr.get_orthogonal_selection((np.asarray(ts),)))

            planes_group: Any = root["planes"]
            planes_arr: Any = planes_group["0"]
            n_slots = int(planes_arr.shape[0]) * n_c  # slots (channel frames) with planes

            def planes_read(slots: list[int]) -> np.ndarray:
                sel = np.asarray(slots)
                if channels is None:
                    return np.asarray(planes_arr.get_orthogonal_selection((sel,)), np.float32)
                return np.stack([np.asarray(planes_arr[i // n_c, i % n_c]) for i in slots])

        else:
            n_raw = None
            if kind == "recording":
                raw_pages, n_pages, close = _tiff_pages(folder / files["raw"])
                closers.append(close)
                n_raw = -(-n_pages // n_c)  # a killed writer may leave a partial time point
                n_disk = n_pages
                rp = raw_pages

                def raw_get(ts: list[int]) -> np.ndarray:
                    idx = (np.asarray(ts)[:, None] * n_c + np.arange(n_c)).reshape(-1)
                    out = np.zeros((idx.size, h, w), raw_dtype)
                    ok = idx < n_pages
                    if ok.any():
                        out[ok] = np.asarray(rp[idx[ok]])
                    return out.reshape(len(ts), *raw_shape)

            planes_path = folder / files["planes"]
            if planes_path.exists():
                pl_pages, n_pl, close = _tiff_pages(planes_path)
                closers.append(close)
            else:
                pl_pages, n_pl = np.empty((0, h, w), np.float32), 0
            n_slots = n_pl // n_z
            pp = pl_pages

            def planes_read(slots: list[int]) -> np.ndarray:
                idx = (np.asarray(slots)[:, None] * n_z + np.arange(n_z)).reshape(-1)
                return np.asarray(pp[idx], dtype=np.float32).reshape(len(slots), n_z, h, w)

    except (OSError, ValueError, KeyError) as exc:
        for c in closers:
            c()
        raise RecordingError(f"cannot read the recording {p}: {exc}") from None

    n = n_raw if n_raw is not None else -(-len(st.frames) // n_c)
    n_all = n * n_c  # slots: t * n_c + c
    frames = list(st.frames[:n_all]) + [FrameInfo() for _ in range(n_all - len(st.frames))]
    complete = np.zeros(n_all, dtype=bool)
    m = min(n_all, len(st.complete))
    complete[:m] = np.asarray(st.complete[:m], dtype=bool)
    complete[n_slots:] = False
    acquired = np.zeros(n_all, dtype=bool)
    acquired[:m] = np.asarray(st.acquired[:m], dtype=bool)
    for slot in range(len(st.frames), n_disk):  # on disk without a journal line: data decides
        acquired[slot] = on_disk(slot)
    plan_ids = np.array(
        [
            (st.planes_plan[t] if t < len(st.planes_plan) and st.planes_plan[t] >= 0 else f.plan_id)
            for t, f in enumerate(frames)
        ],
        dtype=np.int64,
    )

    def planes_get(ts: list[int]) -> np.ndarray:
        out = np.full((len(ts), n_c, n_z, h, w), np.nan, dtype=np.float32)
        want = [(j, t * n_c + c) for j, t in enumerate(ts) for c in range(n_c)]
        have = [(j, i) for j, i in want if complete[i]]
        if have:
            got = planes_read([i for _, i in have])
            for (j, i), planes in zip(have, got, strict=True):
                out[j, i % n_c] = planes
        return out.reshape(len(ts), *planes_shape)

    raw = None
    if raw_get is not None:
        raw = LazyFrames(n, raw_shape, raw_dtype, raw_get)
    planes = LazyFrames(n, planes_shape, np.float32, planes_get)
    metadata = {k: v for k, v in header.items() if k not in ("type", "metadata")}
    for k, v in (header.get("metadata") or {}).items():  # model, optics, camera, ...
        metadata.setdefault(k, v)
    metadata["plans"] = [
        {k2: v for k2, v in rec.items() if k2 != "type"} for _, rec in sorted(st.plans.items())
    ]
    metadata["normalizations"] = [
        {k2: v for k2, v in rec.items() if k2 != "type"} for rec in st.normalizations
    ]
    metadata["events"] = [{k2: v for k2, v in r.items() if k2 != "type"} for r in st.events]
    # the journal has every drift event; the files' metadata keeps the last 100 events
    # but the whole timeline
    metadata["dpm_timeline"] = dpm_timeline(st.events) or header.get("dpm_timeline")
    metadata["end"] = st.end

    def per_frame(values: Any, dtype: Any) -> np.ndarray:
        """A per-slot column as ``(T,)``, or ``(T, C)`` with channels."""
        arr = np.asarray(values, dtype=dtype)
        return arr if channels is None else arr.reshape(n, n_c)

    return Recording(
        path=p,
        format=fmt,
        kind=kind,
        raw=raw,
        planes=planes,
        offsets_um=offsets,
        frame_indices=per_frame([f.index for f in frames], np.int64),
        frame_numbers=per_frame([f.camera_frame for f in frames], np.int64),
        timestamps_ms=per_frame([f.camera_time_ms for f in frames], np.float64),
        core_timestamps_ms=per_frame([f.core_time_ms for f in frames], np.float64),
        stage_z_um=per_frame([f.stage_z_um for f in frames], np.float64),
        exposure_ms=per_frame([f.exposure_ms for f in frames], np.float64),
        plan_ids=per_frame(plan_ids, np.int64),
        complete=per_frame(complete, bool),
        acquired=per_frame(acquired, bool),
        metadata=metadata,
        finished=st.end is not None,
        journal_lines_skipped=skipped,
        axes_raw=header.get("raw_axes") or ("tyx" if channels is None else "tcyx"),
        axes_planes=planes_meta.get("axes", "tzyx"),
        _closers=closers,
    )
