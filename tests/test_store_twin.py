"""The sweep store and its in-memory twin: the same calls give the same results, and a fit with a
store equals one without, to the bit (γ, K, the selection panel, certification, the k_min check,
the replicate patterns and the final model)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from osnmf.errors import InputError
from osnmf.factorize.nmf.fits import NMFResult
from osnmf.factorize.stanmf import StaNMF
from osnmf.factorize.sweep.params import SweepParams, plan_blocks
from osnmf.factorize.sweep.plan import SweepPlan, k_values
from osnmf.factorize.sweep.run import run_sweep
from osnmf.factorize.sweep.store import MemoryStore, SweepStore, open_store


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def _data(n=50, m=70, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.gamma(0.6, size=(n, k)) @ rng.gamma(0.6, size=(k, m))
    return (X * rng.lognormal(0, 0.05, X.shape)).astype(np.float32)


FITTED = ("k_", "k_rule_", "solver_", "loss_", "n_iter_", "certified_agrees_")
TABLES = ("instability_", "selection_", "replicate_info_", "certificate_", "k_min_check_")


@pytest.mark.parametrize("settings", [
    {"recipe": "paper"},
    {"recipe": "fast", "k_range": range(2, 7), "solver": "compressed", "sketch": {"rank": 6}, "certify": 2,
     "n_restarts": 2},
], ids=["paper", "fast-compressed"])
def test_fit_with_a_store_equals_one_without(tmp_path, settings):
    X = _data()
    kw = {"k_range": range(2, 6), "n_replicates": 8, "block_size": 3, **settings}  # certify: 2 of 8 at <= 5 K
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        memory = StaNMF(**kw).fit(X)
        disk = StaNMF(**kw, store=tmp_path).fit(X)
        resumed = StaNMF(**kw, store=tmp_path).fit(X)  # everything read back from the store
    assert memory.store_ is None and disk.store_ is not None
    if settings["recipe"] == "fast":  # the store's paths all ran
        assert memory.certificate_ is not None and memory.k_min_check_ is not None
    for other in (disk, resumed):
        for name in FITTED:
            assert getattr(other, name) == getattr(memory, name), name
        for name in TABLES:
            a, b = getattr(memory, name), getattr(other, name)
            assert (a is None and b is None) or a.equals(b), name
        np.testing.assert_array_equal(other.components_, memory.components_)
        np.testing.assert_array_equal(other.coefficients_, memory.coefficients_)
        assert other.k_rules_ == memory.k_rules_
        assert list(other.replicates_) == list(memory.replicates_)
        for k in memory.replicates_:
            np.testing.assert_array_equal(np.asarray(other.replicates_[k]), memory.replicates_[k])
            np.testing.assert_array_equal(other.replicates_.head(k, 3), memory.replicates_.head(k, 3))
    assert "memory" in repr(memory.replicates_) and "store" in repr(disk.replicates_)


def test_memory_store_answers_as_the_sweep_store(tmp_path):
    X = _data()
    params = SweepParams(random_state=1, grow=True)
    blocks = plan_blocks([2, 3], n_replicates=7, block_size=3)
    disk, memory = open_store(tmp_path, X, params), open_store(None, X, params)
    assert isinstance(disk, SweepStore) and isinstance(memory, MemoryStore)
    run_sweep(X, blocks, params, store=disk)
    assert run_sweep(X, blocks, params, store=memory, keep_results=False) == {}
    for spec in blocks:
        assert disk.stored(spec) and memory.stored(spec) and memory.has(spec)
    for k in (2, 3):
        for kw in ({}, {"coefficients": True}, {"first": 4}, {"components": False}, {"first": 5, "coefficients": True}):
            a, b = disk.load_k(k, 7, 3, **kw), memory.load_k(k, 7, 3, **kw)
            for field in ("components", "coefficients", "n_iter", "loss", "restart", "seeds"):
                x, y = getattr(a, field), getattr(b, field)
                assert (x is None) == (y is None), (k, kw, field)
                if x is not None:
                    assert x.dtype == y.dtype
                    np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(np.asarray(disk.patterns(k, 7, 3)), memory.patterns(k, 7, 3))
    # values: stored with their tag, another tag reads None (as on disk)
    for store in (disk, memory):
        assert store.get_values("k002/x.json", {"a": 1}) is None
        store.put_values("k002/x.json", {"a": 1}, {"gamma": 0.1, "n": [1, 2]})
        assert store.get_values("k002/x.json", {"a": 1}) == {"gamma": 0.1, "n": [1, 2]}
        assert store.get_values("k002/x.json", {"a": 2}) is None
    # the final model
    model = NMFResult(np.ones((50, 2), np.float32), np.full((2, 70), 2, np.float32), 7, 1.5)
    for store in (disk, memory):
        assert store.get_final(2, 1) is None
        store.put_final(2, 1, model)
        got = store.get_final(2, 1)
        np.testing.assert_array_equal(got.A, model.A)
        np.testing.assert_array_equal(got.D, model.D)
        assert (got.n_iter, got.loss) == (7, 1.5)
        assert store.get_final(2, 2) is None
    memory.close()  # the blocks go, the joined patterns stay
    assert not memory.stored(blocks[0])
    np.testing.assert_array_equal(memory.patterns(3, 7, 3), np.asarray(disk.patterns(3, 7, 3)))
    with pytest.raises(InputError, match="missing"):
        memory.load_k(2, 7, 3)


def test_sweep_plan_checks_and_blocks():
    X = _data()
    ks = k_values(range(4, 1, -1), *X.shape)
    assert ks == [2, 3, 4]
    plan = SweepPlan.make(X.shape, ks, SweepParams(), n_replicates=5, block_size=9, n_jobs=2)
    assert plan.block_size == 5  # at most R
    assert plan.blocks == plan_blocks(ks, 5, 5)
    assert type(plan.executor()).__name__ == "ThreadExecutor"
    assert type(SweepPlan.make(X.shape, ks, SweepParams(), 5).executor()).__name__ == "SerialExecutor"
    for bad in ({"n_replicates": 1}, {"n_replicates": 4, "n_jobs": 0}, {"n_replicates": 4, "block_size": 0}):
        with pytest.raises(ValueError):
            SweepPlan.make(X.shape, ks, SweepParams(), **bad)
    assert pd.Series(ks).is_monotonic_increasing
