"""The simulated samples' names: one spelling (dashes), underscores accepted everywhere.

``simulate --sample``, ``demo --sample`` and ``record --sim --sim-sample`` take the same
names; :func:`canonical_sample` turns ``beads_tilted`` / ``Beads-Tilted`` into
``beads-tilted`` (and ``beads-flat``/``beads_flat`` into ``beads``). :data:`GENERATOR_OF`
names each one's generator function in :mod:`live_deepz.sim.samples`. No heavy imports.
"""

from __future__ import annotations

import argparse

__all__ = [
    "GENERATOR_OF",
    "SAMPLE_NAMES",
    "canonical_sample",
    "sample_argument",
    "samples_help",
]

GENERATOR_OF: dict[str, str] = {
    "beads": "beads_flat",
    "beads-tilted": "beads_tilted",
    "beads-cylinder": "beads_cylinder",
    "beads-volume": "beads_volume",
    "worm": "worm",
    "filaments": "filaments",
}
"""Sample name -> generator function in ``live_deepz.sim.samples``."""
SAMPLE_NAMES: tuple[str, ...] = tuple(GENERATOR_OF)
"""The simulated microscope's samples, in the spelling every command prints."""
_ALIASES = {"beads-flat": "beads"}


def canonical_sample(name: str) -> str:
    """``name`` in the one spelling: lower case, dashes (``beads_tilted`` -> ``beads-tilted``)."""
    key = str(name).strip().lower().replace("_", "-")
    return _ALIASES.get(key, key)


def samples_help(names: tuple[str, ...] = SAMPLE_NAMES) -> str:
    """``beads, beads-tilted, ... (underscores work too)``."""
    return ", ".join(names) + " (beads_tilted etc. work too)"


def sample_argument(names: tuple[str, ...] = SAMPLE_NAMES) -> object:
    """An argparse ``type=`` that accepts either spelling and refuses unknown names."""

    def parse(text: str) -> str:
        name = canonical_sample(text)
        if name not in names:
            raise argparse.ArgumentTypeError(
                f"unknown sample {text!r}; choose from {samples_help(names)}"
            )
        return name

    parse.__name__ = "sample"
    return parse
