"""Offline refocusing of images, time-lapses, z-stacks and multi-channel files.

:func:`read_input` opens a TIFF/OME-TIFF lazily and works out its axes (OME/ImageJ axes via
tifffile; a plain multi-page TIFF is a series of independent frames); :func:`refocus_file`
normalises each frame (fitted once per channel, on the first frame, like the live
pipeline), builds the DPMs from a plane plan, runs a backend (tiled for frames larger than
``tile``) and writes the planes with :class:`~live_deepz.recording.RecordingWriter`
(``kind="refocus"``): the same OME-TIFF / OME-Zarr layout and metadata as a recording.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from live_deepz.dpm import PlanePlan, check_range
from live_deepz.errors import InputError
from live_deepz.input_limits import check_finite_output, check_frame_size
from live_deepz.normalize import Normalization, fit_normalization
from live_deepz.recording import FrameInfo, RecordingWriter

from ._refocuser import Refocuser

__all__ = ["ArrayPlan", "RefocusInput", "RefocusSummary", "read_input", "refocus_file"]

_TIME_AXES = "TIQ"
"""tifffile axis codes read as independent frames: time, generic image, generic sequence."""


@dataclass
class RefocusInput:
    """A lazily read input: frames ``(T, C, Y, X)`` through :meth:`frame`."""

    path: Path
    axes: str
    """tifffile's axes of the series (e.g. ``TZCYX``, ``IYX``, ``YX``)."""
    shape: tuple[int, ...]
    dtype: np.dtype
    n_frames: int
    n_channels: int
    height: int
    width: int
    pixel_size_um: float | None
    input_plane: int | None
    channel_names: list[str] | None
    _get: Callable[[int, int], np.ndarray] = field(repr=False)
    _close: Callable[[], None] = field(repr=False, default=lambda: None)

    def frame(self, t: int, c: int = 0) -> np.ndarray:
        """The ``(Y, X)`` image of frame ``t``, channel ``c`` (at the input plane)."""
        return self._get(t, c)

    def close(self) -> None:
        self._close()

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "axes": self.axes,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            "frames": self.n_frames,
            "channels": self.n_channels,
            "input_plane": self.input_plane,
            "pixel_size_um": self.pixel_size_um,
        }


def _pixel_size(tf: Any, series: Any) -> float | None:
    try:
        if tf.is_ome:
            import xml.etree.ElementTree as ET

            root = ET.fromstring(tf.ome_metadata)
            for el in root.iter():
                if el.tag.endswith("Pixels") and el.get("PhysicalSizeX"):
                    v = float(el.get("PhysicalSizeX") or "nan")
                    unit = el.get("PhysicalSizeXUnit", "µm")
                    scale = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3}.get(unit)
                    return v * scale if scale else None
        if tf.is_imagej and tf.imagej_metadata:
            unit = str(tf.imagej_metadata.get("unit", "")).replace("\\u00B5", "µ")
            res = series.pages[0].resolution
            if res and res[0] and unit in ("micron", "µm", "um"):
                return 1.0 / float(res[0])
        page = series.pages[0]
        res, unit = page.resolution, page.resolutionunit
        if res and res[0] and int(unit) == 3:  # pixels per cm
            return 1e4 / float(res[0])
    except Exception:
        return None
    return None


