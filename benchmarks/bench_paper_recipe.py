"""The paper's recipe at paper size, K by K: our exact cold fits against scikit-learn's loop.

The whole default sweep (``recipe="paper"``: cold NNDSVDa coordinate-descent fits with products by
``X`` itself, K 8–30 × 100 replicates on 4,345 × 62,529) is flop-bound: every iteration of every
replicate multiplies ``X`` by its factors twice (4·n·m·K flops), so it cannot be timed whole in a
session on 2 cores. This script measures it on sampled K instead, in one process on one matrix:

* the paper-size matrix: the calibrated synthetic atlas through the pipeline's load and impute
  stages (cached in ``--out``, so a rerun starts at once);
* for every K of ``--ks``: ``--replicates`` bootstrap replicates fitted as the sweep fits them
  (``osnmf.factorize.sweep.run.run_sweep``, the paper recipe's parameters, ``--n-jobs`` threads, BLAS
  pinned to one thread each as in ``StaNMF.fit``), and scikit-learn's ``NMF(solver="cd",
  init="nndsvda")`` on the explicitly resampled rows of the same replicates (the paper's loop);
* per K: seconds per fit of both and their ratio, iterations, the matched pattern r between the two
  fits of every replicate, and γ (Hungarian) of both replicate sets with its SE;
* a projection of the whole sweep (23 K × 100 replicates) for both, interpolated linearly in K
  between the sampled K — labelled ``projected``: it is not a measurement.

Usage::

    python benchmarks/bench_paper_recipe.py [--out /tmp/osnmf_paper_recipe] [--ks 8 11 13 20 30]
        [--replicates 4] [--sklearn-replicates 4] [--genes 4345] [--json benchmarks/results/paper_recipe.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment


def paper_size_matrix(out: Path, genes: int, patterns: int) -> np.ndarray:
    """The imputed genes × voxels matrix of the calibrated atlas (the pipeline's own stages, cached)."""
    from osnmf.config import RunConfig
    from osnmf.pipeline import Pipeline

    cfg = RunConfig(out=str(out), phantom_genes=genes, phantom_patterns=patterns, phantom_preset="calibrated",
                    quiet=True)
    out.mkdir(parents=True, exist_ok=True)
    pipe = Pipeline(cfg)
    pipe.load()
    pipe.impute()
    return pipe.state.impute.X


def ours(X: np.ndarray, k: int, replicates: int, n_jobs: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Seconds, patterns (R, k, m) and iterations of the sweep's blocks at K (the paper recipe)."""
    from threadpoolctl import threadpool_limits

    from osnmf.factorize.nmf.operators import ExactOperator
    from osnmf.factorize.sweep.executors import SerialExecutor, ThreadExecutor
    from osnmf.factorize.sweep.params import BlockResult, SweepParams, plan_blocks
    from osnmf.factorize.sweep.run import run_sweep

    params = SweepParams(grow=False, solver="exact", random_state=0)
    per_job = -(-replicates // n_jobs)
    blocks = plan_blocks([k], replicates, per_job)
    executor = ThreadExecutor(n_jobs) if n_jobs > 1 else SerialExecutor()
    t = time.perf_counter()
    op = ExactOperator(X)  # StaNMF.fit builds it once per sweep: its cost is part of the first K
    with threadpool_limits(1) if n_jobs > 1 else threadpool_limits(None):
        done = run_sweep(X, blocks, params, executor=executor, sketch=op)
    seconds = time.perf_counter() - t
    res = BlockResult.concat(done.values())
    return seconds, res.components, res.n_iter


def sklearn_loop(X: np.ndarray, k: int, replicates: int) -> tuple[list[float], np.ndarray, list[int]]:
    """The paper's loop: scikit-learn's NMF of each replicate's resampled rows."""
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    from osnmf.factorize.sweep.params import SweepParams
    from osnmf.factorize.sweep.run import replicate_counts

    counts = replicate_counts(X.shape[0], range(replicates), SweepParams(random_state=0))
    times, comps, iters = [], [], []
    for r in range(replicates):
        rows = np.repeat(np.arange(X.shape[0]), counts[r])
        t = time.perf_counter()
        model = NMF(k, solver="cd", tol=1e-4, max_iter=200, init="nndsvda")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit_transform(X[rows])
        times.append(time.perf_counter() - t)
        comps.append(model.components_.astype(np.float32))
        iters.append(int(model.n_iter_))
        print(f"[bench] K={k} scikit-learn replicate {r}: {times[-1]:.1f} s, {iters[-1]} iterations", flush=True)
    return times, np.stack(comps), iters


def matched_r(P: np.ndarray, Q: np.ndarray) -> float:
    """Smallest uncentred r of optimally matched patterns."""
    Pn = P / np.linalg.norm(P, axis=1, keepdims=True)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    C = Pn @ Qn.T
    rows, cols = linear_sum_assignment(C, maximize=True)
    return float(C[rows, cols].min())


def projection(per_fit: dict[int, float], k_min: int, k_max: int, replicates: int) -> float:
    """Seconds of the whole sweep, per-fit times interpolated linearly in K (flat outside the samples)."""
    ks = sorted(per_fit)
    return float(sum(np.interp(k, ks, [per_fit[kk] for kk in ks]) for k in range(k_min, k_max + 1)) * replicates)


def main() -> None:
    from osnmf.factorize.choose_k.stability import instability

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/osnmf_paper_recipe"))
    ap.add_argument("--ks", type=int, nargs="+", default=[8, 11, 13, 20, 30])
    ap.add_argument("--replicates", type=int, default=4, help="our replicates per K (the sweep's blocks)")
    ap.add_argument("--sklearn-replicates", type=int, default=4,
                    help="scikit-learn fits per K (the first ones of ours; γ compared when >= 2)")
    ap.add_argument("--genes", type=int, default=4345)
    ap.add_argument("--patterns", type=int, default=11)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    load_before = os.getloadavg()
    t = time.perf_counter()
    X = paper_size_matrix(a.out, a.genes, a.patterns)
    prep_s = time.perf_counter() - t
    print(f"[bench] X {X.shape} ready in {prep_s:.0f} s", flush=True)
    rows = []
    for k in a.ks:
        sec, comps, n_iter = ours(X, k, a.replicates, a.n_jobs)
        n_sk = min(a.sklearn_replicates, a.replicates)
        sk_times, sk_comps, sk_iter = sklearn_loop(X, k, n_sk)
        row = {"k": k, "ours_replicates": a.replicates, "ours_s": round(sec, 2),
               "ours_per_fit_s": round(sec / a.replicates, 3), "ours_n_iter": [int(i) for i in n_iter],
               "sklearn_fits": n_sk, "sklearn_per_fit_s": round(float(np.mean(sk_times)), 3),
               "sklearn_n_iter": sk_iter,
               "matched_r_min": round(min(matched_r(comps[r], sk_comps[r]) for r in range(n_sk)), 6)}
        row["ratio_per_fit"] = round(row["sklearn_per_fit_s"] / row["ours_per_fit_s"], 2)
        if n_sk >= 2:
            g_ours, g_sk = instability(comps[:n_sk]), instability(sk_comps)
            row |= {"gamma_ours": g_ours["hungarian"], "gamma_sklearn": g_sk["hungarian"],
                    "gamma_se_sklearn": g_sk["hungarian_se"],
                    "gamma_abs_diff": abs(g_ours["hungarian"] - g_sk["hungarian"])}
        rows.append(row)
        print(f"[bench] {row}", flush=True)

    ours_total = projection({r["k"]: r["ours_per_fit_s"] for r in rows}, 8, 30, 100)
    sk_total = projection({r["k"]: r["sklearn_per_fit_s"] for r in rows}, 8, 30, 100)
    result = {
        "what": "paper recipe (grow=False, exact solver, NNDSVDa, CD tol 1e-4, max_iter 200) on sampled K",
        "X_shape": list(X.shape), "prepare_s": round(prep_s, 1), "n_jobs": a.n_jobs, "by_k": rows,
        "projected_full_sweep_s": {"ours": round(ours_total), "sklearn_loop": round(sk_total),
                                   "note": "PROJECTED, not measured: per-fit times interpolated over K 8-30 x 100"},
        "load_average_before": load_before, "load_average_after": os.getloadavg(), "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result["projected_full_sweep_s"]), flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
