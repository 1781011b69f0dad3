"""NNLS projection of new samples onto K patterns: ``nnls_project`` vs ``scipy.optimize.nnls`` per row.

Random non-negative patterns D (K × m) and samples X = A D + noise (clipped at 0), as float32.
Times ``nnls_project`` on all n rows and scipy's per-row NNLS on the first ``--scipy-rows`` rows
(extrapolated to n), in the same run; prints the ratio, the largest coefficient difference on the
common rows (relative to the largest coefficient) and the peak RSS. Numbers from a shared machine
are noisy: compare within one run.

    .venv/bin/python benchmarks/bench_projection.py [--n 2000 --m 50000 --k 20 --scipy-rows 100]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
from scipy.optimize import nnls

from osnmf.factorize.nmf.projection import nnls_project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--m", type=int, default=50000)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--scipy-rows", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    D = rng.gamma(0.5, size=(args.k, args.m))
    A = rng.gamma(0.7, size=(args.n, args.k)) * (rng.random((args.n, args.k)) < 0.6)
    X = np.clip(A @ D + rng.normal(0, 1.0, (args.n, args.m)), 0, None).astype(np.float32)
    print(f"load average {os.getloadavg()[0]:.1f}; n={args.n} samples, m={args.m} voxels, K={args.k}")
    start = time.perf_counter()
    ours = nnls_project(X, D)
    t_ours = time.perf_counter() - start
    rows = min(args.scipy_rows, args.n)
    start = time.perf_counter()
    ref = np.stack([nnls(D.T, x.astype(np.float64), maxiter=50 * args.k)[0] for x in X[:rows]])
    t_ref = (time.perf_counter() - start) * args.n / rows
    diff = np.abs(ours[:rows] - ref).max() / np.abs(ref).max()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"nnls_project: {t_ours:.2f} s for {args.n} rows; scipy nnls per row: {t_ref:.1f} s "
          f"(timed on {rows} rows, extrapolated); ratio {t_ref / t_ours:.0f}x; max |diff| / max coef {diff:.1e}; "
          f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
