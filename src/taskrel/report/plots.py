"""Plots people would rather look at than read: heat maps, scatter plots, curves (PNG, Agg)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import TwoSlopeNorm


def heatmap(
    values: np.ndarray,
    labels: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    annotate: bool | None = None,
) -> None:
    """Square heat map with a diverging colour scale centred on 0 and labelled axes."""
    values = np.asarray(values, dtype=float)
    n = len(labels)
    annotate = n <= 12 if annotate is None else annotate
    size = max(4.5, 0.55 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    finite = values[np.isfinite(values)]
    bound = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    image = ax.imshow(values, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound))
    ax.set_xticks(range(n), labels, rotation=90 if n > 12 else 45, ha="right" if n <= 12 else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if annotate:
        for i in range(n):
            for j in range(n):
                if np.isfinite(values[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{values[i, j]:.2g}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if abs(values[i, j]) > 0.6 * bound else "black",
                    )
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
