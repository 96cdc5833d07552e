"""OME-Zarr (NGFF 0.5, Zarr v3) storage of a recording with zarr-python.

``NAME.ome.zarr/`` is a plain group (attributes ``live_deepz``: the recording's metadata at
close) holding two NGFF images, ``raw`` (array ``raw/0``: ``T, [C,] Y, X``) and ``planes``
(array ``planes/0``: ``T, [C,] Z, Y, X``, float32, fill value NaN), and the journal
``journal.jsonl``. Chunks hold one frame (``raw``) and one or more planes of one frame
(``planes``, at most ~64 MB), uncompressed (the 2 CPU cores go to inference).

Crash safety: zarr-python 3 writes every chunk and every ``zarr.json`` to a temporary file
and renames it, so a killed writer leaves only whole chunks. The array is grown one frame
at a time (``resize``, one small atomic ``zarr.json`` write) *before* the frame's chunk is
written, so after ``kill -9`` the shape may include at most one frame whose chunk is
missing (it reads as the fill value; the reader drops it).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ZarrImage", "ngff_attrs", "open_root", "read_root_attrs"]

_MAX_CHUNK_BYTES = 64 * 2**20

_AXIS = {
    "t": {"name": "t", "type": "time", "unit": "millisecond"},
    "c": {"name": "c", "type": "channel"},
    "z": {"name": "z", "type": "space", "unit": "micrometer"},
    "y": {"name": "y", "type": "space", "unit": "micrometer"},
    "x": {"name": "x", "type": "space", "unit": "micrometer"},
}


def ngff_attrs(name: str, axes: str, scale: Sequence[float]) -> dict[str, Any]:
    """NGFF 0.5 ``ome`` attributes of a single-resolution image."""
    return {
        "ome": {
            "version": "0.5",
            "multiscales": [
                {
                    "name": name,
                    "axes": [dict(_AXIS[a]) for a in axes],
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [float(s) for s in scale]}
                            ],
                        }
                    ],
                }
            ],
        }
    }


def open_root(path: Path, *, create: bool, overwrite: bool = False) -> Any:
    import zarr

    if create:
        return zarr.open_group(str(path), mode="w" if overwrite else "w-", zarr_format=3)
    return zarr.open_group(str(path), mode="r+", zarr_format=3)


def read_root_attrs(path: Path) -> dict[str, Any]:
    """The root group's attributes, read from ``zarr.json`` without zarr (``{}`` if none)."""
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return {}
    attrs = meta.get("attributes", {})
    return attrs if isinstance(attrs, dict) else {}


class ZarrImage:
    """One NGFF image group ``<root>/<name>`` with its array ``0`` growing along T.

    ``frame_shape`` is the shape of one time point (e.g. ``(Y, X)`` or ``(Z, Y, X)``).
    """

    def __init__(
        self,
        root: Any,
        name: str,
        *,
        frame_shape: Sequence[int] | None = None,
        dtype: Any = None,
        fill_value: Any = 0,
        axes: str = "",
        scale: Sequence[float] = (),
        create: bool = True,
        per_channel: bool = False,
    ) -> None:
        self.name = name
        self._lock = threading.Lock()
        if create:
            assert frame_shape is not None and dtype is not None
            fs = tuple(int(s) for s in frame_shape)
            dt = np.dtype(dtype)
            plane = int(np.prod(fs[-2:])) * dt.itemsize
            lead = list(fs[:-2])
            chunk_lead = [1] * len(lead)
            if lead:  # as many of the last leading axis (Z) per chunk as fit in the budget
                chunk_lead[-1] = max(1, min(lead[-1], _MAX_CHUNK_BYTES // max(plane, 1)))
            if lead and per_channel:  # channels written one by one: a chunk each
                chunk_lead[0] = 1
            group = root.create_group(name, attributes=ngff_attrs(name, axes, scale))
            self.array = group.create_array(
                "0",
                shape=(0, *fs),
                chunks=(1, *chunk_lead, *fs[-2:]),
                dtype=dt,
                fill_value=fill_value,
                compressors=None,
                dimension_names=list(axes),
            )
        else:
            self.array = root[name]["0"]
        self.frame_shape = tuple(self.array.shape[1:])
        self.dtype = np.dtype(self.array.dtype)
        self.path = Path(str(self.array.store_path.store.root)) / self.array.store_path.path

    @property
    def length(self) -> int:
        return int(self.array.shape[0])

    def set_length(self, n: int) -> None:
        with self._lock:
            if n != self.length:
                self.array.resize((int(n), *self.frame_shape))

    def write(self, t: int, data: np.ndarray, channel: int | None = None) -> None:
        """Write time point ``t``, or only its ``channel`` (the axis after T); grows the
        array first when needed."""
        with self._lock:
            if t >= self.length:
                self.array.resize((t + 1, *self.frame_shape))
            if channel is None:
                self.array[t] = data
            else:
                self.array[t, int(channel)] = data

    def has_frame(self, t: int) -> bool:
        """Whether a chunk of time point ``t`` exists on disk."""
        return (self.path / "c" / str(int(t))).exists()

    def has_chunk(self, t: int, channel: int) -> bool:
        """Whether a chunk of ``channel`` at time point ``t`` exists (channel chunks)."""
        return (self.path / "c" / str(int(t)) / str(int(channel))).exists()

    def committed_length(self) -> int:
        """The length minus a trailing frame whose chunk never reached the disk."""
        n = self.length
        if n and not self.has_frame(n - 1):
            n -= 1
        return n


def set_root_attrs(root: Any, attrs: Mapping[str, Any]) -> None:
    root.attrs.update(json.loads(json.dumps(dict(attrs), allow_nan=False)))


def frame_scale(pixel_size_um: float | None, z_step_um: float | None, axes: str) -> list[float]:
    px = pixel_size_um if pixel_size_um and math.isfinite(pixel_size_um) else 1.0
    dz = z_step_um if z_step_um and math.isfinite(z_step_um) and z_step_um > 0 else 1.0
    return [{"t": 1.0, "c": 1.0, "z": dz, "y": px, "x": px}[a] for a in axes]
