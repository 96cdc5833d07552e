"""Ground truth of a simulated worm recording (``record --sim``), in ``neurons.csv``'s frame.

``NAME.truth.json`` beside the recording ``NAME.ome.tif`` / ``NAME.ome.zarr``:

- ``neurons.centres_zyx_um`` ``(N, 3)``: each neuron centre where the recording shows it
  without motion: ``z_um`` = the virtual-plane offset at which it is in focus (the
  simulator's focus position, focal shift included, minus the stage position of the first
  frame), ``y_um``/``x_um`` = row/column × pixel size (first pixel centre = 0);
- ``neurons.cluster`` ``(N,)``: the activity group of each neuron, −1 for an inactive one;
- ``time_points.t_s`` ``(T, C)``: the simulator's time of each channel frame (s);
- ``time_points.dff`` ``(T, N)``: each neuron's true ΔF/F at the activity channel's frame;
- ``time_points.motion_zyx_um`` ``(T, 3)``: where the sample (drift + body motion) had moved
  the neurons at the nuclei channel's frame: a neuron appears at ``centre + motion``.

``neurons.csv`` of ``live-deepz activity`` holds the positions at the first time point, so
``centres + motion[0]`` is the comparable truth. Missing frames give ``null``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["recording_truth", "truth_path", "write_recording_truth", "write_sim_truth"]


def truth_path(recording: str | os.PathLike[str]) -> Path:
    """``NAME.truth.json`` beside ``NAME.ome.tif`` / ``NAME.ome.zarr`` (or any file of it)."""
    p = Path(recording)
    name = p.name
    for suffix in (".planes.ome.tif", ".journal.jsonl", ".ome.tiff", ".ome.tif", ".ome.zarr",
                   ".tiff", ".tif", ".zarr"):  # fmt: skip
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return p.with_name(f"{name}.truth.json")


def _list(a: np.ndarray, nd: int = 5) -> list[float | None]:
    """JSON-ready values, ``None`` for NaN."""
    return [round(float(v), nd) if np.isfinite(v) else None for v in np.asarray(a).ravel()]


def recording_truth(
    scene: Any,
    t_s: np.ndarray,
    *,
    stage_z_um: Sequence[float] | NDArray[np.floating] | float = 0.0,
    stage_xy_um: Sequence[float] = (0.0, 0.0),
    pixel_size_um: float | None = None,
    nuclei_column: int = 0,
    activity_column: int | None = None,
) -> dict[str, Any]:
    """The truth dictionary (see the module docstring) of a worm seen by ``scene`` (a
    :class:`~live_deepz.sim.scene.SimScene`) at the frame times ``t_s`` ``(T,)`` or
    ``(T, C)`` (NaN: frame missing). ``stage_z_um`` per time point or one value."""
    s = scene.sample
    obj = s.objects
    if obj.get("kind") != "neurons":
        raise ValueError(f"the simulated sample {s.name!r} has no neurons")
    t = np.asarray(t_s, dtype=np.float64)
    t = t[:, None] if t.ndim == 1 else t
    n_t = len(t)
    ca = (t.shape[1] - 1 if t.shape[1] > 1 else 0) if activity_column is None else activity_column
    stage_z = np.broadcast_to(np.asarray(stage_z_um, dtype=np.float64), (n_t,))
    z0 = float(stage_z[0]) if n_t and np.isfinite(stage_z[0]) else 0.0
    px = float(pixel_size_um or scene.optics.pixel_size_um)
    h, w = scene.shape
    cen = np.asarray(obj["centres_zyx_um"], dtype=np.float64).reshape(-1, 3)
    depth = np.asarray(obj["depth_um"], dtype=np.float64)
    focus = scene.psf.best_focus_position_um(cen[:, 0], depth, s.ref_depth_um)
    sx, sy = float(stage_xy_um[0]), float(stage_xy_um[1])
    centres = np.stack(
        [focus - z0, cen[:, 1] - sy + (h - 1) / 2 * px, cen[:, 2] - sx + (w - 1) / 2 * px], axis=1
    )
    active = np.asarray(obj["active"], dtype=bool)
    cluster = np.where(active, np.asarray(obj["cluster"], dtype=np.int64), -1)
    dff = np.full((n_t, len(cen)), np.nan)
    motion = np.full((n_t, 3), np.nan)
    for j in range(n_t):
        ta, tn = t[j, ca], t[j, nuclei_column]
        if np.isfinite(ta):
            dff[j] = s.activity(float(ta))
        if np.isfinite(tn):
            cx, cy = scene.field_centre_um(float(tn), (sx, sy))
            sz = float(stage_z[j]) if np.isfinite(stage_z[j]) else z0
            motion[j] = (z0 - scene.focus_um(float(tn), sz), sy - cy, sx - cx)
    return {
        "kind": "live-deepz simulated truth",
        "conventions": __doc__,
        "sample": {"name": s.name, "params": s.params, "channel_names": list(s.channel_names)},
        "pixel_size_um": px,
        "frame_shape": [int(h), int(w)],
        "neurons": {
            "centres_zyx_um": np.round(centres, 5).tolist(),
            "radius_um": obj.get("radius_um"),
            "active": active.tolist(),
            "cluster": cluster.tolist(),
        },
        "time_points": {
            "t_s": [_list(row, 6) for row in t],
            "dff": [_list(row) for row in dff],
            "motion_zyx_um": [_list(row) for row in motion],
        },
    }


def write_recording_truth(
    recording: str | os.PathLike[str],
    scene: Any,
    *,
    stream_origin_s: float,
    stage_xy_um: Sequence[float] = (0.0, 0.0),
) -> Path:
    """Write ``NAME.truth.json`` for the recording ``recording`` made by the simulated camera
    looking at ``scene``; ``stream_origin_s`` is the scene time of the camera's time 0 (the
    camera timestamps are relative to its stream start). Returns the path written."""
    from live_deepz.recording import Recording, RecordingError, open_recording

    with open_recording(recording) as rec:
        if not isinstance(rec, Recording):  # an MDA recording: no single camera stream
            raise RecordingError(f"{recording}: truth files are made for `record --sim` streams")
        n_t = rec.n_frames
        ts = np.asarray(rec.timestamps_ms, dtype=np.float64).reshape(n_t, -1)
        acquired = np.asarray(rec.acquired, dtype=bool).reshape(n_t, -1)
        ts = np.where(acquired, ts / 1000.0 + float(stream_origin_s), np.nan)
        stage_z = np.asarray(rec.stage_z_um, dtype=np.float64).reshape(n_t, -1)[:, 0]
        cams = rec.metadata.get("camera_channels")
        names = rec.channels
        px = rec.pixel_size_um
    dyn = scene.sample.dynamic_channel
    sample_ch = [int(c) for c in cams] if cams else list(range(ts.shape[1]))
    ca = sample_ch.index(dyn) if dyn in sample_ch else ts.shape[1] - 1
    cn = next((i for i, c in enumerate(sample_ch) if c != dyn), 0)
    truth = recording_truth(
        scene, ts, stage_z_um=stage_z, stage_xy_um=stage_xy_um, pixel_size_um=px,
        nuclei_column=cn, activity_column=ca,
    )  # fmt: skip
    truth["recording"] = {"path": str(recording), "channels": names, "sample_channels": sample_ch}
    out = truth_path(recording)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(json.dumps(truth) + "\n")
    os.replace(tmp, out)
    return out


def write_sim_truth(core: Any, recording: str | os.PathLike[str]) -> Path | None:
    """``NAME.truth.json`` for a recording made on ``open_core("sim")``'s camera, when its
    sample has neurons (the worm); None otherwise (nothing written)."""
    from live_deepz.microscope import sim_camera

    cam = sim_camera(core)
    scene = getattr(cam, "source", None)
    sample = getattr(scene, "sample", None)
    if cam is None or sample is None or sample.objects.get("kind") != "neurons":
        return None
    try:
        x, y = core.getXYPosition()
    except Exception:
        x, y = 0.0, 0.0
    return write_recording_truth(
        recording, scene, stream_origin_s=cam.stream_origin_s, stage_xy_um=(x, y)
    )
