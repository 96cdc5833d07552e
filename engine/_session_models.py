"""Which model a live session runs and whether it fits the microscope (no Qt).

The app and ``live-deepz record`` pick a model the same way: the one asked for, else the
remembered one, the bundled default, any installed one, and finally (demo only) an
untrained stand-in; :func:`optics_mismatch` names what differs between a model card and the
microscope in plain words.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from pathlib import Path
from typing import Any

from live_deepz.optics import Optics

__all__ = [
    "NA_TOLERANCE",
    "PIXEL_TOLERANCE",
    "STANDIN_NAME",
    "optics_mismatch",
    "pick_model",
    "scope_na",
    "standin_model",
]

logger = logging.getLogger("live_deepz.engine")

STANDIN_NAME = "untrained-stand-in"
PIXEL_TOLERANCE = 0.05
"""Relative pixel-size difference (5 %) above which the model is flagged as mismatched."""
NA_TOLERANCE = 0.05
"""Absolute NA difference above which the model is flagged as mismatched."""


def standin_model(seed: int = 0) -> Any:
    """A small *untrained* generator with a card for the simulator's optics (demo only)."""
    import torch

    from live_deepz.modelfile import LoadedModel, ModelCard
    from live_deepz.network import DeepZConfig, DeepZGenerator

    torch.manual_seed(seed)
    gen = DeepZGenerator(DeepZConfig(width=0.125)).eval()
    card = ModelCard.for_generator(
        STANDIN_NAME,
        gen,
        Optics(),
        (-10.0, 10.0),
        description="randomly initialised network, NOT trained: its planes are not refocused",
    )
    return LoadedModel(card=card, generator=gen, weights_sha256="", path=Path(""))


def pick_model(
    spec: str | None, remembered: str = "", allow_standin: bool = True
) -> tuple[Any, bool]:
    """``(LoadedModel, is_standin)`` for ``spec`` or, without one, the best model available.

    Order without ``spec``: the remembered model (if it still loads), the bundled default,
    the first installed model, and finally the untrained stand-in (if allowed).
    """
    from live_deepz.errors import ModelFileError
    from live_deepz.modelfile import available_models, load_model, resolve_model

    if spec:
        return load_model(resolve_model(spec)), False
    candidates: list[Any] = []
    if remembered:
        candidates.append(remembered)
    candidates.append(None)  # the bundled default
    candidates.extend(available_models())
    for cand in candidates:
        try:
            return load_model(resolve_model(cand)), False
        except ModelFileError as exc:
            logger.info("model %s not usable: %s", cand or "default", exc)
    if not allow_standin:
        raise ModelFileError(
            "no trained model is installed: pass --model with a model folder (written by "
            "`live-deepz train`) or put model folders in a folder named by $LIVE_DEEPZ_MODELS"
        )
    return standin_model(), True


def optics_mismatch(card: Any, pixel_size_um: float | None, na: float | None) -> list[str]:
    """Plain-words problems between a model card and the microscope (empty: they agree)."""
    problems = []
    px_card = float(card.optics.get("pixel_size_um", math.nan))
    if pixel_size_um is None or not pixel_size_um > 0:
        problems.append(
            "the microscope reports no pixel size, so the model's pixel size "
            f"({px_card:.3g} µm) cannot be checked; calibrate the pixel size in Micro-Manager"
        )
    elif abs(pixel_size_um - px_card) > PIXEL_TOLERANCE * px_card:
        problems.append(
            f"the model was trained for a pixel size of {px_card:.3g} µm but the microscope's "
            f"is {pixel_size_um:.3g} µm"
        )
    na_card = float(card.optics.get("na", math.nan))
    if na is not None and math.isfinite(na) and abs(na - na_card) > NA_TOLERANCE:
        problems.append(
            f"the model was trained for an objective NA of {na_card:.3g} but the microscope's "
            f"objective has NA {na:.3g}"
        )
    return problems


_NA_RE = re.compile(r"(?:NA\s*=?\s*|/\s*)(\d?\.\d+)", re.IGNORECASE)


def scope_na(core: Any, is_sim: bool) -> float | None:
    """The objective NA: the simulator's, or read from an objective's label ("20x/0.75")."""
    if is_sim:
        return float(Optics().na)
    with contextlib.suppress(Exception):
        from pymmcore_plus import DeviceType

        for dev in core.getLoadedDevicesOfType(DeviceType.StateDevice):
            if "obj" not in dev.lower() and "nosepiece" not in dev.lower():
                continue
            m = _NA_RE.search(str(core.getStateLabel(dev)))
            if m:
                return float(m.group(1))
    return None


def model_notices(standin: bool, problems: list[str]) -> tuple[str, str]:
    """``(model, mismatch)`` texts for the app's message bar ("" clears one): an untrained
    stand-in is an error, a model that does not fit the optics a warning."""
    model = (
        "No trained model installed — showing an UNTRAINED network. The planes below are NOT "
        "refocused images. Open a model folder in the Model panel (written by "
        "`live-deepz train`)."
        if standin
        else ""
    )
    mismatch = (
        f"Model mismatch: {'; '.join(problems)}. The refocused planes will be wrong: choose a "
        "model trained for this objective and camera."
        if problems and not standin
        else ""
    )
    return model, mismatch


def pixel_size_of(core: Any) -> float | None:
    """The core's pixel size (µm), None when there is no core or it is not calibrated."""
    if core is None:
        return None
    try:
        px = float(core.getPixelSizeUm())
    except Exception:
        return None
    return px if px > 0 else None
