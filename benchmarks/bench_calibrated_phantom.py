"""Calibrated phantom vs the real atlas: instability curves side by side, single-experiment stats.

Builds ``make_phantom(preset="calibrated")``, imputes it like the pipeline (kNN, 6 neighbours),
runs StaNMF with ``--recipe`` (default ``fast``: grown starts, auto solver, ``median3_near``, the
estimator's defaults before ``"paper"`` became the default; ``paper`` for the seed paper's cold
NNDSVDa fits, exact solver and γ argmin) and the PCA bootstrap baseline over K, and prints γ(K) beside
the paper's released curve for the real atlas (``../shared/data/osnmf_paper/instability_curve.csv``,
100 replicates, 4,345 genes). It also prints per-experiment Moran's I, share of brain voxels at
exactly zero, coefficient of variation and kNN hold-out r for the phantom and for the real
coronal grids in ``../shared/data/aba_real``.

Writes ``benchmarks/results/calibrated_phantom_curve.csv``, ``calibrated_phantom_stats.csv`` and
``calibrated_phantom_curve.png`` (the committed ones predate both recipes: made with the defaults
of the time, ``grow=True`` with the exact solver).

Usage::

    python benchmarks/bench_calibrated_phantom.py [--genes 600] [--stride 10] [--replicates 8]
        [--k-min 8] [--k-max 30] [--seed 0] [--pca-replicates 8] [--recipe fast|paper]

Sizes: the real atlas has 4,345 genes × 62,529 brain voxels and 100 replicates; the defaults here
(600 genes, every 10th brain voxel, 8 replicates) fit a loaded 2-core machine. BLAS runs on one
thread. Fewer replicates make γ(K) noisier, not biased (it is a mean over replicate pairs).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from threadpoolctl import threadpool_limits

from osnmf import Atlas, make_phantom
from osnmf.baselines.pca import pca_instability
from osnmf.factorize.choose_k.stability import cross_correlation
from osnmf.factorize.stanmf import StaNMF
from osnmf.formats.allen_grid import read_allen_grid_zip
from osnmf.preprocess import default_support, holdout_check, impute_knn, prepare_matrix
from osnmf.spatial.moran import morans_i

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def experiment_stats(volumes: np.ndarray, brain: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Per experiment: Moran's I (face, binary) on the observed brain voxels, zero share, CV, hold-out r."""
    rows = []
    for vol in volumes:
        obs = brain & ~np.isnan(vol)
        v = vol[obs].astype(np.float64)
        rows.append({"moran": morans_i(np.where(obs, vol, 0.0), obs), "zero_share": float((v == 0).mean()),
                     "cv": float(v.std() / v.mean())})
    out = pd.DataFrame(rows)
    hold = holdout_check(volumes, default_support(volumes, brain), n_holdout=1000, seed=seed)
    out["holdout_r"] = hold.per_experiment["pearson_r"].to_numpy()
    return out


def real_volumes(folder: Path, atlas: Atlas) -> np.ndarray:
    table = pd.read_csv(folder / "experiments.csv")
    ids = table.loc[table["plane"] == "coronal", "section_data_set_id"]
    return np.stack([read_allen_grid_zip(folder / "energy" / f"{i}.zip", expected_shape=atlas.shape)["energy"]
                     for i in ids]).astype(np.float32)


