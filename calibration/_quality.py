"""The calibration's quality gate: is a fitted surface a measurement or an invention?

A robust fit always returns *a* surface, even from pure noise (RANSAC finds some consensus in
anything). :func:`assess_calibration` checks what a microscopist would check before trusting it:

1. **enough independent focus measurements** — the points the fit used that are precise
   (``z_std_um`` ≤ :data:`MAX_POINT_STD_UM`) and, for tiles, show structure above the
   camera noise (band-pass energy ≥ :data:`MIN_STRUCTURE_RATIO` × what noise alone gives;
   a featureless or pure-noise image has none). Beads (separated by the detector's
   ``min_separation_px``) and tiles (a non-overlapping grid) are independent by construction.
   Fewer than :data:`MIN_USABLE_POINTS` ``[kind]``: below the gate; fewer than
   :data:`WARN_FACTOR` × that: a warning;
2. **agreement** — at least half of the usable points are inliers of the fit (below: the
   points do not describe one surface); less than 70 %: a warning;
3. **significance against a flat surface** — an F-test of the fit against ``z = const``
   on the inliers (weights = confidence). Not significant (p > :data:`SIGNIFICANCE`) is a
   warning, not a failure: a level slide is a valid finding ("flat within the noise",
   with the tilt's 95 % upper bound);
4. **the model's card** — ``card.extra["known_failures"]`` maps sample types (``"beads"``,
   ``"worm"``, ...) to why the model fails on them. Calibrating beads (``--method beads``)
   with a model known to fail on beads is below the gate; with ``--method tiles`` the known
   failures are a warning (the sample type is not known).

``level`` is ``"fail"`` (below the gate: the CLI exits 1 unless ``--force``), ``"warn"`` or
``"ok"``; ``"forced"`` when the failures were accepted with ``force=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._fit import SurfaceFit, _basis
from ._focus import FocusMap

__all__ = [
    "MAX_POINT_STD_UM",
    "MIN_STRUCTURE_RATIO",
    "MIN_USABLE_POINTS",
    "CalibrationQuality",
    "assess_calibration",
    "known_failures_of",
    "structure_ratio",
]

MAX_POINT_STD_UM = 0.5
"""A focus point is precise when its standard deviation is at most this (µm): half the
native depth of field at 20×/0.75 NA."""
MIN_STRUCTURE_RATIO = 2.0
"""A tile shows structure when its band-pass energy is at least this × pure noise's."""
MIN_USABLE_POINTS = {"plane": 6, "quadratic": 10, "cylinder": 10, "smooth": 10}
"""Fewest usable points per fit kind: the parameters plus at least 3 degrees of freedom."""
WARN_FACTOR = 1.6
MIN_INLIER_FRACTION = 0.5
WARN_INLIER_FRACTION = 0.7
SIGNIFICANCE = 0.05

_DOG_SIGMAS = (1.0, 4.0)


@dataclass
class CalibrationQuality:
    """The gate's verdict; ``problems`` say why a calibration is below the gate and what to do."""

    level: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.level != "fail"

    def message(self) -> str:
        """All problems as one message (for the error the CLI prints)."""
        return "calibration below the quality gate:\n" + "\n".join(
            f"  ({i}) {p}" for i, p in enumerate(self.problems, 1)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            **self.stats,
        }


def known_failures_of(source: Any) -> dict[str, str]:
    """``card.extra["known_failures"]`` of a model card, a loaded model or a refocus function
    holding one (``.model.card``); {} when there is none."""
    card = source
    for attr in ("model", "card"):
        if not hasattr(card, "extra") and hasattr(card, attr):
            card = getattr(card, attr)
    extra = getattr(card, "extra", None) or {}
    known = extra.get("known_failures") if isinstance(extra, dict) else None
    return {str(k): str(v) for k, v in known.items()} if isinstance(known, dict) else {}


def _noise_sigma(image: np.ndarray) -> float:
    """White-noise σ (Immerkær 1996, robust form): the MAD of the image filtered with the
    3×3 kernel that cancels locally planar structure (its squared weights sum to 36)."""
    from scipy import ndimage

    kernel = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    r = ndimage.convolve(image.astype(np.float64), kernel, mode="reflect")[1:-1, 1:-1]
    return float(1.4826 * np.median(np.abs(r - np.median(r))) / 6.0)


