"""Result files of a run, in standard formats (see the README's "Outputs" table).

Reads the :class:`~osnmf.pipeline.RunState` (typed stage results, :mod:`osnmf.results`); computes
nothing new.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from osnmf.atomic import atomic_path, check_free_space, save_npz, write_text
from osnmf.expression import to_volumes
from osnmf.io.anndata_io import h5ad_bytes
from osnmf.results import (
    MORAN_HEADLINES,
    MORAN_UNDEFINED,
    RECON_HEADLINES,
    defined_stats,
    headline_metrics,
    k_range_edge,
    k_selection,
    planted_truth,
    stability_table,
)
from osnmf.run.layout import PATTERNS, SUMMARY, pattern_ids

SEPARATOR = " · "


def pattern_names(k: int, links: pd.DataFrame | None = None) -> list[str]:
    """Names that say what each pattern is: ``PP3 · Isocortex`` (id + its best anatomical link).

    ``links`` is the linking table (links.csv: ``pattern_index``, ``acronyms``, ``r``); a pattern's
    link is its row of highest r (acronyms of a pair or triple joined by ``+``). A pattern without
    a finite r keeps its bare id.
    """
    names = pattern_ids(k)
    if links is None or links.empty:
        return names
    r = pd.to_numeric(links["r"], errors="coerce")
    ok = links[np.isfinite(r)].assign(r=r[np.isfinite(r)])
    for i in range(k):
        rows = ok[ok["pattern_index"].astype(int) == i]
        if len(rows):
            names[i] += SEPARATOR + str(rows.loc[rows["r"].idxmax(), "acronyms"])
    return names


def ascii_name(name: str) -> str:
    """``PP3 · Isocortex`` → ``PP3 - Isocortex`` for ASCII-only headers (NRRD)."""
    return name.replace(SEPARATOR, " - ").encode("ascii", "replace").decode()


def name_links(state) -> pd.DataFrame:
    """Each pattern's best union of readable regions (coarse and medium grey-matter regions, no
    fibre tracts or ventricles; :func:`~osnmf.spatial.linking.readable_regions`), as the linking
    stage found it: the links its name is made of and links.csv lists, one row per pattern
    (``pattern_index``, ``acronyms``, ``names``, ``r``)."""
    return state.linking.links


def run_pattern_names(state) -> list[str]:
    """:func:`pattern_names` of a finished run from its readable links (:func:`name_links`)."""
    return pattern_names(int(state.sweep.k), name_links(state))


def _with_names(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """``frame`` with a ``pattern_name`` column after ``pattern_index`` (tables keyed by index)."""
    frame = frame.copy()
    frame.insert(int(frame.columns.get_loc("pattern_index")) + 1, "pattern_name",
                 [names[int(i)] for i in frame["pattern_index"]])
    return frame


def _csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def headline(state) -> dict:
    """The numbers a reader wants first (also shown at the top of the report)."""
    sw, mt, imp, lk = state.sweep, state.metrics, state.impute, state.linking
    k = sw.k
    settings = state.config.settings()
    head = headline_metrics(mt, settings)
    argmin = int(sw.k_gamma_argmin)
    table = stability_table(sw, state.baselines).set_index("k")
    link = lk.link_summary.set_index("pattern_set")
    return {
        "k_selected": k,
        "instability_hungarian": float(table.loc[k, "hungarian"]),
        "instability_hungarian_sd": float(table.loc[k, "hungarian_sd"]),
        "instability_amari": float(table.loc[k, "amari"]),
        # after a compressed sweep: γ of exact refits of a replicate subset (osnmf.factorize.choose_k.certify)
        "instability_hungarian_exact": (float(table.loc[k, "hungarian_exact"])
                                        if "hungarian_exact" in table and np.isfinite(table.loc[k, "hungarian_exact"])
                                        else None),
        "pca_instability_hungarian": float(table.loc[k, "pca_hungarian"]) if "pca_hungarian" in table else None,
        "k_selection": k_selection(sw, settings["k_rule"]),
        "k_gamma_argmin": argmin,
        "k_range_edge_warning": k_range_edge(sw),  # None unless K is the smallest or largest K swept
        "k_min_check": k_min_check_block(sw),
        # the headline numbers follow the recipe (summary["recipe"]); both variants are kept below
        "moran_i_headline": head["moran_label"],
        **_moran_headline(head["moran_nmf"], "stanmf", settings["moran_headline"]),
        **_moran_headline(head["moran_pca"], "pca", settings["moran_headline"]),
        "moran_cliffs_delta": head["moran_cliffs_delta"],
        "moran_p_mannwhitney": head["moran_p_mannwhitney"],
        "moran_i_by_variant": {name: _mean_sd_pair(getattr(mt, f[1]), getattr(mt, f[2]))
                               for name, f in MORAN_HEADLINES.items()},
        "reconstruction_headline": head["recon_label"],
        "reconstruction_stanmf_mean": defined_stats(head["recon_nmf"])["mean"],
        "reconstruction_stanmf_sd": defined_stats(head["recon_nmf"])["sd"],
        "reconstruction_pca_mean": defined_stats(head["recon_pca"])["mean"],
        "reconstruction_pca_sd": defined_stats(head["recon_pca"])["sd"],
        "reconstruction_by_variant": {
            **{name: _mean_sd_pair(getattr(mt, f[1]), getattr(mt, f[2])) for name, f in RECON_HEADLINES.items()},
            "measured_pca_without_mean": _mean_sd(mt.recon_pca_measured_no_mean)},
        "patterns_per_gene_mean": float(np.mean(mt.patterns_per_gene)),  # patterns above 1% of a gene's total
        # the paper's Fig. 1E count
        "patterns_per_gene_nonzero": nonzero_pattern_counts(mt.patterns_per_gene_nonzero, k),
        "link_best_r_mean": {name: float(row["mean_best"]) for name, row in link.iterrows()},
        "link_best_r_sd": {name: float(row["sd_best"]) for name, row in link.iterrows()},
        "link_other_r_mean": float(link.loc["staNMF", "mean_offdiag"]),
        "link_other_r_sd": float(link.loc["staNMF", "sd_offdiag"]),
        "link_all_other_combinations_r_mean": float(link.loc["staNMF", "mean_other"]),
        "isocortex_auc": lk.region_auc,
        "isocortex_random_median_auc": lk.region_random_median_auc,
        "isocortex_p": lk.region_p,
        "isocortex_n_linked": int(lk.region_n_linked),
        "isocortex_model_patterns": [pattern_ids(sw.k)[int(i)] for i in lk.region_model],
        "isocortex_random_size": int(len(lk.region_model)),
        "isocortex_n_random": int(lk.region_n_random),
        "isocortex_n_distinct_random": int(lk.region_n_distinct),
        "holdout_points": imp.holdout_points,
        "holdout_mean_error": imp.holdout_mean_error,  # mean of measured − imputed, the paper's "mean error"
        "holdout_mae": imp.holdout_mae,
        "holdout_r": imp.holdout_r,
        "holdout_mae_truth": None if np.isnan(imp.holdout_mae_truth) else imp.holdout_mae_truth,
        "holdout_r_truth": None if np.isnan(imp.holdout_r_truth) else imp.holdout_r_truth,
        **({"holdout_truth_reason": "real data: there is no noiseless truth to compare with"}
           if np.isnan(imp.holdout_r_truth) else {}),
        "n_experiments_used": int(imp.X.shape[0]),
        "n_experiments_dropped": int(imp.dropped.size),
        "n_support_voxels": int(imp.X.shape[1]),
        "missing_fraction_support_before_imputation": imp.missing_fraction,
    }


def _moran_headline(values, method: str, variant: str) -> dict:
    """``moran_i_<method>_mean`` / ``_sd`` over the defined (finite) values, their count left out and,
    when some are, why (:data:`osnmf.results.MORAN_UNDEFINED`)."""
    stats = defined_stats(values)
    block = {f"moran_i_{method}_mean": stats["mean"], f"moran_i_{method}_sd": stats["sd"],
             f"moran_i_{method}_n": stats["n"], f"moran_i_{method}_n_undefined": stats["n_undefined"]}
    if stats["n_undefined"]:
        block[f"moran_i_{method}_undefined_reason"] = MORAN_UNDEFINED[variant]
    return block


def _mean_sd(values) -> dict:
    """Mean and SD of the finite values, and how many were left out (None where none is finite)."""
    stats = defined_stats(values)
    return {"mean": stats["mean"], "sd": stats["sd"], "n_undefined": stats["n_undefined"]}


def _mean_sd_pair(nmf, pca) -> dict:
    return {"staNMF": _mean_sd(nmf), "PCA": _mean_sd(pca)}


def nonzero_pattern_counts(counts: np.ndarray, k: int) -> dict:
    """Of the patterns with a non-zero coefficient per gene (the paper's Fig. 1E count, ``(n,)``): the
    mean, and the shares of genes using ≥ 9 patterns, a single one, and all ``k`` (paper at K = 11:
    58 %, < 0.1 %, 10.1 %)."""
    return {"mean": float(counts.mean()), "share_at_least_9": float((counts >= 9).mean()),
            "share_single": float((counts == 1).mean()), "share_all": float((counts == k).mean())}


def k_min_check_block(sweep) -> dict | None:
    """After a chained (fast) sweep: γ of a replicate subset from the sweep's k_min and from a later
    start, per K, and the largest |Δγ| (None after an unchained sweep, whose γ has no k_min)."""
    table = sweep.k_min_check
    if table is None or len(table) == 0:
        return None
    return {"k_min": int(table["k_min"].iloc[0]), "k_min_alt": int(table["k_min_alt"].iloc[0]),
            "n_replicates": int(table["n_replicates"].iloc[0]), "max_abs_diff": float(table["abs_diff"].max()),
            "by_k": table[["k", "hungarian_subset", "hungarian_subset_alt_start", "abs_diff"]].to_dict("records")}


def recipe_block(cfg) -> dict:
    """The recipe, every setting it expanded to, and the explicit settings that override it."""
    return {"name": cfg.recipe, "settings": cfg.settings(), "overrides": cfg.recipe_overrides()}


def hemispheres_block(state) -> dict:
    """Hemisphere coverage, mirroring and the left–right symmetry r of each pattern."""
    from osnmf.preprocess.hemispheres import hemisphere_summary

    block = hemisphere_summary(state.impute, state.config.hemispheres)
    block["dropped_one_hemisphere"] = int(getattr(state, "dropped_one_hemisphere", 0))
    block["pattern_symmetry_r"] = [float(v) for v in state.metrics.symmetry_nmf]
    return block


def write_outputs(state, summary_only: bool = False) -> dict:
    """Write every result file into ``state.out``; returns the summary (also ``summary.json``)."""
    out: Path = state.out
    cfg = state.config
    if not summary_only:
        _write_result_files(state, out)
    from osnmf._version import __version__

    summary = {
        "osnmf_version": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "recipe": recipe_block(cfg),
        "parameters": cfg.to_dict(),
        "data": {"source": cfg.data or "synthetic atlas (make_phantom)", "hash": state.data_key,
                 **state.expr.summary()},
        "stage_keys": state.keys,
        "timings_s": state.timings,
        "reused_from_cache": state.cached,
        **headline(state),
        "planted_truth": planted_truth(state.metrics, state.sweep.k),
        "hemispheres": hemispheres_block(state),
    }
    summary = strict_json_values(json.loads(json.dumps(summary, default=_jsonable)))
    write_text(out / SUMMARY, json.dumps(summary, indent=2, allow_nan=False))
    return summary


NOT_FINITE = "the computed value was not a finite number (NaN or infinite): it does not exist for this run"


def strict_json_values(summary: dict) -> dict:
    """``summary`` with every NaN / ±Infinity replaced by null, so that strict JSON parsers read it;
    each replaced value's path (``a.b[2]``) is listed under ``null_values`` with the reason."""
    reasons: dict[str, str] = {}

    def clean(value, path: str):
        if isinstance(value, float) and not np.isfinite(value):
            reasons[path] = NOT_FINITE
            return None
        if isinstance(value, dict):
            return {k: clean(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    cleaned = clean(summary, "")
    if reasons:
        cleaned["null_values"] = {**cleaned.get("null_values", {}), **reasons}
    return cleaned


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (range, Path)):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _write_result_files(state, out: Path) -> None:
    from osnmf.formats.nrrd_io import write_nrrd
    from osnmf.interpret.networks import write_network_files

    expr, imp, sw, lk, mk = state.expr, state.impute, state.sweep, state.linking, state.markers
    atlas = expr.atlas
    ids, names = pattern_ids(sw.k), run_pattern_names(state)
    volumes = to_volumes(sw.components, imp.support).astype(np.float32)
    genes, experiment_ids = expr.genes[imp.kept], expr.experiment_ids[imp.kept]

    _csv(stability_table(sw, state.baselines), out / "stability.csv")
    save_npz(out / PATTERNS, patterns=volumes, coefficients=sw.coefficients, genes=genes,
             experiment_ids=experiment_ids, pattern_names=np.array(names), spacing_um=np.array(atlas.spacing_um),
             support=imp.support)
    for pid, name, volume in zip(ids, names, volumes, strict=True):
        write_nrrd(out / "patterns" / f"{pid}.nrrd", volume, spacing_um=atlas.spacing_um,
                   description=ascii_name(f"osnmf principal pattern {name}"))
    coef = pd.DataFrame(sw.coefficients, columns=names)
    coef.insert(0, "gene_symbol", genes)
    coef.insert(0, "experiment_id", experiment_ids)
    _csv(coef, out / "coefficients.csv")
    markers = mk.markers.copy()
    markers.insert(int(markers.columns.get_loc("pattern")) + 1, "pattern_name",
                   [names[int(p)] for p in markers["pattern"]])
    _csv(markers, out / "markers.csv")
    write_network_files(mk.graphs(), mk.edges, mk.hubs, out / "networks")
    _csv(_with_names(lk.links, names), out / "links.csv")
    _csv(_with_names(lk.links_top, names), out / "links_top.csv")
    _csv(lk.link_summary, out / "link_summary.csv")
    _csv(_with_names(lk.correlations, names), out / "region_correlations.csv")
    write_text(out / "ontology.json", lk.ontology_json)
    write_text(out / "ontology.nwk", lk.ontology_newick)
    _write_h5ad(state, out / "results.h5ad", names)


def _write_h5ad(state, path: Path, names: list[str]) -> None:
    """AnnData: support voxels × experiments (imputed X), patterns in obsm, coefficients in varm; each
    voxel named by its grid indices (``AP12_DV20_ML30``) with its annotated region in obs; K, its
    instability and the K range in uns."""
    import anndata

    imp, sw, expr = state.impute, state.sweep, state.expr
    atlas = expr.atlas
    coords = np.argwhere(imp.support)
    ids = expr.experiment_ids[imp.kept]
    region = atlas.annotation[imp.support].astype(np.int64)  # C order, like the columns of X
    acronyms = {int(s): atlas.acronym(int(s)) if int(s) in atlas.ontology.index else "" for s in np.unique(region)}
    obs = pd.DataFrame({"region_id": region, "region_acronym": [acronyms[int(s)] for s in region]},
                       index=[f"AP{a}_DV{d}_ML{m}" for a, d, m in coords])
    adata = anndata.AnnData(
        X=np.ascontiguousarray(imp.X.T),
        obs=obs,
        var=pd.DataFrame({"gene_symbol": expr.genes[imp.kept]}, index=ids),
    )
    stab = sw.instability.set_index("k")
    adata.uns["k_selected"] = int(sw.k)
    adata.uns["k_range"] = np.array([int(v) for v in sw.instability["k"]], dtype=np.int64)
    adata.uns["instability_hungarian"] = sw.instability["hungarian"].to_numpy(dtype=np.float64)  # per K of k_range
    adata.uns["instability_at_k"] = {"hungarian": float(stab.loc[sw.k, "hungarian"]),
                                     "hungarian_sd": float(stab.loc[sw.k, "hungarian_sd"])}
    adata.obsm["spatial"] = coords.astype(np.int64)
    adata.obsm["patterns"] = np.ascontiguousarray(sw.components.T)
    adata.varm["coefficients"] = sw.coefficients
    adata.uns["pattern_names"] = np.array(names)
    adata.uns["spacing_um"] = np.array(expr.atlas.spacing_um)
    check_free_space(path, h5ad_bytes(adata))
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression="gzip")
