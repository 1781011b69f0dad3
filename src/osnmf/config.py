"""Run configuration: defaults, TOML loading and validation (unknown keys are errors)."""

from __future__ import annotations

import tomllib
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import get_args, get_origin, get_type_hints

from osnmf.errors import ConfigError, OsnmfDeprecationWarning
from osnmf.factorize.checks import check_grow, check_tol
from osnmf.factorize.selection import RULES
from osnmf.recipes import DEFAULT_RECIPE, RECIPE_SETTINGS, expand_recipe, run_settings

DEPRECATED = {"replicates": "n_replicates", "seed": "random_state", "jobs": "n_jobs"}  # old TOML key → name


@dataclass
class RunConfig:
    """Every setting of ``osnmf run``; a TOML file uses the same names (flat, or under ``[run]``).

    The names are the Python API's (``StaNMF(n_replicates=, n_restarts=, random_state=, n_jobs=)``)
    and the CLI's flags are the same with dashes (``--n-replicates``). The old names ``replicates``,
    ``seed`` and ``jobs`` (``--replicates``, ``--seed``, ``--jobs``, ``--restarts``) still work
    with a one-line deprecation warning (:data:`DEPRECATED`).

    ``recipe`` (default ``"paper"``, :mod:`osnmf.recipes`) sets ``grow``, ``solver``, ``k_rule``,
    ``pca_replicates``, ``moran_headline`` and ``recon_headline``; those fields are None unless set
    explicitly, and :meth:`settings` gives the values the run uses. Under ``"paper"`` an explicit
    value that contradicts the recipe is a :class:`ConfigError`.

    ``data`` is an ABA grid folder, Allen zip, ``.npz`` or ``.h5ad``; ``None`` means the synthetic
    atlas (``phantom_*`` settings; ``phantom_preset = "calibrated"``: the atlas calibrated to the
    real one's instability, which sets its own noise model so ``phantom_noise`` is not used).
    """

    data: str | None = None
    out: str = "osnmf_out"
    k_min: int = 8
    k_max: int = 30
    n_replicates: int = 100
    n_restarts: int = 1
    recipe: str = "paper"
    grow: bool | str | None = None
    solver: str | None = None
    k_rule: str | None = None
    backend: str = "numpy"
    device: str | None = None
    scheduler: str | None = None
    n_jobs: int = 2
    max_iter: int = 200
    tol: float = 1e-4
    random_state: int = 0
    impute: str = "knn"
    hemispheres: str = "auto"
    n_neighbors: int = 6
    support_max_missing: float = 0.95
    pca_replicates: int | None = None
    moran_replicates: int = 20
    moran_headline: str | None = None
    recon_headline: str | None = None
    link_sizes: list[int] = field(default_factory=lambda: [1, 2, 3])
    n_random_models: int = 1000
    network_top_fraction: float = 0.0025
    phantom_genes: int = 300
    phantom_patterns: int = 8
    phantom_noise: float = 0.15
    phantom_missing: float = 0.1
    phantom_seed: int = 0
    phantom_preset: str | None = None
    quiet: bool = False
    verbose: bool = False

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        if not 2 <= self.k_min <= self.k_max:
            raise ConfigError(f"k_min={self.k_min} and k_max={self.k_max}: need 2 <= k_min <= k_max "
                              "(one pattern is trivially stable)")
        if self.n_replicates < 2:
            raise ConfigError(f"n_replicates={self.n_replicates}: instability needs at least 2 replicates")
        if self.n_jobs < 1:
            raise ConfigError(f"n_jobs={self.n_jobs}: must be >= 1")
        if self.n_restarts < 1:
            raise ConfigError(f"n_restarts={self.n_restarts}: must be >= 1")
        if self.grow is not None:
            self.grow = check_grow(self.grow)
        choices = {"solver": (None, "auto", "exact", "compressed"), "backend": ("numpy", "torch"),
                   "impute": ("knn", "none"), "hemispheres": ("auto", "off", "drop"),
                   "phantom_preset": (None, "calibrated"), "k_rule": (None, *RULES),
                   "moran_headline": (None, "strongest", "continuous"), "recon_headline": (None, "measured", "imputed")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}: choose one of "
                                  f"{', '.join(str(a) for a in allowed if a is not None)}")
        if not 0 < self.support_max_missing <= 1:
            raise ConfigError("support_max_missing must be in (0, 1]")
        if self.n_neighbors < 1 or self.max_iter < 1:
            raise ConfigError("n_neighbors and max_iter must be >= 1")
        check_tol(self.tol)  # the solver's rule: finite and >= 0 (0 runs max_iter iterations)
        if any(s not in (1, 2, 3, 4, 5) for s in self.link_sizes):
            raise ConfigError(f"link_sizes={self.link_sizes}: sizes must be among 1..5")
        if self.pca_replicates is not None and self.pca_replicates < 2:
            raise ConfigError(f"pca_replicates={self.pca_replicates}: PCA instability needs at least 2 replicates")
        self.settings()  # the recipe and the explicit settings agree

    def _expanded(self) -> tuple[dict, dict]:
        explicit = {name: getattr(self, name) for name in RECIPE_SETTINGS[DEFAULT_RECIPE]}
        return expand_recipe(self.recipe, explicit, run_settings(self.n_replicates))

    def settings(self) -> dict:
        """The settings the recipe expanded to (explicit ones applied): grow, solver, k_rule,
        pca_replicates, moran_headline, recon_headline."""
        return self._expanded()[0]

    def recipe_overrides(self) -> dict:
        """The explicit settings that differ from the recipe's (allowed under ``"fast"`` only)."""
        return self._expanded()[1]

    @property
    def k_range(self) -> range:
        return range(self.k_min, self.k_max + 1)

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> RunConfig:
        """A validated copy with ``changes`` applied (``None`` values are ignored)."""
        values = self.to_dict()
        values.update({k: v for k, v in changes.items() if v is not None})
        return RunConfig(**values)


