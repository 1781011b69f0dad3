"""Figures and ``report.html`` for a finished run: reads the run state, draws, writes.

Every figure is saved as PNG and SVG under ``<out>/figures``; the report embeds the PNGs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from osnmf.expression import to_volumes
from osnmf.plotting import save_figure
from osnmf.plotting.anatomy import plot_bubble, plot_matrix
from osnmf.plotting.genes import plot_marker_heatmap, plot_marker_images, plot_networks, plot_tree
from osnmf.plotting.metrics import plot_moran_box, plot_patterns_per_gene, plot_reconstruction_scatter
from osnmf.plotting.patterns import plot_coronal_montage, plot_pattern_projections
from osnmf.plotting.stability import plot_instability, plot_selection_panel
from osnmf.report.atlas_view import atlas_view_section
from osnmf.report.files import name_links, pattern_names
from osnmf.report.html import Section, write_report
from osnmf.results import headline_metrics, planted_truth, stability_table
from osnmf.run.layout import REPORT, pattern_ids


def _selection_panel(state, summary: dict, k: int, section: Section, save) -> None:
    """Add the K-selection panel (figure, rule table, the rule that chose K) to ``section``."""
    from osnmf.factorize.choose_k.criteria import RULE_DESCRIPTIONS

    panel, ksel = state.sweep.selection, summary["k_selection"]
    rule = ksel["rule"]
    section.paragraphs.append(
        f"Chosen rule: {rule} — {RULE_DESCRIPTIONS[rule]} It selects K = {k}. The other criteria of the "
        "panel are shown beside it, not used: out-of-bag bi-cross-validation error of each bootstrap replicate "
        "(the genes it did not draw, projected onto its patterns from half of the voxels, predicting the other "
        "half), the cophenetic correlation and dispersion of the replicates' consensus voxel parcellation, and "
        "the in-sample reconstruction error. docs/stanmf.md has the planted-K study behind the choice.")
    section.figures.append((save(plot_selection_panel(panel, k), "k_selection_panel"),
                            "K-selection panel: γ ± SE (left), out-of-bag and in-sample relative error ± SE "
                            "(middle), consensus cophenetic correlation and dispersion (right)"))
    rules = pd.DataFrame([{"rule": r + (" (chosen)" if r == rule else ""), "K": kk,
                           "definition": RULE_DESCRIPTIONS[r]} for r, kk in ksel["k_by_rule"].items()])
    section.tables.append((rules, "The K each rule of the panel selects"))


class _Figures:
    def __init__(self, folder: Path):
        self.folder = folder

    def __call__(self, fig, name: str) -> Path:
        return save_figure(fig, self.folder / name)[0]


def _recipe_text(summary: dict) -> str:
    """One paragraph: the recipe, what it expanded to, overrides, and a K rule other than the γ argmin."""
    recipe = summary["recipe"]
    settings = ", ".join(f"{k} = {v}" for k, v in recipe["settings"].items())
    text = (f"Recipe: {recipe['name']} "
            + ("(the seed paper's method)" if recipe["name"] == "paper" and not recipe["overrides"]
               else "(osnmf's fast recipe, not the paper's method)" if recipe["name"] == "fast" else "")
            + f" — {settings}.")
    if recipe["overrides"]:
        text += " Set explicitly: " + ", ".join(f"{k} = {v}" for k, v in recipe["overrides"].items()) + "."
    if summary.get("k_range_edge_warning"):
        text += f" Warning: {summary['k_range_edge_warning']}."
    if summary["k_selected"] != summary["k_gamma_argmin"]:
        text += (f" Warning: K = {summary['k_selected']} was chosen by the rule {summary['k_selection']['rule']}; "
                 f"the smallest instability γ is at K = {summary['k_gamma_argmin']}.")
    return text


def _fmt(mean: float | None, sd: float | None, n_undefined: int = 0) -> str:
    """``mean ± sd`` to the SD's first significant digit (at least two decimals): 0.998 ± 0.008;
    "undefined" for a mean that does not exist (None or NaN), and how many values were left out."""
    if mean is None or not np.isfinite(mean):
        return "undefined"
    digits = 2
    if sd is not None and np.isfinite(sd) and sd > 0:
        digits = max(2, -int(np.floor(np.log10(sd))))
    text = f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None and np.isfinite(sd) else "")
    return text + (f" ({n_undefined} undefined left out)" if n_undefined else "")


def _n(value, spec: str) -> str:
    """``value`` formatted with ``spec``; "undefined" for a value that does not exist (None or NaN)."""
    if value is None or not np.isfinite(value):
        return "undefined"
    return format(value, spec)


def _mean_sd_of(block: dict) -> tuple:
    """``(mean, sd, n_undefined)`` of a summary ``{"mean", "sd", "n_undefined"}`` block."""
    return block["mean"], block["sd"], block.get("n_undefined", 0)


def _moran_fmt(summary: dict, method: str) -> str:
    """The headline Moran's I of ``method`` (``stanmf`` / ``pca``) as shown in the overview and table."""
    return _fmt(summary[f"moran_i_{method}_mean"], summary[f"moran_i_{method}_sd"],
                summary.get(f"moran_i_{method}_n_undefined", 0))


