"""Benchmark the kNN imputation, its hold-out QC, and masked NMF vs kNN + NMF (spec section 2).

1. Speed: ``osnmf.impute_knn`` on a paper-size phantom (4,345 experiments on the Allen grid) vs
   the reference per-gene scikit-learn loop (``KNeighborsRegressor(6, weights="distance")`` fitted
   per experiment) on a sample of experiments, extrapolated to all; same data, same run. Wall and
   CPU time (untraced), peak traced memory (a second, traced run), and agreement on voxels whose
   6 nearest are unambiguous.
2. Hold-out QC as in the paper (1,000 observed voxels per experiment): MAE, mean error, Pearson r
   vs the measured values and vs the phantom's noiseless truth.
3. Missing-aware NMF (masked multiplicative updates) vs kNN imputation then NMF, on a smaller
   phantom: reconstruction accuracy against the planted truth (per-gene Pearson r over all brain
   voxels and over the hidden ones).

Run: ``.venv/bin/python benchmarks/bench_impute.py [--n-genes 4345] [--sample 30] [--n-jobs 2]``
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import tracemalloc

import numpy as np
from sklearn.neighbors import KNeighborsRegressor

import osnmf
from osnmf.factorize.nmf.masked import masked_nmf
from osnmf.preprocess import default_support, holdout_check, impute_knn, prepare_matrix


def timed(fn, *args, trace: bool = False, **kwargs):
    """Run ``fn``; return (result, wall s, CPU s of this process, traced peak bytes or None).

    The times come from an untraced run; with ``trace`` the function runs a second time under
    ``tracemalloc`` for its peak memory only (tracing slows the Python-heavy reference loop more
    than ours, so a traced timing would flatter the ratio; see ``benchmarks/measure.py``).
    """
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    peak = None
    if trace:
        tracemalloc.start()
        try:
            fn(*args, **kwargs)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return out, wall, cpu, peak


def sklearn_loop(volumes: np.ndarray, support: np.ndarray, spacing) -> np.ndarray:
    """The reference: one KNeighborsRegressor per experiment on voxel coordinates (µm)."""
    out = volumes.copy()
    coords = np.argwhere(support) * np.asarray(spacing)
    for e in range(volumes.shape[0]):
        v = volumes[e][support]
        obs = ~np.isnan(v)
        model = KNeighborsRegressor(n_neighbors=6, weights="distance").fit(coords[obs], v[obs])
        filled = v.copy()
        filled[~obs] = model.predict(coords[~obs])
        out[e][support] = filled
    return out


def untied_mask(volumes: np.ndarray, support: np.ndarray, spacing) -> np.ndarray:
    """Per missing support voxel (experiment-major), True where the 6 nearest are unambiguous."""
    coords = np.argwhere(support) * np.asarray(spacing)
    flags = []
    for e in range(volumes.shape[0]):
        v = volumes[e][support]
        obs = ~np.isnan(v)
        model = KNeighborsRegressor(n_neighbors=7).fit(coords[obs], v[obs])
        d, _ = model.kneighbors(coords[~obs])
        flags.append(d[:, 6] > d[:, 5] * (1 + 1e-9))
    return np.concatenate(flags)


def gene_r(R: np.ndarray, T: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Per-row Pearson r between R and T (optionally only where ``where``)."""
    out = np.full(R.shape[0], np.nan)
    for g in range(R.shape[0]):
        r, t = (R[g], T[g]) if where is None else (R[g][where[g]], T[g][where[g]])
        if r.size > 2 and np.ptp(r) > 0 and np.ptp(t) > 0:
            out[g] = np.corrcoef(r, t)[0, 1]
    return out


