"""The calibration wizard (tilt / curvature of the sample) and the calibration controls.

:class:`CalibrationWizard` is a non-modal :class:`QWizard` with one page per step of
:class:`~live_deepz.calibration.CalibrationWizardModel` (the logic, no Qt):

1. **Image** — the newest live frame (live keeps running; with live off one frame is
   snapped) or a TIFF;
2. **Focus** — per-bead (or per-tile) focus from a virtual sweep, with a progress bar;
3. **Fit** — the surface fit: the image with the points (colour = their focus z, red ×:
   outliers) and contour lines of the fitted surface, residuals against position, the
   numbers (tilt / azimuth or curvature, residual RMS, points used / inliers);
4. **Preview** — input vs refocused onto the surface, median bead FWHM before / after;
5. **Save** — calibration JSON + DPM TIFF, and *Apply to live plan* (the session's planes
   become ``surface + offsets``).

Every step runs on a worker thread (the sweep runs the model and takes seconds); Back / Next
wait for it. A step that fails (``StepResult.ok`` False: no beads, too few points, a surface
outside the model's range, …) says so on its page in plain words and *Next* stays disabled
until it succeeds.

:class:`CalibrationControls` is the "Calibration" group of the main window's controls: the
wizard button, the applied surface (with *Remove*) and the *Drift compensation* toggle.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QFont, QTransform
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from live_deepz.calibration import (
    DEFAULT_SWEEP,
    FIT_KINDS,
    CalibrationWizardModel,
    Step,
    StepResult,
)

from ._session import Session
from ._tasks import TaskRunner
from ._views import ImagePane

__all__ = ["CalibrationControls", "CalibrationWizard", "wizard_model_for_session"]

logger = logging.getLogger("live_deepz.ui")

_BG = "#101214"
_POINT_CMAP = "turbo"


def wizard_model_for_session(session: Session, **options: Any) -> CalibrationWizardModel:
    """A wizard model on the session's model and camera: its own eager engine (same device
    and precision as the live backend; the live one is prepared for the live frame size) and
    ``session.grab_frame`` as the snapshot."""
    from live_deepz.calibration import engine_refocus_fn

    if session.model is None:
        raise RuntimeError("the session has no model yet")
    backend = getattr(session.pipeline, "backend", None)
    refocus = engine_refocus_fn(
        session.model,
        "torch",
        precision=str(getattr(backend, "precision", "auto")),
        device=str(getattr(backend, "device", "cpu")),
    )
    px = session.pixel_size_um or float(session.model.card.optics["pixel_size_um"])
    return CalibrationWizardModel(refocus, px, **options)


def _set_role(label: QLabel, role: str) -> None:
    """``dim`` / ``error`` / ``warning`` (the theme's label styles)."""
    label.setObjectName(role)
    label.style().unpolish(label)
    label.style().polish(label)


# --------------------------------------------------------------------------- pages


class _StepPage(QWizardPage):
    """A page for one step: its result message (error in red) and warnings."""

    step: Step = Step.ACQUIRE

    def __init__(self, wizard: CalibrationWizard, title: str, subtitle: str) -> None:
        super().__init__()
        self.wiz = wizard
        self.setTitle(title)
        self.setSubTitle(subtitle)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warnings = QLabel("")
        self.warnings.setWordWrap(True)
        self.warnings.setVisible(False)
        _set_role(self.warnings, "warning")
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(4, 4, 4, 4)
        self.ok: bool | None = None
        """The last attempt's outcome (a failed re-run keeps the model's earlier result,
        but Next stays disabled until the step succeeds again)."""

    def add_messages(self) -> None:
        self.layout_.addWidget(self.message)
        self.layout_.addWidget(self.warnings)

    @property
    def done(self) -> bool:
        return self.step in self.wiz.model.completed

    def isComplete(self) -> bool:
        return self.done and self.ok is not False and not self.wiz.busy

    def show_result(self, res: StepResult) -> None:
        self.ok = res.ok
        self.message.setText(res.message if res.ok else f"✖ {res.message}")
        _set_role(self.message, "dim" if res.ok else "error")
        self.warnings.setText("\n".join(f"⚠ {w}" for w in res.warnings))
        self.warnings.setVisible(bool(res.warnings))

    def set_busy(self, busy: bool) -> None:
        """Enable / disable the page's own buttons while a step runs."""

    def after_step(self, res: StepResult) -> None:
        """Draw what the step produced (on the UI thread)."""

    def progress(self, fraction: float, message: str) -> None:
        """A progress report of this page's step."""


class _AcquirePage(_StepPage):
    step = Step.ACQUIRE

    def __init__(self, wizard: CalibrationWizard) -> None:
        super().__init__(
            wizard,
            "1 · Image",
            "A frame of sparse beads (or any point-like structure) on the surface to "
            "calibrate, roughly in focus. Take the current live frame or open a TIFF.",
        )
        row = QHBoxLayout()
        self.live_button = QPushButton("Use the live frame")
        self.open_button = QPushButton("Open TIFF…")
        row.addWidget(self.live_button)
        row.addWidget(self.open_button)
        row.addStretch(1)
        self.layout_.addLayout(row)
        self.image = ImagePane("gray")
        self.image.set_waiting("no image yet")
        self.layout_.addWidget(self.image, 1)
        self.add_messages()
        self.live_button.clicked.connect(self.use_live)
        self.open_button.clicked.connect(self._open)
        self.source_text = ""
        self.set_busy(False)

    def set_busy(self, busy: bool) -> None:
        has_live = self.wiz.model.snapshot is not None
        self.live_button.setEnabled(has_live and not busy)
        self.live_button.setToolTip(
            "the newest frame of the live stream (live keeps running); with live off, one "
            "frame is snapped"
            if has_live
            else "no microscope connected: open an image file"
        )
        self.open_button.setEnabled(not busy)

    def use_live(self) -> None:
        self.wiz.run_step("Taking a frame", self.wiz.model.acquire, self)

    def _open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a calibration image", self.wiz.folder, "TIFF (*.tif *.tiff)"
        )
        if path:
            self.load_path(path)

    def load_path(self, path: str | Path) -> None:
        self.wiz.run_step(
            f"Reading {Path(path).name}", lambda: self.wiz.model.load_file(path), self
        )

    def show_result(self, res: StepResult) -> None:
        src = self.wiz.snapshot_source
        if res.ok and self.wiz.model.source == "live snapshot" and src:
            res = StepResult(True, f"{res.message}: {src}", res.warnings)
        super().show_result(res)

    def after_step(self, res: StepResult) -> None:
        img = self.wiz.model.image_norm
        if res.ok and img is not None:
            self.image.auto_contrast()
            self.image.show_image(img, f" {self.wiz.model.source} ")
            self.image.set_pixel_size(self.wiz.model.pixel_size_um)