def _undefined_note(summary: dict) -> str:
    """Why some Moran's I values were left out (empty when none was)."""
    notes = [f"{name}: {summary[f'moran_i_{m}_n_undefined']} of "
             f"{summary[f'moran_i_{m}_n'] + summary[f'moran_i_{m}_n_undefined']} values undefined — "
             f"{summary[f'moran_i_{m}_undefined_reason']}"
             for m, name in (("stanmf", "staNMF"), ("pca", "PCA")) if summary.get(f"moran_i_{m}_n_undefined")]
    return (" " + "; ".join(notes) + ".") if notes else ""


def build_report(state, summary: dict) -> Path:
    """Draw every figure and write ``<out>/report.html``; returns its path."""
    out: Path = state.out
    save = _Figures(out / "figures")
    expr = state.expr
    imp, sw, mt, lk, mk = state.impute, state.sweep, state.metrics, state.linking, state.markers
    atlas, support = expr.atlas, imp.support
    k = sw.k
    named_by = name_links(state)  # each pattern's best union of readable (coarse/medium grey-matter) regions
    names = pattern_names(k, named_by)  # "PP3 · Isocortex": id + that link, everywhere below
    ids = pattern_ids(k)
    brain = atlas.brain_mask
    volumes = to_volumes(sw.components, support)
    sections = []

    # ---- overview -------------------------------------------------------------------------
    data = summary["data"]
    overview = Section("Overview", paragraphs=[
        _recipe_text(summary),
        f"Data: {data['source']} — {data['n_experiments']} experiments of {data['n_genes']} genes on a "
        f"{' × '.join(map(str, data['grid_shape']))} grid ({data['n_brain_voxels']} brain voxels, "
        f"{100 * data['missing_fraction']:.1f}% of in-brain values missing).",
        f"staNMF selected K = {k} principal patterns (instability γ = {_n(summary['instability_hungarian'], '.4f')} "
        f"± {_n(summary['instability_hungarian_sd'], '.4f')}, Hungarian). PCA patterns at the same K: "
        f"γ = {_n(summary['pca_instability_hungarian'], '.4f')}.",
        f"Spatial coherence ({summary['moran_i_headline']}, over {mt.moran_boot_nmf.shape[0]} bootstrap "
        f"replicates): staNMF "
        f"{_moran_fmt(summary, 'stanmf')} vs PCA {_moran_fmt(summary, 'pca')} (Cliff's δ = "
        f"{_n(summary['moran_cliffs_delta'], '.2f')}, Mann–Whitney p = {_n(summary['moran_p_mannwhitney'], '.2g')})."
        + _undefined_note(summary),
        f"Reconstruction accuracy ({summary['reconstruction_headline']}): staNMF "
        f"{_fmt(summary['reconstruction_stanmf_mean'], summary['reconstruction_stanmf_sd'])}, PCA "
        f"{_fmt(summary['reconstruction_pca_mean'], summary['reconstruction_pca_sd'])}.",
        f"Best anatomical links (single regions, contiguous pairs and triples): mean best r = "
        f"{_n(summary['link_best_r_mean']['staNMF'], '.2f')} ± {_n(summary['link_best_r_sd']['staNMF'], '.2f')}; "
        "each pattern "
        f"against the other patterns' best unions: {_n(summary['link_other_r_mean'], '.2f')} ± "
        f"{_n(summary['link_other_r_sd'], '.2f')}; mean over every other combination searched: "
        f"{_n(summary['link_all_other_combinations_r_mean'], '.2f')}.",
    ])
    truth = planted_truth(mt, k)
    if truth is not None:
        overview.paragraphs.append(
            f"Synthetic atlas with {truth['planted_k']} planted patterns: selected K = {truth['selected_k']}; "
            f"matched Pearson r of the planted patterns (Hungarian): mean {truth['matched_r_mean']:.3f}, "
            f"min {min(truth['matched_r']):.3f}."
        )
    sections.append(overview)

    # ---- preprocessing --------------------------------------------------------------------
    prep = Section("Preprocessing", paragraphs=[
        f"kNN imputation (k = {state.config.n_neighbors}, inverse-distance weights) inside the support of "
        f"{imp.X.shape[1]} voxels (brain voxels observed in more than "
        f"{100 * (1 - state.config.support_max_missing):.0f}% of experiments); "
        f"{imp.dropped.size} experiment(s) without any observed voxel were dropped.",
        f"Hold-out check: {imp.holdout_points} observed voxels hidden and imputed; mean error (measured − "
        f"imputed, the paper's statistic) {imp.holdout_mean_error:+.4f}, mean absolute error "
        f"{imp.holdout_mae:.4f}, Pearson r {imp.holdout_r:.3f} between measured and imputed"
        + (f"; against the noiseless truth MAE {imp.holdout_mae_truth:.4f}, r {imp.holdout_r_truth:.3f}."
           if np.isfinite(imp.holdout_mae_truth) else "."),
    ])
    prep.paragraphs.append(_hemisphere_text(summary.get("hemispheres")))
    sections.append(prep)

    # ---- stability ------------------------------------------------------------------------
    stab = stability_table(sw, state.baselines)
    pca_curve = stab[["k"] + [c for c in stab.columns if c.startswith("pca_")]].rename(
        columns=lambda c: c.removeprefix("pca_"))
    stability = Section(
        "Stability and the choice of K",
        paragraphs=["γ(K) is the mean dissimilarity between the pattern sets of all pairs of bootstrap replicates; "
                    "the selected K follows the chosen rule named below."] + _certified_note(stab)
        + _k_min_note(summary.get("k_min_check")),
        figures=[(save(plot_instability(stab, k, pca_curve.dropna()), "instability"),
                  "Instability of staNMF (solid) and PCA (dashed) patterns, mean ± SD over replicate pairs")],
        tables=[(stab[[c for c in stab.columns if not c.endswith(("_se", "n_pairs"))]],
                 "Instability per K (stability.csv also has standard errors)")],
    )
    _selection_panel(state, summary, k, stability, save)
    sections.append(stability)

    # ---- patterns -------------------------------------------------------------------------
    figs = [(save(plot_pattern_projections(volumes, brain, names, atlas.spacing_um), "patterns_projections"),
             "Principal patterns: mean projections along each axis")]
    for i, name in enumerate(names):
        figs.append((save(plot_coronal_montage(volumes[i], brain, f"{name}: coronal sections",
                                               spacing_um=atlas.spacing_um), f"montage_{ids[i]}"),
                     f"{name}: coronal sections"))
    sections.append(Section("Principal patterns", paragraphs=[
        "Each pattern is saved as NRRD (patterns/PPk.nrrd, 200 µm spacing, RAS-consistent metadata) and in "
        "patterns.npz; coefficients per experiment are in coefficients.csv."], figures=figs))

    # ---- coherence and reconstruction ---------------------------------------------------------
    variants = summary["reconstruction_by_variant"]
    head = headline_metrics(mt, state.config.settings())
    compare_note = (f"Moran's I: {summary['moran_i_headline']}; reconstruction: {summary['reconstruction_headline']}. "
                    "PCA reconstructions include the voxel means PCA subtracts; without them (the reference code's "
                    "choice) PCA's r over the measured voxels is "
                    f"{_fmt(*_mean_sd_of(variants['measured_pca_without_mean']))}. "
                    "Every variant is in summary.json (moran_i_by_variant, reconstruction_by_variant). Patterns per "
                    "gene count the patterns holding more than 1% of a gene's total coefficient.")
    compare = pd.DataFrame([
        {"pattern set": "staNMF", "instability": summary["instability_hungarian"],
         "Moran's I": _moran_fmt(summary, "stanmf"),
         "reconstruction r": _fmt(summary["reconstruction_stanmf_mean"], summary["reconstruction_stanmf_sd"]),
         "patterns per gene": f"{np.mean(mt.patterns_per_gene):.1f}"},
        {"pattern set": "PCA", "instability": summary["pca_instability_hungarian"],
         "Moran's I": _moran_fmt(summary, "pca"),
         "reconstruction r": _fmt(summary["reconstruction_pca_mean"], summary["reconstruction_pca_sd"]),
         "patterns per gene": "—"},
    ])
    moran_max = mt.moran_i_max  # the largest I possible: above 1 (see osnmf.spatial.moran.morans_i_max)
    moran = pd.DataFrame({"pattern": names, "Moran's I": [f"{v:.3f}" for v in mt.moran_nmf],
                          "Moran's I (strongest-pattern map)": [f"{v:.3f}" for v in mt.moran_strongest_nmf]})
    sections.append(Section(
        "Spatial coherence and reconstruction",
        paragraphs=[compare_note],
        tables=[(compare, f"staNMF vs PCA at K = {k} (headline statistics of the {summary['recipe']['name']} recipe)"),
                (moran, f"Moran's I per pattern (binary face-neighbour weights: on this brain graph I can reach "
                        f"{moran_max:.3f}, above 1, because voxels at the surface have fewer neighbours)")],
        figures=[
            (save(plot_moran_box({"staNMF": head["moran_nmf"], "PCA": head["moran_pca"]}, upper=moran_max),
                  "moran_box"),
             f"{summary['moran_i_headline']}: every pattern in every bootstrap replicate"),
            (save(plot_reconstruction_scatter(head["recon_nmf"], head["recon_pca"]), "reconstruction_scatter"),
             f"Reconstruction accuracy, {summary['reconstruction_headline']}"),
            (save(plot_patterns_per_gene(mt.patterns_per_gene, k), "patterns_per_gene"),
             "Number of patterns each gene uses (coefficient above 1% of the gene's total)"),
        ],
    ))

    # ---- anatomy --------------------------------------------------------------------------
    corr = lk.correlations
    medium = [int(s) for s in atlas.medium_ids if int(s) in set(atlas.region_ids.tolist())]
    medium = sorted(medium, key=lambda s: atlas.ontology.at[s, "graph_order"])
    pivot = corr[corr["region_id"].astype(int).isin(medium)].pivot(index="pattern_index", columns="region_id",
                                                                    values="r")
    pivot = pivot.reindex(columns=medium).to_numpy(dtype=float)
    colors = [atlas.ontology.at[s, "color"] for s in medium]
    best, link_summary = lk.links, lk.link_summary
    sections.append(Section(
        "Linking patterns to the anatomy",
        paragraphs=[
            "For each pattern, every single region, contiguous pair and contiguous triple of the ontology was "
            "scored by the Pearson r between the pattern and the union mask (exhaustive search), a union only "
            f"when each member holds at least {state.config.link_min_share:.0%} of its voxels (no big region "
            "plus a tiny nucleus); a pattern's link is the smallest set within r "
            f"{state.config.link_tie_tolerance:g} of its best of any size.",
            _isocortex_text(summary),
        ],
        tables=[(_links_table(best, names),
                 "Each pattern's link: its best union of coarse- and medium-level grey-matter regions, the "
                 "regions its name is made of (links.csv; the best combinations over every region of the "
                 "ontology, per size, are in links_top.csv)"),
                (link_summary.drop(columns="n_combinations", errors="ignore"),
                 "Mean best r per pattern set (all pattern sets searched the same way; the number of combinations "
                 "of each size is in link_summary.csv)")],
        figures=[
            (save(plot_bubble(pivot, names, [atlas.acronym(s) for s in medium], colors), "bubble"),
             "Pattern × medium-region Pearson r (bubble size ∝ r), regions in ontology order"),
            (save(plot_matrix(lk.link_matrix, names, [f"{names[j]} best" for j in range(k)],
                              "pattern × best combination"), "best_combination_matrix"),
             "Correlation of each pattern (rows) with every pattern's best region union (columns)"),
            (save(plot_tree(lk.ontology_linkage, _tree_labels(named_by, names)), "ontology_tree"),
             "Gene-expression-defined ontology: patterns grouped by spatial similarity, labelled with their links"),
        ],
    ))

    # ---- markers and networks -----------------------------------------------------------------
    markers = mk.markers
    assigned = markers[markers["assigned"].astype(str) == "True"] if "assigned" in markers else markers
    top = assigned[assigned["marker_rank"].astype(int).between(1, 3)].sort_values(["pattern", "marker_rank"])
    heat_rows = top.drop_duplicates("experiment")
    imp_matrix = np.array([
        markers[markers["experiment"] == e].sort_values("pattern")["importance"].to_numpy(dtype=float)
        for e in heat_rows["experiment"]
    ]) if len(heat_rows) else np.zeros((0, k))
    X_vol = imp.X
    images, titles = [], []
    for p in range(k):
        rows = top[top["pattern"].astype(int) == p]["experiment"].astype(int).tolist()[:3]
        images.append(to_volumes(X_vol[rows], support))  # fewer than 3 markers: blank tiles, no repeats
        titles.append(_marker_titles(top, rows, expr.experiment_ids[imp.kept]))
    graphs = mk.graphs()
    graph_names = [names[int(g.graph["pattern"])] for g in graphs]
    net_figs = [(save(plot_networks(graphs, graph_names), "networks"),
                 "Spatial gene coexpression network of each pattern: its top-importance genes, edges for the top 5% "
                 "of their pairwise correlations (reconstructed images); hubs in red")] if graphs else []
    hubs = _named_patterns(mk.hubs, names)
    sections.append(Section(
        "Marker genes",
        paragraphs=["Importance of a gene for a pattern is its coefficient divided by the sum of its coefficients; "
                    "each gene is assigned to its strongest pattern (markers.csv)."],
        tables=[(_named_patterns(top[["pattern", "marker_rank", "gene", "importance"]], names),
                 "Top 3 marker genes per pattern")],
        figures=[
            (save(plot_marker_heatmap(imp_matrix, heat_rows["gene"].astype(str).tolist(), names), "marker_heatmap"),
             "Importance of the top markers on every pattern"),
            (save(plot_marker_images(images, brain, titles, names, atlas.spacing_um), "marker_images"),
             "Top 3 marker genes per pattern (sagittal mean projections of the preprocessed data)"),
        ],
    ))
    sections.append(Section("Spatial gene coexpression networks", tables=[(hubs, "Hub genes per network")],
                            figures=net_figs))
    sections.append(atlas_view_section(state, names))
    params = _parameters(state)
    return write_report(state.out / REPORT, "osnmf report", sections, params)


