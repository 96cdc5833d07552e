"""The recording panel: where and how to record, progress, disk space, the final summary.

A recording holds every raw camera frame (lossless; the record from which any plane can be
recomputed) plus the K virtual planes of each frame the engine processed live; the planes it
skipped are computed after the stop ("complete skipped planes"). See
:class:`live_deepz.engine._recorder.Recorder`.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ._session import Session

__all__ = ["RecordingPanel", "format_bytes", "next_recording_path"]

SUFFIX = {"tiff": ".ome.tif", "zarr": ".ome.zarr"}
LOW_DISK_S = 120.0
"""Warn when the free space lasts less than this at the current write rate."""
LOW_DISK_BYTES = 2 * 1024**3


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def next_recording_path(folder: str | Path, name: str, fmt: str) -> Path:
    """``folder/name.ome.tif`` (or ``.ome.zarr``); ``-2``, ``-3`` … appended if taken."""
    stem = name.strip() or time.strftime("live-deepz-%Y%m%d-%H%M%S")
    for suffix in (".ome.tif", ".ome.zarr", ".tif", ".zarr"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    folder = Path(folder).expanduser()
    path = folder / f"{stem}{SUFFIX[fmt]}"
    n = 2
    while path.exists() or path.with_name(f"{stem}.journal.jsonl").exists():
        path = folder / f"{stem}-{n}{SUFFIX[fmt]}"
        n += 1
    return path


class RecordingPanel(QGroupBox):
    """Target, format, what is recorded, the record button, progress and the summary."""

    def __init__(
        self, session: Session, folder: str = "", fmt: str = "tiff", parent: QWidget | None = None
    ) -> None:
        super().__init__("Recording", parent)
        self.session = session
        lay = QVBoxLayout(self)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        frow = QHBoxLayout()
        self.folder = QLineEdit(folder or str(Path.home()))
        self.folder.setToolTip("folder the recordings are written to")
        self.browse = QToolButton()
        self.browse.setText("…")
        self.browse.setToolTip("choose the folder")
        frow.addWidget(self.folder, 1)
        frow.addWidget(self.browse)
        form.addRow("Folder", frow)
        self.name = QLineEdit()
        self.name.setPlaceholderText("automatic: live-deepz-<date>-<time>")
        form.addRow("Name", self.name)
        self.format = QComboBox()
        self.format.addItem("OME-TIFF", "tiff")
        self.format.addItem("OME-Zarr", "zarr")
        if importlib.util.find_spec("zarr") is None:
            item = self.format.model().item(1)  # type: ignore[attr-defined]
            if item is not None:
                item.setEnabled(False)
            self.format.setItemData(
                1, "needs zarr: pip install 'live-deepz[zarr]'", Qt.ItemDataRole.ToolTipRole
            )
        self.format.setCurrentIndex(max(0, self.format.findData(fmt)))
        form.addRow("Format", self.format)
        self.planes = QLabel("")
        self.planes.setWordWrap(True)
        form.addRow("Planes", self.planes)
        self.raw = QCheckBox("raw camera frames")
        self.raw.setChecked(True)
        self.raw.setEnabled(False)
        self.raw.setToolTip(
            "always recorded: the raw frames are the lossless record; every plane can be "
            "recomputed from them"
        )
        form.addRow("Raw", self.raw)
        self.complete = QCheckBox("compute skipped planes after stop")
        self.complete.setChecked(True)
        self.complete.setToolTip(
            "the planes the live engine skipped are computed from the raw frames when the "
            "recording stops (otherwise later with `live-deepz complete`)"
        )
        form.addRow("", self.complete)
        lay.addLayout(form)
        self.button = QPushButton("●  Record")
        self.button.setObjectName("recordButton")
        self.button.setCheckable(True)
        self.button.setMinimumHeight(34)
        lay.addWidget(self.button)
        self.progress = QLabel("not recording")
        self.progress.setObjectName("dim")
        lay.addWidget(self.progress)
        self.disk = QLabel("")
        self.disk.setObjectName("dim")
        self.disk.setWordWrap(True)
        lay.addWidget(self.disk)
        self.summary = QPlainTextEdit()
        self.summary.setReadOnly(True)
        self.summary.setPlaceholderText("the summary of the last recording appears here")
        self.summary.setMaximumHeight(120)
        self.summary.setObjectName("summary")
        lay.addWidget(self.summary)
        self.path: Path | None = None
        self._t0 = 0.0
        self._last_written = 0
        self._rate_fps = 0.0

        self.browse.clicked.connect(self._browse)
        self.button.clicked.connect(self._clicked)
        session.recordingChanged.connect(self._on_recording)
        session.recordingFinished.connect(self._on_finished)
        session.planChanged.connect(self._show_plan)
        session.busyChanged.connect(lambda _: self._update_button())
        session.stateChanged.connect(lambda _: self._update_button())
        self._update_button()
        self.refresh()

    # -- actions
    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Record to folder", self.folder.text())
        if folder:
            self.folder.setText(folder)

    @property
    def fmt(self) -> str:
        return str(self.format.currentData())

    def start(self) -> None:
        """Start recording into the folder (the same as pressing Record)."""
        folder = Path(self.folder.text()).expanduser()
        if not folder.is_dir():
            self.session.notice.emit(
                "recording",
                "error",
                f"The record folder {folder} does not exist: choose an existing folder.",
            )
            self._update_button()
            return
        free = shutil.disk_usage(folder).free
        if free < LOW_DISK_BYTES:
            self.session.notice.emit(
                "disk",
                "warning",
                f"Only {format_bytes(free)} free on the disk of {folder}: the recording may "
                "stop early. Free some space or choose another folder.",
            )
        self.path = next_recording_path(folder, self.name.text(), self.fmt)
        self._t0 = time.perf_counter()
        self._last_written = 0
        self.session.notice.emit("recording", "error", "")
        self.session.start_recording(self.path, self.fmt, self.complete.isChecked())

    def stop(self) -> None:
        self.session.stop_recording()

    def _clicked(self) -> None:
        if self.session.recording:
            self.stop()
        else:
            self.start()
        self._update_button()

    # -- state
    def _update_button(self) -> None:
        s = self.session
        rec = s.recording
        self.button.blockSignals(True)
        self.button.setChecked(rec)
        self.button.blockSignals(False)
        self.button.setText("■  Stop recording" if rec else "●  Record")
        self.button.setProperty("recording", rec)
        self.button.style().unpolish(self.button)
        self.button.style().polish(self.button)
        self.button.setEnabled(s.ready and not s.busy)
        for w in (self.folder, self.browse, self.name, self.format, self.complete):
            w.setEnabled(not rec)

    def _on_recording(self, recording: bool) -> None:
        self._update_button()
        if recording:
            self.progress.setText(f"starting {self.path.name if self.path else ''} …")

    def _on_finished(self, summary: Any) -> None:
        self.summary.setPlainText("\n".join(summary.lines()))
        verdict = "complete" if summary.complete else f"{summary.incomplete} frame(s) incomplete"
        self.progress.setText(f"last recording: {summary.frames_recorded} frames, {verdict}")
        self._update_button()

    def _show_plan(self) -> None:
        s = self.session
        offs = s.plan_offsets()
        self.planes.setText(
            f"{offs.size} per frame: the grid {s.planes_spec} µm + the depth plane "
            f"{s.depth_um:+g} µm"
        )

    def refresh(self) -> None:
        """Progress and disk space (the window calls this a few times a second)."""
        s = self.session
        rec = s.recorder
        folder = Path(self.folder.text()).expanduser()
        try:
            free = float(shutil.disk_usage(folder if folder.is_dir() else Path.home()).free)
        except OSError:
            free = float("nan")
        if rec is not None:
            written = int(rec.frames_written)
            elapsed = max(1e-6, time.perf_counter() - self._t0)
            fps = written / elapsed
            bytes_per_frame = self._bytes_per_frame()
            rate = fps * bytes_per_frame
            self.progress.setText(
                f"● {written} frames written · {elapsed:.1f} s · {fps:.1f} fps · "
                f"{format_bytes(rate)}/s"
            )
            left = free / rate if rate > 0 else float("inf")
            self.disk.setText(
                f"disk: {format_bytes(free)} free"
                + (f" (~{_fmt_duration(left)} at this rate)" if rate > 0 else "")
            )
            if left < LOW_DISK_S:
                s.notice.emit(
                    "disk",
                    "warning",
                    f"Disk almost full: {format_bytes(free)} left, about {left:.0f} s of "
                    "recording. Stop the recording or free some space.",
                )
        else:
            self.disk.setText(f"disk: {format_bytes(free)} free in {folder}")

    def _bytes_per_frame(self) -> float:
        core = self.session.core
        if core is None:
            return 0.0
        h, w = int(core.getImageHeight()), int(core.getImageWidth())
        bpp = int(core.getBytesPerPixel())
        k = int(self.session.plan_offsets().size)
        return float(h * w * (bpp + 4 * k))


def _fmt_duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "∞"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