def structure_ratio(image: np.ndarray, points_yx_px: np.ndarray, half_px: int) -> np.ndarray:
    """Band-pass (difference of Gaussians, σ 1 and 4 px) variance in a ``2·half_px`` window
    around each point, in units of the variance pure white noise of the image's noise level
    would give there: ≈ 1 for noise or a smooth gradient, ≫ 1 for in-focus or blurred detail."""
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    s1, s2 = _DOG_SIGMAS
    dog = ndimage.gaussian_filter(img, s1) - ndimage.gaussian_filter(img, s2)
    delta = np.zeros((33, 33))
    delta[16, 16] = 1.0
    gain = float(
        np.sum((ndimage.gaussian_filter(delta, s1) - ndimage.gaussian_filter(delta, s2)) ** 2)
    )
    noise_var = max(_noise_sigma(img) ** 2 * gain, 1e-12)
    h, w = img.shape
    edge = min(int(2 * s2), h // 4, w // 4)  # the filters' border effects (a ramp's kink)
    out = np.zeros(len(points_yx_px))
    for i, (y, x) in enumerate(np.asarray(points_yx_px).reshape(-1, 2)):
        y0, y1 = max(int(y) - half_px, edge), min(int(y) + half_px + 1, h - edge)
        x0, x1 = max(int(x) - half_px, edge), min(int(x) + half_px + 1, w - edge)
        win = dog[y0:y1, x0:x1]
        out[i] = float(np.var(win)) / noise_var if win.size else 0.0
    return out


def _f_test_against_flat(fit: SurfaceFit, use: np.ndarray) -> tuple[float, float]:
    """F statistic and p-value of the fitted surface against ``z = const`` on ``use``."""
    from scipy import stats

    z = fit.z_um[use]
    w = np.clip(fit.confidence[use], 1e-6, None)
    n = len(z)
    p_model = {"plane": 3, "quadratic": 6, "cylinder": 4}.get(fit.kind, 3)
    if fit.kind == "smooth":  # test its plane part
        cy, cx = (fit.shape[0] - 1) / 2.0, (fit.shape[1] - 1) / 2.0
        pts = fit.points_yx_px[use]
        a = _basis(
            "plane", (pts[:, 1] - cx) * fit.pixel_size_um, (pts[:, 0] - cy) * fit.pixel_size_um
        )
        sw = np.sqrt(w)
        c = np.linalg.lstsq(a * sw[:, None], z * sw, rcond=None)[0]
        r1 = a @ c - z
    else:
        r1 = fit.residuals_um[use]
    if n <= p_model:
        return math.nan, math.nan
    rss1 = float(np.sum(w * r1 * r1))
    zbar = float(np.sum(w * z) / np.sum(w))
    rss0 = float(np.sum(w * (z - zbar) ** 2))
    dof = n - p_model
    if rss1 <= 1e-300:
        return math.inf, 0.0
    f = ((rss0 - rss1) / (p_model - 1)) / (rss1 / dof)
    return float(f), float(stats.f.sf(max(f, 0.0), p_model - 1, dof))


def assess_calibration(
    focus_map: FocusMap,
    fit: SurfaceFit,
    image_norm: np.ndarray | None = None,
    *,
    known_failures: dict[str, str] | None = None,
    model_name: str | None = None,
    force: bool = False,
) -> CalibrationQuality:
    """The quality gate (see the module docstring) for ``fit`` made from ``focus_map``."""
    n = len(fit.z_um)
    inl = np.asarray(fit.inliers, dtype=bool)
    precise = (
        np.ones(n, dtype=bool)
        if focus_map.z_std_um is None or len(focus_map.z_std_um) != n
        else np.asarray(focus_map.z_std_um) <= MAX_POINT_STD_UM
    )
    structured = np.ones(n, dtype=bool)
    ratios = None
    if focus_map.method == "tiles" and image_norm is not None and n:
        half = int(focus_map.info.get("tile_px", 64)) // 2
        ratios = structure_ratio(image_norm, fit.points_yx_px, half)
        structured = ratios >= MIN_STRUCTURE_RATIO
    good = precise & structured
    usable = good & inl
    n_good, n_usable = int(good.sum()), int(usable.sum())
    need = MIN_USABLE_POINTS.get(fit.kind, 6)
    what = "beads" if focus_map.method == "beads" else "tiles"
    problems: list[str] = []
    warns: list[str] = []

    if n_usable < need:
        parts = [f"{n} {what} measured"]
        if (~precise).any():
            parts.append(f"{int((~precise).sum())} imprecise (focus std > {MAX_POINT_STD_UM} µm)")
        if (~structured).any():
            parts.append(f"{int((~structured).sum())} without structure above the camera noise")
        if (good & ~inl).any():
            parts.append(f"{int((good & ~inl).sum())} outliers to the {fit.kind}")
        todo = (
            "Image a field with more beads in it (brighter beads, a longer exposure), or use "
            "--method tiles for an extended sample"
            if focus_map.method == "beads"
            else "Image a field with more structure in it (a denser or brighter sample, a "
            "longer exposure); a pure-noise or featureless image cannot be calibrated"
        )
        problems.append(
            f"only {n_usable} usable focus measurements ({', '.join(parts)}); a {fit.kind} "
            f"needs at least {need}. {todo}" + ("" if fit.kind == "plane" else ", or fit a plane")
        )
    elif n_usable < WARN_FACTOR * need:
        warns.append(
            f"only {n_usable} usable focus measurements for a {fit.kind} (fewer than "
            f"{math.ceil(WARN_FACTOR * need)}): the surface is poorly constrained"
        )
    frac = n_usable / n_good if n_good else 0.0
    if n_good and n_usable >= need:
        if frac < MIN_INLIER_FRACTION:
            problems.append(
                f"only {n_usable} of {n_good} precise focus measurements agree with the "
                f"{fit.kind}: the points do not describe one surface. Check the sample "
                "(debris, several layers), fit a smoother surface, or use smaller tiles"
            )
        elif frac < WARN_INLIER_FRACTION:
            warns.append(
                f"{n_good - n_usable} of {n_good} precise focus measurements are outliers to "
                f"the {fit.kind}"
            )
    f_stat, p_flat = _f_test_against_flat(fit, usable) if n_usable else (math.nan, math.nan)
    if n_usable >= need and math.isfinite(p_flat) and p_flat > SIGNIFICANCE:
        bound = fit.tilt_deg + 2.0 * (fit.tilt_std_deg or 0.0)
        warns.append(
            f"the {fit.kind} is not significantly different from a flat surface "
            f"(F-test p = {p_flat:.2g}): the sample is level within the measurement noise "
            f"(tilt below {bound:.2f}° at 95 %); the offset {fit.offset_um:+.2f} µm is what "
            "was measured"
        )
    known = dict(known_failures or {})
    who = f"the model {model_name!r}" if model_name else "the model"
    if focus_map.method == "beads" and "beads" in known:
        problems.append(
            f"{who} is known to fail on beads (its card: {known['beads']}), so the bead "
            "focus positions it gives are not measurements. Use a model whose evaluation "
            "passes on beads (live-deepz eval), or calibrate an extended sample with "
            "--method tiles"
        )
    elif known and focus_map.method == "tiles":
        warns.append(
            f"{who} is known to fail on {', '.join(sorted(known))} (its card); if this "
            "sample is one of them, do not trust this surface"
        )
    stats = {
        "n_points": n,
        "n_precise": int(precise.sum()),
        "n_structured": int(structured.sum()),
        "n_usable": n_usable,
        "min_usable": need,
        "inlier_fraction": round(frac, 4),
        "f_statistic": None if not math.isfinite(f_stat) else round(f_stat, 4),
        "p_flat": None if not math.isfinite(p_flat) else float(f"{p_flat:.4g}"),
        "structure_ratio_median": None if ratios is None else round(float(np.median(ratios)), 3),
        "known_failures": known,
    }
    if problems and force:
        warns = [f"accepted with --force: {p}" for p in problems] + warns
        return CalibrationQuality("forced", problems, warns, stats)
    level = "fail" if problems else ("warn" if warns else "ok")
    return CalibrationQuality(level, problems, warns, stats)
