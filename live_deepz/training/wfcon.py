"""Training WFCON-Net (3D): wide-field z-stacks → registered confocal z-stacks.

A thin 3D task beside the Deep-Z :class:`~live_deepz.training.trainer.Trainer`: it shares
the trainer's machinery (device and autocast resolution, safetensors checkpoints with
flattened optimiser states, the progress bar, the training-curve plot, ``save_model`` +
card) and brings only what differs in 3D: stack pairs, random 3D patches, the paper's loss.

Data (paper Methods)
    Each confocal stack is registered to its wide-field stack with the PSF-based method
    (:mod:`live_deepz.analysis.registration`; ``xcorr`` or ``none`` on request), shifted
    onto it and cropped to the voxels both cover. Both stacks are normalised to [0, 1]
    (:func:`live_deepz.stack3d.unit_normalize`). Training patches (paper 12×256×256; on a
    CPU e.g. 12×64×64) are drawn at random, flipped along z, y, x and rotated by k·90° in
    the y–x plane. With two or more stack pairs the last one is the validation pair; with
    one, its right quarter (x) is held out.

Losses (paper Eq. 1)::

    L_G = (D(G(x)) − 1)² + λ·L1(G(x), y) + ζ·L_VGG(G(x), y)        λ = 2, ζ = 0.01
    L_D = (D(y) − 1)² + D(G(x))²                                   (LS-GAN)

``L_VGG``: the MSE between VGG-19 features (up to relu5_4, or the deepest layer the file
holds) of every z-plane, with weights read ONLY from a user-given safetensors file
(torchvision key names ``features.N.weight``); without one the perceptual term is left out
and the card says so. Nothing is downloaded.

CPU recipe (the Deep-Z training issue's lessons): an L1-only phase with linear warm-up +
cosine learning rate comes first (``pretrain_steps``); the GAN phase (``gan_steps``, one D
and one G update per step) follows only when asked. The kept model is the generator with
the lowest validation L1 (the baseline before training included). Autocast is off by
default on the CPU: bf16 Conv3d was measured 47× SLOWER than fp32 on this machine
(a 2×1×12×64×64 forward at width 0.25: 26.5 s vs 0.57 s).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._version import __version__
from ..errors import InputError
from ..modelfile import ModelCard, save_model
from ..optics import Optics
from ..stack3d import NORMALIZATION, unit_normalize
from ..wfcon3d import (
    WFConConfig,
    WFConDiscriminator,
    WFConDiscriminatorConfig,
    WFConGenerator,
)
from .trainer import (
    _flatten_optimizer,
    _part_state,
    _prefixed_state,
    _progress,
    _unflatten_optimizer,
    load_checkpoint_tensors,
    plot_history,
    resolve_amp,
    resolve_device,
)

__all__ = ["StackPair", "WFConTrainConfig", "load_stack_pairs", "train_wfcon"]

CHECKPOINT_DIR = "checkpoint"
HISTORY_FILE = "training_history.json"
CURVE_FILE = "training_curve.png"
REGISTRATIONS = ("psf", "xcorr", "none")


@dataclass(frozen=True)
class WFConTrainConfig:
    width: float = 0.125
    z_pools: int = 2
    global_residual: bool = True
    patch: tuple[int, int, int] = (12, 64, 64)
    batch: int = 2
    pretrain_steps: int = 300
    gan_steps: int = 0
    lr_g: float = 1e-3
    lr_d: float = 1e-4
    warmup_fraction: float = 0.05
    lr_final_fraction: float = 0.05
    l1_weight: float = 2.0
    vgg_weight: float = 0.01
    d_width: float = 0.0625
    val_every: int = 50
    val_patches: int = 8
    seed: int = 0
    amp: str = "off"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if len(self.patch) != 3 or min(self.patch) < 2:
            raise InputError(f"--patch-z / --patch must give a 3D patch >= 2, got {self.patch}")
        if self.batch < 1 or self.val_every < 1:
            raise InputError("--batch and --val-every must be >= 1")
        if self.pretrain_steps < 0 or self.gan_steps < 0 or self.steps < 1:
            raise InputError("the number of training steps must be >= 1")

    @property
    def steps(self) -> int:
        return self.pretrain_steps + self.gan_steps

    def lr_factor(self, step: int) -> float:
        """Linear warm-up, then cosine to ``lr_final_fraction`` (over all steps)."""
        warm = max(1, int(self.warmup_fraction * self.steps))
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, self.steps - warm)
        f = self.lr_final_fraction
        return f + (1 - f) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


@dataclass
class StackPair:
    """A registered, normalised wide-field / confocal pair (same shape)."""

    name: str
    widefield: np.ndarray
    confocal: np.ndarray
    shift_zyx: tuple[float, float, float]
    registration: str


@dataclass
class _State:
    step: int = 0
    best_val: float = math.inf
    best_step: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0


def _crop_valid(shift: tuple[float, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    sl = []
    for s, n in zip(shift, shape, strict=True):
        m = math.ceil(abs(s))
        sl.append(slice(m, n) if s > 0 else slice(0, n - m) if s < 0 else slice(0, n))
    return tuple(sl)


def load_stack_pairs(
    data: list[str], labels: list[str], registration: str = "psf", verbose: bool = True
) -> tuple[list[StackPair], float, float | None]:
    """Read, register and normalise the pairs; returns them, the z step and the pixel size."""
    from ..analysis.registration import apply_shift, register
    from ..io import read_stack

    if registration not in REGISTRATIONS:
        raise InputError(f"--registration must be one of {REGISTRATIONS}, got {registration!r}")
    if len(data) != len(labels):
        raise InputError(
            f"{len(data)} --data stack(s) but {len(labels)} --labels stack(s): give one "
            "confocal stack per wide-field stack, in the same order"
        )
    pairs: list[StackPair] = []
    z_step, px = 0.5, None
    for wf_path, cf_path in zip(data, labels, strict=True):
        wf = _read(wf_path)
        cf = read_stack(cf_path, z_step_um=wf.z_step_um)
        if wf.data.ndim != 3 or cf.data.ndim != 3:
            raise InputError(f"{wf_path} / {cf_path}: single-channel (Z, Y, X) stacks needed")
        if wf.data.shape != cf.data.shape:
            raise InputError(
                f"{wf_path} {wf.data.shape} and {cf_path} {cf.data.shape} differ in shape; "
                "the pair must share one voxel grid"
            )
        z_step, px = wf.z_step_um, wf.pixel_size_um
        shift: tuple[float, float, float] = (0.0, 0.0, 0.0)
        if registration != "none":
            res = register(wf.data, cf.data, registration)
            shift = res.shift_zyx
        w = unit_normalize(wf.data)
        c = unit_normalize(cf.data)
        if any(shift):
            c = apply_shift(c, shift)
            sl = _crop_valid(shift, c.shape)
            w, c = w[sl], c[sl]
        if verbose:
            print(
                f"  {Path(wf_path).name} + {Path(cf_path).name}: {registration} shift "
                f"[{shift[0]:.2f}, {shift[1]:.2f}, {shift[2]:.2f}] (planes, px, px), "
                f"{w.shape} after cropping"
            )
        pairs.append(StackPair(Path(wf_path).name, w, c, shift, registration))
    return pairs, float(z_step), px


def _read(path: str) -> Any:
    """A stack; files without a z step are taken at the paper's 0.5 µm (said on stdout)."""
    from ..io import read_stack

    try:
        return read_stack(path)
    except InputError as exc:
        if "z step" not in str(exc).lower() and "z_step" not in str(exc).lower():
            raise
    print(f"  {path}: no z step in the file; taking 0.5 µm (the paper's)")
    return read_stack(path, z_step_um=0.5)


