"""The Deep-Z networks: a residual U-Net generator and a GAN discriminator.

Both follow the Deep-Z paper (Wu et al., Nature Methods 2019, Supplementary Note / Methods
"Deep-Z network architecture"); the project spec METHOD.md condenses the numbers.

Generator, at full resolution ``H x W`` (channel counts at ``width = 1``)::

    x1 = input [image, dpm]                      (N,   2, H,    W)
    level 1: x2 = x1 + ReLU(conv48(ReLU(conv25(x1))))       (N,  48, H,    W)
    maxpool, level 2: x3 (96 ch, H/2) ... level 5: x6 (768 ch, H/16)
    y5 = x6
    y4 = ReLU(conv384(ReLU(conv576(cat(x5, up(y5))))))        (N, 384, H/8,  W/8)
    ...
    y1 = ReLU(conv48(ReLU(conv72(cat(x2, up(y2))))))          (N,  48, H,    W)
    out = conv1(y1)                                            (N,   1, H,    W)

``up`` is a 2x2 / stride-2 transposed convolution whose output has as many channels as the
skip tensor it is concatenated with (768->384, 384->192, 192->96, 96->48), i.e. it halves the
channels. With that choice the paper configuration has 17,446,556 parameters (METHOD.md's
"17.45 M measured in PyTorch") and 0.993 MFLOP per output pixel (0.26 TFLOP per 512x512
plane); the alternatives are far off (3x3 kernels: 19.40 M; channel-preserving 2x2: 21.66 M;
4x4: 22.15 M). The transposed conv has no activation: the ReLU after the following conv_c
provides it. The final conv is linear (the output is an intensity, normalised, unbounded).

Every 3x3 convolution uses replicate padding of one pixel; weights are Xavier-uniform,
biases 0.1. ``DeepZGenerator.forward`` accepts any ``H, W``: it replicate-pads the input up to
a multiple of 16 (four 2x poolings) and crops the output back.

**Global residual** (``DeepZConfig.residual``, not in the paper; the ``fast`` training
recipe): ``out = image + conv1(y1)`` with the head conv's weights and bias zero-initialised,
so an untrained network is the identity (DPM 0 gives the input back) and training learns
only the change of focus. With the paper's plain head an L1/L2-trained CPU-sized network
learned to drop sparse in-focus points; with the residual the in-focus peak is exact from
the first step (benchmarks/RESULTS.md, session 4). The model card records it
(``architecture.residual``; absent = False, so every older model file loads unchanged).

**DPM modulation** (``DeepZConfig.dpm_film``, not in the paper): the paper gives the DPM to
the network once, as the second input channel. With this option the output of every level
below full resolution (encoder levels 2-5, decoder levels 2-4) is also scaled and shifted per
pixel by a function of the DPM at that level's resolution (FiLM; Perez et al., AAAI 2018)::

    h <- h * (1 + g) + b,   (g, b) = conv1(ReLU(conv1(dpm)))      (8 hidden channels)

The last 1x1 conv starts at zero, so a modulated network starts as its plain twin and can be
warm-started from a plain model file. The DPM is the last input channel. Level 1 is left
out: at full resolution the modulation cost 25 % more time per training step, below it 0-7 %
(width 0.25, 96 px crops, one CPU thread).

**Defocus-disk features** (``DeepZConfig.disk_features``, not in the paper): a bead 6-10 µm
out of focus spreads its light over a disk 13-29 px in radius (20x/0.75, 0.325 µm pixels),
below the camera noise per pixel. With this option the image, averaged 2x2, is also filtered
by a fixed bank of centre-surround disks (``DefocusDiskBank``: the mean inside radius ``r``
minus the mean of the ring ``r .. 1.5 r``, for ``r`` = 8-30 px at full resolution), the
matched filters of such disks; a 3x3 conv, zero at start, adds their responses, times a fixed
``disk_gain``, to level 2's first convolution. The filters are computed, not stored, so the
model file holds only the learned weights, and a plain model can be warm-started (the option
is the identity at start).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SIZE_MULTIPLE",
    "DeepZConfig",
    "DeepZGenerator",
    "DefocusDiskBank",
    "Discriminator",
    "DiscriminatorConfig",
    "DpmModulation",
    "count_parameters",
    "generator_flops_per_pixel",
    "scale_channels",
]

# Paper channel counts at width 1.0 (Supplementary Note, Eqs. S1-S3).
DOWN_A = (25, 72, 144, 288, 576)  # first conv of down level k = 1..5
DOWN_B = (48, 96, 192, 384, 768)  # second conv of down level k = 1..5 (= x_{k+1} channels)
UP_C = (72, 144, 288, 576)  # first conv of up level k = 1..4
UP_D = (48, 96, 192, 384)  # second conv of up level k = 1..4 (= y_k channels)
DISC_A = (48, 96, 192, 384, 768, 1536)
DISC_B = (96, 192, 384, 768, 1536, 3072)

#: The generator's internal size granularity: four 2x max-poolings.
SIZE_MULTIPLE = 16
MIN_CHANNELS = 4
BIAS_INIT = 0.1


def scale_channels(channels: int, width: float) -> int:
    """Channels of a layer at ``width``: ``max(4, floor(channels * width + 0.5))``.

    Round-half-up (not Python's banker's rounding) so the mapping is obvious; at least 4
    channels so very narrow test networks still have a usable layer.
    """
    return max(MIN_CHANNELS, math.floor(channels * width + 0.5))


def _init_weights(module: nn.Module) -> None:
    """Xavier-uniform weights and 0.1 biases for every conv / transposed conv / linear."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, BIAS_INIT)


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, padding_mode="replicate")


