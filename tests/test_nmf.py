"""NMF solver: equivalence with scikit-learn (single fit, bootstrap replicates), sketches, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import NMF
from sklearn.decomposition._nmf import _initialize_nmf
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from osnmf.errors import ConfigError, InputError
from osnmf.factorize.nmf.fits import NMFResult, ReplicateFits, fit_nmf, fit_nmf_replicates
from osnmf.factorize.nmf.init import nndsvda
from osnmf.factorize.nmf.operators import sketch_matrix
from osnmf.factorize.sweep.bootstrap import bootstrap_counts


def phantom(n_genes=150, shape=(10, 9, 12), k=6, noise=0.05, seed=0):
    """Small phantom atlas: k smooth 3D blobs as patterns, sparse gamma coefficients, noise."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    centres = rng.uniform(0, 1, (k, 3)) * np.array(shape)
    widths = rng.uniform(1.5, 3.5, k)
    d2 = ((grid[None] - centres[:, None]) ** 2).sum(-1)
    D = np.exp(-d2 / (2 * widths[:, None] ** 2))
    A = rng.gamma(0.7, 1.0, (n_genes, k)) * (rng.random((n_genes, k)) < 0.6)
    X = A @ D + noise * rng.random((n_genes, grid.shape[0]))
    return X, A, D


def matched_r(D1, D2):
    """Pearson r of Hungarian-matched rows of two pattern sets (independent of osnmf)."""
    k = D1.shape[0]
    C = np.corrcoef(D1, D2)[:k, k:]
    rows, cols = linear_sum_assignment(-C)
    return C[rows, cols]