class _EstimatePage(_StepPage):
    step = Step.ESTIMATE

    def __init__(self, wizard: CalibrationWizard) -> None:
        super().__init__(
            wizard,
            "2 · Focus of each bead",
            "The model refocuses the frame over a virtual sweep; each bead's sharpest plane "
            "is where the sample surface lies under it. This runs the model on many planes "
            "(seconds; on the CPU it shares the cores with live).",
        )
        grid = QGridLayout()
        self.method = QComboBox()
        self.method.addItem("beads (point-like structure)", "beads")
        self.method.addItem("tiles (any texture)", "tiles")
        self.method.setCurrentIndex(0 if wizard.model.method == "beads" else 1)
        sweep = wizard.model.sweep_um
        self.sweep = QLineEdit(sweep if isinstance(sweep, str) else DEFAULT_SWEEP)
        self.sweep.setToolTip("sweep offsets in µm, start:stop:step; clipped to the model's range")
        self.run = QPushButton("Estimate focus")
        grid.addWidget(QLabel("Method"), 0, 0)
        grid.addWidget(self.method, 0, 1)
        grid.addWidget(QLabel("Sweep"), 1, 0)
        grid.addWidget(self.sweep, 1, 1)
        grid.addWidget(self.run, 0, 2, 2, 1)
        grid.setColumnStretch(1, 1)
        self.layout_.addLayout(grid)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.bar_text = QLabel("")
        _set_role(self.bar_text, "dim")
        self.layout_.addWidget(self.bar)
        self.layout_.addWidget(self.bar_text)
        self.add_messages()
        self.layout_.addStretch(1)
        self.run.clicked.connect(self.start)

    def initializePage(self) -> None:
        if not self.done and not self.wiz.busy:
            self.start()

    def set_busy(self, busy: bool) -> None:
        for w in (self.run, self.method, self.sweep):
            w.setEnabled(not busy)

    def start(self) -> None:
        m = self.wiz.model
        m.sweep_um = self.sweep.text().strip() or DEFAULT_SWEEP
        method = str(self.method.currentData())
        self.bar.setValue(0)
        self.bar_text.setText("starting the sweep…")
        self.wiz.run_step("Estimating the focus", lambda: m.estimate(method), self)

    def progress(self, fraction: float, message: str) -> None:
        self.bar.setValue(round(1000 * min(max(fraction, 0.0), 1.0)))
        self.bar_text.setText(message if fraction < 1.0 else "")


