"""Deep-Z+: wide-field inputs, labels from another modality (confocal) of the same fields.

Paper (Methods, "Cross-modality alignment of wide-field and confocal fluorescence images"):
each stack is self-aligned and normalised; the confocal EDF is registered to the wide-field
EDF with a feature-based projective transform and the confocal stack is warped onto the
wide-field grid; regions are cut from the overlap and finely registered; the axial zero of
each stack is the peak of a 2nd-order polynomial fitted to the 4 highest points of its
SSIM-to-EDF focus curve; every wide-field input gets 4 random confocal targets, DPM = the
difference of their zero-centred heights.

Here, with scikit-image:

* **lateral registration** (:func:`register_images`): ORB, then SIFT, keypoints on both
  EDFs, cross-checked descriptor matching, :func:`skimage.measure.ransac` with a
  ``ProjectiveTransform`` (or ``AffineTransform``); a transform with too few inliers or an
  implausible scale is rejected. Translation-only phase correlation is always a candidate
  too (the fallback when features fail). Each feature transform's translation is refined
  by phase correlation; it replaces the plain translation only when its warped image
  explains at least 30 % of the misfit the translation leaves (``1 − NCC`` over the pixels
  both cover): the simpler model wins unless the richer one is clearly better.
  A known pixel-size ratio between the modalities is applied first. Planes are warped with
  :func:`skimage.transform.warp` (linear); pixels the warp leaves without data are invalid
  and no region may touch them;
* **fine registration** per region: integer translation by phase correlation of the EDF
  crops (kept only when at most ``max_fine_shift_px``);
* **axial zero** (:func:`axial_zero`) from :func:`focus_curve`
  (:func:`skimage.metrics.structural_similarity` of each plane with the stack's EDF).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .pairs import (
    FieldStack,
    PairConfig,
    PairData,
    PreparedField,
    Progress,
    Region,
    _load_cached,
    _save_npy_atomic,
    _say,
    _write_json_atomic,
    check_stacks,
    covered_fraction,
    finish,
    foreground_mask,
    greedy_cover,
    holdout_bounds,
    make_regions,
    prepare_field,
)

__all__ = [
    "CrossModalConfig",
    "Registration",
    "axial_zero",
    "build_crossmodal_pairs",
    "focus_curve",
    "register_images",
    "warp_image",
]


@dataclass(frozen=True)
class CrossModalConfig:
    """Registration settings for Deep-Z+."""

    transform: str = "projective"
    """``projective`` (paper), ``affine`` or ``translation`` (phase correlation only)."""
    features: tuple[str, ...] = ("orb", "sift")
    """Keypoint detectors tried in order."""
    min_inliers: int = 12
    """Fewest RANSAC inliers accepted before falling back to phase correlation."""
    max_fine_shift_px: int = 4
    """Per-region fine translations larger than this are ignored."""
    focus_points: int = 4
    """Points of the focus curve the quadratic is fitted to (paper: 4)."""


@dataclass
class Registration:
    """``matrix`` (3×3, homogeneous ``(x, y)``) maps fixed-image coordinates to moving ones."""

    matrix: np.ndarray
    method: str
    """e.g. ``orb-projective``, ``sift-affine``, ``phase-translation``."""
    n_matches: int = 0
    n_inliers: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "matrix": np.round(self.matrix, 8).tolist(),
            "method": self.method,
            "n_matches": self.n_matches,
            "n_inliers": self.n_inliers,
        }


def _feature_image(img: np.ndarray) -> np.ndarray:
    """Robustly scaled to [0, 1] (0.5th-99.9th percentile), float64."""
    a = np.asarray(img, dtype=np.float64)
    lo, hi = np.percentile(a, [0.5, 99.9])
    if hi <= lo:
        return np.zeros_like(a)
    return np.clip((a - lo) / (hi - lo), 0, 1)


def _keypoints(img: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray] | None:
    from skimage.feature import ORB, SIFT

    detector: Any = ORB(n_keypoints=800, fast_threshold=0.05) if kind == "orb" else SIFT()
    try:
        detector.detect_and_extract(img)
    except (RuntimeError, ValueError, IndexError):
        return None
    kp, desc = detector.keypoints, detector.descriptors
    if kp is None or len(kp) < 4:
        return None
    return np.asarray(kp), np.asarray(desc)


def _plausible(matrix: np.ndarray, max_log_scale: float = 0.4) -> bool:
    """Near-similarity: no strong projective terms, scale within e^±0.4, finite."""
    if not np.isfinite(matrix).all():
        return False
    if np.abs(matrix[2, :2]).max() > 1e-3:
        return False
    det = np.linalg.det(matrix[:2, :2] / matrix[2, 2])
    return bool(det > 0 and abs(np.log(det)) / 2 < max_log_scale)


def _phase_translation(fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    from skimage.registration import phase_cross_correlation

    win = np.outer(np.hanning(fixed.shape[0]), np.hanning(fixed.shape[1]))
    f = (fixed - fixed.mean()) * win
    m = (moving - moving.mean()) * win
    shift = phase_cross_correlation(f, m, upsample_factor=20, normalization=None)[0]
    # moving shifted by (dy, dx) matches fixed: fixed(p) = moving(p - shift)
    mat = np.eye(3)
    mat[0, 2], mat[1, 2] = -shift[1], -shift[0]
    return mat


def register_images(
    fixed: np.ndarray,
    moving: np.ndarray,
    cfg: CrossModalConfig | None = None,
    prescale: float = 1.0,
    seed: int = 0,
) -> Registration:
    """Transform from ``fixed`` (wide-field EDF) coordinates to ``moving`` (confocal EDF).

    ``prescale`` = moving pixels per fixed pixel (``fixed_pixel_um / moving_pixel_um``),
    applied before matching. Returns a :class:`Registration`; warp the moving image with
    :func:`warp_image` to bring it onto the fixed grid.
    """
    from skimage.measure import ransac
    from skimage.transform import AffineTransform, ProjectiveTransform

    cfg = cfg or CrossModalConfig()
    scale = np.diag([prescale, prescale, 1.0])
    moving = np.asarray(moving, dtype=np.float64)
    if abs(prescale - 1) > 1e-6 or moving.shape != fixed.shape:
        moving = warp_image(moving, Registration(scale, "scale"), fixed.shape)[0]
    f_img, m_img = _feature_image(fixed), _feature_image(moving)
    if cfg.transform not in ("projective", "affine", "translation"):
        raise InputError(f"unknown transform {cfg.transform!r} (projective, affine, translation)")
    candidates = [Registration(_phase_translation(f_img, m_img), "phase-translation")]
    if cfg.transform != "translation":
        model_cls: Any = ProjectiveTransform if cfg.transform == "projective" else AffineTransform
        min_samples = 4 if cfg.transform == "projective" else 3
        from skimage.feature import match_descriptors

        for kind in cfg.features:
            a, b = _keypoints(f_img, kind), _keypoints(m_img, kind)
            if a is None or b is None:
                continue
            matches = match_descriptors(a[1], b[1], cross_check=True, max_ratio=0.8)
            if len(matches) < max(min_samples, cfg.min_inliers):
                continue
            src = a[0][matches[:, 0]][:, ::-1]  # (row, col) -> (x, y)
            dst = b[0][matches[:, 1]][:, ::-1]
            model, inliers = ransac(
                (src, dst),
                model_cls,
                min_samples=min_samples,
                residual_threshold=1.5,
                max_trials=2000,
                rng=seed,
            )
            n_in = int(np.count_nonzero(inliers)) if inliers is not None else 0
            if model is None or n_in < cfg.min_inliers or not _plausible(model.params):
                continue
            candidates.append(
                Registration(model.params, f"{kind}-{cfg.transform}", len(matches), n_in)
            )
    # refine each feature transform's translation by phase correlation of the warped image,
    # then keep the candidate whose warped moving image correlates best with the fixed one
    # (normalised cross-correlation over the pixels every candidate covers)
    for k in range(1, len(candidates)):
        warped, _ = warp_image(m_img, candidates[k], f_img.shape)
        residual = _phase_translation(f_img, warped)
        candidates[k].matrix = candidates[k].matrix @ residual
    warps = [warp_image(m_img, r, f_img.shape) for r in candidates]
    common = np.logical_and.reduce([v for _, v in warps])
    scores = np.array([_ncc(f_img[common], w[common]) for w, _ in warps])
    best = candidates[0]  # translation, unless a feature model explains >= 30 % of its misfit
    if len(candidates) > 1:
        k = 1 + int(np.argmax(scores[1:]))
        if 1 - scores[k] <= 0.7 * (1 - scores[0]):
            best = candidates[k]
    return Registration(scale @ best.matrix, best.method, best.n_matches, best.n_inliers)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two equally long pixel vectors (-1 if undefined)."""
    if a.size < 16:
        return -1.0
    a = a - a.mean()
    b = b.astype(np.float64) - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else -1.0


