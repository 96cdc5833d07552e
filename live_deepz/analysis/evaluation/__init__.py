"""Evaluation of Deep-Z models on freshly simulated, held-out samples (``live-deepz eval``).

* :mod:`._metrics`: SSIM, RMSE, MAE, MSE, Pearson r (:func:`image_metrics`);
* :mod:`._beads`: bead lateral/axial FWHM (the paper's definitions, reusing
  :func:`live_deepz.analysis.fwhm.fit_beads`) and axial localisation from a virtual stack;
* :mod:`._run`: the protocol (:class:`EvalConfig`, :func:`evaluate` → :class:`EvalResult`)
  on simulated samples, and :func:`evaluate_stack` on a measured z-stack;
* :mod:`._plots`: PNG plots (:func:`write_plots`).

The protocol, the normalisation used for the metrics and the pass/fail targets are
described in :mod:`live_deepz.analysis.evaluation._run`. Inference comes in as an argument
(a backend with ``infer``); this package is in the core and imports no engine.
"""

from ._beads import (
    BeadTruth,
    axial_fwhm,
    axial_peak_z,
    isolated_mask,
    lateral_fwhm_matched,
    match_points,
    quadratic_peak,
    robust_summary,
)
from ._metrics import METRIC_NAMES, image_metrics, mae, mse, pearson, rmse, ssim
from ._plots import write_plots
from ._run import (
    SAMPLE_SEED_BASE,
    SAMPLES,
    TARGETS,
    EvalConfig,
    EvalResult,
    evaluate,
    evaluate_stack,
    parse_sample_list,
    right_side,
    sample_for,
)

__all__ = [
    "METRIC_NAMES",
    "SAMPLES",
    "SAMPLE_SEED_BASE",
    "TARGETS",
    "BeadTruth",
    "EvalConfig",
    "EvalResult",
    "axial_fwhm",
    "axial_peak_z",
    "evaluate",
    "evaluate_stack",
    "image_metrics",
    "isolated_mask",
    "lateral_fwhm_matched",
    "mae",
    "match_points",
    "mse",
    "parse_sample_list",
    "pearson",
    "quadratic_peak",
    "right_side",
    "rmse",
    "robust_summary",
    "sample_for",
    "ssim",
    "write_plots",
]
