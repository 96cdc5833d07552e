"""PNG figures of an activity analysis (matplotlib, Agg): the paper's Fig. 3 / Fig. S6.

- ``heatmap.png``: ΔF/F0 of every neuron over time, clustered neurons first (sorted by
  cluster, a colour strip marks the cluster), then the other neurons by activity;
- ``positions.png``: neuron positions over the maximum projections of the time-median nuclei
  stack, x–y and x–z, coloured by cluster (grey: not clustered; open: not found in the 2D
  input plane);
- ``affinity.png``: the affinity matrix of the clustered neurons sorted by cluster, and the
  eigenvalues that chose the number of clusters (eigengap).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .pipeline import ActivityResult

__all__ = ["cluster_colours", "write_plots"]


def cluster_colours(k: int) -> list[tuple[float, float, float, float]]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(max(k, 1))]


def _order(res: ActivityResult) -> np.ndarray:
    act = np.nan_to_num(res.activity, nan=-1.0)
    clustered = np.flatnonzero(res.cluster >= 0)
    clustered = clustered[np.lexsort((-act[clustered], res.cluster[clustered]))]
    rest = np.flatnonzero(res.cluster < 0)
    rest = rest[np.argsort(-act[rest], kind="stable")]
    return np.concatenate([clustered, rest]).astype(np.int64)


def _heatmap(res: ActivityResult, path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    order = _order(res)
    k = res.clusters.k if res.clusters else 0
    cols = cluster_colours(k)
    fig, (ax_c, ax) = plt.subplots(
        1, 2, figsize=(10, 1.5 + 0.06 * max(len(order), 20)), sharey=True,
        gridspec_kw={"width_ratios": [1, 40], "wspace": 0.02},
    )  # fmt: skip
    data = res.dff[order] if len(order) else np.zeros((1, max(len(res.t_s), 1)))
    vmax = float(np.nanpercentile(data, 99)) if np.isfinite(data).any() else 1.0
    t = res.t_s if len(res.t_s) else np.zeros(1)
    im = ax.imshow(
        data, aspect="auto", cmap="magma", vmin=0.0, vmax=max(vmax, 1e-3), interpolation="nearest",
        extent=(float(t[0]), float(t[-1]) if len(t) > 1 else 1.0, len(order) - 0.5, -0.5),
    )  # fmt: skip
    strip = np.array([res.cluster[i] if res.cluster[i] >= 0 else k for i in order])[:, None]
    ax_c.imshow(
        strip if len(order) else np.zeros((1, 1)), aspect="auto", interpolation="nearest",
        cmap=ListedColormap([*cols[:k], (0.85, 0.85, 0.85, 1.0)]), vmin=-0.5, vmax=k + 0.5,
    )  # fmt: skip
    n_cl = int((res.cluster >= 0).sum())
    if 0 < n_cl < len(order):
        ax.axhline(n_cl - 0.5, color="w", lw=1)
    ax_c.set_xticks([])
    ax_c.set_ylabel("neuron (clustered first, by cluster)")
    ax.set_xlabel("time (s)")
    ax.set_title(
        f"ΔF/F0 of {res.n_neurons} neurons: {int(res.active.sum())} active, {k} clusters "
        "(colour strip; grey = not clustered)"
    )
    fig.colorbar(im, ax=ax, label="ΔF/F0", fraction=0.03, pad=0.01)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _positions(res: ActivityResult, path: Path) -> None:
    import matplotlib.pyplot as plt

    k = res.clusters.k if res.clusters else 0
    cols = cluster_colours(k)
    px = res.pixel_size_um
    off = res.offsets_um
    _, h, w = res.median_nuclei.shape
    mip_xy = res.median_nuclei.max(axis=0)
    mip_xz = res.median_nuclei.max(axis=1)
    x_ext = (-0.5 * px, (w - 0.5) * px)
    dz = float(off[1] - off[0]) if len(off) > 1 else 1.0
    z_ext = (float(off[0]) - dz / 2, float(off[-1]) + dz / 2)
    span_y, span_z = h * px, z_ext[1] - z_ext[0]
    fig, (a1, a2) = plt.subplots(
        2, 1, figsize=(8, 8 * (span_y + span_z) / (w * px) + 1.0),
        gridspec_kw={"height_ratios": [span_y, span_z]},
    )  # fmt: skip
    a1.imshow(mip_xy, cmap="gray", extent=(*x_ext, (h - 0.5) * px, -0.5 * px))
    a2.imshow(mip_xz, cmap="gray", extent=(*x_ext, z_ext[1], z_ext[0]), aspect="auto")
    colour = [cols[c] if c >= 0 else (0.6, 0.6, 0.6, 1.0) for c in res.cluster]
    z, y, x = res.positions_um.T if res.n_neurons else (np.zeros(0),) * 3
    face = [c if res.in_input_plane[i] else "none" for i, c in enumerate(colour)]
    for ax, yy in ((a1, y), (a2, z)):
        ax.scatter(x, yy, s=28, facecolors=face, edgecolors=colour, linewidths=1.2)
    a1.set_ylabel("y (µm)")
    a2.set_ylabel("z (µm, plane offset)")
    a2.set_xlabel("x (µm)")
    a1.set_title(
        f"{res.n_neurons} neurons in 3D ({len(res.input_positions_um)} in the input plane "
        "alone; open = not found there); colour = cluster, grey = not clustered"
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _affinity(res: ActivityResult, path: Path) -> None:
    import matplotlib.pyplot as plt

    cl = res.clusters
    fig, (a1, a2) = plt.subplots(
        1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.2, 1]}, layout="constrained"
    )
    if cl is None or len(cl.labels) == 0:
        a1.text(0.5, 0.5, "no active neurons to cluster", ha="center", va="center")
        a2.axis("off")
    else:
        order = np.lexsort((-np.nan_to_num(res.activity[res.clustered_ids]), cl.labels))
        im = a1.imshow(cl.affinity[np.ix_(order, order)], cmap="viridis", interpolation="nearest")
        sizes = np.bincount(cl.labels, minlength=cl.k)
        for b in np.cumsum(sizes)[:-1]:
            a1.axhline(b - 0.5, color="w", lw=0.8)
            a1.axvline(b - 0.5, color="w", lw=0.8)
        fig.colorbar(im, ax=a1, fraction=0.046, label="affinity exp(−‖Δ‖²/σ²)")
        a1.set_title(f"affinity of {len(cl.labels)} active neurons, sorted by cluster")
        ev = cl.eigenvalues
        a2.plot(np.arange(1, len(ev) + 1), ev, "o-")
        a2.axvline(cl.k + 0.5, color="r", ls="--", label=f"eigengap → k = {cl.k}")
        a2.set_xlabel("index")
        a2.set_ylabel("eigenvalue of L v = λ D v")
        a2.legend()
        a2.set_title("eigengap")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_plots(res: ActivityResult, folder: Path) -> list[str]:
    """Write the three PNGs into ``folder``; returns their names."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    names = ["heatmap.png", "positions.png", "affinity.png"]
    _heatmap(res, folder / names[0])
    _positions(res, folder / names[1])
    _affinity(res, folder / names[2])
    return names
