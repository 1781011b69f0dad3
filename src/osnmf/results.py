"""Typed results of the pipeline's stages: what each stage made, read by the run's files and report.

Each is a small dataclass of arrays, DataFrames and scalars, so that the stage cache stores it
without pickle (:func:`osnmf.run.stagecache.to_arrays`). Shapes: ``n`` kept experiments, ``m``
support voxels, ``K`` patterns, ``R`` bootstrap replicates kept for Moran's I.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from osnmf.config import RunConfig
from osnmf.expression import SpatialExpression


@dataclass
class ImputeResult:
    """kNN imputation, the matrix to factorise and the hold-out check of the imputation."""

    X: np.ndarray  # (n, m) float32 >= 0: imputed expression over the support voxels
    support: np.ndarray  # bool (AP, DV, ML); its C-order voxels are the columns of X
    kept: np.ndarray  # int indices of the experiments kept (rows of X)
    dropped: np.ndarray  # int indices of the experiments dropped (no observed voxel)
    missing_fraction: float  # share of missing values in the support before imputation
    holdout_points: int  # observed voxels hidden and imputed
    holdout_mae: float  # mean absolute error imputed vs measured
    holdout_mean_error: float  # mean of (measured - imputed): the paper's "mean error" (< 0.01)
    holdout_r: float  # Pearson r imputed vs measured
    holdout_mae_truth: float  # against the noiseless truth (NaN on real data)
    holdout_r_truth: float
    # hemispheres (osnmf.preprocess.hemispheres), one entry per loaded experiment
    hemi_midline: int  # c of the mirror map ML -> c - ML (57 on the Allen grid: midline at 28.5)
    hemi_label: np.ndarray  # (n_loaded,) int8 index into hemispheres.LABELS (bilateral, left, right, none)
    hemi_left_coverage: np.ndarray  # (n_loaded,) measured share of the left hemisphere's brain voxels
    hemi_right_coverage: np.ndarray  # (n_loaded,)
    hemi_mirrored_voxels: np.ndarray  # (n_loaded,) int voxels filled from the mirror voxel
    holdout_mirror: np.ndarray  # (3,) n_points, mae, pearson_r of the mirror check on bilateral experiments


@dataclass
class SweepResult:
    """staNMF over the K range and the final model at the selected K."""

    instability: pd.DataFrame  # one row per K: k, hungarian, hungarian_sd, amari, amari_sd, …
    k: int  # selected K
    components: np.ndarray  # (K, m) float32 patterns D
    coefficients: np.ndarray  # (n, K) float32 coefficients A
    replicates_at_k: np.ndarray  # (R, K, m) float32 replicate patterns at K (for Moran's I)
    selection: pd.DataFrame  # one row per K: the K-selection panel (osnmf.factorize.choose_k.criteria)
    k_min_check: pd.DataFrame  # chained sweeps: γ from a later chain start (choose_k.kmin_check); else empty
    k_gamma_argmin: int  # the K with the smallest γ (Hungarian; ties to the smaller K): the paper's choice


@dataclass
class BaselinesResult:
    """PCA (curve, final fit, bootstrap replicates) and the clustering pattern sets at K."""

    pca_instability: pd.DataFrame  # one row per K: k, hungarian, hungarian_sd, amari, amari_sd, …
    pca_patterns: np.ndarray  # (K, m)
    pca_coefficients: np.ndarray  # (n, K)
    pca_offset: np.ndarray  # (m,) voxel means PCA subtracts
    pca_replicates: np.ndarray  # (R, K, m)
    kmeans_patterns: np.ndarray  # (K, m)
    ward_patterns: np.ndarray  # (K, m)
    nmf_hier_patterns: np.ndarray  # (K, m)


@dataclass
class MetricsResult:
    """Spatial coherence and reconstruction, staNMF vs PCA, and the planted-truth check."""

    moran_nmf: np.ndarray  # (K,) Moran's I of the final staNMF patterns
    moran_pca: np.ndarray  # (K,)
    moran_strongest_nmf: np.ndarray  # (K,) Moran's I of the binary strongest-pattern maps
    moran_boot_nmf: np.ndarray  # (R, K) Moran's I of every replicate pattern
    moran_boot_pca: np.ndarray  # (R, K)
    moran_cliffs_delta: float  # staNMF vs PCA over the (R, K) values
    moran_p_mannwhitney: float
    moran_cohens_d: float
    moran_p_welch: float
    moran_strongest_boot_nmf: np.ndarray  # (R, K) the same on each replicate's strongest-pattern maps (the paper's)
    moran_strongest_boot_pca: np.ndarray  # (R, K)
    moran_strongest_cliffs_delta: float
    moran_strongest_p_mannwhitney: float
    recon_nmf: np.ndarray  # (n,) per-gene Pearson r, imputed matrix vs reconstructed
    recon_pca: np.ndarray  # (n,) PCA with the voxel means it subtracts added back
    recon_nmf_measured: np.ndarray  # (n,) the same over each gene's measured voxels only (the paper's)
    recon_pca_measured: np.ndarray  # (n,)
    recon_pca_measured_no_mean: np.ndarray  # (n,) PCA scores × components alone (the reference code's)
    patterns_per_gene: np.ndarray  # (n,) int
    patterns_per_gene_nonzero: np.ndarray  # (n,) int: patterns with a non-zero coefficient (the paper's Fig. 1E)
    planted_k: int  # patterns planted in the synthetic atlas (0 on real data)
    planted_matched_r: np.ndarray  # (min(planted_k, K),) Pearson r of the matched patterns
    symmetry_nmf: np.ndarray  # (K,) left-right symmetry r of each staNMF pattern (Pearson r with its mirror)
    peak_sections: np.ndarray  # (K, 3) int: the AP, DV, ML section with the largest sum of each pattern
    moran_max: float  # the largest Moran's I any map can reach on the support's face-neighbour graph (> 1)


@dataclass
class LinkingResult:
    """Patterns linked to regions, the expression-defined ontology and the Isocortex prediction test."""

    links: pd.DataFrame  # each pattern's best union of readable regions: its name and links.csv
    links_top: pd.DataFrame  # the top combinations per pattern and size over every region
    link_matrix: np.ndarray  # (K, K) pattern × every pattern's best union, Pearson r
    correlations: pd.DataFrame  # pattern × region Pearson r
    link_summary: pd.DataFrame  # mean best r per pattern set
    ontology_json: str
    ontology_newick: str
    ontology_linkage: np.ndarray  # (K-1, 4) scipy linkage
    region_auc: float  # ROC AUC predicting the Isocortex from its linked patterns
    region_random_median_auc: float  # median AUC of random pattern sets of the model's size (triples, as the paper)
    region_p: float  # empirical p of the linked AUC among the random ones
    region_n_linked: int  # patterns whose best link lies in the region (or 1: the most correlated one)
    region_model: np.ndarray  # int pattern indices of the model: the linked ones topped up to a triple
    region_n_random: int  # random models drawn (n_random_models)
    region_n_distinct: int  # distinct subsets among them (at most C(K, random_size))


@dataclass
class MarkersResult:
    """Marker genes and the spatial gene coexpression networks (one per pattern)."""

    markers: pd.DataFrame
    hubs: pd.DataFrame
    edges: pd.DataFrame  # every network's edges: pattern, source, target, r
    networks_json: np.ndarray  # (K,) str: each network as node-link JSON

    def graphs(self) -> list:
        """The networks as networkx graphs (node-link JSON → graph)."""
        from osnmf.interpret.networks import network_from_json

        return [network_from_json(json.loads(str(text))) for text in self.networks_json]


@dataclass
class RunState:
    """Everything a run's stages produce, typed; the files and the report read it and compute nothing."""

    config: RunConfig
    out: Path
    expr: SpatialExpression | None = None
    truth: object | None = None  # a Phantom when the data are synthetic
    data_key: str = ""
    keys: dict[str, str] = field(default_factory=dict)  # stage -> cache key
    digests: dict[str, str] = field(default_factory=dict)  # stage -> digest of its result (read downstream)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    cached: dict[str, bool] = field(default_factory=dict)  # stage -> reused from the cache
    impute: ImputeResult | None = None
    sweep: SweepResult | None = None
    baselines: BaselinesResult | None = None
    metrics: MetricsResult | None = None
    linking: LinkingResult | None = None
    markers: MarkersResult | None = None
    dropped_one_hemisphere: int = 0  # experiments left out by --hemispheres drop


