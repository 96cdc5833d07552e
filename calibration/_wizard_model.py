"""The calibration wizard's logic, without Qt: a small state machine the UI pages drive.

Steps (:class:`Step`), each a method that validates its inputs and returns a
:class:`StepResult` (``ok``, ``message``, ``warnings``) instead of raising for user errors:

1. **acquire** — :meth:`CalibrationWizardModel.acquire` (a live snapshot through the
   ``snapshot`` callable, e.g. ``core.snap``), :meth:`~CalibrationWizardModel.load_file`
   (a TIFF) or :meth:`~CalibrationWizardModel.set_image`; the frame is normalised as the
   paper does for single test images (triangle threshold, 1 % saturation);
2. **estimate** — :meth:`~CalibrationWizardModel.estimate`: per-bead or per-tile focus from
   a virtual sweep (:func:`~live_deepz.calibration.estimate_focus`);
3. **review** — :meth:`~CalibrationWizardModel.fit`: robust surface fit, range and
   smoothness checks; :meth:`~CalibrationWizardModel.review_data` gives the overlay (points,
   residuals, inliers, the fitted DPM, a text summary);
4. **preview** — :meth:`~CalibrationWizardModel.preview`: the frame refocused onto the fitted
   surface next to the input, with the beads' median lateral FWHM before/after;
5. **save** — :meth:`~CalibrationWizardModel.save`: calibration JSON + DPM TIFF.

:meth:`~CalibrationWizardModel.apply_to_plan` turns the fit into a
:class:`~live_deepz.dpm.StaticPlanePlan` for the live pipeline. Changing an earlier step
clears the later ones. Work runs in the calling thread (the UI runs it in a worker and
shows ``progress(step, fraction, message)`` callbacks).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from live_deepz import dpm as dpm_mod
from live_deepz.analysis.fwhm import bead_fwhm, fwhm_summary
from live_deepz.errors import InputError, LiveDeepzError

from ._fit import FIT_KINDS, SurfaceFit, fit_surface, save_calibration
from ._focus import DEFAULT_SWEEP, FocusMap, RefocusFn, estimate_focus
from ._quality import CalibrationQuality, assess_calibration, known_failures_of

__all__ = [
    "CalibrationWizardModel",
    "PreviewData",
    "ReviewData",
    "Step",
    "StepResult",
    "WizardProgressFn",
]

log = logging.getLogger("live_deepz.calibration")

WizardProgressFn = Callable[[str, float, str], None]
"""``progress(step_name, fraction in [0, 1], message)``."""


class Step(enum.Enum):
    ACQUIRE = "acquire"
    ESTIMATE = "estimate"
    REVIEW = "review"
    PREVIEW = "preview"
    SAVE = "save"


_ORDER = list(Step)


@dataclass
class StepResult:
    """Outcome of one wizard action; ``message`` is for the user."""

    ok: bool
    message: str
    warnings: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class ReviewData:
    """What the review page overlays on the image."""

    points_yx_px: np.ndarray
    z_um: np.ndarray
    residual_um: np.ndarray
    inlier: np.ndarray
    confidence: np.ndarray
    surface_um: np.ndarray
    """``(H, W)`` the fitted DPM."""
    summary: str
    fit: dict[str, Any]
    """:meth:`SurfaceFit.to_json`."""


@dataclass
class PreviewData:
    """Input vs corrected image with bead FWHM statistics (``None`` medians: no beads)."""

    input_image: np.ndarray
    corrected_image: np.ndarray
    fwhm_before_um: np.ndarray
    fwhm_after_um: np.ndarray
    stats_before: dict[str, Any]
    stats_after: dict[str, Any]

    @property
    def median_before_um(self) -> float | None:
        v = self.stats_before["median_um"]
        return None if v is None else float(v)

    @property
    def median_after_um(self) -> float | None:
        v = self.stats_after["median_um"]
        return None if v is None else float(v)


class CalibrationWizardModel:
    """State and actions of the calibration wizard (see the module docstring).

    Parameters
    ----------
    refocus_fn : the :data:`~live_deepz.calibration.RefocusFn` (``engine_refocus_fn(model)``).
    pixel_size_um : camera pixel size in the sample (default: ``refocus_fn.pixel_size_um``).
    z_range_um : the model's axial range (default: ``refocus_fn.z_range_um``).
    snapshot : ``() -> (H, W)`` raw frame for :meth:`acquire` (e.g. a core's ``snap``).
    method : ``"beads"`` or ``"tiles"``; ``fit_kind``: one of :data:`FIT_KINDS`.
    sweep_um : the virtual focus sweep (``"-10:10:0.5"``), clipped by the model's range.
    progress : ``progress(step, fraction, message)``.
    known_failures : sample type -> why the model fails on it (default: the model card's
        ``extra["known_failures"]`` when ``refocus_fn`` carries a model); see
        :func:`~live_deepz.calibration.assess_calibration`.
    force : accept a calibration below the quality gate (its problems become warnings).
    """

    def __init__(
        self,
        refocus_fn: RefocusFn,
        pixel_size_um: float | None = None,
        *,
        z_range_um: tuple[float, float] | None = None,
        snapshot: Callable[[], Any] | None = None,
        method: str = "beads",
        fit_kind: str = "plane",
        sweep_um: str | Sequence[float] = DEFAULT_SWEEP,
        estimate_options: dict[str, Any] | None = None,
        progress: WizardProgressFn | None = None,
        known_failures: dict[str, str] | None = None,
        force: bool = False,
    ) -> None:
        self.refocus_fn = refocus_fn
        self.known_failures = (
            known_failures_of(refocus_fn) if known_failures is None else dict(known_failures)
        )
        card = getattr(getattr(refocus_fn, "model", None), "card", None)
        self.model_name: str | None = getattr(card, "name", None)
        self.force = bool(force)
        px = (
            pixel_size_um
            if pixel_size_um is not None
            else getattr(refocus_fn, "pixel_size_um", None)
        )
        if px is None or not float(px) > 0:
            raise InputError("the calibration needs the camera's pixel size (pixel_size_um > 0)")
        self.pixel_size_um = float(px)
        zr = z_range_um if z_range_um is not None else getattr(refocus_fn, "z_range_um", None)
        self.z_range_um: tuple[float, float] | None = (
            None if zr is None else (float(zr[0]), float(zr[1]))
        )
        self.snapshot = snapshot
        self.method = method
        self.fit_kind = fit_kind
        self.sweep_um = sweep_um
        self.estimate_options = dict(estimate_options or {})
        self.progress = progress
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Back to the first step, forgetting everything."""
        self.raw_image: np.ndarray | None = None
        self.image_norm: np.ndarray | None = None
        self.normalization: Any = None
        self.source: str | None = None
        self.focus_map: FocusMap | None = None
        self.surface_fit: SurfaceFit | None = None
        self.quality: CalibrationQuality | None = None
        self.preview_data: PreviewData | None = None
        self.saved: dict[str, Any] | None = None
        self.error: str | None = None
        self.warnings: list[str] = []

    @property
    def completed(self) -> set[Step]:
        done = set()
        if self.image_norm is not None:
            done.add(Step.ACQUIRE)
        if self.focus_map is not None:
            done.add(Step.ESTIMATE)
        if self.surface_fit is not None:
            done.add(Step.REVIEW)
        if self.preview_data is not None:
            done.add(Step.PREVIEW)
        if self.saved is not None:
            done.add(Step.SAVE)
        return done

    @property
    def step(self) -> Step:
        """The next step to do (the first not completed; SAVE when all are)."""
        done = self.completed
        for s in _ORDER:
            if s not in done:
                return s
        return Step.SAVE

    def can_enter(self, step: Step) -> bool:
        """Whether every step before ``step`` is complete (preview is optional for save)."""
        done = self.completed
        need = _ORDER[: _ORDER.index(step)]
        if step is Step.SAVE:
            need = [s for s in need if s is not Step.PREVIEW]
        return all(s in done for s in need)

    def _clear_after(self, step: Step) -> None:
        i = _ORDER.index(step)
        if i < 1:
            self.focus_map = None
        if i < 2:
            self.surface_fit = None
            self.quality = None
        if i < 3:
            self.preview_data = None
        self.saved = None

    def _report(self, step: Step, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(step.value, float(fraction), message)

    def _fail(self, step: Step, exc: BaseException) -> StepResult:
        if isinstance(exc, LiveDeepzError | OSError):
            msg = str(exc)
        else:  # a bug, not a user error: keep the traceback in the log
            log.exception("calibration step %s failed", step.value)
            msg = f"internal error in step {step.value}: {exc!r}"
        self.error = msg
        self._report(step, 1.0, msg)
        return StepResult(False, msg)

    def _ok(self, step: Step, message: str, warnings: list[str] | None = None) -> StepResult:
        self.error = None
        w = list(warnings or [])
        self.warnings = w
        self._report(step, 1.0, message)
        return StepResult(True, message, w)

    # ------------------------------------------------------------------ acquire
    def set_image(self, raw: Any, source: str = "image") -> StepResult:
        """Use ``raw`` (a 2D frame, or a stack with one plane) as the calibration image."""
        from live_deepz.normalize import normalize_image

        try:
            arr = np.asarray(raw)
            if arr.ndim > 2:
                squeezed = arr.reshape([n for n in arr.shape if n != 1] or [1])
                if squeezed.ndim != 2:
                    raise InputError(
                        f"the calibration needs one 2D frame, got an array of shape {arr.shape}; "
                        "pick one plane (a single in-focus-ish snapshot of the sample)"
                    )
                arr = squeezed
            if arr.ndim != 2 or arr.dtype.kind not in "iuf":
                raise InputError(
                    f"the calibration needs a 2D image of numbers, got shape {arr.shape} "
                    f"dtype {arr.dtype}"
                )
            if min(arr.shape) < 32:
                raise InputError(f"the image is too small for a calibration ({arr.shape})")
            norm, fit = normalize_image(arr)
        except Exception as exc:
            return self._fail(Step.ACQUIRE, exc)
        self.raw_image = arr
        self.image_norm = np.ascontiguousarray(norm, dtype=np.float32)
        self.normalization = fit
        self.source = source
        self._clear_after(Step.ACQUIRE)
        h, w = arr.shape
        return self._ok(Step.ACQUIRE, f"{h}×{w} frame from {source}")

    def acquire(self) -> StepResult:
        """Take a snapshot through the ``snapshot`` callable."""
        if self.snapshot is None:
            return self._fail(
                Step.ACQUIRE, InputError("no live camera connected: load an image file instead")
            )
        self._report(Step.ACQUIRE, 0.0, "snapping a frame")
        try:
            frame = self.snapshot()
        except Exception as exc:
            return self._fail(Step.ACQUIRE, InputError(f"the camera snapshot failed: {exc}"))
        return self.set_image(frame, "live snapshot")

    def load_file(self, path: str | os.PathLike[str]) -> StepResult:
        """Read a TIFF (one plane) as the calibration image."""
        try:
            import tifffile

            p = os.fspath(path)
            if not os.path.exists(p):
                raise InputError(f"image file {p!r} does not exist")
            try:
                img = tifffile.imread(p)
            except Exception as exc:
                raise InputError(f"cannot read {p!r} as a TIFF: {exc}") from None
        except Exception as exc:
            return self._fail(Step.ACQUIRE, exc)
        return self.set_image(img, os.path.basename(p))

    # ------------------------------------------------------------------ estimate
    def estimate(self, method: str | None = None, **options: Any) -> StepResult:
        """Focus per bead (``"beads"``) or per tile (``"tiles"``) from a virtual sweep."""
        if self.image_norm is None:
            return self._fail(Step.ESTIMATE, InputError("acquire or load an image first"))
        if method is not None:
            self.method = method
        opts = {**self.estimate_options, **options}
        opts.setdefault("offsets_um", self._sweep())

        def prog(f: float, msg: str) -> None:
            self._report(Step.ESTIMATE, f, msg)

        try:
            fmap = estimate_focus(
                self.refocus_fn,
                self.image_norm,
                self.pixel_size_um,
                self.method,
                progress=prog,
                z_range_um=self.z_range_um,
                **opts,
            )
        except Exception as exc:
            return self._fail(Step.ESTIMATE, exc)
        self.focus_map = fmap
        self._clear_after(Step.ESTIMATE)
        rej = fmap.info.get("rejected", {})
        detail = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in rej.items() if v)
        what = "beads" if fmap.method == "beads" else "tiles"
        msg = f"{len(fmap)} {what} in focus within the sweep" + (
            f" (rejected: {detail})" if detail else ""
        )
        return self._ok(Step.ESTIMATE, msg)

    def _sweep(self) -> np.ndarray:
        offsets = np.sort(dpm_mod.parse_planes(self.sweep_um))
        if self.z_range_um is not None:
            lo, hi = self.z_range_um
            offsets = offsets[(offsets >= lo - 1e-9) & (offsets <= hi + 1e-9)]
        return offsets

    # ------------------------------------------------------------------ review
    def fit(self, kind: str | None = None, **options: Any) -> StepResult:
        """Fit a surface (:data:`FIT_KINDS`) and check it against the model's range."""
        if self.focus_map is None:
            return self._fail(Step.REVIEW, InputError("estimate the focus first"))
        if kind is not None:
            self.fit_kind = kind
        if self.fit_kind not in FIT_KINDS:
            return self._fail(
                Step.REVIEW,
                InputError(f"unknown fit {self.fit_kind!r}; use one of {', '.join(FIT_KINDS)}"),
            )
        self._report(Step.REVIEW, 0.0, f"fitting a {self.fit_kind}")
        try:
            sf = fit_surface(self.focus_map, self.fit_kind, **options)
            sf.check(self.z_range_um)
            quality = assess_calibration(
                self.focus_map,
                sf,
                self.image_norm,
                known_failures=self.known_failures,
                model_name=self.model_name,
                force=self.force,
            )
            if not quality.passed:
                raise InputError(
                    quality.message()
                    + "\n  (--force saves it anyway, with these problems kept as warnings)"
                )
        except Exception as exc:
            return self._fail(Step.REVIEW, exc)
        sf.warnings.extend(w for w in quality.warnings if w not in sf.warnings)
        self.quality = quality
        self.surface_fit = sf
        self._clear_after(Step.REVIEW)
        lines = sf.summary().splitlines()[1:]
        msg = "; ".join(line for line in lines if not line.startswith("warning:"))
        return self._ok(Step.REVIEW, msg, list(sf.warnings))

    def review_data(self) -> ReviewData | None:
        """Overlay data for the review page (None before a fit)."""
        sf = self.surface_fit
        if sf is None:
            return None
        return ReviewData(
            sf.points_yx_px,
            sf.z_um,
            sf.residuals_um,
            sf.inliers,
            sf.confidence,
            sf.dpm(),
            sf.summary(),
            sf.to_json(),
        )

    # ------------------------------------------------------------------ preview
    def preview(self) -> StepResult:
        """Refocus the frame onto the fitted surface; bead FWHM before/after."""
        if self.surface_fit is None or self.image_norm is None:
            return self._fail(Step.PREVIEW, InputError("fit a surface first"))
        try:
            self._report(Step.PREVIEW, 0.0, "refocusing onto the fitted surface")
            surface = self.surface_fit.dpm(self.image_norm.shape)
            corrected = np.asarray(self.refocus_fn(self.image_norm, surface[None]))[0]
            self._report(Step.PREVIEW, 0.5, "measuring bead FWHM")
            before = bead_fwhm(self.image_norm, self.pixel_size_um)
            after = bead_fwhm(corrected, self.pixel_size_um)
        except Exception as exc:
            return self._fail(Step.PREVIEW, exc)
        sb, sa = fwhm_summary(before), fwhm_summary(after)
        self.preview_data = PreviewData(self.image_norm, corrected, before, after, sb, sa)
        self.saved = None
        if sb["median_um"] is None or sa["median_um"] is None:
            msg = "refocused onto the fitted surface (no beads to measure FWHM on)"
        else:
            msg = (
                f"median lateral FWHM {sb['median_um']:.2f} µm ({sb['n']} beads) → "
                f"{sa['median_um']:.2f} µm ({sa['n']} beads)"
            )
        return self._ok(Step.PREVIEW, msg)

    # ------------------------------------------------------------------ save / apply
    def save(
        self, json_path: str | os.PathLike[str], dpm_path: str | os.PathLike[str] | None = None
    ) -> StepResult:
        """Write the calibration JSON and (optionally) the DPM TIFF."""
        if self.surface_fit is None:
            return self._fail(Step.SAVE, InputError("fit a surface first"))
        extra: dict[str, Any] = {"source": self.source, "method": self.method}
        if self.focus_map is not None:
            extra["focus"] = self.focus_map.info
        if self.quality is not None:
            extra["quality"] = self.quality.to_json()
        if self.normalization is not None:
            extra["normalization"] = self.normalization.to_dict()
        if self.preview_data is not None:
            extra["preview"] = {
                "fwhm_before": self.preview_data.stats_before,
                "fwhm_after": self.preview_data.stats_after,
            }
        describe = getattr(self.refocus_fn, "describe", None)
        if callable(describe):
            with contextlib.suppress(Exception):  # descriptive only
                extra["refocus"] = describe()
        try:
            self.saved = save_calibration(
                json_path, self.surface_fit, dpm_path=dpm_path, extra=extra
            )
        except Exception as exc:
            return self._fail(Step.SAVE, exc)
        where = os.fspath(json_path) + ("" if dpm_path is None else f" and {os.fspath(dpm_path)}")
        return self._ok(Step.SAVE, f"saved {where}")

    def apply_to_plan(
        self, offsets_um: str | float | Sequence[float] | np.ndarray = 0.0
    ) -> dpm_mod.StaticPlanePlan:
        """A :class:`~live_deepz.dpm.StaticPlanePlan`: the fitted surface + ``offsets_um``.

        Raises :class:`~live_deepz.errors.InputError` before a fit and
        :class:`~live_deepz.errors.DPMRangeError` when surface + offsets leave the model's
        range.
        """
        sf = self.surface_fit
        if sf is None:
            raise InputError("fit a surface before applying it to the live planes")
        spec = sf.surface_spec
        if spec is None and self.saved is not None:
            spec = self.saved.get("surface_spec")
        plan = dpm_mod.StaticPlanePlan(offsets_um, sf.dpm(), surface_spec=spec)
        if self.z_range_um is not None:
            plan.check_range(self.z_range_um, sf.shape)
        return plan


def live_surface_calibration(
    wizard_model: CalibrationWizardModel,
    offsets_um: np.ndarray,
    frame_shape: tuple[int, int],
) -> Any:
    """The wizard's fitted surface for the live planes ``offsets_um``, as an
    :class:`live_deepz.engine.SurfaceCalibration` (``surface + offsets``).

    Raises :class:`~live_deepz.errors.LiveDeepzError` before a fit, when surface + offsets
    leave the model's range, or when the surface is not the camera's frame size.
    """
    from live_deepz.engine import SurfaceCalibration

    plan = wizard_model.apply_to_plan(offsets_um)
    surface = plan.surface_um
    shape = tuple(int(v) for v in frame_shape)
    if surface is None or tuple(surface.shape) != shape:
        got = "no" if surface is None else f"a {surface.shape[0]}×{surface.shape[1]} px"
        raise InputError(
            f"The calibration has {got} surface but the camera's frames are "
            f"{shape[0]}×{shape[1]} px: calibrate on a live frame (or an image of the "
            "camera's size)"
        )
    sf = wizard_model.surface_fit
    summary = ""
    if sf is not None:
        summary = sf.summary().splitlines()[1] if sf.kind != "smooth" else "smooth surface"
    return SurfaceCalibration(surface, plan.describe().get("surface"), summary or "fitted surface")
