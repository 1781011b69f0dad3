"""K-selection panel against independent references: scipy nnls, scipy cophenet, explicit loops."""

import numpy as np
import pytest
from scipy.cluster.hierarchy import cophenet, linkage
from scipy.optimize import nnls
from scipy.spatial.distance import squareform
from threadpoolctl import threadpool_limits

from osnmf.errors import InputError
from osnmf.factorize.choose_k import criteria as sel
from osnmf.factorize.nmf.fits import fit_nmf_replicates
from osnmf.factorize.stanmf import StaNMF
from osnmf.factorize.sweep.run import SweepParams, replicate_counts


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def _data(n=30, m=50, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.gamma(0.7, size=(n, k)) @ rng.gamma(0.7, size=(k, m)) + 0.05 * rng.random((n, m))
    return X.astype(np.float32)


def test_oob_errors_equal_brute_force_nnls():
    X = _data()
    n, m = X.shape
    rng = np.random.default_rng(2)
    R, K = 3, 3
    patterns = rng.random((R, K, m)).astype(np.float32)
    counts = replicate_counts(n, range(R), SweepParams(random_state=4))
    folds = sel.voxel_folds(m, 2, random_state=4)
    got = sel.oob_errors(X, patterns, counts, folds, chunk_rows=7)
    Xd = X.astype(np.float64)
    for r in range(R):
        sse = tot = 0.0
        for i in np.flatnonzero(counts[r] == 0):
            for f in (0, 1):
                J, notJ = folds == f, folds != f
                a, _ = nnls(patterns[r][:, notJ].T.astype(np.float64), Xd[i, notJ])
                sse += float(np.sum((Xd[i, J] - a @ patterns[r][:, J]) ** 2))
                tot += float(np.sum(Xd[i, J] ** 2))
        assert got[r] == pytest.approx(sse / tot, rel=1e-6)
    # ~37 % of the rows are out of bag; the folds are balanced and reproducible
    assert 0.2 < (counts == 0).mean() < 0.55
    assert abs(int((folds == 0).sum()) - int((folds == 1).sum())) <= 1
    np.testing.assert_array_equal(folds, sel.voxel_folds(m, 2, random_state=4))
    # no out-of-bag row (perturbation="init"): NaN
    assert np.isnan(sel.oob_errors(X, patterns[:1], np.ones((1, n)), folds)).all()


def _consensus_loop(patterns, voxels):
    R = patterns.shape[0]
    lab = []
    for r in range(R):
        P = patterns[r] / np.linalg.norm(patterns[r], axis=1, keepdims=True)
        lab.append([int(np.argmax(P[:, v])) for v in voxels])
    C = np.zeros((len(voxels), len(voxels)))
    for a in range(len(voxels)):
        for b in range(len(voxels)):
            C[a, b] = sum(lab[r][a] == lab[r][b] for r in range(R)) / R
    return C


def test_consensus_cophenetic_dispersion_against_scipy_and_loops():
    rng = np.random.default_rng(3)
    patterns = rng.random((6, 4, 80))
    voxels = sel.consensus_voxels(80, 35, random_state=1)
    assert voxels.size == 35 and np.all(np.diff(voxels) > 0)
    C = sel.consensus_matrix(patterns, voxels)
    np.testing.assert_allclose(C, _consensus_loop(patterns, voxels), atol=1e-12)
    dist = squareform(1.0 - C, checks=False)
    ref, _ = cophenet(linkage(dist, method="average"), dist)
    assert sel.cophenetic_correlation(C) == pytest.approx(ref, abs=1e-10)
    disp = sum(4 * (C[a, b] - 0.5) ** 2 for a in range(35) for b in range(35)) / 35**2
    assert sel.dispersion(C) == pytest.approx(disp, abs=1e-12)
    # identical replicates: a 0/1 block consensus, both criteria exactly 1
    same = np.repeat(patterns[:1], 5, axis=0)
    C1 = sel.consensus_matrix(same)
    assert sel.dispersion(C1) == pytest.approx(1.0)
    assert sel.cophenetic_correlation(C1) == pytest.approx(1.0)
    with pytest.raises(InputError):
        sel.cophenetic_correlation(np.ones((2, 2)))


def test_reconstruction_errors_equal_explicit_weighted_norm():
    X = _data() * np.random.default_rng(5).lognormal(0, 0.3, (30, 50)).astype(np.float32)
    counts = replicate_counts(X.shape[0], range(3), SweepParams(random_state=0))
    fits = fit_nmf_replicates(X, 3, counts, init="nndsvda", max_iter=50)
    got = sel.reconstruction_errors(X, fits.loss, counts)
    for r in range(3):
        w = np.sqrt(counts[r])[:, None]
        E = w * (X.astype(np.float64) - fits.A[r].astype(np.float64) @ fits.D[r])
        ref = np.linalg.norm(E) / np.linalg.norm(w * X)
        # the solver's loss comes from ‖X‖² − 2⟨X, AD⟩ + ‖AD‖² in float32: exact up to ~1e-7 ‖X‖²
        assert got[r] ** 2 == pytest.approx(ref**2, abs=1e-6)
        assert got[r] == pytest.approx(ref, rel=1e-3)


def test_k_rules_on_a_hand_made_panel():
    panel = {
        "k": [4, 5, 6, 7, 8],
        "gamma": [0.10, 0.030, 0.020, 0.024, 0.08],
        "gamma_se": [0.01, 0.005, 0.005, 0.004, 0.01],
        "oob_error": [0.30, 0.20, 0.19, 0.185, 0.186],
        "oob_error_se": [0.01, 0.01, 0.01, 0.004, 0.01],
        "cophenetic": [0.90, 0.97, 0.99, 0.99, 0.95],
        "dispersion": [0.80, 0.90, 0.95, 0.96, 0.90],
        "recon_error": [0.5, 0.4, 0.3, 0.25, 0.2],
        "recon_error_se": [0.01] * 5,
    }
    got = sel.k_rules(panel)
    # gamma: min 0.020 at K=6, one SE = 0.005 -> K with gamma <= 0.025: 6, 7
    assert got["gamma_argmin"] == 6
    assert got["gamma_1se_small"] == 6 and got["gamma_1se_large"] == 7
    # OOB: min 0.185 at 7, bound 0.189 -> only 7 and 8 qualify; smallest is 7
    assert got["oob_argmin"] == 7 and got["oob_1se"] == 7
    assert got["cophenetic_argmax"] == 6  # tie 6/7 goes to the smaller K
    assert got["dispersion_argmax"] == 7
    assert got["gamma_oob"] == 7  # among {6, 7}, 7 has the lower OOB error
    assert got["median3"] == 6  # median of (6, 6, 7)
    assert got["median3_near"] == 6  # near set {5, 6, 7} (γ <= max(0.025, 0.040)): median of (6, 6, 7)
    assert sel.median3(6, 9, 8) == 8 and sel.median3(6, None, 8) == 6
    assert set(got) == set(sel.RULES)
    with pytest.raises(InputError):
        sel.k_rules({"k": [1, 2]})


def test_median3_near_keeps_a_clear_gamma_minimum_and_breaks_near_ties():
    # the shape of `osnmf demo --quick` (5 replicates): gamma is ten times lower at K = 5, but the
    # coarse consensus matrices of 5 replicates favour K = 6, so plain median3 picks 6
    clear = {"k": [3, 4, 5, 6, 7], "gamma": [0.05, 0.04, 0.0023, 0.028, 0.06],
             "gamma_se": [0.01, 0.01, 0.002, 0.01, 0.01], "oob_error": [0.3, 0.2, 0.1, 0.09, 0.08],
             "oob_error_se": [0.01] * 5, "cophenetic": [0.90, 0.95, 0.97, 0.99, 0.96],
             "dispersion": [0.80, 0.90, 0.93, 0.97, 0.91], "recon_error": [0.5, 0.4, 0.3, 0.25, 0.2],
             "recon_error_se": [0.01] * 5}
    got = sel.k_rules(clear)
    assert (got["gamma_argmin"], got["cophenetic_argmax"], got["dispersion_argmax"]) == (5, 6, 6)
    assert got["median3"] == 6
    assert got["median3_near"] == 5  # only K = 5 has γ <= max(0.0023 + 0.002, 2 × 0.0023)
    # a near tie: γ(6) is 1.6 × the minimum but far outside its tiny SE; the consensus criteria settle it
    tie = {**clear, "gamma": [0.05, 0.04, 0.0100, 0.0160, 0.06], "gamma_se": [0.01, 0.01, 0.0005, 0.01, 0.01]}
    got = sel.k_rules(tie)
    assert got["gamma_argmin"] == 5 and got["gamma_1se_large"] == 5 and got["median3_near"] == 6
    # brute force: median3 of the three picks restricted to the Ks with γ <= max(min + SE, 2 min)
    for panel in (clear, tie):
        g, se = np.array(panel["gamma"]), np.array(panel["gamma_se"])
        bound = max(g.min() + se[g.argmin()], 2 * g.min())
        near = [k for k, v in zip(panel["k"], g, strict=True) if v <= bound]
        best = {c: max(near, key=lambda k, c=c, p=panel: (p[c][p["k"].index(k)], -k))
                for c in ("cophenetic", "dispersion")}
        kg = panel["k"][int(g.argmin())]
        assert sel.k_rules(panel)["median3_near"] == sorted([kg, best["cophenetic"], best["dispersion"]])[1]
    np.testing.assert_array_equal(sel.near_minimum(np.array(tie["k"]), np.array(tie["gamma"]),
                                                   np.array(tie["gamma_se"]), sel.NEAR_FACTOR), [5, 6])


def test_stanmf_panel_matches_its_parts_and_is_cached(tmp_path):
    X = _data(n=40, m=60)
    a = StaNMF(k_range=[2, 3, 4], n_replicates=4, random_state=0, store=tmp_path).fit(X)
    p = a.selection_
    assert list(p.columns) == sel.PANEL_COLUMNS and list(p["k"]) == [2, 3, 4]
    np.testing.assert_allclose(p["gamma"], a.instability_["hungarian"])
    np.testing.assert_allclose(p["gamma_se"], a.instability_["hungarian_se"])
    assert a.k_rules_["gamma_argmin"] == a.k_
    # SE = numpy's sample sd / sqrt(R) of the per-replicate errors
    counts = replicate_counts(X.shape[0], range(4), a._params())
    folds = sel.voxel_folds(X.shape[1], sel.N_FOLDS, 0)
    e = sel.oob_errors(X, a.replicates_[3], counts, folds)
    assert p.loc[1, "oob_error"] == pytest.approx(np.mean(e))
    assert p.loc[1, "oob_error_se"] == pytest.approx(np.std(e, ddof=1) / np.sqrt(4))
    # the planted rank (3) has the most reproducible consensus parcellation
    assert p.loc[1, "dispersion"] == pytest.approx(p["dispersion"].max())
    assert len(list(a.store_.path.glob("k*/selection.json"))) == 3
    b = StaNMF(k_range=[2, 3, 4], n_replicates=4, random_state=0, store=tmp_path).fit(X)
    np.testing.assert_allclose(b.selection_.to_numpy(float), p.to_numpy(float), equal_nan=True)