# ---------------------------------------------------------------------------------------
# Generator


@dataclass(frozen=True)
class DeepZConfig:
    """Generator hyper-parameters.

    ``width`` multiplies every channel count of the paper (``scale_channels``); 1.0 is the
    paper's network (17.45 M parameters). ``in_channels`` is 2 (``[image, dpm]``).
    """

    width: float = 1.0
    in_channels: int = 2
    out_channels: int = 1
    residual: bool = False
    """Global residual: ``out = input[:, :out_channels] + head(...)``, head zero-initialised."""
    dpm_film: bool = False
    """Scale and shift the features of every level below full resolution by a function of the
    DPM, the last input channel (``DpmModulation``)."""
    disk_features: bool = False
    """Add the responses of fixed defocus-disk filters of the image to level 2
    (``DefocusDiskBank``)."""
    disk_gain: float = 1.0
    """Fixed factor on the disk responses before their (learned) conv; the responses of a
    normalised image are ~30x smaller than level 2's activations."""

    @classmethod
    def from_architecture(cls, arch: dict[str, Any]) -> DeepZConfig:
        """The config of a model card's ``architecture`` dict (absent keys: the defaults)."""
        return cls(
            width=float(arch["width"]),
            in_channels=int(arch.get("in_channels", 2)),
            out_channels=int(arch.get("out_channels", 1)),
            residual=bool(arch.get("residual", False)),
            dpm_film=bool(arch.get("dpm_film", False)),
            disk_features=bool(arch.get("disk_features", False)),
            disk_gain=float(arch.get("disk_gain", 1.0)),
        )

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ValueError(f"DeepZConfig.width must be > 0, got {self.width}")
        if self.in_channels < 1 or self.out_channels < 1:
            raise ValueError("DeepZConfig in_channels and out_channels must be >= 1")
        if self.dpm_film and self.in_channels < 2:
            raise ValueError(
                "a DPM-modulated generator needs a DPM input channel (in_channels >= 2)"
            )
        if not (math.isfinite(self.disk_gain) and self.disk_gain > 0):
            raise ValueError(f"DeepZConfig.disk_gain must be > 0, got {self.disk_gain}")
        if self.residual and self.out_channels > self.in_channels:
            raise ValueError("a residual generator needs out_channels <= in_channels")
        if self.in_channels > self.down_b[0]:
            raise ValueError(
                f"in_channels={self.in_channels} exceeds the first level's "
                f"{self.down_b[0]} channels; the residual connection can only zero-pad"
            )

    @property
    def down_a(self) -> tuple[int, ...]:
        return tuple(scale_channels(c, self.width) for c in DOWN_A)

    @property
    def down_b(self) -> tuple[int, ...]:
        return tuple(scale_channels(c, self.width) for c in DOWN_B)

    @property
    def up_c(self) -> tuple[int, ...]:
        return tuple(scale_channels(c, self.width) for c in UP_C)

    @property
    def up_d(self) -> tuple[int, ...]:
        return tuple(scale_channels(c, self.width) for c in UP_D)


