"""Control panels: live start/stop, camera exposure and stages, the plane plan, the model.

Each panel takes the :class:`~live_deepz.ui.Session` it controls. Stage and exposure
widgets are plain spin boxes bound to the core and to its events (re-emitted on the UI
thread by :class:`~live_deepz.ui.CoreEvents`), so a change made elsewhere (another
program, the stage's own knob) shows up here. pymmcore-widgets' stage widget is not used: it
draws its arrows with icons fetched from the internet (pyconify), which fails offline.
"""

from __future__ import annotations

import html
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ._session import Session

__all__ = ["LiveButton", "MicroscopeControls", "ModelPanel", "PlanEditor"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _spin(suffix: str, lo: float, hi: float, decimals: int, step: float) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    s.setSingleStep(step)
    s.setSuffix(suffix)
    s.setKeyboardTracking(False)  # act on Enter / focus out / arrows, not on every digit
    s.setAlignment(Qt.AlignmentFlag.AlignRight)
    return s


def _small_button(text: str, tip: str) -> QToolButton:
    b = QToolButton()
    b.setText(text)
    b.setToolTip(tip)
    b.setMinimumWidth(28)
    return b


class LiveButton(QPushButton):
    """Start / stop live; shows the session's state (starting, live, stopping, error)."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Start live", parent)
        self.session = session
        self.setObjectName("liveButton")
        self.setCheckable(True)
        self.setMinimumHeight(38)
        self.clicked.connect(self._clicked)
        session.stateChanged.connect(self.refresh)
        session.busyChanged.connect(lambda _: self.refresh())
        self.refresh()

    def _clicked(self) -> None:
        s = self.session
        if s.state == "running":
            s.stop_live()
        else:
            s.start_live()
        self.refresh()

    def refresh(self, *_: Any) -> None:
        s = self.session
        state = s.state
        busy = bool(s.busy)
        self.blockSignals(True)
        self.setChecked(state == "running")
        self.blockSignals(False)
        if state == "loading":
            self.setText("Starting…")
        elif state == "stopping":
            self.setText("Stopping…")
        elif state == "running":
            self.setText("■  Stop live")
        else:
            self.setText("▶  Start live")
        self.setEnabled(state != "loading" and state != "stopping" and not busy)
        self.setProperty("live", state == "running")
        self.style().unpolish(self)
        self.style().polish(self)


class MicroscopeControls(QGroupBox):
    """Exposure, focus (Z) and XY stage, bound to the core and its events."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Microscope", parent)
        self.session = session
        form = QGridLayout(self)
        form.setHorizontalSpacing(6)
        form.setVerticalSpacing(4)

        self.exposure_spin = _spin(" ms", 0.1, 10000.0, 1, 1.0)
        self.exposure_spin.setToolTip(
            "camera exposure; the simulated camera runs at 1000/exposure fps"
        )
        form.addWidget(QLabel("Exposure"), 0, 0)
        form.addWidget(self.exposure_spin, 0, 1, 1, 3)

        self.z_spin = _spin(" µm", -100000.0, 100000.0, 2, 1.0)
        self.z_spin.setToolTip("focus drive position (µm)")
        self.z_step = _spin(" µm", 0.01, 1000.0, 2, 0.5)
        self.z_step.setValue(1.0)
        self.z_step.setToolTip("step of the ▲ ▼ buttons")
        self.z_down = _small_button("▼", "focus down by one step")
        self.z_up = _small_button("▲", "focus up by one step")
        form.addWidget(QLabel("Focus Z"), 1, 0)
        form.addWidget(self.z_spin, 1, 1)
        form.addWidget(self.z_down, 1, 2)
        form.addWidget(self.z_up, 1, 3)
        form.addWidget(QLabel("Z step"), 2, 0)
        form.addWidget(self.z_step, 2, 1)

        self.x_spin = _spin(" µm", -1e6, 1e6, 1, 10.0)
        self.y_spin = _spin(" µm", -1e6, 1e6, 1, 10.0)
        self.xy_step = _spin(" µm", 0.1, 100000.0, 1, 10.0)
        self.xy_step.setValue(50.0)
        self.xy_step.setToolTip("step of the arrow buttons")
        self.left, self.right = _small_button("◀", "move −X"), _small_button("▶", "move +X")
        self.up, self.down = _small_button("▲", "move −Y"), _small_button("▼", "move +Y")
        form.addWidget(QLabel("Stage X"), 3, 0)
        form.addWidget(self.x_spin, 3, 1)
        form.addWidget(self.left, 3, 2)
        form.addWidget(self.right, 3, 3)
        form.addWidget(QLabel("Stage Y"), 4, 0)
        form.addWidget(self.y_spin, 4, 1)
        form.addWidget(self.up, 4, 2)
        form.addWidget(self.down, 4, 3)
        form.addWidget(QLabel("XY step"), 5, 0)
        form.addWidget(self.xy_step, 5, 1)
        form.setColumnStretch(1, 1)
        self.setEnabled(False)

        self.exposure_spin.valueChanged.connect(self._set_exposure)
        self.z_spin.valueChanged.connect(self._set_z)
        self.z_up.clicked.connect(
            lambda: self.z_spin.setValue(self.z_spin.value() + self.z_step.value())
        )
        self.z_down.clicked.connect(
            lambda: self.z_spin.setValue(self.z_spin.value() - self.z_step.value())
        )
        self.x_spin.valueChanged.connect(self._set_xy)
        self.y_spin.valueChanged.connect(self._set_xy)
        step = self.xy_step.value
        self.left.clicked.connect(lambda: self.x_spin.setValue(self.x_spin.value() - step()))
        self.right.clicked.connect(lambda: self.x_spin.setValue(self.x_spin.value() + step()))
        self.up.clicked.connect(lambda: self.y_spin.setValue(self.y_spin.value() - step()))
        self.down.clicked.connect(lambda: self.y_spin.setValue(self.y_spin.value() + step()))
        session.opened.connect(self.bind)

    def bind(self) -> None:
        """Read the core's values and follow its events (called when the session opens)."""
        s = self.session
        core, ev = s.core, s.events
        if core is None or ev is None:
            return
        self.setEnabled(True)
        self._show(self.exposure_spin, float(core.getExposure()))
        has_z = bool(core.getFocusDevice())
        for w in (self.z_spin, self.z_up, self.z_down, self.z_step):
            w.setEnabled(has_z)
        if has_z:
            self._show(self.z_spin, float(core.getPosition()))
        has_xy = bool(core.getXYStageDevice())
        for w in (
            self.x_spin,
            self.y_spin,
            self.left,
            self.right,
            self.up,
            self.down,
            self.xy_step,
        ):
            w.setEnabled(has_xy)
        if has_xy:
            x, y = core.getXYPosition()
            self._show(self.x_spin, float(x))
            self._show(self.y_spin, float(y))
        ev.exposureChanged.connect(lambda v: self._show(self.exposure_spin, v))
        ev.focusChanged.connect(lambda v: self._show(self.z_spin, v))
        ev.xyChanged.connect(self._on_xy)

    @staticmethod
    def _show(spin: QDoubleSpinBox, value: float) -> None:
        if abs(spin.value() - value) > 10 ** (-spin.decimals()) / 2:
            spin.blockSignals(True)
            spin.setValue(value)
            spin.blockSignals(False)

    def _on_xy(self, x: float, y: float) -> None:
        self._show(self.x_spin, x)
        self._show(self.y_spin, y)

    def _core_call(self, what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self.session.notice.emit("device", "error", f"Could not {what}: {exc}")
        else:
            self.session.notice.emit("device", "error", "")

    def _set_exposure(self, value: float) -> None:
        core = self.session.core
        if core is not None:
            self._core_call("set the exposure", core.setExposure, float(value))

    def _set_z(self, value: float) -> None:
        core = self.session.core
        if core is not None and core.getFocusDevice():
            self._core_call("move the focus", core.setPosition, float(value))

    def _set_xy(self, *_: Any) -> None:
        core = self.session.core
        if core is not None and core.getXYStageDevice():
            self._core_call(
                "move the stage",
                core.setXYPosition,
                float(self.x_spin.value()),
                float(self.y_spin.value()),
            )


class PlanEditor(QGroupBox):
    """The grid's plane plan: ``-10:10:2`` (ends included), ``-4,0,4`` or mixed.

    Checked as you type (syntax and the model's trained range); problems show in red under
    the field; Enter or *Apply* sends a valid plan to the pipeline.
    """

    applied = Signal(str)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Planes", parent)
        self.session = session
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("-10:10:2   or   -4,0,4")
        self.edit.setToolTip(
            "plane offsets in µm: start:stop:step (both ends included), numbers separated "
            "by commas, or both; + = deeper into the sample"
        )
        self.apply = QPushButton("Apply")
        row.addWidget(self.edit, 1)
        row.addWidget(self.apply)
        lay.addLayout(row)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setObjectName("dim")
        lay.addWidget(self.status)
        self.edit.textEdited.connect(self.validate)
        self.edit.returnPressed.connect(self.commit)
        self.apply.clicked.connect(self.commit)
        session.planChanged.connect(self.refresh)
        session.modelChanged.connect(self.refresh)
        session.recordingChanged.connect(self._on_recording)

    def refresh(self) -> None:
        s = self.session
        if not self.edit.hasFocus() or not self.edit.text():
            self.edit.setText(s.planes_spec)
        self.validate()

    def validate(self, *_: Any) -> bool:
        offsets, err = self.session.validate_planes(self.edit.text())
        if offsets is None:
            self._show(err, error=True)
            self.apply.setEnabled(False)
            return False
        lo, hi = self.session.z_range_um
        self._show(
            f"{offsets.size} planes {offsets.min():+g} … {offsets.max():+g} µm "
            f"(model range {lo:+g} … {hi:+g} µm)",
            error=False,
        )
        self.apply.setEnabled(not self.session.recording)
        return True

    def commit(self) -> None:
        if not self.validate():
            return
        err = self.session.set_planes(self.edit.text().strip())
        if err:
            self._show(err, error=True)
        else:
            self.applied.emit(self.edit.text().strip())

    def _show(self, text: str, error: bool) -> None:
        self.status.setText(text)
        self.status.setObjectName("error" if error else "dim")
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)

    def _on_recording(self, recording: bool) -> None:
        self.edit.setEnabled(not recording)
        self.apply.setEnabled(not recording)
        if recording:
            self._show("Planes are fixed while recording.", error=False)
        else:
            self.validate()


