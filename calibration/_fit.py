"""Robust surface fits to a :class:`~live_deepz.calibration.FocusMap`: the DPM that focuses it.

Coordinates follow :mod:`live_deepz.dpm`: ``x`` along columns, ``y`` along rows, in µm from
the image centre ``((H − 1) / 2, (W − 1) / 2)``; ``z`` in µm, + = deeper. The fitted surface
``z(x, y)`` *is* the DPM that brings the sample into focus.

Kinds (:data:`FIT_KINDS`):

``plane``
    ``z = c0 + gx·x + gy·y`` → ``tilt_deg = atan(|g|)`` and ``azimuth_deg = atan2(gy, gx)``:
    the in-plane direction (from +x towards +y) in which the sample gets deeper, so that
    ``dpm.tilted_plane(shape, px, tilt_deg, azimuth_deg, offset_um=c0)`` rebuilds it.
``quadratic``
    ``z = c0 + x·x + y·y + xx·x² + xy·x·y + yy·y²`` (general tilt + curvature, e.g. a tube
    tilted along its axis); ``curvature_per_um`` are the principal curvatures (eigenvalues of
    the Hessian).
``cylinder``
    ``dpm.cylinder``'s model exactly: ``z = offset + sag(d)``, ``d`` the distance from an
    in-plane axis at ``axis_deg`` shifted ``axis_shift_um`` from the centre, ``sag(d) =
    R − sqrt(R² − d²)`` added for a surface convex towards the objective (a tube seen from
    outside) and subtracted otherwise. Fitted by nonlinear least squares (soft-L1 loss)
    started from the quadratic fit's dominant Hessian eigenvector. Over a ~170 µm field a
    7.2 mm tube sags ~1 µm, so the radius is reported with its standard error and a warning
    when the curvature is not significant.
``smooth``
    a thin-plate spline through the points (``scipy.interpolate.RBFInterpolator``, smoothing
    ``smoothing / confidence`` in coordinates scaled by half the frame diagonal), for
    arbitrary topographies measured with tiles; it is the only kind that can violate the
    paper's > ~32 µm smoothness limit, hence the check.

Robustness: a RANSAC pass (``skimage.measure.ransac``, threshold ``inlier_threshold_um``,
default 1 µm ≈ the native depth of field) on the linear model (plane, or quadratic for the
cylinder) finds the consensus set, then iteratively re-weighted least squares on the inliers
with the points' ``confidence`` as weights, re-classifying inliers at ``3σ`` (σ from the MAD
of the inlier residuals, at least 0.05 µm) until stable. ``smooth`` starts from the points
within 1 µm (or 4 MADs) of the median of their 8 nearest neighbours and re-classifies at 3σ
of the spline's residuals the same way.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from live_deepz import dpm as dpm_mod
from live_deepz.errors import DPMRangeError, InputError, clause

from ._focus import FocusMap

__all__ = [
    "FIT_KINDS",
    "MIN_POINTS",
    "SurfaceFit",
    "fit_points",
    "fit_surface",
    "load_calibration",
    "save_calibration",
]

FIT_KINDS = ("plane", "quadratic", "cylinder", "smooth")
MIN_POINTS = {"plane": 3, "quadratic": 6, "cylinder": 6, "smooth": 6}
"""Fewest points each kind accepts (the number of free parameters, 6 for the cylinder so
that its start comes from a quadratic fit)."""

DEFAULT_INLIER_THRESHOLD_UM = 1.0
"""RANSAC's consensus threshold: about the native depth of field at 20×/0.75 NA."""
MIN_INLIER_THRESHOLD_UM = 0.05
"""The re-classification threshold never goes below this (noise-free data)."""

_LINEAR_TERMS = {"plane": ("c0", "x", "y"), "quadratic": ("c0", "x", "y", "xx", "xy", "yy")}


