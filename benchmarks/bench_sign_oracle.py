"""How well could ANY method tell the sign of a bead's defocus from one image? (issue 14)

An ideal observer that knows the bead's lateral position looks at one noisy image of a bead
defocused by ``+d`` (the simulator's vectorial PSF, :class:`live_deepz.sim.PSFModel`, at the
bead's depth) and must decide whether it lies above or below the focal plane. Its hardest
alternative is the most similar image from the other side: ``-d'`` for any ``d'`` (0–13 µm) and,
with ``--free-flux``, any bead brightness ×0.5–2. For Poisson pixels ``λ = background +
photons · PSF``, the separation of two hypotheses is ``d'² = Σ (λ₁ − λ₂)² / ((λ₁ + λ₂) / 2)``
and the likelihood-ratio test errs with probability ``Φ(−d'/2)``. That error is a floor for the
sign check of ``live-deepz eval``: a network can only do worse (it does not know where the bead
is, neighbours overlap, and it has finite capacity).

Usage (the defaults are the ``beads`` sample of ``live-deepz eval`` at 20 ms: 3679 detected
photons per bead, 80 e⁻/px background, depth 5 µm; 4× dimmer: ``--photons 920 --background 20``)::

    python benchmarks/bench_sign_oracle.py --free-flux --json benchmarks/results/sign_oracle.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def separation(a: np.ndarray, b: np.ndarray) -> float:
    """``d'`` of two Poisson images of expected counts ``a`` and ``b`` (Gaussian approximation)."""
    return math.sqrt(float(np.sum((a - b) ** 2 / (0.5 * (a + b)))))


def ideal_sign_error(
    defocus_um: np.ndarray,
    photons: float,
    background: float,
    depth_um: float,
    free_flux: bool,
    optics: Any = None,
) -> list[dict[str, Any]]:
    """For each ``±d``: the closest other-side image, ``d'`` and the ideal observer's error."""
    from live_deepz.optics import Optics
    from live_deepz.sim import PSFModel

    psf = PSFModel(optics=optics or Optics())
    nx = 2 * psf.half_width_px(13.0) + 1
    others = np.round(np.arange(0.0, 13.0001, 0.1), 2)
    fluxes = np.linspace(0.5, 2.0, 16) if free_flux else np.ones(1)
    rows = []
    for sign in (1, -1):
        truth = psf.psf(sign * defocus_um, depth_um, nx)  # (D, nx, nx), each sums to 1
        other = psf.psf(-sign * others, depth_um, nx)
        for d, img in zip(defocus_um, truth, strict=True):
            lam = background + photons * img
            best = min(
                (separation(lam, background + f * photons * o), float(a), float(f))
                for a, o in zip(others, other, strict=True)
                for f in fluxes
            )
            rows.append(
                {
                    "defocus_um": float(sign * d),
                    "closest_other_side_um": float(-sign * best[1]),
                    "closest_flux_factor": best[2],
                    "dprime": round(best[0], 3),
                    "ideal_sign_error": float(0.5 * math.erfc(best[0] / 2 / math.sqrt(2))),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photons", type=float, default=3679.0, help="detected photons per bead")
    p.add_argument("--background", type=float, default=80.0, help="background, e-/px")
    p.add_argument("--depth-um", type=float, default=5.0, help="bead depth below the surface")
    p.add_argument("--defocus-um", type=float, nargs="+", default=list(range(1, 11)))
    p.add_argument("--free-flux", action="store_true", help="the bead brightness is unknown")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    d = np.asarray(args.defocus_um, dtype=np.float64)
    rows = ideal_sign_error(d, args.photons, args.background, args.depth_um, args.free_flux)
    for r in rows:
        print(
            f"defocus {r['defocus_um']:+5.1f} µm: closest other-side image "
            f"{r['closest_other_side_um']:+5.1f} µm (flux ×{r['closest_flux_factor']:.2f}), "
            f"d' {r['dprime']:6.2f}, ideal sign error {r['ideal_sign_error']:.2e}"
        )
    if args.json:
        report = {"settings": {k: v for k, v in vars(args).items() if k != "json"}, "rows": rows}
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
