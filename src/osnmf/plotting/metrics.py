"""Spatial coherence and reconstruction figures."""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator

from osnmf.plotting.common import new_figure


def plot_moran_box(values: dict[str, np.ndarray], title: str = "Moran's I of the patterns",
                   upper: float | None = None):
    """Box plot of Moran's I per pattern set (each value array: any shape, flattened), every value
    drawn as a point; ``upper``: the largest I possible on the weights graph (dashed line)."""
    fig = new_figure(5, 4)
    ax = fig.subplots()
    names = list(values)
    data = [np.ravel(values[n])[np.isfinite(np.ravel(values[n]))] for n in names]
    ax.boxplot(data, tick_labels=names, showfliers=False)
    jitter = np.random.default_rng(0)
    for i, v in enumerate(data, start=1):
        ax.scatter(i + jitter.uniform(-0.12, 0.12, v.size), v, s=8, alpha=0.5, color="C0", zorder=3)
    if upper is not None and np.isfinite(upper):
        ax.axhline(upper, color="C3", lw=1, ls="--", label=f"largest possible I on this graph ({upper:.3f})")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_ylabel("Moran's I (binary face-neighbour weights)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    return fig


def plot_reconstruction_scatter(r_a: np.ndarray, r_b: np.ndarray, label_a: str = "staNMF", label_b: str = "PCA"):
    """Per-gene reconstruction accuracy of two pattern sets: scatter on the data's range (left) and
    the histogram of the per-gene difference (right)."""
    r_a, r_b = np.asarray(r_a, dtype=float), np.asarray(r_b, dtype=float)
    fig = new_figure(9, 4.2)
    ax, hx = fig.subplots(1, 2)
    ax.scatter(r_b, r_a, s=8, alpha=0.5)
    both = np.concatenate([r_a[np.isfinite(r_a)], r_b[np.isfinite(r_b)]])
    lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    pad = max(0.05 * (hi - lo), 1e-3)
    lo, hi = lo - pad, hi + pad
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=1, label="equal accuracy")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{label_b} reconstruction r (mean {np.nanmean(r_b):.3f})")
    ax.set_ylabel(f"{label_a} reconstruction r (mean {np.nanmean(r_a):.3f})")
    ax.set_title("per-gene reconstruction accuracy", fontsize=10)
    ax.legend(fontsize=7)
    diff = (r_a - r_b)[np.isfinite(r_a - r_b)]
    hx.hist(diff, bins=min(40, max(5, diff.size // 3)), color="C0", alpha=0.8)
    hx.axvline(0, color="0.3", lw=1)
    hx.xaxis.set_major_locator(MaxNLocator(5))
    better = int((diff > 0).sum())
    hx.set_xlabel(f"r({label_a}) − r({label_b}) per gene")
    hx.set_ylabel("genes")
    hx.set_title(f"{label_a} better for {better} of {diff.size} genes", fontsize=10)
    return fig


def plot_patterns_per_gene(counts: np.ndarray, k: int,
                           title: str = "Patterns per gene (coefficient above 1% of the gene's total)"):
    """Histogram of how many patterns each gene uses."""
    fig = new_figure(5, 3.5)
    ax = fig.subplots()
    ax.hist(counts, bins=np.arange(0.5, k + 1.5), rwidth=0.85)
    ax.set_xlabel("patterns used by a gene")
    ax.set_ylabel("genes")
    ax.set_title(title, fontsize=10)
    return fig
