"""The paper's staNMF-vs-PCA table (spec section 4) on the phantom atlas and on Drosophila.

Phantom: ``osnmf.make_phantom`` volumes (noise, ~10% missing voxels incl. whole sections) →
kNN imputation inside the brain → genes × 62,529-voxel matrix. staNMF sweeps K, PCA is compared
at the selected K under the same gene bootstrap; reconstructions are scored against the measured
(pre-imputation, NaN skipped) data. Extra rows compare both pattern sets with the planted truth.

Drosophila: the 1,640 × 405 BDGP images of the original staNMF paper. The pixel layout is
recovered from the original code's 16 × 32 embryo template (column-major), checked by the
Moran's I of the raw images under candidate layouts, and then used for Moran's I of the patterns.

staNMF runs StaNMF's ``--recipe`` (default ``paper``, the estimator's default and the paper's
method: cold NNDSVDa fits of every bootstrap sample, exact solver, K = γ argmin; ``fast``: grown
starts and K by ``median3_near``). ``--solver`` (default: the recipe's) overrides the solver under
``fast`` only: ``--solver compressed`` needs ``--recipe fast``.

Usage::

    python benchmarks/compare_stanmf_pca.py --dataset phantom --genes 150 --patterns 8 \
        --kmin 6 --kmax 10 --replicates 10 [--recipe paper|fast] [--solver exact|compressed]
    python benchmarks/compare_stanmf_pca.py --dataset drosophila --kmin 14 --kmax 24
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

pd.set_option("display.width", 250)
pd.set_option("display.max_colwidth", 120)


def _truth_rows(cmp, truth: np.ndarray, clean: np.ndarray) -> pd.DataFrame:
    """Matched correlation of each method's patterns with the planted patterns; r vs clean data."""
    from scipy.optimize import linear_sum_assignment

    from osnmf.evaluate.metrics import reconstruction_accuracy, summarize
    from osnmf.factorize.choose_k.stability import cross_correlation

    out = {}
    for name, ps in cmp.pattern_sets.items():
        C = np.abs(cross_correlation(ps.patterns, truth, centered=True))
        r, c = linear_sum_assignment(C, maximize=True)
        matched = C[r, c]
        rec = reconstruction_accuracy(clean, ps.coefficients, ps.patterns, offset=ps.offset)
        s = summarize(rec)
        out[name] = {
            "planted patterns matched (|Pearson|, Hungarian)":
                f"{matched.mean():.3f} (min {matched.min():.3f}; {len(matched)} of {truth.shape[0]})",
            "r vs noise-free planted data": f"{s['mean']:.3f} ± {s['sd']:.3f}",
        }
    return pd.DataFrame(out)


def run_phantom(args) -> None:
    import osnmf
    from osnmf.evaluate.compare import compare_stanmf_pca
    from osnmf.preprocess import impute_knn, prepare_matrix

    t0 = time.perf_counter()
    ph = osnmf.make_phantom(n_genes=args.genes, n_patterns=args.patterns, seed=args.seed)
    mask = ph.atlas.brain_mask
    measured, missing = ph.data.to_matrix()
    imputed = impute_knn(ph.data, mask)
    X = prepare_matrix(imputed, support=mask, fill_missing=0.0).X
    print(f"phantom: {X.shape[0]} genes × {X.shape[1]} voxels, {args.patterns} planted patterns, "
          f"{100 * missing.mean():.1f}% missing (imputed), prepared in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    cmp = compare_stanmf_pca(X, range(args.kmin, args.kmax + 1), X_measured=measured, mask=mask,
                             n_replicates=args.replicates, random_state=args.seed,
                             recipe=args.recipe, solver=args.solver, progress=args.progress)
    print(f"staNMF sweep K={args.kmin}…{args.kmax} × R={args.replicates} + PCA + metrics: "
          f"{time.perf_counter() - t0:.0f} s; selected K = {cmp.k}\n")
    print(cmp.table.to_string())
    print("\ninstability curve (Hungarian, mean ± SD over replicate pairs):")
    print(cmp.instability_curve[["k", "stanmf_hungarian", "stanmf_hungarian_sd", "pca_hungarian",
                                 "pca_hungarian_sd"]].round(4).to_string(index=False))
    print("\nagainst the planted truth:")
    print(_truth_rows(cmp, ph.patterns, ph.clean).to_string())


def run_drosophila(args) -> None:
    import osnmf
    from osnmf.datasets.drosophila import drosophila_mask
    from osnmf.evaluate.compare import compare_stanmf_pca
    from osnmf.evaluate.drosophila_layout import drosophila_layout_check

    X, _ = osnmf.load_drosophila()
    print(f"Drosophila: {X.shape[0]} images × {X.shape[1]} pixels")
    print("pixel layout check (Moran's I of the raw images, face adjacency):")
    print(drosophila_layout_check(X).round(3).to_string(index=False))
    t0 = time.perf_counter()
    cmp = compare_stanmf_pca(X, range(args.kmin, args.kmax + 1), mask=drosophila_mask("column"),
                             n_replicates=args.replicates, random_state=args.seed,
                             recipe=args.recipe, solver=args.solver, progress=args.progress)
    print(f"\nstaNMF sweep K={args.kmin}…{args.kmax} × R={args.replicates} + PCA + metrics: "
          f"{time.perf_counter() - t0:.0f} s; selected K = {cmp.k}\n")
    print(cmp.table.to_string())
    print("\ninstability curve (Hungarian):")
    print(cmp.instability_curve[["k", "stanmf_hungarian", "stanmf_hungarian_sd", "pca_hungarian",
                                 "pca_hungarian_sd"]].round(4).to_string(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=["phantom", "drosophila", "both"], default="both")
    ap.add_argument("--genes", type=int, default=150, help="phantom genes")
    ap.add_argument("--patterns", type=int, default=8, help="phantom planted patterns")
    ap.add_argument("--kmin", type=int, default=None)
    ap.add_argument("--kmax", type=int, default=None)
    ap.add_argument("--replicates", type=int, default=None,
                    help="bootstrap replicates (default 10 phantom, 20 Drosophila)")
    ap.add_argument("--recipe", default="paper", choices=["paper", "fast"], help="StaNMF's recipe")
    ap.add_argument("--solver", default=None, choices=["exact", "compressed"],
                    help="default: the recipe's (paper: exact); compressed needs --recipe fast")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    if args.recipe == "paper" and args.solver not in (None, "exact"):
        ap.error(f"--solver {args.solver} contradicts --recipe paper (exact solver); add --recipe fast")
    for name in (["phantom", "drosophila"] if args.dataset == "both" else [args.dataset]):
        a = argparse.Namespace(**vars(args))
        if name == "phantom":
            a.kmin = a.kmin or max(2, args.patterns - 2)
            a.kmax = a.kmax or args.patterns + 2
            a.replicates = a.replicates or 10
            run_phantom(a)
        else:
            a.kmin = a.kmin or 14
            a.kmax = a.kmax or 24
            a.replicates = a.replicates or 20
            run_drosophila(a)
        print(f"peak RSS so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        print("=" * 100)


if __name__ == "__main__":
    main()
