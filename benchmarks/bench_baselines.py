"""The pipeline's ``baselines`` stage at paper size, timed phase by phase, beside scikit-learn.

Runs the computation of ``Pipeline.baselines`` (one Gram of X, PCA of X and of R gene-bootstrap
replicates at K_max, the PCA instability curve over the K range, PCA at K, PCA + k-means, PCA +
Ward, staNMF + hierarchical) on a genes × voxels float32 matrix: by default a random non-negative
rank-11 + noise matrix of the paper's size (4,345 × 62,529); ``--phantom`` builds the calibrated
phantom instead (its measured matrix, missing voxels set to 0). Then ``--sklearn-reps``
replicates are fitted with scikit-learn's ``PCA(svd_solver="full")`` on the explicitly resampled
rows in float64 (the straightforward loop): its time per replicate beside ours, and the largest difference
between its components and ours (up to sign).

Writes a JSON (``--json``) with the wall time of every phase, the peak RSS above the start (and
size(X)), the load average before and after (the machine is shared), and the settings.

Usage::

    python benchmarks/bench_baselines.py [--genes 4345 --voxels 62529] [--k-min 8 --k-max 30]
        [--k 11] [--replicates 100] [--sklearn-reps 2] [--phantom]
        [--json benchmarks/results/baselines_paper_size.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from bench_paper_size import PeakSampler, rss_bytes  # the same RSS sampler (benchmarks/ is on sys.path)


def random_matrix(n: int, m: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative rank-k + noise float32 ``(n, m)`` and its k patterns ``(k, m)``."""
    rng = np.random.default_rng(seed)
    A = (rng.random((n, k)) ** 3 * (rng.random((n, k)) < 0.5)).astype(np.float32)
    D = np.abs(rng.standard_normal((k, m))).astype(np.float32)
    X = A @ D
    for i in range(0, n, 512):
        X[i:i + 512] += 0.3 * np.abs(rng.standard_normal((min(512, n - i), m), dtype=np.float32))
    return X, D


