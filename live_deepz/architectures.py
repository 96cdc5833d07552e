"""Model families, keyed by the model card's ``architecture.type``.

A family says how to build a network from a card's ``architecture`` dict, how many spatial
dimensions it refocuses (2: one image in, one plane out per DPM; 3: a stack), how to check
the dict, and how to describe a built network back as a dict (for ``ModelCard``).
``modelfile`` and the trainer look families up here instead of naming a network class.

Adding a family is one new module plus one line in :data:`BUILTIN_FAMILIES`::

    # live_deepz/mynet.py
    def register() -> None:
        register_architecture("mynet", build_mynet, dims=3, description="...")

    BUILTIN_FAMILIES["mynet"] = "live_deepz.mynet:register"

Built-in families are registered lazily (on the first lookup), so importing this module
builds nothing. Third-party code may call :func:`register_architecture` directly.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import ModelFileError

__all__ = [
    "BUILTIN_FAMILIES",
    "DEEPZ_UNET",
    "ArchitectureFamily",
    "architecture_of",
    "architecture_types",
    "build_network",
    "expected_shapes",
    "get_architecture",
    "register_architecture",
    "unwrap_module",
]

DEEPZ_UNET = "deepz-unet"

#: type name -> ``"module:function"`` that registers it (called on first lookup).
BUILTIN_FAMILIES: dict[str, str] = {
    DEEPZ_UNET: "live_deepz.architectures:_register_deepz_unet",
    "wfcon3d": "live_deepz.wfcon3d:register",
}

Build = Callable[[dict[str, Any]], nn.Module]
Validate = Callable[[dict[str, Any]], "tuple[str, str] | None"]
Describe = Callable[[nn.Module], "dict[str, Any] | None"]


@dataclass(frozen=True)
class ArchitectureFamily:
    """How to build, check and describe the networks of one ``architecture.type``."""

    type_name: str
    build: Build
    """``build(arch) -> nn.Module`` (fp32, CPU or the ambient ``torch.device`` context)."""
    dims: int
    """2: ``(N, C, H, W)`` image → plane per DPM; 3: a ``(Z, Y, X)`` stack model."""
    description: str
    validate: Validate | None = None
    """``validate(arch) -> None | (key, problem)``, e.g. ``("width", "is missing")``."""
    describe: Describe | None = None
    """``describe(module) -> arch dict``, or None when the module is not of this family."""


_REGISTRY: dict[str, ArchitectureFamily] = {}


def register_architecture(
    type_name: str,
    build: Build,
    *,
    dims: int,
    description: str,
    validate: Validate | None = None,
    describe: Describe | None = None,
) -> ArchitectureFamily:
    """Register (or replace) the family of ``architecture.type == type_name``."""
    if not type_name or not isinstance(type_name, str):
        raise ValueError(f"architecture type must be a non-empty string, got {type_name!r}")
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims!r}")
    family = ArchitectureFamily(type_name, build, dims, description, validate, describe)
    _REGISTRY[type_name] = family
    return family


def _load_builtin(type_name: str) -> None:
    target = BUILTIN_FAMILIES.get(type_name)
    if target is None or type_name in _REGISTRY:
        return
    module_name, _, func = target.partition(":")
    getattr(importlib.import_module(module_name), func)()


def architecture_types() -> list[str]:
    """Every known ``architecture.type`` (built-in and registered), sorted."""
    for name in list(BUILTIN_FAMILIES):
        _load_builtin(name)
    return sorted(_REGISTRY)


def get_architecture(type_name: str) -> ArchitectureFamily:
    """The family of ``type_name``; ModelFileError naming the known types otherwise."""
    _load_builtin(type_name)
    family = _REGISTRY.get(type_name)
    if family is None:
        known = ", ".join(repr(t) for t in architecture_types())
        raise ModelFileError(
            f"unknown model architecture type {type_name!r}; this live-deepz runs {known} "
            "models. Use a model of a known type, or a live-deepz version that knows this one."
        )
    return family


def build_network(arch: dict[str, Any]) -> nn.Module:
    """A freshly initialised network for a card's ``architecture`` dict."""
    return get_architecture(str(arch.get("type"))).build(arch)


def unwrap_module(module: nn.Module) -> nn.Module:
    """The network inside a ``torch.compile`` wrapper (or the module itself)."""
    inner = getattr(module, "_orig_mod", module)
    return inner if isinstance(inner, nn.Module) else module


def architecture_of(module: nn.Module) -> dict[str, Any]:
    """The ``architecture`` dict of a built network; TypeError if no family knows it."""
    inner = unwrap_module(module)
    for name in architecture_types():
        describe = _REGISTRY[name].describe
        arch = describe(inner) if describe is not None else None
        if arch is not None:
            return arch
    raise TypeError(
        f"{type(inner).__name__} is not a network of a registered architecture "
        f"({', '.join(architecture_types())})"
    )


def expected_shapes(arch: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape of the state dict a network of ``arch`` has (built on 'meta')."""
    family = get_architecture(str(arch.get("type")))
    with torch.device("meta"):
        net = family.build(arch)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


# ---------------------------------------------------------------------------------------
# Built-in families


def _register_deepz_unet() -> None:
    from .network import DeepZConfig, DeepZGenerator

    def is_number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and v == v

    def build(arch: dict[str, Any]) -> nn.Module:
        return DeepZGenerator(DeepZConfig.from_architecture(arch))

    def validate(arch: dict[str, Any]) -> tuple[str, str] | None:
        if "width" not in arch:
            return "width", "is missing"
        w = arch["width"]
        if not is_number(w) or not float("-inf") < w < float("inf") or w <= 0:
            return "width", f"must be a positive number, got {w!r}"
        for key in ("in_channels", "out_channels"):
            v = arch.get(key, 1)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                return key, f"must be a positive integer, got {arch[key]!r}"
        for key in ("residual", "dpm_film", "disk_features"):
            if key in arch and not isinstance(arch[key], bool):
                return key, f"must be true or false, got {arch[key]!r}"
        g = arch.get("disk_gain", 1.0)
        if not is_number(g) or not float("-inf") < g < float("inf") or g <= 0:
            return "disk_gain", f"must be a positive number, got {g!r}"
        return None

    def describe(module: nn.Module) -> dict[str, Any] | None:
        if not isinstance(module, DeepZGenerator):
            return None
        cfg = module.config
        arch: dict[str, Any] = {"type": DEEPZ_UNET, "width": cfg.width}
        if cfg.in_channels != 2:
            arch["in_channels"] = cfg.in_channels
        if cfg.out_channels != 1:
            arch["out_channels"] = cfg.out_channels
        if cfg.residual:  # absent = False: older model files keep their exact card
            arch["residual"] = True
        if cfg.dpm_film:
            arch["dpm_film"] = True
        if cfg.disk_features:
            arch["disk_features"] = True
            arch["disk_gain"] = cfg.disk_gain
        return arch

    register_architecture(
        DEEPZ_UNET,
        build,
        dims=2,
        description="Deep-Z residual U-Net (Wu et al. 2019): [image, DPM] → refocused plane",
        validate=validate,
        describe=describe,
    )