def stability_table(sweep: SweepResult, baselines: BaselinesResult) -> pd.DataFrame:
    """staNMF instability per K with the PCA curve beside it (columns ``pca_*``)."""
    pca = baselines.pca_instability.rename(columns={c: f"pca_{c}" for c in baselines.pca_instability if c != "k"})
    table = sweep.instability.merge(pca, on="k", how="left")
    # the rest of the K-selection panel (gamma ± SE are the hungarian columns already there)
    return table.merge(sweep.selection.drop(columns=["gamma", "gamma_se"]), on="k", how="left")


def k_selection(sweep: SweepResult, rule: str) -> dict:
    """The rule that chose K and the K every rule of the panel selects (``summary.json``)."""
    from osnmf.factorize.choose_k.criteria import k_rules

    return {"rule": rule, "k_by_rule": k_rules(sweep.selection)}


#: What each headline setting of a recipe reports (osnmf.recipes): label and MetricsResult fields.
MORAN_HEADLINES = {
    "strongest": ("Moran's I of each pattern's strongest-pattern binary map (the paper's Fig. 1D)",
                  "moran_strongest_boot_nmf", "moran_strongest_boot_pca", "moran_strongest_cliffs_delta",
                  "moran_strongest_p_mannwhitney"),
    "continuous": ("Moran's I of the pattern values", "moran_boot_nmf", "moran_boot_pca", "moran_cliffs_delta",
                   "moran_p_mannwhitney"),
}
RECON_HEADLINES = {
    "measured": ("per-gene Pearson r over the measured voxels (imputed ones left out)", "recon_nmf_measured",
                 "recon_pca_measured"),
    "imputed": ("per-gene Pearson r over the imputed matrix that was factorised", "recon_nmf", "recon_pca"),
}


