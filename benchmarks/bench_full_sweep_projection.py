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
from sklearn.decomposition._nmf import _initialize_nmf
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from osnmf.factorize.checks import check_matrix
from osnmf.factorize.nmf.fits import fit_nmf_replicates
from osnmf.factorize.nmf.init import nndsvda_init
from osnmf.factorize.nmf.operators import make_operator
from osnmf.factorize.sweep.bootstrap import bootstrap_counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[8, 19, 30])
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--n-iter-typical", type=float, default=40.0)
    ap.add_argument("--max-rank", type=int, default=1024, help="cap on the sketch rank (compressed)")
    ap.add_argument("--cache", default=None)
    ap.add_argument("--genes", type=int, default=4345)
    ap.add_argument("--backend", default="numpy", choices=["numpy", "torch"])
    ap.add_argument("--device", default=None, help="torch device, e.g. cuda")
    ap.add_argument("--full-run", action="store_true",
                    help="run the whole sweep with ours (exact and compressed), no projection")
    a = ap.parse_args()
    if a.full_run:
        return full_run(a)

    from bench_nmf_bootstrap import load_matrix

    X = load_matrix(a.genes, 11, a.cache)
    n, m = X.shape
    counts = bootstrap_counts(n, a.batch, 1)
    idx = np.repeat(np.arange(n), counts[0])
    rows = []
    with threadpool_limits(a.threads):
        t = time.perf_counter()
        X = check_matrix(X, dtype=np.float32)
        exact = make_operator(X, "exact")
        exact.left_gram()
        t_gram = time.perf_counter() - t
        t = time.perf_counter()
        comp = make_operator(X, "compressed", {"max_rank": a.max_rank}, np.random.default_rng(0))
        t_sketch = time.perf_counter() - t
        print(f"one-off: Gram {t_gram:.0f} s; sketch {t_sketch:.0f} s (rank {comp.rank}, "
              f"energy {comp.energy:.5f})", flush=True)
        for k in a.ks:
            # scikit-learn: its NNDSVDa on X[idx], then `iters` CD iterations from it
            Xi = X[idx]
            t = time.perf_counter()
            W0, H0 = _initialize_nmf(Xi, k, init="nndsvda", random_state=0)
            sk_init = time.perf_counter() - t
            model = NMF(k, solver="cd", tol=0.0, max_iter=a.iters, init="custom")
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit_transform(Xi, W=W0, H=H0)
            sk_iter = (time.perf_counter() - t) / a.iters
            del Xi
            res = {}
            for name, op in (("exact", exact), ("compressed", comp)):
                t = time.perf_counter()
                At, D = nndsvda_init(op, k, counts, np.random.default_rng(0), 1e-6, None)
                init = (time.perf_counter() - t) / a.batch
                t = time.perf_counter()
                fit_nmf_replicates(op, k, counts, init=(At.transpose(0, 2, 1), D),
                                   max_iter=a.iters, tol=0.0, backend=a.backend,
                                   device=a.device)
                per_it = (time.perf_counter() - t) / a.iters / a.batch
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


def full_run(a) -> None:
    """The real sweep, K 8…30 × replicates, with our solver (e.g. on a GPU: issue 3, 8d)."""
    from bench_nmf_bootstrap import load_matrix

    X = load_matrix(a.genes, 11, a.cache)
    n, m = X.shape
    counts = bootstrap_counts(n, a.replicates, 0)
    with threadpool_limits(a.threads):
        for solver in ("compressed", "exact"):
            t0 = time.perf_counter()
            op = make_operator(check_matrix(X, dtype=np.float32), solver, None, np.random.default_rng(0))
            t_prep = time.perf_counter() - t0
            iters = []
            for k in range(8, 31):
                t = time.perf_counter()
                fits = fit_nmf_replicates(op, k, counts, random_state=0, backend=a.backend,
                                          device=a.device, batch_size=a.batch)
                iters.append(fits.n_iter.mean())
                print(f"{solver} K={k:2d}: {time.perf_counter() - t:6.1f} s, mean n_iter "
                      f"{fits.n_iter.mean():.0f}", flush=True)
            total = time.perf_counter() - t0
            print(f"RESULT full sweep {solver} ({a.backend}, {a.device}): {total:.0f} s "
                  f"= {total / 60:.1f} min (prep {t_prep:.0f} s), mean n_iter "
                  f"{np.mean(iters):.0f}", flush=True)


if __name__ == "__main__":
    main()
