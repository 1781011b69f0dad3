"""Each run parameter is declared once, in :data:`osnmf.params_table.PARAMS`: RunConfig's fields and
defaults, the TOML type checks, ``osnmf run --help`` and StaNMF's signature agree with it."""

from __future__ import annotations

import inspect
import re
from dataclasses import MISSING, fields

import click
import pytest
import typer
from typer.testing import CliRunner

from osnmf import cli
from osnmf.config import RunConfig, load_config
from osnmf.constraints import Check, Interval, Options
from osnmf.errors import ConfigError
from osnmf.factorize.stanmf import StaNMF
from osnmf.factorize.sweep.plan import K_RANGE_DEFAULT
from osnmf.params_table import PARAMS, by_name, shown_default
from osnmf.recipes import RECIPE_SETTINGS


def test_run_config_fields_are_the_table():
    params = by_name()
    assert [f.name for f in fields(RunConfig)] == [p.name for p in PARAMS]
    for f in fields(RunConfig):
        default = f.default if f.default is not MISSING else f.default_factory()
        assert (f.type, default) == (params[f.name].type, params[f.name].default), f.name
    assert RunConfig().link_sizes is not RunConfig().link_sizes  # a list default is not shared
    assert set(RECIPE_SETTINGS["paper"]) <= {p.name for p in PARAMS if p.default is None}


def test_stanmf_signature_defaults_are_the_tables():
    """scikit-learn wants literal defaults in __init__; they must be the table's (n_jobs differs on
    purpose: the estimator runs serially unless asked, a run uses the 2 cores)."""
    params = by_name()
    signature = inspect.signature(StaNMF).parameters
    shared = set(signature) & set(params) - {"n_jobs"}
    assert {"n_replicates", "n_restarts", "recipe", "grow", "solver", "k_rule", "backend", "device", "max_iter",
            "tol", "random_state"} <= shared
    for name in shared:
        assert signature[name].default == params[name].default, name
    assert signature["k_range"].default is None
    assert K_RANGE_DEFAULT == range(params["k_min"].default, params["k_max"].default + 1)


def test_solver_defaults_below_the_table_are_the_tables():
    """The factorize layer sits below the table and keeps literal defaults; those of the shared names
    agree with it (the sweep's own grow/solver are the paper recipe's, which RunConfig leaves None)."""
    from osnmf.factorize.nmf.fits import fit_nmf, fit_nmf_replicates
    from osnmf.factorize.sweep.params import SweepParams

    params = by_name()
    for fn in (fit_nmf, fit_nmf_replicates):
        for name in ("max_iter", "tol", "backend", "device"):
            if name in inspect.signature(fn).parameters:
                assert inspect.signature(fn).parameters[name].default == params[name].default, (fn, name)
    sweep = {f.name: f.default for f in fields(SweepParams)}
    for name in ("n_restarts", "backend", "device", "max_iter", "tol", "random_state"):
        assert sweep[name] == params[name].default, name
    assert {"grow": sweep["grow"], "solver": sweep["solver"]} == {
        k: RECIPE_SETTINGS["paper"][k] for k in ("grow", "solver")}


def _help_records(command) -> dict[str, str]:
    """What ``--help`` shows for each visible option: its names with the metavar, and its help text."""
    with click.Context(command) as ctx:
        records = {p.name: p.get_help_record(ctx) for p in command.params if not getattr(p, "hidden", False)}
    return {name: f"{names} {' '.join(text.split())}" for name, (names, text) in records.items()}


def test_run_help_shows_each_flags_default_and_choices_once_from_the_table():
    command = typer.main.get_command(cli.app).commands["run"]
    flags = [p for p in PARAMS if p.flag]
    shown = _help_records(command)
    assert set(shown) == {"config", *(p.name for p in flags)}
    for p in flags:
        line = shown[p.name]
        assert line.startswith(", ".join(filter(None, (p.short, cli._flag(p))))), line
        default = shown_default(p)
        if default is not None:
            assert line.count(f"(default: {default})") == 1, line
        else:
            assert "(default" not in line, line
        if 0 < len(p.choices) <= cli.LONG_LIST:
            assert line.startswith(f"{cli._flag(p)} [{'|'.join(p.choices)}] ")
        for value in p.choices:
            assert re.search(rf"(?<![\w-]){value}(?![\w-])", line), line
        assert p.help in line, line
    assert CliRunner().invoke(cli.app, ["run", "--help"]).exit_code == 0


def test_choices_of_the_cli_are_the_tables():
    params = by_name()
    for flag, values in cli.CHOICES.items():
        if flag != "--plane":
            assert tuple(values) == params[flag[2:].replace("-", "_")].choices


@pytest.mark.parametrize("param", [p for p in PARAMS if isinstance(p.constraint, Interval | Options)],
                         ids=lambda p: p.name)
def test_each_constraint_refuses_in_one_line(param):
    bad = "nope" if isinstance(param.constraint, Options) else (param.constraint.low or 0) - 1
    changes = {param.name: bad}
    if param.name == "k_max":
        changes["k_min"] = 2
    with pytest.raises(ConfigError) as err:
        RunConfig(**changes)
    message = str(err.value)
    assert message.startswith(f"{param.name}={bad!r}: ") and "\n" not in message
    assert ("choose one of" if isinstance(param.constraint, Options) else "must be") in message


def test_rules_and_toml_types_come_from_the_table(tmp_path):
    assert isinstance(by_name()["grow"].constraint, Check)
    assert RunConfig(recipe="fast", grow="true").grow is True
    path = tmp_path / "run.toml"
    for key, value in (("n_neighbors", '"six"'), ("network_top_fraction", "true"), ("link_sizes", "3")):
        path.write_text(f"{key} = {value}\n")
        with pytest.raises(ConfigError, match=rf"{key} = .* should be of type"):
            load_config(path)
    path.write_text("support_max_missing = 1\n")
    assert load_config(path).support_max_missing == 1.0