class DownBlock(nn.Module):
    """``x_{k+1} = pad_c(x_k) + ReLU(conv_b(ReLU(conv_a(x_k) + extra)))`` (residual, same
    size; ``extra``, optional, is added before the first activation)."""

    def __init__(self, c_in: int, c_a: int, c_b: int) -> None:
        super().__init__()
        assert c_b >= c_in, "the residual can only zero-pad channels"
        self.conv_a = _conv3x3(c_in, c_a)
        self.conv_b = _conv3x3(c_a, c_b)
        self.extra_channels = c_b - c_in

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        a = self.conv_a(x)
        h = F.relu(self.conv_b(F.relu(a if extra is None else a + extra)))
        # zero-pad the residual's channel dim: (N, c_in, H, W) -> (N, c_b, H, W)
        residual = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return residual + h


class UpBlock(nn.Module):
    """``y_k = ReLU(conv_d(ReLU(conv_c(cat(x_{k+1}, up(y_{k+1}))))))``."""

    def __init__(self, c_below: int, c_skip: int, c_c: int, c_d: int) -> None:
        super().__init__()
        # 2x up-sampling; output channels = skip channels (see module docstring)
        self.up = nn.ConvTranspose2d(c_below, c_skip, kernel_size=2, stride=2)
        self.conv_c = _conv3x3(2 * c_skip, c_c)
        self.conv_d = _conv3x3(c_c, c_d)

    def forward(self, skip: torch.Tensor, below: torch.Tensor) -> torch.Tensor:
        up = self.up(below)  # (N, c_below, h, w) -> (N, c_skip, 2h, 2w)
        h = torch.cat([skip, up], dim=1)  # (N, 2 * c_skip, 2h, 2w)
        return F.relu(self.conv_d(F.relu(self.conv_c(h))))


class DpmModulation(nn.Module):
    """``h * (1 + g) + b`` with ``(g, b) = conv1(ReLU(conv1(dpm)))``; identity at start."""

    HIDDEN = 8

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.hidden = nn.Conv2d(1, self.HIDDEN, 1)
        self.out = nn.Conv2d(self.HIDDEN, 2 * channels, 1)

    def zero_(self) -> None:
        """Make the modulation the identity (its last conv all zero)."""
        nn.init.zeros_(self.out.weight)
        if self.out.bias is not None:
            nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, dpm: torch.Tensor) -> torch.Tensor:
        # dpm (N, 1, h, w) -> gain and bias (N, C, h, w) each
        gain, bias = self.out(F.relu(self.hidden(dpm))).chunk(2, dim=1)
        return h * (1 + gain) + bias


class DefocusDiskBank(nn.Module):
    """Fixed centre-surround disk filters of the image at half resolution.

    ``(N, 1, H, W)`` -> ``(N, K, H/2, W/2)``: the image averaged 2x2, then filtered by, per
    radius ``r`` in ``RADII_HALF_PX``, the mean inside ``r`` minus the mean of the ring
    ``r .. 1.5 r`` (zero sum, scaled to unit L2 norm). Not trained, not saved.
    """

    RADII_HALF_PX = (4.0, 6.0, 8.0, 11.0, 15.0)
    SURROUND = 1.5
    PAD_PX = math.ceil(SURROUND * max(RADII_HALF_PX))
    """Half the filters' side: they are ``2 * PAD_PX + 1`` px square."""

    def __init__(self) -> None:
        super().__init__()
        half = self.PAD_PX
        # computed on the CPU even inside a ``torch.device("meta")`` context (as load_model
        # builds networks): a non-persistent buffer is not in the file to be assigned later
        axis = torch.arange(-half, half + 1.0, device="cpu")
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        rho = torch.hypot(yy, xx)
        bank = []
        for r in self.RADII_HALF_PX:
            inner = (rho <= r).float()
            ring = ((rho > r) & (rho <= self.SURROUND * r)).float()
            k = inner / inner.sum() - ring / ring.sum()
            bank.append(k / k.norm())
        self.bank: torch.Tensor
        self.register_buffer("bank", torch.stack(bank)[:, None], persistent=False)

    @property
    def channels(self) -> int:
        return len(self.RADII_HALF_PX)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        small = F.avg_pool2d(image, 2)  # (N, 1, H/2, W/2)
        p = self.PAD_PX
        padded = F.pad(small, (p, p, p, p), mode="replicate")
        return F.conv2d(padded, self.bank.to(padded.dtype))  # (N, K, H/2, W/2)


