"""Foreground-centred, focus-targeted training batches (the ``fast`` recipe's sampler).

The paper's pairs (:func:`live_deepz.training.pairs.make_pairs`) crop every training region
exactly and draw target planes uniformly from the region's window. On sparse samples that
almost never asks the network to turn a defocused ring back into a focused bead: most
patches are background and most targets are far from any object's focus. This sampler
draws each training item afresh from ``(seed, batch number)``:

* with probability ``centred_fraction`` the crop is centred (± ``jitter_px``) on a local
  maximum of the field's smoothed EDF above ``peak_threshold`` inside the foreground mask
  (an object: a bead, a nucleus, a filament crossing); otherwise a uniform random crop;
  every crop lies inside one training region (so validation regions stay unseen);
* the input plane is uniform within the region's window (± ``z_half_range`` around the
  region's sharpest plane);
* for a centred crop, with probability ``focus_target_fraction`` the target plane is the
  centre object's own focus plane (argmax over z of its smoothed intensity) ± ``focus_window``
  planes; otherwise uniform within the window;
* for a focus-targeted crop, with probability ``far_input_fraction`` the input plane is drawn
  among the window's planes at least ``far_input_min_um`` from that focus: more practice at
  refocusing far-defocused objects, where the sign of the defocus is hardest to read;
* for a centred crop whose target was not focus-targeted, with probability
  ``mirror_target_fraction`` the target is the plane of the object's focus mirrored about the
  input plane (± ``focus_window``; uniform when that plane is outside the window): the object
  is as far from focus there as in the input, on the other side, so the target is a ring as
  wide as the input's, not a focused object; a network unsure of the side of focus puts a
  compact spot there, and these pairs price it;
* for a centred crop whose target was not focus-targeted, with probability
  ``focus_input_fraction`` the *input* is the object's focus plane ± ``focus_window`` (and the
  target uniform): a focused object rendered defocused, the planes away from the sample;
* with ``distinct_planes`` a Deep-Z target is never the input plane itself: every pair is
  two exposures with independent noise, so the L2-optimal output is the noise-free plane
  (Noise2Noise) at every DPM, including 0, where an identical pair teaches the identity;
  training data with a second exposure of every stack (``build_pairs(..., second=...)``,
  ``train --second-exposure``) reaches the same without losing the DPM-0 pairs: there every
  target is read from the other exposure;
* with ``mean_targets`` (needs a second exposure) a target on another plane than the input's
  is the mean of both exposures of that plane: neither shares the input's noise, so the
  target is as unbiased as one exposure with half its noise variance; on the input's own
  plane the target stays the other exposure;
* with ``swap_exposures`` (needs a second exposure) half of the items take their input from
  the second exposure and their target from the first, so inputs come with twice as many
  noise draws;
* with probability ``self_norm_fraction`` the input and the target are rescaled with the
  normalisation fitted on the input plane itself, as ``refocus`` and the live pipeline's
  first-frame fit do, instead of the stack's (EDF) normalisation alone;
* with ``unbiased_targets`` (from ``unbiased_from`` of the run on) each centred item's loss
  is weighted by u(target) / q(target), u the uniform density over the target window and q
  the density the focus targeting actually draws from: the expected loss is then that of
  uniformly drawn targets, so the DPM no longer says where an object is in focus (without
  the weights, a DPM that points at an object's focus is several times likelier than one
  that does not, and a network learns to paint a focused object wherever it is asked to go);
  the focus-targeted draws still lower the variance of the gradient at the focus;
* one of the 8 flips/90° rotations.

An independent ablation on this project's 2-core CPU (issue 14) measured each of the
foreground centring and the focus-targeted targets as necessary for single-image bead
localisation below 0.5 µm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..normalize import Normalization, fit_normalization
from .pairs import PairData, Region, augment, foreground_mask

__all__ = ["BALANCES", "FRACTIONS", "OPTIONS", "FocusSampler", "SamplingConfig", "field_peaks"]

BALANCES = ("objects", "stacks")
FRACTIONS = (
    "centred_fraction",
    "focus_target_fraction",
    "focus_input_fraction",
    "far_input_fraction",
    "mirror_target_fraction",
    "self_norm_fraction",
    "unbiased_from",
)
"""The :class:`SamplingConfig` fields that are fractions in [0, 1]."""
OPTIONS = (
    *FRACTIONS,
    "balance",
    "distinct_planes",
    "mean_targets",
    "swap_exposures",
    "unbiased_targets",
)
"""The :class:`SamplingConfig` fields that `live-deepz train` sets from same-named options."""
FOCUS_MAP_RADIUS_PX = 2
"""Radius of the disk around each object that a focus map labels (px)."""


@dataclass(frozen=True)
class SamplingConfig:
    """How the ``fast`` recipe draws its training items."""

    crop: int = 64
    """Side of the training crops (px; a multiple of 16, at most the region side)."""
    centred_fraction: float = 0.8
    """Fraction of crops centred on an object (a local maximum of the smoothed EDF)."""
    focus_target_fraction: float = 0.5
    """Fraction of the centred crops whose target is the object's own focus plane ± 1."""
    focus_input_fraction: float = 0.0
    """Fraction of the other centred crops whose input is the object's focus plane ± 1 (the
    target uniform): the network then also learns to defocus a sharp object, the planes
    away from the sample. 0 = the input plane is always uniform (every run before it)."""
    far_input_fraction: float = 0.0
    """Fraction of the focus-targeted items whose input plane is drawn among the window's
    planes at least ``far_input_min_um`` from the object's focus (0 = uniform, every run
    before it)."""
    far_input_min_um: float = 5.0
    """Smallest input-to-focus distance of a ``far_input_fraction`` item (µm)."""
    mirror_target_fraction: float = 0.0
    """Fraction of the centred, not focus-targeted items whose target is the object's focus
    mirrored about the input plane (0 = uniform, every run before it)."""
    self_norm_fraction: float = 0.0
    """Fraction of items whose input and target are rescaled with the normalisation fitted on
    the input plane itself (:func:`~live_deepz.normalize.fit_normalization`), the way a single
    image is normalised at inference; 0 = the stack's normalisation only (every run before)."""
    jitter_px: int = 16
    """Largest shift of a centred crop's centre from its object (px)."""
    peak_threshold: float = 0.15
    """Objects: local maxima of the smoothed normalised EDF above this."""
    peak_smooth_px: float = 1.0
    """Gaussian σ of the EDF smoothing before the maxima are found (px)."""
    focus_window: int = 1
    """Focus-targeted targets lie within ± this many planes of the object's focus plane."""
    balance: str = "objects"
    """How a centred crop picks its object: ``objects`` (every object equally likely, so
    stacks with many objects dominate) or ``stacks`` (a stack first, each equally likely,
    then one of its objects)."""
    distinct_planes: bool = False
    """Never pair a plane with itself (Deep-Z: input and target are then separate exposures,
    so the network learns to denoise as it refocuses; an identical pair rewards copying the
    input's noise). Off by default: from scratch it removed the DPM-0 noise step but made bead
    localisation and the slide calibration worse (benchmarks/RESULTS.md, session 6)."""
    mean_targets: bool = False
    """Needs a second exposure: a target on another plane than the input's is the mean of
    both exposures of that plane (half the noise variance, still independent of the input);
    on the input's own plane it stays the other exposure. Off = the second exposure only."""
    swap_exposures: bool = False
    """Needs a second exposure: half of the items read their input from the second exposure
    and their target from the first (twice as many input noise draws)."""
    unbiased_targets: bool = False
    """Weight each centred item's loss by u / q (uniform over the target window / the focus
    targeting's density), so that the expected loss is that of uniform targets. Off = every
    item weighs 1 (every run before it)."""
    unbiased_from: float = 0.0
    """With ``unbiased_targets``: the schedule progress (0–1, the learning rate's) from which
    the weights apply; before it every item weighs 1, so the run first practises refocusing
    with the focus-targeted draws' bias, then unlearns it. 0 = weighted from the start."""

    def __post_init__(self) -> None:
        if self.crop < 16 or self.crop % 16:
            raise InputError(f"--patch must be a multiple of 16 and >= 16, got {self.crop}")
        for name in FRACTIONS:
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise InputError(f"{name.replace('_', '-')} must lie in [0, 1], got {v}")
        if self.jitter_px < 0 or self.focus_window < 0:
            raise InputError("jitter and focus window must be >= 0")
        if self.unbiased_targets:
            other = [
                name
                for name in ("far_input_fraction", "mirror_target_fraction", "focus_input_fraction")
                if getattr(self, name)
            ] + (["distinct_planes"] if self.distinct_planes else [])
            if other:
                raise InputError(
                    "--unbiased-targets weights only the focus targeting; it cannot be combined "
                    f"with --{', --'.join(n.replace('_', '-') for n in other)}"
                )
        if self.unbiased_from and not self.unbiased_targets:
            raise InputError("--unbiased-from needs --unbiased-targets")
        if self.balance not in BALANCES:
            raise InputError(
                f"--balance must be one of {', '.join(BALANCES)}, not {self.balance!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def field_peaks(
    edf: np.ndarray, threshold: float, smooth_px: float, mask: np.ndarray | None = None
) -> np.ndarray:
    """``(K, 2)`` (y, x) local maxima (5×5) of the smoothed ``edf`` above ``threshold``
    (inside ``mask`` when given)."""
    from scipy import ndimage

    s = ndimage.gaussian_filter(np.asarray(edf, dtype=np.float32), smooth_px)
    is_max = (s == ndimage.maximum_filter(s, size=5)) & (s > threshold)
    if mask is not None:
        is_max &= mask
    return np.argwhere(is_max)