def _isocortex_text(summary: dict) -> str:
    """The Isocortex prediction test in one sentence (model patterns, random models, AUCs, p)."""
    n_linked, model = summary["isocortex_n_linked"], summary["isocortex_model_patterns"]
    topped = len(model) - n_linked
    return (f"Isocortex prediction (logistic regression on the patterns, in-sample ROC AUC, as in the paper) from "
            f"{', '.join(model)}: {n_linked} linked to the Isocortex"
            + (f", topped up with the {topped} next most correlated with it" if topped > 0 else "")
            + f": AUC {_n(summary['isocortex_auc'], '.3f')}; {summary['isocortex_n_random']} models on random sets "
            f"of {summary['isocortex_random_size']} patterns ({summary['isocortex_n_distinct_random']} distinct sets; "
            f"the paper: 1,000 random triples): median AUC {_n(summary['isocortex_random_median_auc'], '.3f')}, "
            f"empirical p = {_n(summary['isocortex_p'], '.3g')} (random models at least as good, plus one, over the "
            "models plus one).")


def _hemisphere_text(block: dict | None) -> str:
    """One paragraph on hemisphere coverage, mirroring and the patterns' left–right symmetry."""
    if not block:
        return ""
    text = (f"Hemispheres (midline at ML voxel {block['midline_ml_voxel']:g}): {block['bilateral']} experiment(s) "
            f"cover both sides, {block['left_only']} the left only, {block['right_only']} the right only "
            f"(--hemispheres {block['mode']}). ")
    if block["mirrored_voxels"]:
        check = block["mirror_check"]
        text += (f"{block['mirrored_voxels']} missing voxels of {block['mirrored_experiments']} one-hemisphere "
                 "experiment(s) were filled from the mirror voxel across the midline before kNN imputation; they "
                 "are left out of the hold-out check above. ")
        if check["pearson_r"] is not None:
            text += (f"Mirror check on bilateral experiments: a mirror voxel predicts the measured one with "
                     f"r = {check['pearson_r']:.3f}, MAE {check['mae']:.4f} ({check['n_points']} voxels). ")
    elif block["left_only"] + block["right_only"]:
        text += "No voxels were mirrored. "
    sym = block.get("pattern_symmetry_r") or []
    if sym:
        text += (f"Left–right symmetry of the patterns (Pearson r with the mirror image): min {np.nanmin(sym):.3f}, "
                 f"mean {np.nanmean(sym):.3f}.")
    return text


