"""Plots people would rather look at than read: heat maps, scatter plots, curves (PNG).

Figures are made with matplotlib's object API (`matplotlib.figure.Figure`), never through pyplot,
so plotting leaves the user's matplotlib backend and open figures alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib import lines, patches, ticker
from matplotlib.colors import ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure

#: Resolution of every taskrel PNG (dots per inch).
DPI = 130
#: The largest side of a square heat map (inches); more labels get a smaller font instead.
MAX_SQUARE_INCHES = 16.0
#: Height of one labelled row in the charts with one row per task (inches): an 8-point label fits.
ROW_INCHES = 0.16
#: Most rows in one panel of those charts; more rows are laid out in panels side by side.
ROWS_PER_PANEL = 70


def subplots(figsize: tuple[float, float], **options):
    """A new figure and its axes, outside pyplot (``Figure.subplots`` options)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(**options)


def save(fig: Figure, path: str | os.PathLike) -> None:
    """Write `fig` as a PNG at the resolution of every taskrel plot."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


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
    size = min(max(4.5, 0.55 * n + 2.5), MAX_SQUARE_INCHES)  # past ~24 labels the labels shrink instead
    fig, ax = subplots(figsize=(size + 1.2, size))
    font = min(10.0, max(4.0, 0.75 * 0.8 * size * 72 / max(n, 1)))  # ¾ of a label's share of the axis, in points
    scaled = values.copy()
    if diagonal_apart and n > 1:
        np.fill_diagonal(scaled, np.nan)
    finite = scaled[np.isfinite(scaled)]
    bound = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(scaled), cmap=cmap, norm=TwoSlopeNorm(0.0, -bound, bound))
    ax.set_xticks(range(n), labels, rotation=90 if n > 12 else 45, ha="right" if n <= 12 else "center",
                  fontsize=font)  # fmt: skip
    ax.set_yticks(range(n), labels, fontsize=font)
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


def _panels(n: int) -> list[np.ndarray]:
    """Row indices of each panel: at most `ROWS_PER_PANEL` rows in each, as even as possible."""
    return [part for part in np.array_split(np.arange(n), max(1, -(-n // ROWS_PER_PANEL))) if len(part)]


def _shade_rows(ax, rows: int) -> None:
    """Light bands behind every other row, so a label can be followed to its markers."""
    for r in range(1, rows, 2):
        ax.axhspan(r - 0.5, r + 0.5, color="#f2f2f2", zorder=0, lw=0)


def _save_with_header(fig: Figure, path: str | os.PathLike, title: str, handles: list, names: list[str]) -> None:
    """Save `fig` with the title and then a one-line legend above the axes, a fixed height whatever the figure's."""
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.62 / height))  # before the header: tight_layout would make room again
    fig.suptitle(title, fontsize=10, y=1 - 0.08 / height, va="top")
    fig.legend(handles, names, loc="upper center", ncol=len(names), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.32 / height))  # fmt: skip
    fig.savefig(path, dpi=DPI)