def _focus_planes(array: np.ndarray, peaks: np.ndarray, smooth_px: float) -> np.ndarray:
    """``(K,)`` plane index where each peak's smoothed intensity is highest."""
    from scipy import ndimage

    if len(peaks) == 0:
        return np.zeros(0, dtype=np.int64)
    prof = np.empty((array.shape[0], len(peaks)), dtype=np.float32)
    for z in range(array.shape[0]):
        plane = ndimage.gaussian_filter(np.asarray(array[z], dtype=np.float32), smooth_px)
        prof[z] = plane[peaks[:, 0], peaks[:, 1]]
    return np.argmax(prof, axis=0).astype(np.int64)


class FocusSampler:
    """Training batches as described in the module docstring, a pure function of
    ``(seed, batch number)``."""

    def __init__(
        self, data: PairData, cfg: SamplingConfig, seed: int = 0, split: str = "train"
    ) -> None:
        self.data, self.cfg, self.seed = data, cfg, seed
        self.regions: list[Region] = [r for r in data.regions if r.split == split]
        if not self.regions:
            raise InputError(f"no {split} regions to sample training crops from")
        small = [r.size for r in self.regions if r.size < cfg.crop]
        if small:
            raise InputError(
                f"training crops of {cfg.crop} px do not fit the {small[0]} px regions: "
                "pass a smaller --patch or a larger --region"
            )
        ys, xs, reg, focus = [], [], [], []
        for fi, f in enumerate(data.fields):
            mine = [(k, r) for k, r in enumerate(self.regions) if r.field == fi]
            if not mine:  # a target-only field (second exposure, Deep-Z+ labels)
                continue
            mask = foreground_mask(f.edf, data.cfg.mask_low, data.cfg.mask_high)
            peaks = field_peaks(f.edf, cfg.peak_threshold, cfg.peak_smooth_px, mask)
            if len(peaks) == 0:
                continue
            # the focus is read in the target stack (the same one for Deep-Z)
            tf = mine[0][1].target_field
            dy, dx = mine[0][1].ty - mine[0][1].y, mine[0][1].tx - mine[0][1].x
            tgt_peaks = np.clip(
                peaks + np.array([dy, dx]), 0, np.asarray(data.fields[tf].shape[1:]) - 1
            )
            planes = _focus_planes(data.fields[tf].array, tgt_peaks, cfg.peak_smooth_px)
            for (py, px), zf in zip(peaks, planes, strict=True):
                for k, r in mine:  # the first training region holding the peak
                    if r.y <= py < r.y + r.size and r.x <= px < r.x + r.size:
                        ys.append(int(py))
                        xs.append(int(px))
                        reg.append(k)
                        focus.append(int(zf))
                        break
        self.peak_y = np.asarray(ys, dtype=np.int64)
        self.peak_x = np.asarray(xs, dtype=np.int64)
        self.peak_region = np.asarray(reg, dtype=np.int64)
        self.peak_focus = np.asarray(focus, dtype=np.int64)
        fields = np.asarray([self.regions[k].field for k in reg], dtype=np.int64)
        self.peak_field = fields
        self._peaks_of_field = [np.flatnonzero(fields == f) for f in np.unique(fields)]
        self._plane_norms: dict[tuple[int, int], Normalization | None] = {}
        both = data.summary.extra.get("targets") == "second exposure"
        if (cfg.mean_targets or cfg.swap_exposures) and not both:
            raise InputError(
                "--mean-targets and --swap-exposures use two exposures of every stack: add "
                "--second-exposure"
            )

    @property
    def n_peaks(self) -> int:
        return int(self.peak_y.size)

    def summary(self) -> dict[str, Any]:
        """What the card records about the sampling."""
        return {**self.cfg.to_dict(), "objects": self.n_peaks, "regions": len(self.regions)}

    def item(self, rng: np.random.Generator) -> tuple[int, int, int, int, int, int, bool]:
        """``(region index, y, x, input plane, target plane, augmentation, focus_targeted)``."""
        return self.weighted_item(rng)[0]

    def weighted_item(
        self, rng: np.random.Generator
    ) -> tuple[tuple[int, int, int, int, int, int, bool], float]:
        """:meth:`item` and its loss weight (1 unless ``unbiased_targets``)."""
        cfg, p = self.cfg, self.cfg.crop
        centred = self.n_peaks > 0 and rng.random() < cfg.centred_fraction
        if centred:
            if cfg.balance == "stacks":
                mine = self._peaks_of_field[int(rng.integers(len(self._peaks_of_field)))]
                k = int(mine[int(rng.integers(mine.size))])
            else:
                k = int(rng.integers(self.n_peaks))
            ri = int(self.peak_region[k])
            r = self.regions[ri]
            j = cfg.jitter_px
            cy = int(self.peak_y[k]) + int(rng.integers(-j, j + 1))
            cx = int(self.peak_x[k]) + int(rng.integers(-j, j + 1))
            y = int(np.clip(cy - p // 2, r.y, r.y + r.size - p))
            x = int(np.clip(cx - p // 2, r.x, r.x + r.size - p))
        else:
            ri = int(rng.integers(len(self.regions)))
            r = self.regions[ri]
            y = r.y + int(rng.integers(r.size - p + 1))
            x = r.x + int(rng.integers(r.size - p + 1))
        zin = int(rng.integers(r.inputs[0], r.inputs[1] + 1))
        focused = False
        zt = -1
        if centred and rng.random() < cfg.focus_target_fraction:
            w = cfg.focus_window
            zt = int(self.peak_focus[k]) + int(rng.integers(-w, w + 1))
            focused = r.targets[0] <= zt <= r.targets[1]
            if focused and cfg.far_input_fraction and rng.random() < cfg.far_input_fraction:
                zin = self._far_input(r, zt, rng, zin)
        if not focused:
            if centred and cfg.focus_input_fraction and rng.random() < cfg.focus_input_fraction:
                w = cfg.focus_window
                zf = int(self.peak_focus[k]) + int(rng.integers(-w, w + 1))
                zin = zf if r.inputs[0] <= zf <= r.inputs[1] else zin
            zt = int(rng.integers(r.targets[0], r.targets[1] + 1))
            if centred and cfg.mirror_target_fraction and rng.random() < cfg.mirror_target_fraction:
                zt = self._mirror_target(r, k, zin, rng, zt)
        if cfg.distinct_planes and zt == zin and r.target_field == r.field:
            zt = _other_plane(rng, r.targets, zin, self.peak_focus[k] if focused else None, cfg)
        aug = int(rng.integers(8))
        weight = self.target_weight(r, k, zt) if centred and cfg.unbiased_targets else 1.0
        return (ri, y, x, zin, zt, aug, focused), weight

    def target_weight(self, r: Region, k: int, zt: int) -> float:
        """u(zt) / q(zt) for a centred item on object ``k`` of region ``r``: u uniform over
        the region's target window, q the focus targeting's density (a draw from the focus
        window ± ``focus_window`` with probability ``focus_target_fraction``, uniform when
        that draw falls outside the target window or was not made)."""
        lo, hi = r.targets
        n = hi - lo + 1
        f, w = self.cfg.focus_target_fraction, self.cfg.focus_window
        focus = int(self.peak_focus[k])
        inside = [z for z in range(focus - w, focus + w + 1) if lo <= z <= hi]
        q = ((1.0 - f) + f * (2 * w + 1 - len(inside)) / (2 * w + 1)) / n
        if zt in inside:
            q += f / (2 * w + 1)
        return (1.0 / n) / q

    def _far_input(self, r: Region, zt: int, rng: np.random.Generator, zin: int) -> int:
        """An input plane of ``r`` at least ``far_input_min_um`` from target plane ``zt``
        (``zin`` unchanged when the window has none)."""
        z_in = self.data.fields[r.field].z_um
        z_t = float(self.data.fields[r.target_field].z_um[zt])
        far = [
            k
            for k in range(r.inputs[0], r.inputs[1] + 1)
            if abs(z_in[k] - z_t) >= self.cfg.far_input_min_um
        ]
        return far[int(rng.integers(len(far)))] if far else zin

    def _mirror_target(self, r: Region, k: int, zin: int, rng: np.random.Generator, zt: int) -> int:
        """The target plane of ``r`` nearest object ``k``'s focus mirrored about input plane
        ``zin``, ± ``focus_window`` planes (``zt`` unchanged when it is outside the window)."""
        z_t = self.data.fields[r.target_field].z_um
        focus = float(z_t[int(self.peak_focus[k])])
        mirror = 2.0 * float(self.data.fields[r.field].z_um[zin]) - focus
        nearest = int(np.argmin(np.abs(z_t - mirror)))
        w = self.cfg.focus_window
        z = nearest + int(rng.integers(-w, w + 1))
        step = float(np.median(np.abs(np.diff(z_t)))) if z_t.size > 1 else 0.0
        inside = r.targets[0] <= z <= r.targets[1]
        return z if inside and abs(float(z_t[nearest]) - mirror) <= step else zt

    def batch(self, k: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``k`` of ``n`` items: ``(n, 2, P, P)`` inputs and ``(n, 1, P, P)`` targets."""
        x, z, _ = self.batch_weighted(k, n)
        return x, z

    def batch_weighted(self, k: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`batch` and the ``(n,)`` loss weights of its items (see ``unbiased_targets``)."""
        x, z, w, _ = self._draw(k, n, focus_maps=False)
        return x, z, w

    def batch_with_focus_maps(
        self, k: int, n: int, radius_px: int = FOCUS_MAP_RADIUS_PX
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`batch_weighted` (the same items) and ``(n, 2, P, P)`` focus maps: channel 0
        the refocus distance that brings each object in the crop into focus from the input
        plane (its focus minus the input's z, / ``dpm_scale_um``: the DPM that focuses it),
        on a disk of ``radius_px`` around the object; channel 1 that disk (1) or not (0)."""
        x, z, w, maps = self._draw(k, n, focus_maps=True, radius_px=radius_px)
        assert maps is not None
        return x, z, w, maps

    def focus_map(
        self, region: int, y0: int, x0: int, zin: int, radius_px: int = FOCUS_MAP_RADIUS_PX
    ) -> np.ndarray:
        """``(2, P, P)`` focus map of the crop at ``(y0, x0)`` of region ``region`` for input
        plane ``zin`` (see :meth:`batch_with_focus_maps`). Objects whose focus plane is the
        first or last of the stack (the focus may lie beyond it) are left out."""
        r, p = self.regions[region], self.cfg.crop
        out = np.zeros((2, p, p), dtype=np.float32)
        tgt = self.data.fields[r.target_field]
        last = tgt.array.shape[0] - 1
        mine = np.flatnonzero(
            (self.peak_field == r.field)
            & (self.peak_y >= y0)
            & (self.peak_y < y0 + p)
            & (self.peak_x >= x0)
            & (self.peak_x < x0 + p)
            & (self.peak_focus > 0)
            & (self.peak_focus < last)
        )
        if mine.size == 0:
            return out
        z_in = float(self.data.fields[r.field].z_um[zin])
        for j in mine:
            cy, cx = int(self.peak_y[j]) - y0, int(self.peak_x[j]) - x0
            ys = slice(max(cy - radius_px, 0), min(cy + radius_px + 1, p))
            xs = slice(max(cx - radius_px, 0), min(cx + radius_px + 1, p))
            yy, xx = np.ogrid[ys, xs]
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius_px**2
            focus_um = float(tgt.z_um[int(self.peak_focus[j])])
            out[0, ys, xs][inside] = (focus_um - z_in) / self.data.cfg.dpm_scale_um
            out[1, ys, xs][inside] = 1.0
        return out

    def _draw(
        self, k: int, n: int, focus_maps: bool, radius_px: int = FOCUS_MAP_RADIUS_PX
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Batch ``k`` of ``n`` items, their weights and (``focus_maps``) their focus maps."""
        rng = np.random.default_rng([self.seed, 303, k])
        p, scale = self.cfg.crop, self.data.cfg.dpm_scale_um
        x = np.empty((n, 2, p, p), dtype=np.float32)
        z = np.empty((n, 1, p, p), dtype=np.float32)
        weights = np.empty(n, dtype=np.float32)
        maps = np.empty((n, 2, p, p), dtype=np.float32) if focus_maps else None
        for i in range(n):
            (ri, y0, x0, zin, zt, aug, _), weights[i] = self.weighted_item(rng)
            r = self.regions[ri]
            if maps is not None:  # before an exposure swap moves the crop
                maps[i] = augment(self.focus_map(ri, y0, x0, zin, radius_px), aug)
            in_field, out_field = r.field, r.target_field
            ty, tx = y0 + (r.ty - r.y), x0 + (r.tx - r.x)
            if self.cfg.swap_exposures and rng.random() < 0.5:
                in_field, out_field, y0, x0, ty, tx = out_field, in_field, ty, tx, y0, x0
            src, tgt = self.data.fields[in_field], self.data.fields[out_field]
            inp = np.empty((2, p, p), dtype=np.float32)
            inp[0] = src.array[zin, y0 : y0 + p, x0 : x0 + p]
            inp[1] = float(tgt.z_um[zt] - src.z_um[zin]) / scale
            out = np.asarray(tgt.array[zt, ty : ty + p, tx : tx + p], dtype=np.float32)[None]
            if self.cfg.mean_targets and zt != zin:  # the input's exposure of another plane
                out = 0.5 * (out + src.array[zt, y0 : y0 + p, x0 : x0 + p])
            if self.cfg.self_norm_fraction and rng.random() < self.cfg.self_norm_fraction:
                own = self.plane_normalization(in_field, zin)
                if own is not None:  # the input plane's own fit, applied to both sides
                    inp[0], out = own.apply(inp[0]), own.apply(out)
            x[i] = augment(inp, aug)
            z[i] = augment(out, aug)
        return (
            torch.from_numpy(x),
            torch.from_numpy(z),
            torch.from_numpy(weights),
            None if maps is None else torch.from_numpy(maps),
        )

    def plane_normalization(self, field: int, z: int) -> Normalization | None:
        """The normalisation fitted on plane ``z`` of ``field`` itself (in the stack's
        units; cached), or None where that plane has no foreground to fit."""
        key = (field, z)
        if key not in self._plane_norms:
            try:
                self._plane_norms[key] = fit_normalization(self.data.fields[field].array[z])
            except InputError:
                self._plane_norms[key] = None
        return self._plane_norms[key]


def _other_plane(
    rng: np.random.Generator,
    targets: tuple[int, int],
    zin: int,
    focus: int | None,
    cfg: SamplingConfig,
) -> int:
    """A target plane other than ``zin``: within the focus window when the draw was
    focus-targeted (if the window holds another plane), else uniform over the targets."""
    lo, hi = targets
    if focus is not None:
        near = [
            z
            for z in range(int(focus) - cfg.focus_window, int(focus) + cfg.focus_window + 1)
            if lo <= z <= hi and z != zin
        ]
        if near:
            return near[int(rng.integers(len(near)))]
    if hi <= lo:
        return zin  # a one-plane window has no other plane
    z = lo + int(rng.integers(hi - lo))  # uniform over the window without zin
    return z + 1 if z >= zin else z
