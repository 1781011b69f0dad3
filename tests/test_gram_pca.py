"""PCA and its bootstrap replicates from one Gram matrix (osnmf.baselines.gram_pca).

References: scikit-learn PCA on the explicitly resampled rows, scipy.linalg.eigh, the per-replicate
loop (pca_fit + align_signs), brute-force matching over all permutations.
"""

import itertools

import numpy as np
import pytest
from scipy import linalg
from sklearn.decomposition import PCA

import osnmf.baselines.gram_pca as gp
from osnmf.baselines.pca import (
    align_signs,
    pca_bootstrap,
    pca_bootstrap_patterns,
    pca_fit,
    pca_patterns,
    voxel_pca_embedding,
)
from osnmf.evaluate.compare import instability_curve, pca_instability_curve
from osnmf.factorize.choose_k.stability import instability, pairwise_correlations
from osnmf.factorize.sweep.bootstrap import bootstrap_counts
from osnmf.linalg import top_eigenpairs


def _matrix(n=80, m=9000, k=5, noise=0.3, seed=0):
    """Non-negative low rank + noise, float32, over three blocks of 4,096 columns."""
    rng = np.random.default_rng(seed)
    A = rng.random((n, k)) ** 2 * 3
    D = rng.random((k, m))
    return (A @ D + noise * np.abs(rng.standard_normal((n, m)))).astype(np.float32)


@pytest.fixture(params=["lanczos", "dense"])
def solver(request, monkeypatch):
    """Both eigen-solvers of weighted_pca: Lanczos (forced on small matrices) and LAPACK."""
    monkeypatch.setattr(gp, "DENSE_MAX", 10 if request.param == "lanczos" else 10**9)
    return request.param


def _same_up_to_sign(a, b, atol):
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, np.sign(x @ y) * y, atol=atol)


def test_top_eigenpairs_match_eigh_with_clusters_and_low_rank():
    rng = np.random.default_rng(1)
    n, k = 200, 12
    mats = []
    for r in range(4):
        Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
        vals = np.sort(rng.random(n))[::-1] * 10 + np.r_[1e4, 5e3, np.zeros(n - 2)]
        vals[5:8] = vals[5] + 1e-3 * np.arange(3)  # a near-degenerate cluster
        if r == 3:
            vals[20:] = 0.0  # rank 20: Lanczos breaks down and must go on
        mats.append((Q * vals) @ Q.T)
    mats = np.array(mats)
    start = rng.standard_normal((4, n))
    vals, vecs = top_eigenpairs(lambda idx, Y: np.einsum("rij,rj->ri", mats[idx], Y), start, k)
    for r in range(4):
        ref_vals, ref_vecs = linalg.eigh(mats[r], subset_by_index=[n - k, n - 1])
        np.testing.assert_allclose(vals[r], ref_vals[::-1], rtol=1e-12, atol=1e-10)
        np.testing.assert_allclose(vecs[r].T @ vecs[r], np.eye(k), atol=1e-12)
        # eigenvectors: each separated one up to sign; the cluster as a subspace
        for j in [0, 1, 2, 3, 4, 8, 9, 10, 11]:
            assert abs(vecs[r][:, j] @ ref_vecs[:, ::-1][:, j]) == pytest.approx(1.0, abs=1e-10)
        P = vecs[r][:, 5:8] @ vecs[r][:, 5:8].T
        R = ref_vecs[:, ::-1][:, 5:8]
        np.testing.assert_allclose(P @ R, R, atol=1e-8)


