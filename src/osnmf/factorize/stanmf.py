"""``StaNMF``: stability-driven NMF, choosing the number of patterns K by stability.

For every K in ``k_range`` the estimator fits ``n_replicates`` perturbed NMF models (bootstrap of
the rows, random initialisations, or both), measures how much their patterns disagree
(:func:`osnmf.factorize.choose_k.stability.instability`), selects the most stable K
(:func:`osnmf.factorize.choose_k.stability.select_k`) and fits the final model at that K on the full data.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from osnmf.errors import ConfigError, InputError, InputTypeError, OsnmfWarning
from osnmf.factorize.checks import MAX_ITER, N_REPLICATES, N_RESTARTS, RANDOM_STATE, TOL, check, check_matrix
from osnmf.factorize.choose_k.certify import certified_argmins, certify_in_store
from osnmf.factorize.choose_k.kmin_check import k_min_check_in_store
from osnmf.factorize.choose_k.panel import selection_panel
from osnmf.factorize.choose_k.stability import instability, select_k
from osnmf.factorize.final_model import final_model
from osnmf.factorize.nmf.operators import ExactOperator, sketch_matrix
from osnmf.factorize.sweep.autosolver import resolve_solver, sketch_options
from osnmf.factorize.sweep.cost import exact_sweep_cost, slow_sweep_warning
from osnmf.factorize.sweep.memory import limit_heap_retention, release_free_memory
from osnmf.factorize.sweep.params import SweepParams
from osnmf.factorize.sweep.plan import SweepPlan, k_values
from osnmf.factorize.sweep.run import run_sweep
from osnmf.factorize.sweep.store import MemoryStore, ReplicatePatterns, SweepStore, open_store
from osnmf.progress import ProgressBar
from osnmf.recipes import SWEEP_SETTINGS, expand_recipe

__all__ = ["StaNMF", "check_nonnegative_matrix"]

INSTABILITY_COLUMNS = ["k", "hungarian", "hungarian_sd", "amari", "amari_sd",
                       "hungarian_se", "amari_se", "n_pairs"]


def check_nonnegative_matrix(X: Any, name: str = "X") -> np.ndarray:
    """``X`` as a 2-D float32 C-contiguous array: finite, non-negative, >= 2 rows, not all zero.

    Accepts numpy arrays, pandas DataFrames and scipy sparse matrices (densified); raises
    :class:`InputError` otherwise (see :func:`osnmf.factorize.checks.check_matrix`).
    """
    return check_matrix(X, name=name, min_shape=(2, 1), nonzero=True)


class StaNMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Stability-driven NMF (staNMF): choose K by the stability of replicate NMF patterns.

    Parameters
    ----------
    k_range : iterable of int or None, default None
        The numbers of patterns to try; None: 8..30 (the paper's range).
    n_replicates : int, default 100
        Perturbed fits per K (R); the instability averages over R(R-1)/2 pairs.
    recipe : {"paper", "fast"}, default "paper"
        Sets ``grow``, ``solver`` and ``k_rule`` (:mod:`osnmf.recipes`): "paper" is the seed
        paper's method (cold NNDSVDa fits of every bootstrap sample, exact products, K = γ argmin;
        γ(K) does not depend on the K range); "fast" grows each replicate from its K-1 fit, uses
        the compressed solver on large data and K by ``median3_near``. Explicit ``grow`` /
        ``solver`` / ``k_rule`` override "fast" and must agree with "paper".
    perturbation : {"bootstrap", "init", "both"}, default "bootstrap"
        "bootstrap" resamples the rows (genes) with replacement and keeps the deterministic
        NNDSVDa initialisation (the paper); "init" fits the full data from random
        initialisations (the original staNMF); "both" combines them.
    n_restarts : int, default 1
        Fits per replicate (restart 0: the perturbation's init; then random inits); the lowest
        loss is kept. The final model uses NNDSVDa plus ``n_restarts - 1`` random restarts.
    grow : {"only", True, False} or None, default None (the recipe's)
        How a replicate at K starts. Grown: from its own K-1 solution plus the leading component
        of that solution's positive residual (deterministic), which finds small patterns that
        NNDSVDa misses (see docs/stanmf.md). "only": the grown start alone at every K after the
        first of the range (NNDSVDa there), several times cheaper where NNDSVDa fits run to
        ``max_iter``; True: both starts at every K, the lower loss kept; False: the paper's
        recipe exactly (each replicate = scikit-learn's NMF of the resampled rows). The final
        model tries NNDSVDa and the grown full-data K-1 fit unless ``grow=False``.
    solver : {"auto", "exact", "compressed"} or None, default None (the recipe's)
        "compressed" fits a randomised low-rank sketch of X (computed once per sweep); "auto"
        picks it for large matrices, "exact" otherwise (:mod:`osnmf.factorize.sweep.autosolver`).
    k_rule : str or None, default None (the recipe's)
        The rule that selects ``k_`` from the K-selection panel
        (:data:`osnmf.factorize.choose_k.criteria.RULES`; "gamma_argmin" is the paper's).
    backend : {"numpy", "torch"}, default "numpy"
    device : str or None
        Torch device (e.g. "cuda"), ignored by numpy.
    centered : bool, default False
        Pattern correlation: uncentred (reference code) or Pearson.
    max_iter, tol
        NMF stopping rule (scikit-learn's defaults 200 and 1e-4, as in the paper).
    random_state : int, default 0
        Root seed; replicate r draws its bootstrap from ``default_rng([random_state, r])``.
    n_jobs : int, default 1
        Blocks fitted at once (threads). The fit runs BLAS on one thread whatever ``n_jobs``, so the
        result does not depend on it (nor on a resumed store).
    store : path or None
        Folder for a resumable on-disk sweep (see :mod:`osnmf.factorize.sweep.run`); None keeps
        everything in memory.
    progress : bool, default False
        Show a progress bar with ETA.
    block_size : int or None
        Replicates fitted together in one batched call (None: the blocks running at once hold
        about half of size(X); see :func:`osnmf.factorize.sweep.params.auto_block_size`).
    sketch : dict or None
        Options of the compressed solver, passed through.
    keep_coefficients : bool, default False
        Keep replicate coefficients (R, n, k) in the store/memory too.
    client : dask.distributed.Client, executor or None
        Run the sweep blocks on a Dask cluster (``n_jobs`` is then ignored); X is sent to each
        worker once and results stream into ``store`` (see :mod:`osnmf.factorize.sweep.executors`).
        Not part of the run key: a local and a distributed fit give the same model.
    certify : int, default 30
        After a compressed sweep, refit this many replicates with the exact solver over every K
        near the γ minimum (γ ≤ max(min + SE, 2 min), and the selected K ± 1; a contiguous range)
        (:mod:`osnmf.factorize.choose_k.certify`) and report their γ in ``instability_`` (columns
        ``hungarian_exact``, ``hungarian_compressed_subset``, ``n_certified``) beside the full
        sweep's ``hungarian``; skipped (``certificate_`` None) when 0 or when those refits would
        be more than a quarter of the sweep's fits (a subset of a small sweep is no check). After
        a chained sweep (``grow``) the same number of replicates is also refitted from a later
        chain start (:mod:`osnmf.factorize.choose_k.kmin_check`, ``k_min_check_``).

    ``__init__`` only stores the parameters (scikit-learn convention); every check happens in
    :meth:`fit`, in one place (:meth:`_validated`), with one-line :class:`ConfigError` /
    :class:`InputError` messages (both subclass ``ValueError``). ``get_params``, ``set_params``,
    ``clone`` and the repr come from :class:`sklearn.base.BaseEstimator`.

    Attributes
    ----------
    instability_ : DataFrame, one row per K
        Columns k, hungarian, hungarian_sd, amari, amari_sd, hungarian_se, amari_se, n_pairs.
    k_ : int
        Selected K: the K of ``k_rule_`` (γ argmin under the paper's recipe); a one-line warning
        says so when it differs from the γ argmin.
    recipe_settings_ : dict, the settings the recipe expanded to (``grow``, ``solver``,
        ``k_rule``) with explicit ones applied; ``recipe_overrides_`` the explicit ones that differ.
    k_rule_ : str, the rule that chose ``k_``.
    components_ : (k_, m) float ndarray, patterns of the final model.
    coefficients_ : (n, k_) float ndarray, coefficients of the final model.
    loss_, n_iter_ : loss and iterations of the final model.
    replicates_ : mapping k -> (R, k, m) replicate patterns (lazily read when a store is used).
    replicate_info_ : DataFrame k, replicate, loss, n_iter, restart of every replicate fit.
    selection_ : DataFrame, one row per K: the K-selection panel (γ ± SE, out-of-bag
        bi-cross-validation error ± SE, consensus cophenetic correlation and dispersion,
        in-sample reconstruction error ± SE; see :mod:`osnmf.factorize.choose_k.criteria`).
    k_rules_ : dict rule name -> K selected by that rule (``k_`` is the default rule's).
    store_ : SweepStore or None.
    sketch_ : the compressed solver's Sketch of X, or None.
    solver_ : "exact" or "compressed", the solver the sweep ran ("auto" resolved).
    certificate_ : DataFrame k, hungarian_exact, hungarian_compressed_subset, n_certified, or None.
    certified_agrees_ : bool or None, whether the exact refits' argmin equals the compressed one.
    k_min_check_ : DataFrame or None, after a chained sweep (``grow``): γ of the first replicates
        from the sweep's chain and from a chain started at the selected K − 1, and |Δγ|
        (:data:`osnmf.factorize.choose_k.kmin_check.CHECK_COLUMNS`); None under ``grow=False``.
    n_features_in_ : int, m; feature_names_in_ : column names when X was a DataFrame.
    """

    def __init__(
        self,
        k_range=None,
        n_replicates: int = N_REPLICATES,
        recipe: str = "paper",
        perturbation: str = "bootstrap",
        n_restarts: int = N_RESTARTS,
        grow: bool | str | None = None,
        solver: str | None = None,
        k_rule: str | None = None,
        backend: str = "numpy",
        device: str | None = None,
        centered: bool = False,
        max_iter: int = MAX_ITER,
        tol: float = TOL,
        random_state: int = RANDOM_STATE,
        n_jobs: int = 1,
        store: str | os.PathLike | None = None,
        progress: bool = False,
        block_size: int | None = None,
        sketch: Mapping[str, Any] | None = None,
        keep_coefficients: bool = False,
        client: Any = None,
        certify: int = 30,
    ):  # scikit-learn convention: store the parameters, check nothing here
        self.k_range = k_range
        self.n_replicates = n_replicates
        self.recipe = recipe
        self.perturbation = perturbation
        self.n_restarts = n_restarts
        self.grow = grow
        self.solver = solver
        self.k_rule = k_rule
        self.backend = backend
        self.device = device
        self.centered = centered
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.store = store
        self.progress = progress
        self.block_size = block_size
        self.sketch = sketch
        self.keep_coefficients = keep_coefficients
        self.client = client
        self.certify = certify

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True  # NMF: negative entries are refused
        tags.input_tags.allow_nan = False  # impute first (osnmf.impute_knn)
        tags.input_tags.sparse = True  # accepted, densified once (the solver is dense)
        return tags

    @property
    def _n_features_out(self) -> int:  # get_feature_names_out: stanmf0 .. stanmf{k_-1}
        return int(self.k_)

    def _recipe(self) -> dict[str, Any]:
        """The recipe's settings with the explicit ``grow`` / ``solver`` / ``k_rule`` applied (checked)."""
        return self._expanded()[0]

    def _expanded(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """:meth:`_recipe`'s settings, and the explicit ones that differ from the recipe's."""
        from osnmf.factorize.choose_k.criteria import RULES

        explicit = {"grow": None if self.grow is None else check("grow", self.grow), "solver": self.solver,
                    "k_rule": self.k_rule}
        settings, overrides = expand_recipe(self.recipe, explicit, SWEEP_SETTINGS)
        if settings["k_rule"] not in RULES:
            raise ConfigError(f"k_rule={settings['k_rule']!r}: must be one of {', '.join(RULES)}")
        return settings, overrides

    def _params(self, solver: str = "exact", sketch: Mapping[str, Any] | None = None) -> SweepParams:
        """The sweep parameters for the resolved ``solver`` ("exact" or "compressed"), checked, each
        by its one rule, in :class:`SweepParams`; ``sketch``: the compressed solver's options."""
        return SweepParams(
            perturbation=self.perturbation, n_restarts=self.n_restarts, grow=self._recipe()["grow"],
            solver=solver, backend=self.backend, device=self.device,
            max_iter=self.max_iter, tol=self.tol, random_state=self.random_state,
            keep_coefficients=self.keep_coefficients, sketch=self.sketch if sketch is None else sketch,
        )

    def _validated(self, X: Any) -> tuple[np.ndarray, SweepPlan, dict[str, Any], dict[str, Any]]:
        """Every check of ``fit``: the data and all parameters, each by one rule; sets no attribute
        but scikit-learn's ``n_features_in_`` / ``feature_names_in_``.

        Returns X (float32, C order), the sweep's plan (K values, R, block size, parameters, with
        "auto" resolved to the solver this data gets) and the recipe's settings and overrides.
        """
        try:  # shape, sparse/DataFrame input, n_features_in_ / feature_names_in_
            X = validate_data(self, X, accept_sparse=("csr", "csc", "coo"), dtype=np.float32,
                              ensure_min_samples=2, ensure_all_finite=False)
        except (ValueError, TypeError) as exc:
            raise _input_error(exc) from None
        X = check_nonnegative_matrix(X)
        ks = k_values(self.k_range, *X.shape)
        settings, overrides = self._expanded()
        solver = resolve_solver(settings["solver"], X.shape, ks[-1], self.sketch)
        params = self._params(solver, sketch_options(self.sketch) if solver == "compressed" else None)
        plan = SweepPlan.make(X.shape, ks, params, self.n_replicates, self.block_size, self.n_jobs, self.client)
        check("certify", self.certify)
        return X, plan, settings, overrides

    def fit(self, X: Any, y: Any = None) -> StaNMF:
        """Run the sweep over ``k_range``, select K, fit the final model.

        Parameters
        ----------
        X : (n, m) non-negative matrix, rows = samples (genes / images), columns = voxels
            (pixels). Held once as float32.
        y : ignored.

        Returns
        -------
        self
        """
        X, plan, self.recipe_settings_, self.recipe_overrides_ = self._validated(X)
        self.solver_ = plan.params.solver
        limit_heap_retention()  # freed worker-thread heap tops go back to the OS (osnmf.factorize.sweep.memory)
        # one BLAS thread for every step (sweep, γ, certification, final model): the results never
        # depend on n_jobs or on which step first formed the shared Gram, so a resumed fit equals
        # an uninterrupted one to the bit
        with plan.blas_threads():
            return self._fit(X, plan)

    def _fit(self, X: np.ndarray, plan: SweepPlan) -> StaNMF:
        """The steps of :meth:`fit` on the checked ``X`` and ``plan`` (BLAS threads pinned by the caller)."""
        store = open_store(self.store, X, plan.params)  # on disk, or its in-memory twin
        op = self._sweep(X, plan, store)
        self.instability_, self.replicate_info_ = self._instability(plan, store)
        self.selection_, self.k_rules_ = selection_panel(X, plan, store, self.instability_, self.replicate_info_,
                                                         self.progress)
        self.k_rule_ = self.recipe_settings_["k_rule"]
        self.k_ = _chosen_k(self.k_rules_, self.instability_, self.k_rule_)
        self.replicates_ = ReplicatePatterns(store, plan.ks, plan.n_replicates, plan.block_size)
        self.store_ = store if store.on_disk else None
        # certification and the final model share one exact operator (its n × n Gram, formed for
        # the NNDSVDa starts, is computed once)
        exact = op if isinstance(op, ExactOperator) else ExactOperator(X)
        release_free_memory()
        self._certify(exact, plan, store)
        self._check_k_min(op, plan, store)
        if exact is not op:  # the final model starts on the sketch: its polish needs no Gram
            exact.forget_gram()
        release_free_memory()
        self._fit_final(op, exact, plan, store)
        store.close()  # in memory: the blocks go, the patterns stay (replicates_)
        return self

    def _sweep(self, X: np.ndarray, plan: SweepPlan, store: SweepStore | MemoryStore) -> Any:
        """Every block of the plan into ``store`` (those already there kept); returns the data
        operator, prepared once: the sketch (compressed) or X with its cached Gram, shared by
        every block, the certification and the final model."""
        params = plan.params
        if params.solver == "compressed":
            op = sketch_matrix(X, **{"random_state": params.random_state, **dict(params.sketch)})
        else:
            op = ExactOperator(X)
        self.sketch_ = op if params.solver == "compressed" else None
        self._warn_if_long(X, plan, store)
        # a Dask cluster gets X once and makes the exact operator itself
        sketch = op if (params.solver == "compressed" or plan.client is None) else None
        with plan.blas_threads():
            run_sweep(X, plan.blocks, params, store=store, executor=plan.executor(),
                      progress=self.progress, keep_results=False, sketch=sketch)
        release_free_memory()  # what the blocks' threads freed (osnmf.factorize.sweep.memory)
        return op

    @staticmethod
    def _warn_if_long(X: np.ndarray, plan: SweepPlan, store: SweepStore | MemoryStore) -> None:
        """One warning line, before the blocks start, when the cold exact fits still to run
        (the paper recipe's sweep) may take over an hour on this machine (:mod:`osnmf.factorize.sweep.cost`)."""
        params = plan.params
        if params.solver != "exact" or params.grow or params.backend != "numpy" or plan.client is not None:
            return
        to_fit: dict[int, int] = {}
        for spec in plan.blocks:
            if not store.has(spec):
                to_fit[spec.k] = to_fit.get(spec.k, 0) + spec.n
        cost = exact_sweep_cost(X, to_fit, params.max_iter, plan.block_size)
        line = slow_sweep_warning(cost, X.shape, plan.ks)
        if line:
            warnings.warn(line, OsnmfWarning, stacklevel=4)

    def _instability(self, plan: SweepPlan, store: SweepStore | MemoryStore) -> tuple[pd.DataFrame, pd.DataFrame]:
        """γ per K (kept in the store per K) and the per-replicate numbers of every fit."""
        R, bs = plan.n_replicates, plan.block_size
        rows, info = [], []
        tag = {"centered": bool(self.centered), "n_replicates": R, "block_size": bs}
        with ProgressBar("staNMF instability per K", len(plan.ks), enabled=self.progress, transient=False) as bar:
            for k in plan.ks:
                # every block read (on disk: CRC checked, the patterns left there and read in chunks)
                res = store.load_k(k, R, bs, components=False)
                name = f"k{k:03d}/instability.json"
                vals = store.get_values(name, tag)
                if vals is None:
                    vals = instability(store.patterns(k, R, bs), centered=self.centered)
                    store.put_values(name, tag, vals)
                release_free_memory()
                rows.append({"k": k, **vals})
                info.append(pd.DataFrame({"k": k, "replicate": res.seeds, "loss": res.loss,
                                          "n_iter": res.n_iter, "restart": res.restart}))
                bar.advance(note=f"K={k}")
        return pd.DataFrame(rows, columns=INSTABILITY_COLUMNS), pd.concat(info, ignore_index=True)

    def _certify(self, exact: ExactOperator, plan: SweepPlan, store: SweepStore | MemoryStore) -> None:
        """Exact refits near the γ minimum after a compressed sweep (see ``certify``)."""
        self.certificate_, self.certified_agrees_ = None, None
        done = certify_in_store(exact, plan, store, self.k_, self.instability_, self.certify,
                                centered=self.centered, progress=self.progress)
        if done is None:
            return
        table, agrees = done
        n_cert = min(int(self.certify), plan.n_replicates)
        self.certificate_, self.certified_agrees_ = table, agrees
        self.instability_ = self.instability_.merge(table, on="k", how="left")
        if not agrees:
            exact_k, comp_k = certified_argmins(table)
            advice = ("the selected K is the exact refits' choice" if exact_k == self.k_
                      else "rerun with solver='exact' to decide")
            warnings.warn(f"certification: on {n_cert} replicates the exact refits put the smallest γ at "
                          f"K = {exact_k}, the compressed fits of the same replicates at K = {comp_k} "
                          f"(selected from all {plan.n_replicates}: K = {self.k_}); {advice}", OsnmfWarning,
                          stacklevel=4)

    def _check_k_min(self, op: Any, plan: SweepPlan, store: SweepStore | MemoryStore) -> None:
        """After a chained sweep, γ of a replicate subset from a later chain start (see ``certify``)."""
        self.k_min_check_ = k_min_check_in_store(op, plan, store, self.k_, lambda k: self.replicates_[k],
                                                 self.certify, centered=self.centered, progress=self.progress)

    def _fit_final(self, op: Any, exact: ExactOperator, plan: SweepPlan, store: SweepStore | MemoryStore) -> None:
        """The final model at ``k_`` (:mod:`osnmf.factorize.final_model`), kept in the store."""
        model = final_model(op, exact, self.k_, plan.params, store, self.progress)
        self.components_, self.coefficients_ = np.asarray(model.D), np.asarray(model.A)
        self.loss_, self.n_iter_ = float(model.loss), int(model.n_iter)

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit and return the final model's coefficients (n, k_) as float64."""
        return self.fit(X).coefficients_.astype(np.float64)

    def transform(self, X: Any) -> np.ndarray:
        """Coefficients (n, k_) of samples ``X`` (n, m) on the fitted patterns, float64.

        Non-negative least squares onto ``components_`` row by row
        (:func:`osnmf.factorize.nmf.projection.nnls_project`); equals ``scipy.optimize.nnls``.
        """
        from osnmf.factorize.nmf.projection import nnls_project

        check_is_fitted(self, "components_")
        if not (hasattr(X, "columns") or hasattr(X, "toarray")) and np.asarray(X).ndim == 1:
            X = np.asarray(X)[None, :]  # one sample given as a vector: (1, m)
        try:  # same columns as at fit (count and names), 2-D, numeric, finite
            X = validate_data(self, X, accept_sparse=("csr", "csc", "coo"), reset=False,
                              dtype=(np.float64, np.float32), ensure_all_finite=False)
        except (ValueError, TypeError) as exc:
            raise _input_error(exc) from None
        return np.asarray(nnls_project(X, self.components_), dtype=np.float64)


def _input_error(exc: Exception) -> InputError:
    """scikit-learn's input check failure as osnmf's one-line error (same message and kind)."""
    if isinstance(exc, InputError):
        return exc
    kind = InputTypeError if isinstance(exc, TypeError) else InputError
    return kind(f"X: {exc}")


def _chosen_k(rules: Mapping[str, int | None], inst: pd.DataFrame, rule: str) -> int:
    """K of ``rule`` (γ argmin if it has none); one warning line when it is not the γ argmin."""
    k = rules.get(rule)
    argmin = select_k(inst)
    k = int(k) if k is not None else argmin
    if k != argmin:
        warnings.warn(f"K = {k} chosen by the rule {rule}; the smallest instability γ is at K = {argmin} "
                      "(the paper's choice: recipe='paper' or k_rule='gamma_argmin')", OsnmfWarning, stacklevel=4)
    return k
