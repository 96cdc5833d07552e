"""Spectral clustering of activity traces (the paper's Methods, Eqs. 14-17; scikit-learn).

Affinity ``S_ij = exp(−‖x_i − x_j‖² / σ²)`` between the ΔF/F0 traces ``x`` (σ = 1.5 in the
paper), ``W = S`` with a zero diagonal, ``L = D − W``. The number of clusters ``k`` is the
eigengap heuristic on the generalised eigenvalues of ``L v = λ D v``: the index of the
largest gap among the first ``k_max`` sorted eigenvalues. The clusters themselves come from
:class:`sklearn.cluster.SpectralClustering` on the precomputed ``W`` (spectral embedding of
the normalised Laplacian, then k-means).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import eigh
from scipy.spatial.distance import pdist, squareform

from live_deepz.errors import InputError

__all__ = ["Clusters", "affinity_matrix", "cluster_traces", "eigengap"]


@dataclass
class Clusters:
    """Result of :func:`cluster_traces` for ``n`` traces."""

    labels: NDArray[np.int64]
    """``(n,)`` cluster of each trace, ``0..k-1`` ordered by cluster size (largest first)."""
    k: int
    eigenvalues: NDArray[np.float64]
    """The smallest generalised eigenvalues of ``L v = λ D v`` (for the eigengap plot)."""
    affinity: NDArray[np.float64]
    """``(n, n)`` ``W``."""


def affinity_matrix(traces: NDArray[np.floating], sigma: float = 1.5) -> NDArray[np.float64]:
    """``W``: Gaussian affinity of the rows of ``traces`` (NaN counted as 0), zero diagonal."""
    if not sigma > 0:
        raise InputError(f"sigma must be > 0, got {sigma}")
    x = np.nan_to_num(np.asarray(traces, dtype=np.float64))
    if x.ndim != 2:
        raise InputError(f"traces must be (n, time points), got shape {x.shape}")
    if len(x) < 2:
        return np.zeros((len(x), len(x)))
    w = np.exp(-squareform(pdist(x, "sqeuclidean")) / (sigma * sigma))
    np.fill_diagonal(w, 0.0)
    return w


def eigengap(w: NDArray[np.floating], k_max: int = 10) -> tuple[int, NDArray[np.float64]]:
    """``(k, eigenvalues)``: the eigengap choice of ``k`` (1..k_max) for affinity ``w``."""
    a = np.asarray(w, dtype=np.float64)
    n = len(a)
    if n < 3:
        return 1, np.zeros(n)
    d = a.sum(axis=1) + 1e-12 * max(float(a.max()), 1e-300)  # keeps D positive definite
    lap = np.diag(d) - a
    m = min(int(k_max) + 1, n)
    ev = eigh(lap, np.diag(d), eigvals_only=True, subset_by_index=[0, m - 1])
    ev = np.sort(np.asarray(ev, dtype=np.float64))
    k = int(np.argmax(np.diff(ev))) + 1
    return k, ev


def cluster_traces(
    traces: NDArray[np.floating],
    sigma: float = 1.5,
    *,
    k: int | None = None,
    k_max: int = 10,
    seed: int = 0,
) -> Clusters:
    """Cluster the rows of ``traces`` (``k`` given, or chosen by :func:`eigengap`)."""
    from sklearn.cluster import SpectralClustering

    w = affinity_matrix(traces, sigma)
    n = len(w)
    k_gap, ev = eigengap(w, k_max)
    kk = k_gap if k is None else int(k)
    if kk < 1:
        raise InputError(f"the number of clusters must be >= 1, got {kk}")
    kk = min(kk, n)
    if kk <= 1 or n < 3:
        return Clusters(np.zeros(n, np.int64), max(min(kk, n), 0), ev, w)
    sc = SpectralClustering(
        n_clusters=kk, affinity="precomputed", assign_labels="kmeans", random_state=seed
    )
    raw = np.asarray(sc.fit_predict(w + 1e-12), dtype=np.int64)
    sizes = np.bincount(raw, minlength=kk)
    rank = np.empty(kk, np.int64)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(kk)
    return Clusters(rank[raw], kk, ev, w)
