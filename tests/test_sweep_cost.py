"""The cost said before a sweep of cold exact fits: its flop model against a count of the solver's
own products, and the one-line warning of a long paper-recipe sweep (osnmf.factorize.sweep.cost)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import osnmf
from osnmf.errors import OsnmfWarning
from osnmf.factorize.nmf.fits import fit_nmf_replicates
from osnmf.factorize.nmf.operators import ExactOperator
from osnmf.factorize.sweep import cost


class CountingOperator(ExactOperator):
    """X, counting the flops of every product by X that the solver asks for."""

    flops = 0

    def left(self, P, out=None):
        self.flops += 2 * P.shape[0] * self.shape[0] * self.shape[1]
        return super().left(P, out=out)

    def left_t(self, P):
        self.flops += 2 * P.shape[0] * self.shape[0] * self.shape[1]
        return super().left_t(P)


def _data(seed=0, n=50, m=300, k=4):
    rng = np.random.default_rng(seed)
    return (rng.random((n, k)) @ rng.random((k, m)) + 0.01 * rng.random((n, m))).astype(np.float32)


@pytest.mark.parametrize("k", [3, 6])
def test_fit_flops_equal_the_counted_products_of_the_solver(k):
    X = _data()
    counts = np.random.default_rng(1).multinomial(X.shape[0], np.full(X.shape[0], 1 / X.shape[0]), size=4)
    op = CountingOperator(X)
    res = fit_nmf_replicates(op, k, counts, max_iter=120)
    model = sum(cost.fit_flops(*X.shape, k, int(it)) for it in res.n_iter)
    assert op.flops == model
    assert res.n_iter.max() <= 120


def test_gemm_rate_is_positive_and_finite():
    rate = cost.gemm_rate(_data(), width=16)
    assert np.isfinite(rate) and rate > 0


def test_paper_recipe_warns_once_before_a_long_sweep(monkeypatch):
    monkeypatch.setattr(cost, "WARN_ABOVE_S", 0.0)  # every sweep is "long"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        osnmf.StaNMF(k_range=[3, 4], n_replicates=3, random_state=0).fit(_data())
    lines = [str(w.message) for w in caught if issubclass(w.category, OsnmfWarning) and "cold exact" in str(w.message)]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "6 cold exact fits, K 3-4, on 50 x 300" in lines[0]
    low, high = (float(x) for x in lines[0].split("needs ")[1].split(" flops")[0].split("-"))
    flops = [cost.fit_flops(50, 300, k, it) * 3 for k in (3, 4) for it in (50, 200)]
    assert (low, high) == pytest.approx((flops[0] + flops[2], flops[1] + flops[3]), rel=0.05)  # printed to 2 digits


def test_no_warning_for_the_fast_recipe_a_short_sweep_or_a_finished_store(monkeypatch, tmp_path):
    X = _data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        osnmf.StaNMF(k_range=[3, 4], n_replicates=3, random_state=0, store=str(tmp_path)).fit(X)  # short
        monkeypatch.setattr(cost, "WARN_ABOVE_S", 0.0)
        osnmf.StaNMF(k_range=[3, 4], n_replicates=3, random_state=0, recipe="fast", certify=0).fit(X)
        osnmf.StaNMF(k_range=[3, 4], n_replicates=3, random_state=0, store=str(tmp_path)).fit(X)  # all stored
    assert not [w for w in caught if "cold exact" in str(w.message)]
