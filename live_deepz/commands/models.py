"""``live-deepz models``: list the bundled and user models with their cards."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..model_home import MODELS_ENV, user_model_roots


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of text")


def _rows() -> list[dict[str, Any]]:
    from ..modelfile import available_models, bundled_models, model_summary  # torch: lazily

    bundled = set(bundled_models())
    rows = []
    for path in available_models():
        row = model_summary(path)
        row["source"] = "bundled" if path in bundled else f"user: {path.parent}"
        rows.append(row)
    return rows


def _text(row: dict[str, Any]) -> str:
    head = f"{row['name']}  ({row['source']})"
    if "error" in row:
        return f"{head}\n    BROKEN: {row['error']}\n    path: {row['path']}"
    o = row["optics"]
    z0, z1 = row["z_range_um"]
    mae = row["validation_mae"]
    lines = [
        head,
        f"    network:    deepz-unet width {row['width']:g}"
        + (", global residual" if row.get("residual") else "")
        + (", DPM-modulated levels" if row.get("dpm_film") else "")
        + (", defocus-disk features" if row.get("disk_features") else "")
        + f", {row['parameters'] / 1e6:.2f} M parameters"
        + (f" (recipe {row['recipe']})" if row.get("recipe") else ""),
        f"    z range:    {z0:+g} .. {z1:+g} um (DPM scale {row['dpm_scale_um']:g} um)",
        f"    optics:     NA {o['na']:g}, emission {o['wavelength_um']:g} um, pixel "
        f"{o['pixel_size_um']:g} um, immersion n={o['immersion_ri']:g}, "
        f"sample n={o['sample_ri']:g}",
        f"    modality:   {row['modality']['input']} -> {row['modality']['output']}",
        f"    validation: MAE {mae:.4g}" if mae is not None else "    validation: MAE unknown",
        f"    path:       {row['path']}",
    ]
    if row.get("card_name"):
        lines.insert(1, f"    card name:  {row['card_name']}")
    if row.get("warning"):
        lines.insert(1, f"    WARNING: {row['warning']}")
    if row.get("description"):
        lines.insert(1, f"    {row['description']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rows = _rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    roots = ", ".join(str(r) for r in user_model_roots())
    where = f"user models are looked for in {roots} (set ${MODELS_ENV} to change it)"
    if not rows:
        print(
            f"No models found: none is bundled with this build and none is in {roots} "
            f"(${MODELS_ENV}). Train one with `live-deepz train -o NAME`, or pass --model PATH "
            "to the commands that take one."
        )
        return 0
    print("\n\n".join(_text(r) for r in rows))
    print(f"\n{where}; `live-deepz train -o NAME` puts a new model there")
    return 0
