"""live_deepz.ui: the pyqtgraph/qtpy live application; the only package that imports Qt."""
