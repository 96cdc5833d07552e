"""A training-only head that reads each object's refocus distance from the generator.

The Deep-Z generator must tell on which side of focus a defocused object lies before it can
refocus it; far from focus (6–10 µm) the trained models read that side right for only
79–86 % of beads (benchmarks/RESULTS.md, session 11). This head gives the network a direct
signal for it: a 1×1 convolution on the generator's last decoder features (the input of its
output convolution) predicts, at each object, the DPM that would bring that object into
focus (:meth:`~live_deepz.training.sampling.FocusSampler.batch_with_focus_maps`). Its loss is
added to the reconstruction loss with ``TrainConfig.focus_map_weight``. The head is not part
of the saved model: the model file and its outputs keep their format; only the checkpoint
keeps the head, so that ``--resume`` continues exactly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LEVELS", "FocusMapHead", "focus_map_loss"]

LEVELS = ("last", "deepest")
"""Where the head reads: the features entering the output conv (full resolution), or the
U-Net's deepest level (1/16 resolution, the widest context; upsampled bilinearly)."""


class FocusMapHead(nn.Module):
    """1×1 convolution on the generator's features at ``level`` (:data:`LEVELS`), captured
    by a hook."""

    def __init__(self, generator: nn.Module, level: str = "last") -> None:
        super().__init__()
        head, down = getattr(generator, "head", None), getattr(generator, "down", None)
        if not isinstance(head, nn.Conv2d) or not isinstance(down, nn.ModuleList):
            raise TypeError("the focus-map head needs a Deep-Z generator (a conv named 'head')")
        if level not in LEVELS:
            raise ValueError(f"focus-map level must be one of {', '.join(LEVELS)}, not {level!r}")
        self.level = level
        self._features: torch.Tensor | None = None
        if level == "last":
            self.conv = nn.Conv2d(head.in_channels, 1, kernel_size=1)
            self._hook = head.register_forward_pre_hook(self._keep_input)
        else:
            deepest = getattr(down[-1], "conv_b", None)
            if not isinstance(deepest, nn.Conv2d):
                raise TypeError("the focus-map head needs a Deep-Z generator's down blocks")
            self.conv = nn.Conv2d(deepest.out_channels, 1, kernel_size=1)
            self._hook = down[-1].register_forward_hook(self._keep_output)

    def _keep_input(self, _module: nn.Module, args: tuple[Any, ...]) -> None:
        self._features = args[0]

    def _keep_output(self, _module: nn.Module, _args: tuple[Any, ...], out: Any) -> None:
        self._features = out

    def forward(self) -> torch.Tensor:
        """``(N, 1, H', W')`` predicted refocus distances for the generator's last forward
        (its padded size: crop to the input's)."""
        if self._features is None:
            raise RuntimeError("run the generator before reading the focus-map head")
        out = self.conv(self._features)
        if self.level == "deepest":
            out = F.interpolate(out, scale_factor=16, mode="bilinear", align_corners=False)
        return out

    def detach_hook(self) -> None:
        """Stop capturing the generator's features."""
        self._hook.remove()
        self._features = None


def focus_map_loss(
    predicted: torch.Tensor, maps: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean squared error of ``predicted`` ``(N, 1, H', W')`` against the focus distances
    ``maps[:, :1]`` on the labelled pixels ``maps[:, 1:]`` (0 where a batch labels none),
    and the logged figures: that error, the number of labelled pixels at least 5 µm from
    focus (|map| ≥ 0.5) and how many of them have the right predicted sign (their ratio over
    many steps is the head's far-side accuracy)."""
    h, w = maps.shape[-2:]
    pred = predicted[..., :h, :w].float()
    target, mask = maps[:, :1].float(), maps[:, 1:2].float()
    n = mask.sum()
    loss = ((pred - target) ** 2 * mask).sum() / n.clamp(min=1.0)
    far = (mask > 0) & (target.abs() >= 0.5)
    right = ((pred.detach() * target) > 0) & far
    return loss, {
        "train_focus_map_mse": float(loss.detach()),
        "train_focus_far_px": float(far.sum()),
        "train_focus_right_px": float(right.sum()),
    }