class ModelPanel(QGroupBox):
    """Model picker with its card, a warning when it does not fit the microscope, and the
    inference backend / precision."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Model", parent)
        self.session = session
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.combo = QComboBox()
        self.combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.combo.setToolTip("installed models ($LIVE_DEEPZ_MODELS and bundled)")
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("open a model folder (model.safetensors + card.json)")
        row.addWidget(self.combo, 1)
        row.addWidget(self.open_button)
        lay.addLayout(row)
        self.card = QLabel("")
        self.card.setWordWrap(True)
        self.card.setTextFormat(Qt.TextFormat.RichText)
        self.card.setObjectName("card")
        lay.addWidget(self.card)
        self.warning = QLabel("")
        self.warning.setWordWrap(True)
        self.warning.setObjectName("warning")
        self.warning.setVisible(False)
        lay.addWidget(self.warning)
        eng = QHBoxLayout()
        self.backend = QComboBox()
        self.backend.setToolTip("inference backend")
        self.precision = QComboBox()
        self.precision.addItems(PRECISIONS)
        self.precision.setToolTip("inference precision (auto: bf16 on capable CPUs, fp16 on GPUs)")
        self.apply_engine = QPushButton("Apply")
        self.apply_engine.setToolTip("rebuild the engine with this backend and precision")
        eng.addWidget(QLabel("Engine"))
        eng.addWidget(self.backend, 1)
        eng.addWidget(self.precision)
        eng.addWidget(self.apply_engine)
        lay.addLayout(eng)
        self._fill_backends()
        self._paths: list[str] = []
        self.combo.activated.connect(self._picked)
        self.open_button.clicked.connect(self._open)
        self.apply_engine.clicked.connect(self._apply_engine)
        session.modelChanged.connect(self.refresh)
        session.busyChanged.connect(self._busy)
        session.recordingChanged.connect(lambda _: self._busy(session.busy))

    def _fill_backends(self) -> None:
        self.backend.clear()
        self.backend.addItem("auto")
        try:
            from live_deepz.engine import available_backends

            avail = available_backends()
        except Exception:  # no engine: only auto
            avail = {}
        for name, text in avail.items():
            if name == "auto":
                self.backend.setItemData(0, f"auto: {text}", Qt.ItemDataRole.ToolTipRole)
                continue
            self.backend.addItem(name)
            i = self.backend.count() - 1
            self.backend.setItemData(i, text, Qt.ItemDataRole.ToolTipRole)
            if not text.startswith("available"):
                item = self.backend.model().item(i)  # type: ignore[attr-defined]
                if item is not None:
                    item.setEnabled(False)

    def _busy(self, busy: str) -> None:
        enabled = not busy and not self.session.recording and self.session.core is not None
        for w in (self.combo, self.open_button, self.apply_engine, self.backend, self.precision):
            w.setEnabled(enabled)

    def refresh(self) -> None:
        s = self.session
        from live_deepz.modelfile import available_models

        self._paths = [str(p) for p in available_models()]
        self.combo.blockSignals(True)
        self.combo.clear()
        for p in self._paths:
            self.combo.addItem(p.rsplit("/", 1)[-1], p)
        current = "" if s.model is None else str(s.model.path)
        if s.model_is_standin:
            self.combo.insertItem(0, "untrained stand-in (no model installed)", "")
            self.combo.setCurrentIndex(0)
        elif current and current not in self._paths:
            self.combo.insertItem(0, s.model.card.name, current)
            self.combo.setCurrentIndex(0)
        elif current:
            self.combo.setCurrentIndex(self._paths.index(current))
        self.combo.blockSignals(False)
        self.card.setText(self._card_html())
        problems = s.optics_problems() if not s.model_is_standin else []
        if s.model_is_standin:
            self.warning.setText("⚠ Untrained network: planes are NOT refocused images.")
        elif problems:
            self.warning.setText("⚠ Mismatch: " + "; ".join(problems) + ".")
        self.warning.setVisible(s.model_is_standin or bool(problems))
        self.backend.setCurrentText(s.config.backend)
        self.precision.setCurrentText(s.config.precision)
        self._busy(s.busy)

    def _card_html(self) -> str:
        s = self.session
        if s.model is None:
            return "<i>loading…</i>"
        c = s.model.card
        o = c.optics
        lo, hi = c.z_range_um
        px = s.pixel_size_um
        na = s.na
        rows = [
            ("name", html.escape(c.name)),
            (
                "trained for",
                f"NA {o['na']:.3g} · λ {o['wavelength_um'] * 1e3:.0f} nm · "
                f"pixel {o['pixel_size_um']:.3g} µm",
            ),
            (
                "microscope",
                f"NA {'?' if na is None else f'{na:.3g}'} · pixel "
                f"{'?' if px is None else f'{px:.3g}'} µm",
            ),
            ("z range", f"{lo:+g} … {hi:+g} µm"),
            ("modality", f"{c.modality.get('input', '?')} → {c.modality.get('output', '?')}"),
        ]
        mae = c.validation_mae
        if mae is not None:
            rows.append(("validation MAE", f"{mae:.4g}"))
        if s.model.weights_sha256:
            rows.append(("weights", s.model.weights_sha256[:12]))
        if c.description:
            rows.append(("note", html.escape(c.description)))
        body = "".join(
            f"<tr><td style='color:#9aa4ad;padding-right:6px'>{k}</td><td>{v}</td></tr>"
            for k, v in rows
        )
        return f"<table cellspacing=0 cellpadding=0>{body}</table>"

    def _picked(self, index: int) -> None:
        path = self.combo.itemData(index)
        if path and (self.session.model is None or str(self.session.model.path) != path):
            self.session.change_engine(model_path=str(path))

    def _open(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a model folder")
        if folder:
            self.session.change_engine(model_path=folder)

    def _apply_engine(self) -> None:
        self.session.change_engine(
            backend=self.backend.currentText(), precision=self.precision.currentText()
        )
