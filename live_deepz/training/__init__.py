"""Training Deep-Z / Deep-Z+ on measured z-stacks.

* :mod:`.pairs` — z-stacks → aligned, normalised, cached fields → regions → pairs;
* :mod:`.crossmodal` — Deep-Z+ (wide-field inputs, confocal labels): registration, axial zero;
* :mod:`.sampling` — foreground-centred, focus-targeted training crops (the ``fast`` recipe);
* :mod:`.recipes` — the named recipes ``paper`` and ``fast`` and their defaults;
* :mod:`.trainer` — the LS-GAN trainer (L1 pre-training, best-validation checkpoint, resume);
* :mod:`.ddp` — DistributedDataParallel helpers for ``torchrun``.
"""

from .crossmodal import CrossModalConfig, build_crossmodal_pairs
from .ddp import DistEnv, init_distributed
from .pairs import (
    DatasetSummary,
    FieldStack,
    PairConfig,
    PairData,
    PairDataset,
    build_pairs,
    load_stacks,
)
from .recipes import RECIPES, Recipe, default_recipe, recipe
from .sampling import FocusSampler, SamplingConfig
from .trainer import TrainConfig, Trainer, TrainResult, train

__all__ = [
    "RECIPES",
    "CrossModalConfig",
    "DatasetSummary",
    "DistEnv",
    "FieldStack",
    "FocusSampler",
    "PairConfig",
    "PairData",
    "PairDataset",
    "Recipe",
    "SamplingConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_crossmodal_pairs",
    "build_pairs",
    "default_recipe",
    "init_distributed",
    "load_stacks",
    "recipe",
    "train",
]