def read_input(path: str | os.PathLike[str], input_plane: int | None = None) -> RefocusInput:
    """Open a TIFF/OME-TIFF for refocusing; raise :class:`InputError` with the fix.

    Axes: ``T`` (and tifffile's generic ``I``/``Q``) are frames, ``C`` channels, ``Z`` a
    z-stack (``input_plane`` picks the plane to refocus from; required when Z > 1), ``Y``,
    ``X`` the image; other axes must have length 1. RGB (``S`` > 1), complex and bool data
    are refused. A plain multi-page TIFF with ``input_plane`` given is read as a z-stack.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"input {p} does not exist")
    if p.is_dir():
        raise InputError(f"input {p} is a folder; give a TIFF/OME-TIFF file")
    import tifffile

    try:
        tf = tifffile.TiffFile(p)
        series = tf.series[0]
        axes = series.axes.upper()
        shape = tuple(int(s) for s in series.shape)
        dtype = np.dtype(series.dtype)
    except Exception as exc:  # tifffile raises many types for non-TIFF / corrupt files
        raise InputError(f"cannot read {p} as a TIFF image: {exc}") from None

    def fail(msg: str) -> InputError:
        tf.close()
        return InputError(f"{p}: {msg}")

    if dtype.kind not in "uif":
        raise fail(
            f"pixels of type {dtype} cannot be refocused; give real-valued intensity images "
            "(uint8/uint16/float32)"
        )
    if "Y" not in axes or "X" not in axes or (axes[-2:] not in ("YX",) and axes[-3:] != "YXS"):
        raise fail(f"axes {axes!r} {shape} have no image plane (Y, X) at the end")
    if "S" in axes and shape[axes.index("S")] > 1:
        raise fail(
            f"is stored as an RGB image ({shape[axes.index('S')]} samples per pixel, axes "
            f"{axes}); give single-channel fluorescence images (split the channels, or save "
            "the stack with photometric='minisblack' if these are not colours)"
        )
    lead_axes = axes[: axes.index("Y")]
    lead_shape = shape[: len(lead_axes)]
    h, w = shape[axes.index("Y")], shape[axes.index("X")]
    roles: list[str] = []
    generic_as_z = input_plane is not None and "Z" not in lead_axes
    for a, n in zip(lead_axes, lead_shape, strict=True):
        if a == "C":
            roles.append("c")
        elif a == "Z" or (generic_as_z and a in "IQ" and n > 1 and "z" not in roles):
            roles.append("z")
        elif a in _TIME_AXES:
            roles.append("t")
        elif n == 1:
            roles.append("1")
        else:
            raise fail(f"axis {a!r} of length {n} in {axes!r} is not supported (T, C, Z only)")
    n_z = int(np.prod([n for r, n in zip(roles, lead_shape, strict=True) if r == "z"] or [1]))
    if roles.count("z") > 1:
        raise fail("several z axes")
    if n_z > 1 and input_plane is None:
        raise fail(
            f"is a z-stack of {n_z} planes (axes {axes}); choose the plane to refocus from "
            f"with --input-plane (0..{n_z - 1})"
        )
    if input_plane is not None and not 0 <= input_plane < n_z:
        raise fail(
            f"--input-plane {input_plane} is outside the stack's {n_z} plane(s) (0..{n_z - 1})"
        )
    n_t = int(np.prod([n for r, n in zip(roles, lead_shape, strict=True) if r == "t"] or [1]))
    n_c = int(np.prod([n for r, n in zip(roles, lead_shape, strict=True) if r == "c"] or [1]))
    if n_t * n_c == 0 or h == 0 or w == 0:
        raise fail(f"is empty (shape {shape})")
    zi = int(input_plane or 0)
    pages = series.pages
    n_lead = int(np.prod(lead_shape)) if lead_shape else 1
    per_page = len(pages) == n_lead and "S" not in axes

    t_axes = [i for i, r in enumerate(roles) if r == "t"]
    t_shape = [lead_shape[i] for i in t_axes]

    def lead_index(t: int, c: int) -> tuple[int, ...]:
        tidx = np.unravel_index(t, t_shape) if t_shape else ()
        idx = []
        ti = iter(tidx)
        for r in roles:
            idx.append(int(next(ti)) if r == "t" else c if r == "c" else zi if r == "z" else 0)
        return tuple(idx)

    if per_page:

        def get(t: int, c: int) -> np.ndarray:
            j = int(np.ravel_multi_index(lead_index(t, c), lead_shape)) if lead_shape else 0
            try:
                return np.asarray(pages[j].asarray())  # type: ignore[union-attr]
            except Exception as exc:
                raise InputError(f"{p}: cannot read frame {t}, channel {c}: {exc}") from None

    else:
        try:
            data = series.asarray()
        except Exception as exc:
            raise fail(f"cannot read the pixels: {exc}") from None
        if "S" in axes:
            data = data[..., 0]

        def get(t: int, c: int) -> np.ndarray:
            return np.asarray(data[lead_index(t, c)])

    names = None
    if n_c > 1:
        names = [f"C{c}" for c in range(n_c)]
    return RefocusInput(
        path=p,
        axes=axes,
        shape=shape,
        dtype=dtype,
        n_frames=n_t,
        n_channels=n_c,
        height=h,
        width=w,
        pixel_size_um=_pixel_size(tf, series),
        input_plane=input_plane if n_z > 1 else None,
        channel_names=names,
        _get=get,
        _close=tf.close,
    )


class ArrayPlan:
    """A plan of K user DPMs ``(K, H, W)`` in µm (``--dpm dpm.tif``), the same every frame."""

    def __init__(self, dpms_um: np.ndarray, source: str = "") -> None:
        arr = np.asarray(dpms_um)
        if arr.dtype.kind not in "iuf":
            raise InputError(f"the DPM {source} must hold real numbers (µm), got {arr.dtype}")
        arr = np.array(arr, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or arr.size == 0:
            raise InputError(f"the DPM {source} must be (H, W) or (K, H, W), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise InputError(f"the DPM {source} contains NaN or inf")
        arr.flags.writeable = False
        self._dpms = arr
        self.source = source
        self.offsets_um = np.asarray(
            [float(np.round(np.median(d), 6)) for d in arr], dtype=np.float64
        )

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self._dpms.shape[1]), int(self._dpms.shape[2]))

    def dpms_for_frame(self, frame_index: int, timestamp_ms: float, shape: tuple[int, int]) -> Any:
        if tuple(shape) != self.shape:
            raise InputError(
                f"the DPM {self.source} is {self.shape[0]}×{self.shape[1]} px but the frames are "
                f"{shape[0]}×{shape[1]} px"
            )
        return self._dpms

    def check_range(
        self, z_range_um: tuple[float, float], shape: tuple[int, int], allow: bool = False
    ) -> bool:
        return check_range(self._dpms, z_range_um, allow=allow, what=f"the DPM {self.source}")

    def describe(self) -> dict[str, Any]:
        return {
            "type": "dpm_stack",
            "path": self.source,
            "offsets_um": [float(v) for v in self.offsets_um],
            "note": "per-plane median of the user DPMs",
        }


@dataclass
class RefocusSummary:
    output: str
    format: str
    frames: int
    channels: int
    planes: int
    seconds: float
    tiled: bool
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        rate = self.frames * self.channels * self.planes / self.seconds if self.seconds else 0
        out = [
            f"refocused: {self.output} ({self.format})",
            f"  {self.frames} frame(s) x {self.channels} channel(s) x {self.planes} plane(s) in "
            f"{self.seconds:.1f} s ({rate:.1f} planes/s){', tiled' if self.tiled else ''}",
        ]
        out += [f"  warning: {w}" for w in self.warnings]
        return out


def _model_meta(model: Any) -> dict[str, Any]:
    card = model.card
    return {
        "name": card.name,
        "path": str(model.path),
        "weights_sha256": model.weights_sha256,
        "card": card.to_dict(),
    }


def refocus_file(
    source: RefocusInput,
    output: str | os.PathLike[str],
    plan: PlanePlan,
    models: Sequence[Any],
    *,
    backend: str = "auto",
    precision: str = "auto",
    device: str = "auto",
    tile: int = 512,
    overlap: int = 64,
    allow_out_of_range: bool = False,
    format: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    backends: Sequence[Any] | None = None,
    units: str = "normalized",
) -> RefocusSummary:
    """Refocus every frame (and channel) of ``source`` onto ``plan``'s planes into ``output``.

    ``models``: one ``LoadedModel`` per channel, or one for all. ``backends`` (optional)
    overrides the backends made from the models (tests pass stand-ins). Frames larger than
    ``tile`` (> 0) on either axis run in overlapping tiles. ``units``: ``"normalized"``
    (the network's output) or ``"counts"`` (the normalisation undone: the input's camera
    units). The input is checked (size, NaN, normalisation) before any file is created, and
    a refocus that fails removes what it wrote.
    """
    t0 = time.perf_counter()
    n_c, h, w = source.n_channels, source.height, source.width
    models = list(models)
    if len(models) == 1 and n_c > 1:
        models = models * n_c
    if len(models) != n_c:
        raise InputError(
            f"{len(models)} model(s) given for {n_c} channels; give one --model per channel "
            "(comma-separated) or one for all"
        )
    notes: list[str] = []
    shape = (h, w)
    for c, m in enumerate(models):
        card = m.card
        which = f" (channel {c})" if n_c > 1 else ""
        check = getattr(plan, "check_range", None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if callable(check):
                check(tuple(card.z_range_um), shape, allow=allow_out_of_range)
            else:
                check_range(plan.offsets_um, card.z_range_um, allow=allow_out_of_range)
        notes += [str(x.message) + which for x in caught]
        mpx = float(card.optics.get("pixel_size_um", math.nan))
        spx = source.pixel_size_um
        if spx and math.isfinite(mpx) and abs(spx - mpx) > 0.1 * mpx:
            notes.append(
                f"the input's pixel size {spx:.4g} µm differs from the model's {mpx:.4g} µm"
                f"{which}; Deep-Z expects the magnification it was trained for"
            )
    try:
        # validate everything that can be validated before any output exists
        check_frame_size(h, w, str(source.path))
        firsts: list[np.ndarray] = []
        norms: list[Normalization] = []
        for c in range(n_c):
            first = _checked(source, 0, c)
            try:
                nz = fit_normalization(first)
            except InputError as exc:
                raise InputError(
                    f"{source.path}: cannot fit the intensity normalisation on frame 0"
                    f"{f', channel {c}' if n_c > 1 else ''}: {exc}"
                ) from None
            firsts.append(first)
            norms.append(nz)
        dpms = np.asarray(plan.dpms_for_frame(0, 0.0, shape), dtype=np.float32)
        k = int(dpms.shape[0])
        engines: list[Any]
        if backends is not None:
            engines = list(backends) * (n_c if len(backends) == 1 else 1)
        else:
            from .backends import create_backend

            cache: dict[int, Any] = {}
            engines = []
            for m in models:
                if id(m) not in cache:
                    cache[id(m)] = create_backend(
                        backend, m.generator, precision=precision, device=device
                    )
                engines.append(cache[id(m)])
        tiled = bool(tile) and max(h, w) > int(tile)
        if tiled:
            from ._tiling import ALIGN, TiledBackend

            # at most a quarter of the tile overlaps (aligned to the generator's 16 px grid)
            ov = min(int(overlap), int(tile) // 4 // ALIGN * ALIGN)
            wrapped: dict[int, Any] = {}
            engines = [
                wrapped.setdefault(id(e), TiledBackend(e, tile=int(tile), overlap=ov))
                for e in engines
            ]
        # one image: run the planes in groups so that the progress bar moves (planes, not images)
        n_images = source.n_frames * n_c
        group = k if n_images > 1 else max(1, -(-k // min(k, 16)))
        # the range was checked (with notes) above
        nets = [
            _plane_groups(
                Refocuser(m, allow_out_of_range=True).network_dpms(dpms, checked=False), group
            )
            for m in models
        ]
        engine_desc: list[Any] = []
        for e in engines:
            d = getattr(e, "describe", None)
            engine_desc.append(d() if callable(d) else type(e).__name__)
        meta = {
            "model": _model_meta(models[0]),
            "models": [_model_meta(m) for m in models] if n_c > 1 else None,
            "optics": dict(models[0].card.optics),
            "source": source.describe(),
            "plan": dict(plan.describe()),
            "engine": engine_desc[0] if len(engine_desc) == 1 else engine_desc,
            "warnings": notes,
            **(metadata or {}),
        }
        offsets = np.asarray(plan.offsets_um, dtype=np.float64)
        writer = RecordingWriter(
            output,
            frame_shape=shape,
            offsets_um=offsets,
            format=format,
            kind="refocus",
            channels=source.channel_names,
            pixel_size_um=source.pixel_size_um
            or float(models[0].card.optics.get("pixel_size_um", 0))
            or None,
            metadata=meta,
            overwrite=overwrite,
            units=units,
        )
    except BaseException:
        source.close()
        raise
    ok = False
    try:
        desc = dict(plan.describe())
        writer.add_plan(
            0, desc, first_index=0, offsets_um=offsets, surface_um=getattr(plan, "surface_um", None)
        )
        for c, nz in enumerate(norms):
            writer.set_normalization(nz.background, nz.scale, first_index=0, channel=c)
        out = np.empty((n_c, k, h, w), dtype=np.float32)
        x = np.empty(shape, dtype=np.float32)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n_images * k, desc="refocusing", unit="plane")
        for t in range(source.n_frames):
            for c in range(n_c):
                img = firsts[c] if t == 0 else _checked(source, t, c)
                norms[c].apply(img, out=x)
                _infer_groups(engines[c], x, nets[c], out[c], group, bar)
                check_finite_output(out[c], getattr(models[c], "path", None))
            ti = writer.append_frame(None, FrameInfo(index=t, plan_id=0))
            writer.write_planes(ti, out if n_c > 1 else out[0], plan_id=0, source="refocus")
        if bar is not None:
            bar.close()
        ok = True
    finally:
        if ok:
            writer.close({"seconds": round(time.perf_counter() - t0, 3)})
        else:  # a failed refocus leaves nothing it created behind
            writer.discard()
        source.close()
    return RefocusSummary(
        output=str(writer.paths.base),
        format=writer.format,
        frames=source.n_frames,
        channels=n_c,
        planes=k,
        seconds=time.perf_counter() - t0,
        tiled=tiled,
        warnings=notes,
    )


def _plane_groups(net: np.ndarray, group: int) -> list[np.ndarray]:
    """``(K, H, W)`` DPMs as read-only groups of ``group`` planes (the last one padded by
    repeating its final plane, so that every call has the backend's prepared shape)."""
    k = net.shape[0]
    out = []
    for s in range(0, k, group):
        g = net[s : s + group]
        if g.shape[0] < group:
            g = np.concatenate([g, np.repeat(g[-1:], group - g.shape[0], axis=0)])
        g = np.ascontiguousarray(g)
        g.flags.writeable = False
        out.append(g)
    return out


def _infer_groups(
    engine: Any, image: np.ndarray, groups: list[np.ndarray], out: np.ndarray, group: int, bar: Any
) -> None:
    k = out.shape[0]
    if len(groups) == 1 and group == k:
        engine.infer(image, groups[0], out)
        if bar is not None:
            bar.update(k)
        return
    buf = np.empty((group, *out.shape[1:]), dtype=np.float32)
    for i, g in enumerate(groups):
        s = i * group
        n = min(group, k - s)
        engine.infer(image, g, buf)
        out[s : s + n] = buf[:n]
        if bar is not None:
            bar.update(n)


def _checked(source: RefocusInput, t: int, c: int) -> np.ndarray:
    img = source.frame(t, c)
    if img.shape != (source.height, source.width):
        raise InputError(f"{source.path}: frame {t} has shape {img.shape}")
    if img.dtype.kind == "f" and not np.isfinite(img).all():
        bad = int(np.count_nonzero(~np.isfinite(img)))
        where = f"frame {t}" + (f", channel {c}" if source.n_channels > 1 else "")
        raise InputError(
            f"{source.path}: {where} has {bad} NaN/inf pixel(s); fill or crop them first"
        )
    return img
