"""Fused numba CD sweep, matrix-free grow, sketch-space SVD: against numpy, scikit-learn, dense SVDs."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from reference_grow import grow_factors
from sklearn.decomposition._nmf import _initialize_nmf
from test_nmf import matched_r, phantom, sk_fit
from threadpoolctl import threadpool_limits

from osnmf.factorize.nmf.fits import fit_nmf, fit_nmf_replicates
from osnmf.factorize.nmf.grow import grow_lowrank
from osnmf.factorize.nmf.kernels import numpy_cd as kernels_numpy
from osnmf.factorize.nmf.kernels.numba_cd import cd_sweep_fused
from osnmf.factorize.nmf.operators import ExactOperator, sketch_matrix
from osnmf.factorize.sweep.bootstrap import bootstrap_counts


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def data():
    X, _, _ = phantom()
    return X


def _sweep_inputs(dt, R=3, k=7, L=1000, seed=0):
    rng = np.random.default_rng(seed)
    F = rng.random((R, k, L)).astype(dt)
    F[F < 0.25] = 0
    D = rng.random((R, k, 40)).astype(dt)
    G = D @ D.transpose(0, 2, 1)
    G[1, 2, :] = 0  # a zero Hessian entry: no step on that coordinate (scikit-learn's rule)
    G[1, :, 2] = 0
    XF = (rng.random((R, k, L)) * G.sum(2)[:, :, None]).astype(dt)
    w = rng.integers(0, 3, (R, L)).astype(dt)
    return F, G, XF, w


@pytest.mark.parametrize("dt,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("weighted", [True, False])
def test_fused_sweep_equals_numpy_sweep(dt, rtol, weighted):
    F, G, XF, w = _sweep_inputs(dt)
    w = w if weighted else None
    F1, F2 = F.copy(), F.copy()
    for _ in range(3):  # three sweeps: later ones start from updated factors
        v1 = kernels_numpy.cd_sweep(F1, G, XF, w)
        v2 = cd_sweep_fused(F2, G, XF, w)
        np.testing.assert_allclose(v2, v1, rtol=rtol)
    np.testing.assert_allclose(F2, F1, rtol=rtol, atol=rtol * float(F1.max()))
    assert F2.min() >= 0
    np.testing.assert_array_equal(F2[1, 2], F[1, 2])  # zero Hessian: untouched


def test_default_kernel_is_fused():
    assert kernels_numpy.NumpyKernels.cd_sweep is cd_sweep_fused


def test_numpy_fallback_solver_equals_sklearn(data, monkeypatch):
    """Without numba the numpy sweep runs: it too is scikit-learn's arithmetic (the fused default
    is held to the same assertions by tests/test_nmf.py)."""
    monkeypatch.setattr(kernels_numpy.NumpyKernels, "cd_sweep", staticmethod(kernels_numpy.cd_sweep))
    k = 6
    W0, H0 = _initialize_nmf(data, k, init="nndsvda", random_state=0)
    W, model = sk_fit(data, k, W0, H0)
    res = fit_nmf(data, k, init=(W0, H0), dtype=np.float64)
    assert res.n_iter == model.n_iter_ < 200
    np.testing.assert_allclose(res.D, model.components_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.A, W, rtol=1e-6, atol=1e-9)
    assert res.loss == pytest.approx(model.reconstruction_err_, rel=1e-8)
    counts = bootstrap_counts(data.shape[0], 3, np.random.default_rng(3))
    fits = fit_nmf_replicates(data, k, counts, dtype=np.float64)
    fits32 = fit_nmf_replicates(data.astype(np.float32), k, counts)
    for r in range(3):
        idx = np.repeat(np.arange(data.shape[0]), counts[r])
        W, model = sk_fit(data[idx], k, random_state=0)
        assert fits.n_iter[r] == model.n_iter_
        np.testing.assert_allclose(fits.D[r], model.components_, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(fits.A[r][idx], W, rtol=1e-5, atol=1e-8)
        assert matched_r(fits32.D[r], model.components_).min() >= 0.999
        assert fits32.loss[r] == pytest.approx(model.reconstruction_err_, rel=1e-3)


def _grow_case(seed=1, k=8, R=3):
    X, _, _ = phantom(n_genes=200, k=k, seed=seed, noise=0.1)
    X = X.astype(np.float32)
    counts = bootstrap_counts(X.shape[0], R, seed)
    prev = fit_nmf_replicates(X, k - 1, counts)
    return X, counts, prev


def test_grow_lowrank_is_the_weighted_residual_leading_direction():
    X, counts, prev = _grow_case()
    A0, D0 = grow_lowrank(ExactOperator(X), prev.A, prev.D, counts, n_power=60)
    k = prev.A.shape[2]
    for r in range(counts.shape[0]):
        np.testing.assert_array_equal(A0[r, :, :k], prev.A[r])
        np.testing.assert_array_equal(D0[r, :k], prev.D[r])
        E = X.astype(np.float64) - prev.A[r].astype(np.float64) @ prev.D[r].astype(np.float64)
        _, s, Vt = np.linalg.svd(np.sqrt(counts[r])[:, None] * E, full_matrices=False)
        v, sw = Vt[0], np.sqrt(counts[r])
        Ev = E @ v
        # NNDSVD's choice of the dominant sign part, from the dense SVD (brute force)
        mp = np.linalg.norm(np.maximum(v, 0)) * np.linalg.norm(sw * np.maximum(Ev, 0))
        mn = np.linalg.norm(np.maximum(-v, 0)) * np.linalg.norm(sw * np.maximum(-Ev, 0))
        vh = np.maximum(v if mp >= mn else -v, 0)
        vh /= np.linalg.norm(vh)
        d = D0[r, k] / np.linalg.norm(D0[r, k])
        assert float(d @ vh) > 0.999
        a = np.maximum(E @ d, 0)  # NNLS coefficients for that pattern (brute force)
        np.testing.assert_allclose(A0[r, :, k] * np.linalg.norm(D0[r, k]), a, rtol=1e-3,
                                   atol=1e-4 * a.max())


def test_grow_lowrank_agrees_with_dense_grow_and_fits_as_well():
    X, counts, prev = _grow_case()
    k = prev.A.shape[2] + 1
    A1, D1 = grow_factors(X, prev.A, prev.D, counts)
    A2, D2 = grow_lowrank(ExactOperator(X), prev.A, prev.D, counts)
    A3, D3 = grow_lowrank(sketch_matrix(X, rank=3 * k, random_state=0), prev.A, prev.D, counts)
    f1 = fit_nmf_replicates(X, k, counts, init=(A1, D1))
    # the dense grow takes the positive part of the residual, this one the dominant-sign part of
    # the signed residual's leading vector: the starts may differ, the optimum they lead to not
    for A, D in ((A2, D2), (A3, D3)):  # exact or sketched products
        f = fit_nmf_replicates(X, k, counts, init=(A, D))
        assert (f.loss <= f1.loss * (1 + 1e-3)).all()
        for r in range(counts.shape[0]):
            assert matched_r(f.D[r], f1.D[r]).min() > 0.99
        assert (A >= 0).all() and (D >= 0).all()


def test_grow_lowrank_never_forms_an_n_by_m_array():
    rng = np.random.default_rng(0)
    n, m, k, R = 300, 4000, 4, 2
    X = (rng.random((n, k)) @ rng.random((k, m)) + 0.1 * rng.random((n, m))).astype(np.float32)
    A = rng.random((R, n, k - 1)).astype(np.float32)
    D = rng.random((R, k - 1, m)).astype(np.float32)
    counts = bootstrap_counts(n, R, 0)
    op = ExactOperator(X)
    tracemalloc.start()
    grow_lowrank(op, A, D, counts, n_power=3)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out_bytes = 4 * R * (n + m) * (k + 1)
    assert peak - out_bytes < 0.5 * X.nbytes, (peak, X.nbytes)


def test_weighted_svd_sketch_equals_dense_svd(data):
    from osnmf.factorize.nmf.sketch_svd import weighted_svd_sketch

    sk = sketch_matrix(data, rank=20, random_state=0)
    counts = bootstrap_counts(data.shape[0], 3, 0)
    sw = np.sqrt(counts)
    Uhat, S, V = weighted_svd_sketch(sk.Q, sk.B, 6, sw)
    for r in range(3):
        M = sw[r][:, None] * (sk.Q.astype(np.float64) @ sk.B.astype(np.float64))
        u, s, vt = np.linalg.svd(M, full_matrices=False)  # brute force, dense
        np.testing.assert_allclose(S[r], s[:6], rtol=1e-5)
        Vr = V[r]  # made when indexed
        for j in range(6):  # same pair up to a common sign
            sign = np.sign(Vr[j] @ vt[j])
            np.testing.assert_allclose(sign * Vr[j], vt[j], atol=1e-4)
            np.testing.assert_allclose(sign * Uhat[r, :, j] * sw[r], u[:, j], atol=1e-4)
        assert (Uhat[r][counts[r] == 0] == 0).all()
