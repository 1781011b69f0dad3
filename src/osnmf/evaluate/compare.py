"""staNMF against PCA, as in the paper's Fig. 1 (spec section 4): the comparison table.

For one matrix ``X`` (genes × voxels) this fits staNMF over a range of K and PCA at the selected
K, under the *same* gene bootstrap (replicate r resamples the same genes for both), and reports

* instability (Hungarian and Amari) of the R replicate pattern sets at K, mean ± SD over pairs
  (and PCA's instability at every K of the range);
* Moran's I of every pattern of every replicate (R × K values per method), both of the pattern
  values ("continuous") and of the binary strongest-pattern maps ("strongest", the paper's
  Fig. 1D statistic), compared with :func:`compare_distributions`;
* reconstruction accuracy per gene (Pearson r, measured vs reconstructed), mean ± SD, and the
  share of genes that staNMF reconstructs better;
* patterns per gene (:func:`osnmf.evaluate.metrics.patterns_per_gene`).

Statistical test: :func:`compare_distributions` reports Cliff's delta (effect size) with the
two-sided Mann–Whitney U p-value as the primary pair (no normality assumed; Moran's I values are
bounded and skewed), and Cohen's d with Welch's t-test p-value alongside.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from osnmf.baselines.pattern_set import PatternSet, nmf_patterns
from osnmf.baselines.pca import pca_bootstrap_patterns, pca_patterns
from osnmf.errors import InputError
from osnmf.evaluate.metrics import patterns_per_gene, reconstruction_accuracy, summarize
from osnmf.factorize.choose_k.stability import instability_from_correlations, pairwise_correlations
from osnmf.factorize.sweep.bootstrap import bootstrap_counts
from osnmf.spatial.moran import morans_i_distribution, spatial_weights


def compare_distributions(a: Iterable[float], b: Iterable[float]) -> dict[str, float]:
    """Compare two samples (e.g. Moran's I of staNMF vs PCA patterns); NaN values are dropped.

    Returns
    -------
    dict with ``n_a, mean_a, sd_a, n_b, mean_b, sd_b`` (SD with ddof=1) and
    ``cliffs_delta``: P(a > b) − P(a < b) over all pairs, in [−1, 1] (> 0: a tends larger);
    ``p_mannwhitney``: two-sided Mann–Whitney U p-value (scipy, asymptotic with tie correction
    for large samples); ``cohens_d``: mean difference over the pooled SD; ``p_welch``: two-sided
    Welch t-test p-value.
    """
    a = np.asarray(list(a), dtype=np.float64).ravel()
    b = np.asarray(list(b), dtype=np.float64).ravel()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        raise InputError(f"need at least 2 finite values per sample, got {a.size} and {b.size}")
    u = stats.mannwhitneyu(a, b, alternative="two-sided")
    delta = 2.0 * float(u.statistic) / (a.size * b.size) - 1.0
    pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1))
                     / (a.size + b.size - 2))
    d = (a.mean() - b.mean()) / pooled if pooled > 0 else float("nan")
    welch = stats.ttest_ind(a, b, equal_var=False)
    return {
        "n_a": int(a.size), "mean_a": float(a.mean()), "sd_a": float(a.std(ddof=1)),
        "n_b": int(b.size), "mean_b": float(b.mean()), "sd_b": float(b.std(ddof=1)),
        "cliffs_delta": float(delta), "p_mannwhitney": float(u.pvalue),
        "cohens_d": float(d), "p_welch": float(welch.pvalue),
    }


def pca_instability_curve(replicates: np.ndarray, ks: Iterable[int], centered: bool = False) -> pd.DataFrame:
    """PCA instability at every K from one stack of bootstrap PCA fits at the largest K.

    Principal components are nested (the first k of a replicate's top-K are its top k), so
    ``replicates`` ``(R, K_max, m)`` serves the whole curve, and so do its cross-correlations,
    computed once. Returns one row per K: ``k`` and the columns of
    :func:`osnmf.factorize.choose_k.stability.instability`.
    """
    replicates = np.asarray(replicates)
    ks = [int(k) for k in ks]
    if replicates.ndim != 3 or max(ks) > replicates.shape[1]:
        raise InputError(f"need (R, K_max, m) replicates with K_max >= {max(ks)}, got {replicates.shape}")
    return instability_curve(pairwise_correlations(replicates[:, : max(ks)], centered=centered), ks)


def instability_curve(correlations: np.ndarray, ks: Iterable[int]) -> pd.DataFrame:
    """Instability at every K from the cross-correlations ``(R, R, K_max, K_max)`` of nested
    replicate pattern sets (e.g. :meth:`osnmf.baselines.pca.PCABootstrap.correlations`)."""
    C = np.asarray(correlations)
    ks = [int(k) for k in ks]
    if C.ndim != 4 or max(ks) > C.shape[2]:
        raise InputError(f"need (R, R, K_max, K_max) correlations with K_max >= {max(ks)}, got {C.shape}")
    return pd.DataFrame([{"k": k, **instability_from_correlations(C[:, :, :k, :k])} for k in ks])


def moran_comparison(nmf_replicates, pca_replicates, mask: np.ndarray, variant: str = "continuous",
                     connectivity: str = "face", w=None) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Moran's I of every replicate pattern, staNMF vs PCA, and their :func:`compare_distributions`.

    ``w``: optional binary adjacency of ``mask`` (:func:`osnmf.spatial.moran.spatial_weights`), built
    once by the caller. Returns ``(I_nmf (R, K), I_pca (R, K), test)``.
    """
    if w is None:
        w = spatial_weights(mask, connectivity)
    dn = morans_i_distribution(nmf_replicates, mask, variant=variant, connectivity=connectivity, w=w)
    dp = morans_i_distribution(pca_replicates, mask, variant=variant, connectivity=connectivity, w=w)
    return dn, dp, compare_distributions(dn, dp)


@dataclass
class Comparison:
    """Result of :func:`compare_stanmf_pca`.

    Attributes
    ----------
    table : DataFrame indexed by metric with columns ``staNMF``, ``PCA`` (formatted
        "mean ± SD" strings) and ``test`` (effect size and p-value where one applies).
    values : the same numbers, unformatted (nested dicts).
    k : the K used (staNMF's selected K).
    instability_curve : DataFrame k, stanmf_hungarian, stanmf_hungarian_sd, pca_hungarian,
        pca_hungarian_sd (and Amari) over the K range.
    pattern_sets : {"staNMF": PatternSet, "PCA": PatternSet} of the final models.
    per_gene : DataFrame with the per-gene reconstruction r and patterns per gene of both.
    moran : {"continuous"|"strongest": {"staNMF": (R, K), "PCA": (R, K)}} when a mask was given.
    """

    table: pd.DataFrame
    values: dict[str, Any]
    k: int
    instability_curve: pd.DataFrame
    pattern_sets: dict[str, PatternSet]
    per_gene: pd.DataFrame
    moran: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.table.to_string()


def _pm(mean: float, sd: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _test_str(res: dict[str, float]) -> str:
    return (f"Cliff's δ={res['cliffs_delta']:+.2f}, MWU p={res['p_mannwhitney']:.1e}; "
            f"d={res['cohens_d']:+.2f}, Welch p={res['p_welch']:.1e}")


def compare_stanmf_pca(
    X: np.ndarray,
    k_range: Iterable[int],
    X_measured: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    n_replicates: int = 20,
    random_state: int = 0,
    threshold: float = 0.01,
    connectivity: str = "face",
    model: Any = None,
    progress: bool = False,
    **stanmf_kwargs: Any,
) -> Comparison:
    """The paper's staNMF vs PCA table on one matrix.

    Parameters
    ----------
    X : ``(n_genes, m)`` non-negative, complete matrix the methods are fitted on.
    k_range : K values for the staNMF sweep; PCA is compared at the selected K (its
        instability is also computed at every K of the range).
    X_measured : ``(n_genes, m)`` measured data (NaN = missing) the reconstructions are scored
        against; default ``X``.
    mask : bool grid whose C-order voxels are the columns of ``X`` (e.g. the brain mask, or the
        embryo template); None skips Moran's I.
    n_replicates : bootstrap replicates R for staNMF and PCA (the paper: 20 for Moran's I).
    random_state : seed of the shared gene bootstrap and of staNMF.
    threshold : rule of :func:`osnmf.evaluate.metrics.patterns_per_gene`.
    connectivity : grid adjacency for Moran's I (``"face"`` or ``"queen"``).
    model : an already fitted :class:`osnmf.StaNMF` on ``X`` (skips the sweep; its
        ``n_replicates`` and ``random_state`` then define the bootstrap).
    progress : show progress bars.
    **stanmf_kwargs : further :class:`osnmf.StaNMF` parameters (``solver``, ``n_jobs``, …).
    """
    from osnmf.factorize.stanmf import StaNMF

    X = np.asarray(X)
    if X_measured is None:
        X_measured = X
    if np.asarray(X_measured).shape != X.shape:
        raise InputError(f"X_measured is {np.asarray(X_measured).shape}, X is {X.shape}")
    if model is None:
        model = StaNMF(k_range=k_range, n_replicates=n_replicates, random_state=random_state,
                       progress=progress, **stanmf_kwargs).fit(X)
    else:
        n_replicates, random_state = int(model.n_replicates), int(model.random_state)
    k = int(model.k_)
    ks = [int(v) for v in model.instability_["k"]]
    nmf = nmf_patterns(model)
    pca = pca_patterns(X, k)

    # the same bootstrap for PCA; PCA components are nested, so fit once at the largest K
    counts = bootstrap_counts(X.shape[0], n_replicates, random_state)
    pca_reps_max = pca_bootstrap_patterns(X, max(ks), counts=counts, progress=progress)
    columns = ["hungarian", "hungarian_sd", "amari", "amari_sd"]
    nmf_curve = model.instability_.set_index("k").loc[ks, columns].add_prefix("stanmf_")
    pca_curve = pca_instability_curve(pca_reps_max, ks, centered=bool(model.centered)).set_index("k")
    curve = nmf_curve.join(pca_curve[columns].add_prefix("pca_")).reset_index()
    curve = curve[["k", "stanmf_hungarian", "stanmf_hungarian_sd", "pca_hungarian", "pca_hungarian_sd",
                   "stanmf_amari", "stanmf_amari_sd", "pca_amari", "pca_amari_sd"]]
    at_k = curve.set_index("k").loc[k]

    values: dict[str, Any] = {"k": k, "n_replicates": n_replicates}
    rows: dict[str, tuple[str, str, str]] = {"K": (str(k), str(k), "")}
    for name in ("hungarian", "amari"):
        s = (at_k[f"stanmf_{name}"], at_k[f"stanmf_{name}_sd"])
        q = (at_k[f"pca_{name}"], at_k[f"pca_{name}_sd"])
        values[f"instability_{name}"] = {"staNMF": s, "PCA": q}
        better = sum(curve[f"stanmf_{name}"] < curve[f"pca_{name}"])
        rows[f"instability ({name}, R={n_replicates})"] = (
            _pm(*s), _pm(*q), f"staNMF lower at {better}/{len(curve)} K")

    moran: dict[str, dict[str, np.ndarray]] = {}
    if mask is not None:
        w = spatial_weights(mask, connectivity)
        for variant in ("continuous", "strongest"):
            dn, dp, res = moran_comparison(model.replicates_[k], pca_reps_max[:, :k], mask, variant,
                                           connectivity, w=w)
            moran[variant] = {"staNMF": dn, "PCA": dp}
            values[f"moran_{variant}"] = res
            nan_n, nan_p = int(np.isnan(dn).sum()), int(np.isnan(dp).sum())
            label = f"Moran's I {variant} (R×K)"
            if nan_n or nan_p:
                label += f" [undefined: {nan_n}/{nan_p}]"
            rows[label] = (_pm(res["mean_a"], res["sd_a"]), _pm(res["mean_b"], res["sd_b"]),
                           _test_str(res))

    r_nmf = reconstruction_accuracy(X_measured, nmf.coefficients, nmf.patterns)
    r_pca = reconstruction_accuracy(X_measured, pca.coefficients, pca.patterns, offset=pca.offset)
    r_pca_ref = reconstruction_accuracy(X_measured, pca.coefficients, pca.patterns)
    for label, rp in (("reconstruction r (PCA with mean)", r_pca),
                      ("reconstruction r (PCA w/o mean, as ref. code)", r_pca_ref)):
        sn, sp = summarize(r_nmf), summarize(rp)
        res = compare_distributions(r_nmf, rp)
        wins = float(np.mean(r_nmf > rp))
        values[label] = {"staNMF": sn, "PCA": sp, "test": res, "share_stanmf_better": wins}
        rows[label] = (_pm(sn["mean"], sn["sd"]), _pm(sp["mean"], sp["sd"]),
                       f"staNMF better for {100 * wins:.0f}% of genes; " + _test_str(res))

    ppg_n, ppg_p = patterns_per_gene(nmf.coefficients, threshold), patterns_per_gene(
        pca.coefficients, threshold)
    ppg_n0 = patterns_per_gene(nmf.coefficients, 0.0)
    for label, vals_n, vals_p in ((f"patterns per gene (>{100 * threshold:g}% of total)",
                                   ppg_n, ppg_p), ("patterns per gene (non-zero)", ppg_n0,
                                                   patterns_per_gene(pca.coefficients, 0.0))):
        sn, sp = summarize(vals_n), summarize(vals_p)
        values[label] = {"staNMF": sn, "PCA": sp,
                         "share_ge_k_minus_2": (float(np.mean(vals_n >= k - 2)),
                                                float(np.mean(vals_p >= k - 2)))}
        rows[label] = (_pm(sn["mean"], sn["sd"], 2), _pm(sp["mean"], sp["sd"], 2),
                       f"genes using ≥ K−2: {100 * np.mean(vals_n >= k - 2):.0f}% vs "
                       f"{100 * np.mean(vals_p >= k - 2):.0f}%; single pattern: "
                       f"{int((vals_n == 1).sum())} vs {int((vals_p == 1).sum())}")

    table = pd.DataFrame.from_dict(rows, orient="index", columns=["staNMF", "PCA", "test"])
    table.index.name = "metric"
    per_gene = pd.DataFrame({"r_stanmf": r_nmf, "r_pca": r_pca, "r_pca_no_mean": r_pca_ref,
                             "patterns_stanmf": ppg_n, "patterns_pca": ppg_p})
    return Comparison(table=table, values=values, k=k, instability_curve=curve,
                      pattern_sets={"staNMF": nmf, "PCA": pca}, per_gene=per_gene, moran=moran)