def _basis(kind: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    cols = [np.ones_like(x), x, y]
    if kind == "quadratic":
        cols += [x * x, x * y, y * y]
    return np.stack(cols, axis=1)


class _LinearModel:
    """``skimage.measure.ransac`` model: least squares ``A @ c ≈ z``."""

    def __init__(self, params: np.ndarray | None = None) -> None:
        self.params = params

    @classmethod
    def from_estimate(cls, a: np.ndarray, z: np.ndarray) -> _LinearModel:
        if np.linalg.matrix_rank(a) < a.shape[1]:
            return cls(None)
        return cls(np.linalg.lstsq(a, z, rcond=None)[0])

    def __bool__(self) -> bool:
        return self.params is not None

    def residuals(self, a: np.ndarray, z: np.ndarray) -> np.ndarray:
        assert self.params is not None
        return np.asarray(a @ self.params - z)


def _wls(a: np.ndarray, z: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares: coefficients and their covariance."""
    sw = np.sqrt(w)
    c = np.linalg.lstsq(a * sw[:, None], z * sw, rcond=None)[0]
    r = a @ c - z
    dof = max(len(z) - a.shape[1], 1)
    s2 = float(np.sum(w * r * r) / dof)
    try:
        cov = s2 * np.linalg.inv((a * w[:, None]).T @ a)
    except np.linalg.LinAlgError:
        cov = np.full((a.shape[1], a.shape[1]), np.nan)
    return c, cov


def _robust_scale(r: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(r))) if r.size else 0.0


def _consensus(
    a: np.ndarray, z: np.ndarray, w: np.ndarray, threshold: float | None, seed: int
) -> tuple[np.ndarray, float]:
    """Inlier mask and final threshold for a linear model (RANSAC + re-classification)."""
    from skimage.measure import ransac

    n, p = a.shape
    if n <= p:
        return np.ones(n, dtype=bool), math.inf
    thr0 = DEFAULT_INLIER_THRESHOLD_UM if threshold is None else float(threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, inl = ransac(
            (a, z),
            _LinearModel,
            min_samples=p,
            residual_threshold=thr0,
            max_trials=500,
            stop_probability=0.999,
            rng=seed,
        )
    inl = np.ones(n, dtype=bool) if inl is None or inl.sum() < p else np.asarray(inl, bool)
    thr = thr0
    for _ in range(20):
        c, _cov = _wls(a[inl], z[inl], w[inl])
        r = a @ c - z
        if threshold is None:
            thr = max(3.0 * _robust_scale(r[inl]), MIN_INLIER_THRESHOLD_UM)
        new = np.abs(r) <= thr
        if new.sum() < p or np.array_equal(new, inl):
            break
        inl = new
    return inl, thr


@dataclass
class SurfaceFit:
    """A fitted focus surface; :meth:`dpm` gives the DPM (µm) that brings the sample into focus.

    ``tilt_deg``/``azimuth_deg`` describe the surface's slope at the image centre for every
    kind (for a plane, its tilt). Angles in degrees, lengths in µm, positions in pixels.
    """

    kind: str
    shape: tuple[int, int]
    pixel_size_um: float
    coefficients: dict[str, float]
    """Model parameters (see the module docstring); ``x``, ``y`` in µm from the centre."""
    offset_um: float
    """The surface at the image centre."""
    tilt_deg: float
    azimuth_deg: float
    points_yx_px: np.ndarray
    z_um: np.ndarray
    confidence: np.ndarray
    residuals_um: np.ndarray
    """``(N,)`` fitted − measured, for every point (outliers included)."""
    inliers: np.ndarray
    """``(N,)`` bool, the points the fit used."""
    residual_rms_um: float
    """RMS residual over the inliers."""
    inlier_threshold_um: float
    tilt_std_deg: float | None = None
    radius_um: float | None = None
    radius_std_um: float | None = None
    axis_deg: float | None = None
    convex_towards_objective: bool | None = None
    curvature_per_um: tuple[float, float] | None = None
    warnings: list[str] = field(default_factory=list)
    smoothing: float | None = None

    # ------------------------------------------------------------------ derived
    @property
    def n_points(self) -> int:
        return len(self.z_um)

    @property
    def n_inliers(self) -> int:
        return int(np.count_nonzero(self.inliers))

    @property
    def surface_spec(self) -> dict[str, Any] | None:
        """A :func:`live_deepz.dpm.surface_from_spec` description (plane/cylinder), else None."""
        if self.kind == "plane":
            return {
                "kind": "tilted_plane",
                "gradient": [self.coefficients["y"], self.coefficients["x"]],
                "offset_um": self.coefficients["c0"],
            }
        if self.kind == "cylinder":
            return {
                "kind": "cylinder",
                "radius_um": float(self.radius_um),  # type: ignore[arg-type]
                "axis_deg": float(self.axis_deg),  # type: ignore[arg-type]
                "offset_um": self.coefficients["offset_um"],
                "convex_towards_objective": bool(self.convex_towards_objective),
                "center": list(self._cylinder_center_px()),
            }
        return None

    def _cylinder_center_px(self) -> tuple[float, float]:
        th = math.radians(self.coefficients["axis_deg"])
        p = self.coefficients["axis_shift_um"]
        cy, cx = (self.shape[0] - 1) / 2.0, (self.shape[1] - 1) / 2.0
        px = self.pixel_size_um
        # the axis passes through centre + p·n, n = (−sin θ, cos θ) in (x, y)
        return cy + p * math.cos(th) / px, cx - p * math.sin(th) / px

    def _xy_um(self, points_yx_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pts = np.asarray(points_yx_px, dtype=np.float64).reshape(-1, 2)
        cy, cx = (self.shape[0] - 1) / 2.0, (self.shape[1] - 1) / 2.0
        return (pts[:, 1] - cx) * self.pixel_size_um, (pts[:, 0] - cy) * self.pixel_size_um

    def _eval_xy(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        c = self.coefficients
        if self.kind in _LINEAR_TERMS:
            names = _LINEAR_TERMS[self.kind]
            return _basis(self.kind, x.ravel(), y.ravel()) @ np.array([c[k] for k in names])
        if self.kind == "cylinder":
            return _cylinder_model(
                np.array([c["offset_um"], math.radians(c["axis_deg"]), c["axis_shift_um"], c["k"]]),
                x.ravel(),
                y.ravel(),
            )
        scale = _length_scale(self.shape, self.pixel_size_um)
        return np.asarray(self._rbf()(np.stack([x.ravel(), y.ravel()], axis=1) / scale))

    def _rbf(self) -> Any:
        if getattr(self, "_rbf_cache", None) is None:
            x, y = self._xy_um(self.points_yx_px[self.inliers])
            self._rbf_cache = _make_rbf(
                x,
                y,
                self.z_um[self.inliers],
                self.confidence[self.inliers],
                float(self.smoothing or 0.0),
                _length_scale(self.shape, self.pixel_size_um),
            )
        return self._rbf_cache

    def evaluate(self, points_yx_px: np.ndarray) -> np.ndarray:
        """The surface (µm) at ``(N, 2)`` pixel positions."""
        x, y = self._xy_um(points_yx_px)
        return self._eval_xy(x, y)

    def dpm(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The ``(H, W)`` float32 DPM (µm) that brings the fitted surface into focus.

        ``shape`` must be the calibrated frame shape (surfaces are defined per camera pixel
        around the frame centre; a changed ROI/binning needs a new calibration).
        """
        h, w = self.shape
        if shape is not None and (int(shape[0]), int(shape[1])) != (h, w):
            raise InputError(
                f"the surface was calibrated on {h}×{w} px frames, not {shape[0]}×{shape[1]}; "
                "calibrate again for this camera ROI/binning"
            )
        spec = self.surface_spec
        if spec is not None:
            return dpm_mod.surface_from_spec(spec, (h, w), self.pixel_size_um)
        cached = getattr(self, "_dpm_cache", None)
        if cached is not None:
            return np.array(cached)
        if self.kind == "smooth" and h * w > 128 * 128:
            # evaluate on a coarse grid (≤ 129 nodes a side), then cubic interpolation: the
            # spline is smooth on that scale
            from scipy import ndimage

            step = max(1, math.ceil(max(h, w) / 128))
            gy = np.arange(0, h + step - 1, step, dtype=np.float64)
            gx = np.arange(0, w + step - 1, step, dtype=np.float64)
            yy, xx = np.meshgrid(gy, gx, indexing="ij")
            coarse = self.evaluate(np.stack([yy.ravel(), xx.ravel()], 1)).reshape(yy.shape)
            fy, fx = np.mgrid[0:h, 0:w].astype(np.float64) / step
            out = ndimage.map_coordinates(coarse, [fy, fx], order=3, mode="nearest")
        else:
            yy, xx = np.mgrid[0:h, 0:w]
            out = self.evaluate(np.stack([yy.ravel(), xx.ravel()], 1)).reshape(h, w)
        self._dpm_cache = out.astype(np.float32)
        return np.array(self._dpm_cache)

    def check(
        self,
        z_range_um: tuple[float, float] | None = None,
        *,
        allow: bool = False,
        min_period_um: float = dpm_mod.DEFAULT_MIN_PERIOD_UM,
    ) -> list[str]:
        """Check the DPM against the model's axial range and the smoothness limit.

        Raises :class:`~live_deepz.errors.DPMRangeError` when the surface leaves
        ``z_range_um`` (unless ``allow``: then a warning is returned). Returns the new
        warnings (also appended to :attr:`warnings`).
        """
        surface = self.dpm()
        found: list[str] = []
        if z_range_um is not None:
            what = f"the fitted {self.kind} surface"
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    dpm_mod.check_range(surface, z_range_um, allow=allow, what=what)
                for w in caught:  # keep them as warnings too
                    found.append(str(w.message))
                    warnings.warn(w.message, stacklevel=2)
            except DPMRangeError as exc:
                raise DPMRangeError(
                    f"{clause(exc)}. The sample is tilted/curved (or out of focus) by more "
                    "than the model can refocus over this field: refocus the microscope onto the "
                    "sample's centre, level the sample, or use a smaller camera ROI"
                ) from None
        msg = dpm_mod.check_smoothness(surface, self.pixel_size_um, min_period_um)
        if msg is not None:
            found.append(msg + " (fit a lower-order surface or raise the smoothing)")
        self.warnings.extend(m for m in found if m not in self.warnings)
        return found

    # ------------------------------------------------------------------ I/O
    def summary(self) -> str:
        """A few human lines: the surface, residual RMS and points used."""
        lines = [f"fit: {self.kind}"]
        tilt = f"tilt {self.tilt_deg:.3f}°"
        if self.tilt_std_deg is not None and math.isfinite(self.tilt_std_deg):
            tilt += f" ± {self.tilt_std_deg:.3f}°"
        lines.append(
            f"{tilt} towards azimuth {self.azimuth_deg:.1f}° (from +x towards +y), "
            f"offset {self.offset_um:+.3f} µm at the centre"
        )
        if self.kind == "cylinder" and self.radius_um is not None:
            r = f"radius {self.radius_um / 1000:.3g} mm"
            if self.radius_std_um is not None and math.isfinite(self.radius_std_um):
                r += f" ± {self.radius_std_um / 1000:.2g} mm"
            side = "convex" if self.convex_towards_objective else "concave"
            lines.append(
                f"{r} (diameter {2 * self.radius_um / 1000:.3g} mm), axis "
                f"{self.axis_deg:.1f}°, {side} towards the objective"
            )
        if self.curvature_per_um is not None and self.kind == "quadratic":
            k1, k2 = self.curvature_per_um
            lines.append(f"principal curvatures {k1:.3g}, {k2:.3g} 1/µm")
        lines.append(
            f"residual RMS {self.residual_rms_um:.3f} µm over {self.n_inliers} of "
            f"{self.n_points} points (inlier threshold {self.inlier_threshold_um:.3g} µm)"
        )
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (``json.dumps`` ready; no NaN/inf)."""

        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        return {
            "fit": self.kind,
            "tilt_deg": float(self.tilt_deg),
            "tilt_std_deg": num(self.tilt_std_deg),
            "azimuth_deg": float(self.azimuth_deg),
            "offset_um": float(self.offset_um),
            "coefficients": {k: float(v) for k, v in self.coefficients.items()},
            "radius_um": num(self.radius_um),
            "radius_std_um": num(self.radius_std_um),
            "axis_deg": num(self.axis_deg),
            "convex_towards_objective": self.convex_towards_objective,
            "curvature_per_um": None
            if self.curvature_per_um is None
            else [float(v) for v in self.curvature_per_um],
            "residual_rms_um": float(self.residual_rms_um),
            "inlier_threshold_um": num(self.inlier_threshold_um),
            "n_points": self.n_points,
            "n_inliers": self.n_inliers,
            "pixel_size_um": float(self.pixel_size_um),
            "shape": [int(self.shape[0]), int(self.shape[1])],
            "smoothing": self.smoothing,
            "surface_spec": self.surface_spec,
            "warnings": list(self.warnings),
            "points": {
                "yx_px": np.round(self.points_yx_px, 3).tolist(),
                "z_um": np.round(self.z_um, 5).tolist(),
                "confidence": np.round(self.confidence, 5).tolist(),
                "residual_um": np.round(self.residuals_um, 5).tolist(),
                "inlier": [bool(v) for v in self.inliers],
            },
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SurfaceFit:
        """Rebuild a fit written by :meth:`to_json`."""
        try:
            pts = d.get("points") or {}
            n = len(pts.get("z_um", []))

            def opt(key: str) -> float | None:
                v = d.get(key)
                return None if v is None else float(v)

            curv = d.get("curvature_per_um")
            return cls(
                kind=str(d["fit"]),
                shape=(int(d["shape"][0]), int(d["shape"][1])),
                pixel_size_um=float(d["pixel_size_um"]),
                coefficients={k: float(v) for k, v in d["coefficients"].items()},
                offset_um=float(d["offset_um"]),
                tilt_deg=float(d["tilt_deg"]),
                azimuth_deg=float(d["azimuth_deg"]),
                points_yx_px=np.array(pts.get("yx_px", []), dtype=np.float64).reshape(-1, 2),
                z_um=np.array(pts.get("z_um", []), dtype=np.float64),
                confidence=np.array(pts.get("confidence", [1.0] * n), dtype=np.float64),
                residuals_um=np.array(pts.get("residual_um", [0.0] * n), dtype=np.float64),
                inliers=np.array(pts.get("inlier", [True] * n), dtype=bool),
                residual_rms_um=float(d["residual_rms_um"]),
                inlier_threshold_um=float(d.get("inlier_threshold_um") or math.inf),
                tilt_std_deg=opt("tilt_std_deg"),
                radius_um=opt("radius_um"),
                radius_std_um=opt("radius_std_um"),
                axis_deg=opt("axis_deg"),
                convex_towards_objective=d.get("convex_towards_objective"),
                curvature_per_um=None if curv is None else (float(curv[0]), float(curv[1])),
                warnings=list(d.get("warnings", [])),
                smoothing=d.get("smoothing"),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InputError(
                f"not a surface fit written by live-deepz calibrate: {exc!r}"
            ) from None


# --------------------------------------------------------------------------- cylinder


def _cylinder_model(params: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``off + sag(u)``, ``u = n·r − p``, ``n = (−sin θ, cos θ)``; ``k = ±1/(2R)``."""
    off, th, p, k = params
    u = -math.sin(th) * x + math.cos(th) * y - p
    q = np.clip(4.0 * k * k * u * u, 0.0, 1.0 - 1e-12)
    return np.asarray(off + 2.0 * k * u * u / (1.0 + np.sqrt(1.0 - q)))


def _fit_cylinder(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, w: np.ndarray, quad: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cylinder parameters and their covariance, started from quadratic coefficients."""
    from scipy.optimize import least_squares

    c0, gx, gy, cxx, cxy, cyy = quad
    hess = np.array([[2 * cxx, cxy], [cxy, 2 * cyy]])
    evals, evecs = np.linalg.eigh(hess)
    j = int(np.argmax(np.abs(evals)))
    nvec = evecs[:, j]  # (nx, ny), perpendicular to the axis
    k0 = 0.5 * float(evals[j])
    th0 = math.atan2(-nvec[0], nvec[1])
    p0 = -float(np.dot([gx, gy], nvec)) / (2.0 * k0) if abs(k0) > 1e-12 else 0.0
    extent = float(np.max(np.hypot(x, y))) + 1.0
    p0 = float(np.clip(p0, -100 * extent, 100 * extent))
    start = np.array([c0 - k0 * p0 * p0, th0, p0, k0])
    sw = np.sqrt(w)

    def resid(params: np.ndarray) -> np.ndarray:
        return np.asarray(sw * (_cylinder_model(params, x, y) - z))

    res = least_squares(
        resid, start, loss="soft_l1", f_scale=max(scale, MIN_INLIER_THRESHOLD_UM), x_scale="jac"
    )
    jac = res.jac
    dof = max(len(z) - 4, 1)
    s2 = float(np.sum(res.fun**2) / dof)
    try:
        cov = s2 * np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        cov = np.full((4, 4), np.nan)
    return res.x, cov


# --------------------------------------------------------------------------- fitting


def _slope_at_centre(gx: float, gy: float, cov: np.ndarray | None) -> tuple[float, float, float]:
    g = math.hypot(gx, gy)
    tilt = math.degrees(math.atan(g))
    az = math.degrees(math.atan2(gy, gx)) % 360.0 if g > 0 else 0.0
    std = math.nan
    if cov is not None and np.all(np.isfinite(cov)):
        if g > 1e-12:
            jv = np.array([gx, gy]) / (g * (1.0 + g * g))
            std = math.degrees(math.sqrt(max(float(jv @ cov @ jv), 0.0)))
        else:
            std = math.degrees(math.sqrt(max(float(np.trace(cov)) / 2.0, 0.0)))
    return tilt, az, std


def fit_points(
    points_yx_px: np.ndarray,
    z_um: np.ndarray,
    kind: str = "plane",
    *,
    shape: tuple[int, int],
    pixel_size_um: float,
    confidence: np.ndarray | None = None,
    inlier_threshold_um: float | None = None,
    smoothing: float = 0.1,
    seed: int = 0,
    z_range_um: tuple[float, float] | None = None,
    allow_out_of_range: bool = False,
) -> SurfaceFit:
    """Fit a surface of ``kind`` (:data:`FIT_KINDS`) to focus points; see the module docstring.

    Parameters
    ----------
    points_yx_px, z_um : ``(N, 2)`` pixel positions and ``(N,)`` in-focus offsets (µm).
    shape, pixel_size_um : the frame the points were measured on.
    confidence : ``(N,)`` weights in (0, 1] (default 1).
    inlier_threshold_um : fixed outlier threshold (default: RANSAC at 1 µm, then 3σ).
    smoothing : thin-plate-spline smoothing for ``kind="smooth"`` (0 = interpolate; the
        spline works in units of half the frame diagonal, where 0.1 suits ~0.1 µm noise).
    z_range_um : when given, :meth:`SurfaceFit.check` runs (raises
        :class:`~live_deepz.errors.DPMRangeError` outside it unless ``allow_out_of_range``).

    Raises
    ------
    InputError : unknown kind, too few points, degenerate (collinear) points, bad values.
    """
    if kind not in FIT_KINDS:
        raise InputError(f"unknown surface fit {kind!r}; use one of {', '.join(FIT_KINDS)}")
    pts = np.asarray(points_yx_px, dtype=np.float64).reshape(-1, 2)
    z = np.asarray(z_um, dtype=np.float64).reshape(-1)
    if len(pts) != len(z):
        raise InputError(f"{len(pts)} points but {len(z)} z values")
    conf = np.ones_like(z) if confidence is None else np.asarray(confidence, np.float64).ravel()
    if len(conf) != len(z):
        raise InputError(f"{len(z)} points but {len(conf)} confidence values")
    if not (np.isfinite(pts).all() and np.isfinite(z).all() and np.isfinite(conf).all()):
        raise InputError("the focus points contain NaN or inf")
    h, w = int(shape[0]), int(shape[1])
    px = float(pixel_size_um)
    if not px > 0:
        raise InputError(f"pixel_size_um must be > 0, got {pixel_size_um}")
    need = MIN_POINTS[kind]
    if len(z) < need:
        raise InputError(
            f"a {kind} fit needs at least {need} focus points, got {len(z)}; measure more "
            "points (a larger field, more beads, a lower detection threshold, smaller tiles) "
            + ("or fit a plane (3 points)" if kind != "plane" else "")
        )
    wts = np.clip(conf, 1e-6, None)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    x = (pts[:, 1] - cx) * px
    y = (pts[:, 0] - cy) * px
    spread = np.linalg.matrix_rank(np.stack([np.ones_like(x), x, y], 1), tol=1e-6 * px)
    if spread < 3:
        raise InputError(
            f"the {len(z)} focus points are (nearly) collinear: a surface cannot be fitted; "
            "measure points spread over the whole field"
        )
    fit_warnings: list[str] = []
    kw: dict[str, Any] = {}
    if kind in ("plane", "quadratic", "cylinder"):
        lin_kind = "plane" if kind == "plane" else "quadratic"
        a = _basis(lin_kind, x, y)
        inl, thr = _consensus(a, z, wts, inlier_threshold_um, seed)
        if len(z) == a.shape[1]:
            fit_warnings.append(
                f"exactly {len(z)} points for {a.shape[1]} parameters: the fit passes through "
                "every point and no outlier can be detected"
            )
        c, cov = _wls(a[inl], z[inl], wts[inl])
        if kind == "cylinder":
            scale = _robust_scale((a @ c - z)[inl])
            params, pcov = _fit_cylinder(x[inl], y[inl], z[inl], wts[inl], c, scale)
            r = _cylinder_model(params, x, y) - z
            if inlier_threshold_um is None:
                thr = max(3.0 * _robust_scale(r[inl]), MIN_INLIER_THRESHOLD_UM)
            new = np.abs(r) <= thr
            if new.sum() >= need and not np.array_equal(new, inl):
                inl = new
                params, pcov = _fit_cylinder(x[inl], y[inl], z[inl], wts[inl], c, scale)
            off, th, p, k = (float(v) for v in params)
            # axis direction modulo 180°: flipping θ by 180° flips n, hence the shift p
            turns = math.floor(math.degrees(th) / 180.0)
            axis_deg = math.degrees(th) - 180.0 * turns
            if turns % 2:
                p = -p
            k_std = math.sqrt(pcov[3, 3]) if np.isfinite(pcov[3, 3]) else math.nan
            if abs(k) < 1e-12:
                k = 1e-12 if k >= 0 else -1e-12
            radius = 1.0 / (2.0 * abs(k))
            radius_std = k_std / (2.0 * k * k) if math.isfinite(k_std) else math.nan
            if not (math.isfinite(k_std) and abs(k) > 3.0 * k_std):
                fit_warnings.append(
                    f"the curvature is not significant (radius {radius:.3g} µm, "
                    f"k = {k:.3g} ± {k_std:.2g} 1/µm): the surface is flat within the noise "
                    "over this field; a plane fit describes it as well"
                )
            coeffs = {
                "offset_um": off,
                "axis_deg": axis_deg,
                "axis_shift_um": p,
                "k": k,
            }
            # slope at the centre: dz/dr = sag'(u)·n with u = −p (parabolic: 2k·u)
            u0 = -p
            dsag = 2.0 * k * u0 / math.sqrt(max(1.0 - 4.0 * k * k * u0 * u0, 1e-12))
            thr_ = math.radians(axis_deg)
            gx, gy = -math.sin(thr_) * dsag, math.cos(thr_) * dsag
            tilt, az, _ = _slope_at_centre(gx, gy, None)
            kw.update(
                radius_um=radius,
                radius_std_um=radius_std,
                axis_deg=axis_deg,
                convex_towards_objective=k > 0,
                curvature_per_um=(2.0 * k, 0.0),
            )
            offset = float(_cylinder_model(params, np.zeros(1), np.zeros(1))[0])
            resid = _cylinder_model(params, x, y) - z
            tilt_std = math.nan
        else:
            names = _LINEAR_TERMS[kind]
            coeffs = {nme: float(v) for nme, v in zip(names, c)}
            resid = a @ c - z
            offset = coeffs["c0"]
            tilt, az, tilt_std = _slope_at_centre(coeffs["x"], coeffs["y"], cov[1:3, 1:3])
            if kind == "quadratic":
                hess = np.array(
                    [[2 * coeffs["xx"], coeffs["xy"]], [coeffs["xy"], 2 * coeffs["yy"]]]
                )
                ev = np.linalg.eigvalsh(hess)
                kw["curvature_per_um"] = (
                    float(ev[np.argmax(np.abs(ev))]),
                    float(ev[np.argmin(np.abs(ev))]),
                )
    else:  # smooth
        inl, thr = _neighbour_consensus(x, y, z, inlier_threshold_um)
        scale = _length_scale((h, w), px)
        for _ in range(10):
            if inl.sum() < need:
                raise InputError(
                    f"only {int(inl.sum())} of {len(z)} points agree with their neighbours; "
                    f"a smooth fit needs {need}"
                )
            rbf = _make_rbf(x[inl], y[inl], z[inl], wts[inl], smoothing, scale)
            r = rbf(np.stack([x, y], 1) / scale) - z
            if inlier_threshold_um is None:
                thr = max(3.0 * _robust_scale(r[inl]), MIN_INLIER_THRESHOLD_UM)
            new = np.abs(r) <= thr
            if np.array_equal(new, inl) or new.sum() < need:
                break
            inl = new
        a = _basis("plane", x, y)
        c, cov = _wls(a[inl], z[inl], wts[inl])
        tilt, az, tilt_std = _slope_at_centre(float(c[1]), float(c[2]), cov[1:3, 1:3])
        coeffs = {"c0": float(c[0]), "x": float(c[1]), "y": float(c[2])}
        kw["smoothing"] = float(smoothing)
        offset = math.nan  # set below from the spline
        resid = np.zeros_like(z)
    fit = SurfaceFit(
        kind=kind,
        shape=(h, w),
        pixel_size_um=px,
        coefficients=coeffs,
        offset_um=offset,
        tilt_deg=tilt,
        azimuth_deg=az,
        points_yx_px=pts,
        z_um=z,
        confidence=conf,
        residuals_um=resid,
        inliers=inl,
        residual_rms_um=0.0,
        inlier_threshold_um=thr,
        tilt_std_deg=None if not math.isfinite(tilt_std) else tilt_std,
        warnings=fit_warnings,
        **kw,
    )
    if kind == "smooth":
        fit.residuals_um = fit.evaluate(pts) - z
        fit.offset_um = float(fit.evaluate(np.array([[cy, cx]]))[0])
    fit.residual_rms_um = float(np.sqrt(np.mean(fit.residuals_um[inl] ** 2)))
    n_out = len(z) - fit.n_inliers
    if n_out > 0.5 * len(z):
        fit.warnings.append(
            f"{n_out} of {len(z)} points are outliers to the {kind} fit: the surface model "
            "may not suit this sample"
        )
    if z_range_um is not None:
        fit.check(z_range_um, allow=allow_out_of_range)
    return fit


def _length_scale(shape: tuple[int, int], pixel_size_um: float) -> float:
    """Half the frame diagonal (µm): the spline works in coordinates of this unit."""
    return 0.5 * math.hypot(shape[0], shape[1]) * pixel_size_um


def _make_rbf(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, w: np.ndarray, smoothing: float, scale: float
) -> Any:
    from scipy.interpolate import RBFInterpolator

    return RBFInterpolator(
        np.stack([x, y], axis=1) / scale,
        z,
        kernel="thin_plate_spline",
        smoothing=float(smoothing) / np.maximum(w, 1e-3),
        degree=1,
    )


def _neighbour_consensus(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, threshold: float | None
) -> tuple[np.ndarray, float]:
    """Points within ``threshold`` of the median of their 8 nearest neighbours."""
    from scipy.spatial import cKDTree

    n = len(z)
    k = min(9, n)
    _, idx = cKDTree(np.stack([x, y], 1)).query(np.stack([x, y], 1), k=k)
    med = np.median(z[idx[:, 1:]], axis=1)
    dev = z - med
    thr = (
        float(threshold)
        if threshold is not None
        else max(DEFAULT_INLIER_THRESHOLD_UM, 4.0 * _robust_scale(dev))
    )
    return np.abs(dev) <= thr, thr


def fit_surface(
    focus_map: FocusMap,
    kind: str = "plane",
    *,
    shape: tuple[int, int] | None = None,
    pixel_size_um: float | None = None,
    **kwargs: Any,
) -> SurfaceFit:
    """:func:`fit_points` on a :class:`FocusMap` (its shape and pixel size by default)."""
    shp = shape if shape is not None else focus_map.shape
    px = pixel_size_um if pixel_size_um is not None else focus_map.pixel_size_um
    if shp is None or px is None:
        raise InputError("fit_surface needs the frame shape and pixel size (not in the FocusMap)")
    if len(focus_map) == 0:
        raise InputError("the focus map is empty: no beads/tiles were found in focus")
    return fit_points(
        focus_map.points_yx_px,
        focus_map.z_um,
        kind,
        shape=(int(shp[0]), int(shp[1])),
        pixel_size_um=float(px),
        confidence=focus_map.confidence,
        **kwargs,
    )


# --------------------------------------------------------------------------- files

CALIBRATION_FORMAT = "live-deepz-calibration"
CALIBRATION_VERSION = 1


def save_calibration(
    path: str | os.PathLike[str],
    fit: SurfaceFit,
    *,
    dpm_path: str | os.PathLike[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the calibration JSON (``fit.to_json()`` plus ``format``, ``created``, ``dpm_tiff``
    and ``extra``) and, with ``dpm_path``, the DPM as a float32 TIFF (µm). Returns the dict.

    A non-analytic surface (quadratic, smooth) saved with a TIFF gets
    ``surface_spec = {"kind": "array", "path": <the TIFF>}`` so that
    :func:`live_deepz.dpm.surface_from_spec` can rebuild it.
    """
    import datetime
    import json
    import os as _os

    d = fit.to_json()
    tif = None
    if dpm_path is not None:
        import tifffile

        tif = _os.fspath(dpm_path)
        _os.makedirs(_os.path.dirname(_os.path.abspath(tif)), exist_ok=True)
        tifffile.imwrite(
            tif,
            fit.dpm(),
            photometric="minisblack",
            description=json.dumps({"unit": "um", "live_deepz": "dpm", "fit": fit.kind}),
        )
        if d["surface_spec"] is None:
            d["surface_spec"] = {"kind": "array", "path": _os.path.abspath(tif)}
    d = {
        "format": CALIBRATION_FORMAT,
        "version": CALIBRATION_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **d,
        "dpm_tiff": None if tif is None else _os.path.abspath(tif),
        **(extra or {}),
    }
    p = _os.fspath(path)
    _os.makedirs(_os.path.dirname(_os.path.abspath(p)), exist_ok=True)
    with open(p, "w", encoding="utf-8") as fh:
        json.dump(d, fh, indent=2, allow_nan=False)
        fh.write("\n")
    return d


def load_calibration(path: str | os.PathLike[str]) -> SurfaceFit:
    """Read a calibration JSON written by :func:`save_calibration`."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
    except FileNotFoundError:
        raise InputError(f"calibration file {os.fspath(path)!r} does not exist") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read calibration file {os.fspath(path)!r}: {exc}") from None
    if not isinstance(d, dict) or d.get("format") not in (None, CALIBRATION_FORMAT):
        raise InputError(f"{os.fspath(path)!r} is not a live-deepz calibration file")
    return SurfaceFit.from_json(d)
