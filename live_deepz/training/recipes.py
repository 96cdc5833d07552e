"""Named training recipes: ``paper`` (Deep-Z as published) and ``fast`` (learns on a CPU).

``paper``
    The published Deep-Z schedule: plain U-Net head, L1 pre-training then the LS-GAN phase
    (``L_G = adversarial + α·MAE``), Adam 1e-4 constant, batch 20, 256 px patches, every
    region cropped exactly, targets drawn uniformly from the window, the checkpoint with the
    lowest validation MAE kept. On CUDA: width 1.0, 1000 L1 + 20000 GAN steps; on a CPU:
    width 0.25, 2000 L1 steps and no GAN phase (9 network updates per GAN step).

``fast`` (default on a CPU)
    Recipe "C" of issue 14, measured on this project's 2-core CPU: a global-residual
    generator (``out = image + net``, head zero-initialised), MSE loss, Adam 1e-3 with a
    100-step linear warm-up and a cosine decay to 2 % (annealed by wall time when a time
    budget is given), batch 8, 64 px crops drawn inside 128 px regions, 80 % of them centred
    on an object and half of those with the object's own focus plane ± 1 as target
    (:mod:`live_deepz.training.sampling`), the final (annealed) weights kept (validation figures
    recorded at every checkpoint), bf16 autocast + channels_last on a CPU with native
    bf16 (AVX512-BF16/AMX; on this project's AVX2-only EPYC emulated bf16 was 5x slower than
    fp32, 3.9 vs 0.72 s per step under load, so there it trains in fp32). The balanced
    validation MAE (mean of the MAE on bright target pixels and on the rest) is recorded; it
    was too noisy to select checkpoints on (``trainer`` docstring). No GAN phase. In the
    issue-14 experiment 16000 steps took 17 min on one idle core and localised beads to 0.25 µm.

``--steps`` is always the total number of optimisation steps (one batch each): for
``paper`` the first ``--pretrain-steps`` are L1-only and the rest are GAN iterations (each
6 generator + 3 discriminator updates on one batch); for ``fast`` all are generator steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .sampling import SamplingConfig

__all__ = ["RECIPES", "Recipe", "cpu_has_native_bf16", "default_recipe", "recipe"]

RECIPES = ("paper", "fast")


@dataclass(frozen=True)
class Recipe:
    """Defaults of one recipe (each can be overridden on the command line)."""

    name: str
    width: float
    steps: int
    """Total optimisation steps."""
    pretrain_steps: int | None
    """L1-only steps at the start (paper); None = all steps are generator steps (fast)."""
    batch: int
    patch: int
    """Training patch (crop) side, px."""
    region: int
    """Region side, px (the greedy foreground cover); crops are drawn inside regions."""
    loss: str
    lr_g: float
    lr_schedule: str
    warmup_steps: int
    residual: bool
    amp: str
    channels_last: bool
    select_on: str
    val_every: int
    max_val_pairs: int
    min_useful_steps: int
    """Runs shorter than this are marked short in the card (a load warning says so)."""
    sampling: SamplingConfig | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "sampling"}
        d["sampling"] = self.sampling.to_dict() if self.sampling else None
        return d


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (else autocast to bf16 is emulated)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def recipe(name: str, device_type: str = "cpu") -> Recipe:
    """The recipe ``name`` with its defaults for ``device_type`` (``cpu`` or ``cuda``)."""
    cuda = device_type == "cuda"
    cpu_bf16 = not cuda and cpu_has_native_bf16()
    if name == "paper":
        return Recipe(
            name="paper",
            width=1.0 if cuda else 0.25,
            steps=21000 if cuda else 2000,
            pretrain_steps=1000 if cuda else 2000,
            batch=20,
            patch=256,
            region=256,
            loss="l1",
            lr_g=1e-4,
            lr_schedule="constant",
            warmup_steps=0,
            residual=False,
            amp="auto",
            channels_last=False,
            select_on="val_mae",
            val_every=50,
            max_val_pairs=256,
            min_useful_steps=1000,
        )
    if name == "fast":
        return Recipe(
            name="fast",
            width=0.25,
            steps=16000,
            pretrain_steps=None,
            batch=8,
            patch=64,
            region=128,
            loss="mse",
            lr_g=1e-3,
            lr_schedule="cosine",
            warmup_steps=100,
            residual=True,
            amp="auto" if cuda else ("bf16" if cpu_bf16 else "off"),
            channels_last=not cuda and cpu_bf16,
            select_on="last",
            val_every=500,
            max_val_pairs=128,
            min_useful_steps=2000,
            sampling=SamplingConfig(),
        )
    raise InputError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")


def default_recipe(device_type: str, cross_modal: bool = False) -> str:
    """``fast`` on a CPU (Deep-Z), ``paper`` on CUDA and for Deep-Z+ (cross-modal)."""
    return "paper" if device_type == "cuda" or cross_modal else "fast"
