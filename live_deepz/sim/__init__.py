"""The physical simulated microscope: optics (vectorial PSF), samples, rendering, camera.

* :mod:`~live_deepz.sim.psf`: :class:`PSFModel`, Aguet's vectorial PSF via psfmodels, with
  index-mismatch focal shift and axial asymmetry; disk/memory caches.
* :mod:`~live_deepz.sim.samples`: :class:`Sample` and seeded generators (beads flat, tilted,
  on a cylinder, in a volume; a two-channel worm with calcium activity; filaments).
* :mod:`~live_deepz.sim.render`: :class:`Renderer`, noise-free z-stacks and planes.
* :mod:`~live_deepz.sim.camera`: :class:`CameraModel`, shot/read noise, gain, offset, uint16.
* :mod:`~live_deepz.sim.scene`: :class:`SimScene` (fast streaming frames for the simulated
  pymmcore-plus camera) and :class:`DriftTrajectory`.

Conventions: µm; z grows deeper into the sample; stage focus 0 focuses the sample's reference
plane; images are photons/s per pixel before the camera.
"""

from .camera import CameraModel
from .psf import PSFModel
from .render import Renderer
from .samples import (
    GENERATORS,
    Sample,
    beads_cylinder,
    beads_flat,
    beads_tilted,
    beads_volume,
    filaments,
    point_sources,
    worm,
)
from .scene import DriftTrajectory, SimScene

__all__ = [
    "GENERATORS",
    "CameraModel",
    "DriftTrajectory",
    "PSFModel",
    "Renderer",
    "Sample",
    "SimScene",
    "beads_cylinder",
    "beads_flat",
    "beads_tilted",
    "beads_volume",
    "filaments",
    "point_sources",
    "worm",
]
