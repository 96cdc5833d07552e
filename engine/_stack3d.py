"""Stack-to-stack inference of a 3D model (WFCON-Net), tiled in 3D with overlap.

A stack larger than the tile is cut into overlapping tiles; each tile's prediction is
weighted by a window that ramps linearly over the overlap (flat elsewhere and at the stack's
own borders) and the weighted predictions are averaged, so tile seams do not show.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from ..errors import InputError

__all__ = ["DEFAULT_OVERLAP", "DEFAULT_TILE", "infer_stack", "tile_starts"]

DEFAULT_TILE = (32, 128, 128)
DEFAULT_OVERLAP = (4, 16, 16)


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start indices of tiles of ``tile`` covering ``0..n`` with at least ``overlap``."""
    if tile >= n:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, n - tile, step))
    starts.append(n - tile)
    return starts


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> NDArray[np.float32]:
    w = np.ones(length, dtype=np.float32)
    r = min(overlap, length // 2)
    if r > 0:
        ramp = (np.arange(r, dtype=np.float32) + 1) / (r + 1)
        if not at_start:
            w[:r] = ramp
        if not at_end:
            w[-r:] = ramp[::-1]
    return w


def infer_stack(
    generator: nn.Module,
    stack_norm: NDArray[np.float32],
    *,
    tile: Sequence[int] = DEFAULT_TILE,
    overlap: Sequence[int] = DEFAULT_OVERLAP,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> NDArray[np.float32]:
    """The generator applied to a normalised ``(Z, Y, X)`` stack, tile by tile; float32."""
    s = np.asarray(stack_norm, dtype=np.float32)
    if s.ndim != 3:
        raise InputError(f"a 3D model needs a (Z, Y, X) stack, got shape {s.shape}")
    if len(tile) != 3 or len(overlap) != 3 or min(tile) < 1 or min(overlap) < 0:
        raise InputError(f"tile {list(tile)} / overlap {list(overlap)}: three sizes each, >= 1")
    shape = s.shape
    t = [min(int(a), n) for a, n in zip(tile, shape, strict=True)]
    ov = [min(int(o), max(a - 1, 0)) for o, a in zip(overlap, t, strict=True)]
    starts = [tile_starts(n, a, o) for n, a, o in zip(shape, t, ov, strict=True)]
    out = np.zeros(shape, dtype=np.float32)
    wsum = np.zeros(shape, dtype=np.float32)
    jobs = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
    it = jobs
    if progress and len(jobs) > 1:
        from tqdm import tqdm

        it = tqdm(jobs, desc="3D tiles", unit="tile")
    generator.eval()
    with torch.inference_mode():
        for z0, y0, x0 in it:
            sl = (slice(z0, z0 + t[0]), slice(y0, y0 + t[1]), slice(x0, x0 + t[2]))
            x = torch.from_numpy(np.ascontiguousarray(s[sl]))[None, None].to(device)
            pred = generator(x)[0, 0].float().cpu().numpy()
            w = (
                _ramp(t[0], ov[0], z0 == 0, z0 + t[0] >= shape[0])[:, None, None]
                * _ramp(t[1], ov[1], y0 == 0, y0 + t[1] >= shape[1])[None, :, None]
                * _ramp(t[2], ov[2], x0 == 0, x0 + t[2] >= shape[2])[None, None, :]
            )
            out[sl] += pred * w
            wsum[sl] += w
    return (out / np.maximum(wsum, np.float32(1e-12))).astype(np.float32)
