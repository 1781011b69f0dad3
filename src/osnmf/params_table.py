"""The run parameters, each declared once: name, type, default, constraint and one line of help.

:class:`~osnmf.config.RunConfig` takes its fields, defaults and checks from :data:`PARAMS`, a TOML
file's values are type-checked against :attr:`Param.type`, and ``osnmf run`` builds one option per
parameter marked ``flag`` (help, choices and the default it shows come from here). The estimator
:class:`~osnmf.factorize.stanmf.StaNMF` must keep literal defaults in its signature (scikit-learn's
rule); tests/test_params_table.py checks that those of the shared names equal the table's.

Settings a recipe decides (:data:`~osnmf.recipes.RECIPE_SETTINGS`: grow, solver, k_rule,
pca_replicates, moran_headline, recon_headline) default to None, "the recipe's".
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real
from types import UnionType
from typing import Any, get_args, get_origin

from osnmf.constraints import SEED, Check, Interval, Options
from osnmf.datasets.phantom_parts import RULES as PHANTOM
from osnmf.factorize import checks
from osnmf.factorize.checks import BACKENDS
from osnmf.factorize.choose_k.criteria import RULES
from osnmf.factorize.sweep.plan import K_RANGE_DEFAULT
from osnmf.io.cells import CELL_VALUES
from osnmf.preprocess.hemispheres import HEMISPHERE_MODES
from osnmf.recipes import DEFAULT_RECIPE, RECIPE_SETTINGS, RECIPES
from osnmf.spatial.linking import LINK_SIZES, MIN_MEMBER_SHARE, TIE_TOLERANCE

__all__ = ["PARAMS", "Param", "by_name", "check_values", "shown_default", "value_types"]


def _link_sizes(sizes: Any) -> list[int]:
    """A non-empty list of distinct sizes among :data:`~osnmf.spatial.linking.LINK_SIZES`."""
    if (not isinstance(sizes, list | tuple) or not sizes or len(set(sizes)) != len(sizes)
            or any(isinstance(s, bool) or s not in LINK_SIZES for s in sizes)):
        raise ValueError(sizes)
    return [int(s) for s in sizes]


def _count(low: int, why: str = "") -> Interval:
    return Interval(Integral, low, why=why)


@dataclass(frozen=True)
class Param:
    """One run parameter. ``flag``: an option of ``osnmf run`` (``--name-with-dashes``, ``short``
    its one-letter alias); ``none_means``: what a None default stands for in help."""

    name: str
    type: Any
    default: Any
    constraint: Interval | Options | Check | None
    help: str
    flag: bool = False
    short: str | None = None
    none_means: str | None = None

    @property
    def choices(self) -> tuple[Any, ...]:
        """The values offered on the command line (empty when any value of the type will do)."""
        return getattr(self.constraint, "choices", ())

    def check(self, value: Any) -> Any:
        """The value, checked (and normalised, e.g. ``grow="true"`` → True); None passes when the
        default is None."""
        if self.constraint is None or (value is None and self.default is None):
            return value
        return self.constraint.check(self.name, value)


PARAMS: tuple[Param, ...] = (
    Param("data", str | None, None, None, "ABA grid folder, Allen zip, .npz or .h5ad (voxels or cells × genes)",
          flag=True, none_means="synthetic"),
    Param("coords", str | None, None, None, "CSV of the cells' CCF coordinates in mm (cell_label, x, y, z) for a "
          "cells × genes .h5ad without obs x, y, z", flag=True, none_means="obs x, y, z"),
    Param("min_cells", int, 3, Interval(Integral, 1), "Fewest cells a voxel needs for a cells .h5ad (fewer: missing)",
          flag=True),
    Param("cell_values", str, "auto", Options(CELL_VALUES), "X of a cells .h5ad: raw counts (log1p applied), "
          "log values (used as they are), or auto (integers are counts)", flag=True),
    Param("out", str, "osnmf_out", None, "Run directory (created; reruns resume here)", flag=True),
    Param("k_min", int, K_RANGE_DEFAULT.start, _count(2, "one pattern is trivially stable"), "Smallest K of the sweep",
          flag=True),
    Param("k_max", int, K_RANGE_DEFAULT.stop - 1, _count(2), "Largest K of the sweep", flag=True),
    Param("n_replicates", int, checks.N_REPLICATES, checks.RULES["n_replicates"], "Bootstrap replicates per K",
          flag=True),
    Param("n_restarts", int, checks.N_RESTARTS, checks.RULES["n_restarts"], "NMF fits per replicate, best kept",
          flag=True),
    Param("recipe", str, DEFAULT_RECIPE, Options(RECIPES),
          "paper: the seed paper's method (cold NNDSVDa fits, exact solver, K = γ argmin, PCA on the same "
          "replicates, strongest-pattern Moran's I, reconstruction on measured voxels); fast: grown starts, "
          "sketch on large data, K by median3_near (see docs/stanmf.md)", flag=True),
    Param("grow", bool | str | None, None, checks.RULES["grow"],
          "Start each replicate at K from its own K-1 fit: only (instead of cold starts), true (as well) "
          "or false (cold starts only)", flag=True),
    Param("solver", str | None, None, checks.RULES["solver"],
          "NMF products with X itself (exact), with a sketch of it (compressed) or chosen by size (auto)",
          flag=True),
    Param("k_rule", str | None, None, Options(RULES),
          "Rule that selects K from the panel (definitions in docs/stanmf.md)", flag=True),
    Param("backend", str, BACKENDS[0], checks.RULES["backend"], "Array library of the NMF solver", flag=True),
    Param("device", str | None, None, None, "torch device, e.g. cuda or cpu", flag=True),
    Param("scheduler", str | None, None, None, "Dask scheduler address, or 'local'", flag=True),
    Param("n_jobs", int, 2, checks.RULES["n_jobs"], "Parallel threads for the sweep", flag=True),
    Param("max_iter", int, checks.MAX_ITER, checks.RULES["max_iter"], "Most iterations of one NMF fit"),
    Param("tol", float, checks.TOL, checks.RULES["tol"],
          "Stopping tolerance of the NMF solver (0 runs max_iter iterations)"),
    Param("random_state", int, checks.RANDOM_STATE, checks.RULES["random_state"],
          "Random seed, in [0, 2**32 - 1] (a numpy seed)", flag=True),
    Param("impute", str, "knn", Options(("knn", "none")), "Missing voxels: kNN imputation, or none"),
    Param("hemispheres", str, "auto", Options(HEMISPHERE_MODES),
          "One-hemisphere (sagittal) experiments: mirrored (auto), kept as measured (off) or left out (drop)",
          flag=True),
    Param("n_neighbors", int, 6, _count(1), "Neighbours of the kNN imputation (at most the fewest measured "
          "brain voxels of an experiment)"),
    Param("support_max_missing", float, 0.95, Interval(Real, 0, 1, closed="right"),
          "Largest share of experiments missing at a voxel of the support"),
    Param("pca_replicates", int | None, None, _count(2, "PCA instability needs at least 2 replicates"),
          "Bootstrap replicates of the PCA baseline"),
    Param("moran_replicates", int, 20, _count(2, "the Moran's I comparison tests two samples of replicates"),
          "Replicates whose patterns get Moran's I"),
    Param("moran_headline", str | None, None, Options(("strongest", "continuous")),
          "Moran's I reported first: of the strongest-pattern binary maps, or of the continuous patterns"),
    Param("recon_headline", str | None, None, Options(("measured", "imputed")),
          "Reconstruction accuracy reported first: on the measured voxels, or on the imputed matrix"),
    Param("link_sizes", list[int], list(LINK_SIZES),
          Check(_link_sizes, "a non-empty list of distinct sizes among " + ", ".join(map(str, LINK_SIZES))),
          "Sizes of the pattern groups linked to regions"),
    Param("link_min_share", float, MIN_MEMBER_SHARE, Interval(Real, 0, 0.5, closed="both"),
          "Smallest share of a linked union's voxels each member region must hold (no big region plus a "
          "tiny nucleus); 0 scores every contiguous set"),
    Param("link_tie_tolerance", float, TIE_TOLERANCE, Interval(Real, 0),
          "A pattern's link is the smallest region set whose r is within this of the best of any size"),
    Param("n_random_models", int, 1000, _count(1), "Random models of the region-prediction null"),
    Param("network_top_fraction", float, 0.0025, Interval(Real, 0, 1, closed="right"),
          "Share of the strongest gene pairs kept in the networks"),
    Param("phantom_genes", int, 300, PHANTOM["n_genes"], "Genes of the synthetic atlas"),
    Param("phantom_patterns", int, 8, PHANTOM["n_patterns"], "Planted patterns of the synthetic atlas"),
    Param("phantom_noise", float, 0.15, PHANTOM["noise"], "Noise level of the synthetic atlas"),
    Param("phantom_missing", float, 0.1, PHANTOM["missing"], "Share of missing voxels of the synthetic atlas"),
    Param("phantom_seed", int, 0, SEED, "Seed of the synthetic atlas"),
    Param("phantom_preset", str | None, None, Options(("calibrated",)),
          "calibrated: the synthetic atlas calibrated to the real one's instability (its own noise model)"),
    Param("quiet", bool, False, None, "Only warnings and errors (no stage lines, no progress bars)", flag=True,
          short="-q"),
    Param("verbose", bool, False, None, "Also details: cache keys, and library warnings (numpy, scikit-learn) "
          "that are hidden by default", flag=True, short="-v"),
)


def by_name() -> dict[str, Param]:
    return {p.name: p for p in PARAMS}


def check_values(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (name → value) checked against each parameter's constraint, normalised ones replaced."""
    params = by_name()
    return {name: params[name].check(value) for name, value in values.items()}


def value_types(param: Param) -> tuple[type, ...]:
    """The types a (TOML) value may have: those of the declared type without None
    (``bool | str | None`` → (bool, str); ``list[int]`` → (list,))."""
    parts = get_args(param.type) if isinstance(param.type, UnionType) else (param.type,)
    return tuple(get_origin(t) or t for t in parts if t is not type(None))


def _spell(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def shown_default(param: Param) -> str | None:
    """The default as help shows it: ``8``, ``synthetic``, or a recipe's setting ("the recipe's;
    paper = exact, fast = auto"); None when there is nothing to show (a switch, a free None)."""
    if param.name in RECIPE_SETTINGS[DEFAULT_RECIPE]:
        return "the recipe's; " + ", ".join(f"{name} = {_spell(table[param.name])}"
                                            for name, table in RECIPE_SETTINGS.items())
    if param.type is bool:
        return None
    return _spell(param.default) if param.default is not None else param.none_means