class _ReviewPage(_StepPage):
    step = Step.REVIEW

    def __init__(self, wizard: CalibrationWizard) -> None:
        super().__init__(
            wizard,
            "3 · Surface fit",
            "Points: each bead at its focus (colour = its focus z; red ×: outliers the fit "
            "left out). White lines: the fitted surface. Right: how far each point lies "
            "from the surface.",
        )
        top = QHBoxLayout()
        self.kind = QComboBox()
        for k in FIT_KINDS:
            self.kind.addItem(k)
        self.kind.setCurrentText(wizard.model.fit_kind)
        self.kind.setToolTip(
            "plane: tilt; quadratic: tilt + bowl/saddle; cylinder: a capillary or a bent "
            "coverslip; smooth: any gentle surface"
        )
        self.refit = QPushButton("Fit")
        top.addWidget(QLabel("Surface"))
        top.addWidget(self.kind)
        top.addWidget(self.refit)
        top.addStretch(1)
        self.layout_.addLayout(top)

        body = QHBoxLayout()
        self.image = ImagePane("gray")
        self.image.set_waiting("fitting…")
        self.points = pg.ScatterPlotItem(pxMode=True, size=15, brush=None)
        self.points.setZValue(15)
        self.outliers = pg.ScatterPlotItem(
            pxMode=True, size=11, symbol="x", pen=pg.mkPen("#ff5252", width=2), brush=None
        )
        self.outliers.setZValue(16)
        self.image.vb.addItem(self.points)
        self.image.vb.addItem(self.outliers)
        self.isocurves: list[Any] = []
        self.iso_labels: list[Any] = []
        self.colorbar: Any = None
        body.addWidget(self.image, 3)

        right = QVBoxLayout()
        axis_row = QHBoxLayout()
        axis_row.addWidget(QLabel("Residual against"))
        self.axis = QComboBox()
        self.axis.addItem("position along the tilt", "tilt")
        self.axis.addItem("x", "x")
        self.axis.addItem("y", "y")
        axis_row.addWidget(self.axis, 1)
        right.addLayout(axis_row)
        self.residual_plot = pg.PlotWidget(background=_BG)
        self.residual_plot.setLabel("left", "residual (µm)")
        self.residual_plot.getAxis("left").enableAutoSIPrefix(False)
        self.residual_plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.residual_plot.showGrid(x=True, y=True, alpha=0.25)
        self.residual_plot.addLine(y=0, pen=pg.mkPen("#888", style=Qt.PenStyle.DashLine))
        self.res_in = pg.ScatterPlotItem(
            size=7, pen=None, brush=pg.mkBrush("#4fc3f7"), name="inliers"
        )
        self.res_out = pg.ScatterPlotItem(
            size=9, symbol="x", pen=pg.mkPen("#ff5252", width=2), brush=None, name="outliers"
        )
        self.residual_plot.addItem(self.res_in)
        self.residual_plot.addItem(self.res_out)
        right.addWidget(self.residual_plot, 1)
        self.numbers = QPlainTextEdit()
        self.numbers.setReadOnly(True)
        self.numbers.setObjectName("summary")
        self.numbers.setMaximumHeight(150)
        right.addWidget(self.numbers)
        body.addLayout(right, 2)
        self.layout_.addLayout(body, 1)
        self.add_messages()
        self.refit.clicked.connect(self.start)
        self.kind.activated.connect(lambda _: self.start())
        self.axis.currentIndexChanged.connect(lambda _: self._draw_residuals())

    def initializePage(self) -> None:
        if not self.done and not self.wiz.busy:
            self.start()
        elif self.done:
            self.after_step(StepResult(True, ""))

    def show_result(self, res: StepResult) -> None:
        super().show_result(res)
        self.message.setVisible(not res.ok)  # success: the numbers box says it

    def set_busy(self, busy: bool) -> None:
        self.refit.setEnabled(not busy)
        self.kind.setEnabled(not busy)

    def start(self) -> None:
        kind = self.kind.currentText()
        self.wiz.run_step(f"Fitting a {kind}", lambda: self.wiz.model.fit(kind), self)

    def after_step(self, res: StepResult) -> None:
        m = self.wiz.model
        rd = m.review_data() if res.ok else None  # a failed re-fit: no stale overlay
        if m.image_norm is not None:
            self.image.show_image(m.image_norm, f" {m.source or ''} ")
            self.image.set_pixel_size(m.pixel_size_um)
        if rd is None:
            self.points.setData([])
            self.outliers.setData([])
            self.res_in.setData([])
            self.res_out.setData([])
            self._clear_isocurves()
            self.numbers.setPlainText("")
            return
        yx, z, inl = rd.points_yx_px, rd.z_um, rd.inlier.astype(bool)
        lo, hi = (float(np.min(z)), float(np.max(z))) if z.size else (0.0, 1.0)
        if hi - lo < 0.2:
            lo, hi = lo - 0.1, hi + 0.1
        cmap = pg.colormap.get(_POINT_CMAP)
        colors = cmap.map((z - lo) / (hi - lo), mode="qcolor") if z.size else []
        self.points.setData(  # rings: the bead stays visible inside
            x=yx[inl, 1] + 0.5,
            y=yx[inl, 0] + 0.5,
            pen=[pg.mkPen(c, width=2.5) for c, i in zip(colors, inl) if i],
            brush=None,
        )
        self.outliers.setData(x=yx[~inl, 1] + 0.5, y=yx[~inl, 0] + 0.5)
        self._draw_colorbar(cmap, lo, hi)
        self._draw_isocurves(rd.surface_um)
        self._draw_residuals()
        lines = rd.summary.splitlines()
        self.numbers.setPlainText("\n".join(lines))

    def _draw_colorbar(self, cmap: Any, lo: float, hi: float) -> None:
        if self.colorbar is None:
            self.colorbar = pg.ColorBarItem(
                values=(lo, hi),
                colorMap=cmap,
                interactive=False,
                width=14,
                label="bead focus z (µm)",
            )
            self.image.canvas.addItem(self.colorbar, row=0, col=1)
        else:
            self.colorbar.setLevels((lo, hi))

    def _clear_isocurves(self) -> None:
        for item in [*self.isocurves, *self.iso_labels]:
            self.image.vb.removeItem(item)
        self.isocurves, self.iso_labels = [], []

    def _draw_isocurves(self, surface: np.ndarray) -> None:
        self._clear_isocurves()
        s = np.asarray(surface, dtype=np.float64)
        lo, hi = float(s.min()), float(s.max())
        if not hi - lo > 0.05:
            return
        step = _nice_step((hi - lo) / 5)
        levels = np.arange(math.ceil(lo / step) * step, hi, step)
        stride = max(1, max(s.shape) // 256)
        small = s[::stride, ::stride]
        font = QFont()
        font.setPointSize(8)
        for v in levels:
            iso = pg.IsocurveItem(
                data=small, level=float(v), pen=pg.mkPen((255, 255, 255, 170), width=1)
            )
            iso.setTransform(QTransform.fromScale(stride, stride))
            iso.setZValue(12)
            self.image.vb.addItem(iso)
            self.isocurves.append(iso)
            # a label where the line crosses the image's middle row (or column)
            pos = _label_position(s, float(v))
            if pos is not None:
                label = pg.TextItem(
                    f"{v:+.2f} µm",
                    color=(255, 255, 255),
                    fill=pg.mkBrush(0, 0, 0, 150),
                    anchor=(0.5, 1.0),
                )
                label.setFont(font)
                label.setPos(pos[1], pos[0])
                label.setZValue(17)  # above the points
                self.image.vb.addItem(label)
                self.iso_labels.append(label)

    def _draw_residuals(self) -> None:
        rd = self.wiz.model.review_data()
        if rd is None:
            return
        px = self.wiz.model.pixel_size_um
        h, w = rd.surface_um.shape
        yx = (rd.points_yx_px - np.array([(h - 1) / 2, (w - 1) / 2])) * px
        mode = self.axis.currentData()
        if mode == "x":
            pos, label = yx[:, 1], "x from the centre (µm)"
        elif mode == "y":
            pos, label = yx[:, 0], "y from the centre (µm)"
        else:
            az = math.radians(float(rd.fit.get("azimuth_deg") or 0.0))
            pos = yx[:, 1] * math.cos(az) + yx[:, 0] * math.sin(az)
            label = f"position along the tilt, azimuth {math.degrees(az):.0f}° (µm)"
        inl = rd.inlier.astype(bool)
        self.res_in.setData(pos[inl], rd.residual_um[inl])
        self.res_out.setData(pos[~inl], rd.residual_um[~inl])
        self.residual_plot.setLabel("bottom", label)


class _PreviewPage(_StepPage):
    step = Step.PREVIEW

    def __init__(self, wizard: CalibrationWizard) -> None:
        super().__init__(
            wizard,
            "4 · Preview",
            "The frame as recorded (left) and refocused onto the fitted surface (right): "
            "beads across the whole field should be sharp on the right.",
        )
        row = QHBoxLayout()
        self.before = ImagePane("gray")
        self.after = ImagePane("gray")
        self.before.set_waiting("input")
        self.after.set_waiting("refocusing…")
        self.after.vb.setXLink(self.before.vb)
        self.after.vb.setYLink(self.before.vb)
        row.addWidget(self.before, 1)
        row.addWidget(self.after, 1)
        self.layout_.addLayout(row, 1)
        self.fwhm = QLabel("")
        f = self.fwhm.font()
        f.setPointSize(f.pointSize() + 1)
        f.setBold(True)
        self.fwhm.setFont(f)
        self.layout_.addWidget(self.fwhm)
        self.add_messages()

    def show_result(self, res: StepResult) -> None:
        super().show_result(res)
        self.message.setVisible(not res.ok)  # success: the FWHM line says it

    def initializePage(self) -> None:
        if not self.done and not self.wiz.busy:
            self.wiz.run_step("Refocusing onto the surface", self.wiz.model.preview, self)

    def after_step(self, res: StepResult) -> None:
        pv = self.wiz.model.preview_data
        if pv is None:
            return
        self.before.auto_contrast()
        self.after.auto_contrast()
        self.before.show_image(pv.input_image, " input ")
        self.after.show_image(pv.corrected_image, " refocused onto the surface ")
        px = self.wiz.model.pixel_size_um
        self.before.set_pixel_size(px)
        self.after.set_pixel_size(px)
        b, a = pv.median_before_um, pv.median_after_um
        if b is None or a is None:
            self.fwhm.setText("No beads to measure the lateral FWHM on.")
        else:
            nb, na = pv.stats_before.get("n", "?"), pv.stats_after.get("n", "?")
            self.fwhm.setText(
                f"Median lateral FWHM: {b:.2f} µm ({nb} beads) before  →  {a:.2f} µm "
                f"({na} beads) after"
            )


class _SavePage(_StepPage):
    step = Step.SAVE

    def __init__(self, wizard: CalibrationWizard) -> None:
        super().__init__(
            wizard,
            "5 · Save and apply",
            "Save the calibration (JSON: the surface and how it was measured; TIFF: the DPM "
            "in µm) and / or refocus the live planes onto the surface.",
        )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = Path(wizard.folder or ".").expanduser()
        grid = QGridLayout()
        self.json_path = QLineEdit(str(folder / f"calibration-{stamp}.json"))
        self.tif_path = QLineEdit(str(folder / f"calibration-{stamp}.dpm.tif"))
        b1, b2 = QPushButton("Browse…"), QPushButton("Browse…")
        grid.addWidget(QLabel("Calibration JSON"), 0, 0)
        grid.addWidget(self.json_path, 0, 1)
        grid.addWidget(b1, 0, 2)
        grid.addWidget(QLabel("DPM TIFF (µm)"), 1, 0)
        grid.addWidget(self.tif_path, 1, 1)
        grid.addWidget(b2, 1, 2)
        grid.setColumnStretch(1, 1)
        self.layout_.addLayout(grid)
        row = QHBoxLayout()
        self.save_button = QPushButton("Save")
        self.apply_button = QPushButton("Apply to live plan")
        row.addWidget(self.save_button)
        row.addWidget(self.apply_button)
        row.addStretch(1)
        self.layout_.addLayout(row)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        _set_role(self.summary, "dim")
        self.layout_.addWidget(self.summary)
        self.add_messages()
        self.layout_.addStretch(1)
        self.applied = False
        b1.clicked.connect(lambda: self._browse(self.json_path, "JSON (*.json)"))
        b2.clicked.connect(lambda: self._browse(self.tif_path, "TIFF (*.tif *.tiff)"))
        self.save_button.clicked.connect(self.save)
        self.apply_button.clicked.connect(self.apply)
        self.set_busy(False)

    def initializePage(self) -> None:
        sf = self.wiz.model.surface_fit
        self.summary.setText("" if sf is None else sf.summary().replace("\n", " · "))
        self.applied = False
        self.set_busy(bool(self.wiz.busy))

    def isComplete(self) -> bool:  # saved or applied (a failed apply keeps a saved file)
        return (self.done or self.applied) and not self.wiz.busy

    def set_busy(self, busy: bool) -> None:
        s = self.wiz.session
        self.save_button.setEnabled(not busy)
        can_apply = s is not None and s.pipeline is not None
        self.apply_button.setEnabled(can_apply and not busy)
        self.apply_button.setToolTip(
            "refocus the live planes onto this surface (planes = surface + offsets)"
            if can_apply
            else "no live session: save, then use the file with `live-deepz refocus --surface`"
        )

    def _browse(self, edit: QLineEdit, filt: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save as", edit.text(), filt)
        if path:
            edit.setText(path)

    def save(self) -> None:
        j = self.json_path.text().strip()
        t = self.tif_path.text().strip() or None
        if not j:
            self.show_result(StepResult(False, "give a file name for the calibration JSON"))
            return
        for p in (j, t):
            if p:
                Path(p).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.wiz.run_step("Saving", lambda: self.wiz.model.save(j, t), self)

    def apply(self) -> None:
        s = self.wiz.session
        if s is None:
            return
        err = s.apply_calibration(self.wiz.model)
        if err:
            self.show_result(StepResult(False, err))
        else:
            self.applied = True
            self.show_result(
                StepResult(True, "The live planes now follow the fitted surface (+ offsets).")
            )
        self.completeChanged.emit()


# --------------------------------------------------------------------------- the wizard


class CalibrationWizard(QWizard):
    """The calibration wizard on a :class:`Session` (or on a given wizard ``model``).

    Signals
    -------
    stepFinished(str, object) : a step ended: ``(step name, StepResult)``.
    """

    stepFinished = Signal(str, object)
    _progressed = Signal(str, float, str)

    def __init__(
        self,
        session: Session | None = None,
        model: CalibrationWizardModel | None = None,
        parent: QWidget | None = None,
        folder: str = "",
    ) -> None:
        super().__init__(parent)
        self.setObjectName("calibrationWizard")
        self.setWindowTitle("Calibrate tilt / curvature")
        self.session = session
        self.folder = folder
        self.snapshot_source = ""
        if model is None:
            if session is None:
                raise ValueError("give a session or a wizard model")
            model = wizard_model_for_session(session)
        if model.snapshot is None and session is not None and session.core is not None:
            model.snapshot = self._grab
        self.model = model
        model.progress = lambda step, f, msg: self._progressed.emit(step, f, msg)
        self._progressed.connect(self._on_progress)
        self.tasks = TaskRunner(self)
        self.busy = ""
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage, True)
        self.setModal(False)
        self.pages: list[_StepPage] = [
            _AcquirePage(self),
            _EstimatePage(self),
            _ReviewPage(self),
            _PreviewPage(self),
            _SavePage(self),
        ]
        for page in self.pages:
            self.addPage(page)
        self.resize(1150, 780)
        self.rejected.connect(self._abandon)
        self.finished.connect(lambda _: self._abandon())

    def _grab(self) -> Any:
        assert self.session is not None
        frame, self.snapshot_source = self.session.grab_frame()
        return frame

    @property
    def page_for(self) -> dict[Step, _StepPage]:
        return {p.step: p for p in self.pages}

    def run_step(self, what: str, fn: Callable[[], StepResult], page: _StepPage) -> None:
        """Run a step on the worker thread; the page shows its result."""
        if self.busy:
            return
        self._set_busy(what)
        page.message.setText(f"{what}…")
        _set_role(page.message, "dim")
        page.warnings.setVisible(False)

        def done(res: StepResult) -> None:
            self._set_busy("")
            try:
                page.after_step(res)
            except Exception as exc:  # a drawing bug must not leave the wizard stuck
                logger.exception("calibration wizard: drawing the %s step failed", page.step)
                res = StepResult(False, f"internal error drawing the result: {exc!r}")
            page.show_result(res)
            page.completeChanged.emit()
            self.stepFinished.emit(page.step.value, res)

        def failed(exc: BaseException) -> None:
            done(StepResult(False, f"internal error: {type(exc).__name__}: {exc}"))

        self.tasks.submit(what, fn, done, failed)

    def _set_busy(self, what: str) -> None:
        self.busy = what
        for p in self.pages:
            p.set_busy(bool(what))
        cur = self.currentPage()
        if isinstance(cur, _StepPage):
            cur.completeChanged.emit()  # QWizard re-evaluates Next / Finish
        if what:
            self.button(QWizard.WizardButton.BackButton).setEnabled(False)

    def _on_progress(self, step: str, fraction: float, message: str) -> None:
        page = self.page_for.get(Step(step))
        if page is not None:
            page.progress(fraction, message)

    def _abandon(self) -> None:
        """Closed: drop the results of a step still running (its thread ends on its own)."""
        self.tasks.shutdown(0.0)


def _nice_step(x: float) -> float:
    """A round step (1, 2, 5 × 10^n) close to ``x``."""
    if not x > 0:
        return 1.0
    e = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 5, 10):
        if m * e >= x:
            return float(m * e)
    return float(10 * e)


