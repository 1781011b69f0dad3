"""Instability curves (both dissimilarities ± SD) with the PCA baseline."""

from __future__ import annotations

import pandas as pd
from matplotlib.ticker import MaxNLocator

from osnmf.plotting.common import new_figure


def plot_instability(table: pd.DataFrame, k_selected: int, pca: pd.DataFrame | None = None):
    """``table``/``pca``: columns k, hungarian, hungarian_sd, amari, amari_sd (one row per K)."""
    fig = new_figure(7, 4)
    ax = fig.subplots()
    series = [(table, "staNMF", "-")] + ([(pca, "PCA", "--")] if pca is not None and len(pca) else [])
    for frame, label, style in series:
        for metric, color in (("hungarian", "C0"), ("amari", "C1")):
            ax.errorbar(
                frame["k"], frame[metric], yerr=frame[f"{metric}_sd"], fmt=style, marker="o", ms=3,
                color=color, alpha=0.9 if label == "staNMF" else 0.5, capsize=2, label=f"{label} {metric}",
            )
    ax.axvline(k_selected, color="0.4", lw=1, ls=":")
    ax.annotate(f"K = {k_selected}", (k_selected, ax.get_ylim()[1]), ha="left", va="top", fontsize=9)
    ax.set_xlabel("number of patterns K")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("instability γ(K) (mean dissimilarity ± SD)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


PANEL_TITLES = ("Instability of the patterns", "Reconstruction error", "Consensus clustering")


def plot_selection_panel(panel: pd.DataFrame, k_selected: int):
    """The K-selection panel: γ ± SE; out-of-bag and in-sample error ± SE; consensus criteria.

    ``panel``: columns of :data:`osnmf.factorize.choose_k.criteria.PANEL_COLUMNS`, one row per K.
    """
    fig = new_figure(11, 3.4)
    axes = fig.subplots(1, 3)
    k = panel["k"]
    axes[0].errorbar(k, panel["gamma"], yerr=panel["gamma_se"], marker="o", ms=3, capsize=2)
    axes[0].set_ylabel("instability γ ± SE")
    axes[1].errorbar(k, panel["oob_error"], yerr=panel["oob_error_se"], marker="o", ms=3, capsize=2,
                     label="out-of-bag (held out)")
    axes[1].errorbar(k, panel["recon_error"], yerr=panel["recon_error_se"], marker="s", ms=3,
                     capsize=2, label="in-sample", alpha=0.7)
    axes[1].set_ylabel("relative reconstruction error ± SE")
    axes[1].legend(fontsize=8)
    axes[2].plot(k, panel["cophenetic"], marker="o", ms=3, label="cophenetic correlation")
    axes[2].plot(k, panel["dispersion"], marker="s", ms=3, label="dispersion")
    axes[2].set_ylabel("consensus parcellation")
    axes[2].legend(fontsize=8)
    for ax, title in zip(axes, PANEL_TITLES, strict=True):
        ax.set_title(title, fontsize=10)
        ax.axvline(k_selected, color="0.4", lw=1, ls=":")
        ax.set_xlabel("number of patterns K")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    return fig
