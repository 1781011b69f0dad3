"""StaNMF and the sweep store, against scikit-learn fits, brute force and planted truth."""

from itertools import combinations, permutations

import numpy as np
import pytest
from bootstrap_reference import documented_counts
from reference_grow import grow_factors
from sklearn.decomposition import NMF
from threadpoolctl import threadpool_limits

import osnmf
from osnmf.errors import ConfigError, InputError
from osnmf.factorize.choose_k.stability import cross_correlation, hungarian_dissimilarity
from osnmf.factorize.nmf.operators import sketch_matrix
from osnmf.factorize.stanmf import StaNMF
from osnmf.factorize.sweep.params import SweepParams, plan_blocks
from osnmf.factorize.sweep.run import fit_block, replicate_counts, run_sweep
from osnmf.factorize.sweep.store import SweepStore


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # the test machine is shared: threaded BLAS on tiny products only spins
    with threadpool_limits(1):
        yield


def _low_rank(n=40, m=120, k=3, seed=0, noise=0.02):
    rng = np.random.default_rng(seed)
    A = rng.gamma(0.6, size=(n, k))
    D = rng.gamma(0.6, size=(k, m))
    X = A @ D
    return (X * rng.lognormal(0, noise, X.shape)).astype(np.float32), D


def _matched_r(P, Q):
    return 1.0 - hungarian_dissimilarity(cross_correlation(P, Q))


def _brute_hungarian(P, Q):
    Pn = P / np.linalg.norm(P, axis=1, keepdims=True)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    C = Pn @ Qn.T
    K = len(C)
    return 1 - max(sum(C[i, s[i]] for i in range(K)) for s in permutations(range(K))) / K


def test_replicates_equal_sklearn_on_resampled_rows():
    X, _ = _low_rank()
    model = StaNMF(k_range=[3], n_replicates=4, random_state=5, max_iter=300,
                   grow=False).fit(X)
    params = SweepParams(random_state=5)
    counts = documented_counts(X.shape[0], 4, seed=5)  # the draw written out, not osnmf's function
    np.testing.assert_array_equal(replicate_counts(X.shape[0], range(4), params), counts)
    ref = []
    for r in range(4):
        idx = np.repeat(np.arange(X.shape[0]), counts[r])
        sk = NMF(3, init="nndsvda", solver="cd", max_iter=300, tol=1e-4).fit(X[idx].astype(float))
        ref.append(sk.components_)
        assert _matched_r(model.replicates_[3][r], sk.components_) >= 0.999
    # instability from sklearn's replicates by brute force (permutations, explicit pairs)
    brute = np.mean([_brute_hungarian(ref[p], ref[q]) for p, q in combinations(range(4), 2)])
    assert model.instability_.loc[0, "hungarian"] == pytest.approx(brute, abs=2e-3)
    # final model = same solver + NNDSVDa on the full data = sklearn's fit of X
    sk_full = NMF(3, init="nndsvda", solver="cd", max_iter=300, tol=1e-4).fit(X.astype(float))
    assert _matched_r(model.components_, sk_full.components_) >= 0.999
    assert model.coefficients_.shape == (X.shape[0], 3)
    assert model.components_.shape == (3, X.shape[1])


def test_bootstrap_counts_are_proper_and_shared_across_k():
    params = SweepParams(random_state=1)
    c = replicate_counts(30, [0, 1, 2], params)
    assert c.shape == (3, 30) and (c.sum(axis=1) == 30).all() and (c >= 0).all()
    np.testing.assert_array_equal(c[1:], replicate_counts(30, [1, 2], params))
    init = replicate_counts(30, [0, 1], SweepParams(perturbation="init"))
    assert (init == 1).all()


