"""Crash-consistent OME-TIFF writing: an append-only BigTIFF of uniform, uncompressed pages.

Why not ``tifffile.TiffWriter`` or ``ome-writers`` for the live stream (measured with
tifffile 2026.3 / ome-writers 0.3.2): with ``contiguous=True`` (what ome-writers uses)
tifffile writes the IFDs of all pages but the first only in ``close()``, so after
``kill -9`` a reader sees one page; with ``contiguous=False`` it links the new IFD into the
chain *before* writing the page, so a kill in between leaves a chain pointing past the end
of the file and ``tifffile.imread`` fails ("failed to read 8192 bytes"). ome-writers also
catches exceptions of its writer thread and only warns, so a full disk would lose frames
silently. Here each batch of pages (IFD + pixels, already chained among themselves) is
written at the end of the file with one ``pwritev`` and then linked into the chain by one
8-byte write: at every instant the file is a valid BigTIFF holding every batch whose write
returned. No data waits in a process-side buffer (writes go straight to the OS), so
``kill -9`` loses nothing that was written; an OS crash or power cut can lose what the OS
had not yet flushed (``fdatasync`` every ``sync_interval_s``, default 5 s, and at close).

The file is regular: page ``i``'s pixels are at ``first_block + i * stride + IFD_BLOCK``,
so readers can memory-map the whole series. The first page's ImageDescription points to a
reserved region after the header; while recording it holds a short plain-text note (so
``tifffile`` presents all pages as one generic series), at close it receives the OME-XML
(in place when it fits, else appended after the last page and re-pointed with one write).
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import struct
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "IN_PROGRESS_NOTE",
    "TiffPageFile",
    "TiffScan",
    "ome_xml",
    "scan_tiff",
]

_HEADER = 16
_IFD_BLOCK = 512
_ALIGN = 64
_PAGE = 4096
DEFAULT_RESERVE = 64 * 1024
IN_PROGRESS_NOTE = (
    "live-deepz: recording in progress or interrupted; the OME-XML metadata is written when it "
    "is closed (run `live-deepz complete` on an interrupted recording)."
)

# TIFF field types
_SHORT, _LONG, _RATIONAL, _ASCII, _LONG8 = 3, 4, 5, 2, 16
_SAMPLE_FORMAT = {"u": 1, "i": 2, "f": 3}
_MAX_BATCH = 256  # pages per pwritev (3 buffers each, below IOV_MAX = 1024)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _inline(ftype: int, value: Any) -> bytes:
    if ftype == _SHORT:
        return struct.pack("<H6x", value)
    if ftype == _LONG:
        return struct.pack("<I4x", value)
    if ftype == _RATIONAL:
        return struct.pack("<II", *value)
    return struct.pack("<Q", value)  # LONG8 or an offset


@dataclass
class TiffScan:
    """What :func:`scan_tiff` found: the pages of a chain of uniform uncompressed pages."""

    data_offsets: list[int]
    ifd_offsets: list[int]
    shape: tuple[int, int]
    dtype: np.dtype
    nbytes: int
    description: bytes
    description_entry: int
    """File offset of page 0's ImageDescription entry (-1 if it has none)."""
    file_size: int
    truncated: bool
    """The chain ended in an invalid page (dropped): a torn write or a foreign file."""

    @property
    def n_pages(self) -> int:
        return len(self.data_offsets)

    def regular(self) -> tuple[int, int] | None:
        """``(first_data_offset, stride)`` when page offsets are evenly spaced, else None."""
        offs = self.data_offsets
        if not offs:
            return None
        if len(offs) == 1:
            return offs[0], _round_up(self.nbytes, _ALIGN) + _IFD_BLOCK
        stride = offs[1] - offs[0]
        if stride < self.nbytes:
            return None
        arr = np.asarray(offs, dtype=np.int64)
        if np.all(np.diff(arr) == stride):
            return offs[0], stride
        return None


