"""Run configuration: the settings of a run (from :mod:`osnmf.params_table`), TOML loading and validation
(unknown keys are errors)."""

from __future__ import annotations

import tomllib
import warnings
from dataclasses import asdict, dataclass, field, fields, make_dataclass
from pathlib import Path

from osnmf.errors import ConfigError, OsnmfDeprecationWarning
from osnmf.params_table import PARAMS, Param, by_name, check_values, value_types
from osnmf.recipes import DEFAULT_RECIPE, RECIPE_SETTINGS, expand_recipe, run_settings

DEPRECATED = {"replicates": "n_replicates", "seed": "random_state", "jobs": "n_jobs"}  # old TOML key → name


def _field(param: Param):
    if isinstance(param.default, list):  # a mutable default: each config gets its own copy
        return field(default_factory=lambda: list(param.default))
    return field(default=param.default)


# the fields, their types and defaults: one per parameter of the table, in its order
_Fields = make_dataclass("_Fields", [(p.name, p.type, _field(p)) for p in PARAMS])


@dataclass
class RunConfig(_Fields):
    """Every setting of ``osnmf run``; a TOML file uses the same names (flat, or under ``[run]``).

    The fields, their types, defaults and constraints are those of
    :data:`osnmf.params_table.PARAMS`. The names are the Python API's (``StaNMF(n_replicates=,
    n_restarts=, random_state=, n_jobs=)``) and the CLI's flags are the same with dashes
    (``--n-replicates``). The old names ``replicates``, ``seed`` and ``jobs`` (``--replicates``,
    ``--seed``, ``--jobs``, ``--restarts``) still work with a one-line deprecation warning
    (:data:`DEPRECATED`).

    ``recipe`` (default ``"paper"``, :mod:`osnmf.recipes`) sets ``grow``, ``solver``, ``k_rule``,
    ``pca_replicates``, ``moran_headline`` and ``recon_headline``; those fields are None unless set
    explicitly, and :meth:`settings` gives the values the run uses. Under ``"paper"`` an explicit
    value that contradicts the recipe is a :class:`ConfigError`.

    ``data`` is an ABA grid folder, Allen zip, ``.npz`` or ``.h5ad``; ``None`` means the synthetic
    atlas (``phantom_*`` settings; ``phantom_preset = "calibrated"``: the atlas calibrated to the
    real one's instability, which sets its own noise model so ``phantom_noise`` is not used).
    """

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Each value against its constraint in the table (normalised values kept), then the
        relations between them: k_min <= k_max, and the recipe with the explicit settings."""
        for name, value in check_values(self.to_dict()).items():
            setattr(self, name, value)
        if self.k_min > self.k_max:
            raise ConfigError(f"k_min={self.k_min}: must be <= k_max={self.k_max}")
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
    params = by_name()
    for key, value in raw.items():
        allowed = value_types(params[key])
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