def _named_patterns(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Replace 0-based pattern indices by the pattern names (``PP1 · Isocortex`` …)."""
    frame = frame.copy()
    frame["pattern"] = [names[int(p)] for p in frame["pattern"]]
    return frame


def _links_table(best: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """links.csv as a reader wants it: pattern name, size, regions (acronyms, names, levels), r."""
    table = best.assign(pattern=[names[int(i)] for i in best["pattern_index"]])
    return table[["pattern", "size", "acronyms", "names", "levels", "r"]]


def _marker_titles(top: pd.DataFrame, rows: list[int], experiment_ids) -> list[str]:
    """Tile titles of one pattern's marker images: the gene, and its experiment id when the gene repeats."""
    genes = [str(top.set_index("experiment").loc[r, "gene"]) for r in rows]
    return [f"{g} (experiment {experiment_ids[r]})" if genes.count(g) > 1 else g
            for g, r in zip(genes, rows, strict=True)]


def _parameters(state) -> dict:
    """The run's settings for the report: no synthetic-atlas (phantom_*) settings for real data, one row
    per stage timing."""
    settings = state.config.to_dict()
    if settings.get("data"):
        settings = {key: value for key, value in settings.items() if not key.startswith("phantom_")}
    return {**settings, **{f"time: {stage} (s)": seconds for stage, seconds in state.timings.items()}}


def _tree_labels(best: pd.DataFrame, names: list[str]) -> list[str]:
    """``PP3 · Isocortex (r=0.81)``: the pattern's name (id + best link) and that link's r."""
    labels = []
    for i, name in enumerate(names):
        row = best[best["pattern_index"].astype(int) == i]
        labels.append(f"{name} (r={float(row['r'].iloc[0]):.2f})" if len(row) else name)
    return labels


def _k_min_note(check: dict | None) -> list[str]:
    """One sentence on how much γ depends on the chain's start (chained sweeps only)."""
    if not check:
        return []
    cells = "; ".join(f"K = {int(row['k'])}: {row['hungarian_subset']:.4f} vs {row['hungarian_subset_alt_start']:.4f}"
                      for row in check["by_k"])
    return [f"Replicates at K were grown from their own K−1 fits, so γ depends on where the chain starts. "
            f"γ of the first {check['n_replicates']} replicates chained from K = {check['k_min']} vs from "
            f"K = {check['k_min_alt']}: {cells} (largest |Δγ| {check['max_abs_diff']:.4f})."]


def _certified_note(stab: pd.DataFrame) -> list[str]:
    """One sentence on the exact refits that certify a compressed sweep (none after an exact one)."""
    if "hungarian_exact" not in stab or not stab["hungarian_exact"].notna().any():
        return []
    cert = stab.dropna(subset=["hungarian_exact"])
    n = int(cert["n_certified"].iloc[0])
    k_exact = int(cert["k"].iloc[int(np.argmin(cert["hungarian_exact"].to_numpy()))])
    k_comp = int(cert["k"].iloc[int(np.argmin(cert["hungarian_compressed_subset"].to_numpy()))])
    verdict = "the same K" if k_exact == k_comp else f"K = {k_exact} instead of K = {k_comp}"
    return [f"The sweep used the compressed solver (a low-rank sketch of the data). Certification: {n} replicates "
            f"refitted with the exact solver at K = {', '.join(str(int(v)) for v in cert['k'])} give the smallest γ "
            f"at {verdict} (columns hungarian_exact and hungarian_compressed_subset)."]

