"""Where should ``solver="auto"`` switch from exact to compressed? Both solvers, same data, same run.

For a growing number of genes (rows of one synthetic atlas, all 62,529 voxels), StaNMF's fast
recipe (``recipe="fast"``: bootstrap + grow, final model, K-selection panel, K by
``median3_near``; the default before the paper recipe became it, and the only recipe that lets
the solver be chosen — ``"paper"`` fixes ``solver="exact"``) runs with ``solver="exact"`` and
``solver="compressed"`` (sketch rank: the auto rule's, 99.9 % energy capped at 128). Prints the
wall time of each, their ratio, the K each selects and max |Δγ| over the K range, plus
``resolve_solver``'s choice, so the rule in :mod:`osnmf.factorize.sweep.autosolver` can be checked
against the measurement.

Usage::

    python benchmarks/bench_auto_rule.py [--genes 300 600 1200 2400] [--ks 9 10 11]
        [--replicates 10] [--cache /tmp/osnmf_X4345_calibrated.npy] [--preset calibrated]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from osnmf.factorize.stanmf import StaNMF
from osnmf.factorize.sweep.autosolver import resolve_solver


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genes", type=int, nargs="+", default=[300, 600, 1200, 2400])
    ap.add_argument("--ks", type=int, nargs="+", default=[9, 10, 11])
    ap.add_argument("--replicates", type=int, default=10)
    ap.add_argument("--preset", default="calibrated", help="phantom preset, or 'none'")
    ap.add_argument("--cache", default=None, help=".npy of the largest matrix (rows are taken from it)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    preset = None if a.preset == "none" else a.preset
    from bench_nmf_bootstrap import load_matrix

    X_all = load_matrix(max(a.genes), 11, a.cache, preset)
    print(f"load average {os.getloadavg()}; K {a.ks} x {a.replicates} replicates", flush=True)
    with threadpool_limits(a.threads):
        for n in a.genes:
            X = np.ascontiguousarray(X_all[:n])
            res = {}
            for solver in ("exact", "compressed"):
                t = time.perf_counter()
                model = StaNMF(k_range=a.ks, n_replicates=a.replicates, recipe="fast", solver=solver,
                               random_state=0).fit(X)
                res[solver] = (time.perf_counter() - t, model)
            (te, me), (tc, mc) = res["exact"], res["compressed"]
            ge = me.instability_.set_index("k")["hungarian"]
            gc = mc.instability_.set_index("k")["hungarian"]
            print(f"RESULT n={n:5d} n*m={n * X.shape[1] / 1e6:6.1f}M  exact {te:7.1f} s  compressed {tc:7.1f} s "
                  f"(rank {mc.sketch_.rank}, energy {mc.sketch_.energy:.4f})  exact/compressed {te / tc:5.2f}x  "
                  f"K {me.k_} vs {mc.k_}  max|dgamma| {float((ge - gc).abs().max()):.4f}  "
                  f"auto -> {resolve_solver('auto', X.shape, max(a.ks))}", flush=True)


if __name__ == "__main__":
    main()