def test_planted_k_recovered_on_phantom():
    """Small phantom (4 planted patterns): the selected K and its patterns are the planted ones."""
    ph = osnmf.make_phantom(n_genes=60, n_patterns=4, noise=0.2, missing=0.0, seed=2)
    X, _ = ph.data.to_matrix()
    X, P = X[:, ::40], ph.patterns[:, ::40]
    model = StaNMF(k_range=range(2, 8), n_replicates=6, n_restarts=2, random_state=0).fit(X)
    assert model.k_ == 4
    assert list(model.instability_["k"]) == list(range(2, 8))
    assert _matched_r(model.components_, P) >= 0.95


def test_restarts_never_increase_loss_and_init_perturbation():
    X, _ = _low_rank(k=4, noise=0.3)
    one = StaNMF(k_range=[5], n_replicates=3, grow=False, random_state=0).fit(X)
    three = StaNMF(k_range=[5], n_replicates=3, n_restarts=3, grow=False,
                   random_state=0).fit(X)
    l1 = one.replicate_info_["loss"].to_numpy()
    l3 = three.replicate_info_["loss"].to_numpy()
    assert (l3 <= l1 * (1 + 1e-6)).all()
    assert set(three.replicate_info_["restart"]) <= {0, 1, 2}
    # random restarts only: every replicate sees all rows, inits differ
    init = StaNMF(k_range=[3], n_replicates=3, perturbation="init", random_state=0).fit(X)
    D = init.replicates_[3]
    assert not np.allclose(D[0], D[1])
    assert init.instability_.loc[0, "hungarian"] < 0.05


def test_store_resumes_and_never_mixes_inputs(tmp_path):
    X, _ = _low_rank()
    params = SweepParams(random_state=0)
    blocks = plan_blocks([2, 3], n_replicates=4, block_size=2)
    store = SweepStore.open(tmp_path, X, params)
    calls = []

    def interrupted(*args):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args[1])
        return fit_block(*args)

    with pytest.raises(KeyboardInterrupt):
        run_sweep(X, blocks, params, store=store, block_fn=interrupted)
    assert sum(store.has(b) for b in blocks) == 2
    # resume: only the two missing blocks run
    ran = run_sweep(X, blocks, params, store=store)
    assert len(ran) == 2 and all(store.has(b) for b in blocks)

    def forbidden(*args):
        raise AssertionError("a stored block was recomputed")

    assert run_sweep(X, blocks, params, store=store, block_fn=forbidden) == {}
    # the resumed store equals an uninterrupted in-memory sweep (sklearn-equivalent fits)
    fresh = run_sweep(X, blocks, params)
    for b, res in fresh.items():
        np.testing.assert_allclose(store.get(b).components, res.components, rtol=1e-5, atol=1e-6)
    # other data or other parameters open another run
    X2 = X.copy()
    X2[0, 0] += 1
    assert SweepStore.open(tmp_path, X2, params).path != store.path
    assert SweepStore.open(tmp_path, X, SweepParams(random_state=0, tol=1e-5)).path != store.path
    assert SweepStore.open(tmp_path, X, params).path == store.path


def test_load_k_joins_the_stored_blocks(tmp_path):
    """``load_k`` (filled block by block) equals the blocks concatenated; ``first`` = the prefix."""
    X, _ = _low_rank()
    params = SweepParams(random_state=0)
    blocks = plan_blocks([3], n_replicates=7, block_size=3)
    store = SweepStore.open(tmp_path, X, params)
    run_sweep(X, blocks, params, store=store)
    parts = [store.get(b) for b in blocks]
    whole = store.load_k(3, 7, 3, coefficients=True)
    np.testing.assert_array_equal(whole.components, np.concatenate([p.components for p in parts]))
    np.testing.assert_array_equal(whole.coefficients, np.concatenate([p.coefficients for p in parts]))
    np.testing.assert_array_equal(whole.seeds, np.arange(7))
    head = store.load_k(3, 7, 3, first=4)
    assert head.coefficients is None and head.components.shape[0] == 4
    np.testing.assert_array_equal(head.components, whole.components[:4])
    np.testing.assert_array_equal(head.loss, whole.loss[:4])


