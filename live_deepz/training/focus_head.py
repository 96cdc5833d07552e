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
from torch import nn

__all__ = ["FocusMapHead", "focus_map_loss"]


class FocusMapHead(nn.Module):
    """1×1 convolution on the features entering ``generator.head``, captured by a hook."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        head = getattr(generator, "head", None)
        if not isinstance(head, nn.Conv2d):
            raise TypeError("the focus-map head needs a Deep-Z generator (a conv named 'head')")
        self.conv = nn.Conv2d(head.in_channels, 1, kernel_size=1)
        self._features: torch.Tensor | None = None
        self._hook = head.register_forward_pre_hook(self._keep)

    def _keep(self, _module: nn.Module, args: tuple[Any, ...]) -> None:
        self._features = args[0]

    def forward(self) -> torch.Tensor:
        """``(N, 1, H', W')`` predicted refocus distances for the generator's last forward
        (its padded size: crop to the input's)."""
        if self._features is None:
            raise RuntimeError("run the generator before reading the focus-map head")
        return self.conv(self._features)

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
