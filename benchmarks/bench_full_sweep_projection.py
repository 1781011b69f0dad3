"""Benchmark (issue 3, 8c): projected hours of the paper's full staNMF sweep (K 8…30 × 100).

Measured in one run on the same paper-size float32 matrix: the cost of one coordinate-descent
iteration and of the initialisation, at a few K, for

* scikit-learn ``NMF(solver="cd", init="nndsvda")`` on a resampled ``X[idx]`` (one fit per
  replicate: the resampling copy, NNDSVDa with its randomised SVD, ``--iters`` iterations);
* ours, exact: a batch of ``--batch`` replicates (per-replicate cost = batch cost / batch), plus
  the one-off Gram matrix of the NNDSVDa;
* ours, compressed: the same on the sketch, plus the one-off sketch.

Per-iteration costs are interpolated linearly in K over 8…30 and multiplied by an assumed number
of iterations per fit (printed: the mean measured in bench_nmf_bootstrap at K = 11, and the
200-iteration cap as the worst case).

Usage::

    python benchmarks/bench_full_sweep_projection.py [--ks 8 19 30] [--batch 20] [--iters 3]
        [--threads 2] [--cache /tmp/osnmf_bench_X.npy] [--n-iter-typical 40]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from osnmf.factorize.nmf import bootstrap_counts, fit_nmf_replicates, prepare_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[8, 19, 30])
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--n-iter-typical", type=float, default=40.0)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--genes", type=int, default=4345)
    a = ap.parse_args()

    from bench_nmf_bootstrap import load_matrix

    X = load_matrix(a.genes, 11, a.cache)
    n, m = X.shape
    counts = bootstrap_counts(n, a.batch, 1)
    idx = np.repeat(np.arange(n), counts[0])
    rows = []
    with threadpool_limits(a.threads):
        t = time.perf_counter()
        exact = prepare_data(X, solver="exact")
        exact.left_gram()
        t_gram = time.perf_counter() - t
        t = time.perf_counter()
        comp = prepare_data(X, solver="compressed", random_state=0)
        t_sketch = time.perf_counter() - t
        print(f"one-off: Gram {t_gram:.0f} s; sketch {t_sketch:.0f} s (rank {comp.rank}, "
              f"energy {comp.energy:.5f})", flush=True)
        for k in a.ks:
            # scikit-learn: init alone (max_iter=1 minus one iteration) and `iters` iterations
            times = {}
            for it in (1, 1 + a.iters):
                model = NMF(k, solver="cd", tol=0.0, max_iter=it, init="nndsvda", random_state=0)
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit_transform(X[idx])
                times[it] = time.perf_counter() - t
            sk_iter = (times[1 + a.iters] - times[1]) / a.iters
            sk_init = max(times[1] - sk_iter, 0.0)
            res = {}
            for name, op in (("exact", exact), ("compressed", comp)):
                tt = {}
                for it in (1, 1 + a.iters):
                    t = time.perf_counter()
                    fit_nmf_replicates(op, k, counts, max_iter=it, tol=0.0, random_state=0)
                    tt[it] = time.perf_counter() - t
                per_it = (tt[1 + a.iters] - tt[1]) / a.iters / a.batch
                init = max(tt[1] / a.batch - per_it, 0.0)
                res[name] = (init, per_it)
            rows.append((k, sk_init, sk_iter, res["exact"], res["compressed"]))
            print(f"K={k:2d}: sklearn init {sk_init:.1f} s + {sk_iter:.2f} s/iter | ours exact "
                  f"init {res['exact'][0]:.2f} s + {res['exact'][1]:.3f} s/iter per replicate | "
                  f"compressed init {res['compressed'][0]:.2f} s + {res['compressed'][1]:.3f} "
                  f"s/iter per replicate", flush=True)

    ks = np.array([r[0] for r in rows], dtype=float)
    grid = np.arange(8, 31)

    def interp(vals):
        return np.interp(grid, ks, np.array(vals, dtype=float))

    print(f"\n=== projected full sweep: K 8..30 x {a.replicates} replicates, {n} x {m} ===")
    for n_it in (a.n_iter_typical, 200.0):
        sk = a.replicates * (interp([r[1] for r in rows]) + n_it * interp([r[2] for r in rows]))
        ex = a.replicates * (interp([r[3][0] for r in rows]) + n_it * interp([r[3][1] for r in rows]))
        co = a.replicates * (interp([r[4][0] for r in rows]) + n_it * interp([r[4][1] for r in rows]))
        h_sk, h_ex, h_co = sk.sum() / 3600, (ex.sum() + t_gram) / 3600, (co.sum() + t_sketch) / 3600
        print(f"RESULT n_iter {n_it:5.0f}/fit: sklearn {h_sk:7.2f} h | ours exact {h_ex:6.2f} h "
              f"({h_sk / h_ex:4.1f}x) | ours compressed {h_co:6.2f} h ({h_sk / h_co:4.1f}x)")


if __name__ == "__main__":
    main()
