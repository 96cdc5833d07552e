"""Deep-Z inside multi-dimensional acquisitions: a Qt panel around pymmcore-widgets' MDAWidget.

:class:`MDAPanel` holds

- the sequence editor: pymmcore-widgets' ``MDAWidget`` (positions, channels, time plan,
  save path, run / pause / cancel) subclassed as :class:`DeepZMDAWidget`, whose
  ``execute_mda`` hands the save path to the :class:`~live_deepz.engine.MDAProcessor`
  (planes beside pymmcore-plus' raw files);
- microscope controls from pymmcore-widgets that work offline (exposure, the channel
  group's presets, the property browser, group presets). Its stage widget is not used: it
  fetches its arrow icons from the internet;
- the Deep-Z settings: model, planes, surface, drift compensation per position;
- a live view of the refocused planes of the current (or a chosen) position and counts.

It is a plain ``QWidget``: our :class:`~live_deepz.ui.MainWindow` docks it (Acquisition
menu); napari (``viewer.window.add_dock_widget(panel)``) or any Qt window can too.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ._views import PlaneGridView

__all__ = ["DeepZMDAWidget", "MDAPanel", "fail_fast_icons", "panel_for_session"]

REFRESH_MS = 100


@contextlib.contextmanager
def fail_fast_icons() -> Iterator[None]:
    """While building pymmcore-widgets: after the first failed icon download (no internet),
    fail the others at once instead of waiting ~1 s each (superqt then draws fallbacks)."""
    try:
        import pyconify.api as api
    except ImportError:
        yield
        return
    original = api._session
    failed: list[BaseException] = []

    class _Once:
        def __init__(self) -> None:
            self._inner = original()

        def get(self, *args: Any, **kwargs: Any) -> Any:
            if failed:
                raise failed[0]
            try:
                return self._inner.get(*args, **kwargs)
            except Exception as exc:
                failed.append(exc)
                raise

    api._session = _Once  # type: ignore[assignment]
    try:
        yield
    finally:
        api._session = original


def _mda_widget_class() -> type:
    from pymmcore_widgets import MDAWidget

    class DeepZMDAWidget(MDAWidget):  # type: ignore[misc, valid-type]
        """pymmcore-widgets' MDA editor; the run also feeds live-deepz (``before_run`` is
        called with the output path pymmcore-plus will write, or None)."""

        def __init__(self, *args: Any, before_run: Callable[[Any], bool] | None = None, **kw: Any):
            super().__init__(*args, **kw)
            self.before_run = before_run

        def execute_mda(self, output: Any) -> None:
            if self.before_run is not None and not self.before_run(output):
                return
            super().execute_mda(output)

    return DeepZMDAWidget


def DeepZMDAWidget(*args: Any, **kwargs: Any) -> Any:
    """pymmcore-widgets' ``MDAWidget`` whose run also feeds live-deepz (see the module)."""
    return _mda_widget_class()(*args, **kwargs)


