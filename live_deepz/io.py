"""Reading z-stacks and writing OME-TIFF files (and :func:`open_recording` for recordings).

Where things live in the files :func:`write_ome_tiff` writes (real OME-XML via tifffile):

* ``Pixels/@PhysicalSizeX``, ``@PhysicalSizeY`` (pixel size) and ``@PhysicalSizeZ`` (z step),
  in µm;
* ``Plane/@PositionZ`` (µm) for every plane: the focal position of that plane;
* ``Channel/@Name`` per channel;
* a ``MapAnnotation`` with ``Namespace="live-deepz"`` holding one entry ``K="json"``: the
  ``extra_metadata`` dictionary as JSON (optics, sample, seed, model, DPM, ...).

:func:`read_stack` reads those back (and ImageJ hyperstacks: ``spacing``/resolution), and
raises :class:`~live_deepz.errors.InputError` with an actionable message for a missing file,
a file that is not a TIFF, a shape that is not a z-stack, an unknown z step, or NaN/Inf
values.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InputError

__all__ = ["OME_NAMESPACE", "Stack", "read_stack", "write_ome_tiff"]

OME_NAMESPACE = "live-deepz"
"""``Namespace`` of the MapAnnotation that carries the extra metadata (key ``json``)."""

_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6}


@dataclass
class Stack:
    """A z-stack read from disk."""

    data: NDArray[Any]
    """``(Z, Y, X)`` or ``(Z, C, Y, X)`` (see :attr:`axes`)."""
    z_step_um: float
    pixel_size_um: float | None
    z_positions_um: NDArray[np.float64]
    """``(Z,)`` focal position of each plane, µm."""
    axes: str = "ZYX"
    channel_names: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    """The ``extra_metadata`` written by :func:`write_ome_tiff` (empty for other files)."""
    path: Path | None = None

    @property
    def n_planes(self) -> int:
        return int(self.data.shape[0])


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def write_ome_tiff(
    path: str | os.PathLike[str],
    data: ArrayLike,
    axes: str = "ZYX",
    pixel_size_um: float | None = None,
    z_step_um: float | None = None,
    z_positions_um: ArrayLike | None = None,
    channel_names: list[str] | None = None,
    extra_metadata: dict[str, Any] | None = None,
    *,
    compress: bool = False,
) -> Path:
    """Write ``data`` as an OME-TIFF with physical sizes, z positions and extra metadata.

    Parameters
    ----------
    path
        Output file (``.ome.tif`` recommended); parent folders are created.
    data
        Array whose axes are named by ``axes`` (letters from ``TZCYX``, ending in ``YX``).
    pixel_size_um, z_step_um
        Physical pixel size and z step. ``z_step_um`` defaults to the spacing of
        ``z_positions_um`` when those are uniform.
    z_positions_um
        Focal position of each Z plane; defaults to ``arange(Z) * z_step_um``.
    channel_names
        One name per C index.
    extra_metadata
        JSON-serialisable dictionary stored in a MapAnnotation (see the module docstring).
    compress
        Lossless zlib compression.
    """
    import tifffile

    arr = np.asarray(data)
    axes = axes.upper()
    if len(axes) != arr.ndim or not axes.endswith("YX") or len(set(axes)) != len(axes):
        raise InputError(f"axes {axes!r} do not describe an array of shape {arr.shape}")
    if any(a not in "TZCYX" for a in axes):
        raise InputError(f"axes {axes!r}: use letters from TZCYX")
    n_z = arr.shape[axes.index("Z")] if "Z" in axes else 1
    zpos: NDArray[np.float64] | None = None
    if z_positions_um is not None:
        zpos = np.asarray(z_positions_um, dtype=np.float64).ravel()
        if len(zpos) != n_z:
            raise InputError(f"{len(zpos)} z positions for {n_z} planes")
        if z_step_um is None and n_z > 1:
            d = np.diff(zpos)
            if np.allclose(d, d[0], rtol=1e-6, atol=1e-9):
                z_step_um = float(abs(d[0]))
    elif z_step_um is not None:
        zpos = np.arange(n_z, dtype=np.float64) * float(z_step_um)

    md: dict[str, Any] = {"axes": axes}
    if pixel_size_um is not None:
        md.update(
            PhysicalSizeX=float(pixel_size_um),
            PhysicalSizeXUnit="µm",
            PhysicalSizeY=float(pixel_size_um),
            PhysicalSizeYUnit="µm",
        )
    if z_step_um is not None:
        md.update(PhysicalSizeZ=float(z_step_um), PhysicalSizeZUnit="µm")
    if channel_names is not None:
        n_c = arr.shape[axes.index("C")] if "C" in axes else 1
        if len(channel_names) != n_c:
            raise InputError(f"{len(channel_names)} channel names for {n_c} channels")
        md["Channel"] = {"Name": [str(c) for c in channel_names]}
    if zpos is not None:
        lead = arr.shape[: arr.ndim - 2]
        idx = np.indices(lead).reshape(len(lead), -1) if lead else np.zeros((0, 1), int)
        if "Z" in axes:
            zi = idx[axes.index("Z")]
            plane_z = [float(zpos[i]) for i in zi]
        else:
            plane_z = [float(zpos[0])] * max(idx.shape[1], 1)
        md["Plane"] = {"PositionZ": plane_z, "PositionZUnit": ["µm"] * len(plane_z)}
    if extra_metadata:
        md["MapAnnotation"] = {
            "Namespace": OME_NAMESPACE,
            "json": json.dumps(extra_metadata, default=_json_default),
        }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(
        out,
        arr,
        ome=True,
        photometric="minisblack",
        metadata=md,
        compression="zlib" if compress else None,
    )
    return out


def _ome_info(xml: str) -> dict[str, Any]:
    """Physical sizes, plane z positions, channel names and our JSON from OME-XML."""
    info: dict[str, Any] = {}
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return info
    pixels = root.find(".//{*}Image/{*}Pixels")
    if pixels is not None:
        for ax in ("X", "Y", "Z"):
            v = pixels.get(f"PhysicalSize{ax}")
            if v is not None:
                unit = pixels.get(f"PhysicalSize{ax}Unit", "µm")
                info[f"size_{ax.lower()}"] = float(v) * _UNIT_TO_UM.get(unit, 1.0)
        names = [c.get("Name") for c in pixels.findall("{*}Channel")]
        if names and all(n is not None for n in names):
            info["channel_names"] = names
        planes: dict[int, float] = {}
        for p in pixels.findall("{*}Plane"):
            z, pz = p.get("TheZ"), p.get("PositionZ")
            if z is not None and pz is not None:
                unit = p.get("PositionZUnit", "µm")
                planes.setdefault(int(z), float(pz) * _UNIT_TO_UM.get(unit, 1.0))
        if planes:
            info["plane_z"] = planes
        info["dimension_order"] = pixels.get("DimensionOrder")
    for ann in root.findall(".//{*}MapAnnotation"):
        if ann.get("Namespace") != OME_NAMESPACE:
            continue
        for m in ann.findall(".//{*}M"):
            if m.get("K") == "json" and m.text:
                with contextlib.suppress(json.JSONDecodeError):
                    info["extra"] = json.loads(m.text)
    return info


def read_stack(path: str | os.PathLike[str], z_step_um: float | None = None) -> Stack:
    """Read a z-stack (OME-TIFF, ImageJ or plain multi-page TIFF).

    Parameters
    ----------
    path
        The TIFF file.
    z_step_um
        The z step; overrides the file's value, required when the file has none.

    Returns
    -------
    Stack
        ``data`` is ``(Z, Y, X)``, or ``(Z, C, Y, X)`` for multi-channel files.

    Raises
    ------
    InputError
        Missing file, not a TIFF, not a z-stack (a single 2D image, RGB, too many axes),
        z step unknown and not given, or NaN/Inf in float data.
    """
    import tifffile

    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"Stack file not found: {p} (resolved: {p.resolve()}).")
    if not p.is_file():
        raise InputError(f"{p} is not a file; give the path of a TIFF z-stack.")
    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            data = series.asarray()
            axes = series.axes.upper()
            ome_xml = tif.ome_metadata if tif.is_ome else None
            ij = tif.imagej_metadata or {}
            page = tif.pages.first
            xres = page.tags.get("XResolution")
            res_unit = page.tags.get("ResolutionUnit")
            xres_value = xres.value if xres is not None else None
            res_unit_value = int(res_unit.value) if res_unit is not None else None
    except tifffile.TiffFileError as e:
        raise InputError(
            f"{p} is not a readable TIFF file ({e}); give an (OME-)TIFF z-stack."
        ) from e
    except (OSError, ValueError) as e:
        raise InputError(f"Could not read {p}: {e}") from e

    info = _ome_info(ome_xml) if ome_xml else {}

    # normalise axes: drop singleton axes other than Y/X; RGB(A) is not a fluorescence stack
    if "S" in axes and data.shape[axes.index("S")] > 1:
        raise InputError(
            f"{p} is an RGB image (axes {axes}, shape {data.shape}); give a single-channel "
            "grey-level z-stack."
        )
    keep = [i for i, a in enumerate(axes) if a in "YX" or data.shape[i] > 1]
    data = data.reshape([data.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if data.ndim == 2:
        raise InputError(
            f"{p} holds a single 2D image {data.shape}, not a z-stack; give a stack of "
            "several focal planes (Z, Y, X)."
        )
    if data.ndim == 3:
        if axes[0] in "CS":
            raise InputError(f"{p} has axes {axes} (channels, no Z); give a z-stack.")
        axes = "ZYX"
    elif data.ndim == 4 and "Z" in axes and "C" in axes:
        order = [axes.index(a) for a in "ZCYX"]
        data = np.transpose(data, order)
        axes = "ZCYX"
    else:
        raise InputError(
            f"{p} has shape {data.shape} (axes {axes}); expected a z-stack (Z, Y, X) or "
            "(Z, C, Y, X)."
        )

    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise InputError(f"{p} contains {bad} NaN/Inf values; clean or re-export the stack.")

    n_z = data.shape[0]
    step = z_step_um
    zpos: NDArray[np.float64] | None = None
    plane_z = info.get("plane_z")
    if plane_z and len(plane_z) == n_z:
        zpos = np.array([plane_z[i] for i in range(n_z)], dtype=np.float64)
    if step is None:
        step = info.get("size_z")
        if step is None and zpos is not None and n_z > 1:
            d = np.diff(zpos)
            if np.allclose(d, d[0], rtol=1e-4, atol=1e-6) and d[0] != 0:
                step = float(abs(d[0]))
        if step is None and "spacing" in ij:
            step = float(ij["spacing"])
    if step is None:
        raise InputError(
            f"The z step of {p} is unknown (no OME PhysicalSizeZ, plane positions or ImageJ "
            "spacing); give it (z_step_um=..., or --z-step on the command line)."
        )
    step = float(step)
    if not math.isfinite(step) or step <= 0:
        raise InputError(f"z step must be a positive number of µm, got {step}")
    if zpos is None or z_step_um is not None:
        zpos = np.arange(n_z, dtype=np.float64) * step if zpos is None else zpos
    px = info.get("size_x")
    if px is None and xres_value is not None:
        num, den = xres_value if isinstance(xres_value, tuple) else (xres_value, 1)
        if num:
            per_unit = den / num
            unit = str(ij.get("unit", "")).lower()
            if unit in ("micron", "um", "µm", "\\u00b5m"):
                px = per_unit
            elif res_unit_value == 3 and not ij:  # centimetre (tifffile's OME convention)
                px = per_unit * 1e4
    return Stack(
        data=data,
        z_step_um=step,
        pixel_size_um=None if px is None else float(px),
        z_positions_um=np.asarray(zpos, dtype=np.float64),
        axes=axes,
        channel_names=info.get("channel_names"),
        metadata=info.get("extra", {}),
        path=p,
    )


def open_recording(path: str | os.PathLike[str]) -> Any:
    """A recording (OME-TIFF or OME-Zarr) read lazily: ``raw``, ``planes``, ``offsets_um``,
    ``frame_numbers``, ``timestamps_ms``, ``complete``, ``metadata``.

    The same as :func:`live_deepz.recording.open_recording` (imported on first use).
    """
    from .recording import open_recording as _open

    return _open(path)
