"""The end-to-end pipeline: named stages, cached by their inputs, in one run directory.

load → impute → sweep (staNMF + final model) → baselines → metrics → linking → markers →
networks → outputs → report. Each stage's result is stored atomically under
``<out>/.cache/<stage>.npz`` with the hash of its inputs (data hash + parameters + upstream keys),
so a rerun skips finished stages and a killed run resumes; the sweep additionally resumes
replicate by replicate from ``<out>/sweep``.
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from osnmf.config import RunConfig
from osnmf.errors import ConfigError, InputError
from osnmf.expression import SpatialExpression, to_matrix, to_volumes
from osnmf.stagecache import StageCache, arrays_to_frame, digest, frame_to_arrays

PIPELINE_VERSION = "1"


@dataclass
class RunState:
    """Everything the stages produce; outputs and the report read it and compute nothing."""

    config: RunConfig
    out: Path
    expr: SpatialExpression | None = None
    truth: object | None = None  # a Phantom when the data are synthetic
    data_key: str = ""
    keys: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cached: dict[str, bool] = field(default_factory=dict)
    results: dict[str, dict] = field(default_factory=dict)


class Pipeline:
    """Runs the stages of one configuration into ``config.out``."""

    def __init__(self, config: RunConfig, console: Console | None = None):
        self.config = config
        self.out = Path(config.out)
        self.cache = StageCache(self.out / ".cache")
        self.console = console or Console(stderr=True, quiet=config.quiet)
        self.state = RunState(config=config, out=self.out)

    @property
    def progress(self) -> bool:
        return not self.config.quiet

    # ---- stage machinery ------------------------------------------------------------------
    @contextmanager
    def _timed(self, name: str):
        start = time.perf_counter()
        yield
        self.state.timings[name] = round(time.perf_counter() - start, 3)

    def stage(self, name: str, params: dict, upstream: tuple[str, ...], compute) -> dict:
        """Run ``compute()`` (→ dict of arrays) unless a result for the same inputs is cached."""
        key = digest(PIPELINE_VERSION, name, params, [self.state.keys[u] for u in upstream])
        self.state.keys[name] = key
        with self._timed(name):
            result = self.cache.get(name, key)
            self.state.cached[name] = result is not None
            if result is None:
                self.console.log(f"[bold]{name}[/]…")
                result = compute()
                self.cache.put(name, key, result)
            else:
                self.console.log(f"[bold]{name}[/]: reused cached result")
        self.state.results[name] = result
        return result

    # ---- stages ---------------------------------------------------------------------------
    def load(self) -> None:
        cfg = self.config
        with self._timed("load"):
            if cfg.data is None:
                from osnmf.datasets.phantom import make_phantom

                phantom = make_phantom(
                    n_genes=cfg.phantom_genes, n_patterns=cfg.phantom_patterns, noise=cfg.phantom_noise,
                    missing=cfg.phantom_missing, seed=cfg.phantom_seed,
                )
                self.state.expr, self.state.truth = phantom.data, phantom
            else:
                from osnmf.io.load import load_expression

                self.state.expr = load_expression(cfg.data, progress=self.progress)
            expr = self.state.expr
            _accept(expr, cfg)
            self.state.data_key = digest(expr.volumes, expr.genes, expr.experiment_ids, expr.atlas.annotation)
        self.state.keys["load"] = self.state.data_key
        self.state.cached["load"] = False

    def impute(self) -> dict:
        from osnmf.preprocess import default_support, holdout_check, impute_knn, prepare_matrix

        cfg, expr = self.config, self.state.expr
        params = {k: getattr(cfg, k) for k in ("impute", "n_neighbors", "support_max_missing", "seed")}

        def compute():
            brain = expr.atlas.brain_mask
            support = default_support(expr.volumes, brain, max_missing=cfg.support_max_missing)
            filled = expr.volumes
            if cfg.impute == "knn":
                filled = impute_knn(expr.volumes, support, cfg.n_neighbors, spacing_um=expr.atlas.spacing_um,
                                    n_jobs=cfg.jobs, progress=self.progress)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                prepared = prepare_matrix(filled, support, fill_missing=0.0)
            for w in caught:
                self.console.log(f"[yellow]warning:[/] {w.message}")
            truth = self.state.truth
            holdout = holdout_check(
                expr.volumes, support, n_holdout=1000, seed=cfg.seed, n_neighbors=cfg.n_neighbors,
                spacing_um=expr.atlas.spacing_um, progress=self.progress,
                truth=None if truth is None else truth.clean, truth_mask=None if truth is None else brain,
            )
            return {
                "X": prepared.X, "support": prepared.support, "kept": prepared.kept, "dropped": prepared.dropped,
                "missing_fraction": np.array(np.isnan(to_matrix(expr.volumes, support)).mean()),
                "holdout": np.array([holdout.n_points, holdout.mae, holdout.pearson_r, holdout.mae_truth,
                                     holdout.r_truth]),
            }

        return self.stage("impute", params, ("load",), compute)

    def sweep(self) -> dict:
        from osnmf.factorize.stanmf import StaNMF

        cfg = self.config
        names = ("k_min", "k_max", "replicates", "n_restarts", "solver", "max_iter", "tol", "seed")
        params = {k: getattr(cfg, k) for k in names}

        def compute():
            X = self.state.results["impute"]["X"]
            if X.shape[0] <= cfg.k_max:
                raise ConfigError(f"{X.shape[0]} usable experiments are too few for K up to {cfg.k_max}: "
                                  f"use --k-max {max(2, X.shape[0] - 1)} or less, or more data")
            model = StaNMF(
                k_range=cfg.k_range, n_replicates=cfg.replicates, n_restarts=cfg.n_restarts, solver=cfg.solver,
                backend=cfg.backend, device=cfg.device, max_iter=cfg.max_iter, tol=cfg.tol,
                random_state=cfg.seed, store=self.out / "sweep", progress=self.progress,
                # blocks of replicates run in parallel threads (BLAS pinned to one thread each)
                n_jobs=cfg.jobs, block_size=max(1, -(-cfg.replicates // cfg.jobs)),
            )
            client = _dask_client(cfg.scheduler) if cfg.scheduler else None
            model.client = client
            try:
                model.fit(X)
            finally:
                if client is not None:
                    cluster = client.cluster  # a LocalCluster we started; None for a remote scheduler
                    client.close()
                    if cfg.scheduler == "local" and cluster is not None:
                        cluster.close()
            k = int(model.k_)
            reps = np.asarray(model.replicates_[k])[: cfg.moran_replicates]
            out = frame_to_arrays("instability", model.instability_)
            out.update({"k": np.array(k), "components": model.components_.astype(np.float32),
                        "coefficients": model.coefficients_.astype(np.float32),
                        "replicates_at_k": reps.astype(np.float32)})
            return out

        return self.stage("sweep", params, ("impute",), compute)

    def baselines(self) -> dict:
        from osnmf.factorize import baselines as bl
        from osnmf.factorize.stability import instability

        cfg = self.config
        params = {"pca_replicates": cfg.pca_replicates, "seed": cfg.seed, "k_min": cfg.k_min, "k_max": cfg.k_max}

        def compute():
            X = self.state.results["impute"]["X"]
            k = int(self.state.results["sweep"]["k"])
            D = self.state.results["sweep"]["components"]
            ks = [kk for kk in cfg.k_range if kk <= min(X.shape) - 1]
            # principal components are nested: the first k of a replicate's top-k_max are its top k,
            # so one set of bootstrap fits at the largest K serves the whole curve
            # (the same gene bootstraps as the staNMF replicates; the first ones also serve Moran's I)
            n_reps = max(cfg.pca_replicates, cfg.moran_replicates)
            k_top = max(*ks, k)
            reps_all = bl.pca_bootstrap_patterns(X, k_top, n_replicates=n_reps, seed=cfg.seed, progress=self.progress)
            rows = [{"k": kk, **instability(reps_all[: cfg.pca_replicates, :kk])} for kk in ks]
            pca = bl.pca_patterns(X, k)
            kmeans = bl.pca_kmeans_patterns(X, k, seed=cfg.seed)
            ward = bl.pca_agglomerative_patterns(X, k, seed=cfg.seed)
            nmf_h = bl.nmf_hierarchical_patterns(D, k, seed=cfg.seed)
            pca_reps = reps_all[: cfg.moran_replicates, :k]
            out = frame_to_arrays("pca_instability", pd.DataFrame(rows))
            out.update({
                "pca_patterns": pca.patterns.astype(np.float32),
                "pca_coefficients": pca.coefficients.astype(np.float32),
                "pca_offset": np.asarray(pca.offset if pca.offset is not None else np.zeros(X.shape[1]), np.float32),
                "pca_replicates": pca_reps.astype(np.float32),
                "kmeans_patterns": kmeans.patterns.astype(np.float32),
                "ward_patterns": ward.patterns.astype(np.float32),
                "nmf_hier_patterns": nmf_h.patterns.astype(np.float32),
            })
            return out

        return self.stage("baselines", params, ("sweep",), compute)

    def metrics(self) -> dict:
        from osnmf.evaluate.compare import compare_distributions
        from osnmf.evaluate.metrics import patterns_per_gene, reconstruction_accuracy
        from osnmf.spatial.moran import morans_i, spatial_weights, strongest_pattern_morans_i

        cfg = self.config

        def compute():
            imp, sw, bl = (self.state.results[s] for s in ("impute", "sweep", "baselines"))
            X, support = imp["X"], imp["support"]
            w = spatial_weights(support, "face")
            D, A = sw["components"], sw["coefficients"]
            moran_nmf = morans_i(D, support, w=w)
            moran_pca = morans_i(bl["pca_patterns"], support, w=w)
            boot_nmf = np.stack([morans_i(r, support, w=w) for r in sw["replicates_at_k"]])
            boot_pca = np.stack([morans_i(r, support, w=w) for r in bl["pca_replicates"]])
            test = compare_distributions(boot_nmf.ravel(), boot_pca.ravel())
            r_nmf = reconstruction_accuracy(X, A, D)
            r_pca = reconstruction_accuracy(X, bl["pca_coefficients"], bl["pca_patterns"], offset=bl["pca_offset"])
            return {
                "moran_nmf": moran_nmf, "moran_pca": moran_pca,
                "moran_strongest_nmf": strongest_pattern_morans_i(D, support, w=w),
                "moran_boot_nmf": boot_nmf, "moran_boot_pca": boot_pca,
                "moran_test": np.array([test[key] for key in ("cliffs_delta", "p_mannwhitney", "cohens_d", "p_welch")]),
                "recon_nmf": r_nmf, "recon_pca": r_pca,
                "patterns_per_gene": patterns_per_gene(A),
            }

        return self.stage("metrics", {"moran_replicates": cfg.moran_replicates}, ("baselines",), compute)

    def brain_patterns(self, patterns: np.ndarray) -> np.ndarray:
        """Patterns over the support voxels → over all brain voxels (0 where outside the support)."""
        support = self.state.results["impute"]["support"]
        return to_matrix(to_volumes(patterns, support), self.state.expr.atlas.brain_mask)

    def pattern_sets(self) -> dict[str, np.ndarray]:
        sw, bl = self.state.results["sweep"], self.state.results["baselines"]
        # PCA components come with their largest-magnitude loading positive (baselines.pca_fit)
        return {
            "staNMF": sw["components"], "PCA": bl["pca_patterns"], "PCA + k-means": bl["kmeans_patterns"],
            "PCA + agglomerative": bl["ward_patterns"], "staNMF + hierarchical": bl["nmf_hier_patterns"],
        }

    def linking(self) -> dict:
        from osnmf.interpret.ontology import pattern_ontology
        from osnmf.interpret.region_prediction import linked_patterns, region_prediction_test
        from osnmf.spatial.linking import best_combinations, region_correlations

        cfg = self.config
        atlas = self.state.expr.atlas

        def compute():
            out = {}
            summary_rows = []
            for name, patterns in self.pattern_sets().items():
                brain = self.brain_patterns(patterns)
                link = best_combinations(brain, atlas, sizes=cfg.link_sizes, progress=self.progress)
                summary_rows.append({"pattern_set": name, **link.summary})
                if name == "staNMF":
                    out.update(frame_to_arrays("links", link.best))
                    out.update(frame_to_arrays("links_top", link.table))
                    out["link_matrix"] = link.matrix.to_numpy(dtype=np.float64)
                    correlations = region_correlations(brain, atlas)
                    out.update(frame_to_arrays("correlations", correlations))
                    tree = pattern_ontology(brain, link, atlas)
                    out["ontology_json"] = np.array(tree.to_json())
                    out["ontology_newick"] = np.array(tree.to_newick())
                    out["ontology_linkage"] = tree.linkage
                    linked = linked_patterns(link, atlas, "Isocortex")
                    if not linked:  # no best link inside the isocortex: use the most correlated pattern
                        iso = correlations[correlations["region_id"] == atlas.id_of("Isocortex")]
                        linked = [int(iso.loc[iso["r"].idxmax(), "pattern_index"])]
                    pred = region_prediction_test(brain, atlas, region="Isocortex", linked=linked,
                                                  n_random=cfg.n_random_models, seed=cfg.seed)
                    out["region_test"] = np.array([pred.auc, pred.median_random, pred.p_value, len(pred.linked)])
            out.update(frame_to_arrays("link_summary", pd.DataFrame(summary_rows)))
            return out

        params = {"sizes": cfg.link_sizes, "n_random": cfg.n_random_models, "seed": cfg.seed}
        return self.stage("linking", params, ("baselines",), compute)

    def markers(self) -> dict:
        from osnmf.interpret.markers import marker_genes
        from osnmf.interpret.networks import coexpression_networks, hub_table, write_networks

        cfg = self.config

        def compute():
            sw, imp = self.state.results["sweep"], self.state.results["impute"]
            genes = self.state.expr.genes[imp["kept"]]
            table = marker_genes(sw["coefficients"], genes).table
            networks = coexpression_networks(sw["coefficients"], sw["components"], genes,
                                             top_fraction=cfg.network_top_fraction)
            write_networks(networks, self.out / "networks")
            out = frame_to_arrays("markers", table)
            out.update(frame_to_arrays("hubs", hub_table(networks)))
            return out

        return self.stage("markers", {"top_fraction": cfg.network_top_fraction}, ("sweep",), compute)

    # ---- the whole run --------------------------------------------------------------------
    def run(self) -> dict:
        from osnmf.report.build import build_report
        from osnmf.report.files import write_outputs

        self.load()  # reads and checks the input: a rejected input leaves no output folder behind
        self.out.mkdir(parents=True, exist_ok=True)
        for step in (self.impute, self.sweep, self.baselines, self.metrics, self.linking, self.markers):
            step()
        with self._timed("outputs"), self.console.status("writing result files…"):
            summary = write_outputs(self.state)
        with self._timed("report"), self.console.status("drawing figures and the report…"):
            build_report(self.state, summary)
        summary = write_outputs(self.state, summary_only=True)
        return summary


def _accept(expr: SpatialExpression, cfg: RunConfig) -> None:
    """Refuse an input the sweep cannot use, before anything is written: no measured value inside
    the brain, or fewer experiments with data than ``k_max`` + 1."""
    source = cfg.data if cfg.data is not None else "the synthetic atlas"
    brain = expr.atlas.brain_mask
    measured = np.array([np.isfinite(volume[brain]).any() for volume in expr.volumes])
    if not measured.any():
        raise InputError(f"{source}: no measured value inside the brain (every voxel is missing); "
                         "check the file's values and grid coordinates")
    if measured.sum() <= cfg.k_max:
        raise ConfigError(f"{source}: {int(measured.sum())} experiments with data are too few for K up to "
                          f"{cfg.k_max}: use --k-max {max(2, int(measured.sum()) - 1)} or less, or more data")


def frame(result: dict, name: str) -> pd.DataFrame:
    """A DataFrame stored in a stage result (see :func:`osnmf.stagecache.frame_to_arrays`)."""
    return arrays_to_frame(name, result)


def _dask_client(address: str):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--scheduler needs dask.distributed: pip install 'osnmf[dist]'") from None
    if address == "local":  # one thread per worker: the solver holds the GIL between BLAS calls
        return Client(LocalCluster(processes=True, threads_per_worker=1, dashboard_address=None))
    try:
        return Client(address, timeout=30)
    except OSError as exc:
        raise ConfigError(f"--scheduler {address}: cannot reach the Dask scheduler ({exc})") from None


def run_pipeline(config: RunConfig) -> dict:
    """Run the whole pipeline for ``config``; returns the summary written to ``summary.json``."""
    return Pipeline(config).run()
