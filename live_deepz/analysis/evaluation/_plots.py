"""PNG plots of an evaluation report (matplotlib's Agg canvas; no pyplot, no display).

Per sample: ``<sample>_curves.png`` (SSIM and RMSE vs Δz, model vs baseline, one colour per
input position), ``<sample>_montage.png`` (input; Deep-Z and the scanned ground truth at a few
Δz). Per bead sample also ``<sample>_fwhm.png`` (lateral and axial FWHM histograms, model vs
ground truth) and ``<sample>_localisation.png`` (axial localisation error vs input offset) and
``<sample>_xz.png`` (x–z slices through a few beads, virtual vs scanned stack).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from live_deepz.errors import InputError

__all__ = ["write_plots"]


def _figure(w: float, h: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_curves(name: str, rep: dict[str, Any], path: Path) -> Path:
    fig = _figure(10.0, 4.0)
    ax_s, ax_r = fig.subplots(1, 2)
    curves = rep["curves"]
    colours = ["C0", "C1", "C2", "C3", "C4", "C5", "C6"]
    for i, (key, cur) in enumerate(curves.items()):
        c = colours[i % len(colours)]
        dz = [r["dz_um"] for r in cur["per_dz"]]
        for ax, metric in ((ax_s, "ssim"), (ax_r, "rmse")):
            m = [r["model"][metric] for r in cur["per_dz"]]
            b = [r["baseline"][metric] for r in cur["per_dz"]]
            ax.plot(dz, m, "-o", color=c, ms=3, label=f"Deep-Z, input z0={key} µm")
            ax.plot(dz, b, "--", color=c, alpha=0.7, label=f"input (baseline), z0={key} µm")
    ax_s.set_ylabel("SSIM vs scanned plane")
    ax_r.set_ylabel("RMSE (normalised units)")
    for ax in (ax_s, ax_r):
        ax.set_xlabel("Δz (µm)")
        ax.grid(alpha=0.3)
    ax_s.legend(fontsize=7)
    fig.suptitle(f"{name}: refocused vs unrefocused input, against the mechanical scan")
    return _save(fig, path)


def plot_fwhm(name: str, beads: dict[str, Any], path: Path) -> Path:
    fig = _figure(10.0, 4.0)
    axes = fig.subplots(1, 2)
    pb = beads["per_bead"]
    for ax, key, title in (
        (axes[0], "lateral_fwhm_um", "lateral FWHM (µm)"),
        (axes[1], "axial_fwhm_um", "axial FWHM (µm)"),
    ):
        gt = np.array([v for v in pb["ground_truth"][key] if v is not None], dtype=float)
        md = np.array(
            [v for per in pb["model"].values() for v in per[key] if v is not None], dtype=float
        )
        gt, md = gt[np.isfinite(gt)], md[np.isfinite(md)]
        both = np.concatenate([gt, md])
        if both.size:
            bins = np.linspace(float(both.min()), float(both.max()) + 1e-6, 25)
            for vals, label in ((gt, "scanned stack"), (md, "Deep-Z, 1 image")):
                if vals.size:
                    ax.hist(
                        vals, bins=bins, alpha=0.6, label=f"{label} (n={vals.size})", density=True
                    )
        ax.set_xlabel(title)
        ax.set_ylabel("density")
        if both.size:
            ax.legend(fontsize=8)
    fig.suptitle(f"{name}: bead FWHM, Deep-Z virtual stack vs scanned stack")
    return _save(fig, path)


def plot_localisation(name: str, beads: dict[str, Any], path: Path) -> Path:
    fig = _figure(6.0, 4.0)
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    per = beads["per_bead"]["model"]
    offs, meds = [], []
    for key, d in per.items():
        e = np.array([v for v in d["error_um"] if v is not None], dtype=float)
        off = float(key)
        ax.scatter(off + rng.uniform(-0.3, 0.3, e.size), e, s=6, alpha=0.5, color="C0")
        if e.size:
            offs.append(off)
            meds.append(float(np.median(np.abs(e))))
    if offs:
        ax.plot(offs, meds, "-s", color="C3", label="median |error|")
    ax.axhspan(-0.5, 0.5, color="C2", alpha=0.1, label="±0.5 µm target")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("input offset from the bead plane (µm)")
    ax.set_ylabel("axial localisation error (µm)")
    ax.legend(fontsize=8)
    ax.set_title(f"{name}: bead z from one image")
    return _save(fig, path)


def plot_montage(name: str, mont: dict[str, Any], path: Path, crop: int = 128) -> Path:
    model, gt = np.asarray(mont["model"]), np.asarray(mont["ground_truth"])
    clean = mont.get("noise_free")
    n = model.shape[0]
    h, w = model.shape[1:]
    y0, x0 = max((h - crop) // 2, 0), max((w - crop) // 2, 0)
    sl = (slice(y0, y0 + crop), slice(x0, x0 + crop))
    rows = 2 if clean is None else 3
    fig = _figure(2.0 * (n + 1), 2.35 * rows)
    axes = fig.subplots(rows, n + 1, squeeze=False)
    inp = np.asarray(mont["input"])[sl]
    axes[0, 0].imshow(inp, cmap="gray", vmin=0, vmax=max(float(np.percentile(inp, 99.8)), 1e-6))
    axes[0, 0].set_title(f"input z0={mont['input_z_um']:g} µm", fontsize=8)
    for ax in axes[1:, 0]:
        ax.set_visible(False)
    for j in range(n):
        g, m = gt[j][sl], model[j][sl]
        vmax = max(float(np.percentile(g, 99.8)), float(np.percentile(m, 99.8)), 1e-6)
        axes[0, j + 1].imshow(m, cmap="gray", vmin=0, vmax=vmax)
        axes[1, j + 1].imshow(g, cmap="gray", vmin=0, vmax=vmax)
        axes[0, j + 1].set_title(f"Deep-Z Δz={mont['dz_um'][j]:g} µm", fontsize=8)
        axes[1, j + 1].set_title(f"scan z={mont['input_z_um'] + mont['dz_um'][j]:g} µm", fontsize=8)
        if clean is not None:  # the noise-free scan on the same scale
            axes[2, j + 1].imshow(np.asarray(clean[j])[sl], cmap="gray", vmin=0, vmax=vmax)
            axes[2, j + 1].set_title("noise-free scan", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{name} (central {min(crop, h)}×{min(crop, w)} px)", fontsize=9)
    return _save(fig, path)


def plot_bead_xz(name: str, xz: dict[str, Any], path: Path, pixel_size_um: float) -> Path:
    n = len(xz["model"])
    z = np.asarray(xz["z_um"])
    fig = _figure(1.7 * n + 0.5, 6.0)
    axes = fig.subplots(2, n, squeeze=False)
    for j in range(n):
        m, g = np.asarray(xz["model"][j]), np.asarray(xz["ground_truth"][j])
        half = (m.shape[1] - 1) / 2 * pixel_size_um
        ext = (-half, half, float(z[-1]), float(z[0]))
        vmax = max(float(g.max()), 1e-6)
        for row, (img, who) in enumerate(((m, "Deep-Z"), (g, "scan"))):
            ax = axes[row, j]
            ax.imshow(
                img,
                cmap="gray",
                vmin=0,
                vmax=max(vmax, float(img.max())),
                extent=ext,
                aspect="auto",
            )
            ax.axhline(xz["focus_z_um"][j], color="C3", lw=0.8, ls=":")
            ax.set_title(f"{who}, focus {xz['focus_z_um'][j]:+.1f} µm", fontsize=7)
            ax.tick_params(labelsize=6)
            if j == 0:
                ax.set_ylabel("stage z (µm)", fontsize=7)
        axes[1, j].set_xlabel("x (µm)", fontsize=7)
    fig.suptitle(
        f"{name}: x–z slices through beads; top: Deep-Z virtual stack from one image at "
        f"z0={xz['input_z_um']:g} µm; bottom: scanned stack (dotted: true focus)",
        fontsize=8,
    )
    return _save(fig, path)


def write_plots(
    report: dict[str, Any],
    montages: dict[str, dict[str, Any]],
    folder: str | os.PathLike[str],
) -> list[Path]:
    """Write every plot of ``report`` (and the ``montages``) into ``folder``; return paths."""
    out = Path(folder).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the plot folder {out}: {exc}") from None
    paths: list[Path] = []
    for name, rep in report["samples"].items():
        paths.append(plot_curves(name, rep, out / f"{name}_curves.png"))
        mont = montages.get(name) or {}
        if "model" in mont:
            paths.append(plot_montage(name, mont, out / f"{name}_montage.png"))
        if mont and mont.get("bead_xz"):
            px = float(report.get("model", {}).get("optics", {}).get("pixel_size_um", 1.0))
            paths.append(plot_bead_xz(name, mont["bead_xz"], out / f"{name}_xz.png", px))
        beads = rep.get("beads")
        if beads and beads["per_bead"]["model"]:
            paths.append(plot_fwhm(name, beads, out / f"{name}_fwhm.png"))
            paths.append(plot_localisation(name, beads, out / f"{name}_localisation.png"))
    return paths
