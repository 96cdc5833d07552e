"""Optical parameters shared by the simulator, model cards and the calibration."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import InputError


@dataclass(frozen=True)
class Optics:
    """Wide-field fluorescence optics, all lengths in micrometres.

    Defaults are the Deep-Z paper's 20x/0.75 NA air objective with 0.325 um pixels
    in the sample and ~0.6 um emission, imaging an aqueous sample.
    """

    na: float = 0.75
    """Numerical aperture of the objective."""
    wavelength_um: float = 0.6
    """Emission wavelength."""
    pixel_size_um: float = 0.325
    """Camera pixel size projected into the sample."""
    immersion_ri: float = 1.0
    """Refractive index of the immersion medium (1.0 = air)."""
    sample_ri: float = 1.33
    """Refractive index of the sample (1.33 = water)."""

    def __post_init__(self) -> None:
        if not (0 < self.na < self.immersion_ri):
            raise InputError(
                f"NA {self.na} must be > 0 and below the immersion index {self.immersion_ri}"
            )
        for name in ("wavelength_um", "pixel_size_um", "immersion_ri", "sample_ri"):
            if not getattr(self, name) > 0:
                raise InputError(f"optics.{name} must be positive, got {getattr(self, name)}")

    @property
    def lateral_resolution_um(self) -> float:
        """Theoretical lateral FWHM of the in-focus PSF, ~0.51 lambda / NA."""
        return 0.51 * self.wavelength_um / self.na

    @property
    def depth_of_field_um(self) -> float:
        """Native depth of field, n lambda / NA^2."""
        return self.immersion_ri * self.wavelength_um / self.na**2

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Optics:
        known = {k: float(d[k]) for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)