def test_stored_patterns_read_on_demand_equal_the_blocks(tmp_path):
    """``SweepStore.patterns``: columns, replicates and slices read from the block files equal
    the blocks as numpy loads them; γ and the panel computed from it equal those of the array
    (γ checked pair by pair against brute force); a truncated block is one clear error."""
    from osnmf.factorize.choose_k import criteria as sel
    from osnmf.factorize.choose_k.stability import instability

    X, _ = _low_rank()
    params = SweepParams(random_state=0)
    blocks = plan_blocks([3], n_replicates=7, block_size=3)
    store = SweepStore.open(tmp_path, X, params)
    run_sweep(X, blocks, params, store=store)
    whole = np.concatenate([store.get(b).components for b in blocks])  # (7, 3, m)
    stored = store.patterns(3, 7, 3)
    assert stored.shape == whole.shape and stored.dtype == whole.dtype
    np.testing.assert_array_equal(stored.columns(5, 77), whole[:, :, 5:77])
    np.testing.assert_array_equal(stored[4], whole[4])
    np.testing.assert_array_equal(np.asarray(stored[2:6]), whole[2:6])
    np.testing.assert_array_equal(stored[2:6][3], whole[5])
    np.testing.assert_array_equal(np.stack(list(stored)), whole)
    got = instability(stored)
    brute = [hungarian_dissimilarity(cross_correlation(whole[p], whole[q])) for p, q in combinations(range(7), 2)]
    assert got["hungarian"] == pytest.approx(np.mean(brute), abs=1e-12)
    pearson = instability(whole, centered=True)["hungarian"]
    assert instability(stored, centered=True)["hungarian"] == pytest.approx(pearson, abs=1e-12)
    counts = replicate_counts(X.shape[0], range(7), params)
    folds, voxels = sel.voxel_folds(X.shape[1], 3, 0), np.arange(0, X.shape[1], 2)
    loss = np.ones(7)
    assert sel.panel_row(X, stored, loss, counts, folds, voxels) == sel.panel_row(X, whole, loss, counts, folds, voxels)
    path = store.block_path(blocks[1])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="r0003"):
        store.patterns(3, 7, 3).columns(0, 10)


def test_stanmf_with_store_reuses_results(tmp_path):
    X, _ = _low_rank()
    a = StaNMF(k_range=[2, 3], n_replicates=3, store=tmp_path, random_state=0).fit(X)
    b = StaNMF(k_range=[2, 3], n_replicates=3, store=tmp_path, random_state=0).fit(X)
    np.testing.assert_array_equal(a.instability_.to_numpy(), b.instability_.to_numpy())
    c = StaNMF(k_range=[2, 3], n_replicates=3, block_size=1, n_jobs=2, random_state=0).fit(X)
    np.testing.assert_allclose(c.instability_.to_numpy(), a.instability_.to_numpy(), atol=1e-6)
    assert a.replicates_[3].shape == (3, 3, X.shape[1])
    assert len(list(a.store_.path.glob("k*/r*.npz"))) == 2


@pytest.mark.parametrize(
    "X, err",
    [
        (np.ones(5), InputError),
        (np.array([[1.0, np.nan], [1.0, 2.0]]), InputError),
        (np.array([[1.0, -1.0], [1.0, 2.0]]), InputError),
        (np.zeros((3, 3)), InputError),
        (np.array([["a", "b"], ["c", "d"]]), InputError),
    ],
)
def test_bad_input(X, err):
    with pytest.raises(err):
        StaNMF(k_range=[1], n_replicates=2).fit(X)