def _split(
    pairs: list[StackPair],
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[np.ndarray, np.ndarray]]]:
    if len(pairs) >= 2:
        train = [(p.widefield, p.confocal) for p in pairs[:-1]]
        return train, [(pairs[-1].widefield, pairs[-1].confocal)]
    p = pairs[0]
    cut = p.widefield.shape[2] * 3 // 4
    return (
        [(p.widefield[..., :cut], p.confocal[..., :cut])],
        [(p.widefield[..., cut:], p.confocal[..., cut:])],
    )


def _patch_fits(pairs: list[tuple[np.ndarray, np.ndarray]], patch: tuple[int, ...]) -> None:
    for w, _ in pairs:
        if any(n < p for n, p in zip(w.shape, patch, strict=True)):
            raise InputError(
                f"a stack region of shape {w.shape} is smaller than the patch {list(patch)}; "
                "use a smaller --patch / --patch-z or larger stacks"
            )


def _draw(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    patch: tuple[int, int, int],
    rng: np.random.Generator,
    augment: bool,
) -> tuple[np.ndarray, np.ndarray]:
    w, c = pairs[int(rng.integers(len(pairs)))]
    o = [int(rng.integers(0, n - p + 1)) for n, p in zip(w.shape, patch, strict=True)]
    sl = tuple(slice(a, a + p) for a, p in zip(o, patch, strict=True))
    x, y = w[sl], c[sl]
    if augment:
        for ax in range(3):
            if rng.random() < 0.5:
                x, y = np.flip(x, ax), np.flip(y, ax)
        k = int(rng.integers(4)) if patch[1] == patch[2] else 2 * int(rng.integers(2))
        x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k, axes=(1, 2))
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def _batch(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    cfg: WFConTrainConfig,
    seed: tuple[int, ...],
    n: int,
    augment: bool,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(np.random.SeedSequence(list(seed)))
    xs, ys = zip(*(_draw(pairs, cfg.patch, rng, augment) for _ in range(n)), strict=True)
    x = torch.from_numpy(np.stack(xs)[:, None]).to(device)
    y = torch.from_numpy(np.stack(ys)[:, None]).to(device)
    return x, y


# ---------------------------------------------------------------------------------------
# The perceptual loss (VGG-19 features from a user-given safetensors file)

_VGG19: tuple[int | str, ...] = (
    *(64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"),
    *(512, 512, 512, 512, "M", 512, 512, 512, 512),
)


class VGGFeatures(nn.Module):
    """VGG-19 ``features`` (torchvision layout) up to the deepest conv+ReLU in ``tensors``."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, idx = 3, 0
        for v in _VGG19:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                idx += 1
                continue
            if f"features.{idx}.weight" not in tensors:
                break
            conv = nn.Conv2d(c_in, int(v), 3, padding=1)
            layers += [conv, nn.ReLU(inplace=False)]
            c_in, idx = int(v), idx + 2
        while layers and isinstance(layers[-1], nn.MaxPool2d):
            layers.pop()
        if not layers:
            raise InputError(
                "the --vgg-weights file holds no VGG-19 'features.0.weight'; give a safetensors "
                "file of torchvision's vgg19().state_dict()"
            )
        self.features = nn.Sequential(*layers)
        sd = {k[len("features.") :]: v for k, v in tensors.items() if k.startswith("features.")}
        try:
            self.features.load_state_dict(
                {
                    k: v
                    for k, v in sd.items()
                    if k.split(".")[0].isdigit() and int(k.split(".")[0]) < len(layers)
                }
            )
        except RuntimeError as exc:
            raise InputError(f"the --vgg-weights tensors do not fit VGG-19 ({exc})") from None
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, stack: torch.Tensor) -> torch.Tensor:
        """``(N, 1, Z, Y, X)`` → features of every z-plane as an RGB image."""
        n, _, z, h, w = stack.shape
        planes = stack.permute(0, 2, 1, 3, 4).reshape(n * z, 1, h, w).expand(-1, 3, -1, -1)
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        return self.features((planes - mean) / std)


def load_vgg(path: str | os.PathLike[str]) -> VGGFeatures:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise InputError(f"--vgg-weights {p}: no such file")
    try:
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"--vgg-weights {p} is not a readable safetensors file ({exc})") from None
    return VGGFeatures(tensors).eval()


# ---------------------------------------------------------------------------------------
# The loop


def _validate(g: nn.Module, val: list[tuple[torch.Tensor, torch.Tensor]], autocast: Any) -> float:
    g.eval()
    errs = []
    with torch.no_grad(), autocast():
        for x, y in val:
            errs.append(float(F.l1_loss(g(x).float(), y)))
    g.train()
    return float(np.mean(errs))


def train_wfcon(
    pairs: list[StackPair],
    out: str | os.PathLike[str],
    cfg: WFConTrainConfig,
    *,
    z_step_um: float = 0.5,
    pixel_size_um: float | None = None,
    vgg_weights: str | None = None,
    resume: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Train and write ``out/model.safetensors`` + ``card.json`` (+ curve, checkpoint)."""
    out = Path(out)
    device = resolve_device(cfg.device)
    amp = resolve_amp(cfg.amp, device)
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp is not None else nullcontext
    train_pairs, val_pairs = _split(pairs)
    _patch_fits(train_pairs + val_pairs, cfg.patch)
    torch.manual_seed(cfg.seed)
    g = WFConGenerator(
        WFConConfig(width=cfg.width, z_pools=cfg.z_pools, global_residual=cfg.global_residual)
    ).to(device)
    d = WFConDiscriminator(WFConDiscriminatorConfig(width=cfg.d_width)).to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr_g)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d)
    vgg = load_vgg(vgg_weights).to(device) if vgg_weights else None
    val = [
        _batch(val_pairs, cfg, (cfg.seed, 99, i), 1, False, device) for i in range(cfg.val_patches)
    ]
    state = _State()
    ckpt = out / CHECKPOINT_DIR
    if resume:
        state = _load_checkpoint(ckpt, cfg, g, d, opt_g, opt_d)
    elif (ckpt / "state.json").exists():
        raise InputError(
            f"{out} already holds a training checkpoint: pass --resume to continue it, "
            "--overwrite to start afresh, or another -o folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    if state.step == 0:
        v0 = _validate(g, val, autocast)
        state.best_val, state.best_step = v0, 0
        state.history.append({"step": 0, "val_mae": v0})
        _save(out, g, cfg, state, z_step_um, pixel_size_um, vgg_weights, pairs, command)
    bar = _progress(cfg.steps, state.step, progress)
    t_start = time.perf_counter() - state.wall_s
    g.train()
    d.train()
    try:
        while state.step < cfg.steps:
            k = state.step
            for opt, base in ((opt_g, cfg.lr_g), (opt_d, cfg.lr_d)):
                for grp in opt.param_groups:
                    grp["lr"] = base * cfg.lr_factor(k)
            x, y = _batch(train_pairs, cfg, (cfg.seed, 1, k), cfg.batch, True, device)
            rec: dict[str, Any] = {"step": k + 1}
            if k < cfg.pretrain_steps:
                with autocast():
                    pred = g(x)
                loss = F.l1_loss(pred.float(), y)
                opt_g.zero_grad(set_to_none=True)
                loss.backward()
                opt_g.step()
                rec["train_mae"] = float(loss.detach())
            else:
                rec.update(_gan_step(g, d, opt_g, opt_d, x, y, cfg, vgg, autocast))
            state.step = k + 1
            if k == 0 or k == 2:
                dt = time.perf_counter() - t_start - state.wall_s
                if progress and k == 2:
                    eta = dt / 3 * (cfg.steps - state.step)
                    print(f"  ~{eta / 60:.1f} min for the remaining {cfg.steps - state.step} steps")
            if state.step % cfg.val_every == 0 or state.step == cfg.steps:
                rec["val_mae"] = _validate(g, val, autocast)
                if rec["val_mae"] < state.best_val:
                    state.best_val, state.best_step = rec["val_mae"], state.step
                    state.wall_s = time.perf_counter() - t_start
                    _save(out, g, cfg, state, z_step_um, pixel_size_um, vgg_weights, pairs, command)
                state.wall_s = time.perf_counter() - t_start
                _save_checkpoint(ckpt, cfg, g, d, opt_g, opt_d, state)
            state.history.append(rec)
            bar.update(1)
            bar.set_postfix(
                {
                    "L1": f"{rec.get('train_mae', rec.get('l1', 0)):.4f}",
                    "best": f"{state.best_val:.4f}",
                }
            )
    finally:
        bar.close()
    state.wall_s = time.perf_counter() - t_start
    (out / HISTORY_FILE).write_text(json.dumps(state.history, indent=1))
    with contextlib.suppress(Exception):  # a plot must never lose a trained model
        plot_history(state.history, out / CURVE_FILE, cfg.pretrain_steps)
    _save_card_only(out, cfg, state, z_step_um, pixel_size_um, vgg_weights, pairs, command)
    return {
        "model": str(out),
        "best_val_l1": state.best_val,
        "best_step": state.best_step,
        "steps": state.step,
        "wall_s": state.wall_s,
    }


def _gan_step(
    g: nn.Module,
    d: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: WFConTrainConfig,
    vgg: VGGFeatures | None,
    autocast: Any,
) -> dict[str, float]:
    with autocast():
        fake = g(x)
    # discriminator: L_D = (D(y) - 1)² + D(G(x))²
    with autocast():
        l_d = ((d(y).float() - 1) ** 2).mean() + (d(fake.detach()).float() ** 2).mean()
    opt_d.zero_grad(set_to_none=True)
    l_d.backward()
    opt_d.step()
    # generator: (D(G(x)) - 1)² + λ L1 + ζ L_VGG
    with autocast():
        adv = ((d(fake).float() - 1) ** 2).mean()
    l1 = F.l1_loss(fake.float(), y)
    loss = adv + cfg.l1_weight * l1
    rec = {
        "loss_d": float(l_d.detach()),
        "loss_g_adv": float(adv.detach()),
        "train_mae": float(l1.detach()),
    }
    if vgg is not None:
        lv = F.mse_loss(vgg(fake.float()), vgg(y))
        loss = loss + cfg.vgg_weight * lv
        rec["loss_vgg"] = float(lv.detach())
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    return rec


def _card(
    out: Path,
    g: nn.Module | None,
    cfg: WFConTrainConfig,
    state: _State,
    z_step_um: float,
    pixel_size_um: float | None,
    vgg_weights: str | None,
    pairs: list[StackPair],
    command: str,
) -> ModelCard:
    from ..sim.thick import THICK_OPTICS

    optics: Optics = THICK_OPTICS
    if pixel_size_um:
        optics = replace(THICK_OPTICS, pixel_size_um=float(pixel_size_um))
    perceptual = (
        f"VGG-19 features from {Path(vgg_weights).name}, zeta={cfg.vgg_weight}"
        if vgg_weights
        else "none: no --vgg-weights file given, trained without the perceptual term"
    )
    if cfg.gan_steps == 0:
        perceptual = "none: no GAN phase (L1 only)" + (
            "" if vgg_weights else "; no --vgg-weights file given"
        )
    arch = WFConConfig(cfg.width, cfg.z_pools, cfg.global_residual).to_arch()
    return ModelCard(
        name=out.name,
        architecture=arch,
        optics=optics.to_dict(),
        z_range_um=(0.0, float(cfg.patch[0] * z_step_um)),
        normalization=dict(NORMALIZATION),
        modality={"input": "widefield", "output": "confocal"},
        training={
            "validation_mae": state.best_val,
            "best_step": state.best_step,
            "steps": state.step,
            "wall_s": round(state.wall_s, 1),
            "config": asdict(cfg),
            "loss": "L1 pre-training (warm-up + cosine lr), then "
            f"(D(G(x))-1)^2 + {cfg.l1_weight}*L1 + zeta*L_VGG for {cfg.gan_steps} GAN steps",
            "perceptual_loss": perceptual,
            "recipe": "wfcon3d: L1 warm-up + cosine" + (" then GAN" if cfg.gan_steps else ""),
            "data": [
                {
                    "pair": p.name,
                    "registration": p.registration,
                    "shift_zyx": [round(v, 3) for v in p.shift_zyx],
                    "shape": list(p.widefield.shape),
                }
                for p in pairs
            ],
            "command": command,
            "live_deepz": __version__,
        },
        description="WFCON-Net: wide-field z-stack -> confocal-like z-stack (Deep-3D paper)",
        extra={"z_step_um": float(z_step_um), "patch_zyx": list(cfg.patch)},
    )


def _save(out: Path, g: nn.Module, cfg: WFConTrainConfig, state: _State, *a: Any) -> None:
    save_model(out, g, _card(out, g, cfg, state, *a))


def _save_card_only(out: Path, cfg: WFConTrainConfig, state: _State, *a: Any) -> None:
    """Rewrite card.json with the final run totals (the weights stay the best ones)."""
    card = _card(out, None, cfg, state, *a)
    best = json.loads((out / "card.json").read_text())
    best["training"].update(
        {"steps": state.step, "wall_s": round(state.wall_s, 1), "validation_mae": state.best_val}
    )
    best["training"]["perceptual_loss"] = card.training["perceptual_loss"]
    tmp = out / ".card.json.tmp"
    tmp.write_text(json.dumps(best, indent=1))
    os.replace(tmp, out / "card.json")


def _save_checkpoint(
    folder: Path,
    cfg: WFConTrainConfig,
    g: nn.Module,
    d: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    state: _State,
) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {**_prefixed_state("G", g), **_prefixed_state("D", d)}
    tg, groups_g = _flatten_optimizer(opt_g, "opt_g")
    td, groups_d = _flatten_optimizer(opt_d, "opt_d")
    tensors.update(tg)
    tensors.update(td)
    tmp = folder / ".state.safetensors.tmp"
    save_file(tensors, str(tmp))
    meta = {
        "state": asdict(state),
        "param_groups": {"opt_g": groups_g, "opt_d": groups_d},
        "config": asdict(cfg),
    }
    tmp_json = folder / ".state.json.tmp"
    tmp_json.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / "state.safetensors")
    os.replace(tmp_json, folder / "state.json")


def _load_checkpoint(
    folder: Path,
    cfg: WFConTrainConfig,
    g: nn.Module,
    d: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
) -> _State:
    tensors, meta = load_checkpoint_tensors(folder)
    saved = meta.get("config", {})
    for key in ("width", "z_pools", "global_residual", "patch", "d_width"):
        now = asdict(cfg)[key]
        was = saved.get(key)
        if (list(was) if isinstance(was, list | tuple) else was) != (
            list(now) if isinstance(now, tuple) else now
        ):
            raise InputError(
                f"cannot resume: the checkpoint in {folder.parent} was trained with {key}={was!r}, "
                f"this run asks for {now!r}; pass the same value or train into a new folder"
            )
    g.load_state_dict(_part_state(tensors, "G"))
    d.load_state_dict(_part_state(tensors, "D"))
    groups = meta["param_groups"]
    opt_g.load_state_dict(_unflatten_optimizer(tensors, "opt_g", groups["opt_g"]))
    opt_d.load_state_dict(_unflatten_optimizer(tensors, "opt_d", groups["opt_d"]))
    return _State(**meta["state"])
