"""Spatial gene coexpression networks: brute-force nodes/edges/hubs, planted truth, file round trips."""

import json

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from osnmf.errors import ConfigError, InputError
from osnmf.interpret.networks import (
    coexpression_networks,
    hub_table,
    n_network_nodes,
    pattern_covariance,
    read_network_json,
    reconstructed_correlation,
    write_graphml,
    write_network_json,
    write_networks,
)


def planted(seed=0, K=4, n_markers=12, n_background=120, grid=(18, 25)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: grid[0], : grid[1]]
    centres = rng.uniform([2, 2], [grid[0] - 2, grid[1] - 2], size=(K, 2))
    D = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 15.0).ravel() for cy, cx in centres]) + 0.01
    rows, truth = [], []
    for k in range(K):
        a = rng.uniform(0.0, 0.3, size=(n_markers, K))
        a[:, k] = rng.uniform(3.0, 5.0, n_markers)
        rows.append(a)
        truth += [k] * n_markers
    rows.append(rng.dirichlet(np.full(K, 2.0), n_background) * rng.uniform(1, 3, (n_background, 1)))
    truth += [-1] * n_background
    genes = [f"P{t}g{i}" if t >= 0 else f"bg{i}" for i, t in enumerate(truth)]
    return np.vstack(rows), D, genes, np.array(truth)


def test_correlation_without_materialising_matches_corrcoef():
    rng = np.random.default_rng(0)
    A = rng.gamma(1.0, 1.0, (15, 5))
    D = rng.gamma(1.0, 1.0, (5, 300))
    cov, mean = pattern_covariance(D)
    np.testing.assert_allclose(cov, np.cov(D, bias=True), atol=1e-12)
    np.testing.assert_allclose(mean, D.mean(1))
    np.testing.assert_allclose(reconstructed_correlation(A, cov), np.corrcoef(A @ D), atol=1e-10)
    A[2] = 0.0  # constant reconstruction: undefined correlation
    r = reconstructed_correlation(A, cov)
    assert np.isnan(r[2, [0, 1, 3]]).all() and r[2, 2] == 1.0


def test_node_count_rule():
    assert n_network_nodes(4082, 0.0025, 10) == 10
    assert n_network_nodes(4345, 0.0025, 10) == 11
    assert n_network_nodes(4345, 0.0025, 2) == 11
    assert n_network_nodes(200, 0.0025, 10) == 10
    assert n_network_nodes(6, 0.0025, 10) == 6


@pytest.mark.parametrize("combine", ["mean", "keep"])
def test_nodes_edges_and_hubs_match_brute_force(combine):
    rng = np.random.default_rng(1)
    A = rng.gamma(0.7, 1.0, (60, 4))
    D = rng.gamma(1.0, 1.0, (4, 200))
    genes = [f"g{i % 45}" for i in range(60)]  # 15 genes measured twice
    nets = coexpression_networks(A, D, genes, min_nodes=12, combine=combine)
    assert [n.pattern for n in nets] == [0, 1, 2, 3]
    if combine == "mean":
        frame = pd.DataFrame(A).groupby(pd.Series(genes), sort=False).mean()
        Ac, ids = frame.to_numpy(), list(frame.index)
    else:
        Ac, ids = A, [f"{g}#{i}" for i, g in enumerate(genes)]
    recon = Ac @ D  # brute force: materialise the reconstructed images
    for net in nets:
        k = net.pattern
        r = Ac[:, k] / Ac.sum(1)
        order = sorted(range(len(ids)), key=lambda j: -r[j])[:12]
        assert net.nodes == [ids[j] for j in order]
        C = np.corrcoef(recon[order])
        np.testing.assert_allclose(net.correlation, C, atol=1e-10)
        pairs = [(a, b, C[a, b]) for a in range(12) for b in range(a + 1, 12)]
        thr = np.quantile([p[2] for p in pairs], 0.95)
        assert net.threshold == pytest.approx(thr)
        expected = {frozenset((ids[order[a]], ids[order[b]])) for a, b, c in pairs if c >= thr - 1e-12}
        got = {frozenset(e) for e in net.graph.edges}
        assert got == expected
        assert len(got) == int(np.ceil(0.05 * len(pairs)))  # top 5% of 66 pairs
        assert net.graph.graph["n_pairs"] == 66
        assert net.graph.graph["pair_r_min"] == pytest.approx(min(p[2] for p in pairs))
        assert net.graph.graph["pair_r_max"] == pytest.approx(max(p[2] for p in pairs))
        for u, v, d in net.graph.edges(data=True):
            assert d["r"] == pytest.approx(C[net.nodes.index(u), net.nodes.index(v)])
        strength = {n: sum(d["r"] for _, _, d in net.graph.edges(n, data=True)) for n in net.graph}
        best = max((n for n in net.graph if net.graph.degree(n) > 0), key=lambda n: strength[n])
        assert net.hubs[0] == best
        assert net.graph.nodes[best]["is_hub"]
        for j in order:
            attrs = net.graph.nodes[ids[j]]
            assert attrs["importance"] == pytest.approx(r[j])
            assert attrs["assigned_pattern"] == int(np.argmax(Ac[j]))


def test_planted_networks_consist_of_planted_markers():
    A, D, genes, truth = planted(seed=2)
    rng = np.random.default_rng(3)
    A = A + 0.2 * np.abs(rng.normal(size=A.shape))
    nets = coexpression_networks(A, D, genes, min_nodes=10)
    truth_of = dict(zip(genes, truth, strict=True))
    for net in nets:
        precision = np.mean([truth_of[n] == net.pattern for n in net.nodes])
        assert precision == 1.0
        assert all(net.graph.nodes[n]["assigned_pattern"] == net.pattern for n in net.nodes)