class MDAPanel(QWidget):
    """Sequence editor + Deep-Z settings + live planes of the current position.

    Parameters
    ----------
    core
        The ``CMMCorePlus`` / ``UniMMCore`` the MDAs run on.
    backend
        The inference engine (``infer``/``prepare``), one for all channels, or a mapping
        channel name -> backend.
    dpm_scale_um, z_range_um
        The model's (``model.card``).
    model_name
        Shown in the panel and stored in the files' metadata (with ``models``).
    planes
        Initial plane offsets (``"-4:4:2"``).
    surface_um, surface_text
        A calibrated base surface (tilt/curvature) and how to name it; None: flat.
    drift_plan
        ``drift_plan(offsets_um) -> plan``: enables the drift-compensation box (one plan
        per position). None: the box is disabled.
    before_run
        Called before each run (e.g. the main window stops its live stream); returning
        False cancels the run.
    """

    planesShown = Signal(object)

    def __init__(
        self,
        core: Any,
        backend: Any,
        *,
        dpm_scale_um: float,
        z_range_um: tuple[float, float] | None = None,
        model_name: str = "",
        models: Any = None,
        planes: str = "-4:4:2",
        surface_um: np.ndarray | None = None,
        surface_text: str = "",
        drift_plan: Callable[[np.ndarray], Any] | None = None,
        before_run: Callable[[], bool] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        from live_deepz.engine import MDAProcessor

        self.core = core
        self._surface = surface_um
        self._drift_plan = drift_plan
        self._before_run = before_run
        self.processor = MDAProcessor(
            core,
            backend,
            self._plan_factory(planes),
            dpm_scale_um=dpm_scale_um,
            z_range_um=z_range_um,
            models=models,
            metadata={"source": "live-deepz MDA panel"},
        )
        self.processor.attach()
        self._last_seq = -1
        self.frames_shown = 0

        # -- sequence editor and microscope controls (pymmcore-widgets)
        from pymmcore_widgets import (
            DefaultCameraExposureWidget,
            GroupPresetTableWidget,
            PropertiesWidget,
        )

        with fail_fast_icons():
            self.mda = DeepZMDAWidget(mmcore=core, before_run=self._prepare_run)
        tabs = QTabWidget()
        tabs.addTab(self.mda, "Sequence")
        scope = QWidget()
        sl = QVBoxLayout(scope)
        exp = QGroupBox("Camera exposure")
        QVBoxLayout(exp).addWidget(DefaultCameraExposureWidget(mmcore=core))
        sl.addWidget(exp)
        sl.addWidget(GroupPresetTableWidget(mmcore=core), 1)
        tabs.addTab(scope, "Microscope")
        tabs.addTab(PropertiesWidget(mmcore=core), "Properties")
        self.tabs = tabs

        # -- Deep-Z settings
        box = QGroupBox("Deep-Z")
        form = QFormLayout(box)
        self.model_label = QLabel(html.escape(model_name or "(stand-in engine)"))
        self.model_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Model", self.model_label)
        self.planes_edit = QLineEdit(planes)
        self.planes_edit.setToolTip("plane offsets in µm: start:stop:step or a list; Enter applies")
        self.planes_edit.editingFinished.connect(self._on_planes)
        form.addRow("Planes (µm)", self.planes_edit)
        self.surface_label = QLabel(
            surface_text or ("calibrated" if surface_um is not None else "flat")
        )
        form.addRow("Surface", self.surface_label)
        self.drift_box = QCheckBox("follow each position's focus drift")
        self.drift_box.setEnabled(drift_plan is not None)
        if drift_plan is None:
            self.drift_box.setToolTip("needs a model (open one in the main window)")
        self.drift_box.toggled.connect(lambda *_: self._on_planes())
        form.addRow("Drift", self.drift_box)
        self.position_combo = QComboBox()
        self.position_combo.addItem("current position", -1)
        self.position_combo.currentIndexChanged.connect(lambda *_: self._force_redraw())
        form.addRow("Show", self.position_combo)
        self.status = QLabel("no acquisition yet")
        self.status.setWordWrap(True)
        form.addRow(self.status)

        # -- planes view
        self.grid = PlaneGridView("gray")
        self.grid.set_offsets(self.processor_offsets())
        self.view_title = QLabel("")
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(box)
        rl.addWidget(self.view_title)
        rl.addWidget(self.grid, 1)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(tabs)
        split.addWidget(right)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(split)

        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()

    # ------------------------------------------------------------------ plans
    def _plan_factory(self, spec: str) -> Any:
        from live_deepz.dpm import StaticPlanePlan, parse_planes

        offsets = parse_planes(spec)
        if getattr(self, "drift_box", None) is not None and self.drift_box.isChecked():
            make = self._drift_plan
            assert make is not None
            return lambda position: make(offsets)
        plan = StaticPlanePlan(offsets, self._surface)
        return plan

    def processor_offsets(self) -> np.ndarray:
        from live_deepz.dpm import parse_planes

        return parse_planes(self.planes_edit.text())

    def _on_planes(self) -> None:
        from live_deepz.errors import InputError

        if self.processor.running:
            self.status.setText("the planes apply to the next acquisition")
        try:
            self.processor.set_plan(self._plan_factory(self.planes_edit.text()))
        except (InputError, ValueError) as exc:
            self.status.setText(f"planes: {html.escape(str(exc))}")
            return
        self.grid.set_offsets(self.processor_offsets())

    # ------------------------------------------------------------------ runs
    def _prepare_run(self, output: Any) -> bool:
        """Before pymmcore-plus starts: where the planes go (beside its raw output)."""
        if self._before_run is not None and not self._before_run():
            return False
        out = None
        if isinstance(output, str | Path) and str(output).lower().endswith(
            (".ome.zarr", ".ome.tiff", ".ome.tif")
        ):
            out = Path(output)
        self.processor.output = out
        seq = self.mda.value()
        self.position_combo.blockSignals(True)
        self.position_combo.clear()
        self.position_combo.addItem("current position", -1)
        for i, pos in enumerate(seq.stage_positions or [None]):
            name = getattr(pos, "name", None) or f"position {i}"
            self.position_combo.addItem(name, i)
        self.position_combo.blockSignals(False)
        self.status.setText(
            "acquiring; planes "
            + (f"saved beside {html.escape(str(out))}" if out else "not saved (saving is off)")
        )
        return True

    def run(self, sequence: Any, output: str | Path | None = None) -> None:
        """Run ``sequence`` as the editor's Run button would (scripts, tests)."""
        self.mda.setValue(sequence)
        if self._prepare_run(output):
            self.core.run_mda(self.mda.value(), output=None if output is None else str(output))

    def _force_redraw(self) -> None:
        self._last_seq = -1

    def refresh(self) -> None:
        """Show the newest planes of the chosen position; update the counts."""
        proc = self.processor
        s = proc.summary
        if s is not None:
            state = "acquiring" if proc.running else "done"
            text = (
                f"{state}: {s.frames_acquired}/{s.frames_expected} frames, {s.planes_live} "
                f"refocused live, {s.planes_skipped_live} skipped (completed after: "
                f"{s.planes_completed})"
            )
            if s.error:
                text += f"; error: {s.error}"
            if s.camera_error:
                text += f"; camera error: {s.camera_error}"
            self.status.setText(html.escape(text))
        latest = proc.latest()
        if latest is None or latest.seq == self._last_seq:
            return
        want = self.position_combo.currentData()
        if want is not None and want >= 0 and latest.key[0] != want:
            return
        self._last_seq = latest.seq
        k = latest.planes.shape[0]
        if not np.array_equal(self.grid.offsets, latest.offsets_um):
            self.grid.set_offsets(latest.offsets_um)
        p, t, c = latest.key
        self.view_title.setText(f"position {p}, time point {t}, channel {c}")
        self.grid.show_planes(latest.planes, np.arange(k), latest.seq)
        self.frames_shown += 1
        self.planesShown.emit(latest.key)

    def closeEvent(self, event: Any) -> None:
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        self._timer.stop()
        self.processor.detach()


def panel_for_session(session: Any, parent: QWidget | None = None) -> MDAPanel:
    """An :class:`MDAPanel` on a :class:`~live_deepz.ui.Session`'s microscope and model (a
    second engine for the model, so the live pipeline's stays as it is; drift compensation
    through the calibration package's estimator, one per position). A run is refused while
    the session streams live (the camera is the MDA's then)."""
    from live_deepz.calibration import drift_compensation_plan
    from live_deepz.engine import create_backend

    model = session.model
    cfg = getattr(session, "config", None)
    backend_name = getattr(cfg, "backend", "") or "auto"
    precision = getattr(cfg, "precision", "auto") or "auto"
    device = getattr(cfg, "device", "auto") or "auto"
    backend = create_backend(backend_name, model.generator, precision=precision, device=device)
    z_range = tuple(float(v) for v in model.card.z_range_um)

    shape = (int(session.core.getImageHeight()), int(session.core.getImageWidth()))

    def drift_plan(offsets: np.ndarray) -> Any:
        # one frame per time point and position: estimate on each (in the worker thread)
        return drift_compensation_plan(
            model,
            offsets,
            shape,
            device=str(getattr(backend, "device", "cpu")),
            precision=precision,
            every_n=1,
            asynchronous=False,
        )

    def before_run() -> bool:
        if getattr(session, "state", "") in ("live", "starting"):
            session.notice.emit(
                "mda", "warning", "Stop the live stream first: the MDA needs the camera."
            )
            return False
        return True

    cal = getattr(session, "calibration", None)  # the wizard's surface, if one is applied
    offsets = session.plan_offsets() if callable(getattr(session, "plan_offsets", None)) else None
    spec = ",".join(f"{v:g}" for v in offsets) if offsets is not None and len(offsets) else "-4:4:2"
    return MDAPanel(
        session.core,
        backend,
        dpm_scale_um=float(model.card.dpm_scale_um),
        z_range_um=(z_range[0], z_range[1]),
        model_name=f"{model.card.name} ({model.weights_sha256[:12]}…)",
        models=model,
        planes=spec,
        surface_um=None if cal is None else cal.surface_um,
        surface_text="" if cal is None else f"calibrated: {cal.summary}",
        drift_plan=drift_plan,
        before_run=before_run,
        parent=parent,
    )
