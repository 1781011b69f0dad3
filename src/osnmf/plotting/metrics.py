"""Spatial coherence and reconstruction figures."""

from __future__ import annotations

import numpy as np

from osnmf.plotting.common import new_figure


def plot_moran_box(values: dict[str, np.ndarray], title: str = "Moran's I of the patterns"):
    """Box plot of Moran's I per pattern set (each value array: any shape, flattened)."""
    fig = new_figure(5, 4)
    ax = fig.subplots()
    names = list(values)
    ax.boxplot([np.ravel(values[n]) for n in names], tick_labels=names)
    ax.set_ylabel("Moran's I")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    return fig


def plot_reconstruction_scatter(r_a: np.ndarray, r_b: np.ndarray, label_a: str = "staNMF", label_b: str = "PCA"):
    """Per-gene reconstruction accuracy of two pattern sets against each other."""
    fig = new_figure(4.5, 4.5)
    ax = fig.subplots()
    ax.scatter(r_b, r_a, s=6, alpha=0.5)
    lo = float(np.nanmin([np.nanmin(r_a), np.nanmin(r_b), 0]))
    ax.plot([lo, 1], [lo, 1], color="0.5", lw=1)
    ax.set_xlabel(f"{label_b} reconstruction r (mean {np.nanmean(r_b):.2f})")
    ax.set_ylabel(f"{label_a} reconstruction r (mean {np.nanmean(r_a):.2f})")
    ax.set_title("per-gene reconstruction accuracy", fontsize=10)
    return fig


def plot_patterns_per_gene(counts: np.ndarray, k: int):
    """Histogram of how many patterns each gene uses."""
    fig = new_figure(5, 3.5)
    ax = fig.subplots()
    ax.hist(counts, bins=np.arange(0.5, k + 1.5), rwidth=0.85)
    ax.set_xlabel("patterns used by a gene")
    ax.set_ylabel("genes")
    return fig
