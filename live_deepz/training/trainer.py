"""The Deep-Z LS-GAN trainer (paper Methods, "Training and testing of the Deep-Z network").

Losses, exactly as printed (Eqs. 4-5), with ``N`` the batch::

    L_G = ½·mean[(D(G(x)) − 1)²] + α·½·MAE(G(x), z)        α = 0.02
    L_D = ½·mean[D(G(x))²] + ½·mean[(D(z) − 1)²]

Adam (lr 1e-4 for G, 3e-5 for D). One *iteration* draws one batch and makes 6 generator and
3 discriminator updates on it, interleaved ``D G G D G G D G G`` (the paper's "~400k
iterations ≈ 50 epochs" only fits one batch per iteration). Every ``val_every`` steps the
generator's MAE on (a fixed subset of) the validation pairs is measured and the generator
with the lowest validation MAE is the one written as the model (``save_model``), with its
card filled from the data. The validation before any training is the baseline, so the kept
model is never worse than the initial one on validation.

**L1-only pre-training** (``pretrain_steps``): generator updates with the MAE alone, one
batch per step, before the GAN phase (same Adam state). The GAN phase costs 9 network
updates per iteration; on a CPU a short L1-only run (``steps = 0``) is the practical
default and already gives a usable refocusing model for dense samples, but it does not
reproduce sparse bright points such as beads (measured, benchmarks/RESULTS.md); the paper's
GAN phase is what sharpens, and it needs a GPU (100 iterations on the 2-core CPU, 3.5 min,
left the discriminator at chance, L_D 0.250, and raised the validation MAE 0.034 → 0.11).

**Resume**: at every validation the whole training state is written to
``OUT/checkpoint/``: tensors (G, D, both Adam states) in ``state.safetensors`` with
flattened keys (``G/<param>``, ``opt_g/<param index>/<exp_avg|exp_avg_sq|step>``), and
everything else (step counters, best MAE, history, param groups, grad-scaler scalars, the
config, a fingerprint of the data) in ``state.json``. No pickle. An interrupted run
(Ctrl-C, a lost machine) resumes from its last validation. Batches and augmentations
are a pure function of ``(seed, batch number)``, so a resumed CPU run repeats an
uninterrupted one bit for bit (same machine, same thread count).

**Determinism**: ``torch.manual_seed(seed)`` before the networks are built;
``torch.use_deterministic_algorithms(True, warn_only=True)`` on the CPU (restored after);
on CUDA the cuDNN autotuner is used unless ``deterministic`` is asked for.

**Mixed precision**: CUDA autocast in bf16 (fp16 + ``GradScaler`` where bf16 is missing);
CPU bf16 autocast only when asked (``amp="on"``/``"bf16"``). Losses are computed in fp32.
``channels_last`` puts the generator and its inputs in NHWC memory order (faster bf16
convolutions on the CPU).

**Beyond the paper** (the ``fast`` recipe, :mod:`live_deepz.training.recipes`): ``loss="mse"``
(L2; L1 is median-seeking and erases sparse bright points), a global-residual generator
(``residual``), ``lr_schedule="cosine"`` (linear warm-up over ``warmup_steps``, cosine
decay to ``lr_final_fraction``; with ``time_budget_s`` the schedule's progress is the
larger of the step and the wall-time fraction, and training stops at whichever ends
first, so a slow machine still anneals), training items from a
:class:`~live_deepz.training.sampling.FocusSampler` (``sampling``), and checkpoint selection
on ``select_on="val_balanced_mae"``: the mean of the validation MAE on bright target pixels
(≥ ``FG_THRESHOLD``) and on the others, which a model that drops sparse peaks cannot win; or
``select_on="last"`` (the ``fast`` recipe): the annealed weights at the end. Measured in the
session-4 default-model run: the balanced validation MAE moved by ±5 % between checkpoints
(0.066–0.074, noisy single-frame targets) and kept a step-3500 snapshot taken at a high learning
rate whose bead localisation was 2.05 µm, so selecting on it picks noise.

**Unfinished models**: every model written during training has ``training.complete:
false`` in its card until the run ends as asked (all steps, or the time budget); an
interrupted run's folder therefore loads with a warning
(:func:`live_deepz.modelfile.training_warning`), as does one shorter than
``min_useful_steps`` (``training.short: true``).
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..architectures import DEEPZ_UNET, build_network, get_architecture
from ..errors import InputError
from ..modelfile import ModelCard, load_model, resolve_model, save_model
from ..network import Discriminator, DiscriminatorConfig
from ..optics import Optics
from .ddp import DistEnv, all_reduce_sum, shard, wrap_ddp
from .focus_head import LEVELS as FOCUS_LEVELS
from .focus_head import FocusMapHead, focus_map_loss
from .pairs import PairData, PairDataset

__all__ = [
    "CHECKPOINT_DIR",
    "CURVE_FILE",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "load_checkpoint_tensors",
    "train",
]

CHECKPOINT_DIR = "checkpoint"
CURVE_FILE = "training_curve.png"
HISTORY_FILE = "training_history.json"
#: Config fields a resumed run must share with the checkpoint.
_RESUME_KEYS = (
    "width",
    "residual",
    "dpm_film",
    "disk_features",
    "disk_gain",
    "loss",
    "lr_schedule",
    "warmup_steps",
    "lr_final_fraction",
    "select_on",
    "disc_width",
    "batch_size",
    "alpha",
    "fg_weight",
    "lr_g",
    "lr_d",
    "g_updates",
    "d_updates",
    "max_val_pairs",
    "seed",
    "init_from",
    "ema_decay",
    "pcc_weight",
    "l1_weight",
    "lowpass_weight",
    "lowpass_sigma_px",
    "dz_weight",
    "adv_weight",
    "disc_blur_px",
    "disc_conditional",
    "focus_map_weight",
    "focus_map_level",
)

#: Values of resume keys added later, for checkpoints written before them.
_RESUME_DEFAULTS: dict[str, Any] = {
    "fg_weight": 0.0,
    "residual": False,
    "dpm_film": False,
    "disk_features": False,
    "disk_gain": 1.0,
    "loss": "l1",
    "lr_schedule": "constant",
    "warmup_steps": 0,
    "lr_final_fraction": 0.02,
    "select_on": "val_mae",
    "init_from": None,
    "ema_decay": 0.0,
    "pcc_weight": 0.0,
    "l1_weight": 0.0,
    "lowpass_weight": 0.0,
    "lowpass_sigma_px": 3.0,
    "dz_weight": 0.0,
    "adv_weight": None,
    "disc_blur_px": 0.0,
    "disc_conditional": False,
    "focus_map_weight": 0.0,
    "focus_map_level": "last",
}


def _sampling_mismatch(saved: dict[str, Any] | None, now: dict[str, Any] | None) -> str | None:
    """How a checkpoint's sampling differs from this run's (``None`` = the same).

    A field the checkpoint lacks (added after it was written) counts as its default, which
    is what every earlier run used.
    """
    if saved is None or now is None:
        if saved is now:
            return None
        return "pair-table sampling" if saved is None else "focus-centred sampling"
    from .sampling import SamplingConfig

    defaults = asdict(SamplingConfig())
    for key, value in now.items():
        if saved.get(key, defaults[key]) != value:
            return f"sampling {key}={saved.get(key, defaults[key])!r}, this run asks for {value!r}"
    return None


#: Bright target pixels (normalised intensity) for the balanced validation MAE.
FG_THRESHOLD = 0.15
LOSSES = ("l1", "mse")
SCHEDULES = ("constant", "cosine")
SELECT_ON = ("val_mae", "val_balanced_mae", "last")


@dataclass
class TrainConfig:
    """Training hyper-parameters (paper values as defaults)."""

    width: float = 1.0
    """Generator width (1.0 = the paper's 17.45 M-parameter network)."""
    disc_width: float | None = None
    """Discriminator width; None = same as ``width``."""
    steps: int = 0
    """GAN iterations (paper: ~400k; each = 1 batch, ``g_updates`` + ``d_updates`` updates)."""
    pretrain_steps: int = 0
    """L1-only generator steps before the GAN phase (one batch, one update each)."""
    batch_size: int = 20
    """Global batch (split over DDP processes; paper: 20)."""
    alpha: float = 0.02
    """Weight of the MAE term in L_G. 0.02 as printed: there the adversarial term dominates
    the gradient early on; many reimplementations weight the MAE far higher (e.g. 50-100)
    for stability. Keep configurable."""
    fg_weight: float = 0.0
    """Foreground weighting of the generator's MAE term (not in the paper; 0 = the paper's
    plain MAE): each pixel's error is weighted by ``1 + fg_weight * max(target, 0)`` and the
    weighted mean taken. On sparse samples (beads) the plain MAE is dominated by background
    pixels and an L1-only network learns to leave points out; the weighting makes the bright
    target pixels count. Validation always reports the plain MAE."""
    lr_g: float = 1e-4
    """Adam learning rate of the generator (also used for the L1 pre-training)."""
    lr_d: float = 3e-5
    """Adam learning rate of the discriminator."""
    g_updates: int = 6
    """Generator updates per GAN iteration."""
    d_updates: int = 3
    """Discriminator updates per GAN iteration."""
    val_every: int = 50
    """Validate (and checkpoint) every this many steps (pre-training and GAN steps count)."""
    max_val_pairs: int = 256
    """Validation uses at most this many validation pairs (evenly spread, fixed)."""
    seed: int = 0
    """Seeds network initialisation, batch order and augmentation."""
    device: str = "auto"
    """``auto`` (CUDA if present), ``cpu``, ``cuda`` or ``cuda:N``."""
    amp: str = "auto"
    """Mixed precision: ``auto`` (CUDA: bf16/fp16, CPU: off), ``on`` (CPU: bf16), ``off``,
    ``bf16``, ``fp16`` (CUDA only)."""
    deterministic: bool = True
    """Deterministic algorithms (CPU: ``use_deterministic_algorithms``; CUDA: cuDNN's
    deterministic mode instead of its autotuner, slower). The CLI sets it on the CPU only:
    CUDA runs are seeded but not bit-reproducible."""
    progress: bool = True
    """Show a tqdm progress bar (rank 0 only)."""
    recipe: str = "custom"
    """Name of the recipe these settings came from (recorded in the card)."""
    residual: bool = False
    """Global-residual generator (``DeepZConfig.residual``)."""
    dpm_film: bool = False
    """The features of every level below full resolution scaled and shifted by the DPM
    (``DeepZConfig.dpm_film``); with
    ``init_from`` a plain model, the modulation is added as the identity."""
    disk_features: bool = False
    """Fixed defocus-disk filter responses added to level 2 (``DeepZConfig.disk_features``);
    with ``init_from`` a model without them, they are added as the identity."""
    disk_gain: float = 1.0
    """Fixed factor on the disk responses (``DeepZConfig.disk_gain``)."""
    loss: str = "l1"
    """Generator reconstruction loss: ``l1`` (the paper's MAE) or ``mse``."""
    lr_schedule: str = "constant"
    """``constant`` (the paper) or ``cosine`` (warm-up, then cosine to ``lr_final_fraction``)."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up steps (cosine schedule)."""
    lr_final_fraction: float = 0.02
    """The cosine schedule ends at this fraction of the learning rate."""
    time_budget_s: float | None = None
    """Wall-time budget: the schedule anneals by time too and training stops when it ends."""
    channels_last: bool = False
    """NHWC memory order for the generator and its inputs."""
    select_on: str = "val_mae"
    """Checkpoint selection: ``val_mae`` (the paper), ``val_balanced_mae``, or ``last`` (the
    weights at the end of the run: with an annealed schedule the last weights are the
    settled ones, and on noisy targets the validation MAE barely tells checkpoints apart)."""
    sampling: Any = None
    """A :class:`~live_deepz.training.sampling.SamplingConfig`: draw training items with the
    focus sampler instead of the pair table."""
    min_useful_steps: int = 0
    """Runs with fewer steps are marked ``short`` in the card (loading warns)."""
    architecture: str = DEEPZ_UNET
    """The generator's family (``architecture.type``, see ``live_deepz.architectures``)."""
    init_from: str | None = None
    """Start from this model's generator weights (a name or folder; fine-tuning) instead of
    a random initialisation. Its architecture and DPM scale must match this run's."""
    ema_decay: float = 0.0
    """Keep an exponential moving average of the generator's weights with this decay per
    update (e.g. 0.999: about the last 1000 updates) and validate, select and save the
    average instead of the raw weights; 0 = off. The average smooths the step-to-step noise
    of the last weights (torch.optim.swa_utils)."""
    pcc_weight: float = 0.0
    """Add ``pcc_weight * mean(1 - r)`` to the reconstruction loss, ``r`` the Pearson
    correlation of each output patch with its target (not in the paper; 0 = off). The MSE
    weighs a patch by its brightness, so faint far-defocus targets (wide dim rings) count
    little; the correlation term weighs every patch's structure equally."""
    l1_weight: float = 0.0
    """With ``loss="mse"``: add ``l1_weight`` times the mean absolute error (not in the paper;
    0 = off). The MSE's best output is the expected target, so where the network is unsure
    which side of focus an object is on it hedges, drawing a few per cent of a focused spot on
    the wrong side; the absolute error pulls each pixel towards its median instead, which
    leaves out such minority outcomes while a spot that is more likely than not stays."""
    lowpass_weight: float = 0.0
    """With ``loss="mse"``: add ``lowpass_weight`` times the MSE of the error smoothed by a
    Gaussian of ``lowpass_sigma_px`` (not in the paper; 0 = off). Smoothing is linear, so the
    best output is still the expected target; the term weighs the low spatial frequencies more:
    the wide, faint rings of far-defocus planes, which the target's per-pixel camera noise
    otherwise drowns in the gradient."""
    lowpass_sigma_px: float = 3.0
    """σ of the ``lowpass_weight`` term's Gaussian smoothing (px)."""
    dz_weight: float = 0.0
    """Weight each pixel's reconstruction error by ``1 + dz_weight * |DPM| / 10 µm`` (not in
    the paper; 0 = off). The weight depends on the input only, so the best output is still
    the expected target; far refocus distances, whose targets are faint, get more of the
    network's attention."""
    focus_map_weight: float = 0.0
    """Needs ``sampling``: add this times the error of a training-only head that predicts, at
    each object, the DPM that brings it into focus
    (:class:`~live_deepz.training.focus_head.FocusMapHead`): a direct signal for the side of
    focus. 0 = off. The saved model does not contain the head."""
    focus_map_level: str = "last"
    """Where the focus-map head reads the generator (:data:`~live_deepz.training.focus_head.
    LEVELS`): ``last`` (the features entering the output conv) or ``deepest``."""
    adv_weight: float | None = None
    """Generator loss of the GAN phase: None = the paper's ``adversarial + α·loss/2``; a
    number ``W`` = ``loss + W·adversarial`` (the fast recipe's GAN phase: the reconstruction
    term keeps the scale it had before the phase, and ``W`` says how much realism is added)."""
    disc_blur_px: float = 0.0
    """The discriminator sees the output and the target smoothed by a Gaussian of this σ
    (px); 0 = as they are (the paper). With noisy targets (camera noise, Noise2Noise second
    exposures) a discriminator that sees every pixel can tell output from target by the
    noise alone, and then teaches the generator to draw noise."""
    disc_conditional: bool = False
    """The discriminator also sees the generator's input (image and DPM), as pix2pix's does,
    so it can judge whether an output fits the refocus distance asked for; False = it sees
    the output plane alone (the paper)."""

    @property
    def generator_architecture(self) -> dict[str, Any]:
        """The card's ``architecture`` dict of the generator this config trains."""
        arch: dict[str, Any] = {"type": self.architecture, "width": self.width}
        if self.residual:  # absent = a plain head (every model before the option)
            arch["residual"] = True
        if self.dpm_film:
            arch["dpm_film"] = True
        if self.disk_features:
            arch["disk_features"] = True
            arch["disk_gain"] = self.disk_gain
        return arch

    def __post_init__(self) -> None:
        for name in ("steps", "pretrain_steps"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size < 1:
            raise InputError(f"--batch must be >= 1, got {self.batch_size}")
        if self.val_every < 1:
            raise InputError(f"--val-every must be >= 1, got {self.val_every}")
        if self.g_updates < 1 or self.d_updates < 0:
            raise InputError("need >= 1 generator and >= 0 discriminator updates per iteration")
        if not self.width > 0 or (self.disc_width is not None and not self.disc_width > 0):
            raise InputError(f"--width must be > 0, got {self.width}")
        if not self.fg_weight >= 0:
            raise InputError(f"--fg-weight must be >= 0, got {self.fg_weight}")
        if not (math.isfinite(self.disk_gain) and self.disk_gain > 0):
            raise InputError(f"--disk-gain must be > 0, got {self.disk_gain}")
        if self.amp not in ("auto", "on", "off", "bf16", "fp16"):
            raise InputError(f"--amp must be auto, on, off, bf16 or fp16, got {self.amp!r}")
        if self.loss not in LOSSES:
            raise InputError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.lr_schedule not in SCHEDULES:
            raise InputError(
                f"--lr-schedule must be one of {', '.join(SCHEDULES)}, got {self.lr_schedule!r}"
            )
        if self.select_on not in SELECT_ON:
            raise InputError(
                f"--select-on must be one of {', '.join(SELECT_ON)}, got {self.select_on!r}"
            )
        if self.warmup_steps < 0 or not 0 < self.lr_final_fraction <= 1:
            raise InputError("warm-up steps must be >= 0 and the final lr fraction in (0, 1]")
        if not self.pcc_weight >= 0:
            raise InputError(f"--pcc-weight must be >= 0, got {self.pcc_weight}")
        if not self.dz_weight >= 0:
            raise InputError(f"--dz-weight must be >= 0, got {self.dz_weight}")
        if not (math.isfinite(self.l1_weight) and self.l1_weight >= 0):
            raise InputError(f"--l1-weight must be >= 0, got {self.l1_weight}")
        if self.l1_weight and self.loss != "mse":
            raise InputError("--l1-weight adds an absolute-error term to --loss mse only")
        if not (math.isfinite(self.lowpass_weight) and self.lowpass_weight >= 0):
            raise InputError(f"--lowpass-weight must be >= 0, got {self.lowpass_weight}")
        if not (math.isfinite(self.lowpass_sigma_px) and self.lowpass_sigma_px > 0):
            raise InputError(f"--lowpass-sigma must be > 0 px, got {self.lowpass_sigma_px}")
        if self.lowpass_weight and self.loss != "mse":
            raise InputError("--lowpass-weight adds a smoothed-error term to --loss mse only")
        if self.adv_weight is not None and not self.adv_weight > 0:
            raise InputError(f"--adv-weight must be > 0, got {self.adv_weight}")
        if not self.disc_blur_px >= 0:
            raise InputError(f"--disc-blur must be >= 0 px, got {self.disc_blur_px}")
        if not (math.isfinite(self.focus_map_weight) and self.focus_map_weight >= 0):
            raise InputError(f"--focus-map-weight must be >= 0, got {self.focus_map_weight}")
        if self.focus_map_level not in FOCUS_LEVELS:
            raise InputError(
                f"--focus-map-level must be one of {', '.join(FOCUS_LEVELS)}, "
                f"not {self.focus_map_level!r}"
            )
        if self.focus_map_weight and self.sampling is None:
            raise InputError("--focus-map-weight needs the fast recipe's object sampling")
        if self.dz_weight and self.fg_weight:
            raise InputError("--dz-weight and --fg-weight are two error weightings: use one")
        if not 0 <= self.ema_decay < 1:
            raise InputError(f"--ema must be in [0, 1), got {self.ema_decay}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise InputError(f"--time-budget must be > 0 minutes, got {self.time_budget_s}")
        get_architecture(self.architecture)  # ModelFileError naming the known types

    def lr_factor(self, step: int, progress: float) -> float:
        """Learning-rate multiplier at ``step`` (0-based) and schedule ``progress`` in [0, 1]."""
        if self.lr_schedule == "constant":
            return 1.0
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        f = self.lr_final_fraction
        cos = f + (1 - f) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
        return warm * cos


@dataclass
class TrainResult:
    model_path: Path
    best_val_mae: float
    best_step: int
    best_score: float
    """The kept model's value of the selection metric (``TrainConfig.select_on``)."""
    initial_val_mae: float
    steps: int
    wall_s: float
    history: list[dict[str, Any]]
    curve_path: Path | None


@dataclass
class _State:
    pretrain_done: int = 0
    gan_done: int = 0
    batches: int = 0
    best_mae: float = math.inf
    """Best value of the selection metric (``select_on``)."""
    best_step: int = -1
    best_val: dict[str, float] = field(default_factory=dict)
    """All validation figures of the kept model."""
    stopped_by: str = ""
    initial_mae: float | None = None
    wall_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def step(self) -> int:
        return self.pretrain_done + self.gan_done


def update_schedule(g_updates: int, d_updates: int) -> list[str]:
    """Order of updates in one iteration, D's spread evenly: 6/3 → ``DGGDGGDGG``."""
    events = [(k / d_updates, 0, "D") for k in range(d_updates)]
    events += [((k + 0.5) / g_updates, 1, "G") for k in range(g_updates)]
    return [e[2] for e in sorted(events)]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but PyTorch sees no CUDA GPU; use cpu")
    return dev


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mode`` on ``device`` (None = full fp32)."""
    if mode == "off":
        return None
    if device.type == "cuda":
        if mode == "fp16":
            return torch.float16
        if mode == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    if mode == "fp16":
        raise InputError("--amp fp16 needs CUDA; on the CPU use --amp bf16")
    return torch.bfloat16 if mode in ("on", "bf16") else None


# ---------------------------------------------------------------------------------------
# Checkpoint tensors: flat safetensors keys, no pickle


def _flatten_optimizer(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict, list]:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if not isinstance(v, torch.Tensor):
                v = torch.tensor(v)
            tensors[f"{prefix}/{pid}/{k}"] = v.detach().cpu().contiguous()
    return tensors, sd["param_groups"]


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], prefix: str, groups: list) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "/"):
            _, pid, name = key.split("/", 2)
            state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": groups}


def _prefixed_state(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state dict on the CPU, keys prefixed ``prefix/`` (one checkpoint part)."""
    return {f"{prefix}/{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _part_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The checkpoint part ``prefix/`` of ``tensors`` as a state dict (prefix removed)."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}


def load_checkpoint_tensors(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the JSON of ``folder/state.safetensors`` + ``folder/state.json``."""
    from safetensors.torch import load_file

    try:
        meta = json.loads((folder / "state.json").read_text())
        tensors = load_file(folder / "state.safetensors")
    except FileNotFoundError:
        raise InputError(
            f"no training checkpoint in {folder} to resume from; drop --resume to start afresh"
        ) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"the training checkpoint in {folder} is unreadable ({exc})") from None
    return tensors, meta


# ---------------------------------------------------------------------------------------
# The trainer


def _chain_steps(init_from: Any) -> int:
    """Steps recorded in a card's ``training.init_from`` chain (``total_steps`` when there,
    else ``steps``; 0 for none)."""
    if not isinstance(init_from, dict):
        return 0
    for key in ("total_steps", "steps"):
        v = init_from.get(key)
        if isinstance(v, int):
            return v
    return 0


class Trainer:
    """Trains a generator (and discriminator) on :class:`PairData`; writes a model folder.

    ``out`` receives ``model.safetensors`` + ``card.json`` (the best generator),
    ``training_curve.png``, ``training_history.json`` and ``checkpoint/``.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        data: PairData,
        out: str | os.PathLike[str],
        optics: Optics | None = None,
        command: str | None = None,
        description: str = "",
        env: DistEnv | None = None,
        log: Any = None,
    ) -> None:
        self.cfg = cfg
        self.data = data
        self.out = Path(out)
        self.env = env or DistEnv()
        self.command = command
        self.description = description
        px = data.summary.pixel_size_um
        self.optics = optics or (Optics(pixel_size_um=px) if px else Optics())
        if cfg.batch_size % self.env.world_size:
            raise InputError(
                f"--batch {cfg.batch_size} must be a multiple of the {self.env.world_size} "
                "processes"
            )
        if cfg.focus_map_weight and self.env.distributed:  # its gradients are not all-reduced
            raise InputError("--focus-map-weight trains in one process only: run without torchrun")
        if len(data.pairs["train"]) == 0 or len(data.pairs["val"]) == 0:
            raise InputError("the data has no training or no validation pairs")
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda" and self.env.distributed:
            self.device = torch.device("cuda", self.env.local_rank)
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        self.train_ds: PairDataset = data.dataset("train")
        self.val_ds: PairDataset = data.dataset("val", augment=False)
        self._perm_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.generator: nn.Module | None = None
        self.discriminator: Discriminator | None = None
        self.log = log or (lambda msg: None)
        self.sampler: Any = None
        self._init_info: dict[str, Any] | None = None
        if cfg.sampling is not None:
            from .sampling import FocusSampler

            self.sampler = FocusSampler(data, cfg.sampling, seed=cfg.seed)

    # -- data ---------------------------------------------------------------------------

    def _epoch_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if epoch not in self._perm_cache:
            n = len(self.train_ds)
            rng = np.random.default_rng([self.cfg.seed, 101, epoch])
            self._perm_cache = {epoch: (rng.permutation(n), rng.integers(0, 8, n))}
        return self._perm_cache[epoch]

    def global_batch(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair indices and augmentation codes of global batch ``k`` (pure in seed, k)."""
        n, b = len(self.train_ds), self.cfg.batch_size
        idx, aug = np.empty(b, dtype=np.int64), np.empty(b, dtype=np.int64)
        for j, pos in enumerate(range(k * b, (k + 1) * b)):
            perm, augs = self._epoch_order(pos // n)
            idx[j], aug[j] = perm[pos % n], augs[pos % n]
        return idx, aug

    def _batch(
        self, k: int, progress: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Global batch ``k`` (this process's shard) at schedule ``progress``: inputs,
        targets, the items' loss weights (None: every item weighs 1) and, with
        ``focus_map_weight``, their focus maps (else None)."""
        w = maps = None
        if self.sampler is not None:
            keep = shard(np.arange(self.cfg.batch_size), self.env)
            sampling = self.sampler.cfg
            x, z, w_all, maps_all = (
                self.sampler.batch_with_focus_maps(k, self.cfg.batch_size)
                if self.cfg.focus_map_weight
                else (*self.sampler.batch_weighted(k, self.cfg.batch_size), None)
            )
            if sampling.unbiased_targets and progress >= sampling.unbiased_from:
                w = w_all[keep].to(self.device)
            if maps_all is not None:
                maps = maps_all[keep].to(self.device)
            x, z = x[keep], z[keep]
        else:
            idx, aug = self.global_batch(k)
            x, z = self.train_ds.batch(shard(idx, self.env), shard(aug, self.env))
        return self._to_device(x), self._to_device(z), w, maps

    def _val_indices(self) -> np.ndarray:
        n = len(self.val_ds)
        m = min(n, self.cfg.max_val_pairs)
        return np.unique(np.linspace(0, n - 1, m).round().astype(np.int64))

    # -- pieces -------------------------------------------------------------------------

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    @torch.no_grad()
    def validate_all(self, generator: nn.Module) -> dict[str, float]:
        """Validation figures of ``generator`` on the fixed validation subset (all ranks
        share the work): ``val_mae``, ``val_mse``, ``val_fg_mae`` / ``val_bg_mae`` (MAE on
        target pixels ≥ / < ``FG_THRESHOLD``) and ``val_balanced_mae`` (their mean)."""
        idx = shard(self._val_indices(), self.env)
        sums = [0.0] * 5  # |err|, err², count, |err| on fg, fg count
        generator.eval()
        for s in range(0, len(idx), self.cfg.batch_size):
            x, z = self.val_ds.batch(idx[s : s + self.cfg.batch_size])
            x, z = self._to_device(x), z.to(self.device)
            with self._autocast():
                y = generator(x)
            err = y.float() - z
            fg = z >= FG_THRESHOLD
            sums[0] += float(err.abs().sum())
            sums[1] += float((err**2).sum())
            sums[2] += z.numel()
            sums[3] += float(err.abs()[fg].sum())
            sums[4] += float(fg.sum())
        generator.train()
        tot = all_reduce_sum(sums, self.env, self.device)
        n, n_fg = max(tot[2], 1.0), tot[4]
        mae = tot[0] / n
        bg = (tot[0] - tot[3]) / max(n - n_fg, 1.0)
        fg_mae = tot[3] / n_fg if n_fg else bg
        return {
            "val_mae": mae,
            "val_mse": tot[1] / n,
            "val_fg_mae": fg_mae,
            "val_bg_mae": bg,
            "val_balanced_mae": 0.5 * (fg_mae + bg),
        }

    def validate(self, generator: nn.Module) -> float:
        """MAE of ``generator`` on the fixed validation subset (all ranks share the work)."""
        return self.validate_all(generator)["val_mae"]

    def _card(self, state: _State, wall_s: float, complete: bool = False) -> ModelCard:
        summary = self.data.summary
        cfg = self.cfg
        training = {
            "recipe": cfg.recipe,
            "complete": complete,
            "stopped_by": state.stopped_by or ("steps" if complete else "interrupted"),
            "short": state.step + self._init_steps() < cfg.min_useful_steps,
            "min_useful_steps": cfg.min_useful_steps,
            "planned_steps": cfg.pretrain_steps + cfg.steps,
            "time_budget_s": cfg.time_budget_s,
            "loss": cfg.loss,
            "lr_schedule": cfg.lr_schedule,
            "warmup_steps": cfg.warmup_steps,
            "lr_final_fraction": cfg.lr_final_fraction,
            "channels_last": cfg.channels_last,
            "selection_metric": cfg.select_on,
            "validation": dict(state.best_val),
            "sampling": self.sampler.summary() if self.sampler is not None else "pair table",
            "crop": cfg.sampling.crop if cfg.sampling is not None else summary.patch,
            "validation_mae": state.best_val.get("val_mae", state.best_mae),
            "best_step": state.best_step,
            "initial_validation_mae": state.initial_mae,
            "steps": state.step,
            "pretrain_steps": state.pretrain_done,
            "gan_iterations": state.gan_done,
            "batch_size": self.cfg.batch_size,
            "patch": summary.patch,
            "alpha": self.cfg.alpha,
            "fg_weight": self.cfg.fg_weight,
            "lr_g": self.cfg.lr_g,
            "lr_d": self.cfg.lr_d,
            "updates_per_iteration": {"G": self.cfg.g_updates, "D": self.cfg.d_updates},
            "disc_width": self.cfg.disc_width or self.cfg.width,
            "seed": self.cfg.seed,
            "init_from": self._init_info,
            "ema_decay": cfg.ema_decay,
            "pcc_weight": cfg.pcc_weight,
            "l1_weight": cfg.l1_weight,
            "lowpass_weight": cfg.lowpass_weight,
            "lowpass_sigma_px": cfg.lowpass_sigma_px,
            "dz_weight": cfg.dz_weight,
            "focus_map_weight": cfg.focus_map_weight,
            "focus_map_level": cfg.focus_map_level,
            "adv_weight": cfg.adv_weight,
            "disc_blur_px": cfg.disc_blur_px,
            "disc_conditional": cfg.disc_conditional,
            "device": str(self.device),
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
            "world_size": self.env.world_size,
            "wall_time_s": round(wall_s, 1),
            "data": summary.to_dict(),
            "heldout_regions": self.data.test_regions(),
            "command": self.command,
            "torch": torch.__version__,
            "live_deepz": __version__,
        }
        lo, hi = summary.dpm_range_um
        return ModelCard(
            name=self.out.name,
            architecture=self.cfg.generator_architecture,
            optics=self.optics.to_dict(),
            z_range_um=(float(lo), float(hi)),
            dpm_scale_um=self.data.cfg.dpm_scale_um,
            normalization={
                "method": "deepz-triangle",
                "saturate_fraction": 0.01,
                "reference": "extended depth of field of each training stack",
            },
            modality=dict(summary.modality),
            training=training,
            description=self.description
            or f"Deep-Z {summary.modality['input']}→{summary.modality['output']}, trained on "
            f"{summary.n_stacks} stack(s) by live-deepz train",
        )

    def _load_init(self, g: nn.Module) -> None:
        """Copy ``cfg.init_from``'s generator weights into ``g`` (after checking they fit)."""
        init = load_model(resolve_model(self.cfg.init_from))
        want = self.cfg.generator_architecture

        def key(arch: dict[str, Any]) -> tuple[Any, Any, bool]:
            return arch.get("type"), arch.get("width"), bool(arch.get("residual"))

        if key(init.card.architecture) != key(want):
            raise InputError(
                f"--init {self.cfg.init_from}: its architecture {init.card.architecture} "
                f"differs from this run's {want}; pass matching --width/--residual or drop "
                "--init"
            )
        scale = self.data.cfg.dpm_scale_um
        if abs(init.card.dpm_scale_um - scale) > 1e-9:
            raise InputError(
                f"--init {self.cfg.init_from}: its DPM scale {init.card.dpm_scale_um:g} um "
                f"differs from this run's {scale:g} um"
            )
        start, start_arch = init.generator.state_dict(), init.card.architecture
        added = []  # options this run adds to its start, each the identity at first
        for option, flag in (("dpm_film", "--dpm-film"), ("disk_features", "--disk-features")):
            has = bool(start_arch.get(option, False))
            if getattr(self.cfg, option) and not has:
                added.append(f"{option} (identity at start)")
            elif has and not getattr(self.cfg, option):
                raise InputError(f"--init {self.cfg.init_from} was trained with {flag}; add it")
        start_gain = float(start_arch.get("disk_gain", 1.0))
        if (
            start_arch.get("disk_features")
            and self.cfg.disk_features
            and start_gain != self.cfg.disk_gain
        ):
            raise InputError(  # its disk weights were learned for its own gain
                f"--init {self.cfg.init_from} was trained with --disk-gain {start_gain:g}; "
                f"pass --disk-gain {start_gain:g}"
            )
        if added:  # the start's weights over its twin's identity-initialised additions
            start = {**g.state_dict(), **start}
        g.load_state_dict(start)
        parent = init.card.training.get("init_from")
        steps = init.card.training.get("steps")
        self._init_info = {
            "name": init.card.name,
            "path": str(init.path),
            "weights_sha256": init.weights_sha256,
            "steps": steps,
            "command": init.card.training.get("command"),
            # the whole chain of warm restarts: the start's own start, and all their steps
            "init_from": parent,
            **({"added": ", ".join(added)} if added else {}),
            "total_steps": (steps if isinstance(steps, int) else 0) + _chain_steps(parent),
        }

    def _init_steps(self) -> int:
        """Steps the ``--init`` model and the models it started from had trained (0 without)."""
        return _chain_steps(self._init_info)

    def _save_checkpoint(
        self,
        g: nn.Module,
        d: nn.Module,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        scalers: tuple[Any, Any],
        state: _State,
        ema: nn.Module | None = None,
        focus_head: nn.Module | None = None,
    ) -> None:
        from safetensors.torch import save_file

        folder = self.out / CHECKPOINT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        parts = {"G": g, "D": d, "E": ema, "F": focus_head}
        tensors = {}
        for prefix, module in parts.items():
            if module is not None:
                tensors.update(_prefixed_state(prefix, module))
        tg, groups_g = _flatten_optimizer(opt_g, "opt_g")
        td, groups_d = _flatten_optimizer(opt_d, "opt_d")
        tensors.update(tg)
        tensors.update(td)
        tmp = folder / ".state.safetensors.tmp"
        save_file(tensors, str(tmp))
        meta = {
            "state": asdict(state),
            "param_groups": {"opt_g": groups_g, "opt_d": groups_d},
            "scalers": [s.state_dict() if s.is_enabled() else None for s in scalers],
            "config": asdict(self.cfg),
            "data_fingerprint": self.data.fingerprint(),
        }
        tmp_json = folder / ".state.json.tmp"
        tmp_json.write_text(json.dumps(meta, indent=1, default=_json_default))
        os.replace(tmp, folder / "state.safetensors")
        os.replace(tmp_json, folder / "state.json")

    def _load_checkpoint(
        self,
        g: nn.Module,
        d: nn.Module,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        scalers: tuple[Any, Any],
        ema: nn.Module | None = None,
        focus_head: nn.Module | None = None,
    ) -> _State:
        tensors, meta = load_checkpoint_tensors(self.out / CHECKPOINT_DIR)
        saved = meta.get("config", {})
        now = asdict(self.cfg)
        for key in _RESUME_KEYS:
            if saved.get(key, _RESUME_DEFAULTS.get(key)) != now[key]:
                raise InputError(
                    f"cannot resume: the checkpoint in {self.out} was trained with {key}="
                    f"{saved.get(key)!r}, this run asks for {now[key]!r}; pass the same value "
                    "or train into a new folder"
                )
        mismatch = _sampling_mismatch(saved.get("sampling"), now["sampling"])
        if mismatch is not None:
            raise InputError(
                f"cannot resume: the checkpoint in {self.out} was trained with {mismatch}; "
                "pass the same sampling options or train into a new folder"
            )
        if meta.get("data_fingerprint") != self.data.fingerprint():
            raise InputError(
                f"cannot resume: the training data differ from those of the checkpoint in "
                f"{self.out} (other stacks, patch, z range or seed); train into a new folder"
            )
        for prefix, module in {"G": g, "D": d, "E": ema, "F": focus_head}.items():
            if module is not None:
                module.load_state_dict(_part_state(tensors, prefix))
        groups = meta["param_groups"]
        opt_g.load_state_dict(_unflatten_optimizer(tensors, "opt_g", groups["opt_g"]))
        opt_d.load_state_dict(_unflatten_optimizer(tensors, "opt_d", groups["opt_d"]))
        for s, sd in zip(scalers, meta.get("scalers", [None, None]), strict=False):
            if sd is not None and s.is_enabled():
                s.load_state_dict(sd)
        st = meta["state"]
        st["best_mae"] = float(st["best_mae"])
        return _State(**st)

    def _write_outputs(self, state: _State) -> Path | None:
        (self.out / HISTORY_FILE).write_text(
            json.dumps(state.history, indent=1, default=_json_default)
        )
        try:
            return plot_history(
                state.history, self.out / CURVE_FILE, self.cfg.pretrain_steps, self.cfg.loss
            )
        except Exception:  # a plot must never lose a trained model
            return None

    # -- the loop -----------------------------------------------------------------------

    def fit(self, resume: bool = False) -> TrainResult:
        """Train; returns where the best model went and how it did."""
        cfg, dev = self.cfg, self.device
        was_det = torch.are_deterministic_algorithms_enabled()
        was_bench = torch.backends.cudnn.benchmark
        if dev.type == "cpu":
            if cfg.deterministic:
                torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch.backends.cudnn.benchmark = not cfg.deterministic
            torch.backends.cudnn.deterministic = cfg.deterministic
        try:
            return self._fit(resume)
        finally:
            torch.use_deterministic_algorithms(was_det, warn_only=True)
            torch.backends.cudnn.benchmark = was_bench

    def _fit(self, resume: bool) -> TrainResult:
        cfg, env, dev = self.cfg, self.env, self.device
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed)
        g = build_network(cfg.generator_architecture).to(dev)
        if cfg.channels_last:
            g = g.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        d_in = 1 + (g_in_channels(g) if cfg.disc_conditional else 0)
        d_cfg = DiscriminatorConfig(width=cfg.disc_width or cfg.width, in_channels=d_in)
        d = Discriminator(d_cfg).to(dev)
        self.generator, self.discriminator = g, d  # the latest (not the best) networks
        opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr_g)
        opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d)
        fp16 = self.amp_dtype == torch.float16
        scalers = (
            torch.amp.GradScaler(dev.type, enabled=fp16),
            torch.amp.GradScaler(dev.type, enabled=fp16),
        )
        state = _State()
        best_weights: dict[str, torch.Tensor] | None = None
        if cfg.init_from is not None:
            self._load_init(g)
        ema = moving_average(g, cfg.ema_decay) if cfg.ema_decay else None
        kept = ema.module if ema is not None else g  # what is validated, selected and saved
        focus_head = None
        if cfg.focus_map_weight:  # after the EMA's copy, which must not hold the hook
            focus_head = FocusMapHead(g, cfg.focus_map_level).to(dev)
            opt_g.add_param_group({"params": list(focus_head.parameters())})
        if resume:
            state = self._load_checkpoint(g, d, opt_g, opt_d, scalers, ema, focus_head)
            if env.is_main and state.best_step >= 0:
                best_weights = load_model(self.out).generator.state_dict()
        g_par, d_par = wrap_ddp(g, env, dev), wrap_ddp(d, env, dev)
        total = cfg.pretrain_steps + cfg.steps
        start_wall = state.wall_s

        def wall() -> float:
            return start_wall + time.perf_counter() - t0

        def keep_if_best(val: dict[str, float]) -> None:
            nonlocal best_weights
            last = cfg.select_on == "last"
            score = val["val_balanced_mae" if last else cfg.select_on]
            if last or score < state.best_mae:
                state.best_mae, state.best_step, state.best_val = score, state.step, dict(val)
                if env.is_main:
                    best_weights = {
                        k: v.detach().cpu().clone() for k, v in kept.state_dict().items()
                    }
                    save_model(self.out, kept, self._card(state, wall()))

        if state.initial_mae is None:
            val0 = self.validate_all(kept)
            state.initial_mae = val0["val_mae"]
            keep_if_best(val0)
            state.history.append({"step": 0, "phase": "init", **val0, "wall_s": wall()})

        bar = _progress(total, state.step, enabled=cfg.progress and env.is_main)
        acc: dict[str, float] = {}
        schedule = update_schedule(cfg.g_updates, cfg.d_updates)
        budget = cfg.time_budget_s
        probe = {"step": state.step, "t": time.perf_counter(), "done": False}
        gan_cost = cfg.g_updates + cfg.d_updates

        def progress_fraction() -> float:
            frac = state.step / max(total, 1)
            return max(frac, wall() / budget) if budget else frac

        def set_lr() -> None:
            for group in opt_g.param_groups:
                group["lr"] = cfg.lr_g * cfg.lr_factor(state.step, progress_fraction())

        def out_of_time() -> bool:
            if budget is not None and wall() >= budget:
                state.stopped_by = "time_budget"
                return True
            return False

        def estimate() -> None:
            """After a few timed steps: say how long the whole run will take."""
            n = state.step - probe["step"]
            if probe["done"] or n < 5:
                return
            probe["done"] = True
            per = (time.perf_counter() - probe["t"]) / n
            left_pre = cfg.pretrain_steps - state.pretrain_done
            left_gan = cfg.steps - state.gan_done
            in_gan = state.pretrain_done >= cfg.pretrain_steps
            # a GAN step costs ~9 generator-sized updates; timed in whichever phase runs now
            g_step_s = per / gan_cost if in_gan else per
            est = left_pre * g_step_s + left_gan * g_step_s * gan_cost
            msg = (
                f"timing: {per:.2f} s/step over {n} steps; the remaining {left_pre + left_gan} "
                f"steps take about {est / 60:.1f} min"
            )
            if budget is not None:
                msg += f" (time budget {budget / 60:.1f} min: it stops at whichever ends first)"
            self.log(msg)

        def after_step(losses: dict[str, float], phase: str) -> None:
            for k, v in losses.items():
                acc[k] = acc.get(k, 0.0) + v
            acc["n"] = acc.get("n", 0.0) + 1
            bar.update(1)
            if state.step % cfg.val_every and state.step != total:
                bar.set_postfix(_fmt(losses, state), refresh=False)
                return
            checkpoint(losses, phase)

        def checkpoint(losses: dict[str, float], phase: str) -> None:
            val = self.validate_all(kept)
            mae = val["val_mae"]
            keep_if_best(val)
            n = max(acc.pop("n", 1.0), 1.0)
            row = {"step": state.step, "phase": phase, **val, "wall_s": wall()}
            row["lr_g"] = opt_g.param_groups[0]["lr"]
            row.update({k: v / n for k, v in acc.items()})
            acc.clear()
            state.history.append(row)
            state.wall_s = wall()
            if env.is_main:
                self._save_checkpoint(g, d, opt_g, opt_d, scalers, state, ema, focus_head)
            bar.set_postfix(_fmt(losses, state, mae), refresh=True)

        dpm_scale_um = self.data.cfg.dpm_scale_um
        smooth = gaussian_smoother(cfg.disc_blur_px).to(dev)
        lowpass = gaussian_smoother(cfg.lowpass_sigma_px).to(dev) if cfg.lowpass_weight else None

        def disc_view(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            """What the discriminator sees of an output (or target) ``out`` for input ``x``."""
            seen = smooth(out)
            if not cfg.disc_conditional:
                return seen
            image, dpm = x[:, :1].to(seen.dtype), x[:, 1:].to(seen.dtype)
            return torch.cat([seen, smooth(image), dpm], dim=1)

        def g_step(
            x: torch.Tensor,
            z: torch.Tensor,
            adversarial: bool,
            w: torch.Tensor | None = None,
            maps: torch.Tensor | None = None,
        ) -> dict[str, float]:
            out: dict[str, float] = {}
            if adversarial:
                d.requires_grad_(False)  # D only passes gradients back to G here
            with self._autocast():
                fake = g_par(x)
                d_fake = d(disc_view(fake, x)) if adversarial else None
                focus_pred = focus_head() if focus_head is not None else None
            loss, logs = reconstruction_loss(fake, z, x, cfg, dpm_scale_um, lowpass, w)
            out.update(logs)
            if focus_pred is not None and maps is not None:
                focus_loss, focus_logs = focus_map_loss(focus_pred, maps)
                loss = loss + cfg.focus_map_weight * focus_loss
                out.update(focus_logs)
            if d_fake is not None:
                adv = 0.5 * ((d_fake.float() - 1) ** 2).mean()
                if cfg.adv_weight is None:  # the paper's L_G
                    loss = adv + cfg.alpha * 0.5 * loss
                else:
                    loss = loss + cfg.adv_weight * adv
                out["loss_g_adv"] = float(adv.detach())
            opt_g.zero_grad(set_to_none=True)
            scalers[0].scale(loss).backward()
            scalers[0].step(opt_g)
            scalers[0].update()
            if ema is not None:
                ema.update_parameters(g)
            if adversarial:
                d.requires_grad_(True)
            return out

        def d_step(x: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
            with torch.no_grad(), self._autocast():
                fake = g(x)
            with self._autocast():
                seen = disc_view(torch.cat([fake, z.to(fake.dtype)]), torch.cat([x, x]))
                scores = d_par(seen).float()  # (2N, 1)
            n = x.shape[0]
            loss = 0.5 * (scores[:n] ** 2).mean() + 0.5 * ((scores[n:] - 1) ** 2).mean()
            opt_d.zero_grad(set_to_none=True)
            scalers[1].scale(loss).backward()
            scalers[1].step(opt_d)
            scalers[1].update()
            return {"loss_d": float(loss.detach())}

        finished = False
        try:
            while state.pretrain_done < cfg.pretrain_steps and not out_of_time():
                set_lr()
                x, z, w, maps = self._batch(state.batches, progress_fraction())
                state.batches += 1
                losses = g_step(x, z, adversarial=False, w=w, maps=maps)
                state.pretrain_done += 1
                after_step(losses, "pretrain")
                estimate()
            while state.gan_done < cfg.steps and not out_of_time():
                set_lr()
                x, z, w, maps = self._batch(state.batches, progress_fraction())
                state.batches += 1
                sums: dict[str, list[float]] = {}
                for kind in schedule:
                    res = g_step(x, z, True, w, maps) if kind == "G" else d_step(x, z)
                    for k, v in res.items():
                        sums.setdefault(k, []).append(v)
                state.gan_done += 1
                after_step({k: float(np.mean(v)) for k, v in sums.items()}, "gan")
                estimate()
            if state.stopped_by == "time_budget" and state.step % cfg.val_every:
                # the last steps since a validation: validate them too
                checkpoint({}, "pretrain" if state.gan_done == 0 else "gan")
            state.stopped_by = state.stopped_by or "steps"
            finished = True
        finally:
            bar.close()

        state.wall_s = wall()
        curve = None
        if env.is_main:
            if best_weights is not None:  # rewrite the kept model's card with the final totals
                final = build_network(cfg.generator_architecture)
                final.load_state_dict(best_weights)
                save_model(self.out, final, self._card(state, state.wall_s, complete=finished))
                if state.step < cfg.min_useful_steps:
                    self.log(
                        f"warning: only {state.step} steps, fewer than the "
                        f"{cfg.min_useful_steps} this recipe needs to be useful; the model is "
                        "marked short in its card and loading it warns"
                    )
            if not (self.out / CHECKPOINT_DIR / "state.json").exists():  # no step was run
                self._save_checkpoint(g, d, opt_g, opt_d, scalers, state, ema, focus_head)
            curve = self._write_outputs(state)
        return TrainResult(
            model_path=self.out,
            best_val_mae=state.best_val.get("val_mae", state.best_mae),
            best_score=state.best_mae,
            best_step=state.best_step,
            initial_val_mae=float(state.initial_mae),
            steps=state.step,
            wall_s=state.wall_s,
            history=state.history,
            curve_path=curve,
        )


def moving_average(g: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of ``g``'s weights and buffers (starts as a copy)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(g, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def g_in_channels(g: nn.Module) -> int:
    """Input channels of a generator (image + DPM = 2 for Deep-Z)."""
    first = next(m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))
    return int(first.in_channels)


def gaussian_smoother(sigma_px: float) -> nn.Module:
    """A fixed (untrained) Gaussian blur of σ ``sigma_px`` for (N, 1, H, W) images, reflect
    padded; ``nn.Identity`` for σ = 0."""
    if sigma_px <= 0:
        return nn.Identity()
    r = max(1, math.ceil(3 * sigma_px))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k1 = torch.exp(-0.5 * (x / sigma_px) ** 2)
    k1 = k1 / k1.sum()
    conv = nn.Conv2d(1, 1, 2 * r + 1, padding=r, padding_mode="reflect", bias=False)
    conv.weight.data.copy_((k1[:, None] * k1[None, :])[None, None])
    conv.requires_grad_(False)
    return conv


def patch_correlation(
    pred: torch.Tensor, target: torch.Tensor, floor_var: float = 1e-4
) -> torch.Tensor:
    """Pearson correlation of each item of ``pred`` with ``target`` over its pixels, (N,).

    ``floor_var`` (per pixel, normalised intensity) is added to the output's variance so that
    a nearly flat output patch (background) gets a bounded gradient rather than one that
    grows as 1/its standard deviation; a flat target gives 0."""
    p = pred.flatten(1)
    t = target.flatten(1)
    p = p - p.mean(dim=1, keepdim=True)
    t = t - t.mean(dim=1, keepdim=True)
    n = p.shape[1]
    den = torch.sqrt(((p * p).sum(dim=1) + n * floor_var) * (t * t).sum(dim=1)).clamp(min=1e-12)
    return (p * t).sum(dim=1) / den


def reconstruction_loss(
    fake: torch.Tensor,
    z: torch.Tensor,
    x: torch.Tensor,
    cfg: TrainConfig,
    dpm_scale_um: float,
    lowpass: nn.Module | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The generator's reconstruction loss of outputs ``fake`` against targets ``z`` for
    inputs ``x`` (image, DPM / ``dpm_scale_um``), as ``cfg`` asks (``loss``, ``l1_weight``,
    ``lowpass_weight``, ``dz_weight``, ``fg_weight``, ``pcc_weight``), and the figures logged
    per step (unweighted). ``lowpass``: the smoother of the ``lowpass_weight`` term (default
    ``gaussian_smoother(cfg.lowpass_sigma_px)``). ``weights``: ``(N,)`` per-item factors of
    every term (importance weights of the sampling; the mean stays unnormalised, so its
    expectation is the loss under the distribution the weights stand for)."""
    diff = fake.float() - z
    err = diff.abs()
    logs = {"train_mae": float(err.mean().detach())}
    item_w = None if weights is None else weights.float().reshape(-1, 1, 1, 1)

    def weighted(e: torch.Tensor) -> torch.Tensor:
        return e if item_w is None else e * item_w

    def mean(e: torch.Tensor) -> torch.Tensor:
        e = weighted(e)
        return dz_weighted_mean(e, x, dpm_scale_um, cfg.dz_weight) if cfg.dz_weight else e.mean()

    if cfg.loss == "mse":
        sq = diff**2
        logs["train_mse"] = float(sq.mean().detach())
        loss = mean(sq)
        if cfg.l1_weight:
            loss = loss + cfg.l1_weight * mean(err)
        if cfg.lowpass_weight:
            smooth = lowpass if lowpass is not None else gaussian_smoother(cfg.lowpass_sigma_px)
            low = smooth.to(diff.device)(diff) ** 2
            logs["train_lowpass_mse"] = float(low.mean().detach())
            loss = loss + cfg.lowpass_weight * mean(low)
    elif cfg.fg_weight:
        loss = weighted_mae(weighted(err), z, cfg.fg_weight)
    else:
        loss = mean(err)
    if cfg.pcc_weight:
        r = patch_correlation(fake.float(), z)
        miss = 1.0 - r if item_w is None else (1.0 - r) * item_w.flatten()
        loss = loss + cfg.pcc_weight * miss.mean()
        logs["train_pcc"] = float(r.mean().detach())
    return loss, logs


def dz_weighted_mean(
    err: torch.Tensor, x: torch.Tensor, dpm_scale_um: float, dz_weight: float
) -> torch.Tensor:
    """Mean of ``err`` (N, 1, H, W) weighted per pixel by ``1 + dz_weight * |DPM| / 10 µm``,
    the DPM read from the input's channel 1 (``DPM / dpm_scale_um``)."""
    dz_um = x[:, 1:2].float().abs() * dpm_scale_um
    w = (1.0 + dz_weight * dz_um / 10.0).expand_as(err)
    return (w * err).sum() / w.sum()


def weighted_mae(err: torch.Tensor, target: torch.Tensor, fg_weight: float) -> torch.Tensor:
    """Mean of ``err`` weighted by ``1 + fg_weight * max(target, 0)`` per pixel."""
    w = 1.0 + fg_weight * target.clamp(min=0)
    return (w * err).sum() / w.sum()


def train(
    data: PairData,
    cfg: TrainConfig,
    out: str | os.PathLike[str],
    optics: Optics | None = None,
    command: str | None = None,
    resume: bool = False,
    env: DistEnv | None = None,
) -> TrainResult:
    """Shorthand for ``Trainer(cfg, data, out, optics, command, env=env).fit(resume)``."""
    return Trainer(cfg, data, out, optics=optics, command=command, env=env).fit(resume)


# ---------------------------------------------------------------------------------------
# Progress and the curve


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)


def _fmt(losses: dict[str, float], state: _State, val: float | None = None) -> dict[str, str]:
    out = {k.replace("loss_", "L").replace("train_", ""): f"{v:.4f}" for k, v in losses.items()}
    if val is not None:
        out["val"] = f"{val:.4f}"
    if math.isfinite(state.best_mae):
        out["best"] = f"{state.best_mae:.4f}"
    return out


def plot_history(
    history: list[dict[str, Any]], path: Path, pretrain_steps: int = 0, loss: str = "l1"
) -> Path:
    """Training/validation MAE and GAN losses against the step, as a PNG (matplotlib Agg);
    ``loss`` names the reconstruction loss that was optimised (the title says it)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    gan = any("loss_d" in h for h in history)
    fig = Figure(figsize=(9, 3.6) if gan else (5.5, 3.6), dpi=100)
    axes = list(fig.subplots(1, 2)) if gan else [fig.subplots(1, 1)]
    ax1 = axes[0]
    steps = [h["step"] for h in history]

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(h["step"], h[key]) for h in history if key in h]
        return [p[0] for p in pts], [p[1] for p in pts]

    for key, label in (("train_mae", "training MAE"), ("val_mae", "validation MAE")):
        xs, ys = series(key)
        if xs:
            ax1.plot(xs, ys, marker="." if len(xs) < 50 else None, label=label)
    ax1.set_xlabel("step")
    ax1.set_ylabel("MAE (normalised intensity)")
    ax1.set_yscale("log")
    if gan:
        ax2 = axes[1]
        for key, label in (("loss_g_adv", "L_G adversarial"), ("loss_d", "L_D")):
            xs, ys = series(key)
            if xs:
                ax2.plot(xs, ys, label=label)
        ax2.set_xlabel("step")
        ax2.set_title("GAN losses")
    else:
        ax1.set_title(f"{loss.upper()} training (no GAN phase), MAE monitored")
    for ax in axes:
        if 0 < pretrain_steps < (max(steps) if steps else 0):
            ax.axvline(pretrain_steps, color="grey", lw=0.8, ls="--")
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, float) and not math.isfinite(o):
        return None
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
