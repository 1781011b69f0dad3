"""A small planted pattern that NNDSVDa misses and ``grow`` finds (the numbers in docs/stanmf.md).

Synthetic atlas with 12 planted patterns, one of them small (``make_phantom(n_genes=200,
n_patterns=12, noise=0.3, missing=0, seed=0)``, every 10th brain voxel), fitted at the planted
K = 12 on the full matrix four ways, all with scikit-learn's stopping rule (200 iterations, tol
1e-4):

* scikit-learn ``NMF(init="nndsvda", solver="cd")`` — the paper's recipe;
* scikit-learn ``NMF(init="custom")`` started from the planted truth (coefficients, patterns);
* ``StaNMF(recipe="paper")``'s final model (``grow=False``: the paper's recipe, the default);
* ``StaNMF(recipe="fast", grow=True)``'s final model (the default until the fourth session: also
  the K−1 fit grown by its residual's leading component, lower loss kept; the fast recipe is the
  one that lets ``grow`` be chosen).

It prints each fit's loss ‖X − A·D‖_F, its iterations and the worst matched Pearson r of its
patterns with the planted ones. ``tests/test_grow_reference.py`` asserts the same comparison.

Usage::

    python benchmarks/bench_grow_small_pattern.py [--seed 0] [--genes 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import NMF
from threadpoolctl import threadpool_limits

import osnmf


def worst_matched_r(P: np.ndarray, Q: np.ndarray) -> float:
    """Smallest Pearson r among optimally matched pattern pairs (Hungarian)."""
    Pc = P - P.mean(axis=1, keepdims=True)
    Qc = Q - Q.mean(axis=1, keepdims=True)
    C = (Pc / np.linalg.norm(Pc, axis=1, keepdims=True)) @ (Qc / np.linalg.norm(Qc, axis=1, keepdims=True)).T
    rows, cols = linear_sum_assignment(C, maximize=True)
    return float(C[rows, cols].min())


def small_pattern_case(seed: int = 0, n_genes: int = 200, stride: int = 10):
    """(X float64 genes × voxels, planted coefficients, planted patterns), strided voxels."""
    ph = osnmf.make_phantom(n_genes=n_genes, n_patterns=12, noise=0.3, missing=0.0, seed=seed)
    X, _ = ph.data.to_matrix()
    X = np.ascontiguousarray(X[:, ::stride], dtype=np.float64)
    P = np.ascontiguousarray(ph.patterns[:, ::stride], dtype=np.float64)
    A = np.ascontiguousarray(ph.coefficients, dtype=np.float64)
    return X, A, P


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--genes", type=int, default=200)
    args = ap.parse_args()
    with threadpool_limits(1):
        X, A, P = small_pattern_case(args.seed, args.genes)
        K = P.shape[0]
        size = (P > 0.1 * P.max(axis=1, keepdims=True)).sum(axis=1)
        print(f"X {X.shape[0]} genes × {X.shape[1]} voxels, K = {K} planted; "
              f"smallest pattern {size.min()} of {X.shape[1]} voxels ({size.min() / X.shape[1]:.1%})")
        rows = []
        t = time.perf_counter()
        sk = NMF(K, init="nndsvda", solver="cd", max_iter=200, tol=1e-4).fit(X)
        rows.append(("scikit-learn NNDSVDa (paper)", sk.reconstruction_err_, sk.n_iter_, sk.components_,
                     time.perf_counter() - t))
        t = time.perf_counter()
        tr = NMF(K, init="custom", solver="cd", max_iter=200, tol=1e-4)
        tr.fit_transform(X, W=A.copy(), H=P.copy())
        rows.append(("scikit-learn from the truth", tr.reconstruction_err_, tr.n_iter_, tr.components_,
                     time.perf_counter() - t))
        for grow in (False, True):
            t = time.perf_counter()
            recipe = {"recipe": "fast", "grow": True} if grow else {"recipe": "paper"}
            model = osnmf.StaNMF(k_range=[K], n_replicates=2, random_state=0, **recipe).fit(X)
            rows.append((f"StaNMF(grow={grow}) final model", model.loss_, model.n_iter_, model.components_,
                         time.perf_counter() - t))
    print(f"{'fit at K = 12':<32} {'loss':>8} {'iter':>5} {'worst r':>8} {'seconds':>8}")
    for name, loss, n_iter, D, sec in rows:
        print(f"{name:<32} {loss:8.1f} {n_iter:5d} {worst_matched_r(D, P):8.3f} {sec:8.1f}")
    print(f"RESULT loss NNDSVDa {rows[0][1]:.1f}, from the truth {rows[1][1]:.1f}, "
          f"grow=False {rows[2][1]:.1f}, grow=True {rows[3][1]:.1f}")


if __name__ == "__main__":
    main()
