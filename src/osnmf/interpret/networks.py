"""Spatial gene coexpression networks (sGCNs), one per principal pattern (spec §6).

For pattern ``k``: the nodes are the genes with the top ``top_fraction`` (0.25%) importance
``r_jk = a_jk / Σ_k a_jk`` for that pattern (at least ``min_nodes``); the edge weight between two
nodes is the Pearson correlation of their *reconstructed* images (rows of ``A D``); an edge is
kept when its correlation is at or above the ``edge_quantile`` (0.95) quantile of the subset's
pairwise correlations, i.e. in its top 5%.

The correlations never materialise ``A D``: with ``C = cov(D)`` the K × K covariance of the
patterns over voxels, ``cov(a_i D, a_j D) = a_i C a_jᵀ``, so a subset's correlation matrix costs
O(K² m) after one O(K² voxels) product.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

from osnmf.atomic import write_text
from osnmf.constraints import Interval
from osnmf.errors import ConfigError, InputError
from osnmf.interpret.markers import assign_patterns, combine_experiments, importance_scores


@dataclass
class CoexpressionNetwork:
    """The sGCN of one pattern.

    Attributes
    ----------
    pattern : 0-based pattern index.
    graph : undirected networkx graph. Node ids are gene symbols (``"symbol#row"`` when
        experiments are kept apart); node attributes ``gene``, ``experiment``, ``importance``,
        ``coefficient``, ``assigned_pattern``, ``weighted_degree``, ``degree``, ``is_hub``; edge
        attribute ``r`` (Pearson) and ``weight`` (= r); graph attributes ``pattern``,
        ``threshold``, ``edge_quantile``, ``n_candidates``, ``hubs`` (``;``-joined), ``n_pairs`` (node
        pairs with a defined r) and ``pair_r_min`` / ``pair_r_max`` (their range: how different the
        node genes' reconstructed images are at all).
    correlation : (m × m) Pearson matrix of the node genes' reconstructed images, node order.
    threshold : the correlation an edge needs (the ``edge_quantile`` quantile of the pairs).
    hubs : node ids with the highest weighted degree (sum of incident ``r``), best first.
    """

    pattern: int
    graph: nx.Graph
    correlation: np.ndarray
    threshold: float
    hubs: list[str] = field(default_factory=list)

    @property
    def nodes(self) -> list[str]:
        return list(self.graph.nodes)

    def edges_table(self) -> pd.DataFrame:
        """Edges as a DataFrame: ``pattern``, ``source``, ``target``, ``r``, sorted by r."""
        rows = [(self.pattern, u, v, d["r"]) for u, v, d in self.graph.edges(data=True)]
        table = pd.DataFrame(rows, columns=["pattern", "source", "target", "r"])
        return table.sort_values("r", ascending=False, kind="stable").reset_index(drop=True)


def pattern_covariance(D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Covariance (K × K, population, over voxels) and mean (K,) of the pattern rows of ``D``."""
    D = np.asarray(D, dtype=np.float64)
    mean = D.mean(axis=1)
    centred = D - mean[:, None]
    return centred @ centred.T / D.shape[1], mean


def reconstructed_correlation(A_sub: np.ndarray, cov_D: np.ndarray) -> np.ndarray:
    """Pearson correlation between the reconstructed images ``A_sub @ D`` (m × m).

    ``cov_D`` is :func:`pattern_covariance`'s K × K matrix. A constant reconstructed image has no
    defined correlation: its row and column are NaN (diagonal 1).
    """
    A_sub = np.asarray(A_sub, dtype=np.float64)
    cov = A_sub @ cov_D @ A_sub.T
    var = np.clip(np.diag(cov), 0.0, None)
    sd = np.sqrt(var)
    scale = np.max(var) if var.size else 0.0
    ok = var > 1e-12 * max(scale, np.finfo(float).tiny)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.outer(sd, sd)
    r = np.clip(r, -1.0, 1.0)
    r[~ok, :] = np.nan
    r[:, ~ok] = np.nan
    np.fill_diagonal(r, 1.0)
    return r


def n_network_nodes(n_genes: int, top_fraction: float, min_nodes: int) -> int:
    """Nodes per network: ``round(top_fraction × n_genes)``, at least ``min_nodes``, at most all genes.

    With the paper's 4,082–4,345 genes and 0.25% this gives 10–11 nodes.
    """
    return int(min(n_genes, max(min_nodes, math.floor(top_fraction * n_genes + 0.5))))


def _check_params(top_fraction: float, min_nodes: int, edge_quantile: float, n_hubs: int) -> None:
    Interval(Real, 0, 1, closed="right").check("top_fraction", top_fraction)
    Interval(Integral, 2, why="a network needs two genes").check("min_nodes", min_nodes)
    Interval(Real, 0, 1, closed="left").check("edge_quantile", edge_quantile)
    Interval(Integral, 0).check("n_hubs", n_hubs)


def coexpression_networks(
    A: np.ndarray,
    D: np.ndarray,
    genes: Sequence[str],
    top_fraction: float = 0.0025,
    min_nodes: int = 10,
    edge_quantile: float = 0.95,
    combine: str = "mean",
    n_hubs: int = 3,
    patterns: Sequence[int] | None = None,
) -> list[CoexpressionNetwork]:
    """Build the spatial gene coexpression network of each pattern.

    Parameters
    ----------
    A : (experiments × K) non-negative coefficients.
    D : (K × voxels) patterns (only their K × K covariance over voxels is used).
    genes : gene symbol per row of ``A``.
    top_fraction : share of genes (by importance for the pattern) that become nodes; 0.0025 = 0.25%.
    min_nodes : minimum number of nodes (used when ``top_fraction × genes`` is smaller); capped at
        the number of genes.
    edge_quantile : an edge is kept when its r is ≥ this quantile (numpy linear interpolation) of
        the subset's m(m−1)/2 pairwise correlations (undefined pairs excluded).
    combine : ``"mean"`` (default, as the reference) averages the coefficient rows of each gene
        symbol; ``"keep"`` keeps experiments as separate nodes.
    n_hubs : how many hub genes to list (highest weighted degree, only nodes with an edge).
    patterns : which patterns (0-based); all by default.

    Returns
    -------
    list of :class:`CoexpressionNetwork`, one per requested pattern, in order.
    """
    _check_params(top_fraction, min_nodes, edge_quantile, n_hubs)
    A_c, genes_c, experiments, _ = combine_experiments(A, genes, combine)
    D = np.asarray(D)
    if D.ndim != 2 or D.shape[0] != A_c.shape[1]:
        raise InputError(f"patterns D must be K × voxels with K = {A_c.shape[1]} (columns of A), got {D.shape}")
    if not np.isfinite(D).all():
        raise InputError("patterns D contain NaN or infinite values")
    K = A_c.shape[1]
    wanted = list(range(K)) if patterns is None else [int(p) for p in patterns]
    for p in wanted:
        if not 0 <= p < K:
            raise ConfigError(f"pattern {p} out of range 0..{K - 1}")

    cov_D, _ = pattern_covariance(D)
    r_all = importance_scores(A_c)
    assigned = assign_patterns(A_c)
    m = n_network_nodes(A_c.shape[0], top_fraction, int(min_nodes))
    if combine == "keep":
        ids = [f"{g}#{e}" for g, e in zip(genes_c, experiments, strict=True)]
    else:
        ids = list(genes_c)

    networks = []
    for k in wanted:
        order = np.argsort(-r_all[:, k], kind="stable")[:m]
        corr = reconstructed_correlation(A_c[order], cov_D)
        iu = np.triu_indices(len(order), 1)
        pair_r = corr[iu]
        finite = np.isfinite(pair_r)
        threshold = float(np.quantile(pair_r[finite], edge_quantile)) if finite.any() else float("nan")

        graph = nx.Graph(pattern=int(k), threshold=threshold, edge_quantile=float(edge_quantile),
                         n_candidates=int(A_c.shape[0]), combine=combine, n_pairs=int(finite.sum()),
                         pair_r_min=float(pair_r[finite].min()) if finite.any() else float("nan"),
                         pair_r_max=float(pair_r[finite].max()) if finite.any() else float("nan"))
        for j in order:
            graph.add_node(
                ids[j],
                gene=genes_c[j],
                experiment=int(experiments[j]),
                importance=float(r_all[j, k]),
                coefficient=float(A_c[j, k]),
                assigned_pattern=int(assigned[j]),
            )
        for a, b, r in zip(iu[0], iu[1], pair_r, strict=True):
            if np.isfinite(r) and r >= threshold:
                graph.add_edge(ids[order[a]], ids[order[b]], r=float(r), weight=float(r))

        strength = dict(graph.degree(weight="weight"))
        for node in graph.nodes:
            graph.nodes[node]["weighted_degree"] = float(strength[node])
            graph.nodes[node]["degree"] = int(graph.degree(node))
        ranked = sorted((n for n in graph.nodes if graph.degree(n) > 0), key=lambda n: -strength[n])
        hubs = ranked[: int(n_hubs)]
        for node in graph.nodes:
            graph.nodes[node]["is_hub"] = node in hubs
        graph.graph["hubs"] = ";".join(hubs)
        networks.append(CoexpressionNetwork(int(k), graph, corr, threshold, hubs))
    return networks


def hub_table(networks: Sequence[CoexpressionNetwork]) -> pd.DataFrame:
    """Hub genes of every network: ``pattern``, ``hub_rank``, ``node``, ``gene``, ``weighted_degree``, ``degree``."""
    rows = []
    for net in networks:
        for i, node in enumerate(net.hubs, start=1):
            attrs = net.graph.nodes[node]
            rows.append((net.pattern, i, node, attrs["gene"], attrs["weighted_degree"], attrs["degree"]))
    return pd.DataFrame(rows, columns=["pattern", "hub_rank", "node", "gene", "weighted_degree", "degree"])


def _graph_of(network: CoexpressionNetwork | nx.Graph) -> nx.Graph:
    return network.graph if isinstance(network, CoexpressionNetwork) else network


def write_graphml(network: CoexpressionNetwork | nx.Graph, path: str | os.PathLike) -> Path:
    """Write a network as GraphML (readable by Cytoscape and ``networkx.read_graphml``), atomically."""
    graph = _graph_of(network)
    text = "\n".join(nx.generate_graphml(graph, encoding="utf-8", prettyprint=True))
    return write_text(Path(path), text + "\n")


def network_to_json(network: CoexpressionNetwork | nx.Graph) -> dict:
    """Node-link dictionary of a network (``networkx.node_link_data`` with ``edges="links"``)."""
    try:
        return nx.node_link_data(_graph_of(network), edges="links")
    except TypeError:  # networkx < 3.4 has no ``edges`` keyword (and uses "links" already)
        return nx.node_link_data(_graph_of(network))


def write_network_json(network: CoexpressionNetwork | nx.Graph, path: str | os.PathLike) -> Path:
    """Write a network as node-link JSON, atomically; read back with :func:`read_network_json`."""
    return write_text(Path(path), json.dumps(network_to_json(network), indent=1) + "\n")


def network_from_json(data: dict) -> nx.Graph:
    """The graph of a node-link dictionary (:func:`network_to_json`)."""
    try:
        return nx.node_link_graph(data, edges="links")
    except TypeError:  # networkx < 3.4
        return nx.node_link_graph(data)


def read_network_json(path: str | os.PathLike) -> nx.Graph:
    """Read a network written by :func:`write_network_json`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read network JSON ({exc})") from None
    return network_from_json(data)


def edges_table(networks: Sequence[CoexpressionNetwork]) -> pd.DataFrame:
    """Every network's edges (:meth:`CoexpressionNetwork.edges_table`) in one table."""
    return pd.concat([n.edges_table() for n in networks], ignore_index=True) if networks else pd.DataFrame()


def write_network_files(
    graphs: Sequence[nx.Graph], edges: pd.DataFrame, hubs: pd.DataFrame, out_dir: str | os.PathLike,
    formats: Sequence[str] = ("graphml", "json"),
) -> list[Path]:
    """Write each graph as ``out_dir/PP<k+1>.graphml`` / ``.json`` (k: its 0-based ``pattern`` attribute,
    so the files are named like the patterns), plus ``edges.csv`` and ``hubs.csv``."""
    bad = set(formats) - {"graphml", "json"}
    if bad:
        raise ConfigError(f"unknown network format(s) {sorted(bad)}; use 'graphml' and/or 'json'")
    out = Path(out_dir)
    written = []
    for graph in graphs:
        k = int(graph.graph["pattern"])
        if "graphml" in formats:
            written.append(write_graphml(graph, out / f"PP{k + 1}.graphml"))
        if "json" in formats:
            written.append(write_network_json(graph, out / f"PP{k + 1}.json"))
    written.append(write_text(out / "edges.csv", edges.to_csv(index=False)))
    written.append(write_text(out / "hubs.csv", hubs.to_csv(index=False)))
    return written


def write_networks(
    networks: Sequence[CoexpressionNetwork], out_dir: str | os.PathLike, formats: Sequence[str] = ("graphml", "json")
) -> list[Path]:
    """Write every network as ``out_dir/PP<k+1>.graphml`` / ``.json`` plus ``edges.csv`` and ``hubs.csv``."""
    return write_network_files([n.graph for n in networks], edges_table(networks), hub_table(networks), out_dir,
                               formats)
