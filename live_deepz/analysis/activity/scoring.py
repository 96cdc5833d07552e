"""Score an activity analysis against a simulated worm's truth (``NAME.truth.json``).

- **3D positions**: detections matched one-to-one (Hungarian) to true neurons within
  ``lateral_um`` laterally and ``axial_um`` axially; recall over the true neurons within
  ``band_um`` of the input plane (``|z| <= band_um``), precision over the detections in that
  band (a detection matched to any true neuron counts as correct);
- **2D input plane**: the same with a lateral match only (the input has no depth);
- **traces**: Pearson r of each matched neuron that is truly active *in the recorded window*
  (true ΔF/F std ≥ ``fired_std`` over the used time points: an active neuron whose group
  did not fire during a short recording has nothing to correlate) with its true ΔF/F;
- **clusters**: adjusted Rand index of the found clusters vs the true groups over the matched
  neurons that are truly active and were clustered (``ari_active``), and over all matched
  neurons with "inactive / not clustered" as one more label (``ari_all``, which also charges
  active neurons missed and inactive ones clustered).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from .pipeline import ActivityResult, match_lateral

__all__ = ["match_3d", "score_activity"]


def match_3d(
    found_zyx: NDArray[np.floating],
    true_zyx: NDArray[np.floating],
    lateral_um: float = 2.0,
    axial_um: float = 2.5,
) -> list[tuple[int, int]]:
    """One-to-one pairs ``(found, true)`` within the lateral and axial tolerances."""
    a = np.asarray(found_zyx, dtype=np.float64).reshape(-1, 3)
    b = np.asarray(true_zyx, dtype=np.float64).reshape(-1, 3)
    if not len(a) or not len(b):
        return []
    dl = np.sqrt(((a[:, None, 1:] - b[None, :, 1:]) ** 2).sum(-1))
    dz = np.abs(a[:, None, 0] - b[None, :, 0])
    ok = (dl <= lateral_um) & (dz <= axial_um)
    cost = np.where(ok, np.hypot(dl / lateral_um, dz / axial_um), 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if ok[i, j]]


def _pearson(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    m = np.isfinite(a) & np.isfinite(b)
    if m.sum() < 3 or np.std(a[m]) == 0 or np.std(b[m]) == 0:
        return float("nan")
    return float(np.corrcoef(a[m], b[m])[0, 1])


def score_activity(
    res: ActivityResult,
    truth: dict[str, Any],
    *,
    band_um: float = 10.0,
    lateral_um: float = 2.0,
    axial_um: float = 2.5,
    fired_std: float = 0.02,
) -> dict[str, Any]:
    """Recall/precision (3D and input plane), trace correlation and ARI (see the module)."""
    from sklearn.metrics import adjusted_rand_score

    tp = truth["time_points"]
    motion = np.array(tp["motion_zyx_um"], dtype=np.float64)
    ref = motion[int(res.time_points[0])] if len(res.time_points) else np.zeros(3)
    centres = np.asarray(truth["neurons"]["centres_zyx_um"], dtype=np.float64) + np.nan_to_num(ref)
    cluster_true = np.asarray(truth["neurons"]["cluster"], dtype=np.int64)
    in_band = np.abs(centres[:, 0]) <= band_um
    found = res.positions_um
    found_band = np.abs(found[:, 0]) <= band_um if len(found) else np.zeros(0, bool)

    pairs = match_3d(found, centres, lateral_um, axial_um)
    matched_true = {j for _, j in pairs}
    matched_found = {i for i, _ in pairs}
    n_band = int(in_band.sum())
    recall = sum(in_band[j] for j in matched_true) / max(n_band, 1)
    precision = sum(1 for i in matched_found if found_band[i]) / max(int(found_band.sum()), 1)

    pairs2 = match_lateral(res.input_positions_um, centres[:, 1:], lateral_um)
    recall2 = sum(in_band[j] for _, j in pairs2) / max(n_band, 1)
    precision2 = len(pairs2) / max(len(res.input_positions_um), 1)

    dff_true = np.array(tp["dff"], dtype=np.float64)[res.time_points]  # (T, N)
    fired = np.nanstd(dff_true, axis=0) >= fired_std
    cluster_true = np.where(fired, cluster_true, -1)
    rs, found_active, true_labels, pred_labels, all_true, all_pred = [], [], [], [], [], []
    for i, j in pairs:
        if cluster_true[j] >= 0:
            rs.append(_pearson(res.dff[i], dff_true[:, j]))
            found_active.append(bool(res.active[i]))
            if res.cluster[i] >= 0:
                true_labels.append(int(cluster_true[j]))
                pred_labels.append(int(res.cluster[i]))
        all_true.append(int(cluster_true[j]))
        all_pred.append(int(res.cluster[i]))
    n_false_active = sum(1 for i, j in pairs if cluster_true[j] < 0 and res.active[i])
    r = np.asarray(rs, dtype=np.float64)
    ari = adjusted_rand_score(true_labels, pred_labels) if len(true_labels) >= 2 else float("nan")
    ari_all = adjusted_rand_score(all_true, all_pred) if len(all_true) >= 2 else float("nan")
    return {
        "n_true": len(centres),
        "n_true_in_band": n_band,
        "n_found_3d": len(found),
        "n_found_3d_in_band": int(found_band.sum()),
        "n_found_input_plane": len(res.input_positions_um),
        "recall_3d": float(recall),
        "precision_3d": float(precision),
        "recall_input_plane": float(recall2),
        "precision_input_plane": float(precision2),
        "n_matched_active": len(rs),
        "trace_r_median": float(np.nanmedian(r)) if np.isfinite(r).any() else float("nan"),
        "trace_r_p10": float(np.nanpercentile(r, 10)) if np.isfinite(r).any() else float("nan"),
        "true_active_found_active": float(np.mean(found_active)) if found_active else float("nan"),
        "inactive_called_active": int(n_false_active),
        "n_clusters_found": int(res.clusters.k) if res.clusters else 0,
        "n_clusters_true": len(set(cluster_true[cluster_true >= 0].tolist())),
        "n_true_fired": int((cluster_true >= 0).sum()),
        "ari_active": float(ari),
        "ari_all": float(ari_all),
        "n_ari_active": len(true_labels),
    }
