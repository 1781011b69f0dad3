"""The small sweep of issue 13: StaNMF's fast recipe vs the paper's scikit-learn loop, same run.

2,000 synthetic genes × 62,529 voxels (11 planted patterns), K 10–12 × 10 bootstrap replicates.
Ours: ``StaNMF(k_range=[10, 11, 12], n_replicates=10, recipe="fast")`` — the estimator's defaults
before ``recipe="paper"`` became the default (``solver="auto"``, ``grow="only"``, K by
``median3_near``, final model), as this benchmark always measured; ``--recipe paper`` runs the
paper recipe (cold NNDSVDa fits, exact solver) instead. The loop: ``NMF(solver="cd",
init="nndsvda", tol=1e-4, max_iter=200)`` on the explicitly resampled rows of the *same* bootstrap
draws, γ(K) by the same instability function, K by the same rule (γ argmin: the loop has no
out-of-bag panel for ``median3_near``; ours prints both). ``--sklearn-fits N`` runs only the first
N fits of the loop (spread over the K's) and extrapolates its time (printed as such); the curve
comparison then needs the full loop.

Usage::

    python benchmarks/bench_small_sweep.py [--genes 2000] [--replicates 10] [--sklearn-fits 30]
        [--cache /tmp/osnmf_X2000.npy] [--recipe fast|paper]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from sklearn.decomposition import NMF
from threadpoolctl import threadpool_limits

from osnmf.factorize.choose_k.stability import instability, select_k
from osnmf.factorize.stanmf import StaNMF
from osnmf.factorize.sweep.run import SweepParams, replicate_counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 11, 12])
    ap.add_argument("--replicates", type=int, default=10)
    ap.add_argument("--sklearn-fits", type=int, default=None, help="default: the whole loop")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--recipe", choices=["fast", "paper"], default="fast",
                    help="StaNMF's recipe (default fast: what this benchmark measured before 'paper' was the default)")
    a = ap.parse_args()
    import pandas as pd
    from bench_nmf_bootstrap import load_matrix

    X = load_matrix(a.genes, 11, a.cache)
    n = X.shape[0]
    R, ks = a.replicates, a.ks
    print(f"data {X.shape}, load average {os.getloadavg()}", flush=True)
    with threadpool_limits(a.threads):
        t = time.perf_counter()
        model = StaNMF(k_range=ks, n_replicates=R, recipe=a.recipe, random_state=0).fit(X)
        t_ours = time.perf_counter() - t
        k_argmin = model.k_rules_["gamma_argmin"]
        print(f"ours ({a.recipe} recipe): {t_ours:.1f} s (solver {model.solver_}, sketch {model.sketch_}), "
              f"K = {model.k_} ({model.k_rule_}), γ argmin {k_argmin}, load {os.getloadavg()}", flush=True)

        counts = replicate_counts(n, range(R), SweepParams(random_state=0))
        total = len(ks) * R
        todo = total if a.sklearn_fits is None else min(a.sklearn_fits, total)
        order = [(k, r) for r in range(R) for k in ks][:todo]  # spread over the K's
        comps: dict[int, list] = {k: [] for k in ks}
        times = []
        for k, r in order:
            idx = np.repeat(np.arange(n), counts[r])
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sk = NMF(k, solver="cd", init="nndsvda", tol=1e-4, max_iter=200, random_state=0).fit(X[idx])
            times.append(time.perf_counter() - t)
            comps[k].append(sk.components_)
        t_sk = float(np.sum(times)) * total / todo
        note = "" if todo == total else f" (extrapolated from {todo} of {total} fits)"
        print(f"sklearn loop: {t_sk:.1f} s{note}, {np.mean(times):.2f} s per fit, load {os.getloadavg()}",
              flush=True)
    ours = model.instability_.set_index("k")
    print(f"RESULT small sweep: ours {t_ours:.1f} s vs sklearn loop {t_sk:.1f} s{note}: "
          f"{t_sk / t_ours:.1f}x; ours K = {model.k_}", flush=True)
    if todo == total:
        sk_curve = pd.DataFrame([{"k": k, **instability(np.stack(comps[k]))} for k in ks])
        k_sk = select_k(sk_curve)
        sk_curve = sk_curve.set_index("k")
        for k in ks:
            print(f"  K={k}: γ ours {ours.loc[k, 'hungarian']:.4f}  γ sklearn {sk_curve.loc[k, 'hungarian']:.4f}"
                  f"  |Δγ| {abs(ours.loc[k, 'hungarian'] - sk_curve.loc[k, 'hungarian']):.4f}")
        print(f"RESULT γ argmin K ours {k_argmin} vs sklearn {k_sk} (ours by {model.k_rule_}: {model.k_}); "
              f"|Δγ| at K = {abs(ours.loc[k_argmin, 'hungarian'] - sk_curve.loc[k_argmin, 'hungarian']):.4f}")


if __name__ == "__main__":
    main()
