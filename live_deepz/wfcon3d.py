"""WFCON-Net (the Deep-3D paper, seed 003, Fig. 2): wide-field z-stack → confocal z-stack.

Generator: a 3D U-Net (Çiçek et al. 2016) with the paper's modifications::

    inc:      block(1 → c0)                                   (N, c0, Z, Y, X)
    down k:   max-pool → block(c_{k-1} → c_k),  k = 1..4       c_k = c0 · 2^k
    up k:     nearest ×2 → conv3 → ReLU → cat(skip) → block(2 c_{k-1} → c_{k-1})
    head:     conv1 (c0 → 1) [+ the input: global residual]

    block(a → b) = ReLU(IN(conv3(ReLU(IN(conv3(x)))))) + proj(x)   (proj = 1×1×1 conv if a ≠ b)

Every convolution is 3×3×3 (stride 1, replicate padding), normalisation is instance norm,
up-sampling is nearest-neighbour followed by a convolution (fewer checkerboard artefacts
than transposed convolutions), and each block carries a residual mapping. The paper trains
on 12-plane patches, which cannot be halved four times: the first ``z_pools`` poolings
halve z too (2×2×2), the others only y and x (1×2×2). ``c0 = round(32 · width)``: the paper
gives no channel counts, 32 is the 3D U-Net's; ``width`` is the multiplier that makes it
train on a CPU. ``global_residual`` (output = input + network) is the CPU recipe of the
Deep-Z training issue; it is recorded in the card.

Discriminator: the 3D version of Deep-Z's (``network.Discriminator``): six blocks of
``LReLU(conv3)`` → ``LReLU(conv3, stride 2)``, global average pool, FC, LReLU, FC, sigmoid;
channel counts of Deep-Z's times ``width``.

Both take ``(N, 1, Z, Y, X)`` in [0, 1]; the generator accepts any size (it pads by
replication up to multiples of ``2^z_pools`` planes and 16 pixels, at least 32, and crops
back).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .network import DISC_A, DISC_B, count_parameters, scale_channels

__all__ = [
    "ARCHITECTURE_TYPE",
    "WFConConfig",
    "WFConDiscriminator",
    "WFConGenerator",
    "count_parameters",
    "register",
]

ARCHITECTURE_TYPE = "wfcon3d"
BASE_CHANNELS = 32
LEVELS = 4


@dataclass(frozen=True)
class WFConConfig:
    """Generator hyper-parameters (see the module docstring)."""

    width: float = 1.0
    z_pools: int = 2
    global_residual: bool = True

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ValueError(f"WFConConfig.width must be > 0, got {self.width}")
        if not 0 <= self.z_pools <= LEVELS:
            raise ValueError(f"WFConConfig.z_pools must be within 0..{LEVELS}")

    @property
    def channels(self) -> tuple[int, ...]:
        c0 = scale_channels(BASE_CHANNELS, self.width)
        return tuple(c0 * 2**k for k in range(LEVELS + 1))

    @property
    def z_multiple(self) -> int:
        return 2**self.z_pools

    def pool(self, level: int) -> tuple[int, int, int]:
        """Pooling / up-sampling factor entering ``level`` (1..4)."""
        return (2 if level <= self.z_pools else 1, 2, 2)

    def to_arch(self) -> dict[str, Any]:
        return {
            "type": ARCHITECTURE_TYPE,
            "width": self.width,
            "z_pools": self.z_pools,
            "residual": self.global_residual,
        }

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> WFConConfig:
        return cls(
            width=float(arch["width"]),
            z_pools=int(arch.get("z_pools", 2)),
            global_residual=bool(arch.get("residual", arch.get("global_residual", True))),
        )


def _conv3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, padding_mode="replicate")


class ResBlock3d(nn.Module):
    """Two conv3 + instance norm + ReLU, plus a residual mapping of the input."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = _conv3(c_in, c_out)
        self.norm_a = nn.InstanceNorm3d(c_out, affine=True)
        self.conv_b = _conv3(c_out, c_out)
        self.norm_b = nn.InstanceNorm3d(c_out, affine=True)
        self.proj = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm_a(self.conv_a(x)))
        h = F.relu(self.norm_b(self.conv_b(h)))
        return h + self.proj(x)