def sk_fit(X, k, W0=None, H0=None, **kw):
    model = NMF(k, **{"solver": "cd", "tol": 1e-4, "max_iter": 200,
                      "init": "custom" if W0 is not None else "nndsvda", **kw})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if W0 is None:
            W = model.fit_transform(X)
        else:
            W = model.fit_transform(X, W=W0.copy(), H=H0.copy())
    return W, model


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """Tiny matrices: multi-threaded BLAS only thrashes on shared cores."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def data():
    X, _, _ = phantom()
    return X


def test_nndsvda_matches_sklearn(data):
    for k in (3, 6):
        W0, H0 = _initialize_nmf(data, k, init="nndsvda", random_state=0)
        A0, D0 = nndsvda(data, k)
        np.testing.assert_allclose(A0, W0, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(D0, H0, rtol=1e-8, atol=1e-10)


def test_weighted_nndsvda_equals_resampled(data):
    n = data.shape[0]
    counts = bootstrap_counts(n, 2, 7)
    for c in counts:
        idx = np.repeat(np.arange(n), c)
        A_w, D_w = nndsvda(data, 6, weights=c)
        W_ref, H_ref = _initialize_nmf(data[idx], 6, init="nndsvda", random_state=0)
        np.testing.assert_allclose(A_w[idx], W_ref, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(D_w, H_ref, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("transpose", [False, True])
def test_large_matrix_svd_paths_equal_lapack(data, transpose):
    """The Gram/subspace-iteration SVD used for big matrices gives the LAPACK NNDSVDa."""
    X = data.T.copy() if transpose else data
    c = bootstrap_counts(X.shape[0], 1, 4)[0]
    A_ref, D_ref = nndsvda(X, 6, weights=c, exact_svd=True)
    A_big, D_big = nndsvda(X, 6, weights=c, exact_svd=False)
    np.testing.assert_allclose(D_big, D_ref, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(A_big[c > 0], A_ref[c > 0], rtol=1e-6, atol=1e-8)


def test_single_fit_float64_equals_sklearn(data):
    k = 6
    W0, H0 = _initialize_nmf(data, k, init="nndsvda", random_state=0)
    W, model = sk_fit(data, k, W0, H0)
    res = fit_nmf(data, k, init=(W0, H0), dtype=np.float64)
    assert isinstance(res, NMFResult)
    assert res.n_iter == model.n_iter_
    assert res.n_iter < 200  # the stopping rule itself is exercised
    np.testing.assert_allclose(res.D, model.components_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.A, W, rtol=1e-6, atol=1e-9)
    assert res.loss == pytest.approx(model.reconstruction_err_, rel=1e-8)


def test_single_fit_float32_default_init_matches_sklearn(data):
    k = 6
    _, model = sk_fit(data, k, random_state=0)  # sklearn float64, its own nndsvda
    res = fit_nmf(data.astype(np.float32), k)  # ours float32, our nndsvda
    assert res.A.dtype == np.float32 and res.D.dtype == np.float32
    assert res.A.min() >= 0 and res.D.min() >= 0
    r = matched_r(res.D, model.components_)
    assert r.min() >= 0.999, r
    assert res.loss == pytest.approx(model.reconstruction_err_, rel=1e-3)
    assert abs(res.n_iter - model.n_iter_) <= max(3, 0.1 * model.n_iter_)


def test_replicates_equal_sklearn_on_resampled(data):
    n, k = data.shape[0], 6
    counts = bootstrap_counts(n, 3, np.random.default_rng(3))
    assert counts.shape == (3, n) and (counts.sum(1) == n).all()
    fits64 = fit_nmf_replicates(data, k, counts, dtype=np.float64)
    fits32 = fit_nmf_replicates(data.astype(np.float32), k, counts)
    assert isinstance(fits64, ReplicateFits)
    assert fits64.A.shape == (3, n, k) and fits64.D.shape == (3, k, data.shape[1])
    for r in range(3):
        idx = np.repeat(np.arange(n), counts[r])
        W, model = sk_fit(data[idx], k, random_state=0)
        assert fits64.n_iter[r] == model.n_iter_
        np.testing.assert_allclose(fits64.D[r], model.components_, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(fits64.A[r][idx], W, rtol=1e-5, atol=1e-8)
        assert fits64.loss[r] == pytest.approx(model.reconstruction_err_, rel=1e-7)
        assert matched_r(fits32.D[r], model.components_).min() >= 0.999
        assert fits32.loss[r] == pytest.approx(model.reconstruction_err_, rel=1e-3)


def test_batching_does_not_change_results(data):
    """One batch (replicates retire in the working array, put back in order at the end) equals
    one replicate at a time, also when they retire out of order."""
    counts = bootstrap_counts(data.shape[0], 6, 11)
    a = fit_nmf_replicates(data, 5, counts, dtype=np.float64)
    b = fit_nmf_replicates(data, 5, counts, dtype=np.float64, batch_size=1)
    assert len(set(a.n_iter.tolist())) >= 3 and not (np.diff(a.n_iter) >= 0).all()
    np.testing.assert_allclose(a.D, b.D, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.A, b.A, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-12)
    np.testing.assert_array_equal(a.n_iter, b.n_iter)


def test_rows_are_put_back_in_replicate_order():
    from osnmf.factorize.nmf.solver import _to_replicate_order

    rng = np.random.default_rng(0)
    for _ in range(20):
        R = int(rng.integers(1, 9))
        slot = rng.permutation(R)  # row p holds replicate slot[p]
        a = np.stack([np.full((2, 3), r, dtype=np.float32) for r in slot])
        _to_replicate_order(a, slot)
        np.testing.assert_array_equal(a[:, 0, 0], np.arange(R))


def test_stop_reference_scales_the_stopping_rule_like_sklearn_tol(data):
    """Stopping at ``violation <= tol × ref`` is scikit-learn's rule with tol' = tol × ref / v0
    (v0 = the fit's own first violation, which ``viol_init`` reports)."""
    counts = bootstrap_counts(data.shape[0], 2, 5)
    own = fit_nmf_replicates(data, 5, counts, dtype=np.float64)
    same = fit_nmf_replicates(data, 5, counts, dtype=np.float64, stop_reference=own.viol_init)
    np.testing.assert_array_equal(same.n_iter, own.n_iter)  # its own first violation: the default
    nan = fit_nmf_replicates(data, 5, counts, dtype=np.float64, stop_reference=np.full(2, np.nan))
    np.testing.assert_array_equal(nan.n_iter, own.n_iter)
    looser = fit_nmf_replicates(data, 5, counts, dtype=np.float64, stop_reference=own.viol_init * 30)
    for r in range(2):
        idx = np.repeat(np.arange(data.shape[0]), counts[r])
        W, model = sk_fit(data[idx], 5, random_state=0, tol=1e-4 * 30)
        assert looser.n_iter[r] == model.n_iter_ < own.n_iter[r]
        assert looser.loss[r] == pytest.approx(model.reconstruction_err_, rel=1e-7)
    with pytest.raises(ConfigError):
        fit_nmf_replicates(data, 5, counts, stop_reference=np.ones(3))


def test_explicit_start_is_left_alone_unless_consumed(data):
    """The solver works on a copy of a caller's start; ``_consume_init`` (starts made for the fit
    only) works in them directly, with the same result."""
    X = data.astype(np.float32)
    counts = bootstrap_counts(X.shape[0], 2, 7)
    rng = np.random.default_rng(1)
    A0 = rng.random((2, X.shape[0], 4)).astype(np.float32)
    D0 = rng.random((2, 4, X.shape[1])).astype(np.float32)
    A_before, D_before = A0.copy(), D0.copy()
    kept = fit_nmf_replicates(X, 4, counts, init=(A0, D0))
    np.testing.assert_array_equal(A0, A_before)
    np.testing.assert_array_equal(D0, D_before)
    consumed = fit_nmf_replicates(X, 4, counts, init=(A0, D0), _consume_init=True)
    np.testing.assert_array_equal(consumed.D, kept.D)
    np.testing.assert_array_equal(consumed.loss, kept.loss)


def test_random_init_reproducible_and_fits(data):
    k = 6
    r1 = fit_nmf(data, k, init="random", random_state=5)
    r2 = fit_nmf(data, k, init="random", random_state=5)
    np.testing.assert_array_equal(r1.D, r2.D)
    _, model = sk_fit(data, k, random_state=0)
    # a random start reaches a loss close to the NNDSVDa optimum on this easy phantom
    assert r1.loss <= 1.05 * model.reconstruction_err_
    # the loss expansion used internally equals the directly computed residual
    direct = np.linalg.norm(data - r1.A.astype(np.float64) @ r1.D.astype(np.float64))
    assert r1.loss == pytest.approx(direct, rel=1e-4)


def test_sketch_rank_and_energy(data):
    s = sketch_matrix(data, energy=0.999, random_state=0)
    sv = np.linalg.svd(data, compute_uv=False)
    frac = np.cumsum(sv**2) / np.sum(sv**2)
    best = int(np.searchsorted(frac, 0.999) + 1)
    assert s.energy >= 0.999
    assert best <= s.rank <= best + 2
    np.testing.assert_allclose(s.Q.T @ s.Q, np.eye(s.rank), atol=1e-4)
    np.testing.assert_allclose(s.singular_values[:6], sv[:6], rtol=1e-4)
    np.testing.assert_allclose(s.singular_values, sv[: s.rank], rtol=0.03)
    fixed = sketch_matrix(data, rank=4, random_state=0)
    assert fixed.rank == 4
    # the randomised range finder (used for matrices with two big sides) agrees
    rnd = sketch_matrix(data, energy=0.999, random_state=0, gram_limit=0)
    assert rnd.energy >= 0.999 and best <= rnd.rank <= best + 2
    np.testing.assert_allclose(rnd.singular_values[:6], sv[:6], rtol=1e-4)
    tall = sketch_matrix(data.T.copy(), energy=0.999)
    assert tall.rank == best and tall.energy >= 0.999
    np.testing.assert_allclose(tall.Q @ tall.B, s.B.T @ s.Q.T, atol=1e-3 * data.max())


def test_compressed_matches_exact(data):
    counts = bootstrap_counts(data.shape[0], 3, 2)
    ex = fit_nmf_replicates(data, 6, counts)
    co = fit_nmf_replicates(data, 6, counts, solver="compressed", sketch={"energy": 0.999})
    for r in range(3):
        assert matched_r(co.D[r], ex.D[r]).min() >= 0.99
        assert co.loss[r] == pytest.approx(ex.loss[r], rel=0.05)
    assert co.A.min() >= 0 and co.D.min() >= 0
    single = fit_nmf(data, 6, solver="compressed")
    _, model = sk_fit(data, 6, random_state=0)
    assert matched_r(single.D, model.components_).min() >= 0.99


def test_bad_inputs(data):
    bad = data.copy()
    bad[0, 0] = -1
    with pytest.raises(InputError, match="negative"):
        fit_nmf(bad, 3)
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        fit_nmf(bad, 3)
    with pytest.raises(InputError):
        fit_nmf(data[0], 3)
    with pytest.raises(ConfigError):
        fit_nmf(data, 0)
    with pytest.raises(ConfigError, match="solver"):
        fit_nmf(data, 3, solver="mu")
    with pytest.raises(ConfigError, match="backend"):
        fit_nmf(data, 3, backend="jax")
    with pytest.raises(InputError, match="row_counts"):
        fit_nmf_replicates(data, 3, np.ones((2, 5), dtype=int))
    with pytest.raises(InputError):
        fit_nmf(data, 3, init=(np.ones((2, 3)), np.ones((3, 2))))
    with pytest.raises(ConfigError):
        bootstrap_counts(0, 3, 0)


def test_bootstrap_counts_is_multinomial():
    c = bootstrap_counts(1000, 50, 0)
    np.testing.assert_array_equal(c, bootstrap_counts(1000, 50, 0))
    assert (c.sum(1) == 1000).all()
    # fraction of rows never drawn ≈ (1 - 1/n)^n ≈ e^-1
    assert abs((c == 0).mean() - np.exp(-1)) < 0.01


def test_torch_missing_is_a_config_error(data, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("no torch here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ConfigError, match="PyTorch"):
        fit_nmf(data, 3, backend="torch")


def test_an_operator_made_once_gives_the_same_fits(data):
    from osnmf.factorize.checks import check_matrix
    from osnmf.factorize.nmf.operators import make_operator

    counts = bootstrap_counts(data.shape[0], 2, 9)
    X = check_matrix(data, dtype=np.float32)
    direct = fit_nmf_replicates(data, 4, counts, solver="compressed", random_state=1)
    op = make_operator(X, "compressed", random_state=np.random.default_rng(1))
    again = fit_nmf_replicates(op, 4, counts, random_state=1)
    np.testing.assert_allclose(again.D, direct.D, rtol=1e-5, atol=1e-7)
    ex = make_operator(X)
    np.testing.assert_allclose(
        fit_nmf_replicates(ex, 4, counts).D, fit_nmf_replicates(data, 4, counts).D, rtol=1e-5,
        atol=1e-7,
    )


def test_exact_operator_gram_and_row_norms_equal_float64_products():
    """The Gram is built from pairs of row panels (here 3 panels of ≤ 2,048 rows) and mirrored;
    the row norms in blocks. Both against numpy's float64 products."""
    from osnmf.factorize.nmf.operators import ExactOperator

    X = np.random.default_rng(4).random((4200, 40), dtype=np.float32)
    ref = X.astype(np.float64)
    op = ExactOperator(X)
    G = op.left_gram()
    np.testing.assert_allclose(G, ref @ ref.T, rtol=1e-6)
    np.testing.assert_array_equal(G, G.T)
    sq = op.row_sq_norms()
    np.testing.assert_allclose(sq, (ref**2).sum(1), rtol=1e-12)
    assert op.row_sq_norms() is sq and not sq.flags.writeable  # computed once, shared read-only
    op.forget_gram()
    np.testing.assert_array_equal(op.left_gram(), G)


# ---- non-finite fits (issue 35, item 8): caught where they arise, never stored, never iterated -------------------
def test_k_above_a_bootstraps_rank_is_scikit_learns_fit():
    """K = 7 on 8 rows (what the CLI advises for 8 experiments): a bootstrap draws only 5 or 6
    distinct rows, so NNDSVDa meets null directions; they start at the mean (scikit-learn's
    NNDSVDa fill) instead of 0/0 = NaN, and each replicate is scikit-learn's NMF of its rows."""
    X = np.random.default_rng(0).gamma(2.0, 1.0, (8, 500))
    counts = bootstrap_counts(8, range(3), 0)
    assert (counts > 0).sum(axis=1).tolist() == [5, 5, 6]
    ours = fit_nmf_replicates(X, 7, counts, dtype=np.float64)
    for r in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            sk = NMF(7, init="nndsvda", solver="cd", max_iter=200, tol=1e-4).fit(X[np.repeat(np.arange(8), counts[r])])
        assert ours.n_iter[r] == sk.n_iter_
        assert ours.loss[r] == pytest.approx(sk.reconstruction_err_, rel=1e-6)
    f32 = fit_nmf_replicates(X.astype(np.float32), 7, counts)  # the sweep's precision: finite too (NaN before)
    assert np.isfinite(f32.D).all() and np.isfinite(f32.loss).all()


def test_values_whose_products_overflow_are_refused_with_the_fix():
    from osnmf.errors import NonFiniteFitError
    from osnmf.factorize.checks import max_value
    from osnmf.factorize.nmf.fits import solve_replicates
    from osnmf.factorize.nmf.operators import ExactOperator

    X = np.random.default_rng(1).random((8, 1000)).astype(np.float32)
    X[0, 0] = 1e20  # finite in float32; its square is not
    with pytest.raises(InputError, match=r"X has values up to 1e\+20, .* rescale the data, e\.g\. divide it by"):
        fit_nmf(X, 2)
    # the bound: sqrt(float32 max / (1e6 n m)); at the bound the fit is finite, 1,000 times above it not
    assert max_value((8, 1000)) == pytest.approx(np.sqrt(np.finfo(np.float32).max / 8e9))
    for scale, ok in ((1.0, True), (1e3, False)):
        X[0, 0] = scale * max_value(X.shape) * (1 - 1e-6)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                fit = solve_replicates(ExactOperator(X), 2, np.ones((1, 8), np.int64), init="nndsvda", max_iter=30,
                                       tol=1e-4)
            finite = bool(np.isfinite(fit.loss).all() and np.isfinite(fit.D).all())
        except NonFiniteFitError:
            finite = False
        assert finite is ok, scale


def test_a_fit_that_goes_non_finite_raises_and_stores_nothing(tmp_path, monkeypatch):
    """A NaN start (here planted) stops the block at once with one line naming K, the sweep's
    replicates, the iteration and the cause; no block is stored, so a rerun does not loop on a
    'damaged block' but says the same again."""
    import osnmf.factorize.sweep.run as sweep_module
    from osnmf.errors import NonFiniteFitError
    from osnmf.factorize.stanmf import StaNMF

    real = sweep_module.solve_replicates

    def poisoned(op, k, counts, **kw):
        if k == 3:
            kw["init"] = (np.full((len(counts), op.shape[0], k), np.nan), np.ones((len(counts), k, op.shape[1])))
        return real(op, k, counts, **kw)

    import osnmf.factorize.nmf.fits as nmf_module

    monkeypatch.setattr(sweep_module, "solve_replicates", poisoned)
    monkeypatch.setattr(nmf_module, "_init_factors", lambda init, a, d, dt: (np.asarray(init[0], dt),
                                                                             np.asarray(init[1], dt)))
    X = np.random.default_rng(2).random((12, 30))
    for _ in range(2):
        with pytest.raises(NonFiniteFitError) as err:
            StaNMF(k_range=[2, 3], n_replicates=4, block_size=2, store=tmp_path).fit(X)
        message = str(err.value)
        assert message == ("NMF at K=3 went non-finite (NaN or infinity) in replicate(s) 0, 1 at its start: "
                           "the explicit start is non-finite"), message
        assert not list(tmp_path.rglob("k003/*.npz"))  # nothing of K = 3 stored
        assert len(list(tmp_path.rglob("k002/r*.npz"))) == 2  # K = 2 kept for the rerun


def test_a_coordinate_descent_that_turns_non_finite_stops_at_that_iteration():
    from osnmf.errors import NonFiniteFitError
    from osnmf.factorize.nmf.kernels.numpy_cd import NumpyKernels
    from osnmf.factorize.nmf.operators import ExactOperator
    from osnmf.factorize.nmf.solver import solve

    X = np.random.default_rng(3).random((6, 9)).astype(np.float32)
    kernels = NumpyKernels(ExactOperator(X))
    real_sweep = kernels.cd_sweep
    calls = []

    def sweep(F, G, XF, w):  # the third sweep (iteration 2, A update) meets an overflow
        calls.append(1)
        if len(calls) == 3:
            F[1, 0, 0] = np.inf
        return real_sweep(F, G, XF, w)

    kernels.cd_sweep = sweep
    At, D = np.ones((2, 2, 6), np.float32), np.ones((2, 2, 9), np.float32)
    with pytest.raises(NonFiniteFitError) as err:
        solve(kernels, At, D, None, 50, 0.0)
    assert (err.value.replicates, err.value.iteration) == ((1,), 2)