def test_graphml_and_json_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    A = rng.gamma(0.7, 1.0, (40, 3))
    D = rng.gamma(1.0, 1.0, (3, 150))
    nets = coexpression_networks(A, D, [f"g{i}" for i in range(40)], min_nodes=8)
    net = nets[1]
    write_graphml(net, tmp_path / "n.graphml")
    back = nx.read_graphml(tmp_path / "n.graphml")
    assert set(back.nodes) == set(net.graph.nodes)
    assert {frozenset(e) for e in back.edges} == {frozenset(e) for e in net.graph.edges}
    for n, attrs in net.graph.nodes(data=True):
        for key, value in attrs.items():
            assert back.nodes[n][key] == (pytest.approx(value) if isinstance(value, float) else value), key
    for u, v, d in net.graph.edges(data=True):
        assert back.edges[u, v]["r"] == pytest.approx(d["r"])
    assert back.graph["pattern"] == 1 and back.graph["hubs"] == ";".join(net.hubs)

    write_network_json(net, tmp_path / "n.json")
    data = json.loads((tmp_path / "n.json").read_text())
    assert {"nodes", "links"} <= set(data)
    again = read_network_json(tmp_path / "n.json")
    assert nx.utils.graphs_equal(again, net.graph)

    written = write_networks(nets, tmp_path / "out")
    assert len(written) == 2 * 3 + 2
    assert not list((tmp_path / "out").glob(".*part"))
    edges = pd.read_csv(tmp_path / "out" / "edges.csv")
    assert len(edges) == sum(n.graph.number_of_edges() for n in nets)
    hubs = pd.read_csv(tmp_path / "out" / "hubs.csv")
    assert list(hubs[hubs["pattern"] == 1]["node"]) == net.hubs


def test_bad_input():
    A = np.ones((5, 2))
    with pytest.raises(InputError, match="K × voxels"):
        coexpression_networks(A, np.ones((3, 10)), list("abcde"))
    with pytest.raises(ConfigError, match="top_fraction"):
        coexpression_networks(A, np.ones((2, 10)), list("abcde"), top_fraction=0)
    with pytest.raises(ConfigError, match="edge_quantile"):
        coexpression_networks(A, np.ones((2, 10)), list("abcde"), edge_quantile=1.0)
    with pytest.raises(ConfigError, match="out of range"):
        coexpression_networks(A, np.ones((2, 10)), list("abcde"), patterns=[2])


def test_phantom_networks_are_planted_markers():
    import osnmf

    ph = osnmf.make_phantom(n_genes=120, n_patterns=5, n_markers=12, noise=0.1, missing=0.0, seed=1)
    nets = coexpression_networks(ph.coefficients, ph.patterns, list(ph.data.genes), min_nodes=10)
    gene_truth = dict(zip(ph.data.genes, ph.marker_of, strict=True))
    for net in nets:
        assert len(net.nodes) == 10
        assert all(gene_truth[n] == net.pattern for n in net.nodes)
        assert net.graph.number_of_edges() == 3  # ceil(5% of 45 pairs)


def test_report_network_text_table_and_hubs():
    """The report says what an edge is, flags networks of near-identical genes and drops the hub table's
    node column where it repeats the gene; the table's numbers are the graphs' (brute force above)."""
    from osnmf.report.network_section import hub_rows, network_table, network_text

    rng = np.random.default_rng(2)
    D = rng.gamma(1.0, 1.0, (3, 300))
    spread = rng.gamma(0.7, 1.0, (40, 3))
    same = np.tile([1.0, 0.05, 0.05], (40, 1)) + 1e-4 * rng.random((40, 3))  # near-identical images for PP1
    nets = coexpression_networks(np.vstack([same, spread]), D, [f"g{i}" for i in range(80)])
    table = network_table([n.graph for n in nets], ["PP1", "PP2", "PP3"])
    assert table["edges"].tolist() == [n.graph.number_of_edges() for n in nets]
    assert table["gene pairs"].tolist() == [45, 45, 45]
    text = " ".join(network_text(table, 0.0025, 0.95))
    assert "Pearson r between their reconstructed images" in text and "top 5% of the network's gene pairs" in text
    flat = table[table["highest pair r"] - table["lowest pair r"] < 0.01]
    assert len(flat) >= 1 and f"In {len(flat)} of 3 networks" in text
    assert "near-identical" not in " ".join(network_text(table[table["pattern"] != "PP1"].iloc[:0], 0.0025, 0.95))
    hubs = hub_rows(hub_table(nets), ["PP1", "PP2", "PP3"])
    assert "node" not in hubs and set(hubs["pattern"]) <= {"PP1", "PP2", "PP3"}
    kept = coexpression_networks(np.vstack([same, spread]), D, [f"g{i % 50}" for i in range(80)], combine="keep")
    assert "node" in hub_rows(hub_table(kept), ["PP1", "PP2", "PP3"])  # "g3#3" is not the gene: kept


def test_network_table_shows_r_to_four_decimals():
    from osnmf.report.network_section import shown_network_table

    table = pd.DataFrame({"pattern": ["PP1"], "edge needs r ≥": [0.99961], "lowest pair r": [0.2],
                          "highest pair r": [np.nan]})
    shown = shown_network_table(table).iloc[0]
    assert (shown["edge needs r ≥"], shown["lowest pair r"], shown["highest pair r"]) == ("0.9996", "0.2000", "—")
