"""live-deepz: Deep-Z virtual refocusing of wide-field fluorescence, live at the microscope.

The core package (this one) holds the network, model files, DPMs, normalisation, the
simulated microscope and the pymmcore-plus connection. It never imports Qt, TensorRT,
``live_deepz.engine``, ``live_deepz.calibration`` or ``live_deepz.ui``.
"""

from ._version import __version__
from .errors import CameraError, DPMRangeError, InputError, LiveDeepzError, ModelFileError
from .optics import Optics

__all__ = [
    "CameraError",
    "DPMRangeError",
    "InputError",
    "LiveDeepzError",
    "ModelFileError",
    "Optics",
    "__version__",
]