class DeepZGenerator(nn.Module):
    """Deep-Z U-Net: ``(N, 2, H, W)`` ``[image, dpm / dpm_scale]`` -> ``(N, 1, H, W)``."""

    def __init__(self, config: DeepZConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DeepZConfig()
        a, b, c, d = config.down_a, config.down_b, config.up_c, config.up_d
        c_in = (config.in_channels, *b[:-1])  # level k's input: the input, then x_2..x_5
        self.down = nn.ModuleList(DownBlock(c_in[k], a[k], b[k]) for k in range(5))
        # up[k] produces y_{k+1} (k = 0..3) from x_{k+2} (skip, b[k]) and y_{k+2} below
        # (b[4] = x_6 = y_5 for the deepest, d[k+1] otherwise).
        below = (*d[1:], b[4])
        self.up = nn.ModuleList(UpBlock(below[k], b[k], c[k], d[k]) for k in range(4))
        self.head = _conv3x3(d[0], config.out_channels)
        # below full resolution: down_film[k - 1] modulates x_{k+2}, up_film[k - 1] y_{k+1}
        film = config.dpm_film
        self.down_film = nn.ModuleList(DpmModulation(c) for c in b[1:]) if film else None
        self.up_film = nn.ModuleList(DpmModulation(c) for c in d[1:]) if film else None
        # defocus-disk responses -> level 2's first conv (added before its activation)
        self.disks = DefocusDiskBank() if config.disk_features else None
        self.disk_in = _conv3x3(self.disks.channels, a[1]) if self.disks is not None else None
        _init_weights(self)
        if self.disk_in is not None:  # start as the plain network
            nn.init.zeros_(self.disk_in.weight)
            if self.disk_in.bias is not None:
                nn.init.zeros_(self.disk_in.bias)
        for modulation in (*(self.down_film or ()), *(self.up_film or ())):
            modulation.zero_()  # start as the plain network
        if config.residual:  # start as the identity: the net learns the change of focus
            nn.init.zeros_(self.head.weight)
            if self.head.bias is not None:
                nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        # replicate-pad bottom/right to a multiple of 16: (N, C, H, W) -> (N, C, H', W')
        pad_h = (SIZE_MULTIPLE - h % SIZE_MULTIPLE) % SIZE_MULTIPLE
        pad_w = (SIZE_MULTIPLE - w % SIZE_MULTIPLE) % SIZE_MULTIPLE
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        image = x[:, : self.config.out_channels] if self.config.residual else None
        # the DPM at each level's resolution: (N, 1, H' / 2**k, W' / 2**k), k = 0..4
        dpms = [x[:, -1:]] if self.down_film is not None else []
        for _ in range(4 if dpms else 0):
            dpms.append(F.avg_pool2d(dpms[-1], 2))
        disk = None
        if self.disks is not None and self.disk_in is not None:  # (N, a_2, H'/2, W'/2)
            disk = self.disk_in(self.disks(x[:, :1]) * self.config.disk_gain)

        skips = []  # x_2 .. x_5 at H', H'/2, H'/4, H'/8
        for k, block in enumerate(self.down):
            if k > 0:
                x = F.max_pool2d(x, 2)
            x = block(x, disk if k == 1 else None)
            if self.down_film is not None and k > 0:
                x = self.down_film[k - 1](x, dpms[k])
            skips.append(x)
        y = skips.pop()  # y_5 = x_6, (N, 768w, H'/16, W'/16)
        for k in reversed(range(4)):
            y = self.up[k](skips[k], y)  # y_{k+1} at H' / 2**k
            if self.up_film is not None and k > 0:
                y = self.up_film[k - 1](y, dpms[k])
        out = self.head(y)  # (N, out_channels, H', W')
        if image is not None:  # global residual: + the image channel(s)
            out = out + image
        return out[..., :h, :w]


def generator_flops_per_pixel(width: float = 1.0, config: DeepZConfig | None = None) -> float:
    """FLOPs (2 x multiply-accumulates) per output pixel of the generator, from layer shapes.

    Counts the convolutions and transposed convolutions (bias adds, ReLUs, pooling and
    padding are negligible and not counted), assuming the input is a multiple of 16 so no
    padding is added. Level ``k`` runs at ``1 / 4**k`` of the output pixels.
    """
    cfg = config or DeepZConfig(width=width)
    a, b, c, d = cfg.down_a, cfg.down_b, cfg.up_c, cfg.up_d
    macs = 0.0
    c_in = (cfg.in_channels, *b[:-1])
    for k in range(5):
        macs += 9 * (c_in[k] * a[k] + a[k] * b[k]) / 4**k
    below = (*d[1:], b[4])
    for k in range(4):
        # a 2x2 stride-2 transposed conv touches each output pixel with exactly one tap
        macs += below[k] * b[k] / 4**k
        macs += 9 * (2 * b[k] * c[k] + c[k] * d[k]) / 4**k
    macs += 9 * d[0] * cfg.out_channels
    if cfg.dpm_film:  # the 1x1 convs of DpmModulation (1 -> 8 -> 2C) below full resolution
        h = DpmModulation.HIDDEN
        macs += sum((h + h * 2 * ch) / 4**k for k, ch in enumerate(b[1:], start=1))
        macs += sum((h + h * 2 * ch) / 4**k for k, ch in enumerate(d[1:], start=1))
    if cfg.disk_features:  # the fixed disk bank and the 3x3 conv into level 2, at H/2
        n_disk = len(DefocusDiskBank.RADII_HALF_PX)
        side = 2 * DefocusDiskBank.PAD_PX + 1
        macs += (n_disk * side * side + 9 * n_disk * a[1]) / 4
    return 2.0 * macs


# ---------------------------------------------------------------------------------------
# Discriminator


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Discriminator hyper-parameters; ``width`` scales every channel count incl. the FC."""

    width: float = 1.0
    in_channels: int = 1
    negative_slope: float = 0.01

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ValueError(f"DiscriminatorConfig.width must be > 0, got {self.width}")


class DiscriminatorBlock(nn.Module):
    """``z_{i+1} = LReLU(conv_b(LReLU(conv_a(z_i))))``; conv_b has stride 2 (2x down)."""

    def __init__(self, c_in: int, c_a: int, c_b: int, negative_slope: float) -> None:
        super().__init__()
        self.conv_a = _conv3x3(c_in, c_a)
        self.conv_b = _conv3x3(c_a, c_b, stride=2)
        self.negative_slope = negative_slope

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = F.leaky_relu(self.conv_a(z), self.negative_slope)
        return F.leaky_relu(self.conv_b(z), self.negative_slope)


class Discriminator(nn.Module):
    """Six :class:`DiscriminatorBlock` (2x down each), global avg-pool, FC, LReLU, FC, sigmoid.

    Input ``(N, in_channels, H, W)`` (H, W >= 1; 256 in training), output ``(N, 1)`` in (0, 1).
    """

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DiscriminatorConfig()
        a = [scale_channels(ch, config.width) for ch in DISC_A]
        b = [scale_channels(ch, config.width) for ch in DISC_B]
        c_in = [config.in_channels, *b[:-1]]
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(c_in[i], a[i], b[i], config.negative_slope) for i in range(6)
        )
        self.fc1 = nn.Linear(b[-1], b[-1])
        self.fc2 = nn.Linear(b[-1], 1)
        _init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        slope = self.config.negative_slope
        for block in self.blocks:
            z = block(z)  # (N, C, H, W) -> (N, C', ceil(H/2), ceil(W/2))
        z = z.mean(dim=(-2, -1))  # global average pool: (N, C, h, w) -> (N, C)
        z = F.leaky_relu(self.fc1(z), slope)
        return torch.sigmoid(self.fc2(z))  # (N, 1)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``module`` (all, or only those requiring grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