class TiffFormatError(ValueError):
    """Not a BigTIFF of uniform uncompressed single-strip pages (use tifffile instead)."""


def scan_tiff(path: str | os.PathLike[str], max_pages: int | None = None) -> TiffScan:
    """Follow the IFD chain of a little-endian BigTIFF written by :class:`TiffPageFile`.

    Pages whose pixels lie beyond the end of the file end the chain (``truncated``).
    Raises :class:`TiffFormatError` for other TIFF flavours (the caller falls back to
    tifffile) and ``OSError`` when the file cannot be read.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < _HEADER:
            raise TiffFormatError("file too short for a BigTIFF header")
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        bo, version, osize, _, first = struct.unpack_from("<2sHHHQ", mm, 0)
        if bo != b"II" or version != 43 or osize != 8:
            raise TiffFormatError("not a little-endian BigTIFF")
        data_offs: list[int] = []
        ifd_offs: list[int] = []
        shape: tuple[int, int] | None = None
        dtype: np.dtype | None = None
        nbytes = 0
        desc = b""
        desc_entry = -1
        truncated = False
        seen: set[int] = set()
        ifd = first
        while ifd:
            if ifd in seen or ifd + 8 > size:
                truncated = True
                break
            seen.add(ifd)
            (n,) = struct.unpack_from("<Q", mm, ifd)
            end = ifd + 8 + 20 * n + 8
            if n == 0 or n > 4096 or end > size:
                truncated = True
                break
            tags: dict[int, tuple[int, int, int]] = {}
            for k in range(n):
                tag, ftype, count = struct.unpack_from("<HHQ", mm, ifd + 8 + 20 * k)
                tags[tag] = (ftype, count, ifd + 8 + 20 * k + 12)

            def val(
                tag: int, default: int | None = None, tags: dict[int, tuple[int, int, int]] = tags
            ) -> int:
                if tag not in tags:
                    if default is None:
                        raise TiffFormatError(f"page without tag {tag}")
                    return default
                ftype, count, pos = tags[tag]
                if count != 1:
                    raise TiffFormatError(f"tag {tag} has {count} values (several strips?)")
                fmt = {_SHORT: "<H", _LONG: "<I", _LONG8: "<Q"}.get(ftype)
                if fmt is None:
                    raise TiffFormatError(f"tag {tag} has type {ftype}")
                return int(struct.unpack_from(fmt, mm, pos)[0])

            if val(259, 1) != 1 or val(277, 1) != 1:
                raise TiffFormatError("compressed or multi-sample pages")
            w, h = val(256), val(257)
            bits, fmt_code = val(258), val(339, 1)
            kind = {1: "u", 2: "i", 3: "f"}.get(fmt_code)
            if kind is None or bits not in (8, 16, 32, 64):
                raise TiffFormatError(f"unsupported sample format {fmt_code}/{bits}")
            dt = np.dtype(f"<{kind}{bits // 8}")
            off, cnt = val(273), val(279)
            if cnt != h * w * dt.itemsize:
                raise TiffFormatError("strip byte count does not match the page size")
            if off + cnt > size:
                truncated = True
                break
            if shape is None:
                shape, dtype, nbytes = (h, w), dt, cnt
                if 270 in tags:
                    ftype, count, pos = tags[270]
                    doff = pos if count <= 8 else int(struct.unpack_from("<Q", mm, pos)[0])
                    if doff + count <= size:
                        desc = bytes(mm[doff : doff + count]).rstrip(b"\0 ")
                    desc_entry = pos - 12
            elif (h, w) != shape or dt != dtype:
                raise TiffFormatError("pages of different shapes or types")
            data_offs.append(off)
            ifd_offs.append(ifd)
            if max_pages is not None and len(data_offs) >= max_pages:
                break
            (ifd,) = struct.unpack_from("<Q", mm, end - 8)
    finally:
        mm.close()
    return TiffScan(
        data_offsets=data_offs,
        ifd_offsets=ifd_offs,
        shape=shape or (0, 0),
        dtype=dtype or np.dtype("<u2"),
        nbytes=nbytes,
        description=desc,
        description_entry=desc_entry,
        file_size=size,
        truncated=truncated,
    )


class TiffPageFile:
    """Append-only BigTIFF of ``(H, W)`` pages of one dtype (see the module docstring).

    Parameters
    ----------
    path
        The file.
    page_shape, dtype
        Every page's shape and pixel type.
    mode
        ``"w"``: create (``overwrite`` replaces an existing file); ``"a"``: reopen a file
        written by this class, drop a torn tail, and continue appending.
    pixel_size_um
        Stored as the TIFF resolution (and in the OME-XML).
    reserve
        Bytes reserved after the header for the first page's description.
    sync_interval_s
        ``fdatasync`` at most this often (0: never during writing; always at close).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        page_shape: tuple[int, int],
        dtype: Any,
        *,
        mode: str = "w",
        overwrite: bool = False,
        pixel_size_um: float | None = None,
        reserve: int = DEFAULT_RESERVE,
        sync_interval_s: float = 5.0,
    ) -> None:
        self.path = Path(path)
        self.shape = (int(page_shape[0]), int(page_shape[1]))
        self.dtype = np.dtype(dtype).newbyteorder("<")
        if self.dtype.kind not in _SAMPLE_FORMAT or self.dtype.itemsize not in (1, 2, 4, 8):
            raise ValueError(f"unsupported pixel type {self.dtype}")
        self.nbytes = self.shape[0] * self.shape[1] * self.dtype.itemsize
        self.stride = _IFD_BLOCK + _round_up(self.nbytes, _ALIGN)
        self.pixel_size_um = pixel_size_um
        self.sync_interval_s = float(sync_interval_s)
        self._last_sync = time.monotonic()
        self._finalized = False
        self.data_offsets: list[int] = []
        self._last_next_pos = 8
        if mode == "w":
            flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
            self._fd: int | None = os.open(self.path, flags, 0o644)
            self.first_block = _round_up(_HEADER + max(int(reserve), 1024), _PAGE)
            try:
                head = struct.pack("<2sHHHQ", b"II", 43, 8, 0, 0)
                self._pwrite_all([head, self._padded(IN_PROGRESS_NOTE.encode())], 0)
            except BaseException:
                os.close(self._fd)
                self._fd = None
                raise
        elif mode == "a":
            self._fd = os.open(self.path, os.O_RDWR)
            try:
                self._reopen(int(reserve))
            except BaseException:
                os.close(self._fd)
                self._fd = None
                raise
        else:
            raise ValueError(f"mode must be 'w' or 'a', got {mode!r}")

    # ------------------------------------------------------------------ layout
    @property
    def reserve(self) -> int:
        return self.first_block - _HEADER

    def _padded(self, text: bytes) -> bytes:
        room = self.reserve - 1
        return text[:room].ljust(room, b" ") + b"\0"

    def _entries(self, page: int, data_offset: int) -> list[tuple[int, int, int, bytes]]:
        h, w = self.shape
        e: list[tuple[int, int, int, bytes]] = [
            (254, _LONG, 1, _inline(_LONG, 0)),
            (256, _LONG, 1, _inline(_LONG, w)),
            (257, _LONG, 1, _inline(_LONG, h)),
            (258, _SHORT, 1, _inline(_SHORT, self.dtype.itemsize * 8)),
            (259, _SHORT, 1, _inline(_SHORT, 1)),
            (262, _SHORT, 1, _inline(_SHORT, 1)),
        ]
        if page == 0:
            e.append((270, _ASCII, self.reserve, _inline(_LONG8, _HEADER)))
        e += [
            (273, _LONG8, 1, _inline(_LONG8, data_offset)),
            (277, _SHORT, 1, _inline(_SHORT, 1)),
            (278, _LONG, 1, _inline(_LONG, h)),
            (279, _LONG8, 1, _inline(_LONG8, self.nbytes)),
        ]
        px = self.pixel_size_um
        if px is not None and math.isfinite(px) and px > 0:
            per_cm = round(1e4 / px * 1000)  # pixels per cm, as a rational with denominator 1000
            e += [
                (282, _RATIONAL, 1, _inline(_RATIONAL, (per_cm, 1000))),
                (283, _RATIONAL, 1, _inline(_RATIONAL, (per_cm, 1000))),
            ]
        e.append((284, _SHORT, 1, _inline(_SHORT, 1)))
        if px is not None and math.isfinite(px) and px > 0:
            e.append((296, _SHORT, 1, _inline(_SHORT, 3)))
        e.append((339, _SHORT, 1, _inline(_SHORT, _SAMPLE_FORMAT[self.dtype.kind])))
        return e

    def _ifd(self, page: int, ifd_offset: int, next_ifd: int) -> bytes:
        entries = self._entries(page, ifd_offset + _IFD_BLOCK)
        parts = [struct.pack("<Q", len(entries))]
        parts += [struct.pack("<HHQ", t, f, c) + v for t, f, c, v in entries]
        parts.append(struct.pack("<Q", next_ifd))
        raw = b"".join(parts)
        return raw + b"\0" * (_IFD_BLOCK - len(raw))

    def _next_ptr_pos(self, page: int, ifd_offset: int) -> int:
        return ifd_offset + 8 + 20 * len(self._entries(page, 0))

    def _block_offset(self, page: int) -> int:
        return self.first_block + page * self.stride

    # ------------------------------------------------------------------ io
    def _fdx(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        return self._fd

    def _pwrite_all(self, buffers: Sequence[Any], offset: int) -> None:
        fd = self._fdx()
        views = [memoryview(b).cast("B") for b in buffers]
        total = sum(v.nbytes for v in views)
        written = os.pwritev(fd, views, offset) if hasattr(os, "pwritev") else 0
        if written >= total:
            return
        # short write (or no pwritev): finish buffer by buffer
        pos = 0
        for v in views:
            if pos + v.nbytes <= written:
                pos += v.nbytes
                continue
            start = max(0, written - pos)
            rest = v[start:]
            off = offset + pos + start
            while rest.nbytes:
                n = os.pwrite(fd, rest, off)
                if n <= 0:
                    raise OSError(f"pwrite wrote {n} bytes to {self.path}")
                rest, off = rest[n:], off + n
            pos += v.nbytes
            written = pos

    def _maybe_sync(self) -> None:
        if self.sync_interval_s > 0 and time.monotonic() - self._last_sync >= self.sync_interval_s:
            os.fdatasync(self._fdx())
            self._last_sync = time.monotonic()

    @property
    def n_pages(self) -> int:
        return len(self.data_offsets)

    def append(self, pages: np.ndarray | None = None, *, placeholders: int = 0) -> None:
        """Append ``placeholders`` empty pages, then ``pages`` ``(..., H, W)``.

        Everything appended by one call becomes readable at once, when the call returns
        (one 8-byte write links it into the chain). Placeholder pages get their IFD but no
        pixel write: their data region is a hole in a sparse file (reads as zeros) until
        :meth:`overwrite` fills it, so a placeholder costs 512 bytes of disk, not a page.
        """
        if self._finalized:
            raise ValueError(f"{self.path} is finalized; reopen with mode='a' to append")
        if pages is None:
            arr = np.empty((0, *self.shape), self.dtype)
        else:
            arr = np.ascontiguousarray(pages, dtype=self.dtype)
            if arr.shape[-2:] != self.shape:
                raise ValueError(f"pages of shape {arr.shape[-2:]} into a file of {self.shape}")
            arr = arr.reshape(-1, *self.shape)
        n0, holes = self.n_pages, max(0, int(placeholders))
        n_new = holes + arr.shape[0]
        if n_new == 0:
            return
        last = n0 + n_new - 1

        def ifd(page: int) -> bytes:
            nxt = self._block_offset(page + 1) if page < last else 0
            return self._ifd(page, self._block_offset(page), nxt)

        pad = b"\0" * (self.stride - _IFD_BLOCK - self.nbytes)
        try:
            for j in range(holes):
                self._pwrite_all([ifd(n0 + j)], self._block_offset(n0 + j))
            for s in range(0, arr.shape[0], _MAX_BATCH):
                chunk = arr[s : s + _MAX_BATCH]
                first = n0 + holes + s
                buffers: list[Any] = []
                for j in range(chunk.shape[0]):
                    buffers += [ifd(first + j), chunk[j]] + ([pad] if pad else [])
                self._pwrite_all(buffers, self._block_offset(first))
            end = self._block_offset(last + 1)
            if os.fstat(self._fdx()).st_size < end:  # a trailing hole: extend (sparse)
                os.ftruncate(self._fdx(), end)
        except OSError:
            # nothing new is linked: the file is still valid; give the space back
            with contextlib.suppress(OSError):
                os.ftruncate(self._fdx(), self._block_offset(n0))
            raise
        # link everything with one 8-byte write
        link_pos = 8 if n0 == 0 else self._last_next_pos
        self._pwrite_all([struct.pack("<Q", self._block_offset(n0))], link_pos)
        self.data_offsets.extend(self._block_offset(p) + _IFD_BLOCK for p in range(n0, last + 1))
        self._last_next_pos = self._next_ptr_pos(last, self._block_offset(last))
        self._maybe_sync()

    def overwrite(self, first_page: int, pages: np.ndarray) -> None:
        """Rewrite the pixels of pages ``first_page ...`` in place."""
        arr = np.ascontiguousarray(pages, dtype=self.dtype).reshape(-1, *self.shape)
        if first_page < 0 or first_page + arr.shape[0] > self.n_pages:
            raise IndexError(
                f"pages {first_page}..{first_page + arr.shape[0] - 1} of {self.n_pages}"
            )
        for j in range(arr.shape[0]):
            self._pwrite_all([arr[j]], self.data_offsets[first_page + j])
        self._maybe_sync()

    def truncate(self, n_pages: int) -> None:
        """Keep only the first ``n_pages`` pages (unlink the rest, then cut the file)."""
        n = max(0, min(int(n_pages), self.n_pages))
        if n == self.n_pages:
            return
        if n == 0:
            self._pwrite_all([struct.pack("<Q", 0)], 8)
            self._last_next_pos = 8
        else:
            ifd = self._block_offset(n - 1)
            (n_entries,) = struct.unpack("<Q", os.pread(self._fdx(), 8, ifd))
            pos = ifd + 8 + 20 * n_entries
            self._pwrite_all([struct.pack("<Q", 0)], pos)
            self._last_next_pos = pos
        del self.data_offsets[n:]
        os.ftruncate(self._fdx(), self._block_offset(n))

    def set_description(self, text: str | bytes) -> None:
        """Store the first page's description (the OME-XML); ends appending for this object."""
        if not self.n_pages:
            return  # nowhere to attach it: a file without pages
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        entry = self._ifd0_desc_entry()
        if len(data) + 1 <= self.reserve:
            self._pwrite_all([self._padded(data)], _HEADER)
            self._pwrite_all([struct.pack("<QQ", self.reserve, _HEADER)], entry + 4)
        else:
            end = self._block_offset(self.n_pages)
            blob = data + b"\0"
            self._pwrite_all([blob], end)
            os.ftruncate(self._fdx(), end + len(blob))
            os.fdatasync(self._fdx())
            # one 16-byte write re-points the tag (count, offset) to the new text
            self._pwrite_all([struct.pack("<QQ", len(blob), end)], entry + 4)
        self._finalized = True

    def _ifd0_desc_entry(self) -> int:
        ifd0 = self.first_block
        # 270 is the 7th entry of page 0 (after 254, 256, 257, 258, 259, 262)
        return ifd0 + 8 + 20 * 6

    def _reopen(self, reserve: int) -> None:
        scan = scan_tiff(self.path)
        if scan.n_pages:
            if scan.shape != self.shape or scan.dtype != self.dtype:
                raise ValueError(
                    f"{self.path} holds {scan.shape} {scan.dtype} pages, not "
                    f"{self.shape} {self.dtype}"
                )
            self.first_block = scan.ifd_offsets[0]
            reg = scan.regular()
            if (
                self.first_block % _PAGE
                or reg is None
                or reg[1] != self.stride
                or scan.description_entry != self._ifd0_desc_entry()
            ):
                raise ValueError(f"{self.path} was not written by live-deepz (irregular layout)")
        else:
            self.first_block = _round_up(_HEADER + max(reserve, 1024), _PAGE)
        self.data_offsets = list(scan.data_offsets)
        self._last_next_pos = 8
        if scan.ifd_offsets:
            last = scan.ifd_offsets[-1]
            (n_entries,) = struct.unpack("<Q", os.pread(self._fdx(), 8, last))
            self._last_next_pos = last + 8 + 20 * n_entries
        if self.n_pages:
            # description back into the reserve (it may point past the last page)
            self._pwrite_all([self._padded(IN_PROGRESS_NOTE.encode())], _HEADER)
            self._pwrite_all(
                [struct.pack("<QQ", self.reserve, _HEADER)], self._ifd0_desc_entry() + 4
            )
            # cut the chain after the last valid page (a torn page may follow)
            self._pwrite_all([struct.pack("<Q", 0)], self._last_next_pos)
        else:
            self._pwrite_all([struct.pack("<Q", 0)], 8)
        os.ftruncate(self._fdx(), self._block_offset(self.n_pages))

    def sync(self) -> None:
        os.fdatasync(self._fdx())
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> TiffPageFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------- OME-XML

_OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
_OME_TYPES = {
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "float32": "float",
    "float64": "double",
}
MAX_PLANE_ELEMENTS = 100_000
"""Above this many planes the OME-XML carries no ``Plane`` elements (timestamps stay in
the annotation and the journal), to keep the header small."""


def _fmt(v: float) -> str:
    return repr(float(v))


def ome_xml(
    *,
    name: str,
    dtype: Any,
    size_y: int,
    size_x: int,
    size_t: int,
    size_z: int = 1,
    size_c: int = 1,
    pixel_size_um: float | None = None,
    z_step_um: float | None = None,
    channel_names: Sequence[str] | None = None,
    plane_times_ms: Sequence[float] | None = None,
    plane_exposure_ms: Sequence[float] | None = None,
    plane_stage_z_um: Sequence[float] | None = None,
    annotations: Mapping[str, Any] | None = None,
    creator: str = "live-deepz",
    description: str = "",
) -> str:
    """OME-XML for one image stored as pages in the order T, C, Z (``XYZCT``).

    Per-frame lists (``plane_*``, length ``size_t``, or ``size_t * size_c`` with one entry
    per channel frame) become ``Plane`` elements (the same time and stage z for every plane
    of a frame) unless there are more than
    :data:`MAX_PLANE_ELEMENTS` planes. ``annotations`` (JSON-able values) become one
    ``MapAnnotation`` (namespace ``live-deepz``), each value JSON-encoded.
    """
    import json

    ET.register_namespace("", _OME_NS)
    q = f"{{{_OME_NS}}}"
    root = ET.Element(
        q + "OME",
        {"Creator": creator, "UUID": f"urn:uuid:{uuid.uuid4()}"},
    )
    image = ET.SubElement(root, q + "Image", {"ID": "Image:0", "Name": name})
    if description:
        ET.SubElement(image, q + "Description").text = description
    px_attrs = {
        "ID": "Pixels:0",
        "DimensionOrder": "XYZCT",
        "Type": _OME_TYPES[np.dtype(dtype).name],
        "SizeX": str(size_x),
        "SizeY": str(size_y),
        "SizeZ": str(size_z),
        "SizeC": str(size_c),
        "SizeT": str(max(size_t, 1)),
        "BigEndian": "false",
        "Interleaved": "false",
        "SignificantBits": str(np.dtype(dtype).itemsize * 8),
    }
    if pixel_size_um and math.isfinite(pixel_size_um) and pixel_size_um > 0:
        px_attrs.update(
            PhysicalSizeX=_fmt(pixel_size_um),
            PhysicalSizeXUnit="µm",
            PhysicalSizeY=_fmt(pixel_size_um),
            PhysicalSizeYUnit="µm",
        )
    if z_step_um and math.isfinite(z_step_um) and z_step_um > 0:
        px_attrs.update(PhysicalSizeZ=_fmt(z_step_um), PhysicalSizeZUnit="µm")
    pixels = ET.SubElement(image, q + "Pixels", px_attrs)
    for c in range(size_c):
        attrs = {"ID": f"Channel:0:{c}", "SamplesPerPixel": "1"}
        if channel_names and c < len(channel_names):
            attrs["Name"] = str(channel_names[c])
        ET.SubElement(pixels, q + "Channel", attrs)
    n_planes = size_t * size_z * size_c
    ET.SubElement(pixels, q + "TiffData", {"IFD": "0", "PlaneCount": str(n_planes)})
    if plane_times_ms is not None and 0 < n_planes <= MAX_PLANE_ELEMENTS:
        # per frame, or per channel frame (t * size_c + c) for an interleaved stream
        per_c = size_c > 1 and len(plane_times_ms) == size_t * size_c
        for t in range(size_t):
            for c in range(size_c):
                i = t * size_c + c if per_c else t
                common: dict[str, str] = {}
                if i < len(plane_times_ms) and math.isfinite(plane_times_ms[i]):
                    common.update(DeltaT=_fmt(plane_times_ms[i]), DeltaTUnit="ms")
                if plane_exposure_ms is not None and i < len(plane_exposure_ms):
                    e = plane_exposure_ms[i]
                    if math.isfinite(e):
                        common.update(ExposureTime=_fmt(e), ExposureTimeUnit="ms")
                if plane_stage_z_um is not None and i < len(plane_stage_z_um):
                    z = plane_stage_z_um[i]
                    if math.isfinite(z):
                        common.update(PositionZ=_fmt(z), PositionZUnit="µm")
                for z_i in range(size_z):
                    attrs = {"TheZ": str(z_i), "TheT": str(t), "TheC": str(c), **common}
                    ET.SubElement(pixels, q + "Plane", attrs)
    if annotations:
        ET.SubElement(image, q + "AnnotationRef", {"ID": "Annotation:live-deepz"})
        sa = ET.SubElement(root, q + "StructuredAnnotations")
        ma = ET.SubElement(
            sa, q + "MapAnnotation", {"ID": "Annotation:live-deepz", "Namespace": "live-deepz"}
        )
        value = ET.SubElement(ma, q + "Value")
        for k, v in annotations.items():
            m = ET.SubElement(value, q + "M", {"K": str(k)})
            m.text = json.dumps(v, allow_nan=False, separators=(",", ":"))
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body


def read_ome_annotations(description: bytes | str) -> dict[str, Any]:
    """The ``live-deepz`` MapAnnotation of an OME-XML description, decoded (``{}`` if none)."""
    import json

    text = description.decode("utf-8", "replace") if isinstance(description, bytes) else description
    if "<OME" not in text:
        return {}
    try:
        root = ET.fromstring(text.strip().rstrip("\0"))
    except ET.ParseError:
        return {}
    q = f"{{{_OME_NS}}}"
    out: dict[str, Any] = {}
    for ma in root.iter(q + "MapAnnotation"):
        if ma.get("Namespace") != "live-deepz":
            continue
        for m in ma.iter(q + "M"):
            key = m.get("K")
            if key is None:
                continue
            try:
                out[key] = json.loads(m.text or "null")
            except ValueError:
                out[key] = m.text
    return out
