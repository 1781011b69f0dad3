"""Benchmark (issue 3, 8a): K = 11, 20 bootstrap replicates on a paper-size matrix.

Ours (batched, exact and compressed) against a loop of scikit-learn
``NMF(solver="cd", tol=1e-4, max_iter=200, init="nndsvda")`` fits on the explicitly resampled
``X[idx]``, timed in the same run on the same float32 data. Times are taken without tracing;
peak memory comes from a second, traced run of each step (``--no-memory`` skips it; see
``benchmarks/measure.py``). scikit-learn is run on the first
``--sklearn-fits`` replicates and its time is extrapolated linearly to all replicates (printed).
Agreement: matched-pattern Pearson r (Hungarian) of each of our replicates against
scikit-learn's fit of the same replicate, and the Hungarian instability γ of each set.

Usage::

    python benchmarks/bench_nmf_bootstrap.py [--genes 4345] [--replicates 20] [--k 11]
        [--sklearn-fits 3] [--threads 2] [--cache /tmp/osnmf_bench_X.npy]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from measure import peak_mib, timed
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from osnmf.factorize.nmf.fits import fit_nmf_replicates
from osnmf.factorize.nmf.operators import sketch_matrix
from osnmf.factorize.sweep.bootstrap import bootstrap_counts


def load_matrix(n_genes: int, k: int, cache: str | None, preset: str | None = None) -> np.ndarray:
    """(n_genes, voxels) float32 rows of a synthetic atlas with k planted patterns (cached as .npy)."""
    if cache and Path(cache).exists():
        X = np.load(cache, allow_pickle=False)
        if X.shape[0] >= n_genes:
            return np.ascontiguousarray(X[:n_genes], dtype=np.float32)
    from osnmf import make_phantom

    ph = make_phantom(n_genes=n_genes, n_patterns=k, missing=0.0, seed=0, preset=preset)
    X, _ = ph.data.to_matrix()
    X = np.ascontiguousarray(np.nan_to_num(np.clip(X, 0, None)), dtype=np.float32)
    if cache:
        tmp = Path(cache).with_suffix(".tmp.npy")
        np.save(tmp, X)
        tmp.replace(cache)
    return X


def matched(D1: np.ndarray, D2: np.ndarray) -> np.ndarray:
    """Pearson r of Hungarian-matched patterns."""
    k = D1.shape[0]
    C = np.corrcoef(D1, D2)[:k, k:]
    r, c = linear_sum_assignment(-C)
    return C[r, c]


def gamma(Ds: list[np.ndarray]) -> tuple[float, float]:
    """Hungarian instability: mean (sd) over pairs of (1/K) Σ (1 − C_matched), uncentred C."""
    N = [D / np.maximum(np.linalg.norm(D, axis=1, keepdims=True), 1e-30) for D in Ds]
    vals = []
    for i in range(len(N)):
        for j in range(i + 1, len(N)):
            C = N[i] @ N[j].T
            r, c = linear_sum_assignment(-C)
            vals.append(np.mean(1 - C[r, c]))
    return float(np.mean(vals)), float(np.std(vals))


def measured(fn, memory: bool):
    """``(fn(), seconds, peak GiB)``: timed untraced; the peak from a second, traced run (NaN if off)."""
    out, dt = timed(fn)
    return out, dt, (peak_mib(fn) / 2**10 if memory else float("nan"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--genes", type=int, default=4345)
    ap.add_argument("--replicates", type=int, default=20)
    ap.add_argument("--k", type=int, default=11)
    ap.add_argument("--sklearn-fits", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--energy", type=float, default=0.999)
    ap.add_argument("--max-rank", type=int, default=1024)
    ap.add_argument("--skip-exact", action="store_true")
    ap.add_argument("--cache", default=None, help="npy file to cache the synthetic matrix")
    ap.add_argument("--no-memory", action="store_true", help="skip the traced memory passes")
    a = ap.parse_args()
    memory = not a.no_memory

    t = time.perf_counter()
    X = load_matrix(a.genes, a.k, a.cache)
    n, m = X.shape
    print(f"data: {n} x {m} float32 phantom ({X.nbytes / 2**30:.2f} GiB), "
          f"built/loaded in {time.perf_counter() - t:.0f} s; BLAS threads = {a.threads}")
    counts = bootstrap_counts(n, a.replicates, 0)
    R, k = a.replicates, a.k

    with threadpool_limits(a.threads):
        # ---- scikit-learn loop on X[idx]
        sk_D, sk_t, sk_iter, sk_peak = [], [], [], 0.0
        for r in range(min(a.sklearn_fits, R)):
            idx = np.repeat(np.arange(n), counts[r])

            def run(idx=idx):
                Xi = X[idx]
                model = NMF(k, solver="cd", tol=1e-4, max_iter=200, init="nndsvda",
                            random_state=0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit_transform(Xi)
                return model

            model, dt, pk = measured(run, memory and r == 0)  # one fit's memory stands for all
            sk_D.append(model.components_)
            sk_t.append(dt)
            sk_iter.append(model.n_iter_)
            sk_peak = pk if r == 0 else sk_peak
            print(f"  sklearn replicate {r}: {dt:.1f} s, n_iter {model.n_iter_}", flush=True)
        S = len(sk_D)
        sk_total = float(np.mean(sk_t)) * R
        print(f"sklearn: {np.mean(sk_t):.1f} s/fit -> {sk_total:.0f} s for {R} replicates "
              f"(extrapolated from {S}), peak {sk_peak:.2f} GiB above X", flush=True)

        g_sk = gamma(sk_D) if S >= 2 else (float("nan"), float("nan"))

        def report(name, fits, dt, pk):
            rs = np.concatenate([matched(fits.D[r], sk_D[r]) for r in range(S)])
            g_all = gamma(list(fits.D))
            g_same = gamma(list(fits.D[:S])) if S >= 2 else (float("nan"), float("nan"))
            print(f"RESULT ours {name:<10}: {dt:7.0f} s  ratio {sk_total / dt:5.1f}x  "
                  f"peak {pk:.2f} GiB  mean n_iter {fits.n_iter.mean():.0f}  matched r vs "
                  f"sklearn mean {rs.mean():.5f} min {rs.min():.5f}  gamma(first {S}) "
                  f"{g_same[0]:.4f} vs sklearn {g_sk[0]:.4f}; gamma(all {R}) "
                  f"{g_all[0]:.4f}±{g_all[1]:.4f}", flush=True)
            return g_all

        print(f"RESULT sklearn loop    : {sk_total:7.0f} s  (mean n_iter {np.mean(sk_iter):.0f}, "
              f"peak {sk_peak:.2f} GiB)", flush=True)
        gammas = {}
        sk_obj, dt_s, pk_s = measured(
            lambda: sketch_matrix(X, energy=a.energy, max_rank=a.max_rank, random_state=0), memory
        )
        print(f"sketch: rank {sk_obj.rank}, energy {sk_obj.energy:.5f}, {dt_s:.0f} s, "
              f"peak {pk_s:.2f} GiB", flush=True)
        fits, dt, pk = measured(lambda: fit_nmf_replicates(
            X, k, counts, solver="compressed", sketch=sk_obj, random_state=0), memory)
        print(f"ours compressed: {dt:.0f} s fit + {dt_s:.0f} s sketch", flush=True)
        gammas["compressed"] = report("compressed", fits, dt + dt_s, max(pk, pk_s))
        if not a.skip_exact:
            fits, dt, pk = measured(lambda: fit_nmf_replicates(X, k, counts, random_state=0), memory)
            gammas["exact"] = report("exact", fits, dt, pk)
            print(f"|gamma exact - gamma compressed| over {R} replicates: "
                  f"{abs(gammas['exact'][0] - gammas['compressed'][0]):.4f}")


if __name__ == "__main__":
    main()
