"""Derived views computed off the UI thread: the depth-coded MIP and the x–z section.

A projection of K 512² planes costs 15–30 ms of numpy (more on a busy CPU); done in the
display timer it would make the window stutter each time a plane frame arrives. The
:class:`DerivedWorker` thread takes the newest job only (older ones are dropped, never
queued), computes in numpy (which releases the GIL) and hands the result back to the UI
thread through a queued signal; the UI thread only uploads the images.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass

import numpy as np
from qtpy.QtCore import QObject, Signal

from ._render import auto_levels, depth_mip, xz_section

__all__ = ["DerivedJob", "DerivedResult", "DerivedWorker"]

logger = logging.getLogger("live_deepz.ui")


@dataclass
class DerivedJob:
    """What to compute. ``planes=None``: reuse the last planes (the line moved)."""

    planes: np.ndarray | None
    """``(K, H, W)`` float32, owned by the job (a copy of the display frame's planes)."""
    offsets_um: np.ndarray
    colors: np.ndarray
    """``(K, 3)`` depth colours for the MIP (RGB 0..1)."""
    mip_levels: tuple[float, float] | None
    """MIP brightness; ``None``: automatic (from this frame)."""
    xz_levels: tuple[float, float] | None
    line: tuple[tuple[float, float], tuple[float, float]]
    pixel_size_um: float
    want_mip: bool = True
    want_xz: bool = True
    frame_index: int = -1


@dataclass
class DerivedResult:
    rgb: np.ndarray | None
    mip_levels: tuple[float, float] | None
    section: np.ndarray | None
    z_um: np.ndarray | None
    xz_levels: tuple[float, float] | None
    line: tuple[tuple[float, float], tuple[float, float]]
    pixel_size_um: float
    offsets_um: np.ndarray
    frame_index: int


class DerivedWorker(QObject):
    """One worker thread; ``submit`` replaces any job not started yet; ``ready`` delivers
    :class:`DerivedResult` on the UI thread."""

    ready = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cond = threading.Condition()
        self._job: DerivedJob | None = None
        self._closed = False
        self._last_planes: tuple[np.ndarray, np.ndarray] | None = None
        self.busy = False
        self.done = 0
        self._thread = threading.Thread(target=self._run, name="live-deepz-ui-derived", daemon=True)
        self._thread.start()

    def submit(self, job: DerivedJob) -> None:
        with self._cond:
            if self._closed:
                return
            if job.planes is None and self._job is not None and self._job.planes is not None:
                # a line move while a frame waits: keep the frame's planes, take the new line
                self._job.line = job.line
                self._job.want_xz = True
                return
            self._job = job
            self._cond.notify()

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._job = None
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                job, self._job = self._job, None
                if self._closed or job is None:
                    return
                self.busy = True
            try:
                result = self._compute(job)
            except Exception:  # a bad frame must not kill the worker: log it, go on
                logger.exception("computing the MIP / x-z section failed")
                result = None
            finally:
                self.busy = False
            if result is not None:
                self.done += 1
                with contextlib.suppress(RuntimeError):  # the window is gone
                    self.ready.emit(result)

    def _compute(self, job: DerivedJob) -> DerivedResult | None:
        if job.planes is not None:
            self._last_planes = (job.planes, job.offsets_um)
        if self._last_planes is None:
            return None
        planes, offsets = self._last_planes
        rgb = None
        mip_levels = job.mip_levels
        if job.want_mip and job.planes is not None:
            if mip_levels is None:
                mip_levels = auto_levels(planes.max(axis=0))
            rgb = depth_mip(planes, job.colors, mip_levels)
        section = z = None
        xz_levels = job.xz_levels
        if job.want_xz:
            section, z = xz_section(planes, offsets, *job.line)
            if xz_levels is None:
                xz_levels = auto_levels(section)
        return DerivedResult(
            rgb=rgb,
            mip_levels=mip_levels,
            section=section,
            z_um=z,
            xz_levels=xz_levels,
            line=job.line,
            pixel_size_um=job.pixel_size_um,
            offsets_um=offsets,
            frame_index=job.frame_index,
        )
