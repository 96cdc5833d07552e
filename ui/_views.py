"""The image views: raw feed, plane grid, single plane with depth slider, depth-coded MIP,
x–z section, and the drift panel (drift-corrected feed + drift trace).

Every view draws with pyqtgraph ``ImageItem``s at **fixed levels** (``autoLevels=False``):
contrast is set automatically once, on the first frame, and stays fixed while live so that
brightness changes mean something; the *Auto* button in each view's header re-sets it on
the next frame. No ``autoDownsample`` (it costs ~250 ms at 2048²): when an image is at least
twice as large as its place on screen the view shows a strided view ``image[::s, ::s]``
(no copy) and keeps the item's coordinates in full-resolution pixels.

Views never pull frames themselves: the main window's display timer hands them the newest
frame (see ``MainWindow``). Images are ``(H, W)`` (row-major, origin top-left).
"""

from __future__ import annotations

import colorsys
import math
import time
from typing import Any

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import QRectF, Qt, QTimer, Signal
from qtpy.QtGui import QColor, QFont
from qtpy.QtWidgets import (
    QBoxLayout,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ._render import auto_levels, decimation, depth_mip, grid_shape, xz_section

__all__ = [
    "COLORMAPS",
    "DEPTH_COLORMAPS",
    "DepthMipView",
    "DriftPanel",
    "ImagePane",
    "PlaneGridView",
    "SinglePlaneView",
    "XZSectionView",
    "depth_colors",
    "make_colormap",
]

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

COLORMAPS: dict[str, Any] = {
    "gray": ((0, 0, 0), (255, 255, 255)),
    "green": ((0, 0, 0), (60, 255, 60)),
    "magenta": ((0, 0, 0), (255, 60, 255)),
    "cyan": ((0, 0, 0), (60, 230, 255)),
    "inferno": "inferno",
    "magma": "magma",
    "viridis": "viridis",
}
"""Intensity colour maps offered in every view (name -> black→colour ramp or pyqtgraph map)."""

DEPTH_COLORMAPS: dict[str, Any] = {
    "spectrum": None,  # HSV hue red → violet, full brightness
    "turbo": ("turbo", 0.08, 0.95),
    "viridis": ("viridis", 0.2, 1.0),
    "plasma": ("plasma", 0.25, 1.0),
}
"""Colour codes for depth (name -> None for the spectrum, or (pyqtgraph map, from, to))."""

_BG = "#101214"
_LABEL_FG = "#e8e8e8"
_WAITING = "waiting for frames…"


def make_colormap(name: str) -> pg.ColorMap:
    spec = COLORMAPS.get(name, COLORMAPS["gray"])
    if isinstance(spec, str):
        return pg.colormap.get(spec)
    return pg.ColorMap(pos=[0.0, 1.0], color=[spec[0], spec[1]])


def depth_colors(n: int, name: str = "spectrum") -> np.ndarray:
    """``(n, 3)`` RGB in 0..1, shallowest plane first."""
    t = np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5])
    spec = DEPTH_COLORMAPS.get(name)
    if spec is None:
        return np.array([colorsys.hsv_to_rgb(0.78 * (1 - v), 1.0, 1.0) for v in t])
    cmap_name, a, b = spec
    cmap = pg.colormap.get(cmap_name)
    return cmap.map(a + (b - a) * t, mode="float")[:, :3].astype(np.float64)


def _tool_button(text: str, tip: str) -> QToolButton:
    b = QToolButton()
    b.setText(text)
    b.setToolTip(tip)
    b.setAutoRaise(False)
    return b


class _Header(QWidget):
    """A view's header row: info text, colour map choice, Auto contrast button."""

    colormapChanged = Signal(str)
    autoClicked = Signal()

    def __init__(self, colormaps: list[str], current: str, auto_tip: str) -> None:
        super().__init__()
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.setSpacing(6)
        self.info = QLabel("")
        self.info.setObjectName("viewInfo")
        self.info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        lay.addWidget(self.info, 1)
        self.cmap = QComboBox()
        self.cmap.addItems(colormaps)
        self.cmap.setCurrentText(current if current in colormaps else colormaps[0])
        self.cmap.setToolTip("colour map")
        self.cmap.currentTextChanged.connect(self.colormapChanged)
        lay.addWidget(self.cmap)
        self.auto = _tool_button("Auto", auto_tip)
        self.auto.clicked.connect(self.autoClicked)
        lay.addWidget(self.auto)