class UpBlock3d(nn.Module):
    """Nearest-neighbour up-sampling, conv3 + ReLU, concatenation with the skip, a block."""

    def __init__(self, c_below: int, c_skip: int, factor: tuple[int, int, int]) -> None:
        super().__init__()
        self.factor = factor
        self.conv = _conv3(c_below, c_skip)
        self.block = ResBlock3d(2 * c_skip, c_skip)

    def forward(self, skip: torch.Tensor, below: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(below, scale_factor=self.factor, mode="nearest")
        up = F.relu(self.conv(up))  # (N, c_skip, Z, Y, X) like the skip
        return self.block(torch.cat([skip, up], dim=1))


class WFConGenerator(nn.Module):
    """``(N, 1, Z, Y, X)`` wide-field stack → ``(N, 1, Z, Y, X)`` confocal-like stack."""

    def __init__(self, config: WFConConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or WFConConfig()
        c = config.channels
        self.inc = ResBlock3d(1, c[0])
        self.down = nn.ModuleList(ResBlock3d(c[k - 1], c[k]) for k in range(1, LEVELS + 1))
        self.up = nn.ModuleList(
            UpBlock3d(c[k], c[k - 1], config.pool(k)) for k in range(1, LEVELS + 1)
        )
        self.head = nn.Conv3d(c[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, h, w = x.shape[-3:]
        zm, lm = self.config.z_multiple, 2**LEVELS
        # multiples of the poolings, and at least 2 lateral pixels at the bottleneck so that
        # instance norm has more than one value to normalise
        pads = tuple(
            max((m - n % m) % m, lo - n)
            for n, m, lo in ((z, zm, 0), (h, lm, 2 * lm), (w, lm, 2 * lm))
        )
        xp = F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]), mode="replicate") if any(pads) else x
        skips = [self.inc(xp)]
        for k, block in enumerate(self.down, start=1):
            skips.append(block(F.max_pool3d(skips[-1], self.config.pool(k))))
        y = skips.pop()
        for k in reversed(range(LEVELS)):
            y = self.up[k](skips[k], y)
        out = self.head(y)
        if self.config.global_residual:
            out = out + xp
        return out[..., :z, :h, :w]


@dataclass(frozen=True)
class WFConDiscriminatorConfig:
    width: float = 1.0
    negative_slope: float = 0.01


class WFConDiscriminator(nn.Module):
    """3D version of Deep-Z's discriminator: ``(N, 1, Z, Y, X)`` → ``(N, 1)`` in (0, 1)."""

    def __init__(self, config: WFConDiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or WFConDiscriminatorConfig()
        a = [scale_channels(ch, config.width) for ch in DISC_A]
        b = [scale_channels(ch, config.width) for ch in DISC_B]
        c_in = [1, *b[:-1]]
        self.conv_a = nn.ModuleList(_conv3(c_in[i], a[i]) for i in range(6))
        self.conv_b = nn.ModuleList(_conv3(a[i], b[i], stride=2) for i in range(6))
        self.fc1 = nn.Linear(b[-1], b[-1])
        self.fc2 = nn.Linear(b[-1], 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        s = self.config.negative_slope
        for ca, cb in zip(self.conv_a, self.conv_b, strict=True):
            z = F.leaky_relu(cb(F.leaky_relu(ca(z), s)), s)
        z = z.mean(dim=(-3, -2, -1))
        return torch.sigmoid(self.fc2(F.leaky_relu(self.fc1(z), s)))


# ---------------------------------------------------------------------------------------
# The model-family registry (live_deepz.architectures)


def _validate(arch: dict[str, Any]) -> tuple[str, str] | None:
    w = arch.get("width")
    if w is None:
        return "width", "is missing"
    if isinstance(w, bool) or not isinstance(w, int | float) or not 0 < w < float("inf"):
        return "width", f"must be a positive number, got {w!r}"
    zp = arch.get("z_pools", 2)
    if isinstance(zp, bool) or not isinstance(zp, int) or not 0 <= zp <= LEVELS:
        return "z_pools", f"must be an integer within 0..{LEVELS}, got {zp!r}"
    for key in ("residual", "global_residual"):  # "global_residual": the first cards
        if not isinstance(arch.get(key, True), bool):
            return key, f"must be true or false, got {arch[key]!r}"
    return None


def _describe(module: nn.Module) -> dict[str, Any] | None:
    return module.config.to_arch() if isinstance(module, WFConGenerator) else None


def build(arch: dict[str, Any]) -> nn.Module:
    return WFConGenerator(WFConConfig.from_arch(arch))


def register() -> None:
    """Register ``wfcon3d`` in :mod:`live_deepz.architectures`."""
    from .architectures import register_architecture

    register_architecture(
        ARCHITECTURE_TYPE,
        build,
        dims=3,
        description="WFCON-Net 3D U-Net (Deep-3D paper): wide-field z-stack → confocal z-stack",
        validate=_validate,
        describe=_describe,
    )
