"""Issue 3 item 3: do the exact and compressed solvers give the same instability and K?

Runs StaNMF's fast recipe (``recipe="fast"``: bootstrap + grow, K by ``median3_near``; the
default before the paper recipe became it — ``"paper"`` fixes the exact solver) with ``solver="exact"`` and
``solver="compressed"`` on the same paper-size phantom matrix and prints γ(K) side by side, the
selected K of each and max |Δγ|, with wall times.

Usage::

    python benchmarks/bench_exact_vs_compressed.py [--ks 10 11 12] [--replicates 20]
        [--max-rank 256] [--cache /tmp/osnmf_bench_X.npy]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from osnmf.factorize.stanmf import StaNMF


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 11, 12])
    ap.add_argument("--replicates", type=int, default=20)
    ap.add_argument("--max-rank", type=int, default=256)
    ap.add_argument("--genes", type=int, default=4345)
    ap.add_argument("--cache", default=None)
    a = ap.parse_args()
    from bench_nmf_bootstrap import load_matrix

    X = load_matrix(a.genes, 11, a.cache)
    curves = {}
    for solver in ("exact", "compressed"):
        sketch = {"max_rank": a.max_rank} if solver == "compressed" else None
        t = time.perf_counter()
        model = StaNMF(k_range=a.ks, n_replicates=a.replicates, recipe="fast", solver=solver, sketch=sketch,
                       random_state=0)
        model.fit(X)
        print(f"{solver:>10}: {time.perf_counter() - t:7.1f} s, selected K = {model.k_}", flush=True)
        curves[solver] = model.instability_.set_index("k")
    ex, co = curves["exact"], curves["compressed"]
    print(" k  γ exact (sd)        γ compressed (sd)    |Δγ|")
    for k in ex.index:
        d = abs(ex.loc[k, "hungarian"] - co.loc[k, "hungarian"])
        print(f"{k:2d}  {ex.loc[k, 'hungarian']:.4f} ({ex.loc[k, 'hungarian_sd']:.4f})    "
              f"{co.loc[k, 'hungarian']:.4f} ({co.loc[k, 'hungarian_sd']:.4f})    {d:.4f}")
    print(f"RESULT max |Δγ| = {np.max(np.abs(ex['hungarian'] - co['hungarian'])):.4f}")


if __name__ == "__main__":
    main()