def _canvas() -> pg.GraphicsLayoutWidget:
    c = pg.GraphicsLayoutWidget()
    c.setBackground(_BG)
    c.ci.layout.setContentsMargins(2, 2, 2, 2)
    c.ci.layout.setSpacing(3)
    c.setMinimumSize(120, 100)
    return c


def _image_box(canvas: pg.GraphicsLayoutWidget, row: int = 0, col: int = 0) -> pg.ViewBox:
    vb = canvas.addViewBox(row=row, col=col, lockAspect=True, invertY=True, enableMenu=False)
    vb.setBackgroundColor(_BG)
    return vb


def _overlay(vb: pg.ViewBox, text: str, size: int = 9, bold: bool = False) -> pg.TextItem:
    """A label fixed to the view box's top-left corner (does not zoom with the image)."""
    item = pg.TextItem(text, color=_LABEL_FG, fill=pg.mkBrush(0, 0, 0, 170), anchor=(0, 0))
    font = QFont()
    font.setPointSize(size)
    font.setBold(bold)
    item.setFont(font)
    item.setParentItem(vb)
    item.setPos(3, 3)
    item.setZValue(20)
    return item


class _Levels:
    """Fixed display levels: automatic once (first frame / Auto button), then kept."""

    def __init__(self) -> None:
        self.levels: tuple[float, float] | None = None
        self.pending = True

    def for_image(self, image: np.ndarray) -> tuple[float, float]:
        if self.pending or self.levels is None:
            self.levels = auto_levels(image)
            self.pending = False
        return self.levels

    def request(self) -> None:
        self.pending = True


