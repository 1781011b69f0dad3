"""Baseline pattern sets, reconstruction accuracy, patterns per gene, distribution comparison.

References: scikit-learn PCA / KMeans, brute-force loops with numpy.corrcoef, planted truth.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from bootstrap_reference import documented_counts
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from osnmf.baselines.clusters import (
    cluster_patterns,
    nmf_hierarchical_patterns,
    pca_agglomerative_patterns,
    pca_kmeans_patterns,
)
from osnmf.baselines.pattern_set import PatternSet, nmf_patterns
from osnmf.baselines.pca import (
    align_signs,
    pca_bootstrap_patterns,
    pca_fit,
    pca_instability,
    pca_patterns,
    voxel_pca_embedding,
)
from osnmf.errors import ConfigError, InputError
from osnmf.evaluate.metrics import patterns_per_gene, reconstruction_accuracy, summarize
from osnmf.factorize.sweep.bootstrap import bootstrap_counts


def _same_up_to_sign(a, b, atol):
    for x, y in zip(a, b, strict=True):
        s = np.sign(x @ y)
        np.testing.assert_allclose(x, s * y, atol=atol)


# --------------------------------------------------------------------------- metrics


def test_reconstruction_accuracy_matches_corrcoef_with_nan_and_constant_rows():
    rng = np.random.default_rng(0)
    A, D = rng.random((30, 4)), rng.random((4, 50))
    X = A @ D + 0.3 * rng.standard_normal((30, 50))
    X[3] = 2.0  # constant measured row
    A[5] = 0.0  # constant (zero) reconstruction
    hide = rng.random(X.shape) < 0.2
    X[7:12][hide[7:12]] = np.nan
    off = rng.random(50)
    for offset in (None, off):
        ours = reconstruction_accuracy(X, A, D, offset=offset)
        R = A @ D + (0 if offset is None else off)
        for i in range(30):
            obs = ~np.isnan(X[i])
            if i == 3 or (i == 5 and offset is None):
                assert ours[i] == 0.0
                continue
            ref = np.corrcoef(X[i, obs], R[i, obs])[0, 1]
            assert ours[i] == pytest.approx(ref, abs=1e-12)
    assert np.isnan(reconstruction_accuracy(X, A, D, constant_value=np.nan)[3])


def test_reconstruction_accuracy_chunks(monkeypatch):
    import osnmf.evaluate.metrics as metrics

    rng = np.random.default_rng(1)
    A, D = rng.random((20, 3)), rng.random((3, 40))
    X = A @ D + rng.random((20, 40))
    full = reconstruction_accuracy(X, A, D)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMS", 100)  # 2 genes per chunk
    np.testing.assert_allclose(reconstruction_accuracy(X, A, D), full, atol=1e-14)
    with pytest.raises(InputError, match="chain"):
        reconstruction_accuracy(X, A, D[:, :10])


def test_patterns_per_gene_brute_force():
    rng = np.random.default_rng(2)
    A = rng.random((40, 6)) * (rng.random((40, 6)) < 0.6)
    A[0] = 0.0
    A[1] = [1.0, 0.005, 0.0, 0.0, 0.0, 0.0]  # 0.005 / 1.005 < 1% -> 1 pattern
    for thr in (0.0, 0.01, 0.2):
        ours = patterns_per_gene(A, threshold=thr)
        ref = [sum(1 for a in row if abs(a) > thr * np.abs(row).sum() and a != 0) for row in A]
        assert ours.tolist() == ref
    assert patterns_per_gene(A)[1] == 1 and patterns_per_gene(A, 0.0)[1] == 2
    assert patterns_per_gene(-A).tolist() == patterns_per_gene(A).tolist()
    with pytest.raises(InputError):
        patterns_per_gene(A, threshold=1.5)


def test_summarize():
    s = summarize([1.0, 2.0, np.nan, 3.0])
    assert s == {"mean": 2.0, "sd": 1.0, "median": 2.0, "n": 3}


# --------------------------------------------------------------------------- PCA


def _low_rank(n=60, m=80, k=3, noise=0.05, seed=3):
    rng = np.random.default_rng(seed)
    A = rng.random((n, k)) * 3
    D = rng.random((k, m))
    return A @ D + noise * rng.standard_normal((n, m))


# Gram of rows, of columns, of rows built from blocks of 4,096 columns of a float32 matrix, and
# of columns summed over two blocks of rows
# (converted block by block: it must equal the PCA of the same values in float64)
@pytest.mark.parametrize("shape", [(60, 80), (90, 20), (300, 9000), (20000, 300)])
def test_pca_patterns_match_sklearn(shape):
    X = _low_rank(*shape)
    if shape[1] > 4096:
        X = X.astype(np.float32)
    ps = pca_patterns(X, 4)
    X = X.astype(np.float64)
    sk = PCA(4, svd_solver="full").fit(X)
    _same_up_to_sign(ps.patterns, sk.components_, atol=1e-8)
    np.testing.assert_allclose(ps.extra["explained_variance"], sk.explained_variance_, rtol=1e-8)
    np.testing.assert_allclose(ps.extra["explained_variance_ratio"],
                               sk.explained_variance_ratio_, rtol=1e-8)
    np.testing.assert_allclose(ps.reconstruct(), sk.inverse_transform(sk.transform(X)), atol=1e-8)
    scores = sk.transform(X)
    for j in range(4):
        s = np.sign(ps.coefficients[:, j] @ scores[:, j])
        np.testing.assert_allclose(ps.coefficients[:, j], s * scores[:, j], atol=1e-8)
    assert ps.kind == "pca" and ps.k == 4
    # largest |entry| positive
    idx = np.argmax(np.abs(ps.patterns), axis=1)
    assert (ps.patterns[np.arange(4), idx] > 0).all()


@pytest.mark.parametrize("shape", [(40, 30), (40, 9000)])  # covariance; Gram in column blocks
def test_weighted_pca_equals_pca_of_repeated_rows(shape):
    X = _low_rank(*shape)
    counts = bootstrap_counts(40, 1, random_state=5)[0]
    assert counts.sum() == 40
    comps, mean, var = pca_fit(X, 3, weights=counts)
    Xr = X[np.repeat(np.arange(40), counts)]
    sk = PCA(3, svd_solver="full").fit(Xr)
    _same_up_to_sign(comps, sk.components_, atol=1e-8)
    np.testing.assert_allclose(mean, sk.mean_, atol=1e-10)
    np.testing.assert_allclose(var, sk.explained_variance_, rtol=1e-8)


def test_bootstrap_counts_are_the_sweeps():
    import osnmf
    from osnmf.factorize.sweep.run import SweepParams, replicate_counts

    ours = bootstrap_counts(25, 4, random_state=7)
    ref = replicate_counts(25, range(4), SweepParams(random_state=7))
    assert np.array_equal(ours, ref) and (ours.sum(1) == 25).all()
    # all of them are the documented draw, written out independently
    assert np.array_equal(ours, documented_counts(25, 4, seed=7))
    assert np.array_equal(osnmf.bootstrap_counts(25, 4, 7), ours)


def test_pca_instability_against_sklearn_replicates():
    from osnmf.factorize.choose_k.stability import instability

    X = _low_rank(50, 40, k=3, noise=0.3)
    counts = documented_counts(50, 5, seed=1)  # the reference never calls osnmf's draw
    ref_full = PCA(3, svd_solver="full").fit(X).components_
    reps = []
    for c in counts:
        comps = PCA(3, svd_solver="full").fit(X[np.repeat(np.arange(50), c)]).components_
        # brute-force sign alignment: best |cosine| reference component
        for j in range(3):
            cos = [comps[j] @ r / np.linalg.norm(comps[j]) / np.linalg.norm(r) for r in ref_full]
            b = int(np.argmax(np.abs(cos)))
            comps[j] *= np.sign(cos[b])
        reps.append(comps)
    ref = instability(np.array(reps))
    ours = pca_instability(X, 3, n_replicates=5, seed=1)
    for key in ("hungarian", "hungarian_sd", "amari", "amari_sd"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-5)
    reps_ours = pca_bootstrap_patterns(X, 3, 5, seed=1)
    assert reps_ours.shape == (5, 3, 40) and reps_ours.dtype == np.float32


def test_pca_instability_low_for_strong_structure_high_for_noise():
    rng = np.random.default_rng(9)
    strong = _low_rank(80, 60, k=2, noise=0.01)
    noise = rng.standard_normal((80, 60))
    s = pca_instability(strong, 2, n_replicates=6, seed=0)["hungarian"]
    n = pca_instability(noise, 2, n_replicates=6, seed=0)["hungarian"]
    assert s < 0.01 < n


def test_align_signs():
    rng = np.random.default_rng(4)
    ref = rng.standard_normal((3, 10))
    rep = ref * np.array([[-1.0], [1.0], [-1.0]]) + 0.01 * rng.standard_normal((3, 10))
    out = align_signs(rep, ref)
    assert (np.einsum("ij,ij->i", out, ref) > 0).all()


# --------------------------------------------------------------------------- clustering


def _planted_voxel_clusters(n_genes=40, sizes=(50, 70, 60), seed=6):
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    profiles = rng.random((n_genes, len(sizes))) * 5
    X = profiles[:, truth] + 0.1 * rng.standard_normal((n_genes, truth.size))
    perm = rng.permutation(truth.size)
    return X[:, perm], truth[perm]


@pytest.mark.parametrize("sizes", [(50, 70, 60), (3000, 4000, 2000)])  # one or three voxel blocks
def test_voxel_embedding_matches_sklearn(sizes):
    X, _ = _planted_voxel_clusters(sizes=sizes)
    X = X.astype(np.float32)  # embedded block by block in float64: the PCA of the same values
    emb = voxel_pca_embedding(X, 2)
    ref = PCA(2, svd_solver="full").fit_transform(X.T.astype(np.float64))
    _same_up_to_sign(emb.T, ref.T, atol=1e-8)


def test_pca_kmeans_and_ward_recover_planted_clusters():
    X, truth = _planted_voxel_clusters()
    km = pca_kmeans_patterns(X, 3, seed=0)
    assert adjusted_rand_score(truth, km.extra["labels"]) == 1.0
    ward = pca_agglomerative_patterns(X, 3)
    assert adjusted_rand_score(truth, ward.extra["labels"]) == 1.0
    sub = pca_agglomerative_patterns(X, 3, max_voxels=40, seed=1)  # subsample + nearest centroid
    assert adjusted_rand_score(truth, sub.extra["labels"]) == 1.0
    for ps in (km, ward, sub):
        assert ps.kind == "clusters" and ps.patterns.shape == (3, truth.size)
        assert set(np.unique(ps.patterns)) == {0.0, 1.0}
        assert (ps.patterns.sum(axis=0) == 1).all()


def test_cluster_coefficients_are_cluster_means():
    X, truth = _planted_voxel_clusters()
    ps = cluster_patterns(truth, 3, X)
    for c in range(3):
        np.testing.assert_allclose(ps.coefficients[:, c], X[:, truth == c].mean(axis=1))
    assert cluster_patterns(truth, 3).coefficients is None


def test_ward_with_grid_connectivity():
    from osnmf.spatial.moran import spatial_weights

    mask = np.ones((6, 6, 4), bool)
    left = np.zeros(mask.shape, bool)
    left[:3] = True
    rng = np.random.default_rng(0)
    X = np.where(left[mask], 5.0, 1.0)[None, :] * rng.random((10, 1)) + 0.01 * rng.random((10, 144))
    ps = pca_agglomerative_patterns(X, 2, connectivity=spatial_weights(mask))
    assert adjusted_rand_score(left[mask].astype(int), ps.extra["labels"]) == 1.0


def test_nmf_hierarchical_recovers_pattern_supports():
    rng = np.random.default_rng(8)
    truth = rng.integers(0, 4, 200)
    D = np.zeros((4, 200))
    D[truth, np.arange(200)] = 1 + rng.random(200)
    X = rng.random((15, 4)) @ D
    ps = nmf_hierarchical_patterns(D, 4, X=X)
    assert adjusted_rand_score(truth, ps.extra["labels"]) == 1.0
    assert ps.coefficients.shape == (15, 4)


# --------------------------------------------------------------------------- PatternSet


def test_nmf_patterns_and_validation():
    rng = np.random.default_rng(0)
    model = SimpleNamespace(components_=rng.random((3, 20)), coefficients_=rng.random((7, 3)), k_=3)
    ps = nmf_patterns(model)
    assert ps.kind == "nmf" and ps.k == 3 and ps.extra["k"] == 3
    np.testing.assert_allclose(ps.reconstruct(), model.coefficients_ @ model.components_)
    ps2 = nmf_patterns(components=model.components_, coefficients=model.coefficients_)
    np.testing.assert_array_equal(ps2.patterns, ps.patterns)
    with pytest.raises(InputError, match="not fitted"):
        nmf_patterns(SimpleNamespace())
    with pytest.raises(InputError):
        PatternSet("bad", rng.random((3, 20)), rng.random((7, 2)))
    with pytest.raises(InputError, match="impute"):
        pca_patterns(np.full((5, 5), np.nan), 2)
    with pytest.raises(ConfigError):
        pca_patterns(rng.random((5, 6)), 9)


def test_stanmf_model_wraps():
    from osnmf.factorize.stanmf import StaNMF

    rng = np.random.default_rng(0)
    X = (rng.random((30, 3)) @ rng.random((3, 40))).astype(np.float32)
    model = StaNMF(k_range=[2, 3], n_replicates=3, random_state=0).fit(X)
    ps = nmf_patterns(model)
    assert ps.k == model.k_ and ps.coefficients.shape == (30, model.k_)
    assert ps.patterns.shape == (model.k_, 40)


# --------------------------------------------------------------------------- comparison


def test_compare_distributions_against_scipy_and_brute_force():
    from osnmf.evaluate.compare import compare_distributions

    rng = np.random.default_rng(1)
    a, b = rng.normal(0.6, 0.1, 40), rng.normal(0.5, 0.15, 30)
    res = compare_distributions(a, np.append(b, np.nan))
    delta = np.mean([np.sign(x - y) for x in a for y in b])
    assert res["cliffs_delta"] == pytest.approx(delta, abs=1e-12)
    assert res["p_mannwhitney"] == pytest.approx(
        stats.mannwhitneyu(a, b, alternative="two-sided").pvalue, rel=1e-12)
    sp = np.sqrt(((40 - 1) * a.var(ddof=1) + (30 - 1) * b.var(ddof=1)) / 68)
    assert res["cohens_d"] == pytest.approx((a.mean() - b.mean()) / sp, rel=1e-12)
    assert res["p_welch"] == pytest.approx(
        stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
    assert res["n_a"] == 40 and res["n_b"] == 30


def test_compare_stanmf_pca_small_grid():
    from osnmf.evaluate.compare import compare_stanmf_pca

    rng = np.random.default_rng(3)
    mask = np.ones((12, 10), bool)
    yy, xx = np.mgrid[:12, :10]
    D = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
                  for cy, cx in ((2, 2), (9, 7), (3, 8))]).reshape(3, -1)
    A = rng.random((40, 3)) * (rng.random((40, 3)) < 0.7) + 0.05
    X = (A @ D + 0.01 * rng.random((40, 120))).astype(np.float32)
    cmp = compare_stanmf_pca(X, [2, 3, 4], mask=mask, n_replicates=4, random_state=0)
    assert cmp.k == 3
    t = cmp.table
    assert {"K", "Moran's I continuous (R×K)", "reconstruction r (PCA with mean)"} <= set(t.index)
    assert cmp.moran["strongest"]["PCA"].shape == (4, 3)
    # PCA reconstruction with the mean = scikit-learn inverse_transform, correlated per gene
    sk = PCA(3, svd_solver="full").fit(X)
    rec = sk.inverse_transform(sk.transform(X))
    ref = [np.corrcoef(X[i], rec[i])[0, 1] for i in range(40)]
    np.testing.assert_allclose(cmp.per_gene["r_pca"], ref, atol=1e-5)
    # planted smooth blobs: staNMF patterns are spatially coherent and stable
    assert cmp.values["moran_continuous"]["mean_a"] > 0.7
    assert cmp.values["instability_hungarian"]["staNMF"][0] < 0.05
    assert len(cmp.instability_curve) == 3


def test_drosophila_layout():
    import osnmf
    from osnmf.datasets.drosophila import drosophila_mask, drosophila_template
    from osnmf.evaluate.drosophila_layout import drosophila_layout_check

    t = drosophila_template()
    assert t.shape == (16, 32) and t.sum() == 405
    assert t.sum(1).tolist() == [12, 20, 24, 27, 29, 30, 32, 32, 32, 32, 30, 28, 26, 23, 18, 10]
    assert drosophila_mask("column").shape == (32, 16)
    X, _ = osnmf.load_drosophila()
    check = drosophila_layout_check(X[::8]).set_index("layout")["mean_I"]
    assert check["column-major template"] > check["row-major template"] + 0.1
    assert abs(check["random pixel order"]) < 0.05
