"""Marker genes: importance, assignment, ranking, overlap tests (brute force and planted truth)."""

from math import comb

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.stats import false_discovery_control
from sklearn.decomposition import NMF

from osnmf.errors import ConfigError, InputError
from osnmf.interpret.markers import benjamini_hochberg, marker_genes, marker_overlap, top_markers


def planted(seed=0, K=5, n_markers=12, n_background=150, grid=(20, 30)):
    """Planted A (genes × K), D (K × voxels), symbols, and the planted pattern of each gene (-1 = none)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: grid[0], : grid[1]]
    centres = rng.uniform([2, 2], [grid[0] - 2, grid[1] - 2], size=(K, 2))
    D = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0).ravel() for cy, cx in centres]) + 0.01
    rows, truth = [], []
    for k in range(K):
        a = rng.uniform(0.0, 0.3, size=(n_markers, K))
        a[:, k] = rng.uniform(3.0, 5.0, n_markers)
        rows.append(a)
        truth += [k] * n_markers
    rows.append(rng.dirichlet(np.full(K, 2.0), n_background) * rng.uniform(1, 3, (n_background, 1)))
    truth += [-1] * n_background
    A = np.vstack(rows)
    genes = [f"P{t}g{i}" if t >= 0 else f"bg{i}" for i, t in enumerate(truth)]
    return A, D, genes, np.array(truth)


def precision_at(markers, truth_of_gene, k, n=10):
    top = top_markers(markers, n=n)
    top = top[top["pattern"] == k]
    return float(np.mean([truth_of_gene[g] == k for g in top["gene"]]))


def test_importance_assignment_and_ranks_match_brute_force():
    rng = np.random.default_rng(1)
    A = rng.gamma(0.5, 1.0, size=(40, 4))
    A[3] = 0.0  # an all-zero gene: importance 0, unassigned
    genes = [f"g{i}" for i in range(40)]
    res = marker_genes(A, genes)
    t = res.table
    assert len(t) == 40 * 4
    for j in range(40):
        total = sum(A[j])
        for k in range(4):
            row = t[(t["experiment"] == j) & (t["pattern"] == k)].iloc[0]
            expected = A[j, k] / total if total > 0 else 0.0
            assert row["importance"] == pytest.approx(expected, abs=1e-12)
            assert row["coefficient"] == A[j, k]
            best = max(range(4), key=lambda kk: A[j, kk]) if total > 0 else -1
            assert row["assigned_pattern"] == best
            assert row["assigned"] == (best == k)
    # counts and ranks
    for k in range(4):
        members = [j for j in range(40) if A[j].sum() > 0 and int(np.argmax(A[j])) == k]
        assert res.counts[k] == len(members)
        by_importance = sorted(members, key=lambda j: -A[j, k] / A[j].sum())
        sub = t[(t["pattern"] == k) & t["assigned"]].sort_values("marker_rank")
        assert list(sub["experiment"]) == by_importance
        assert list(sub["marker_rank"]) == list(range(1, len(members) + 1))
        all_sorted = sorted(range(40), key=lambda j: -(A[j, k] / A[j].sum() if A[j].sum() > 0 else 0.0))
        assert list(t[t["pattern"] == k].sort_values("rank")["experiment"]) == all_sorted
    assert (t.loc[~t["assigned"], "marker_rank"] == 0).all()
    assert res.counts.sum() == 39


def test_combine_mean_averages_experiments_per_gene():
    rng = np.random.default_rng(2)
    A = rng.gamma(1.0, 1.0, size=(9, 3))
    genes = ["a", "b", "a", "c", "b", "a", "d", "c", "e"]
    res = marker_genes(A, genes, combine="mean")
    expected = pd.DataFrame(A).groupby(pd.Series(genes), sort=False).mean()
    assert res.genes == list(expected.index)
    assert (res.experiments == -1).all()
    for gene, row in expected.iterrows():
        sub = res.table[res.table["gene"] == gene].sort_values("pattern")
        np.testing.assert_allclose(sub["coefficient"], row.to_numpy())
        np.testing.assert_allclose(sub["importance"], row.to_numpy() / row.sum())
        assert (sub["n_experiments"] == genes.count(gene)).all()
    keep = marker_genes(A, genes, combine="keep")
    assert len(keep.table) == 27 and keep.table["gene"].value_counts()["a"] == 9


def test_top_markers_are_highest_importance_assigned_genes():
    A, D, genes, truth = planted(seed=3)
    res = marker_genes(A, genes)
    top = top_markers(res, n=3)
    for k in range(A.shape[1]):
        r = A[:, k] / A.sum(1)
        members = [j for j in range(len(genes)) if np.argmax(A[j]) == k]
        best = sorted(members, key=lambda j: -r[j])[:3]
        sub = top[top["pattern"] == k]
        assert list(sub["gene"]) == [genes[j] for j in best]
        assert list(sub["marker_rank"]) == [1, 2, 3]
    assert top_markers(res.table, n=3).equals(top)


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_planted_markers_rank_first_with_noisy_coefficients(noise):
    A, D, genes, truth = planted(seed=4)
    rng = np.random.default_rng(5)
    A_noisy = A + noise * np.abs(rng.normal(size=A.shape))
    res = marker_genes(A_noisy, genes)
    truth_of = dict(zip(genes, truth, strict=True))
    precisions = [precision_at(res, truth_of, k) for k in range(A.shape[1])]
    assert min(precisions) == 1.0, precisions


def test_planted_markers_recovered_by_fitted_nmf():
    """Fit NMF to X = A D + noise, match patterns to the planted ones (Hungarian), measure P@10."""
    A, D, genes, truth = planted(seed=6)
    rng = np.random.default_rng(7)
    X = A @ D
    X = np.clip(X + 0.02 * X.std() * rng.normal(size=X.shape), 0, None)
    model = NMF(n_components=A.shape[1], init="nndsvd", solver="cd", tol=1e-4, max_iter=1000, random_state=0)
    A_fit = model.fit_transform(X)
    D_fit = model.components_
    corr = np.corrcoef(D, D_fit)[: len(D), len(D):]
    rows, cols = linear_sum_assignment(-corr)
    assert corr[rows, cols].min() > 0.9
    res = marker_genes(A_fit[:, cols], genes)
    truth_of = dict(zip(genes, truth, strict=True))
    precisions = [precision_at(res, truth_of, k) for k in range(A.shape[1])]
    assert np.mean(precisions) >= 0.9, precisions
    assert min(precisions) >= 0.8, precisions


def brute_hypergeom_sf(x, M, n, N):
    total = comb(M, N)
    return sum(comb(n, i) * comb(M - n, N - i) for i in range(x, min(n, N) + 1)) / total


def test_marker_overlap_counts_and_hypergeometric_p_match_brute_force():
    A, D, genes, truth = planted(seed=8, K=3, n_markers=8, n_background=30)
    res = marker_genes(A, genes)
    rng = np.random.default_rng(9)
    ext_rows = []
    for g, t in zip(genes, truth, strict=True):
        if t == 0 and rng.random() < 0.8:
            ext_rows.append((g, "cortex"))
        if rng.random() < 0.15:
            ext_rows.append((g, "random"))
    ext_rows.append(("NotInUniverse", "cortex"))
    external = pd.DataFrame(ext_rows, columns=["gene", "label"])
    out = marker_overlap(res, external)
    assert len(out) == 3 * 2
    universe = set(genes)
    M = len(universe)
    for _, row in out.iterrows():
        pset = {genes[j] for j in range(len(genes)) if np.argmax(A[j]) == row["pattern"]}
        lset = set(external.loc[external["label"] == row["label"], "gene"]) & universe
        shared = pset & lset
        assert row["overlap"] == len(shared)
        assert (row["n_pattern"], row["n_label"], row["n_universe"]) == (len(pset), len(lset), M)
        assert row["genes"] == ";".join(sorted(shared))
        assert row["p_value"] == pytest.approx(brute_hypergeom_sf(len(shared), M, len(lset), len(pset)), rel=1e-9)
        assert row["expected"] == pytest.approx(len(pset) * len(lset) / M)
    cortex0 = out[(out["pattern"] == 0) & (out["label"] == "cortex")].iloc[0]
    assert cortex0["p_value"] < 1e-3 and cortex0["fold_enrichment"] > 2
    np.testing.assert_allclose(out["q_value"], false_discovery_control(out["p_value"]))
    top2 = marker_overlap(res, external, n_top=2)
    assert (top2["n_pattern"] <= 2).all()


def test_benjamini_hochberg_matches_scipy():
    p = np.random.default_rng(10).uniform(size=50) ** 3
    np.testing.assert_allclose(benjamini_hochberg(p), false_discovery_control(p))


def test_bad_input_raises_one_line_errors():
    A = np.ones((3, 2))
    with pytest.raises(InputError, match="gene symbols"):
        marker_genes(A, ["a", "b"])
    with pytest.raises(InputError, match=">= 0"):
        marker_genes(-A, ["a", "b", "c"])
    with pytest.raises(InputError, match="NaN"):
        marker_genes(np.full((3, 2), np.nan), ["a", "b", "c"])
    with pytest.raises(ConfigError, match="combine"):
        marker_genes(A, ["a", "b", "c"], combine="max")
    res = marker_genes(A, ["a", "b", "c"])
    with pytest.raises(InputError, match="columns"):
        marker_overlap(res, pd.DataFrame({"symbol": ["a"]}))
    with pytest.raises(ConfigError):
        top_markers(res, n=0)


def test_phantom_markers_precision_at_10_with_fitted_nmf():
    """On the synthetic atlas (12 planted markers per pattern), NMF + ranking finds them: P@10 = 1."""
    import osnmf

    ph = osnmf.make_phantom(n_genes=160, n_patterns=6, n_markers=12, noise=0.1, missing=0.0, seed=0)
    X, _ = ph.data.to_matrix()
    model = NMF(n_components=6, init="nndsvd", solver="cd", tol=1e-4, max_iter=500, random_state=0)
    A_fit = model.fit_transform(np.nan_to_num(X))
    corr = np.corrcoef(ph.patterns, model.components_)[:6, 6:]
    rows, cols = linear_sum_assignment(-corr)
    assert corr[rows, cols].min() > 0.95
    for A in (A_fit[:, cols], ph.coefficients):
        res = marker_genes(A, list(ph.data.genes))
        top = top_markers(res, n=10)
        precisions = [np.mean(ph.marker_of[top.loc[top["pattern"] == k, "experiment"]] == k) for k in range(6)]
        assert min(precisions) == 1.0, precisions
