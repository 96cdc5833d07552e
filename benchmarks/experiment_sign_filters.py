"""Experiment (issue 14, session 14): matched defocus-*sign* filters in place of the disk bank.

``train --disk-features`` feeds level 2 with fixed, radially symmetric centre-surround filters
(:class:`live_deepz.network.DefocusDiskBank`). This probe swaps them, for one process, for
``PSF(+d) − PSF(−d)`` at d = 3 … 10 µm: the difference between a bead d µm above and below focus
(2×2 averaged, 47×47 px at half resolution, zero mean, unit norm), averaged over single beads at
random sub-pixel positions in the eval's optics. Models trained this way only load correctly
through this script (the package's loader builds the disk bank), so they are experiments, not
products.

Usage::

    python benchmarks/experiment_sign_filters.py make runs/signbank.npy
    python benchmarks/experiment_sign_filters.py run runs/signbank.npy train ... \\
        --disk-features --disk-gain 32 -o runs/SB
    python benchmarks/experiment_sign_filters.py run runs/signbank.npy eval --model runs/SB ...
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HALF_PX = 46  # full-resolution half side of the bead crops (47 px at half resolution)
DEFOCUS_UM = np.arange(3.0, 10.5, 1.0)
N_BEADS = 24


def make_bank(path: Path) -> np.ndarray:
    """Compute the filters (K, 47, 47) and save them as ``path`` (.npy)."""
    import torch
    import torch.nn.functional as F

    from live_deepz.modelfile import load_model, resolve_model
    from live_deepz.sim import CameraModel, Renderer, samples

    optics = load_model(resolve_model("deepz-sim20x-default")).card.optics_obj
    h, n_d = HALF_PX, len(DEFOCUS_UM)
    acc = np.zeros((2, n_d, 2 * h + 2, 2 * h + 2))
    cam = CameraModel()
    for k in range(N_BEADS):
        s = samples.beads_flat(500 + k, size_um=6.0, n=1, brightness_cv=0.0)
        ren = Renderer(optics, (128, 128))
        centre = np.asarray((s.objects or {})["centres_zyx_um"], dtype=np.float64).reshape(-1, 3)
        f = float(ren.object_focus_um(centre, s.ref_depth_um + centre[:, 0], s)[0])
        rc = ren.pixel_of(centre[:, 1], centre[:, 2])
        r0, c0 = int(np.round(rc[0][0])), int(np.round(rc[1][0]))
        r0, c0 = r0 - r0 % 2, c0 - c0 % 2  # even origin: 2×2 pooling keeps the bead centred
        rates = ren.render_stack(s, np.concatenate([f + DEFOCUS_UM, f - DEFOCUS_UM]), 0, 0.0)
        for j, rate in enumerate(rates):
            img = cam.mean_adu(rate, 20.0)
            img = img - np.median(img[:4, :4])
            acc[j // n_d, j % n_d] += img[r0 - h : r0 + h + 2, c0 - h : c0 + h + 2]
    t = torch.tensor(acc / N_BEADS, dtype=torch.float32).reshape(-1, 1, 2 * h + 2, 2 * h + 2)
    small = F.avg_pool2d(t, 2).reshape(2, n_d, h + 1, h + 1).numpy()
    bank = small[0] - small[1]
    bank -= bank.mean(axis=(1, 2), keepdims=True)
    bank /= np.sqrt((bank**2).sum(axis=(1, 2), keepdims=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, bank.astype(np.float32))
    return bank


def run_with_bank(path: Path, cli_args: list[str]) -> int:
    """Run ``live-deepz CLI_ARGS`` with the disk bank replaced by the filters in ``path``."""
    import torch

    import live_deepz.network as network
    from live_deepz.cli import main

    bank = torch.from_numpy(np.load(path))[:, None]

    class SignFilterBank(network.DefocusDiskBank):
        RADII_HALF_PX = tuple(float(k) for k in range(bank.shape[0]))  # type: ignore[assignment]
        PAD_PX = (bank.shape[-1] - 1) // 2

        def __init__(self) -> None:
            torch.nn.Module.__init__(self)
            self.register_buffer("bank", bank.clone(), persistent=False)

    network.DefocusDiskBank = SignFilterBank  # type: ignore[misc]
    return int(main(cli_args) or 0)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "make":
        make_bank(Path(args[1]))
    elif len(args) > 2 and args[0] == "run":
        raise SystemExit(run_with_bank(Path(args[1]), args[2:]))
    else:
        raise SystemExit(__doc__)
