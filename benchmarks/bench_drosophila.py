"""Benchmark 8b: staNMF on the Drosophila BDGP images (1,640 images × 405 pixels), K = 12…26.

Ours: ``StaNMF(k_range, n_replicates, recipe="paper")`` — the paper recipe, the estimator's default
(``grow=False``, ``solver="exact"``, K = γ argmin like the loop's; batched bootstrap replicates).
Reference: a loop of scikit-learn ``NMF(solver="cd", init="nndsvda", tol=1e-4, max_iter=200)``
fits on the explicitly resampled ``X[idx]`` with the *same* bootstrap draws. Both instability
curves (Hungarian and Amari, the metric code is shared and brute-force tested) are printed side
by side, with the wall-time ratio and the peak traced memory of each side (times are taken
without tracing; the memory is read in a second, traced run of each side — ``--no-memory`` skips
it; see ``benchmarks/measure.py``).

Usage::

    .venv/bin/python benchmarks/bench_drosophila.py [--kmin 12 --kmax 26 --replicates 20]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
from measure import peak_mib, timed
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

import osnmf
from osnmf.factorize.choose_k.stability import instability, select_k
from osnmf.factorize.stanmf import StaNMF
from osnmf.factorize.sweep.params import SweepParams
from osnmf.factorize.sweep.run import replicate_counts


def load() -> np.ndarray:
    X, _ = osnmf.load_drosophila()
    return np.ascontiguousarray(X, dtype=np.float32)


def sklearn_sweep(X, ks, R, seed, max_iter, tol):
    counts = replicate_counts(X.shape[0], range(R), SweepParams(random_state=seed))
    rows, pats = [], {}
    for k in ks:
        D = []
        for r in range(R):
            idx = np.repeat(np.arange(X.shape[0]), counts[r])
            model = NMF(k, init="nndsvda", solver="cd", tol=tol, max_iter=max_iter)
            D.append(model.fit(X[idx]).components_)
        pats[k] = np.array(D)
        rows.append({"k": k, **instability(pats[k])})
    return pd.DataFrame(rows), pats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kmin", type=int, default=12)
    ap.add_argument("--kmax", type=int, default=26)
    ap.add_argument("--replicates", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads for both sides")
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--no-memory", action="store_true", help="skip the traced memory pass")
    args = ap.parse_args()
    X = load()
    ks = list(range(args.kmin, args.kmax + 1))
    print(f"Drosophila X {X.shape} float32, K {ks[0]}..{ks[-1]}, {args.replicates} bootstrap "
          f"replicates, BLAS threads {args.threads}")
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    def run_ours():
        return StaNMF(k_range=ks, n_replicates=args.replicates, random_state=args.seed,
                      max_iter=args.max_iter, tol=args.tol, recipe="paper").fit(X)

    def run_ref():
        return sklearn_sweep(X, ks, args.replicates, args.seed, args.max_iter, args.tol)

    with threadpool_limits(args.threads):
        ours, t_ours = timed(run_ours)
        print(f"ours     {t_ours:8.1f} s  (sweep + instability + final)", flush=True)
        (ref, ref_pats), t_ref = timed(run_ref)
        print(f"sklearn  {t_ref:8.1f} s  (loop of fits on X[idx])", flush=True)
        if not args.no_memory:  # a second, traced run of each side, for memory only
            print(f"peak traced memory: ours {peak_mib(run_ours):7.1f} MiB, sklearn {peak_mib(run_ref):7.1f} MiB")
    print(f"speed-up {t_ref / t_ours:.2f}x  (sklearn time / ours; ours also fits the final model)")
    a = ours.instability_.set_index("k")
    b = ref.set_index("k")
    side = pd.DataFrame({
        "ours_hungarian": a["hungarian"], "sk_hungarian": b["hungarian"],
        "d_hungarian": a["hungarian"] - b["hungarian"],
        "ours_amari": a["amari"], "sk_amari": b["amari"],
        "ours_sd": a["hungarian_sd"], "sk_sd": b["hungarian_sd"],
    })
    pd.set_option("display.width", 160)
    print(side.round(4).to_string())
    print(f"max |d gamma| (Hungarian) = {side['d_hungarian'].abs().max():.4f}")
    print(f"selected K: ours {ours.k_}, sklearn {select_k(ref)} "
          f"(Amari: ours {select_k(ours.instability_, 'amari')}, sklearn {select_k(ref, 'amari')})")
    from osnmf.factorize.choose_k.stability import cross_correlation, hungarian_dissimilarity

    r = [1 - hungarian_dissimilarity(cross_correlation(ours.replicates_[k][i], ref_pats[k][i]))
         for k in ks for i in range(args.replicates)]
    print(f"replicate-wise matched r ours vs sklearn: min {min(r):.4f}, "
          f"median {np.median(r):.4f}, share >= 0.999: {np.mean(np.array(r) >= 0.999):.3f}")


if __name__ == "__main__":
    main()
