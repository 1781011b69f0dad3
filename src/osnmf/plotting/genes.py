"""Gene figures: marker heat map, top marker images, coexpression networks, the ontology tree."""

from __future__ import annotations

import networkx as nx
import numpy as np
from scipy.cluster import hierarchy

from osnmf.plotting.common import PATTERN_CMAP, new_figure
from osnmf.plotting.patterns import label_orientation, mean_projection, mm_extent, view_image


def plot_marker_heatmap(importance: np.ndarray, gene_labels: list[str], pattern_names: list[str]):
    """Importance ``(n_genes_shown, K)`` of the top markers of every pattern."""
    fig = new_figure(0.5 * len(pattern_names) + 3, 0.16 * len(gene_labels) + 1.5)
    ax = fig.subplots()
    im = ax.imshow(importance, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(gene_labels)))
    ax.set_yticklabels(gene_labels, fontsize=6)
    ax.set_xticks(range(len(pattern_names)))
    ax.set_xticklabels(pattern_names, rotation=60, ha="right", fontsize=8)
    fig.colorbar(im, ax=ax, label="importance a_kj / Σ_k a_kj", shrink=0.8)
    return fig


def plot_marker_images(volumes, brain: np.ndarray, titles: list[list[str]], pattern_names: list[str],
                       spacing_um=(200.0, 200.0, 200.0)):
    """Sagittal mean projections of the top markers: ``volumes[i]`` holds pattern i's marker volumes
    ``(n_i, AP, DV, ML)`` (up to ``n_top``; fewer markers leave blank tiles, none repeated).

    Each image is scaled to its own maximum (one shared colour bar, 0…1).
    """
    k = len(volumes)
    n_top = max([len(v) for v in volumes] + [1])
    fig = new_figure(2.8 * n_top + 1.2, 1.5 * k + 0.7)
    axes = fig.subplots(k, n_top, squeeze=False)
    im = None
    for i in range(k):
        for j in range(n_top):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(pattern_names[i], fontsize=8)
            if j >= len(volumes[i]):
                ax.set_frame_on(False)
                continue
            image = view_image(mean_projection(volumes[i][j], brain, 2), 2)
            top = float(np.nanmax(image)) if np.isfinite(image).any() else 0.0
            im = ax.imshow(image / top if top > 0 else image, cmap=PATTERN_CMAP, vmin=0, vmax=1,
                           interpolation="nearest", extent=mm_extent(image.shape, 2, spacing_um))
            ax.set_title(titles[i][j], fontsize=7)
            if i == 0 and j == 0:
                label_orientation(ax, 2, fontsize=6)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, pad=0.01).set_label(
            "mean expression / its maximum", fontsize=7)
    return fig


def plot_networks(graphs: list[nx.Graph], titles: list[str], cols: int = 3):
    """Coexpression networks side by side, nodes on a circle (every edge visible).

    Edge width ∝ r, node size ∝ importance; hub genes (``hubs`` graph attribute) in red.
    """
    rows = max(1, int(np.ceil(len(graphs) / cols)))
    fig = new_figure(4.2 * cols, 4.0 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, graph, title in zip(axes, graphs, titles, strict=False):
        if graph.number_of_nodes():
            pos = nx.circular_layout(graph)
            hubs = set(str(graph.graph.get("hubs", "")).split(";"))
            sizes = [260 * float(graph.nodes[n].get("importance", 0.5)) + 40 for n in graph.nodes]
            colors = ["C3" if n in hubs else "C1" for n in graph.nodes]
            widths = [0.5 + 3 * max(float(d.get("r", 0)), 0) for _, _, d in graph.edges(data=True)]
            labels = {n: graph.nodes[n].get("gene", str(n)) for n in graph.nodes}
            nx.draw_networkx_edges(graph, pos, ax=ax, width=widths, alpha=0.7, edge_color="0.3")
            nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=sizes, node_color=colors, alpha=0.9)
            nx.draw_networkx_labels(graph, pos, labels=labels, ax=ax, font_size=7)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        ax.margins(0.2)
    for ax in axes[len(graphs):]:
        ax.axis("off")
    from matplotlib.lines import Line2D

    fig.legend(handles=[Line2D([], [], marker="o", linestyle="", color=c, label=t)
                        for c, t in (("C3", "hub gene"), ("C1", "other gene"))]
               + [Line2D([], [], color="0.3", label="edge: r in the top 5% of the network's pairs")],
               loc="lower center", ncol=3, fontsize=8, frameon=False)
    return fig


def plot_tree(linkage: np.ndarray, labels: list[str], title: str = "gene-expression-defined ontology"):
    """Dendrogram of a scipy linkage matrix with one label per leaf."""
    fig = new_figure(8, 0.35 * len(labels) + 1.2)
    ax = fig.subplots()
    hierarchy.dendrogram(linkage, labels=labels, orientation="left", ax=ax, leaf_font_size=8, color_threshold=0)
    ax.set_xlabel("1 − correlation between patterns")
    ax.set_title(title, fontsize=10)
    return fig
