"""What the network can take and give: the smallest useful frame, finite output.

The Deep-Z U-Net (:mod:`live_deepz.network`) max-pools four times (``SIZE_MULTIPLE`` = 2⁴ =
16 px) and pads any frame up to a multiple of 16. Its deepest level's 3×3 convolutions only
see a neighbour when that level is at least 2×2 px, so the smallest frame that the network
can do anything useful with is 2 × 16 = :data:`MIN_FRAME_PX` = 32 px a side; below it every
deep feature is a copy of the padding. No torch here: commands check inputs before loading
anything heavy.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import InputError, ModelFileError

__all__ = ["MIN_FRAME_PX", "POOLING_LEVELS", "check_finite_output", "check_frame_size"]

POOLING_LEVELS = 4
"""The generator's 2× max-poolings (``network.SIZE_MULTIPLE == 2 ** POOLING_LEVELS``)."""
MIN_FRAME_PX = 2 * 2**POOLING_LEVELS
"""Smallest useful frame side: a 2×2 bottleneck (32 px)."""


def check_frame_size(height: int, width: int, what: str = "the image") -> None:
    """Refuse frames smaller than :data:`MIN_FRAME_PX` on either side."""
    if min(int(height), int(width)) < MIN_FRAME_PX:
        raise InputError(
            f"{what} is {int(height)}×{int(width)} px; Deep-Z needs at least "
            f"{MIN_FRAME_PX}×{MIN_FRAME_PX} px (its U-Net pools {POOLING_LEVELS} times, "
            f"which leaves a {MIN_FRAME_PX // 2**POOLING_LEVELS}×"
            f"{MIN_FRAME_PX // 2**POOLING_LEVELS} px bottleneck at that size). Use a larger "
            "image or camera ROI"
        )


def check_finite_output(planes: np.ndarray, model_path: str | os.PathLike[str] | None) -> None:
    """Raise :class:`ModelFileError` naming the model when its output holds NaN or inf."""
    if np.isfinite(planes).all():
        return
    bad = int(np.count_nonzero(~np.isfinite(planes)))
    where = f" {os.fspath(model_path)}" if model_path is not None else ""
    raise ModelFileError(
        f"the model{where} produced {bad} NaN/inf pixel(s) of {planes.size} from a finite "
        "input: its weights are broken (NaN/inf) or overflow at this precision. Retrain or "
        "re-copy the model, or try --precision fp32"
    )
