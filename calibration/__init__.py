"""live_deepz.calibration: focus estimation, surface fitting and drift tracking (no Qt).

Numbers in, numbers out. Everything is built on a :data:`RefocusFn` —
``refocus(image_norm (H, W), dpms_um (K, H, W)) -> (K, H, W)`` — which is the Deep-Z engine
in use (:func:`engine_refocus_fn`) and a physics oracle in tests and benchmarks
(:mod:`live_deepz.calibration.testing`), so the calibration logic is tested exactly,
independent of model quality.

- focus: :func:`estimate_focus_beads`, :func:`estimate_focus_tiles` → :class:`FocusMap`
  (where each bead/tile is in focus, as the DPM value that focuses it);
- surfaces: :func:`fit_surface` → :class:`SurfaceFit` (plane → tilt/azimuth, quadratic,
  cylinder → radius/axis, smooth), ``fit.dpm()``, ``fit.check(z_range)``,
  :func:`save_calibration` / :func:`load_calibration`;
- FWHM: :func:`bead_fwhm` (the paper's lateral FWHM per bead), :func:`fwhm_summary`;
- drift: :class:`DriftEstimator` (focus measure), :class:`MatchDriftEstimator` (match with a
  keyframe), :class:`KalmanDrift`, :class:`MedianDrift`,
  :class:`DriftCompensationPlan` (a dynamic :class:`~live_deepz.dpm.PlanePlan`);
- quality gate: :func:`assess_calibration` → :class:`CalibrationQuality` (enough precise,
  structured points; agreement; significance against a flat surface; the model card's known
  failures);
- the wizard's logic: :class:`CalibrationWizardModel`.

Sign convention (as :mod:`live_deepz.dpm`): + = deeper. A sample whose in-focus plane lies
``d`` µm deeper than the focal plane is brought into focus by the DPM ``+d``.
"""

from live_deepz.analysis.fwhm import FWHM_PER_SIGMA, BeadFits, bead_fwhm, fit_beads, fwhm_summary

from ._drift import (
    DriftCompensationPlan,
    DriftEstimator,
    DriftFilter,
    DriftMeasurement,
    FeedbackPlan,
    KalmanDrift,
    MedianDrift,
)
from ._drift_match import MatchDriftEstimator, shifted_correlation
from ._drift_plan import (
    DRIFT_BUDGET,
    DRIFT_CHUNK,
    DRIFT_MAX_EVERY_N,
    DRIFT_MIN_EVERY_N,
    DRIFT_TRACKS,
    KEYFRAME_ACCEL_UM2_S3,
    continue_drift_plan,
    drift_compensation_plan,
    drift_every_n,
    drift_plan_for_backend,
)
from ._fit import (
    FIT_KINDS,
    MIN_POINTS,
    SurfaceFit,
    fit_points,
    fit_surface,
    load_calibration,
    save_calibration,
)
from ._focus import (
    DEFAULT_SWEEP,
    FOCUS_MEASURES,
    EngineRefocus,
    FocusMap,
    ProgressFn,
    RefocusFn,
    engine_refocus_fn,
    estimate_focus,
    estimate_focus_beads,
    estimate_focus_tiles,
    focus_measure,
    sweep_offsets,
    virtual_sweep,
)
from ._quality import (
    CalibrationQuality,
    assess_calibration,
    known_failures_of,
    structure_ratio,
)
from ._wizard_model import (
    CalibrationWizardModel,
    PreviewData,
    ReviewData,
    Step,
    StepResult,
    live_surface_calibration,
)

__all__ = [
    "DEFAULT_SWEEP",
    "DRIFT_BUDGET",
    "DRIFT_CHUNK",
    "DRIFT_MAX_EVERY_N",
    "DRIFT_MIN_EVERY_N",
    "DRIFT_TRACKS",
    "FIT_KINDS",
    "FOCUS_MEASURES",
    "FWHM_PER_SIGMA",
    "KEYFRAME_ACCEL_UM2_S3",
    "MIN_POINTS",
    "BeadFits",
    "CalibrationQuality",
    "CalibrationWizardModel",
    "DriftCompensationPlan",
    "DriftEstimator",
    "DriftFilter",
    "DriftMeasurement",
    "EngineRefocus",
    "FeedbackPlan",
    "FocusMap",
    "KalmanDrift",
    "MatchDriftEstimator",
    "MedianDrift",
    "PreviewData",
    "ProgressFn",
    "RefocusFn",
    "ReviewData",
    "Step",
    "StepResult",
    "SurfaceFit",
    "assess_calibration",
    "bead_fwhm",
    "continue_drift_plan",
    "drift_compensation_plan",
    "drift_every_n",
    "drift_plan_for_backend",
    "engine_refocus_fn",
    "estimate_focus",
    "estimate_focus_beads",
    "estimate_focus_tiles",
    "fit_beads",
    "fit_points",
    "fit_surface",
    "focus_measure",
    "fwhm_summary",
    "known_failures_of",
    "live_surface_calibration",
    "load_calibration",
    "save_calibration",
    "shifted_correlation",
    "structure_ratio",
    "sweep_offsets",
    "virtual_sweep",
]
