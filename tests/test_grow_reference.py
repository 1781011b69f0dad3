"""The default recipe (``grow=True``) and the compressed solver against scikit-learn and planted truth.

* A replicate's grown start is rebuilt here from scratch (scikit-learn's K−1 fit of the resampled
  rows, the leading singular vector of its residual by numpy's SVD, as osnmf.factorize.nmf.grow
  defines the grown component) and fitted with
  ``sklearn.decomposition.NMF(init="custom", solver="cd")``, stopping at the accuracy of the
  replicate's NNDSVDa fit (scikit-learn's rule ``violation <= tol × first violation`` with the
  NNDSVDa start's first violation, computed here by a brute-force CD iteration); StaNMF's
  replicate must equal the lower-loss one of that fit and scikit-learn's NNDSVDa fit.
* On a phantom with a small planted pattern (``benchmarks/bench_grow_small_pattern.py``), grow
  reaches the optimum of a fit started from the truth, where the paper's NNDSVDa start does not.
* ``solver="compressed"`` gives the exact solver's instability curve and K.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import NMF
from sklearn.decomposition._nmf import _initialize_nmf  # the NNDSVDa start NMF(init="nndsvda") uses
from threadpoolctl import threadpool_limits

import osnmf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_grow_small_pattern import small_pattern_case, worst_matched_r  # noqa: E402
from bootstrap_reference import documented_counts, resampled_rows  # noqa: E402

SK = dict(solver="cd", max_iter=200, tol=1e-4)


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):  # shared machine: threaded BLAS on small products only spins
        yield


@pytest.fixture(scope="module")
def case():
    return small_pattern_case(seed=0, n_genes=200)


def _matched(P, Q):
    """Uncentred cosine of optimally matched rows (the staNMF correlation)."""
    Pn = P / np.linalg.norm(P, axis=1, keepdims=True)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    C = Pn @ Qn.T
    rows, cols = linear_sum_assignment(C, maximize=True)
    return C[rows, cols]


def _first_violation(X, W, H):
    """Σ |projected gradient| of scikit-learn's first CD iteration from (W, H), brute force: the W
    sweep (coordinates in order, each row's gradient with the columns already updated), then the
    H sweep with the new W (``sklearn.decomposition._cdnmf_fast`` arithmetic, no shuffle)."""
    X = X.astype(np.float64)
    W, Ht = W.astype(np.float64).copy(), H.T.astype(np.float64).copy()
    total = 0.0
    for F, Y, Xm in ((W, Ht, X), (Ht, W, X.T)):  # F updated in place; the second pass sees the new W
        YtY, XY = Y.T @ Y, Xm @ Y
        for t in range(F.shape[1]):
            grad = F @ YtY[:, t] - XY[:, t]
            total += float(np.abs(np.where(F[:, t] == 0, np.minimum(grad, 0), grad)).sum())
            if YtY[t, t] != 0:
                F[:, t] = np.maximum(F[:, t] - grad / YtY[t, t], 0)
    return total


def _grown_start(X, W, H):
    """K−1 factors plus one component from the leading right singular vector v of E = X − W H:
    its dominant-sign part v̂ (NNDSVD's choice: larger ‖v±‖·‖(±Ev)₊‖), the non-negative
    least-squares coefficients a = max(E v̂, 0), balanced as (a / sqrt(‖a‖), sqrt(‖a‖) v̂)."""
    E = X.astype(np.float64) - W @ H
    _, _, Vt = np.linalg.svd(E, full_matrices=False)
    v = Vt[0]
    Ev = E @ v
    mp = np.linalg.norm(np.maximum(v, 0)) * np.linalg.norm(np.maximum(Ev, 0))
    mn = np.linalg.norm(np.maximum(-v, 0)) * np.linalg.norm(np.maximum(-Ev, 0))
    vh = np.maximum(v if mp >= mn else -v, 0)
    vh /= np.linalg.norm(vh)
    a = np.maximum(E @ vh, 0)
    s = np.linalg.norm(a)
    return np.hstack([W, (a / np.sqrt(s))[:, None]]), np.vstack([H, np.sqrt(s) * vh])


def _sklearn_replicate_fits(Xr, K):
    """scikit-learn's fits of one resampled matrix at K: (NNDSVDa fit, fit of the grown K−1 fit).

    The grown start stops at violation <= tol × (first violation of the NNDSVDa start).
    """
    prev = NMF(K - 1, init="nndsvda", **SK)
    W = prev.fit_transform(Xr)
    W0, H0 = _grown_start(Xr, W, prev.components_)
    Wc, Hc = _initialize_nmf(Xr, K, init="nndsvda")
    scale = _first_violation(Xr, Wc, Hc) / _first_violation(Xr, W0, H0)
    grown = NMF(K, init="custom", **{**SK, "tol": SK["tol"] * scale})
    grown.fit_transform(Xr, W=W0, H=H0)
    return NMF(K, init="nndsvda", **SK).fit(Xr), grown, prev


def test_grown_replicates_equal_sklearn_custom_fit(case):
    X, _, _ = case
    K, R, seed = 12, 2, 0
    model = osnmf.StaNMF(k_range=[K - 1, K], n_replicates=R, recipe="fast", grow=True, random_state=seed).fit(X)
    info = model.replicate_info_.query("k == @K").set_index("replicate")
    counts = documented_counts(X.shape[0], R, seed)
    kept_grown = 0
    for r in range(R):
        plain, grown, _ = _sklearn_replicate_fits(X[resampled_rows(counts[r])], K)
        best = min((plain, grown), key=lambda f: f.reconstruction_err_)
        # StaNMF's loss is ‖diag(sqrt(c))(X − A D)‖_F = scikit-learn's on the repeated rows
        assert info.loc[r, "loss"] == pytest.approx(best.reconstruction_err_, rel=1e-3)
        assert info.loc[r, "restart"] == (1 if best is grown else 0)  # 1 = the grown start was kept
        assert _matched(model.replicates_[K][r], best.components_).min() >= 0.99
        kept_grown += best is grown
    assert kept_grown >= 1  # the grown branch is really exercised, not only NNDSVDa


def test_grow_only_replicates_are_the_grown_sklearn_fits(case):
    """``grow="only"``: NNDSVDa at the first K, then the grown start alone (same stopping scale)."""
    X, _, _ = case
    K, R, seed = 12, 2, 0
    model = osnmf.StaNMF(k_range=[K - 1, K], n_replicates=R, recipe="fast", grow="only", random_state=seed).fit(X)
    info = model.replicate_info_.set_index(["k", "replicate"])
    counts = documented_counts(X.shape[0], R, seed)
    for r in range(R):
        _, grown, prev = _sklearn_replicate_fits(X[resampled_rows(counts[r])], K)
        assert info.loc[(K - 1, r), "restart"] == 0
        assert info.loc[(K - 1, r), "loss"] == pytest.approx(prev.reconstruction_err_, rel=1e-3)
        assert info.loc[(K, r), "restart"] == 1  # the grown start, even where NNDSVDa is better
        assert info.loc[(K, r), "loss"] == pytest.approx(grown.reconstruction_err_, rel=1e-3)
        # same stopping scale (float32 vs scikit-learn's float64 shifts the crossing a little)
        assert abs(info.loc[(K, r), "n_iter"] - grown.n_iter_) <= 0.1 * grown.n_iter_
        assert _matched(model.replicates_[K][r], grown.components_).min() >= 0.99


def test_grow_reaches_the_truth_started_optimum(case):
    """12 planted patterns, one small: NNDSVDa lands in a worse optimum, grow in the truth's."""
    X, A, P = case
    K = P.shape[0]
    truth = NMF(K, init="custom", **SK)
    truth.fit_transform(X, W=A.copy(), H=P.copy())
    plain = osnmf.StaNMF(k_range=[K], n_replicates=2, grow=False, random_state=0).fit(X)
    grown = osnmf.StaNMF(k_range=[K], n_replicates=2, recipe="fast", grow=True, random_state=0).fit(X)
    assert grown.loss_ == pytest.approx(truth.reconstruction_err_, rel=1e-4)
    assert plain.loss_ > 1.02 * truth.reconstruction_err_  # 135.2 vs 131.6
    assert worst_matched_r(grown.components_, P) >= 0.95
    assert worst_matched_r(plain.components_, P) < 0.5  # the small pattern is missing
    assert _matched(grown.components_, truth.components_).min() >= 0.999
    # the paper's recipe is scikit-learn's NNDSVDa fit
    sk = NMF(K, init="nndsvda", **SK).fit(X)
    assert plain.loss_ == pytest.approx(sk.reconstruction_err_, rel=1e-4)


def test_compressed_equals_exact_at_stanmf_level():
    """Small phantom (4 planted patterns): same K, same γ(K) to 0.005, same patterns."""
    ph = osnmf.make_phantom(n_genes=60, n_patterns=4, noise=0.2, missing=0.0, seed=2)
    X, _ = ph.data.to_matrix()
    X = X[:, ::40]
    kw = dict(k_range=range(2, 7), n_replicates=6, random_state=0, recipe="fast")  # both solvers, the same recipe
    exact = osnmf.StaNMF(solver="exact", **kw).fit(X)
    assert exact.k_ == 4
    # the default sketch (99.9% of the energy: rank 50 of 60 here): the whole curve agrees
    comp = osnmf.StaNMF(solver="compressed", **kw).fit(X)
    assert comp.sketch_.rank < min(X.shape)
    assert comp.k_ == exact.k_
    gap = np.abs(comp.instability_["hungarian"].to_numpy() - exact.instability_["hungarian"].to_numpy())
    assert gap.max() <= 0.005, gap
    assert _matched(comp.components_, exact.components_).min() >= 0.999
    assert comp.loss_ == pytest.approx(exact.loss_, rel=1e-3)
    # a hard compression (rank 8, 97.5% of the energy): still the same K and γ at that K
    hard = osnmf.StaNMF(solver="compressed", sketch={"rank": 8}, **kw).fit(X)
    assert hard.sketch_.rank == 8
    assert hard.k_ == exact.k_
    k = exact.k_
    g_exact = exact.instability_.set_index("k").loc[k, "hungarian"]
    assert hard.instability_.set_index("k").loc[k, "hungarian"] == pytest.approx(g_exact, abs=0.005)
    assert _matched(hard.components_, exact.components_).min() >= 0.99