def test_gram_and_its_side_vectors_match_direct_sums():
    X = _matrix(40, 9000)
    g = gp.CentredGram(X)
    Xc = X.astype(np.float64) - X.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(g.mean, X.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(g.gram, Xc @ Xc.T, rtol=1e-11)
    np.testing.assert_allclose(g.row_means, Xc.mean(axis=1), atol=1e-12)
    b = np.random.default_rng(0).standard_normal((40, 3))
    np.testing.assert_allclose(g.project(b), b.T @ Xc, rtol=1e-10, atol=1e-10)
    P = b.T @ Xc
    np.testing.assert_allclose(g.inner(b), P @ P.T, rtol=1e-10)
    Pc = P - P.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(g.inner(b, centered=True), Pc @ Pc.T, rtol=1e-9)


def test_bootstrap_from_gram_equals_sklearn_on_resampled_rows(solver):
    X = _matrix()
    n = X.shape[0]
    counts = bootstrap_counts(n, 4, random_state=3)
    boot = pca_bootstrap(X, 6, counts=counts)
    X64 = X.astype(np.float64)
    for r, c in enumerate(counts):
        sk = PCA(6, svd_solver="full").fit(X64[np.repeat(np.arange(n), c)])
        np.testing.assert_allclose(boot.values[r] / (c.sum() - 1), sk.explained_variance_, rtol=1e-9)
        comps = boot.gram.project(boot.coef[r])
        _same_up_to_sign(comps, sk.components_, atol=1e-9)
        np.testing.assert_allclose(np.linalg.norm(comps, axis=1), 1.0, atol=1e-10)


def test_bootstrap_patterns_equal_the_per_replicate_loop(solver):
    X = _matrix(seed=2)
    counts = bootstrap_counts(X.shape[0], 5, random_state=0)
    ours = pca_bootstrap_patterns(X, 6, counts=counts)  # through the Gram
    reference = pca_fit(X, 6)[0]  # the straightforward computation, signs included
    loop = np.array([align_signs(pca_fit(X, 6, weights=c)[0], reference) for c in counts])
    assert ours.dtype == np.float32 and ours.shape == loop.shape
    np.testing.assert_allclose(ours, loop, atol=2e-7)


def test_full_pca_from_gram_equals_pca_patterns_and_sklearn(solver):
    X = _matrix(seed=4)
    boot = pca_bootstrap(X, 7, n_replicates=2, seed=0)
    ours, ref = boot.full_pca(5), pca_patterns(X, 5)
    np.testing.assert_allclose(ours.patterns, ref.patterns, atol=1e-9)
    np.testing.assert_allclose(ours.coefficients, ref.coefficients, rtol=1e-8, atol=1e-6)
    np.testing.assert_allclose(ours.offset, ref.offset, rtol=1e-12)
    sk = PCA(5, svd_solver="full").fit(X.astype(np.float64))
    np.testing.assert_allclose(ours.extra["explained_variance"], sk.explained_variance_, rtol=1e-9)
    np.testing.assert_allclose(ours.extra["explained_variance_ratio"], sk.explained_variance_ratio_, rtol=1e-9)


@pytest.mark.parametrize("centered", [False, True])
def test_correlations_from_gram_equal_those_of_the_patterns(centered):
    X = _matrix(seed=5)
    boot = pca_bootstrap(X, 5, n_replicates=4, seed=1)
    stack = boot.gram.project(boot.coef.transpose(1, 0, 2).reshape(X.shape[0], -1)).T
    stack = stack.T.reshape(4, 5, -1)  # float64 patterns (R, K, m)
    np.testing.assert_allclose(boot.correlations(centered=centered),
                               pairwise_correlations(stack, centered=centered), atol=1e-10)
    np.testing.assert_allclose(boot.correlations(3), pairwise_correlations(stack[:3]), atol=1e-10)


def _brute_force_instability(stack):
    """Mean Hungarian dissimilarity over replicate pairs, the matching by trying every permutation."""
    R, K, _ = stack.shape
    unit = stack / np.linalg.norm(stack, axis=2, keepdims=True)
    d = []
    for p, q in itertools.combinations(range(R), 2):
        C = unit[p] @ unit[q].T
        best = max(sum(C[i, s[i]] for i in range(K)) for s in itertools.permutations(range(K)))
        d.append(1.0 - best / K)
    return float(np.mean(d)), float(np.std(d))


def test_instability_curve_shared_across_k_equals_each_k_on_its_own():
    X = _matrix(seed=6, noise=1.0)
    boot = pca_bootstrap(X, 6, n_replicates=5, seed=2)
    stack = boot.patterns()
    ks = [2, 3, 4, 5, 6]
    from_gram = instability_curve(boot.correlations(), ks)
    from_stack = pca_instability_curve(stack, ks)
    for row_g, row_s, k in zip(from_gram.itertuples(), from_stack.itertuples(), ks, strict=True):
        per_k = instability(stack[:, :k])
        for key in ("hungarian", "hungarian_sd", "amari", "amari_sd"):
            assert getattr(row_s, key) == pytest.approx(per_k[key], abs=1e-12)
            assert getattr(row_g, key) == pytest.approx(per_k[key], abs=1e-6)  # float32 stack
        mean, sd = _brute_force_instability(stack[:, :k].astype(np.float64))
        assert row_g.hungarian == pytest.approx(mean, abs=1e-6)
        assert row_g.hungarian_sd == pytest.approx(sd, abs=1e-6)


def test_voxel_embedding_from_gram_equals_the_direct_one_and_sklearn(solver, monkeypatch):
    X = _matrix(60, 9000, seed=7)
    g = gp.CentredGram(X)
    ours = voxel_pca_embedding(X, 4, gram=g)
    direct = voxel_pca_embedding(X, 4)
    np.testing.assert_allclose(ours, direct, rtol=1e-8, atol=1e-8 * np.abs(direct).max())
    sk = PCA(4, svd_solver="full").fit_transform(X.T.astype(np.float64))
    _same_up_to_sign(ours.T, sk.T, atol=1e-8 * np.abs(sk).max())
