"""The report's section on the spatial gene coexpression networks: what an edge means, each
network's size and spread, the hub genes and the figure. Reads the markers stage's networks
(:class:`osnmf.results.MarkersResult`); computes nothing new.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from osnmf.plotting.genes import plot_networks
from osnmf.report.html import Section

NEAR_IDENTICAL = 0.01  # a network whose node pairs' r span less than this: near-identical images


def network_table(graphs: list, names: list[str]) -> pd.DataFrame:
    """One row per network: genes, node pairs, edges, the r an edge needs and the range of the pairs' r."""
    rows = []
    for g in graphs:
        attrs = g.graph
        rows.append({"pattern": names[int(attrs["pattern"])], "genes": g.number_of_nodes(),
                     "gene pairs": int(attrs.get("n_pairs", 0)), "edges": g.number_of_edges(),
                     "edge needs r ≥": float(attrs.get("threshold", np.nan)),
                     "lowest pair r": float(attrs.get("pair_r_min", np.nan)),
                     "highest pair r": float(attrs.get("pair_r_max", np.nan))})
    return pd.DataFrame(rows)


def shown_network_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`network_table` with its r to 4 decimals (0.9996, not the 3-digit "1.00" of a plain cell)."""
    columns = ["edge needs r ≥", "lowest pair r", "highest pair r"]
    return table.assign(**{c: [f"{v:.4f}" if np.isfinite(v) else "—" for v in table[c]] for c in columns})


def hub_rows(hubs: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The hub table as a reader wants it: pattern names, and no ``node`` column when it repeats ``gene``."""
    table = hubs.copy()
    table["pattern"] = [names[int(p)] for p in table["pattern"]]
    if "node" in table and (table["node"].astype(str) == table["gene"].astype(str)).all():
        table = table.drop(columns="node")
    return table


def network_text(table: pd.DataFrame, top_fraction: float, edge_quantile: float) -> list[str]:
    """What the nodes and edges are, the rule (the paper's) and, where it applies, why the edges say little."""
    text = [f"Each pattern's network holds the genes of the top {100 * top_fraction:g}% importance for it (at least "
            "10). An edge joins two of them when the Pearson r between their reconstructed images (coefficients × "
            f"patterns) is in the top {100 * (1 - edge_quantile):g}% of the network's gene pairs — the paper's rule. "
            "So an edge means: these two genes' spatial patterns are among the most alike in this set; it is not a "
            "measured interaction, and with 10 genes (45 pairs) the rule keeps only 2–3 edges per network. Edge width "
            "grows with r; hubs (highest sum of edge r) are listed below."]
    if len(table):
        spread = table["highest pair r"] - table["lowest pair r"]
        flat = table[spread < NEAR_IDENTICAL]
        if len(flat):
            text.append(f"In {len(flat)} of {len(table)} networks the gene pairs' r spans less than {NEAR_IDENTICAL} "
                        f"(lowest {flat['lowest pair r'].min():.4f}): their genes' reconstructed images are near-"
                        "identical, so which pairs pass the top-5% cut is decided by differences in the third or "
                        "fourth decimal, and the edges and hubs carry little information (as on the synthetic demo, "
                        "whose genes are copies of a few planted patterns).")
    return text


def network_section(state, names: list[str], save) -> Section:
    """The coexpression network section of the report (``save(fig, name)`` → PNG path)."""
    mk = state.markers
    graphs = mk.graphs()
    table = network_table(graphs, names)
    quantile = float(graphs[0].graph.get("edge_quantile", 0.95)) if graphs else 0.95
    figures = [(save(plot_networks(graphs, [names[int(g.graph["pattern"])] for g in graphs]), "networks"),
                "Spatial gene coexpression network of each pattern: nodes are its top-importance genes (node size ∝ "
                "importance), edges the top 5% of their pairwise r of reconstructed images (width ∝ r); hub genes in "
                "red, other genes in orange")] if graphs else []
    return Section("Spatial gene coexpression networks",
                   paragraphs=network_text(table, float(state.config.network_top_fraction), quantile),
                   tables=[(shown_network_table(table), "Each network: its genes, pairs, edges and the spread of the "
                                                        "pairs' r (networks/ has them as GraphML and JSON)"),
                           (hub_rows(mk.hubs, names), "Hub genes per network")],
                   figures=figures)