def _label_position(surface: np.ndarray, level: float) -> tuple[float, float] | None:
    """``(y, x)`` of the point of the contour ``level`` nearest the image centre (pixels
    where the surface changes sign against the level), None when it is not in the image."""
    d = np.sign(surface - level)
    edge = np.zeros(surface.shape, dtype=bool)
    edge[:, :-1] |= d[:, :-1] * d[:, 1:] <= 0
    edge[:-1, :] |= d[:-1, :] * d[1:, :] <= 0
    ys, xs = np.nonzero(edge)
    if ys.size == 0:
        return None
    h, w = surface.shape
    # nearest the centre, kept a little inside the frame so the label stays readable
    cost = np.hypot(ys - h / 2, xs - w / 2)
    inside = (ys > 0.08 * h) & (ys < 0.92 * h) & (xs > 0.08 * w) & (xs < 0.92 * w)
    if inside.any():
        cost = np.where(inside, cost, np.inf)
    i = int(np.argmin(cost))
    return float(ys[i]) + 0.5, float(xs[i]) + 0.5


# --------------------------------------------------------------------------- controls


DRIFT_TRACK_LABELS = (("sharpest focus", "focus"), ("plane in view", "keyframe"))
"""The drift-tracking choices shown to the user and the ``track`` each selects."""


