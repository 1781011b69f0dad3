"""Cell types × patterns: the two enrichment tables of ``osnmf project`` on cells, side by side."""

from __future__ import annotations

import numpy as np

from osnmf.plotting.common import new_figure


def plot_cell_type_enrichment(location: np.ndarray, expression: np.ndarray, cell_types: list[str],
                              pattern_names: list[str]):
    """Heat maps of log2 enrichment ``(n_types, K)`` by location and by expression (1 = average → 0)."""
    n, k = location.shape
    fig = new_figure(2 * (0.45 * k + 1.5) + 1.5, 0.32 * n + 2.2)
    axes = fig.subplots(1, 2, sharey=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = [np.log2(np.where(m > 0, m, np.nan)) for m in (location, expression)]
    finite = np.concatenate([v[np.isfinite(v)] for v in logs] + [np.zeros(1)])
    lim = max(1.0, float(np.abs(finite).max()))
    im = None
    for ax, values, title in zip(axes, logs, ("by location", "by expression"), strict=True):
        im = ax.imshow(values, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(k))
        ax.set_xticklabels([p.split(" ")[0] for p in pattern_names], rotation=60, ha="right", fontsize=7)
        ax.set_title(title, fontsize=10)
    axes[0].set_yticks(range(n))
    axes[0].set_yticklabels(cell_types, fontsize=7)
    fig.colorbar(im, ax=list(axes), label="log2 enrichment", shrink=0.8)
    return fig