def dot_rows(
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    path: str | os.PathLike,
    *,
    title: str = "",
    xlabel: str = "",
    reference: float | None = None,
    reference_label: str = "",
    log: bool = False,
    stem: str | Sequence[str] = (),
    styles: dict[str, dict] | None = None,
) -> None:
    """A dot chart with one row per label, top to bottom in the order given, and one marker per series.

    The figure's height grows with the rows (`ROW_INCHES` each), so the labels never overlap; past
    `ROWS_PER_PANEL` rows, the rows continue in panels side by side that share the x axis.
    `reference` draws a vertical line (e.g. 1 for a ratio to a baseline, named by `reference_label`);
    the markers of the series named in `stem` are joined to it by a thin line. Non-finite values are not drawn.
    `styles` maps a series to ``Axes.scatter`` options (marker, color, facecolors, s, ...).
    """
    n = len(labels)
    data = {name: np.asarray(values, dtype=float) for name, values in series.items()}
    panels = _panels(n)
    rows = max(len(p) for p in panels)
    width = 6.5 if len(panels) == 1 else 5.2 * len(panels)
    fig, axes = subplots(figsize=(width, ROW_INCHES * rows + 1.9), ncols=len(panels), sharex=True, squeeze=False)
    markers = ["^", "o", "s", "D", "v"]
    for ax, part in zip(axes[0], panels, strict=True):
        y = np.arange(len(part))
        _shade_rows(ax, len(part))
        if reference is not None:
            ax.axvline(reference, color="#444444", lw=1.0, zorder=1)
            for name in [stem] if isinstance(stem, str) else stem:
                values = data[name][part]
                ok = np.isfinite(values)
                ax.hlines(y[ok], reference, values[ok], color="#999999", lw=0.8, zorder=1)
        for k, (name, values) in enumerate(data.items()):
            values = values[part]
            ok = np.isfinite(values)
            style = {"marker": markers[k % len(markers)], "s": 22, "zorder": 3, **(styles or {}).get(name, {})}
            ax.scatter(values[ok], y[ok], label=name, **style)
        ax.set_yticks(y, [labels[i] for i in part], fontsize=7 if rows > 30 else 8)
        ax.set_ylim(len(part) - 0.5, -0.5)
        ax.tick_params(axis="y", length=0)
        ax.grid(axis="x", color="#dddddd", lw=0.6, which="both")
        ax.set_axisbelow(True)
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel(xlabel, fontsize=9)
        ax.tick_params(axis="x", labelsize=8, labeltop=rows > 30)
    handles, names = axes[0][0].get_legend_handles_labels()
    if reference is not None and reference_label:
        handles.append(lines.Line2D([], [], color="#444444", lw=1.0))
        names.append(reference_label)
    _save_with_header(fig, path, title, handles, names)


def membership(
    values: np.ndarray,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    path: str | os.PathLike,
    *,
    categories: dict[int, tuple[str, str]],
    title: str = "",
) -> None:
    """A grid of categories: ``values[i, j]`` is the integer code of row i (e.g. a task) in column j (e.g. a group).

    `categories` maps every code to (colour, legend text). One row per row label, `ROW_INCHES` high,
    so the figure grows with the rows; past `ROWS_PER_PANEL` rows, the rows continue in panels side
    by side, each with the column labels on top and bottom.
    """
    values = np.asarray(values, dtype=int)
    codes = sorted(categories)
    index = np.searchsorted(codes, values)
    cmap = ListedColormap([categories[c][0] for c in codes])
    panels = _panels(len(row_labels))
    rows = max(len(p) for p in panels)
    columns = len(column_labels)
    panel_width = max(2.6, 0.32 * columns + 1.2)
    fig, axes = subplots(figsize=(max(6.0, panel_width * len(panels)), ROW_INCHES * rows + 1.9), ncols=len(panels),
                         squeeze=False)  # fmt: skip
    for ax, part in zip(axes[0], panels, strict=True):
        ax.imshow(index[part], cmap=cmap, vmin=-0.5, vmax=len(codes) - 0.5, aspect="auto", interpolation="nearest")
        ax.set_yticks(range(len(part)), [row_labels[i] for i in part], fontsize=7 if rows > 30 else 8)
        ax.set_xticks(range(columns), column_labels, fontsize=8, rotation=90 if columns > 12 else 0)
        ax.tick_params(length=0, labeltop=True)
        ax.set_xticks(np.arange(columns + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(len(part) + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", lw=1.0)
        ax.tick_params(which="minor", length=0)
        for side in ax.spines.values():
            side.set_visible(False)
    legend = [patches.Patch(facecolor=categories[c][0], edgecolor="#999999", label=categories[c][1])
               for c in codes]  # fmt: skip
    _save_with_header(fig, path, title, legend, [h.get_label() for h in legend])
