"""The end-to-end pipeline: named stages, cached by their inputs, in one run directory.

load → impute → sweep (staNMF + final model) → baselines → metrics → linking → markers →
networks → outputs → report. The input is checked before the run folder is created, and the
folder is locked for the run (:mod:`osnmf.run.lock`): a second run into it stops at once. Each
stage's result is stored atomically under ``<out>/.cache/<stage>.npz`` with the hash of its inputs
(data hash + parameters + upstream keys), so a rerun skips finished stages and a killed run
resumes; the sweep additionally resumes replicate by replicate from ``<out>/sweep``. A damaged
cache entry or sweep block is named in one warning line and recomputed, never trusted. What the
run tells its user goes through :class:`osnmf.run.log.RunLog` (one line per stage with seconds).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from osnmf.accept import accept_input, refuse_too_few
from osnmf.config import RunConfig
from osnmf.expression import peak_sections, to_matrix, to_volumes
from osnmf.results import (
    BaselinesResult,
    ImputeResult,
    LinkingResult,
    MarkersResult,
    MetricsResult,
    RunState,
    SweepResult,
    k_range_edge,
    pattern_sets,
)
from osnmf.run.folder import RunFolder
from osnmf.run.layout import REPORT
from osnmf.run.log import RunLog
from osnmf.run.stagecache import StageCache, digest, from_arrays, to_arrays
from osnmf.run.stageinputs import ConfigView, StageInputs

PIPELINE_VERSION = "4"  # 2: typed stage results (osnmf.results); 3: keys from the declared inputs;
# 4: keys hold the upstream results' digests
R = TypeVar("R")
#: What each cached stage reads from the configuration: ``key`` fields make its cache key, ``runtime``
#: fields only say how to compute; its body sees nothing else (:mod:`osnmf.run.stageinputs`).
STAGE_INPUTS: dict[str, StageInputs] = {
    "impute": StageInputs(key=("impute", "n_neighbors", "support_max_missing", "random_state", "hemispheres"),
                          runtime=("n_jobs",)),
    "sweep": StageInputs(key=("k_min", "k_max", "k_range", "n_replicates", "n_restarts", "recipe", "grow", "solver",
                              "k_rule", "max_iter", "tol", "random_state", "moran_replicates"),
                         runtime=("backend", "device", "n_jobs", "scheduler")),
    "baselines": StageInputs(key=("k_range", "pca_replicates", "random_state", "moran_replicates")),
    "metrics": StageInputs(),
    "linking": StageInputs(key=("link_sizes", "link_min_share", "link_tie_tolerance", "n_random_models",
                                "random_state")),
    "markers": StageInputs(key=("network_top_fraction",)),
}


class Pipeline:
    """Runs the stages of one configuration into ``config.out``."""

    def __init__(self, config: RunConfig, log: RunLog | None = None):
        self.config = config
        self.out = Path(config.out)
        self.cache = StageCache(self.out / ".cache")
        self.log = log or RunLog(quiet=config.quiet, verbose=config.verbose)
        self.state = RunState(config=config, out=self.out)
        self._step_start: float | None = None

    @property
    def progress(self) -> bool:
        """Whether long loops report progress (:attr:`osnmf.run.log.RunLog.progress`)."""
        return self.log.progress

    # ---- stage machinery ------------------------------------------------------------------
    @contextmanager
    def _timed(self, name: str, start: float | None = None):
        """Time a stage (from ``start``, default now) and log its one line (name, seconds, reused
        from cache or not, and the ``note`` the body may set in the yielded dict)."""
        start = time.perf_counter() if start is None else start
        line = {"note": ""}
        yield line
        seconds = time.perf_counter() - start
        self.state.timings[name] = round(seconds, 3)
        self.log.stage(name, seconds, reused=self.state.cached.get(name, False), note=line["note"])

    def inputs(self, stage: str) -> ConfigView:
        """The configuration as ``stage`` may read it: its declared fields (:data:`STAGE_INPUTS`), the
        recipe's settings resolved."""
        return STAGE_INPUTS[stage].view(stage, self.config, self.config.settings())

    def stage(self, name: str, cfg: ConfigView, upstream: tuple[str, ...], compute, kind: type[R], note=None) -> R:
        """Run ``compute()`` (→ a ``kind`` result) unless a result for the same inputs is cached: the
        keyed fields of ``cfg`` and the upstream keys; ``note(result)`` → a few words for the stage's log line.

        The result always comes back through the cache's encoding, so a fresh and a reused result
        are the same object type with the same column types.
        """
        # the upstream results' own digests, not only their keys: an upstream result that changed for
        # the same inputs (an edited or damaged store recomputed) is never read by a reused stage
        key = digest(PIPELINE_VERSION, name, cfg.key_values(),
                     [(self.state.keys[u], self.state.digests[u]) for u in upstream])
        self.state.keys[name] = key
        with self._timed(name, start=self._step_start) as line:  # from the step's start: imports count
            arrays = self.cache.get(name, key)
            result = None
            if arrays is not None:
                try:
                    result = from_arrays(kind, arrays)
                except (KeyError, ValueError, TypeError):
                    result = None  # written by another version: recompute
            self.state.cached[name] = result is not None
            self.log.detail(f"{name}: cache key {key}, {'reused' if result is not None else 'computing'}")
            if result is None:
                with threadpool_limits(1):  # results never depend on the BLAS's thread count
                    arrays = to_arrays(compute())
                self.cache.put(name, key, arrays)
                result = from_arrays(kind, arrays)
            self.state.digests[name] = digest(*(arrays[a] for a in sorted(arrays)))
            if note is not None:
                line["note"] = note(result)
        setattr(self.state, name, result)
        return result

    # ---- stages ---------------------------------------------------------------------------
    def load(self) -> None:
        cfg = self.config
        with self._timed("load") as line:
            if cfg.data is None:
                from osnmf.datasets.phantom import make_phantom

                phantom = make_phantom(
                    n_genes=cfg.phantom_genes, n_patterns=cfg.phantom_patterns, noise=cfg.phantom_noise,
                    missing=cfg.phantom_missing, seed=cfg.phantom_seed, preset=cfg.phantom_preset,
                )
                self.state.expr, self.state.truth = phantom.data, phantom
            else:
                from osnmf.io.load import load_expression

                self.state.expr = load_expression(cfg.data, progress=self.progress, coords=cfg.coords,
                                                  min_cells=cfg.min_cells, cell_values=cfg.cell_values)
            self._check_hemispheres()
            expr = self.state.expr
            accept_input(expr, cfg)
            self.state.data_key = digest(expr.volumes, expr.genes, expr.experiment_ids, expr.atlas.annotation)
            line["note"] = (f"{len(expr.genes)} experiments from {cfg.data or 'the synthetic atlas'}, "
                            f"grid {'×'.join(map(str, expr.atlas.shape))}")
        self.state.keys["load"] = self.state.digests["load"] = self.state.data_key
        self.state.cached["load"] = False

    def _check_hemispheres(self) -> None:
        """``--hemispheres``: refuse mixed planes when off; leave one-hemisphere experiments out when drop."""
        from osnmf.preprocess.hemispheres import check_planes, drop_one_sided

        expr = self.state.expr
        check_planes(expr, self.config.hemispheres)
        if self.config.hemispheres == "drop":
            self.state.expr, message = drop_one_sided(expr)
            self.state.dropped_one_hemisphere = len(expr) - len(self.state.expr)
            if message:  # one line on stderr, shown even with --quiet
                self.log.warn(message)

    def impute(self) -> ImputeResult:
        from osnmf.preprocess.holdout import HOLDOUT_VOXELS, holdout_check
        from osnmf.preprocess.prepare import prepare_experiments

        cfg, expr = self.inputs("impute"), self.state.expr

        def compute() -> ImputeResult:
            brain = expr.atlas.brain_mask
            prep = prepare_experiments(expr, hemispheres=cfg.hemispheres, impute=cfg.impute,
                                       n_neighbors=cfg.n_neighbors, random_state=cfg.random_state,
                                       n_jobs=cfg.n_jobs, support_max_missing=cfg.support_max_missing,
                                       progress=self.progress)
            for message in prep.messages:
                self.log.warn(message)
            truth, prepared = self.state.truth, prep.matrix
            holdout = holdout_check(
                prep.volumes, prep.support, n_holdout=HOLDOUT_VOXELS, seed=cfg.random_state,
                n_neighbors=cfg.n_neighbors, spacing_um=expr.atlas.spacing_um, progress=self.progress,
                truth=None if truth is None else truth.clean, truth_mask=None if truth is None else brain,
                exclude=prep.mirrored,
            )
            return ImputeResult(**prep.hemi,
                X=prepared.X, support=prepared.support, kept=prepared.kept, dropped=prepared.dropped,
                missing_fraction=float(np.isnan(to_matrix(expr.volumes, prep.support)).mean()),
                holdout_points=holdout.n_points, holdout_mae=holdout.mae, holdout_r=holdout.pearson_r,
                holdout_mean_error=holdout.mean_error,
                holdout_mae_truth=holdout.mae_truth, holdout_r_truth=holdout.r_truth,
            )

        return self.stage("impute", cfg, ("load",), compute, ImputeResult,
                          note=lambda r: f"{r.X.shape[0]} experiments × {r.X.shape[1]} voxels, "
                                         f"{100 * float(r.missing_fraction):.1f}% missing filled")

    def sweep(self) -> SweepResult:
        from osnmf.factorize.choose_k.kmin_check import CHECK_COLUMNS
        from osnmf.factorize.choose_k.stability import select_k
        from osnmf.factorize.stanmf import StaNMF
        from osnmf.factorize.sweep.executors import dask_client

        cfg = self.inputs("sweep")

        def compute() -> SweepResult:
            X = self.state.impute.X
            refuse_too_few(X.shape[0], cfg.k_max, "usable experiments")
            with dask_client(cfg.scheduler) as client:
                model = StaNMF(
                    k_range=cfg.k_range, n_replicates=cfg.n_replicates, n_restarts=cfg.n_restarts, recipe=cfg.recipe,
                    grow=cfg.grow, solver=cfg.solver, k_rule=cfg.k_rule, backend=cfg.backend,
                    device=cfg.device, max_iter=cfg.max_iter, tol=cfg.tol,
                    random_state=cfg.random_state, store=self.out / "sweep", progress=self.progress, client=client,
                    # blocks of replicates run in parallel threads (BLAS pinned to one thread each),
                    # their size bounded by memory (osnmf.factorize.sweep.params.auto_block_size)
                    n_jobs=cfg.n_jobs,
                )
                model.fit(X)
            k = int(model.k_)
            reps = model.replicates_.head(k, cfg.moran_replicates)  # only those are read
            return SweepResult(instability=model.instability_, k=k, k_gamma_argmin=select_k(model.instability_),
                               components=model.components_.astype(np.float32),
                               coefficients=model.coefficients_.astype(np.float32),
                               replicates_at_k=reps.astype(np.float32),
                               selection=model.selection_,
                               k_min_check=_or_empty(model.k_min_check_, CHECK_COLUMNS))

        result = self.stage("sweep", cfg, ("impute",), compute, SweepResult,
                            note=lambda r: f"K {cfg.k_min}…{cfg.k_max} × {cfg.n_replicates} replicates, "
                                           f"K = {int(r.k)} selected")
        edge = k_range_edge(result)
        if edge:  # also in summary.json (k_range_edge_warning) and the report's overview
            self.log.warn(edge)
        return result

    def baselines(self) -> BaselinesResult:
        from osnmf.baselines import clusters as cb
        from osnmf.baselines import pca as pb
        from osnmf.baselines.gram_pca import CentredGram
        from osnmf.evaluate.compare import instability_curve

        cfg = self.inputs("baselines")
        pca_replicates = cfg.pca_replicates

        def compute() -> BaselinesResult:
            X, sw = self.state.impute.X, self.state.sweep
            k = sw.k
            ks = [kk for kk in cfg.k_range if kk <= min(X.shape) - 1]
            # one Gram of X serves every PCA here (pca_baseline.pca_bootstrap); the bootstrap fits at the largest K
            # serve the whole curve (components are nested), with the same gene bootstraps as the staNMF
            # replicates; the first ones also serve Moran's I
            n_reps = max(pca_replicates, cfg.moran_replicates)
            gram = CentredGram(X, progress=self.progress)
            boot = pb.pca_bootstrap(X, max(*ks, k), n_replicates=n_reps, seed=cfg.random_state, gram=gram,
                                    progress=self.progress)
            pca = boot.full_pca(k)
            emb = pb.voxel_pca_embedding(X, k, gram=gram)
            return BaselinesResult(
                pca_instability=instability_curve(boot.correlations(pca_replicates), ks),
                pca_patterns=pca.patterns.astype(np.float32),
                pca_coefficients=pca.coefficients.astype(np.float32),
                pca_offset=np.asarray(pca.offset, np.float32),
                pca_replicates=boot.patterns(cfg.moran_replicates, k),
                kmeans_patterns=cb.pca_kmeans_patterns(X, k, seed=cfg.random_state, embedding=emb).patterns.astype(
                    np.float32),
                ward_patterns=cb.pca_agglomerative_patterns(X, k, seed=cfg.random_state, embedding=emb).patterns.astype(
                    np.float32),
                nmf_hier_patterns=cb.nmf_hierarchical_patterns(sw.components, k, seed=cfg.random_state).patterns.astype(
                    np.float32),
            )

        return self.stage("baselines", cfg, ("sweep",), compute, BaselinesResult)

    def metrics(self) -> MetricsResult:
        from osnmf.evaluate.compare import moran_comparison
        from osnmf.evaluate.metrics import patterns_per_gene, reconstruction_accuracy
        from osnmf.evaluate.planted import planted_truth_check
        from osnmf.preprocess.hemispheres import symmetry_r
        from osnmf.spatial.moran import morans_i, morans_i_max, spatial_weights, strongest_pattern_morans_i

        cfg = self.inputs("metrics")

        def compute() -> MetricsResult:
            imp, sw, bl = self.state.impute, self.state.sweep, self.state.baselines
            support = imp.support
            w = spatial_weights(support, "face")
            boot_nmf, boot_pca, test = moran_comparison(sw.replicates_at_k, bl.pca_replicates, support, "continuous",
                                                        "face", w=w)
            top_nmf, top_pca, top_test = moran_comparison(sw.replicates_at_k, bl.pca_replicates, support, "strongest",
                                                          "face", w=w)
            measured = self.measured_matrix()
            planted = {"planted_k": 0, "matched_r": []}
            if self.state.truth is not None:
                planted = planted_truth_check(self.state.truth.patterns, self.brain_patterns(sw.components))
            return MetricsResult(
                moran_nmf=morans_i(sw.components, support, w=w), moran_pca=morans_i(bl.pca_patterns, support, w=w),
                moran_strongest_nmf=strongest_pattern_morans_i(sw.components, support, w=w),
                moran_boot_nmf=boot_nmf, moran_boot_pca=boot_pca,
                moran_cliffs_delta=test["cliffs_delta"], moran_p_mannwhitney=test["p_mannwhitney"],
                moran_cohens_d=test["cohens_d"], moran_p_welch=test["p_welch"],
                moran_strongest_boot_nmf=top_nmf, moran_strongest_boot_pca=top_pca,
                moran_strongest_cliffs_delta=top_test["cliffs_delta"],
                moran_strongest_p_mannwhitney=top_test["p_mannwhitney"],
                recon_nmf=reconstruction_accuracy(imp.X, sw.coefficients, sw.components),
                recon_pca=reconstruction_accuracy(imp.X, bl.pca_coefficients, bl.pca_patterns, offset=bl.pca_offset),
                recon_nmf_measured=reconstruction_accuracy(measured, sw.coefficients, sw.components),
                recon_pca_measured=reconstruction_accuracy(measured, bl.pca_coefficients, bl.pca_patterns,
                                                           offset=bl.pca_offset),
                recon_pca_measured_no_mean=reconstruction_accuracy(measured, bl.pca_coefficients, bl.pca_patterns),
                patterns_per_gene=patterns_per_gene(sw.coefficients),
                patterns_per_gene_nonzero=patterns_per_gene(sw.coefficients, threshold=0.0),
                planted_k=planted["planted_k"], planted_matched_r=np.asarray(planted["matched_r"], dtype=np.float64),
                symmetry_nmf=symmetry_r(to_volumes(sw.components, support), support, imp.hemi_midline),
                peak_sections=peak_sections(to_volumes(sw.components, support)),
                moran_max=morans_i_max(w),
            )

        return self.stage("metrics", cfg, ("baselines",), compute,
                          MetricsResult)

    def measured_matrix(self) -> np.ndarray:
        """The measured values of the factorised experiments over the support voxels, float32
        ``(n, m)`` (:func:`osnmf.preprocess.prepare.measured_matrix`)."""
        from osnmf.preprocess.prepare import measured_matrix

        imp = self.state.impute
        return measured_matrix(self.state.expr.volumes, imp.kept, imp.support)

    def brain_patterns(self, patterns: np.ndarray) -> np.ndarray:
        """Patterns over the support voxels → over all brain voxels (0 where outside the support)."""
        return to_matrix(to_volumes(patterns, self.state.impute.support), self.state.expr.atlas.brain_mask)

    def linking(self) -> LinkingResult:
        from osnmf.interpret.ontology import pattern_ontology
        from osnmf.interpret.region_prediction import (
            PAPER_RANDOM_SIZE,
            PAPER_REGION,
            model_patterns,
            region_patterns,
            region_prediction_test,
        )
        from osnmf.spatial.linking import best_combinations, readable_regions
        from osnmf.spatial.region_correlation import region_correlations

        cfg = self.inputs("linking")
        atlas = self.state.expr.atlas

        rule = {"min_member_share": cfg.link_min_share, "tie_tolerance": cfg.link_tie_tolerance}

        def compute() -> LinkingResult:
            summary_rows, found = [], {}
            for name, patterns in pattern_sets(self.state.sweep, self.state.baselines).items():
                brain = self.brain_patterns(patterns)
                link = best_combinations(brain, atlas, sizes=cfg.link_sizes, progress=self.progress, **rule)
                summary_rows.append({"pattern_set": name, **link.summary})
                if name == "staNMF":
                    found = {"brain": brain, "link": link}
            brain, link = found["brain"], found["link"]
            # each pattern's link and name: its best union of readable (coarse / medium grey-matter)
            # regions, one scheme for links.csv, the report's tables and the names "PP3 · Isocortex"
            sizes = [s for s in cfg.link_sizes if s <= 3] or [1]
            named = best_combinations(brain, atlas, sizes=sizes, regions=readable_regions(atlas), top_n=1, keep=1,
                                      **rule).best
            correlations = region_correlations(brain, atlas)
            tree = pattern_ontology(brain, link, atlas)
            linked = region_patterns(link, correlations, atlas, PAPER_REGION)
            # as in the paper: a triple of patterns (the linked ones, topped up) against random triples
            model = model_patterns(linked, correlations, atlas, PAPER_REGION, min(len(brain), PAPER_RANDOM_SIZE))
            pred = region_prediction_test(brain, atlas, region=PAPER_REGION, linked=model,
                                          n_random=cfg.n_random_models, seed=cfg.random_state, random_size=len(model))
            return LinkingResult(
                links=named, links_top=link.table, link_matrix=link.matrix.to_numpy(dtype=np.float64),
                correlations=correlations, link_summary=pd.DataFrame(summary_rows),
                ontology_json=tree.to_json(), ontology_newick=tree.to_newick(), ontology_linkage=tree.linkage,
                region_auc=pred.auc, region_random_median_auc=pred.median_random, region_p=pred.p_value,
                region_n_linked=len(linked), region_model=np.asarray(model, dtype=np.int64),
                region_n_random=int(pred.random_aucs.size),
                region_n_distinct=int(pred.summary()["n_distinct_random_subsets"]),
            )

        return self.stage("linking", cfg, ("baselines",), compute, LinkingResult)

    def markers(self) -> MarkersResult:
        from osnmf.interpret.markers import marker_genes
        from osnmf.interpret.networks import coexpression_networks, edges_table, hub_table, network_to_json

        cfg = self.inputs("markers")

        def compute() -> MarkersResult:
            sw = self.state.sweep
            genes = self.state.expr.genes[self.state.impute.kept]
            networks = coexpression_networks(sw.coefficients, sw.components, genes,
                                             top_fraction=cfg.network_top_fraction)
            return MarkersResult(
                markers=marker_genes(sw.coefficients, genes).table, hubs=hub_table(networks),
                edges=edges_table(networks),
                networks_json=np.array([json.dumps(network_to_json(n)) for n in networks], dtype=str),
            )

        return self.stage("markers", cfg, ("sweep",), compute, MarkersResult)

    # ---- the whole run --------------------------------------------------------------------
    def run(self) -> dict:
        from osnmf.report.build import build_report
        from osnmf.report.files import write_outputs

        # a file, or a non-empty folder that is not an osnmf run: stopped here, before anything is written;
        # a folder in use by another run: stopped on entry, before any data is read
        folder = RunFolder(self.out)
        with self.log.capture_warnings(), folder:
            self.load()  # reads and checks the input: a rejected input leaves no output folder behind
            self._removed_note(folder.open(), "temporary files", "that an interrupted run left")
            for step in (self.impute, self.sweep, self.baselines, self.metrics, self.linking, self.markers):
                self._step_start = time.perf_counter()
                step()
            # from the first result file until the manifest commits, the folder is marked incomplete
            # (osnmf.run.folder); the commit removes the files of the previous run this one did not write
            with self._timed("outputs") as line:
                summary = write_outputs(self.state)
                line["note"] = f"result files in {self.out}"
            with self._timed("report") as line:
                build_report(self.state, summary)
                line["note"] = str(self.out / REPORT)
            summary = write_outputs(self.state, summary_only=True)
            folder.complete = True
        self._removed_note(folder.removed, "files of the previous run", "that this run no longer writes")
        self.log.info(f"done in {self.log.elapsed():.1f} s")
        return summary

    def _removed_note(self, removed: list[str], what: str, why: str) -> None:
        if removed:
            self.log.info(f"removed {len(removed)} {what} in {self.out} {why} "
                          f"({', '.join(removed[:3])}{', …' if len(removed) > 3 else ''})")


def _or_empty(table: pd.DataFrame | None, columns: list[str]) -> pd.DataFrame:
    """``table``, or an empty one with ``columns`` (a stage result holds a frame, never None)."""
    return table if table is not None else pd.DataFrame(columns=columns)


def run_pipeline(config: RunConfig) -> dict:
    """Run the whole pipeline for ``config``; returns the summary written to ``summary.json``."""
    return Pipeline(config).run()
