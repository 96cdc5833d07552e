"""Write an :class:`~.pipeline.ActivityResult` to a folder, atomically.

``neurons.csv``: ``id, z_um, y_um, x_um, in_input_plane, activity, snr, active, cluster,
f0, voxels`` (cluster −1: not clustered); ``traces.csv``: ``t_s`` then one ΔF/F0 column per
neuron id; ``registration.csv``: ``t_s, time_point, dz_um, dy_um, dx_um`` (the shift applied
to each time point); ``summary.json``: counts, clusters, parameters, software versions;
with plots, the PNGs of :mod:`.plots`.

The folder is built beside its destination (``.NAME.partial-*``) and renamed into place
when complete, so a failure leaves no half-made output.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from live_deepz.errors import InputError

from .pipeline import ActivityResult

__all__ = ["software_versions", "summary_dict", "write_outputs"]


def software_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("live-deepz", "numpy", "scipy", "scikit-image", "scikit-learn", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _num(v: float, nd: int = 5) -> float | None:
    v = float(v)
    return round(v, nd) if np.isfinite(v) else None


def summary_dict(res: ActivityResult) -> dict[str, Any]:
    """The ``summary.json`` content."""
    cl = res.clusters
    sizes = np.bincount(res.cluster[res.cluster >= 0], minlength=cl.k if cl else 0)
    return {
        "recording": res.info.get("recording"),
        "channels": {"nuclei": res.channels[0], "activity": res.channels[1]},
        "counts": {
            "neurons_3d": res.n_neurons,
            "neurons_input_plane": len(res.input_positions_um),
            "neurons_3d_also_in_input_plane": int(res.in_input_plane.sum()),
            "active": int(res.active.sum()),
            "clusters": int(cl.k) if cl else 0,
            "cluster_sizes": [int(v) for v in sizes],
            "time_points": len(res.t_s),
            "time_points_skipped": res.info.get("time_points_skipped", 0),
        },
        "input_plane_source": res.input_source,
        "stack": {
            "planes_um": [float(v) for v in res.offsets_um],
            "pixel_size_um": res.pixel_size_um,
            "frame_shape": res.info.get("frame_shape"),
        },
        "coordinates": (
            "z_um: virtual plane offset (µm, > 0 deeper, 0 = the camera's focal plane); "
            "y_um/x_um: row/column × pixel size (first pixel centre = 0); positions at the "
            "reference (first used) time point, onto which every time point is registered"
        ),
        "registration": {
            "mean_abs_shift_zyx_um": res.info.get("mean_abs_shift_um"),
            "max_abs_shift_zyx_um": [float(v) for v in np.abs(res.shifts_um).max(axis=0)]
            if len(res.shifts_um)
            else [0.0, 0.0, 0.0],
        },
        "localisation": {
            "threshold_3d": _num(res.info["threshold_3d"]),
            "background_3d": _num(res.info["background_3d"]),
            "threshold_input": _num(res.info["threshold_input"]),
        },
        "traces": {
            "activity_background": _num(res.activity_background),
            "median_voxels_averaged": _num(res.info.get("n_brightest_used_median", np.nan)),
            "duration_s": _num(res.t_s[-1] - res.t_s[0]) if len(res.t_s) else 0.0,
        },
        "clustering": {
            "k": int(cl.k) if cl else 0,
            "eigenvalues": [_num(v) for v in cl.eigenvalues] if cl else [],
            "clustered_ids": [int(v) for v in res.clustered_ids],
        },
        "parameters": res.params.to_dict(),
        "software": software_versions(),
    }


def _write_csvs(res: ActivityResult, folder: Path) -> None:
    with open(folder / "neurons.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(
            ["id", "z_um", "y_um", "x_um", "in_input_plane", "activity", "snr", "active",
             "cluster", "f0", "voxels"]
        )  # fmt: skip
        for i in range(res.n_neurons):
            z, y, x = res.positions_um[i]
            wr.writerow(
                [i, f"{z:.3f}", f"{y:.3f}", f"{x:.3f}", int(res.in_input_plane[i]),
                 f"{res.activity[i]:.5g}", f"{res.snr[i]:.4g}", int(res.active[i]),
                 int(res.cluster[i]), f"{res.f0[i]:.5g}", int(res.voxels[i])]
            )  # fmt: skip
    with open(folder / "traces.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["t_s", *range(res.n_neurons)])
        for j, t in enumerate(res.t_s):
            wr.writerow([f"{t:.4f}", *(f"{v:.5g}" for v in res.dff[:, j])])
    with open(folder / "registration.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["t_s", "time_point", "dz_um", "dy_um", "dx_um"])
        for j, t in enumerate(res.t_s):
            wr.writerow(
                [f"{t:.4f}", int(res.time_points[j]), *(f"{v:.4f}" for v in res.shifts_um[j])]
            )


def write_outputs(
    res: ActivityResult, out_dir: str | os.PathLike[str], *, plots: bool = False,
    overwrite: bool = False,
) -> Path:  # fmt: skip
    """Write the result into ``out_dir`` (created; see the module docstring)."""
    dest = Path(out_dir).expanduser()
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())) and not overwrite:
        raise InputError(f"{dest} already exists; choose another -o or pass --overwrite")
    if dest.exists() and not dest.is_dir():
        raise InputError(f"{dest} exists and is not a folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        _write_csvs(res, stage)
        summary = summary_dict(res)
        if plots:
            from .plots import write_plots

            summary["plots"] = write_plots(res, stage)
        (stage / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        os.chmod(stage, 0o755)
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
        os.replace(stage, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return dest