def speed_and_qc(args) -> dict:
    res: dict = {}
    ph, wall, _, _ = timed(
        osnmf.make_phantom,
        n_genes=args.n_genes,
        n_patterns=11,
        noise=args.noise,
        missing=0.1,
        seed=args.seed,
    )
    expr = ph.data
    vol, brain, spacing = expr.volumes, expr.atlas.brain_mask, expr.atlas.spacing_um
    support = default_support(vol, brain)
    res["phantom"] = {
        "n_experiments": int(vol.shape[0]),
        "build_s": round(wall, 1),
        "missing_in_brain": float(np.isnan(vol[:, brain]).mean()),
        "support_voxels": int(support.sum()),
        "brain_voxels": int(brain.sum()),
        "missing_in_support": float(np.isnan(vol[:, support]).mean()),
    }
    print(json.dumps(res["phantom"]), flush=True)

    rng = np.random.default_rng(args.seed)
    sample = np.sort(rng.choice(vol.shape[0], size=min(args.sample, vol.shape[0]), replace=False))
    sub = np.ascontiguousarray(vol[sample])
    ref, ref_wall, ref_cpu, ref_peak = timed(sklearn_loop, sub, support, spacing, trace=True)
    ours_s, s_wall, s_cpu, s_peak = timed(
        impute_knn, sub, support, spacing_um=spacing, n_jobs=1, trace=True
    )
    miss = np.isnan(sub) & support[None]
    untied = untied_mask(sub, support, spacing)
    a = ours_s[miss].astype(np.float64)
    b = ref[miss].astype(np.float64)
    res["sample"] = {
        "n": int(sample.size),
        "sklearn_wall_s": ref_wall,
        "sklearn_cpu_s": ref_cpu,
        "sklearn_peak_MB": ref_peak / 1e6,
        "ours_1thread_wall_s": s_wall,
        "ours_1thread_cpu_s": s_cpu,
        "ours_peak_MB": s_peak / 1e6,
        "ratio_wall_1thread": ref_wall / s_wall,
        "ratio_cpu": ref_cpu / s_cpu,
        "untied_fraction": float(untied.mean()),
        "max_abs_diff_untied": float(np.abs(a - b)[untied].max()),
        "max_rel_diff_untied": float((np.abs(a - b) / np.maximum(np.abs(b), 1e-12))[untied].max()),
        "mean_abs_diff_tied_vs_sklearn": float(np.abs(a - b)[~untied].mean()),
    }
    print(json.dumps(res["sample"]), flush=True)

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out, wall, cpu, peak = timed(
        impute_knn, vol, support, spacing_um=spacing, n_jobs=args.n_jobs, trace=True
    )
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    per_gene_ref = ref_wall / sample.size
    res["full"] = {
        "n_jobs": args.n_jobs,
        "wall_s": wall,
        "cpu_s": cpu,
        "traced_peak_MB": peak / 1e6,
        "output_copy_MB": out.nbytes / 1e6,
        "working_MB": (peak - out.nbytes) / 1e6,
        "maxrss_growth_MB": (rss1 - rss0) / 1e3,
        "sklearn_extrapolated_wall_s": per_gene_ref * vol.shape[0],
        "sklearn_extrapolated_cpu_s": ref_cpu / sample.size * vol.shape[0],
        "ratio_wall": per_gene_ref * vol.shape[0] / wall,
        "ratio_cpu": ref_cpu / sample.size * vol.shape[0] / cpu,
        "nan_left_in_support": int(np.isnan(out[:, support]).sum()),
    }
    print(json.dumps(res["full"]), flush=True)
    # the imputed sample equals the full run's rows (chunking/threads do not matter)
    res["full"]["sample_rows_identical"] = bool(np.array_equal(out[sample], ours_s, equal_nan=True))
    del out

    # imputation vs truth on the voxels that were really missing (phantom only)
    hold, wall, cpu, _ = timed(
        holdout_check,
        vol,
        support,
        n_holdout=1000,
        seed=args.seed,
        truth=ph.clean,
        truth_mask=brain,
        spacing_um=spacing,
        n_jobs=args.n_jobs,
    )
    res["holdout"] = hold.summary() | {"wall_s": wall, "cpu_s": cpu}
    print(json.dumps(res["holdout"]), flush=True)
    return res