def phantom_matrix(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The calibrated phantom's measured matrix (missing → 0, negatives → 0) and planted patterns."""
    import osnmf

    ph = osnmf.make_phantom(preset="calibrated", n_genes=n, n_patterns=k, seed=seed)
    X = np.nan_to_num(np.asarray(ph.data.to_matrix()[0], dtype=np.float32), nan=0.0)
    np.maximum(X, 0, out=X)
    return X, np.asarray(ph.patterns, dtype=np.float32)


def run_stage(X: np.ndarray, D: np.ndarray, ks: list[int], k: int, reps: int, moran_reps: int,
              seed: int) -> tuple[dict[str, float], dict]:
    """``Pipeline.baselines``'s computation, each phase timed; returns (times, results)."""
    from osnmf import baselines as bl
    from osnmf.evaluate.compare import instability_curve

    times: dict[str, float] = {}
    out: dict = {}

    def timed(name, f):
        t = time.perf_counter()
        value = f()
        times[name] = round(time.perf_counter() - t, 2)
        print(f"  {name}: {times[name]:.1f} s", flush=True)
        return value

    gram = timed("gram", lambda: bl.CentredGram(X))
    boot = timed("pca_bootstrap", lambda: bl.pca_bootstrap(X, max(*ks, k), n_replicates=max(reps, moran_reps),
                                                           seed=seed, gram=gram))
    out["curve"] = timed("instability_curve", lambda: instability_curve(boot.correlations(reps), ks))
    out["pca"] = timed("pca_at_k", lambda: boot.full_pca(k))
    out["replicate_patterns"] = timed("replicate_patterns", lambda: boot.patterns(moran_reps, k))
    emb = timed("voxel_embedding", lambda: bl.voxel_pca_embedding(X, k, gram=gram))
    timed("pca_kmeans", lambda: bl.pca_kmeans_patterns(X, k, seed=seed, embedding=emb))
    timed("pca_ward", lambda: bl.pca_agglomerative_patterns(X, k, seed=seed, embedding=emb))
    timed("nmf_hierarchical", lambda: bl.nmf_hierarchical_patterns(D, k, seed=seed))
    out["boot"] = boot
    return times, out


def sklearn_loop(X: np.ndarray, k: int, counts: np.ndarray, boot) -> dict:
    """scikit-learn's PCA on the explicitly resampled rows: seconds per replicate, max |Δ| to ours."""
    from sklearn.decomposition import PCA

    secs, diffs = [], []
    for r, c in enumerate(counts):
        t = time.perf_counter()
        rows = np.repeat(np.arange(X.shape[0]), c)
        sk = PCA(k, svd_solver="full").fit(X[rows].astype(np.float64))  # float64: the exact reference
        secs.append(time.perf_counter() - t)
        ours = boot.gram.project(boot.coef[r])
        signs = np.sign(np.einsum("ij,ij->i", ours, sk.components_))
        diffs.append(float(np.abs(ours - signs[:, None] * sk.components_).max()))
        print(f"  scikit-learn replicate {r}: {secs[-1]:.1f} s, max |Δ component| {diffs[-1]:.1e}", flush=True)
    return {"seconds_per_replicate": round(float(np.mean(secs)), 2), "replicates": len(secs),
            "max_abs_component_difference": max(diffs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--genes", type=int, default=4345)
    ap.add_argument("--voxels", type=int, default=62529)
    ap.add_argument("--k-min", type=int, default=8)
    ap.add_argument("--k-max", type=int, default=30)
    ap.add_argument("--k", type=int, default=11, help="the selected K (patterns planted)")
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--moran-replicates", type=int, default=20)
    ap.add_argument("--sklearn-reps", type=int, default=2)
    ap.add_argument("--phantom", action="store_true", help="the calibrated phantom instead of a random matrix")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/baselines_paper_size.json"))
    args = ap.parse_args()

    t = time.perf_counter()
    if args.phantom:
        X, D = phantom_matrix(args.genes, args.k, args.seed)
    else:
        X, D = random_matrix(args.genes, args.voxels, args.k, args.seed)
    print(f"matrix {X.shape} {X.dtype} ({X.nbytes / 2**30:.2f} GiB) in {time.perf_counter() - t:.0f} s", flush=True)
    ks = list(range(args.k_min, args.k_max + 1))
    load_before = os.getloadavg()
    start_rss = rss_bytes()
    sampler = PeakSampler()
    t = time.perf_counter()
    times, out = run_stage(X, D, ks, args.k, args.replicates, args.moran_replicates, args.seed)
    total = time.perf_counter() - t
    peak = sampler.sample()
    sampler.stop()
    load_after = os.getloadavg()
    print(f"stage {total:.1f} s, peak RSS {(peak - start_rss) / 2**30:.2f} GiB above the start; "
          f"load {load_before} -> {load_after}", flush=True)

    from osnmf.factorize.sweep.bootstrap import bootstrap_counts

    counts = bootstrap_counts(X.shape[0], args.sklearn_reps, args.seed)
    sk = sklearn_loop(X, max(ks), counts, out["boot"]) if args.sklearn_reps else {}
    result = {
        "settings": {"genes": X.shape[0], "voxels": X.shape[1], "matrix": "phantom" if args.phantom else "random",
                     "k_range": [args.k_min, args.k_max], "k": args.k, "replicates": args.replicates,
                     "moran_replicates": args.moran_replicates, "cpus": os.cpu_count(),
                     "machine": platform.platform()},
        "X_gib": round(X.nbytes / 2**30, 3),
        "stage_seconds": round(total, 2),
        "phase_seconds": times,
        "peak_rss_above_start_gib": round((peak - start_rss) / 2**30, 3),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "pca_curve_hungarian": [round(float(v), 6) for v in out["curve"]["hungarian"]],
        "sklearn": sk,
    }
    if sk:
        per_rep = sk["seconds_per_replicate"]
        result["sklearn_loop_projected_seconds"] = round(per_rep * (args.replicates + 1), 1)
        result["speedup_vs_sklearn_loop_projected"] = round(per_rep * (args.replicates + 1) / total, 1)
        print(f"scikit-learn loop: {per_rep:.1f} s per replicate -> {args.replicates + 1} fits "
              f"{per_rep * (args.replicates + 1):.0f} s (projection) vs the whole stage {total:.1f} s", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
