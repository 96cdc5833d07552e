"""Display arithmetic without Qt: contrast levels, depth-coded projections, x–z sections.

Everything here is plain numpy so it can be tested and benchmarked without a window. Image
arrays are ``(H, W)``; plane stacks are ``(K, H, W)`` with the plane offsets ``(K,)`` in µm.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "auto_levels",
    "decimation",
    "depth_mip",
    "grid_shape",
    "line_coords",
    "match_offsets",
    "xz_section",
]


def auto_levels(
    image: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.8, max_samples: int = 65536
) -> tuple[float, float]:
    """Display levels ``(low, high)`` from percentiles of a subsample of ``image``.

    A strided subsample (about ``max_samples`` pixels) keeps this cheap at 2048². Returns a
    range with ``high > low`` even for a flat image; NaN/inf pixels are ignored.
    """
    a = np.asarray(image)
    step = max(1, int(math.sqrt(a.size / max_samples)))
    sub = a[..., ::step, ::step].astype(np.float32, copy=False).ravel()
    sub = sub[np.isfinite(sub)]
    if sub.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(sub, (low_pct, high_pct)))
    if not hi > lo:
        span = max(abs(lo) * 1e-3, 1e-6)
        lo, hi = lo - span, hi + span
    return lo, hi


def decimation(image_px: int, screen_px: float) -> int:
    """Integer stride so that an image of ``image_px`` shown on ``screen_px`` keeps ≥1 px/px.

    Views show ``image[::s, ::s]`` (a view, no copy) when the image is at least twice as
    large as its place on screen: the same pixels a nearest-neighbour scaler would pick.
    """
    if screen_px <= 1:
        return 1
    return max(1, int(image_px // max(1.0, screen_px)))


def grid_shape(n: int, width: float, height: float, aspect: float = 1.0) -> tuple[int, int]:
    """``(rows, cols)`` that makes ``n`` tiles of ``aspect`` (w/h) as large as possible."""
    if n <= 0:
        return 0, 0
    best = (1, n)
    best_size = -1.0
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        tile_w = min(width / cols, height / rows * aspect)
        if tile_w > best_size + 1e-9:
            best, best_size = (rows, cols), tile_w
    return best


def match_offsets(
    offsets_um: np.ndarray, wanted_um: np.ndarray, tol_um: float = 1e-6
) -> np.ndarray:
    """Index into ``offsets_um`` of each ``wanted_um`` value (-1 where absent)."""
    offsets = np.asarray(offsets_um, dtype=np.float64).reshape(-1)
    wanted = np.asarray(wanted_um, dtype=np.float64).reshape(-1)
    out = np.full(wanted.shape, -1, dtype=np.int64)
    if offsets.size == 0:
        return out
    diff = np.abs(offsets[None, :] - wanted[:, None])  # (len(wanted), K)
    best = diff.argmin(axis=1)
    ok = diff[np.arange(wanted.size), best] <= tol_um
    out[ok] = best[ok]
    return out


def depth_mip(
    planes: np.ndarray,
    colors: np.ndarray,
    levels: tuple[float, float],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Depth-coded maximum-intensity projection: hue = the plane of the maximum.

    Parameters
    ----------
    planes : ``(K, H, W)`` intensities.
    colors : ``(K, 3)`` RGB in 0..1, the colour of each plane (in the order of ``planes``).
    levels : intensity mapped to black and to full brightness.
    out : optional ``(H, W, 3)`` uint8 buffer.

    Returns
    -------
    ``(H, W, 3)`` uint8: ``colors[argmax_k] * clip((max_k - low) / (high - low), 0, 1)``.
    """
    k, h, w = planes.shape
    if colors.shape != (k, 3):
        raise ValueError(f"colors must be ({k}, 3), got {colors.shape}")
    idx = planes.argmax(axis=0)  # (H, W) plane of the maximum
    peak = np.take_along_axis(planes, idx[None], axis=0)[0]  # (H, W)
    lo, hi = float(levels[0]), float(levels[1])
    scale = 1.0 / (hi - lo) if hi > lo else 1.0
    bright = np.clip((peak - lo) * scale, 0.0, 1.0).astype(np.float32)  # (H, W)
    lut = np.asarray(colors, dtype=np.float32) * 255.0  # (K, 3)
    rgb = lut[idx] * bright[..., None]  # (H, W, 3)
    if out is None or out.shape != (h, w, 3):
        out = np.empty((h, w, 3), dtype=np.uint8)
    np.copyto(out, rgb, casting="unsafe")
    return out


def line_coords(
    p0: tuple[float, float], p1: tuple[float, float], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-pixel ``(rows, cols)`` along the segment ``p0 -> p1`` (points as ``(x, y)``).

    One sample per pixel of length; samples outside the image are clipped to its border.
    """
    x0, y0 = p0
    x1, y1 = p1
    n = max(2, math.ceil(math.hypot(x1 - x0, y1 - y0)) + 1)
    t = np.linspace(0.0, 1.0, n)
    cols = np.clip(np.rint(x0 + t * (x1 - x0)), 0, shape[1] - 1).astype(np.intp)
    rows = np.clip(np.rint(y0 + t * (y1 - y0)), 0, shape[0] - 1).astype(np.intp)
    return rows, cols


def xz_section(
    planes: np.ndarray,
    offsets_um: np.ndarray,
    p0: tuple[float, float],
    p1: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """The x–z section of a plane stack along a line drawn on the image.

    Returns ``(section, z_um)``: ``section`` is ``(K, L)`` (planes sorted by depth, one
    column per pixel along the line) and ``z_um`` the sorted offsets.
    """
    rows, cols = line_coords(p0, p1, planes.shape[1:])
    order = np.argsort(np.asarray(offsets_um, dtype=np.float64), kind="stable")
    section = planes[order][:, rows, cols]  # (K, L)
    return section, np.asarray(offsets_um, dtype=np.float64)[order]
