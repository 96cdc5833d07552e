"""Where user models live: ``$LIVE_DEEPZ_MODELS``, else a default home.

``live-deepz models`` lists the model folders found in the folder(s) named by
``$LIVE_DEEPZ_MODELS`` (``os.pathsep``-separated) or, when it is not set, in the default home
``$XDG_DATA_HOME/live-deepz/models`` (``~/.local/share/live-deepz/models``).
``live-deepz train -o NAME`` (a bare name, no folder) writes the model there, so a model
just trained is listed and found by name (``--model NAME``). No torch here.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MODELS_ENV", "default_models_home", "model_output_folder", "user_model_roots"]

MODELS_ENV = "LIVE_DEEPZ_MODELS"


def default_models_home() -> Path:
    """``$XDG_DATA_HOME/live-deepz/models``, or ``~/.local/share/live-deepz/models``."""
    base = os.environ.get("XDG_DATA_HOME", "").strip()
    root = Path(base).expanduser() if base else Path.home() / ".local" / "share"
    return root / "live-deepz" / "models"


def user_model_roots() -> list[Path]:
    """The folders searched for user models: ``$LIVE_DEEPZ_MODELS``'s, else the default home."""
    env = os.environ.get(MODELS_ENV)
    if env is not None and env.strip():
        return [Path(e).expanduser() for e in env.split(os.pathsep) if e.strip()]
    return [default_models_home()]


def model_output_folder(output: str | os.PathLike[str]) -> Path:
    """Where ``train -o OUTPUT`` writes: a bare name (no folder part) goes into the first
    user-model folder (:func:`user_model_roots`); anything with a folder part stays as given."""
    text = os.fspath(output)
    p = Path(text).expanduser()
    bare = p.name == text and text not in (".", "..") and not p.is_absolute()
    return user_model_roots()[0] / text if bare else p
