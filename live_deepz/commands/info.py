"""``live-deepz info``: versions, compute devices, inference backends, models, default optics."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
from typing import Any

from .._version import __version__
from ..optics import Optics

_PACKAGES = (
    "torch",
    "numpy",
    "scipy",
    "scikit-image",
    "tifffile",
    "safetensors",
    "psfmodels",
    "pymmcore-plus",
    "pymmcore",
    "qtpy",
    "pyqtgraph",
    "PySide6-Essentials",
    "PyQt6",
    "zarr",
    "ome-writers",
    "onnx",
    "torch-tensorrt",
    "tensorrt",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "live-deepz": __version__}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def compute_devices() -> list[dict[str, Any]]:
    """The CPU and CUDA devices (``live_deepz.engine.backends.compute_devices``)."""
    from ..engine.backends import compute_devices as devices  # type: ignore[import-not-found]

    return devices()  # type: ignore[no-any-return]


def _backends() -> dict[str, str]:
    try:
        from ..engine.backends import available_backends  # type: ignore[import-not-found]
    except ImportError as exc:  # engine not installed / not built
        return {"engine": f"unavailable ({exc})"}
    return dict(available_backends())


def _models() -> list[dict[str, Any]]:
    try:
        from ..modelfile import bundled_models, load_card
    except ImportError as exc:
        return [{"error": f"model files unavailable ({exc})"}]
    rows = []
    for path in bundled_models():
        card = load_card(path)
        rows.append(
            {
                "name": card.name,
                "width": card.architecture.get("width"),
                "z_range_um": list(card.z_range_um),
                "path": str(path),
            }
        )
    return rows


def collect() -> dict[str, Any]:
    return {
        "versions": _versions(),
        "devices": compute_devices(),
        "backends": _backends(),
        "models": _models(),
        "simulator_optics": Optics().to_dict(),
    }


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"live-deepz {__version__}")
    print("\nversions:")
    for k, v in info["versions"].items():
        print(f"  {k:20s} {v or '-'}")
    print("\ncompute devices:")
    for d in info["devices"]:
        extra = ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("device", "name"))
        print(f"  {d['device']:8s} {d['name']} ({extra})")
    print("\ninference backends:")
    for k, v in info["backends"].items():
        print(f"  {k:12s} {v}")
    print("\nbundled models:")
    if not info["models"]:
        print("  (none shipped in this build)")
    for m in info["models"]:
        print("  " + ", ".join(f"{k}={v}" for k, v in m.items()))
    o = Optics()
    print("\nsimulator default optics:")
    print(
        f"  NA {o.na}, emission {o.wavelength_um} um, pixel {o.pixel_size_um} um, "
        f"immersion n={o.immersion_ri}, sample n={o.sample_ri} "
        f"(lateral FWHM ~{o.lateral_resolution_um:.2f} um, "
        f"depth of field ~{o.depth_of_field_um:.2f} um)"
    )
    return 0