def nmf_comparison(args) -> dict:
    from osnmf.factorize.nmf.fits import fit_nmf
    from osnmf.factorize.nmf.init import nndsvda

    ph = osnmf.make_phantom(
        n_genes=args.nmf_genes, n_patterns=11, noise=args.noise, missing=0.1, seed=args.seed + 1
    )
    expr, brain = ph.data, ph.data.atlas.brain_mask
    truth = ph.clean
    support = default_support(expr.volumes, brain)
    raw = prepare_matrix(expr, brain)  # NaN kept, negatives clipped
    hidden = raw.missing
    k = 11
    runs = {}

    def record(name, A, D, seconds):
        R = A @ D
        r_all = gene_r(R, truth)
        r_hidden = gene_r(R, truth, hidden)
        runs[name] = {
            "r_truth_mean": float(np.nanmean(r_all)),
            "r_truth_sd": float(np.nanstd(r_all)),
            "r_truth_hidden_mean": float(np.nanmean(r_hidden)),
            "rel_err_truth": float(np.linalg.norm(R - truth) / np.linalg.norm(truth)),
            "rel_err_truth_hidden": float(
                np.linalg.norm((R - truth)[hidden]) / np.linalg.norm(truth[hidden])
            ),
            "seconds": round(seconds, 1),
        }
        print(name, json.dumps(runs[name]), flush=True)

    # A) the paper: kNN imputation in the support, then CD NMF (unsupported voxels -> 0)
    t = time.perf_counter()
    imputed = impute_knn(expr, support, n_jobs=args.n_jobs)
    X_knn = prepare_matrix(imputed, brain, fill_missing=0.0).X
    t_knn = time.perf_counter() - t
    fit = fit_nmf(X_knn, k, max_iter=args.nmf_iter, tol=1e-4, random_state=0)
    record("knn+cd", fit.A, fit.D, time.perf_counter() - t)
    # B) no imputation: missing -> 0, CD NMF
    t = time.perf_counter()
    X_zero = np.where(hidden, 0, raw.X)
    fit = fit_nmf(X_zero, k, max_iter=args.nmf_iter, tol=1e-4, random_state=0)
    record("zero+cd", fit.A, fit.D, time.perf_counter() - t)
    # C) kNN imputation then multiplicative updates (the same solver as D)
    t = time.perf_counter()
    A0, D0 = nndsvda(X_knn, k, random_state=0)
    mu = masked_nmf(X_knn, k, np.zeros_like(hidden), init=(A0, D0), max_iter=args.mu_iter, tol=1e-6)
    record("knn+mu", mu.A, mu.D, time.perf_counter() - t + t_knn)
    # D) masked multiplicative updates: missing entries carry zero weight
    t = time.perf_counter()
    row_mean = np.nanmean(raw.X, axis=1, keepdims=True)
    A0, D0 = nndsvda(np.where(hidden, row_mean, raw.X), k, random_state=0)
    mu = masked_nmf(raw.X, k, hidden, init=(A0, D0), max_iter=args.mu_iter, tol=1e-6)
    record("masked_mu", mu.A, mu.D, time.perf_counter() - t)
    runs["masked_mu"]["n_iter"] = mu.n_iter
    return {
        "n_genes": args.nmf_genes,
        "k": k,
        "hidden_fraction": float(hidden.mean()),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-genes", type=int, default=4345)
    parser.add_argument("--sample", type=int, default=30)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nmf-genes", type=int, default=400)
    parser.add_argument("--nmf-iter", type=int, default=200)
    parser.add_argument("--mu-iter", type=int, default=1000)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-nmf", action="store_true")
    args = parser.parse_args()
    results = {}
    if not args.skip_speed:
        results |= speed_and_qc(args)
    if not args.skip_nmf:
        results["nmf"] = nmf_comparison(args)
    print(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