def test_bad_config():
    X, _ = _low_rank()
    with pytest.raises(ConfigError):
        StaNMF(k_range=[2], perturbation="jitter", n_replicates=2).fit(X)
    with pytest.raises(ConfigError):
        StaNMF(k_range=[500], n_replicates=2).fit(X)
    with pytest.raises(ConfigError):
        StaNMF(k_range=[2], n_replicates=1).fit(X)
    with pytest.raises(ConfigError):
        StaNMF(k_range=[2], n_replicates=2, n_restarts=0).fit(X)
    with pytest.raises(ConfigError, match="grow='sometimes': must be True, False or 'only'"):
        StaNMF(k_range=[2], n_replicates=2, grow="sometimes").fit(X)


def test_block_memory_stays_within_the_block_size_model():
    """tracemalloc's peak of one block (grown starts, warm K−1 factors handed in) against the
    model ``auto_block_size`` sizes blocks by (six float32 copies of the block's factors), with
    room: at most four. On the
    compressed path, as at paper size (the exact path's dense NNDSVDa SVD of a small X holds
    X-sized temporaries instead)."""
    import tracemalloc

    rng = np.random.default_rng(3)
    n, m, k, R = 40, 20_000, 6, 4
    X = rng.random((n, m)).astype(np.float32)
    for grow in ("only", True):
        params = SweepParams(grow=grow, solver="compressed", max_iter=15, tol=0.0)
        counts = replicate_counts(n, range(R), params)
        warm = (rng.random((R, n, k - 1)).astype(np.float32), rng.random((R, k - 1, m)).astype(np.float32))
        op = sketch_matrix(X, rank=12, random_state=0)
        fit_block(op, k, counts, params, np.arange(R), op, warm)  # compile, cache the Gram
        tracemalloc.start()
        fit_block(op, k, counts, params, np.arange(R), op, warm)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        # measured 2.4 (grow="only") and 3.4 copies (4.1 before the solver returned its working D)
        assert peak <= 4 * 4 * R * k * (n + m), (grow, peak / (4 * R * k * (n + m)))


def test_grow_factors_is_the_residual_leading_pair():
    rng = np.random.default_rng(7)
    X = rng.random((30, 50)).astype(np.float32)
    A = rng.random((2, 30, 2)).astype(np.float32) * 0.5
    D = rng.random((2, 2, 50)).astype(np.float32) * 0.5
    counts = np.vstack([np.ones(30, int), rng.multinomial(30, np.ones(30) / 30)])
    A0, D0 = grow_factors(X, A, D, counts, n_power=200)
    for r in range(2):
        np.testing.assert_array_equal(A0[r, :, :2], A[r])
        np.testing.assert_array_equal(D0[r, :2], D[r])
        E = np.maximum(X.astype(float) - A[r] @ D[r], 0)
        U, s, Vt = np.linalg.svd(np.sqrt(counts[r])[:, None] * E)
        v = np.abs(Vt[0])
        np.testing.assert_allclose(D0[r, 2], np.sqrt(s[0]) * v, rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(A0[r, :, 2], E @ v / np.sqrt(s[0]), rtol=1e-3, atol=1e-5)


def test_grow_never_increases_replicate_loss():
    X, _ = _low_rank(k=4, noise=0.3)
    plain = StaNMF(k_range=[3, 4, 5], n_replicates=3, grow=False, random_state=0).fit(X)
    grown = StaNMF(k_range=[3, 4, 5], n_replicates=3, recipe="fast", grow=True, random_state=0).fit(X)
    lp = plain.replicate_info_["loss"].to_numpy()
    lg = grown.replicate_info_["loss"].to_numpy()
    assert (lg <= lp * (1 + 1e-6)).all()
    assert (grown.replicate_info_.query("k == 3")["restart"] == 0).all()  # nothing to grow from
    # final model at a fixed K: NNDSVDa vs the best of NNDSVDa and the grown K-1 fit
    plain = StaNMF(k_range=[4], n_replicates=2, grow=False, random_state=0).fit(X)
    grown = StaNMF(k_range=[4], n_replicates=2, recipe="fast", grow=True, random_state=0).fit(X)
    assert grown.loss_ <= plain.loss_ * (1 + 1e-6)