def warp_image(
    moving: np.ndarray, reg: Registration, output_shape: tuple[int, ...], order: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """``moving`` resampled onto the fixed grid (float32) and the bool mask of valid pixels."""
    from skimage.transform import ProjectiveTransform, warp

    tf = ProjectiveTransform(matrix=reg.matrix)
    shape = tuple(output_shape[-2:])
    out = warp(np.asarray(moving, dtype=np.float64), tf, output_shape=shape, order=order, cval=0.0)
    ones = np.ones(np.shape(moving)[-2:])
    valid = warp(ones, tf, output_shape=shape, order=1, cval=0.0) > 0.999
    return out.astype(np.float32), valid


def focus_curve(stack: np.ndarray, edf: np.ndarray) -> np.ndarray:
    """``(Z,)`` SSIM of each plane with the EDF image (the paper's focus curve)."""
    from skimage.metrics import structural_similarity

    ref = np.asarray(edf, dtype=np.float64)
    rng = float(ref.max() - ref.min()) or 1.0
    return np.array(
        [
            structural_similarity(np.asarray(stack[z], dtype=np.float64), ref, data_range=rng)
            for z in range(stack.shape[0])
        ]
    )


def axial_zero(curve: np.ndarray, z_um: np.ndarray, n_points: int = 4) -> float:
    """Peak (um) of a 2nd-order polynomial through the ``n_points`` highest curve points.

    Falls back to the highest point when the fit is not concave; the peak is clipped to the
    span of the points fitted.
    """
    curve = np.asarray(curve, dtype=np.float64)
    z_um = np.asarray(z_um, dtype=np.float64)
    if curve.size < 3:
        return float(z_um[int(np.argmax(curve))])
    idx = np.argsort(curve)[-min(n_points, curve.size) :]
    z, c = z_um[idx], curve[idx]
    a, b, _ = np.polyfit(z, c, 2)
    if not a < 0:
        return float(z_um[int(np.argmax(curve))])
    return float(np.clip(-b / (2 * a), z.min(), z.max()))


def _warped_field(
    conf: PreparedField,
    reg: Registration,
    shape: tuple[int, int],
    cache_dir: Path,
) -> PreparedField:
    """The confocal field warped onto the wide-field grid, cached like the fields."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([conf.path.name, reg.to_dict(), list(shape)]).encode())
    key = h.hexdigest()
    npy = cache_dir / f"warped-{key}.npy"
    meta_path, edf_path, valid_path = (
        npy.with_suffix(".json"),
        npy.with_suffix(".edf.npy"),
        npy.with_suffix(".valid.npy"),
    )
    cached = _load_cached(npy, meta_path, edf_path, valid_path) if meta_path.exists() else None
    if cached is not None and cached[2] is not None:
        _, edf, valid = cached
        return replace(
            conf, path=npy, shape=(conf.shape[0], *shape), edf=edf, valid=valid, _array=None
        )
    tmp = npy.with_name(f".{npy.name}.{os.getpid()}.tmp.npy")
    nz = conf.shape[0]
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(nz, *shape))
        valid = np.ones(shape, dtype=bool)
        src = conf.array
        for z in range(nz):
            out[z], valid = warp_image(src[z], reg, shape)
        out.flush()
        del out
        os.replace(tmp, npy)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    edf, _ = warp_image(conf.edf, reg, shape)
    _save_npy_atomic(edf_path, edf)
    _save_npy_atomic(valid_path, valid)
    _write_json_atomic(meta_path, {"shape": [nz, *shape], "registration": reg.to_dict()})
    return replace(conf, path=npy, shape=(nz, *shape), edf=edf, valid=valid, _array=None)


def _fine_offsets(
    wf: PreparedField,
    conf: PreparedField,
    corners: Sequence[tuple[int, int]],
    patch: int,
    max_shift: int,
) -> list[tuple[int, int]]:
    """Per region, the integer (dy, dx) of the target crop found by phase correlation."""
    h, w = wf.shape[1:]
    valid = conf.valid if conf.valid is not None else np.ones((h, w), dtype=bool)
    offsets = []
    for y, x in corners:
        a = wf.edf[y : y + patch, x : x + patch]
        b = conf.edf[y : y + patch, x : x + patch]
        mat = _phase_translation(_feature_image(a), _feature_image(b))
        dx, dy = round(float(mat[0, 2])), round(float(mat[1, 2]))
        ty, tx = y + dy, x + dx
        ok = (
            max(abs(dy), abs(dx)) <= max_shift
            and 0 <= ty <= h - patch
            and 0 <= tx <= w - patch
            and bool(valid[ty : ty + patch, tx : tx + patch].all())
        )
        offsets.append((dy, dx) if ok else (0, 0))
    return offsets


def build_crossmodal_pairs(
    inputs: Sequence[FieldStack],
    labels: Sequence[FieldStack],
    cfg: PairConfig,
    cache_dir: str | os.PathLike[str],
    xcfg: CrossModalConfig | None = None,
    progress: Progress | None = None,
) -> PairData:
    """Deep-Z+ training data: wide-field ``inputs[k]`` and confocal ``labels[k]`` (same field).

    Fields ``2k`` (wide-field) and ``2k + 1`` (confocal, warped onto the wide-field grid)
    of the result belong together; every ``z_um`` is relative to its stack's axial zero.
    """
    xcfg = xcfg or CrossModalConfig()
    if len(inputs) != len(labels):
        raise InputError(
            f"{len(inputs)} wide-field stack(s) (--data) but {len(labels)} label stack(s) "
            "(--labels): give one label stack per input stack, in the same order"
        )
    check_stacks(inputs, cfg)
    check_stacks(labels, replace(cfg, holdout_stacks=()))
    cache = Path(cache_dir)
    fields: list[PreparedField] = []
    regions: list[Region] = []
    registrations = []
    cover = np.zeros(2, dtype=np.int64)
    for k, (wf_stack, cf_stack) in enumerate(zip(inputs, labels, strict=True)):
        wf = prepare_field(wf_stack, cache, cfg.align, cfg.max_step_shift_px, progress)
        cf = prepare_field(cf_stack, cache, cfg.align, cfg.max_step_shift_px, progress)
        prescale = 1.0
        if wf_stack.pixel_size_um and cf_stack.pixel_size_um:
            prescale = wf_stack.pixel_size_um / cf_stack.pixel_size_um
        reg = register_images(wf.edf, cf.edf, xcfg, prescale=prescale, seed=cfg.seed)
        _say(progress, f"{cf.name} → {wf.name}: {reg.method}, {reg.n_inliers} inliers")
        zero_wf = axial_zero(focus_curve(wf.array, wf.edf), wf.z_um, xcfg.focus_points)
        zero_cf = axial_zero(focus_curve(cf.array, cf.edf), cf.z_um, xcfg.focus_points)
        wf = replace(wf, z_um=wf.z_um - zero_wf)
        cf = _warped_field(replace(cf, z_um=cf.z_um - zero_cf), reg, wf.shape[1:], cache)
        registrations.append({**reg.to_dict(), "zero_input_um": zero_wf, "zero_label_um": zero_cf})
        fields += [wf, cf]
        i_wf, i_cf = len(fields) - 2, len(fields) - 1
        assert cf.valid is not None
        mask = foreground_mask(wf.edf, cfg.mask_low, cfg.mask_high) & cf.valid
        corners_all = []
        for bounds, split in holdout_bounds(k, wf.shape[1:], cfg):
            corners = greedy_cover(mask, cfg.patch, cfg.overlap, bounds=bounds, allowed=cf.valid)
            offsets = _fine_offsets(wf, cf, corners, cfg.patch, xcfg.max_fine_shift_px)
            regions += make_regions(fields, i_wf, i_cf, corners, cfg, split, offsets)
            corners_all += corners
        cover += covered_fraction(mask, corners_all, cfg.patch)
    return finish(
        fields,
        regions,
        cfg,
        inputs,
        {"input": "widefield", "output": "confocal"},
        extra={
            "registrations": registrations,
            "labels": [s.name for s in labels],
            "foreground_covered": round(float(cover[0] / max(cover[1], 1)), 4),
        },
    )