def headline_metrics(metrics: MetricsResult, settings: dict) -> dict:
    """The headline Moran's I and reconstruction values of a run's recipe (``settings``:
    :meth:`osnmf.config.RunConfig.settings`): labels, (R, K) Moran values, (n,) reconstruction r."""
    m_label, m_nmf, m_pca, m_delta, m_p = MORAN_HEADLINES[settings["moran_headline"]]
    r_label, r_nmf, r_pca = RECON_HEADLINES[settings["recon_headline"]]
    return {"moran_label": m_label, "moran_nmf": getattr(metrics, m_nmf), "moran_pca": getattr(metrics, m_pca),
            "moran_cliffs_delta": float(getattr(metrics, m_delta)), "moran_p_mannwhitney": float(getattr(metrics, m_p)),
            "recon_label": r_label, "recon_nmf": getattr(metrics, r_nmf), "recon_pca": getattr(metrics, r_pca)}


#: Why a Moran's I value can be undefined (NaN), by headline variant: the statistic divides by the map's variance.
MORAN_UNDEFINED = {
    "strongest": "a replicate pattern that is nowhere the strongest has a constant (all-zero) strongest-pattern "
                 "map, whose Moran's I is undefined (zero variance); those values are left out",
    "continuous": "a constant replicate pattern has no Moran's I (zero variance); those values are left out",
}


def defined_stats(values) -> dict:
    """Mean and SD (ddof=1) of the finite entries of ``values`` and how many were not finite.

    Returns ``{"mean", "sd", "n", "n_undefined"}``; ``mean`` / ``sd`` are None when fewer than
    one / two values are finite (a statistic that does not exist is None, never NaN).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    ok = v[np.isfinite(v)]
    return {"mean": float(ok.mean()) if ok.size else None, "sd": float(ok.std(ddof=1)) if ok.size > 1 else None,
            "n": int(ok.size), "n_undefined": int(v.size - ok.size)}


def k_range_edge(sweep: SweepResult) -> str | None:
    """A warning when the selected K is the smallest or largest K of the sweep's range (the
    instability might keep falling outside it), else None."""
    ks = [int(v) for v in sweep.instability["k"]]
    k = int(sweep.k)
    if len(ks) < 2 or min(ks) < k < max(ks):
        return None
    edge, flag, other = ("smallest", "--k-min", "lower") if k == min(ks) else ("largest", "--k-max", "higher")
    return (f"the selected K = {k} is the {edge} K of the range {min(ks)}–{max(ks)}: the best K may lie outside "
            f"it; rerun with a {other} {flag} to check")


def planted_truth(metrics: MetricsResult, k: int) -> dict | None:
    """The planted-truth check as a dict (None on real data)."""
    if metrics.planted_k == 0:
        return None
    r = [float(v) for v in metrics.planted_matched_r]
    return {"planted_k": metrics.planted_k, "selected_k": int(k), "matched_r": r,
            "matched_r_mean": float(np.mean(r))}


def pattern_sets(sweep: SweepResult, baselines: BaselinesResult) -> dict[str, np.ndarray]:
    """Every pattern set of the run, ``(K, m)`` each, by name (staNMF first)."""
    # PCA components come with their largest-magnitude loading positive (pca_baseline.pca_fit)
    return {
        "staNMF": sweep.components, "PCA": baselines.pca_patterns, "PCA + k-means": baselines.kmeans_patterns,
        "PCA + agglomerative": baselines.ward_patterns, "staNMF + hierarchical": baselines.nmf_hier_patterns,
    }
