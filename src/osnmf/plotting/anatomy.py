"""Anatomy figures: the pattern × region bubble plot and the best-combination matrix."""

from __future__ import annotations

import numpy as np

from osnmf.plotting.common import new_figure


def plot_bubble(r: np.ndarray, pattern_names: list[str], region_names: list[str], colors: list[str] | None = None,
                title: str = "Pearson r of each pattern with each medium-level region (bubble size ∝ r)"):
    """Bubble plot: patterns (rows) × regions (columns, ontology order); size ∝ positive r, colour = r.

    r: ``(K, n_regions)`` Pearson correlations.
    """
    k, n = r.shape
    fig = new_figure(max(8, 0.17 * n + 2), 0.35 * k + 1.6)
    ax = fig.subplots()
    yy, xx = np.mgrid[0:k, 0:n]
    size = 220 * np.clip(r, 0, None) ** 1.5
    sc = ax.scatter(xx.ravel(), yy.ravel(), s=size.ravel(), c=r.ravel(), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(n))
    ax.set_xticklabels(region_names, rotation=90, fontsize=6)  # dark text: readable on white
    ax.set_yticks(range(k))
    ax.set_yticklabels(pattern_names, fontsize=8)
    ax.set_xlim(-0.7, n - 0.3)
    ax.set_ylim(k - 0.5, -0.5)
    if colors:  # the Allen colour of each region as a marker strip under the bubbles
        hexes = [f"#{c}" if not str(c).startswith("#") else str(c) for c in colors]
        ax.set_ylim(k + 0.1, -0.5)
        ax.scatter(range(n), [k - 0.05] * n, marker="s", s=30, c=hexes, edgecolors="0.2", linewidths=0.4,
                   gid="allen-colours")
    fig.colorbar(sc, ax=ax, label="Pearson r", shrink=0.8)
    ax.set_title(title, fontsize=10)
    return fig


def plot_matrix(m: np.ndarray, row_names: list[str], col_names: list[str], title: str, label: str = "Pearson r"):
    """Annotated heat map, e.g. patterns × their best region combinations."""
    fig = new_figure(0.55 * len(col_names) + 3, 0.45 * len(row_names) + 2)
    ax = fig.subplots()
    im = ax.imshow(m, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(col_names)))
    ax.set_xticklabels(col_names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(row_names)))
    ax.set_yticklabels(row_names, fontsize=8)
    if m.size <= 900:
        for (i, j), value in np.ndenumerate(m):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if abs(value) > 0.6 else "black")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label=label, shrink=0.8)
    return fig
