"""Model files: a folder ``NAME/`` holding ``model.safetensors`` and ``card.json``.

``model.safetensors`` holds the generator's fp32 weights (never pickle: nothing is executed
on load) and, in its metadata, ``format = "live-deepz"``, ``format_version`` and the
``architecture`` so a foreign safetensors file is recognised. ``card.json`` (a
:class:`ModelCard`) says what the weights mean: optics, trained axial range, DPM scale,
normalisation, modality and how the model was trained.

Models are found by name in the user folder(s) named by ``$LIVE_DEEPZ_MODELS``
(``os.pathsep``-separated; searched first) and in the package's ``live_deepz/models/``.
Every problem a user can fix raises :class:`~live_deepz.errors.ModelFileError` with a
message naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .architectures import (
    DEEPZ_UNET,
    architecture_of,
    expected_shapes,
    get_architecture,
    unwrap_module,
)
from .errors import LiveDeepzError, ModelFileError
from .model_home import MODELS_ENV
from .optics import Optics

if TYPE_CHECKING:
    from .network import DeepZConfig

__all__ = [
    "ARCHITECTURE_TYPE",
    "CARD_FILE",
    "DEFAULT_MODEL_NAME",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MODELS_ENV",
    "WEIGHTS_FILE",
    "LoadedModel",
    "ModelCard",
    "UnfinishedModelWarning",
    "available_models",
    "bundled_models",
    "bundled_models_dir",
    "default_model_path",
    "load_card",
    "load_model",
    "model_summary",
    "resolve_model",
    "save_model",
    "training_warning",
    "user_models",
    "weights_sha256",
]

FORMAT_NAME = "live-deepz"
FORMAT_VERSION = 1
ARCHITECTURE_TYPE = DEEPZ_UNET
"""The default family (the Deep-Z U-Net); any type in ``architectures`` loads."""
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
DEFAULT_MODEL_NAME = "deepz-sim20x-default"
MODALITIES = ("widefield", "confocal")
OPTICS_KEYS = ("na", "wavelength_um", "pixel_size_um", "immersion_ri", "sample_ri")

_HOW_TO_PASS = (
    "pass --model with a model name listed by `live-deepz models` or the path of a model "
    f"folder holding {WEIGHTS_FILE} and {CARD_FILE}"
)


# ---------------------------------------------------------------------------------------
# The card


def _default_normalization() -> dict[str, Any]:
    return {"method": "deepz-triangle", "saturate_fraction": 0.01}


def _default_modality() -> dict[str, str]:
    return {"input": "widefield", "output": "widefield"}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


@dataclass
class ModelCard:
    """What a model's weights mean; stored as ``card.json`` next to ``model.safetensors``.

    ``training`` is free-form but these keys are understood by ``live-deepz models``:
    ``validation_mae`` (best validation MAE, the kept checkpoint), ``steps``, ``data``
    (a summary of the training data), ``command`` (how it was trained).
    """

    name: str
    architecture: dict[str, Any]
    """``{"type": <a registered family>, ...}``; Deep-Z: ``{"type": "deepz-unet", "width": w}``
    (optionally ``in_channels``, ``out_channels``). See :mod:`live_deepz.architectures`."""
    optics: dict[str, float]
    """The optics the model was trained for, ``Optics.to_dict()``."""
    z_range_um: tuple[float, float]
    """Trained axial range ``(min, max)`` of DPM values in um; outside it the model fails."""
    dpm_scale_um: float = 10.0
    """The DPM (um) is divided by this before it enters the network."""
    normalization: dict[str, Any] = field(default_factory=_default_normalization)
    modality: dict[str, str] = field(default_factory=_default_modality)
    training: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.z_range_um = tuple(self.z_range_um)  # type: ignore[assignment]
        _validate_card_dict(self.to_dict(), source="model card")

    # -- construction ---------------------------------------------------------------

    @classmethod
    def for_generator(
        cls,
        name: str,
        generator: nn.Module,
        optics: Optics,
        z_range_um: tuple[float, float],
        **kwargs: Any,
    ) -> ModelCard:
        """A card whose ``architecture`` and ``optics`` come from the objects given."""
        return cls(
            name=name,
            architecture=architecture_of(generator),
            optics=optics.to_dict(),
            z_range_um=z_range_um,
            **kwargs,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "description": self.description,
            "architecture": dict(self.architecture),
            "optics": dict(self.optics),
            "z_range_um": [float(v) for v in self.z_range_um],
            "dpm_scale_um": self.dpm_scale_um,
            "normalization": dict(self.normalization),
            "modality": dict(self.modality),
            "training": dict(self.training),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Any, source: str = "model card") -> ModelCard:
        """Validate and build; ``source`` (e.g. the file) prefixes every error message."""
        _validate_card_dict(d, source)
        return cls(
            name=d["name"],
            architecture=dict(d["architecture"]),
            optics={k: float(d["optics"][k]) for k in OPTICS_KEYS},
            z_range_um=(float(d["z_range_um"][0]), float(d["z_range_um"][1])),
            dpm_scale_um=float(d["dpm_scale_um"]),
            normalization=dict(d["normalization"]),
            modality=dict(d["modality"]),
            training=dict(d.get("training", {})),
            description=d.get("description", ""),
            extra=dict(d.get("extra", {})),
            format_version=d["format_version"],
        )

    # -- derived --------------------------------------------------------------------

    @property
    def optics_obj(self) -> Optics:
        return Optics.from_dict(self.optics)

    @property
    def architecture_type(self) -> str:
        return str(self.architecture["type"])

    @property
    def generator_config(self) -> DeepZConfig:
        """The Deep-Z generator's config (a ``deepz-unet`` card only)."""
        from .network import DeepZConfig

        arch = self.architecture
        if arch["type"] != DEEPZ_UNET:
            raise ValueError(f"a {arch['type']!r} model has no DeepZConfig")
        return DeepZConfig.from_architecture(arch)

    @property
    def validation_mae(self) -> float | None:
        v = self.training.get("validation_mae")
        return float(v) if isinstance(v, int | float) and _is_number(v) else None


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "format_version": int,
    "name": str,
    "architecture": dict,
    "optics": dict,
    "z_range_um": list,
    "dpm_scale_um": (int, float),
    "normalization": dict,
    "modality": dict,
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "description": str,
    "training": dict,
    "extra": dict,
}


