"""The two recipes of a run, and the one place that expands them into settings.

* ``"paper"`` (the default) — the seed paper's method: every replicate is a cold NNDSVDa fit of
  its bootstrap sample (``grow=False``), products with ``X`` itself (``solver="exact"``, equal to
  scikit-learn's coordinate descent to rounding), K = the γ argmin, PCA under the same bootstrap
  replicates as staNMF (100 by default),
  Moran's I of the strongest-pattern binary maps as the headline, reconstruction accuracy scored
  on the measured (not imputed) voxels.
* ``"fast"`` — our speed recipe: each replicate at K grown from its own K−1 fit (``grow="only"``),
  the compressed solver for large matrices (``solver="auto"``), K by ``median3_near``, 20 PCA
  replicates, continuous Moran's I and reconstruction scored on the imputed matrix as headlines.
  Its γ(K) depends on ``k_min`` (the chain starts there); see docs/stanmf.md.

A setting given explicitly wins under ``"fast"`` (the run records it as an override); under
``"paper"`` a setting that contradicts the recipe is refused, since the run would no longer be
the paper's method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from osnmf.errors import ConfigError

__all__ = ["DEFAULT_RECIPE", "RECIPES", "RECIPE_SETTINGS", "SWEEP_SETTINGS", "expand_recipe", "run_settings"]

DEFAULT_RECIPE = "paper"
#: Settings of the staNMF estimator each recipe fixes.
SWEEP_SETTINGS: dict[str, dict[str, Any]] = {
    "paper": {"grow": False, "solver": "exact", "k_rule": "gamma_argmin"},
    "fast": {"grow": "only", "solver": "auto", "k_rule": "median3_near"},
}
#: Settings of a whole run each recipe fixes (the estimator's and the comparison's).
RECIPE_SETTINGS: dict[str, dict[str, Any]] = {
    "paper": {**SWEEP_SETTINGS["paper"], "pca_replicates": "n_replicates", "moran_headline": "strongest",
              "recon_headline": "measured"},
    "fast": {**SWEEP_SETTINGS["fast"], "pca_replicates": 20, "moran_headline": "continuous",
             "recon_headline": "imputed"},
}
RECIPES = tuple(RECIPE_SETTINGS)


def run_settings(n_replicates: int) -> dict[str, dict[str, Any]]:
    """:data:`RECIPE_SETTINGS` with the paper's PCA replicates set to the sweep's ``n_replicates``."""
    return {name: {k: (n_replicates if v == "n_replicates" else v) for k, v in table.items()}
            for name, table in RECIPE_SETTINGS.items()}


def _same(a: Any, b: Any) -> bool:
    """Equal settings, with ``bool`` and ``str`` kept apart (``grow=False`` is not ``"false"``)."""
    return type(a) is type(b) and a == b


def expand_recipe(recipe: str, explicit: Mapping[str, Any], table: Mapping[str, Mapping[str, Any]] = RECIPE_SETTINGS,
                  where: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings of ``recipe`` with the ``explicit`` ones (not None) applied.

    Parameters
    ----------
    recipe : "paper" or "fast".
    explicit : name → value given by the user; None means "the recipe's".
    table : :data:`RECIPE_SETTINGS` (a run) or :data:`SWEEP_SETTINGS` (the estimator).
    where : prefix of error messages (e.g. a config file's path).

    Returns
    -------
    (settings, overrides): every setting of the recipe with its value, and the explicit ones that
    differ from the recipe's.

    Raises
    ------
    ConfigError
        An unknown recipe, or under ``"paper"`` an explicit setting that contradicts it.
    """
    if recipe not in table:
        raise ConfigError(f"{where}recipe={recipe!r}: must be one of {', '.join(table)}")
    settings = dict(table[recipe])
    overrides = {k: v for k, v in explicit.items() if k in settings and v is not None and not _same(v, settings[k])}
    if recipe == "paper" and overrides:
        name, value = next(iter(overrides.items()))
        raise ConfigError(f"{where}{name}={value!r} contradicts recipe='paper' (which sets {name}="
                          f"{settings[name]!r}); drop it to run the paper's method, or use recipe='fast' "
                          "to choose settings yourself")
    settings.update(overrides)
    return settings, overrides
