"""Training Deep-Z / Deep-Z+ on measured z-stacks.

* :mod:`.pairs` — z-stacks → aligned, normalised, cached fields → regions → pairs;
* :mod:`.crossmodal` — Deep-Z+ (wide-field inputs, confocal labels): registration, axial zero;
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
from .trainer import TrainConfig, Trainer, TrainResult, train

__all__ = [
    "CrossModalConfig",
    "DatasetSummary",
    "DistEnv",
    "FieldStack",
    "PairConfig",
    "PairData",
    "PairDataset",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_crossmodal_pairs",
    "build_pairs",
    "init_distributed",
    "load_stacks",
    "train",
]
