"""Pictures of decentralised runs: MSD curves (dB) and learned task graphs (PNG).

Drawn with matplotlib's object API (`taskrel.plots.subplots`), never through pyplot: importing
or calling this module leaves the user's backend and open figures alone. Each function returns its
`matplotlib.figure.Figure` after saving it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from taskrel.decentral.algorithms import ALGORITHMS
from taskrel.plots import save, subplots

LABELS = {"noncoop": "non-cooperative", "consensus": "consensus (ATC)", "learned": "learned L̂", "true": "true L"}
STYLES = {"noncoop": ("C0", "-"), "consensus": ("C3", "-"), "learned": ("C2", "-"), "true": ("k", "--")}


def msd_curves(result, path: str | os.PathLike, *, title: str = "", smooth: int = 50) -> Figure:
    """Network MSD (dB, mean over runs) against iteration for every algorithm, switch marked.

    Runs longer than ``4·smooth`` iterations are drawn as a centred moving average over `smooth` iterations.
    """
    db = result.msd_db()
    fig, ax = subplots(figsize=(6.4, 4.2))
    x = np.arange(1, db.shape[1] + 1)
    kernel = np.ones(smooth) / smooth if db.shape[1] > 4 * smooth else np.ones(1)
    for a, name in enumerate(ALGORITHMS):
        colour, style = STYLES[name]
        y = np.convolve(db[a], kernel, mode="valid")
        ax.plot(x[: y.size] + (kernel.size - 1) // 2, y, color=colour, ls=style, lw=1.4, label=LABELS[name])
    ax.axvline(result.config.schedule.switch, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("iteration i")
    ax.set_ylabel("network MSD (dB)")
    ax.set_title(title or f"K={result.config.agents}, M={result.config.dim}, R={result.config.runs}")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    save(fig, path)
    return fig


def graph_picture(
    weights: np.ndarray,
    path: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    title: str = "",
    top: int | None = None,
    groups: Sequence[int] | None = None,
) -> Figure:
    """Draw a weighted graph on a circle: edge width ∝ weight; only the `top` strongest edges if given.

    `groups` (one integer per node) colours the nodes, e.g. by a known task family.
    """
    w = np.asarray(weights, float)
    k = w.shape[0]
    angle = 2 * np.pi * np.arange(k) / k
    pos = np.column_stack([np.cos(angle), np.sin(angle)])
    iu = np.triu_indices(k, 1)
    vals = w[iu]
    order = np.argsort(vals)[::-1]
    keep = order[: top if top is not None else (vals > 0).sum()]
    keep = keep[vals[keep] > 0]
    fig, ax = subplots(figsize=(6, 6))
    vmax = vals[keep].max() if keep.size else 1.0
    for idx in keep:
        i, j = iu[0][idx], iu[1][idx]
        ax.plot(*pos[[i, j]].T, color="C0", alpha=0.25 + 0.75 * vals[idx] / vmax, lw=0.5 + 3 * vals[idx] / vmax)
    colours = "C1" if groups is None else [f"C{1 + int(g) % 9}" for g in groups]
    ax.scatter(*pos.T, s=30 if k > 40 else 120, color=colours, zorder=3)
    if labels is not None and k <= 40:
        for (x, y), name in zip(pos * 1.1, labels, strict=True):
            ax.text(x, y, name, ha="center", va="center", fontsize=7)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title)
    save(fig, path)
    return fig


def save_learned_graph(
    laplacian: Sequence[Sequence[float]], names: Sequence[str], out_dir: str | os.PathLike, *, title: str = ""
) -> tuple[Path, Path]:
    """Write L̂ as ``learned_laplacian.csv`` (agent names as header and index) and ``learned_graph.png``.

    The picture draws the learned edge weights ``â_kl = max(-L̂_kl, 0)``.
    """
    lap = np.asarray(laplacian, float)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv, png = out / "learned_laplacian.csv", out / "learned_graph.png"
    pd.DataFrame(lap, index=list(names), columns=list(names)).to_csv(csv)
    weights = np.maximum(-(lap - np.diag(np.diag(lap))), 0.0)
    graph_picture(weights, png, labels=list(names), title=title)
    return csv, png