def config_keys() -> set[str]:
    return {f.name for f in fields(RunConfig)}


def _toml_types(key: str) -> tuple[type, ...]:
    """The types a TOML value of ``key`` may have: those of its RunConfig annotation, without None
    (``bool | str`` → (bool, str); ``list[int]`` → (list,))."""
    hint = get_type_hints(RunConfig)[key]
    parts = get_args(hint) if isinstance(hint, UnionType) else (hint,)
    return tuple(get_origin(t) or t for t in parts if t is not type(None))


def load_config(path: str | Path, base: RunConfig | None = None, overrides: dict | None = None) -> RunConfig:
    """Read a TOML config; unknown keys and wrong types are :class:`ConfigError`.

    ``overrides`` (e.g. command-line flags; None values ignored) win over the file's values, and
    the whole is checked once, so a flag may resolve what the file alone would contradict (a
    ``--recipe fast`` beside a file's ``grow = "only"``).
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    if set(raw) == {"run"} and isinstance(raw["run"], dict):
        raw = raw["run"]
    for old, new in DEPRECATED.items():
        if old in raw:
            if new in raw:
                raise ConfigError(f"{path}: both {old} and {new} are set; keep {new} ({old} is its deprecated name)")
            warnings.warn(f"{path}: key {old!r} is deprecated; call it {new!r}", OsnmfDeprecationWarning,
                          stacklevel=2)
            raw[new] = raw.pop(old)
    unknown = sorted(set(raw) - config_keys())
    if unknown:
        valid = ", ".join(sorted(config_keys()))
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {valid}")
    defaults = base or RunConfig()
    for key, value in raw.items():
        allowed = _toml_types(key)
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            value = raw[key] = float(value)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            names = " or ".join(t.__name__ for t in allowed)
            raise ConfigError(f"{path}: {key} = {value!r} should be of type {names}")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})  # after the file's own checks
    try:
        return defaults.replace(**raw)
    except ConfigError as exc:  # a value the settings refuse: say which file holds it
        raise ConfigError(f"{path}: {exc}") from None
