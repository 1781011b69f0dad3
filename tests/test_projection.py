"""NNLS projection of new samples onto learned patterns, against scipy.optimize.nnls row by row."""

import numpy as np
import pytest
from scipy.optimize import nnls
from sklearn.exceptions import NotFittedError

from osnmf.errors import InputError
from osnmf.factorize.nmf.projection import nnls_gram, nnls_project
from osnmf.factorize.stanmf import StaNMF


def _scipy_rows(X, D):
    return np.stack([nnls(D.T.astype(np.float64), x.astype(np.float64), maxiter=50 * D.shape[0])[0] for x in X])


def _objective(X, A, D):
    return ((X - A @ D) ** 2).sum(axis=1)


def _check_equal(A, ref, X, D):
    # same minimiser: equal objective to round-off and equal coefficients (the problems are well posed)
    np.testing.assert_allclose(_objective(X, A, D), _objective(X, ref, D), rtol=1e-7, atol=1e-9)
    scale = np.abs(ref).max(axis=1, keepdims=True) + 1e-12
    assert np.abs(A - ref).max() / scale.max() < 1e-6
    assert (A >= 0).all()


def test_projection_equals_scipy_nnls_row_by_row():
    rng = np.random.default_rng(0)
    K, m = 9, 400
    D = rng.gamma(0.5, size=(K, m))
    A_true = rng.gamma(0.7, size=(150, K)) * (rng.random((150, K)) < 0.5)  # many exact zeros
    X = A_true @ D + rng.normal(0, 0.3, (150, m))
    X = np.clip(X, 0, None)
    X[:10] = rng.gamma(0.3, size=(10, m))  # rows unrelated to the patterns: many active bounds
    X[10] = 0.0
    A = nnls_project(X, D)
    _check_equal(A, _scipy_rows(X, D), X, D)
    np.testing.assert_array_equal(A[10], 0.0)


def test_projection_ill_conditioned_and_zero_pattern():
    rng = np.random.default_rng(1)
    base = rng.gamma(0.5, size=(5, 200))
    D = np.vstack([base, base[:2] + 1e-3 * rng.random((2, 200)), np.zeros((1, 200))])  # near-collinear + zero
    X = np.clip(rng.gamma(1.0, size=(60, 5)) @ base + rng.normal(0, 0.2, (60, 200)), 0, None)
    A = nnls_project(X, D, max_iter=3)  # few CD sweeps: the polish and active-set fallback must finish
    ref = _scipy_rows(X, D)
    np.testing.assert_allclose(_objective(X, A, D), _objective(X, ref, D), rtol=1e-6)
    np.testing.assert_array_equal(A[:, -1], 0.0)


def test_active_set_gram_form_equals_scipy():
    rng = np.random.default_rng(2)
    for _ in range(20):
        K = int(rng.integers(1, 12))
        D = rng.gamma(0.6, size=(K, 80))
        x = np.clip(rng.normal(0.2, 1.0, 80), 0, None)
        a = nnls_gram(D @ D.T, D @ x)
        ref = nnls(D.T, x)[0]
        np.testing.assert_allclose(a, ref, rtol=1e-7, atol=1e-9 * (1 + ref.max()))


def test_stanmf_transform_equals_scipy_and_refits_training_rows():
    rng = np.random.default_rng(3)
    A0, D0 = rng.gamma(0.6, size=(40, 3)), rng.gamma(0.6, size=(3, 120))
    X = (A0 @ D0 * rng.lognormal(0, 0.05, (40, 120))).astype(np.float32)
    model = StaNMF(k_range=[3], n_replicates=2, random_state=0, grow=False).fit(X)
    D = model.components_.astype(np.float64)
    X_new = np.clip(A0[:7] @ D0 + rng.normal(0, 0.1, (7, 120)), 0, None)
    _check_equal(model.transform(X_new), _scipy_rows(X_new, D), X_new, D)
    # NNLS is optimal for fixed patterns: never worse than the model's own coefficients
    assert _objective(X, model.transform(X), D).sum() <= _objective(X, model.coefficients_, D).sum() * (1 + 1e-6)
    assert model.transform(X_new[0]).shape == (1, 3)  # one sample as a vector


def test_transform_errors():
    with pytest.raises(NotFittedError):
        StaNMF(k_range=[2]).transform(np.ones((3, 4)))
    D = np.ones((2, 5))
    with pytest.raises(InputError, match="5 columns"):
        nnls_project(np.ones((3, 4)), D)
    with pytest.raises(InputError, match="NaN"):
        nnls_project(np.full((2, 5), np.nan), D)
    with pytest.raises(InputError, match="negative"):
        nnls_project(-np.ones((2, 5)), D)