class CalibrationControls(QGroupBox):
    """The wizard button, the applied surface, and the drift-compensation toggle.

    ``calibrateRequested`` asks the window to open the wizard.
    """

    calibrateRequested = Signal()

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Calibration", parent)
        self.session = session
        lay = QVBoxLayout(self)
        self.calibrate_button = QPushButton("Calibrate tilt / curvature…")
        self.calibrate_button.setToolTip(
            "measure the sample's tilt or curvature from beads and refocus the live planes onto it"
        )
        lay.addWidget(self.calibrate_button)
        row = QHBoxLayout()
        self.surface = QLabel("Surface: flat (no calibration)")
        self.surface.setWordWrap(True)
        self.surface.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        _set_role(self.surface, "dim")
        self.remove = QPushButton("Remove")
        self.remove.setToolTip("back to flat planes")
        row.addWidget(self.surface, 1)
        row.addWidget(self.remove)
        lay.addLayout(row)
        self.drift = QCheckBox("Drift compensation")
        self.drift.setToolTip(
            "track the sample's focus from the frames and keep the planes on it (the "
            "estimate is extra inference: on the CPU every 5th frame or less often)"
        )
        self.drift_track = QComboBox()
        for label, track in DRIFT_TRACK_LABELS:
            self.drift_track.addItem(label, track)
        self.drift_track.setToolTip(
            "sharpest focus: the planes go where a focus measure finds the sample sharpest; "
            "plane in view: they hold the plane shown when compensation is switched on, "
            "following the change found by matching each frame with that first one (the "
            "reliable mode with a trained model). Switch compensation off to change it."
        )
        self.drift_track.currentIndexChanged.connect(self._track_changed)
        row = QHBoxLayout()
        row.addWidget(self.drift)
        row.addWidget(self.drift_track, 1)
        lay.addLayout(row)
        self.drift_status = QLabel("")
        self.drift_status.setWordWrap(True)
        _set_role(self.drift_status, "dim")
        lay.addWidget(self.drift_status)
        self.calibrate_button.clicked.connect(self.calibrateRequested)
        self.remove.clicked.connect(self._remove)
        self.drift.toggled.connect(self._toggled)
        for sig in (
            session.driftChanged,
            session.calibrationChanged,
            session.recordingChanged,
            session.busyChanged,
            session.modelChanged,
            session.opened,
        ):
            sig.connect(lambda *_: self.refresh())
        self.refresh()

    def _track_changed(self, index: int) -> None:
        self.session.drift_track = str(self.drift_track.itemData(index))

    def _toggled(self, on: bool) -> None:
        err = self.session.set_drift_compensation(on)
        if err:
            self._show_status(err, "error")
        self.refresh(keep_error=bool(err))

    def _remove(self) -> None:
        err = self.session.clear_calibration()
        if err:
            self._show_status(err, "error")

    def _show_status(self, text: str, role: str) -> None:
        self.drift_status.setText(text)
        _set_role(self.drift_status, role)

    def refresh(self, keep_error: bool = False) -> None:
        s = self.session
        ready = s.pipeline is not None
        self.calibrate_button.setEnabled(ready and s.model is not None)
        cal = s.calibration
        self.surface.setText(
            "Surface: flat (no calibration)" if cal is None else f"Surface: {cal.summary}"
        )
        self.remove.setEnabled(cal is not None and not s.recording)
        self.drift.blockSignals(True)
        self.drift.setChecked(s.drift_enabled)
        self.drift.blockSignals(False)
        self.drift.setEnabled(ready and not s.recording)
        i = self.drift_track.findData(s.drift_track)
        if i >= 0 and i != self.drift_track.currentIndex():
            self.drift_track.blockSignals(True)
            self.drift_track.setCurrentIndex(i)
            self.drift_track.blockSignals(False)
        self.drift_track.setEnabled(not s.drift_enabled and not s.recording)
        if keep_error:
            return
        if s.recording:
            self._show_status("fixed while recording", "dim")
        elif s.drift_enabled and s.drift_plan is None:
            self._show_status("preparing the drift estimator…", "dim")
        elif s.drift_plan is not None:
            n = s.drift_plan.estimator.every_n
            what = "change since the start" if s.drift_plan.hold == "initial" else "focus"
            self._show_status(f"on: {what} estimated every {n} frames (see the Drift panel)", "dim")
        else:
            self._show_status("", "dim")
