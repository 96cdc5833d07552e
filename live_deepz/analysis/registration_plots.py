"""Registration figure: the PSF's axial profile beside the cross-correlation's (paper Fig. 8b)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .registration import RegistrationResult

__all__ = ["plot_axial_profiles"]


def plot_axial_profiles(
    results: Sequence[RegistrationResult],
    path: str | Path,
    title: str = "",
    true_shift_z: float | None = None,
) -> Path:
    """One panel: each method's axial profile (peak-normalised) against the axial shift."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"psf": "tab:orange", "xcorr": "tab:blue"}
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for r in results:
        prof = np.asarray(r.profile_z, dtype=np.float64)
        lo, hi = float(prof.min()), float(prof.max())
        norm = (prof - lo) / (hi - lo) if hi > lo else prof * 0
        label = "PSF (Eq. 2)" if r.method == "psf" else "cross-correlation"
        c = colours.get(r.method)
        ax.plot(r.profile_shift_z, norm, "o-", ms=3, color=c, label=label)
        ax.axvline(r.shift_zyx[0], color=c, ls=":", lw=1)
    if true_shift_z is not None:
        ax.axvline(true_shift_z, color="k", ls="--", lw=1, label="true shift")
    ax.set_xlabel("axial shift (planes)")
    ax.set_ylabel("profile through the peak (min-max normalised)")
    ax.set_title(title or "axial profiles: PSF vs cross-correlation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
