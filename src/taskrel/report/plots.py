"""Plots people would rather look at than read: heat maps, scatter plots, curves (PNG).

Figures are made with matplotlib's object API (`matplotlib.figure.Figure`), never through pyplot,
so plotting leaves the user's matplotlib backend and open figures alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure


def subplots(figsize: tuple[float, float], **options):
    """A new figure and its axes, outside pyplot (``Figure.subplots`` options)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(**options)


def save(fig: Figure, path: str | os.PathLike) -> None:
    """Write `fig` as a PNG at the resolution of every taskrel plot."""
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def heatmap(
    values: np.ndarray,
    labels: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    annotate: bool | None = None,
    diagonal_apart: bool = True,
) -> None:
    """Square heat map with a diverging colour scale centred on 0 and labelled axes.

    With `diagonal_apart`, the colour scale is set by the off-diagonal entries and the diagonal
    (a task's effect on itself, usually far larger) is drawn grey with its value written in.
    """
    values = np.asarray(values, dtype=float)
    n = len(labels)
    annotate = n <= 12 if annotate is None else annotate
    size = max(4.5, 0.55 * n + 2.5)
    fig, ax = subplots(figsize=(size + 1.2, size))
    scaled = values.copy()
    if diagonal_apart and n > 1:
        np.fill_diagonal(scaled, np.nan)
    finite = scaled[np.isfinite(scaled)]
    bound = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(scaled), cmap=cmap, norm=TwoSlopeNorm(0.0, -bound, bound))
    ax.set_xticks(range(n), labels, rotation=90 if n > 12 else 45, ha="right" if n <= 12 else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if annotate:
        for i in range(n):
            for j in range(n):
                if np.isfinite(values[i, j]):
                    dark = np.isfinite(scaled[i, j]) and abs(values[i, j]) > 0.6 * bound
                    ax.text(j, i, f"{values[i, j]:.2g}", ha="center", va="center", fontsize=7,
                            color="white" if dark else "black")  # fmt: skip
    fig.colorbar(image, ax=ax, shrink=0.8)
    save(fig, path)


def scatter(
    predicted: np.ndarray,
    measured: np.ndarray,
    path: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    title: str = "",
    xlabel: str = "measured gain",
    ylabel: str = "predicted gain",
    groups: Sequence[str] | None = None,
) -> None:
    """Predicted vs measured scatter with the identity line and Pearson r in the title."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    fig, ax = subplots(figsize=(5.2, 5))
    kinds = list(dict.fromkeys(groups)) if groups is not None else [None]
    for kind in kinds:
        mask = np.ones(len(measured), bool) if kind is None else np.asarray(groups) == kind
        ax.scatter(measured[mask], predicted[mask], s=18, alpha=0.75, label=kind)
    low = float(min(measured.min(), predicted.min()))
    high = float(max(measured.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="grey", lw=0.8, ls="--")
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    r = np.corrcoef(predicted, measured)[0, 1] if len(measured) > 1 and np.std(predicted) > 0 else float("nan")
    ax.set_title(f"{title}  (r = {r:.2f}, n = {len(measured)})" if title else f"r = {r:.2f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if groups is not None:
        ax.legend(fontsize=8)
    save(fig, path)


def grouped_bars(
    categories: Sequence[str],
    series: dict[str, Sequence[float]],
    path: str | os.PathLike,
    *,
    title: str = "",
    ylabel: str = "",
) -> None:
    """Side-by-side bars: one group of bars per category, one bar per series."""
    fig, ax = subplots(figsize=(max(6, 0.7 * len(categories) * max(1, len(series)) / 2 + 2), 4))
    width = 0.8 / len(series)
    x = np.arange(len(categories))
    for k, (name, values) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, categories)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    save(fig, path)


def curves(
    x: Sequence[float],
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
) -> None:
    """Lines with a shaded ±spread band: `series` maps a label to (means, spreads)."""
    fig, ax = subplots(figsize=(6, 4))
    for name, (mean, spread) in series.items():
        mean, spread = np.asarray(mean, float), np.asarray(spread, float)
        ax.plot(x, mean, marker="o", label=name)
        ax.fill_between(x, mean - spread, mean + spread, alpha=0.15)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    save(fig, path)
