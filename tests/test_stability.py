"""Instability metrics against brute force (permutations, explicit loops, numpy corrcoef)."""

from itertools import combinations, permutations

import numpy as np
import pandas as pd
import pytest

from osnmf.errors import InputError
from osnmf.factorize.choose_k.stability import (
    amari_dissimilarity,
    cross_correlation,
    hungarian_dissimilarity,
    instability,
    pairwise_correlations,
    select_k,
)


def _uncentred_loop(P, Q):
    C = np.empty((len(P), len(Q)))
    for k, p in enumerate(P):
        for l, q in enumerate(Q):
            C[k, l] = float(np.dot(p, q)) / (np.sqrt(np.dot(p, p)) * np.sqrt(np.dot(q, q)))
    return C


def _hungarian_brute(C):
    K = C.shape[0]
    best = max(sum(C[k, s[k]] for k in range(K)) for s in permutations(range(K)))
    return 1.0 - best / K


def _amari_loop(C):
    K = C.shape[0]
    col_max = [max(C[k, l] for k in range(K)) for l in range(K)]
    row_max = [max(C[k, l] for l in range(K)) for k in range(K)]
    return (2 * K - sum(col_max) - sum(row_max)) / (2 * K)


def test_cross_correlation_uncentred_and_pearson():
    rng = np.random.default_rng(0)
    P = rng.random((4, 50))
    Q = rng.random((5, 50)).astype(np.float32)
    np.testing.assert_allclose(cross_correlation(P, Q), _uncentred_loop(P, Q), atol=1e-6)
    ref = np.corrcoef(P, Q.astype(np.float64))[:4, 4:]
    np.testing.assert_allclose(cross_correlation(P, Q, centered=True), ref, atol=1e-6)
    # scale invariance (the reason correlation is used) and self-correlation 1
    np.testing.assert_allclose(cross_correlation(P, 7.0 * P).diagonal(), 1.0, atol=1e-12)


def test_cross_correlation_zero_pattern_and_errors():
    P = np.vstack([np.zeros(10), np.arange(10.0)])
    C = cross_correlation(P, P)
    assert C[0, 0] == 0 and C[0, 1] == 0 and C[1, 1] == pytest.approx(1.0)
    with pytest.raises(InputError):
        cross_correlation(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(InputError):
        cross_correlation(np.ones(3), np.ones((2, 3)))


def test_dissimilarities_match_brute_force():
    rng = np.random.default_rng(1)
    for K in (1, 2, 3, 5, 6):
        for _ in range(5):
            C = rng.uniform(-0.2, 1.0, size=(K, K))
            assert hungarian_dissimilarity(C) == pytest.approx(_hungarian_brute(C), abs=1e-12)
            assert amari_dissimilarity(C) == pytest.approx(_amari_loop(C), abs=1e-12)
    stack = rng.random((3, 2, 4, 4))
    h = hungarian_dissimilarity(stack)
    a = amari_dissimilarity(stack)
    assert h.shape == a.shape == (3, 2)
    assert h[2, 1] == pytest.approx(_hungarian_brute(stack[2, 1]))
    assert a[1, 0] == pytest.approx(_amari_loop(stack[1, 0]))


def test_permuted_copy_has_zero_dissimilarity():
    rng = np.random.default_rng(2)
    P = rng.random((5, 30))
    Q = 3.0 * P[[3, 0, 4, 1, 2]]
    C = cross_correlation(P, Q)
    assert hungarian_dissimilarity(C) == pytest.approx(0.0, abs=1e-12)
    assert amari_dissimilarity(C) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("centered", [False, True])
def test_instability_matches_pair_loop(centered):
    rng = np.random.default_rng(3)
    R, K, m = 6, 4, 40
    base = rng.random((K, m))
    pats = np.abs(base[None] + 0.3 * rng.standard_normal((R, K, m))).astype(np.float32)
    for r in range(R):
        pats[r] = pats[r][rng.permutation(K)]
    hs, am = [], []
    for p, q in combinations(range(R), 2):
        P64, Q64 = pats[p].astype(np.float64), pats[q].astype(np.float64)
        C = np.corrcoef(P64, Q64)[:K, K:] if centered else _uncentred_loop(P64, Q64)
        hs.append(_hungarian_brute(C))
        am.append(_amari_loop(C))
    out = instability(pats, centered=centered)
    assert out["n_pairs"] == R * (R - 1) // 2
    assert out["hungarian"] == pytest.approx(np.mean(hs), abs=1e-6)
    assert out["hungarian_sd"] == pytest.approx(np.std(hs), abs=1e-6)
    assert out["amari"] == pytest.approx(np.mean(am), abs=1e-6)
    assert out["amari_sd"] == pytest.approx(np.std(am), abs=1e-6)
    assert out["hungarian_se"] == pytest.approx(np.std(hs) * np.sqrt(2 / R), abs=1e-6)
    assert 0 < out["amari"] <= out["hungarian"]  # max-based matching is never worse


def test_pairwise_correlations_blocks():
    rng = np.random.default_rng(4)
    pats = rng.random((3, 2, 25))
    C = pairwise_correlations(pats)
    assert C.shape == (3, 3, 2, 2)
    np.testing.assert_allclose(C[2, 0], _uncentred_loop(pats[2], pats[0]), atol=1e-12)


def test_instability_rejects_bad_input():
    with pytest.raises(InputError):
        instability(np.ones((1, 2, 3)))
    with pytest.raises(InputError):
        instability(np.ones((2, 3)))


def test_select_k_argmin_and_ties():
    df = pd.DataFrame({"k": [5, 3, 4, 6], "hungarian": [0.1, 0.2, 0.1, np.nan]})
    assert select_k(df) == 4
    assert select_k({8: 0.3, 9: 0.01, 10: 0.01}) == 9
    assert select_k(df.assign(amari=[0.5, 0.0, 0.3, 0.1]), column="amari") == 3
    with pytest.raises(InputError):
        select_k(pd.DataFrame({"k": [1], "hungarian": [np.nan]}))