def _fmt_level(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


class ImagePane(QWidget):
    """One image with a header (info, colour map, Auto contrast); the raw camera view."""

    colormapChanged = Signal(str)

    def __init__(self, colormap: str = "gray", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.header = _Header(list(COLORMAPS), colormap, "re-set the contrast on the next frame")
        self.canvas = _canvas()
        self.vb = _image_box(self.canvas)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(make_colormap(self.header.cmap.currentText()))
        self.vb.addItem(self.image)
        self.overlay = _overlay(self.vb, _WAITING)
        self._levels = _Levels()
        self._stride = 0
        self._shape: tuple[int, ...] = ()
        self._scale: Any = None
        self._px: float | None = None
        self.frames_shown = 0
        self.last_image: np.ndarray | None = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.header)
        lay.addWidget(self.canvas, 1)
        self.header.autoClicked.connect(self.auto_contrast)
        self.header.colormapChanged.connect(self.set_colormap)

    @property
    def levels(self) -> tuple[float, float] | None:
        return self._levels.levels

    def auto_contrast(self) -> None:
        """Re-set the levels from the next frame."""
        self._levels.request()

    def set_colormap(self, name: str) -> None:
        self.image.setColorMap(make_colormap(name))
        if self.header.cmap.currentText() != name:
            self.header.cmap.setCurrentText(name)
        self.colormapChanged.emit(name)

    def show_image(self, image: np.ndarray, text: str = "") -> None:
        """Draw ``image`` (``(H, W)``) at the fixed levels; ``text`` goes in the corner."""
        levels = self._levels.for_image(image)
        h, w = image.shape[:2]
        s = decimation(max(h, w), max(self.vb.width(), self.vb.height()))
        self.image.setImage(image[::s, ::s], autoLevels=False, levels=levels)
        if s != self._stride or image.shape != self._shape:
            self.image.setRect(QRectF(0, 0, w, h))
            new_shape = image.shape != self._shape
            self._stride, self._shape = s, image.shape
            if new_shape:
                self.vb.autoRange(padding=0)
                self.set_pixel_size(self._px)
        self.last_image = image
        self.frames_shown += 1
        self.overlay.setText(text)
        self.overlay.setVisible(bool(text))
        self.header.info.setText(
            f"{w}×{h} px · levels {_fmt_level(levels[0])}–{_fmt_level(levels[1])}"
        )

    def set_waiting(self, text: str = _WAITING) -> None:
        self.overlay.setText(text)
        self.overlay.setVisible(True)

    def set_pixel_size(self, pixel_size_um: float | None) -> None:
        """Show a scale bar (a round length, about a fifth of the field) when known."""
        if self._scale is not None:  # (ScaleBar.setParentItem(None) raises: remove it)
            scene = self._scale.scene()
            if scene is not None:
                scene.removeItem(self._scale)
            self._scale = None
        if not pixel_size_um or not self._shape:
            self._px = pixel_size_um
            return
        self._px = pixel_size_um
        width_um = self._shape[1] * pixel_size_um
        length = _round_length(width_um / 5)
        bar = pg.ScaleBar(size=length / pixel_size_um, width=4, brush="#ffffff", pen="#ffffff")
        bar.text.setText(f"{length:g} µm")
        bar.setParentItem(self.vb)
        bar.anchor((1, 1), (1, 1), offset=(-12, -12))
        self._scale = bar


class PlaneGridView(QWidget):
    """The K synchronized refocused planes of one frame, each labelled with its offset.

    All tiles share one set of levels (so planes are comparable) and one zoom/pan.
    """

    colormapChanged = Signal(str)

    def __init__(self, colormap: str = "gray", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.header = _Header(list(COLORMAPS), colormap, "re-set the contrast on the next frame")
        self.canvas = _canvas()
        self.tiles: list[tuple[pg.ViewBox, pg.ImageItem, pg.TextItem]] = []
        self.offsets = np.zeros(0)
        self.highlight: float | None = None
        self._levels = _Levels()
        self._cmap = make_colormap(self.header.cmap.currentText())
        self._stride = 0
        self._shape: tuple[int, int] = (0, 0)
        self._layout_size = (0, 0)
        self.frames_shown = 0
        self.frame_index = -1
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.header)
        lay.addWidget(self.canvas, 1)
        self.header.autoClicked.connect(self._levels.request)
        self.header.colormapChanged.connect(self.set_colormap)
        self._relayout = QTimer(self)
        self._relayout.setSingleShot(True)
        self._relayout.setInterval(150)
        self._relayout.timeout.connect(self._arrange)
        self._placeholder = self.canvas.addLabel(_WAITING, color=_LABEL_FG)

    @property
    def levels(self) -> tuple[float, float] | None:
        return self._levels.levels

    def auto_contrast(self) -> None:
        self._levels.request()

    def set_colormap(self, name: str) -> None:
        self._cmap = make_colormap(name)
        for _, img, _ in self.tiles:
            img.setColorMap(self._cmap)
        if self.header.cmap.currentText() != name:
            self.header.cmap.setCurrentText(name)
        self.colormapChanged.emit(name)

    def set_offsets(self, offsets_um: np.ndarray, highlight: float | None = None) -> None:
        """(Re)build the tiles for these plane offsets (µm); ``highlight``: the depth plane."""
        offsets = np.asarray(offsets_um, dtype=np.float64)
        if np.array_equal(offsets, self.offsets) and highlight == self.highlight:
            return
        rebuild = not np.array_equal(offsets, self.offsets)
        self.offsets, self.highlight = offsets, highlight
        if rebuild:
            self._build_tiles()
        for (_, _, label), off in zip(self.tiles, self.offsets):
            label.setText(_offset_text(off))
            mark = highlight is not None and abs(off - highlight) < 1e-6
            label.fill = pg.mkBrush(40, 90, 160, 220) if mark else pg.mkBrush(0, 0, 0, 170)
            label.update()

    def _build_tiles(self) -> None:
        self.canvas.ci.clear()
        self.tiles = []
        self._placeholder = None
        first: pg.ViewBox | None = None
        for off in self.offsets:
            vb = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
            vb.setBackgroundColor(_BG)
            img = pg.ImageItem(axisOrder="row-major")
            img.setColorMap(self._cmap)
            vb.addItem(img)
            label = _overlay(vb, _offset_text(off), size=10, bold=True)
            if first is None:
                first = vb
            else:
                vb.setXLink(first)
                vb.setYLink(first)
            self.tiles.append((vb, img, label))
        self._stride = 0
        self._layout_size = (0, 0)
        self._arrange()

    def _arrange(self) -> None:
        n = len(self.tiles)
        if n == 0:
            return
        w, h = max(1, self.canvas.width()), max(1, self.canvas.height())
        if (w, h) == self._layout_size and self.canvas.ci.layout.count() == n:
            return
        self._layout_size = (w, h)
        aspect = self._shape[1] / self._shape[0] if self._shape[0] else 1.0
        _, cols = grid_shape(n, w, h, aspect)
        ci = self.canvas.ci
        for vb, _, _ in self.tiles:
            if vb.scene() is not None:
                ci.removeItem(vb)
        for i, (vb, _, _) in enumerate(self.tiles):
            ci.addItem(vb, row=i // cols, col=i % cols)
        if self._shape[0]:
            self.tiles[0][0].setRange(QRectF(0, 0, self._shape[1], self._shape[0]), padding=0)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._relayout.start()

    def show_planes(self, planes: np.ndarray, indices: np.ndarray, frame_index: int = -1) -> None:
        """Draw ``planes[indices[t]]`` in tile ``t`` (index -1: leave the tile as it is)."""
        if not self.tiles:
            return
        valid = [int(i) for i in indices if i >= 0]
        if not valid:
            return
        levels = self._levels.levels
        if self._levels.pending or levels is None:
            levels = self._levels.for_image(planes[valid])
        h, w = planes.shape[1:]
        vb0 = self.tiles[0][0]
        s = decimation(max(h, w), max(vb0.width(), vb0.height()))
        new_geometry = s != self._stride or (h, w) != self._shape
        shape_changed = (h, w) != self._shape
        for (_, img, _), k in zip(self.tiles, indices):
            if k < 0:
                continue
            img.setImage(planes[k, ::s, ::s], autoLevels=False, levels=levels)
            if new_geometry:
                img.setRect(QRectF(0, 0, w, h))
        if new_geometry:
            self._stride, self._shape = s, (h, w)
            if shape_changed:
                self._layout_size = (0, 0)
                self._arrange()
        self.frames_shown += 1
        self.frame_index = frame_index
        self.header.info.setText(
            f"{len(self.tiles)} planes · frame {frame_index} · levels "
            f"{_fmt_level(levels[0])}–{_fmt_level(levels[1])}"
        )


def _round_length(um: float) -> float:
    """The largest 1-2-5 × 10^n length not above ``um``."""
    if um <= 0:
        return 1.0
    exp = math.floor(math.log10(um))
    for m in (5, 2, 1):
        if m * 10**exp <= um:
            return float(m * 10**exp)
    return float(10**exp)


def _offset_text(off: float) -> str:
    if abs(off) < 1e-9:
        return " 0 µm (focus) "
    return f" {off:+.4g} µm "


class SinglePlaneView(ImagePane):
    """One refocused plane, chosen with a depth slider anywhere in the model's z range.

    ``depthRequested(float)`` is emitted (debounced, ~80 ms) when the user moves the slider
    or types a depth; the session turns it into a new plan for the pipeline.
    """

    depthRequested = Signal(float)
    STEPS_PER_UM = 10

    def __init__(self, colormap: str = "gray", parent: QWidget | None = None) -> None:
        super().__init__(colormap, parent)
        row = QWidget()
        rl = QHBoxLayout(row)
        rl.setContentsMargins(6, 2, 6, 4)
        rl.addWidget(QLabel("Depth"))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("refocus depth: + = deeper into the sample")
        rl.addWidget(self.slider, 1)
        self.spin = QDoubleSpinBox()
        self.spin.setSuffix(" µm")
        self.spin.setDecimals(1)
        self.spin.setSingleStep(0.1)
        self.spin.setKeyboardTracking(False)
        rl.addWidget(self.spin)
        self.range_label = QLabel("")
        self.range_label.setObjectName("dim")
        rl.addWidget(self.range_label)
        lay = self.layout()
        assert isinstance(lay, QVBoxLayout)
        lay.addWidget(row)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(80)
        self._debounce.timeout.connect(lambda: self.depthRequested.emit(self.depth_um()))
        self.slider.valueChanged.connect(self._on_slider)
        self.spin.valueChanged.connect(self._on_spin)
        self.set_range((-10.0, 10.0))

    def set_range(self, z_range_um: tuple[float, float]) -> None:
        lo, hi = z_range_um
        n = self.STEPS_PER_UM
        for w in (self.slider, self.spin):
            w.blockSignals(True)
        self.slider.setRange(math.ceil(lo * n), math.floor(hi * n))
        self.slider.setPageStep(n)
        self.spin.setRange(lo, hi)
        for w in (self.slider, self.spin):
            w.blockSignals(False)
        self.range_label.setText(f"model range {lo:+g}…{hi:+g} µm")

    def depth_um(self) -> float:
        return round(self.spin.value(), 3)

    def set_depth(self, depth_um: float) -> None:
        """Show ``depth_um`` without emitting ``depthRequested``."""
        for w in (self.slider, self.spin):
            w.blockSignals(True)
        self.slider.setValue(round(depth_um * self.STEPS_PER_UM))
        self.spin.setValue(depth_um)
        for w in (self.slider, self.spin):
            w.blockSignals(False)

    def _on_slider(self, value: int) -> None:
        self.spin.blockSignals(True)
        self.spin.setValue(value / self.STEPS_PER_UM)
        self.spin.blockSignals(False)
        self._debounce.start()

    def _on_spin(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round(value * self.STEPS_PER_UM))
        self.slider.blockSignals(False)
        self._debounce.start()

    def set_enabled_depth(self, enabled: bool, why: str = "") -> None:
        self.slider.setEnabled(enabled)
        self.spin.setEnabled(enabled)
        self.slider.setToolTip(why or "refocus depth: + = deeper into the sample")


class DepthMipView(QWidget):
    """Depth-coded maximum-intensity projection (hue = depth of the maximum) + the x–z line.

    Drag the line's ends to choose the x–z section (``lineChanged`` is emitted).
    """

    lineChanged = Signal()

    def __init__(self, scheme: str = "spectrum", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.header = _Header(
            list(DEPTH_COLORMAPS), scheme, "re-set the brightness on the next frame"
        )
        self.header.cmap.setToolTip("colour code for depth")
        self.canvas = _canvas()
        self.vb = _image_box(self.canvas, 0, 0)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.vb.addItem(self.image)
        self.overlay = _overlay(self.vb, _WAITING)
        self.legend = self.canvas.addPlot(row=1, col=0)
        self.legend.setMaximumHeight(52)
        self.legend.hideAxis("left")
        self.legend.setMouseEnabled(False, False)
        self.legend.setMenuEnabled(False)
        self.legend.hideButtons()
        self.legend.getAxis("bottom").setLabel("depth of the maximum (µm)")
        self.legend_img = pg.ImageItem(axisOrder="row-major")
        self.legend.addItem(self.legend_img)
        self.roi = pg.LineSegmentROI([(0, 0), (1, 1)], pen=pg.mkPen("#ffffff", width=2))
        self.roi.setZValue(10)
        self.roi.setToolTip("drag the ends: the x–z section is taken along this line")
        self.roi.setVisible(False)  # until the first projection
        self.vb.addItem(self.roi)
        self.legend.setXRange(-10, 10, padding=0)
        self.roi.sigRegionChanged.connect(self.lineChanged)
        self._levels = _Levels()
        self._scheme = self.header.cmap.currentText()
        self._colors_for: tuple[str, int] = ("", -1)
        self._colors = np.zeros((0, 3))
        self._rgb: np.ndarray | None = None
        self._shape: tuple[int, int] = (0, 0)
        self._offsets = np.zeros(0)
        self.frames_shown = 0
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.header)
        lay.addWidget(self.canvas, 1)
        self.header.autoClicked.connect(self._levels.request)
        self.header.colormapChanged.connect(self.set_scheme)

    @property
    def levels(self) -> tuple[float, float] | None:
        return self._levels.levels

    @property
    def rgb(self) -> np.ndarray | None:
        """The last projection drawn, ``(H, W, 3)`` uint8."""
        return self._rgb

    def auto_contrast(self) -> None:
        self._levels.request()

    def set_scheme(self, name: str) -> None:
        self._scheme = name
        self._colors_for = ("", -1)
        if self.header.cmap.currentText() != name:
            self.header.cmap.setCurrentText(name)

    def line(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The section line's ends in image pixels ``((x0, y0), (x1, y1))``."""
        pts = [self.roi.mapToItem(self.image, h.pos()) for h in self.roi.endpoints]
        return (pts[0].x(), pts[0].y()), (pts[1].x(), pts[1].y())

    def set_line(self, p0: tuple[float, float], p1: tuple[float, float]) -> None:
        handles = self.roi.getHandles()
        self.roi.movePoint(
            handles[0], self.roi.mapFromItem(self.image, pg.Point(*p0)), finish=False
        )
        self.roi.movePoint(handles[1], self.roi.mapFromItem(self.image, pg.Point(*p1)))

    def colors_for(self, offsets_um: np.ndarray) -> np.ndarray:
        """``(K, 3)`` colours of planes at these offsets (by depth rank); updates the legend."""
        offsets = np.asarray(offsets_um, dtype=np.float64)
        key = (self._scheme, offsets.size)
        if key != self._colors_for or not np.array_equal(offsets, self._offsets):
            order = np.argsort(np.argsort(offsets))  # rank of each plane by depth
            self._colors = depth_colors(offsets.size, self._scheme)[order]
            self._colors_for, self._offsets = key, offsets
            self._draw_legend(offsets)
        return self._colors

    def wanted_levels(self) -> tuple[float, float] | None:
        """The fixed brightness levels, or ``None`` when they are to be set automatically."""
        return None if self._levels.pending else self._levels.levels

    def show_planes(self, planes: np.ndarray, offsets_um: np.ndarray) -> None:
        """Project ``planes`` (``(K, H, W)``, any order) and draw it (on this thread)."""
        colors = self.colors_for(offsets_um)
        levels = self.wanted_levels() or auto_levels(planes.max(axis=0))
        self._rgb = depth_mip(planes, colors, levels, out=self._rgb)
        self.show_rgb(self._rgb, levels, offsets_um)

    def show_rgb(
        self, rgb: np.ndarray, levels: tuple[float, float], offsets_um: np.ndarray
    ) -> None:
        """Draw a projection computed elsewhere (``DerivedWorker``) with these levels."""
        if self._levels.pending or self._levels.levels is None:
            self._levels.levels, self._levels.pending = levels, False
        offsets = np.asarray(offsets_um, dtype=np.float64)
        self._rgb = rgb
        h, w = rgb.shape[:2]
        self.image.setImage(rgb, autoLevels=False, levels=(0, 255))
        if (h, w) != self._shape:
            self._shape = (h, w)
            self.image.setRect(QRectF(0, 0, w, h))
            self.vb.autoRange(padding=0)
            self.set_line((w * 0.1, h * 0.5), (w * 0.9, h * 0.5))
            self.roi.setVisible(True)
        self.overlay.setVisible(False)
        self.frames_shown += 1
        self.header.info.setText(
            f"{offsets.size} planes {offsets.min():+g}…{offsets.max():+g} µm · brightness "
            f"{_fmt_level(levels[0])}–{_fmt_level(levels[1])}"
        )

    def _draw_legend(self, offsets: np.ndarray) -> None:
        z = np.sort(offsets)
        n = max(2, z.size)
        colors = depth_colors(z.size, self._scheme) if z.size else np.zeros((1, 3))
        bar = (np.asarray(colors)[None, :, :] * 255).astype(np.uint8)  # (1, K, 3)
        self.legend_img.setImage(bar, autoLevels=False, levels=(0, 255))
        lo, hi = (float(z[0]), float(z[-1])) if z.size else (0.0, 1.0)
        dz = (hi - lo) / (n - 1) if hi > lo else 1.0
        self.legend_img.setRect(QRectF(lo - dz / 2, 0, (hi - lo) + dz, 1))
        self.legend.setXRange(lo - dz / 2, hi + dz / 2, padding=0)
        self.legend.setYRange(0, 1, padding=0)


class XZSectionView(QWidget):
    """The x–z section of the plane stack along the line drawn on the MIP.

    It shows the section with the plane grid's contrast levels (``follow_planes``), so that
    it looks like the planes it is cut from; its Auto button switches to levels of its own
    (a thin section through mostly background gets poor automatic levels).
    """

    def __init__(self, colormap: str = "gray", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.header = _Header(list(COLORMAPS), colormap, "re-set the contrast on the next frame")
        self.canvas = _canvas()
        self.plot = self.canvas.addPlot()
        self.plot.setMenuEnabled(False)
        self.plot.invertY(True)
        self.plot.setLabel("bottom", "along the line (µm)")
        self.plot.setLabel("left", "depth (µm, + deeper)")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(make_colormap(self.header.cmap.currentText()))
        self.plot.addItem(self.image)
        self.plot.setRange(QRectF(0, -10, 100, 20), padding=0)
        self._levels = _Levels()
        self.section: np.ndarray | None = None
        self.frames_shown = 0
        self._rect = QRectF()
        self.follow_planes = True
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.header)
        lay.addWidget(self.canvas, 1)
        self.header.autoClicked.connect(self.auto_contrast)
        self.header.colormapChanged.connect(self.set_colormap)

    @property
    def levels(self) -> tuple[float, float] | None:
        return self._levels.levels

    def auto_contrast(self) -> None:
        """Levels of the section's own from the next frame on (stop following the planes)."""
        self.follow_planes = False
        self._levels.request()

    def set_colormap(self, name: str) -> None:
        self.image.setColorMap(make_colormap(name))
        if self.header.cmap.currentText() != name:
            self.header.cmap.setCurrentText(name)

    def wanted_levels(
        self, planes_levels: tuple[float, float] | None = None
    ) -> tuple[float, float] | None:
        """The levels to draw the next section with: ``planes_levels`` (the grid's) while
        following the planes, else the section's own (None: compute them)."""
        if self.follow_planes and planes_levels is not None:
            return planes_levels
        return None if self._levels.pending else self._levels.levels

    def show_section(
        self,
        planes: np.ndarray,
        offsets_um: np.ndarray,
        p0: tuple[float, float],
        p1: tuple[float, float],
        pixel_size_um: float,
    ) -> None:
        """Compute the section along ``p0 -> p1`` and draw it (on this thread)."""
        section, z = xz_section(planes, offsets_um, p0, p1)  # (K, L), sorted depths
        levels = self.wanted_levels() or auto_levels(section)
        length_um = math.hypot(p1[0] - p0[0], p1[1] - p0[1]) * pixel_size_um
        self.show_section_data(section, z, length_um, levels)

    def show_section_data(
        self, section: np.ndarray, z_um: np.ndarray, length_um: float, levels: tuple[float, float]
    ) -> None:
        """Draw a ``(K, L)`` section (rows sorted by depth ``z_um``) ``length_um`` long."""
        if self._levels.pending or self._levels.levels is None or self.follow_planes:
            self._levels.levels, self._levels.pending = levels, False
        self.section = section
        self.image.setImage(section, autoLevels=False, levels=levels)
        k = section.shape[0]
        z = np.asarray(z_um, dtype=np.float64)
        dz = (z[-1] - z[0]) / (k - 1) if k > 1 else 1.0
        rect = QRectF(0, z[0] - dz / 2, max(length_um, 1e-6), dz * k)
        if rect != self._rect:
            self._rect = rect
            self.image.setRect(rect)
            self.plot.setRange(rect, padding=0)
        self.frames_shown += 1
        lv = f"{_fmt_level(levels[0])}–{_fmt_level(levels[1])}"
        self.header.info.setText(f"{length_um:.0f} µm × {k} planes · {lv}")
        self.header.info.setToolTip(
            f"section {length_um:.1f} µm long through {k} planes; levels {lv}"
            + (" (the planes' levels; Auto: its own)" if self.follow_planes else "")
        )


class DriftPanel(QWidget):
    """Drift compensation: the drift-corrected feed and the focus-drift trace.

    :meth:`set_plan` with a plan that has ``trace()`` (a
    :class:`~live_deepz.calibration.DriftCompensationPlan`) or None (off);
    :meth:`show_corrected` with each corrected plane (the plan's offset 0);
    :meth:`refresh` redraws the trace — at most :attr:`MAX_HZ` times a second, whatever the
    caller's rate. The trace shows each raw estimate (grey: accepted, red: rejected by the
    filter as an outlier) and the filtered drift (blue) against time since the first
    estimate; the text above says the correction in use and warns when the planes hit the
    end of the model's range.
    """

    MAX_HZ = 5.0

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plan: Any = None
        self.note = QLabel(
            "Drift compensation is off. Switch it on in the Calibration controls (or the "
            "Calibration menu): this panel then shows the drift-corrected plane and the "
            "focus-drift trace."
        )
        self.note.setWordWrap(True)
        self.note.setObjectName("dim")
        self.status = QLabel("")
        self.status.setObjectName("dim")
        self.status.setWordWrap(True)
        self.status.setVisible(False)
        self.warning = QLabel("")
        self.warning.setObjectName("warning")
        self.warning.setWordWrap(True)
        self.warning.setVisible(False)
        self.feed = ImagePane("gray")
        self.feed.set_waiting("no drift-corrected feed")
        self.trace_plot = pg.PlotWidget(background=_BG)
        self.trace_plot.setMinimumSize(160, 110)
        self.trace_plot.setTitle(
            "<span style='color:#aaaaaa'>● estimate</span>&nbsp;&nbsp;"
            "<span style='color:#ff6e6e'>× rejected</span>&nbsp;&nbsp;"
            "<span style='color:#4fc3f7'>— filtered</span>",
            size="8pt",
        )
        self.trace_plot.setLabel("left", "drift (µm)")
        self.trace_plot.setLabel("bottom", "time (s)")
        for ax in ("left", "bottom"):
            self.trace_plot.getAxis(ax).enableAutoSIPrefix(False)
        self.trace_plot.showGrid(x=True, y=True, alpha=0.2)
        self.raw_curve = self.trace_plot.plot(
            [],
            [],
            pen=None,
            symbol="o",
            symbolSize=5,
            symbolPen=None,
            symbolBrush=QColor(170, 170, 170),
        )
        self.rejected_curve = self.trace_plot.plot(
            [],
            [],
            pen=None,
            symbol="x",
            symbolSize=7,
            symbolPen=pg.mkPen("#ff6e6e"),
            symbolBrush=None,
        )
        self.filtered_curve = self.trace_plot.plot([], [], pen=pg.mkPen("#4fc3f7", width=2))
        self.n_trace_points = 0
        """Estimates in the last trace drawn."""
        self.frames_shown = 0
        self._last_refresh = 0.0
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(3)
        lay.addWidget(self.note)
        lay.addWidget(self.status)
        lay.addWidget(self.warning)
        self._body = QBoxLayout(QBoxLayout.Direction.LeftToRight)
        self._body.addWidget(self.feed, 2)
        self._body.addWidget(self.trace_plot, 3)
        lay.addLayout(self._body, 1)

    def resizeEvent(self, event: Any) -> None:
        """Feed and trace side by side in a wide dock, stacked in a tall one."""
        super().resizeEvent(event)
        wide = self.width() >= 1.2 * self.height()
        want = QBoxLayout.Direction.LeftToRight if wide else QBoxLayout.Direction.TopToBottom
        if self._body.direction() != want:
            self._body.setDirection(want)

    def set_plan(self, plan: Any) -> None:
        """Follow ``plan.trace()`` (any object with it), or ``None`` to switch off."""
        self.plan = plan if plan is not None and hasattr(plan, "trace") else None
        on = self.plan is not None
        self.note.setVisible(not on)
        self.status.setVisible(on)
        if not on:
            self.warning.setVisible(False)
            self.feed.set_waiting("drift compensation is off")
            for c in (self.raw_curve, self.rejected_curve, self.filtered_curve):
                c.setData([], [])
            self.n_trace_points = 0
        self.refresh(force=True)

    def show_corrected(self, image: np.ndarray, text: str = "") -> None:
        self.feed.show_image(image, text)
        self.frames_shown += 1

    def refresh(self, force: bool = False) -> None:
        """Redraw the trace and the status (at most :attr:`MAX_HZ` times a second)."""
        if self.plan is None:
            return
        now = time.monotonic()
        if not force and now - self._last_refresh < 1.0 / self.MAX_HZ:
            return
        self._last_refresh = now
        tr = self.plan.trace()
        t = np.asarray(tr.get("t_ms", []), dtype=np.float64) / 1e3
        self.n_trace_points = int(t.size)
        if t.size:
            t = t - t[0]
            raw = np.asarray(tr.get("raw_um", np.full(t.size, np.nan)), dtype=np.float64)
            acc = np.asarray(tr.get("accepted", np.ones(t.size, bool)), dtype=bool)
            filt = np.asarray(tr.get("filtered_um", np.full(t.size, np.nan)), dtype=np.float64)
            ok = np.isfinite(raw)
            self.raw_curve.setData(t[ok & acc], raw[ok & acc])
            self.rejected_curve.setData(t[ok & ~acc], raw[ok & ~acc])
            fin = np.isfinite(filt)
            self.filtered_curve.setData(t[fin], filt[fin])
        else:
            for c in (self.raw_curve, self.rejected_curve, self.filtered_curve):
                c.setData([], [])
        self._show_status()

    def _show_status(self) -> None:
        describe = getattr(self.plan, "describe", None)
        if not callable(describe):
            return
        try:
            d = dict(describe())
        except Exception:  # a plan mid-update: keep the last text
            return
        served = None
        served_um = getattr(self.plan, "served_um", None)
        if callable(served_um) and d.get("frame_index") is not None:
            served = served_um(int(d["frame_index"]))
        corr = d.get("correction_um")
        parts = ["tracking" if d.get("filtered_um") is not None else "waiting for an estimate"]
        if served is not None:
            parts.append(f"planes at {served:+.2f} µm")
        elif isinstance(corr, int | float):
            parts.append(f"correction {corr:+.2f} µm")
        c = d.get("counters") or {}
        n = int(c.get("estimates", 0))
        if n:
            parts.append(
                f"{n} estimates, {c.get('failed', 0)} failed, {c.get('rejected', 0)} rejected"
            )
        est = d.get("estimator") or {}
        if est.get("every_n"):
            parts.append(f"every {est['every_n']} frames")
        self.status.setText(" · ".join(parts))
        warn = ""
        if d.get("clamped") and isinstance(corr, int | float):
            warn = (
                f"⚠ The sample's focus ({corr:+.2f} µm) needs planes beyond the model's range: "
                "they stop at its end. Choose planes closer to 0 or refocus the microscope."
            )
        elif d.get("last_message"):
            warn = f"⚠ {d['last_message']}"
        self.warning.setText(warn)
        self.warning.setVisible(bool(warn))