def _check_format_version(v: Any, source: str) -> None:
    if isinstance(v, int) and not isinstance(v, bool) and v > FORMAT_VERSION:
        raise ModelFileError(
            f"{source}: format_version {v} was written by a newer live-deepz; this version "
            f"reads format {FORMAT_VERSION}. Upgrade live-deepz (pip install -U live-deepz)."
        )
    if v != FORMAT_VERSION or isinstance(v, bool):
        raise ModelFileError(
            f"{source}: unknown format_version {v!r}; this live-deepz reads format "
            f"{FORMAT_VERSION} only. The file is not a valid live-deepz model card: re-save "
            "the model with live_deepz.modelfile.save_model (or retrain it)."
        )


def _validate_card_dict(d: Any, source: str) -> None:
    """Raise ModelFileError naming the first bad key of a card dict."""

    def bad(key: str, what: str) -> ModelFileError:
        return ModelFileError(f"{source}: card key '{key}' {what}")

    if not isinstance(d, dict):
        raise ModelFileError(f"{source}: a model card must be a JSON object, got {_type_name(d)}")
    if "format_version" not in d:
        raise bad("format_version", "is missing")
    _check_format_version(d["format_version"], source)
    for key in _REQUIRED:
        if key not in d:
            raise bad(key, "is missing")
    for key, typ in {**_REQUIRED, **_OPTIONAL}.items():
        if key in d and (not isinstance(d[key], typ) or isinstance(d[key], bool)):
            want = typ.__name__ if isinstance(typ, type) else "number"
            raise bad(key, f"must be a {want}, got {d[key]!r} ({_type_name(d[key])})")
    unknown = sorted(set(d) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise bad(unknown[0], "is not a known card key (free-form data goes under 'extra')")
    if not d["name"].strip():
        raise bad("name", "must not be empty")

    arch = d["architecture"]
    if "type" not in arch:
        raise bad("architecture.type", "is missing")
    try:
        family = get_architecture(arch["type"]) if isinstance(arch["type"], str) else None
    except ModelFileError as exc:
        raise bad("architecture.type", f"is {arch['type']!r}: {exc}") from None
    if family is None:
        raise bad("architecture.type", f"must be a string, got {arch['type']!r}")
    problem = family.validate(arch) if family.validate is not None else None
    if problem is not None:
        raise bad(f"architecture.{problem[0]}", problem[1])

    optics = d["optics"]
    for key in OPTICS_KEYS:
        if key not in optics:
            raise bad(f"optics.{key}", "is missing")
        if not _is_number(optics[key]):
            raise bad(f"optics.{key}", f"must be a number, got {optics[key]!r}")
    try:
        Optics.from_dict(optics)
    except LiveDeepzError as exc:
        raise bad("optics", f"is invalid: {exc}") from None

    z = d["z_range_um"]
    if len(z) != 2 or not all(_is_number(v) for v in z) or not z[0] < z[1]:
        raise bad("z_range_um", f"must be [min, max] in um with min < max, got {z!r}")
    if not _is_number(d["dpm_scale_um"]) or d["dpm_scale_um"] <= 0:
        raise bad("dpm_scale_um", f"must be a positive number, got {d['dpm_scale_um']!r}")
    if not isinstance(d["normalization"].get("method"), str):
        raise bad("normalization.method", "must be a string (e.g. 'deepz-triangle')")
    for key in ("input", "output"):
        value = d["modality"].get(key)
        if value not in MODALITIES:
            raise bad(f"modality.{key}", f"must be one of {list(MODALITIES)}, got {value!r}")


# ---------------------------------------------------------------------------------------
# Paths


def _model_folder(path: str | os.PathLike[str]) -> Path:
    """The model folder for a folder path or the path of its model.safetensors / card.json."""
    p = Path(path).expanduser()
    if p.is_file() or p.name in (WEIGHTS_FILE, CARD_FILE):
        if p.name not in (WEIGHTS_FILE, CARD_FILE):
            raise ModelFileError(
                f"'{p}' is not a model: a live-deepz model is a folder holding {WEIGHTS_FILE} "
                f"and {CARD_FILE}; pass that folder (or one of those two files)."
            )
        p = p.parent
    if not p.exists():
        raise ModelFileError(f"model folder '{p}' does not exist; {_HOW_TO_PASS}.")
    if not p.is_dir():
        raise ModelFileError(f"'{p}' is not a model folder; {_HOW_TO_PASS}.")
    for name in (WEIGHTS_FILE, CARD_FILE):
        if not (p / name).is_file():
            raise ModelFileError(
                f"model folder '{p}' has no {name}; a model folder holds {WEIGHTS_FILE} and "
                f"{CARD_FILE} (written by save_model / `live-deepz train`). Copy the missing "
                "file there or pass another model."
            )
    return p


def _is_model_folder(p: Path) -> bool:
    return p.is_dir() and (p / WEIGHTS_FILE).is_file() and (p / CARD_FILE).is_file()


def bundled_models_dir() -> Path:
    return Path(__file__).resolve().parent / "models"


def bundled_models() -> list[Path]:
    """Model folders shipped in the package (``live_deepz/models/<name>/``), sorted by name."""
    root = bundled_models_dir()
    return sorted(p for p in root.iterdir() if _is_model_folder(p)) if root.is_dir() else []


def user_models() -> list[Path]:
    """Model folders inside the folder(s) named by ``$LIVE_DEEPZ_MODELS`` (when unset: the
    default home ``~/.local/share/live-deepz/models``, see :mod:`live_deepz.model_home`)."""
    from .model_home import user_model_roots

    found: list[Path] = []
    for root in user_model_roots():
        if root.is_dir():
            found.extend(sorted(p for p in root.iterdir() if _is_model_folder(p)))
    return found


def available_models() -> list[Path]:
    """User models first (they shadow bundled ones of the same name), then bundled ones."""
    return user_models() + bundled_models()


def default_model_path() -> Path:
    """The bundled ``deepz-sim20x-default`` model folder."""
    p = bundled_models_dir() / DEFAULT_MODEL_NAME
    if _is_model_folder(p):
        return p
    raise ModelFileError(
        f"no default model ('{DEFAULT_MODEL_NAME}') is shipped with this build of live-deepz "
        f"yet; {_HOW_TO_PASS} (e.g. one written by `live-deepz train`), or put model folders "
        f"in a folder named by ${MODELS_ENV}."
    )


def resolve_model(name_or_path: str | os.PathLike[str] | None) -> Path:
    """Model folder for ``None`` (the default), a model name, or a path (folder or file)."""
    if name_or_path is None:
        return default_model_path()
    text = os.fspath(name_or_path)
    p = Path(text).expanduser()
    if p.exists():
        return _model_folder(p)
    looks_like_name = not any(s and s in text for s in (os.sep, os.altsep)) and p.suffix not in (
        ".json",
        ".safetensors",
    )
    if looks_like_name:
        for folder in available_models():
            if folder.name == text:
                return folder
        known = ", ".join(sorted({f.name for f in available_models()})) or "none installed"
        raise ModelFileError(
            f"no model named '{text}' (known models: {known}) and no such path; {_HOW_TO_PASS}."
        )
    raise ModelFileError(f"model path '{p}' does not exist; {_HOW_TO_PASS}.")


# ---------------------------------------------------------------------------------------
# Reading and writing


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a ``model.safetensors`` file (or of the one in a model folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS_FILE
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_card(path: str | os.PathLike[str]) -> ModelCard:
    """The validated card of a model folder (or of the folder of a given file)."""
    folder = _model_folder(path)
    card_path = folder / CARD_FILE
    try:
        d = json.loads(card_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(
            f"{card_path}: not valid JSON ({exc}); fix the file or restore it from the model's "
            "original copy."
        ) from None
    return ModelCard.from_dict(d, source=str(card_path))


def _parse_header(data: bytes, path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor entries and ``__metadata__``)."""
    corrupt = (
        f"{path}: corrupt or truncated safetensors file; copy the model again from its "
        "source (its SHA-256 should match the one it was published with)."
    )
    if len(data) < 8:
        raise ModelFileError(corrupt)
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ModelFileError(corrupt)
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(corrupt) from None
    if not isinstance(header, dict):
        raise ModelFileError(corrupt)
    return header


def _read_header_file(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else 0
        return _parse_header(head + fh.read(min(n, 100 << 20)), path)


def _check_ours(header: dict[str, Any], path: Path) -> dict[str, str]:
    meta = header.get("__metadata__") or {}
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt != FORMAT_NAME:
        said = f"format={fmt!r}" if fmt is not None else "no live-deepz metadata"
        raise ModelFileError(
            f"{path}: not a live-deepz model file (its safetensors metadata has {said}, "
            f"expected format='{FORMAT_NAME}'). live-deepz loads only weights written by "
            "live_deepz.modelfile.save_model (e.g. by `live-deepz train`); "
            f"{_HOW_TO_PASS}."
        )
    return meta


def save_model(folder: str | os.PathLike[str], generator: nn.Module, card: ModelCard) -> Path:
    """Write ``folder/model.safetensors`` (fp32) and ``folder/card.json``; returns the folder.

    Each file is written to a temporary name and renamed into place. The folder's name is
    what ``resolve_model`` matches, so make it the card's ``name``.
    """
    gen = unwrap_module(generator)
    _validate_card_dict(card.to_dict(), source="save_model card")  # fields may have been edited
    arch = architecture_of(gen)
    shapes = {k: tuple(v.shape) for k, v in gen.state_dict().items()}
    if arch["type"] != card.architecture["type"] or expected_shapes(card.architecture) != shapes:
        raise ValueError(
            f"card architecture {card.architecture} does not match the generator's {arch}"
        )
    from safetensors.torch import save

    tensors = {
        k: v.detach().to(device="cpu", dtype=torch.float32).contiguous()
        for k, v in gen.state_dict().items()
    }
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "architecture": json.dumps(card.architecture, sort_keys=True),
    }
    out = Path(folder).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / WEIGHTS_FILE, save(tensors, metadata=metadata))
    text = json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n"
    _write_atomic(out / CARD_FILE, text.encode("utf-8"))
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class LoadedModel:
    card: ModelCard
    generator: nn.Module
    """In eval mode, fp32, on the requested device (the card's architecture family)."""
    weights_sha256: str
    path: Path
    """The model folder."""


class UnfinishedModelWarning(UserWarning):
    """A model whose training was interrupted or is too short to be useful."""


def training_warning(card: ModelCard) -> str | None:
    """Why this model may not be a finished one (from its card), or None.

    ``training.complete`` false: the run stopped before its end (the folder holds the best
    model so far); ``training.short`` true: fewer steps than its recipe needs to be useful.
    Cards without these keys (models written before they existed) give None.
    """
    t = card.training
    steps = t.get("steps")
    if t.get("complete") is False:
        planned = t.get("planned_steps")
        of = f" of {planned}" if planned is not None else ""
        return (
            f"model {card.name!r}: its training was interrupted after {steps}{of} steps "
            "(card training.complete = false); it is the best model of an unfinished run. "
            "Resume it with `live-deepz train ... --resume` or train it again."
        )
    if t.get("short") is True:
        return (
            f"model {card.name!r}: trained only {steps} steps, fewer than the "
            f"{t.get('min_useful_steps')} its recipe needs (card training.short = true); "
            "expect it not to refocus well."
        )
    return None


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedModel:
    """Load and check a model folder (or the path of its model.safetensors / card.json)."""
    from safetensors.torch import load

    folder = _model_folder(path)
    card = load_card(folder)
    wpath = folder / WEIGHTS_FILE
    data = wpath.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    header = _parse_header(data, wpath)
    meta = _check_ours(header, wpath)
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own SafetensorError and others
        raise ModelFileError(
            f"{wpath}: corrupt or truncated safetensors file ({exc}); copy the model again "
            "from its source."
        ) from None
    del data

    family = get_architecture(card.architecture_type)
    expected = expected_shapes(card.architecture)
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing and len(missing) == len(expected):
        raise ModelFileError(
            f"{wpath}: none of its tensors are {family.type_name} weights (it has e.g. "
            f"{unexpected[:3]}); it is not a live-deepz model file. {_HOW_TO_PASS}."
        )
    saved_arch = meta.get("architecture", "?")
    hint = (
        f"{CARD_FILE} says architecture {json.dumps(card.architecture, sort_keys=True)} but the "
        f"weights were saved as {saved_arch}: the card and weights do not belong together "
        "(fix the card or copy the matching model.safetensors)."
    )
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:3]}" + (" ..." if len(missing) > 3 else ""))
        if unexpected:
            more = " ..." if len(unexpected) > 3 else ""
            parts.append(f"unexpected tensors {unexpected[:3]}{more}")
        raise ModelFileError(f"{wpath}: {'; '.join(parts)}. {hint}")
    for k, shape in expected.items():
        got = tuple(tensors[k].shape)
        if got != shape:
            raise ModelFileError(
                f"{wpath}: tensor '{k}' has shape {list(got)} but the card's architecture "
                f"needs {list(shape)}. {hint}"
            )
        if not tensors[k].is_floating_point():
            raise ModelFileError(
                f"{wpath}: tensor '{k}' has dtype {tensors[k].dtype}, expected float32; "
                "re-save the model with save_model."
            )
    broken = [k for k, v in tensors.items() if not bool(torch.isfinite(v).all())]
    if broken:
        raise ModelFileError(
            f"{wpath}: {len(broken)} weight tensor(s) hold NaN or inf (first: '{broken[0]}'); "
            "the model cannot refocus. Retrain it (a diverged training run) or copy it again."
        )

    with torch.device("meta"):
        generator = family.build(card.architecture)
    state = {k: v.to(torch.float32).contiguous() for k, v in tensors.items()}
    generator.load_state_dict(state, strict=True, assign=True)
    generator = generator.to(device).eval()
    note = training_warning(card)
    if note is not None:
        warnings.warn(note, UnfinishedModelWarning, stacklevel=2)
    return LoadedModel(card=card, generator=generator, weights_sha256=sha, path=folder)


def model_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """One listing row for a model folder; never raises (a broken model gets ``error``)."""
    p = Path(path)
    row: dict[str, Any] = {"name": p.name, "path": str(p)}
    try:
        card = load_card(p)
        header = _read_header_file(p / WEIGHTS_FILE)
        _check_ours(header, p / WEIGHTS_FILE)
    except ModelFileError as exc:
        row["error"] = str(exc)
        return row
    n_params = 0
    for k, v in header.items():
        if k != "__metadata__" and isinstance(v, dict):
            n_params += math.prod(int(s) for s in v.get("shape", []))
    if card.name != p.name:
        row["card_name"] = card.name  # --model takes the folder name
    row.update(
        description=card.description,
        architecture=card.architecture_type,
        width=card.architecture.get("width"),
        parameters=n_params,
        z_range_um=list(card.z_range_um),
        dpm_scale_um=card.dpm_scale_um,
        optics=dict(card.optics),
        modality=dict(card.modality),
        validation_mae=card.validation_mae,
        training_steps=card.training.get("steps"),
        residual=bool(card.architecture.get("residual", False)),
        dpm_film=bool(card.architecture.get("dpm_film", False)),
        disk_features=bool(card.architecture.get("disk_features", False)),
        recipe=card.training.get("recipe"),
    )
    note = training_warning(card)
    if note is not None:
        row["warning"] = note
    return row