def matched_r(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    C = cross_correlation(P, Q)
    r, c = linear_sum_assignment(C, maximize=True)
    return C[r, c]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genes", type=int, default=600)
    ap.add_argument("--stride", type=int, default=10, help="keep every stride-th brain voxel")
    ap.add_argument("--replicates", type=int, default=8)
    ap.add_argument("--pca-replicates", type=int, default=8)
    ap.add_argument("--k-min", type=int, default=8)
    ap.add_argument("--k-max", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recipe", choices=["fast", "paper"], default="fast",
                    help="StaNMF's recipe (default fast: the estimator's former defaults)")
    ap.add_argument("--n-stats", type=int, default=48, help="phantom experiments for the single-experiment stats")
    ap.add_argument("--paper", type=Path, default=SHARED / "osnmf_paper" / "instability_curve.csv")
    ap.add_argument("--real", type=Path, default=SHARED / "aba_real")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    atlas = Atlas.default()
    brain = atlas.brain_mask

    t0 = time.perf_counter()
    ph = make_phantom(preset="calibrated", n_genes=a.genes, seed=a.seed, atlas=atlas)
    print(f"phantom: {a.genes} genes, K = {ph.n_patterns} planted, {time.perf_counter() - t0:.0f} s", flush=True)

    # ---- single experiments: phantom vs real coronal grids
    pick = np.linspace(0, a.genes - 1, min(a.n_stats, a.genes)).astype(int)
    ours = experiment_stats(ph.data.volumes[pick], brain, a.seed).assign(source="calibrated phantom")
    real = experiment_stats(real_volumes(a.real, atlas), brain, a.seed).assign(source="real coronal grids")
    stats = pd.concat([ours, real], ignore_index=True)
    stats.to_csv(a.out / "calibrated_phantom_stats.csv", index=False)
    summary = stats.groupby("source").agg(["mean", "std", "min", "max"]).round(4)
    print("\nsingle experiments (Moran's I face/binary on observed brain voxels; kNN hold-out r, 1,000 voxels)")
    print(summary.T.to_string())

    # ---- the matrix as the pipeline builds it: kNN-imputed, genes × brain voxels
    t0 = time.perf_counter()
    support = default_support(ph.data.volumes, brain)
    filled = impute_knn(ph.data.volumes, support, 6, spacing_um=atlas.spacing_um)
    X = prepare_matrix(filled, support=brain, fill_missing=0.0).X
    keep = np.arange(0, X.shape[1], a.stride)
    X = np.ascontiguousarray(X[:, keep], dtype=np.float32)
    P = ph.patterns[:, keep]
    print(f"\nmatrix {X.shape} (imputed in {time.perf_counter() - t0:.0f} s)", flush=True)

    ks = list(range(a.k_min, a.k_max + 1))
    with threadpool_limits(1):
        t0 = time.perf_counter()
        model = StaNMF(k_range=ks, n_replicates=a.replicates, recipe=a.recipe, random_state=a.seed).fit(X)
        t_nmf = time.perf_counter() - t0
        t0 = time.perf_counter()
        pca = {k: pca_instability(X, k, n_replicates=a.pca_replicates, seed=a.seed) for k in ks}
        t_pca = time.perf_counter() - t0
    tab = model.instability_.set_index("k")
    paper = pd.read_csv(a.paper).set_index("k")
    K = ph.n_patterns
    rep_r = np.array([matched_r(P, d) for d in model.replicates_[K]]) if K in ks else None
    curve = pd.DataFrame({
        "k": ks,
        "stanmf_phantom": [tab.loc[k, "hungarian"] for k in ks],
        "stanmf_phantom_se": [tab.loc[k, "hungarian_se"] for k in ks],
        "stanmf_paper": [paper["stanmf_hungarian"].get(k, np.nan) for k in ks],
        "pca_phantom": [pca[k]["hungarian"] for k in ks],
        "pca_paper": [paper["pca_hungarian"].get(k, np.nan) for k in ks],
    })
    curve.to_csv(a.out / "calibrated_phantom_curve.csv", index=False)
    print(f"\nγ(K), Hungarian: calibrated phantom ({a.genes} genes, every {a.stride}th voxel, {a.replicates} "
          f"replicates, recipe {a.recipe}; PCA {a.pca_replicates}) vs the paper's real atlas (4,345 genes, "
          "100 replicates)")
    print(curve.round(4).to_string(index=False))
    print(f"selected K: phantom {model.k_} (planted {K}), paper {int(paper['stanmf_hungarian'].idxmin())}")
    print(f"final model vs planted truth: matched r {matched_r(P, model.components_).round(3).tolist()}")
    if rep_r is not None:
        print(f"replicates at K = {K}: mean matched r {rep_r.mean():.3f}, worst pattern {rep_r.min():.3f}")
    print(f"StaNMF {t_nmf:.0f} s, PCA {t_pca:.0f} s")
    _figure(curve, a.out / "calibrated_phantom_curve.png", K)


def _figure(curve: pd.DataFrame, path: Path, K: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.errorbar(curve["k"], curve["stanmf_phantom"], curve["stanmf_phantom_se"], marker="o",
                label="staNMF, calibrated phantom")
    ax.plot(curve["k"], curve["stanmf_paper"], marker="s", label="staNMF, real atlas (paper)")
    ax.plot(curve["k"], curve["pca_phantom"], ls="--", marker="o", label="PCA, calibrated phantom")
    ax.plot(curve["k"], curve["pca_paper"], ls="--", marker="s", label="PCA, real atlas (paper)")
    ax.axvline(K, color="grey", lw=0.8)
    ax.set_xlabel("K")
    ax.set_ylabel("instability γ (Hungarian)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
