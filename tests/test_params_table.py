"""Each run parameter is declared once, in :data:`osnmf.params_table.PARAMS`: RunConfig's fields and
defaults, the TOML type checks, ``osnmf run --help`` and StaNMF's signature agree with it."""

from __future__ import annotations

import inspect
import re
from dataclasses import MISSING, fields
from pathlib import Path

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
    assert ("must be one of" if isinstance(param.constraint, Options) else "must be") in message


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


def test_integer_parameters_refuse_non_integers_at_once():
    """Interval knows integers: a fraction, a bool or a string is refused when the config is made,
    in the one format; numpy integers are taken as ints."""
    import numpy as np

    with pytest.raises(ConfigError) as err:
        RunConfig(n_replicates=2.5)
    assert str(err.value) == "n_replicates=2.5: must be an integer >= 2 (instability needs at least 2 replicates)"
    for name, bad in (("k_min", 3.0), ("max_iter", True), ("n_jobs", "2"), ("moran_replicates", 2.5),
                      ("phantom_genes", 10.5)):
        with pytest.raises(ConfigError) as err:
            RunConfig(**{name: bad})
        assert str(err.value).startswith(f"{name}={bad!r}: must be an integer"), err.value
    cfg = RunConfig(n_replicates=np.int64(5), k_min=np.int32(3))
    assert (cfg.n_replicates, type(cfg.n_replicates), type(cfg.k_min)) == (5, int, int)
    for name, value in (("random_state", 2**32 - 1), ("random_state", 0), ("network_top_fraction", 1)):
        assert getattr(RunConfig(**{name: value}), name) == value
    for name, bad in (("random_state", -1), ("random_state", 2**32), ("tol", float("inf")),
                      ("support_max_missing", 0), ("link_sizes", [1, 1]), ("link_sizes", [True])):
        with pytest.raises(ConfigError, match=rf"^{name}=.*: must be "):
            RunConfig(**{name: bad})


def _literal(node) -> bool:
    """A written number or string (None, "not given", does not count)."""
    import ast

    return isinstance(node, ast.Constant) and node.value is not None


def test_each_default_and_rule_is_written_once():
    """The solver's parameters have one default and one rule, in osnmf.factorize.checks: the table,
    RunConfig, StaNMF, SweepParams, fit_nmf and fit_nmf_replicates hold the same objects, and no
    other literal of them is written in those modules (read from their source)."""
    import ast

    from osnmf.factorize import checks
    from osnmf.factorize.nmf.fits import fit_nmf, fit_nmf_replicates
    from osnmf.factorize.sweep.params import SweepParams

    params = by_name()
    defaults = {"max_iter": checks.MAX_ITER, "tol": checks.TOL, "n_restarts": checks.N_RESTARTS,
                "n_replicates": checks.N_REPLICATES, "random_state": checks.RANDOM_STATE}
    sweep = {f.name: f.default for f in fields(SweepParams)}
    for name, value in defaults.items():
        assert params[name].default is value, name
        assert params[name].constraint is checks.RULES[name], name
        assert inspect.signature(StaNMF).parameters[name].default is value, name
        if name in sweep:
            assert sweep[name] is value, name
        for fn in (fit_nmf, fit_nmf_replicates):  # (their random_state None is numpy's fresh entropy)
            if name in ("max_iter", "tol"):
                assert inspect.signature(fn).parameters[name].default is value, (fn, name)
    for name in set(params) & set(checks.RULES):
        assert params[name].constraint is checks.RULES[name], name
    src = Path(checks.__file__).parents[1]
    literal = []
    # the modules the run's values pass through (other functions have parameters of these names with
    # other meanings: the masked solver's tol, NNLS's max_iter, the PCA baseline's n_replicates)
    carriers = ["params_table.py", "config.py", "pipeline.py", "cli.py", "factorize/stanmf.py",
                "factorize/sweep/params.py", "factorize/sweep/plan.py", "factorize/sweep/run.py",
                "factorize/final_model.py", "factorize/nmf/fits.py"]
    for path in [src / name for name in carriers]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.arguments):
                args = node.posonlyargs + node.args
                pairs = list(zip(args[len(args) - len(node.defaults):], node.defaults, strict=True))
                pairs += [(a, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True) if d is not None]
                literal += [(path.name, a.arg) for a, d in pairs if a.arg in defaults and _literal(d)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if node.target.id in defaults and _literal(node.value):
                    literal.append((path.name, node.target.id))
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Param" and len(node.args) > 2:
                name = node.args[0].value
                if name in defaults and _literal(node.args[2]):
                    literal.append((path.name, name))
    # the declarations themselves (MAX_ITER = 200, ...) are plain assignments, not counted above
    assert literal == [], f"literal defaults of the solver's parameters outside osnmf.factorize.checks: {literal}"
    text = (src / "factorize" / "checks.py").read_text()
    assert text.count("TOL = 1e-4") == 1 and "1e-4" not in (src / "params_table.py").read_text()


def test_one_message_format_for_a_refused_value():
    """The same bad value reads the same through every public door: RunConfig, StaNMF.fit,
    SweepParams, fit_nmf; and no module but osnmf.constraints spells 'must be an integer'."""
    import numpy as np

    import osnmf
    from osnmf.factorize.sweep.params import SweepParams

    X = np.random.default_rng(0).random((10, 12))
    for name, bad in (("max_iter", 0), ("tol", -1.0), ("n_restarts", 1.5), ("random_state", -3)):
        messages = set()
        for make in (RunConfig, SweepParams, lambda **kw: osnmf.StaNMF(k_range=[2], n_replicates=2, **kw).fit(X)):
            with pytest.raises(ConfigError) as err:
                make(**{name: bad})
            messages.add(str(err.value))
        if name in ("max_iter", "tol"):
            with pytest.raises(ConfigError) as err:
                osnmf.fit_nmf(X, 2, **{name: bad})
            messages.add(str(err.value))
        assert len(messages) == 1 and messages.pop().startswith(f"{name}={bad!r}: must be "), name
    src = Path(osnmf.__file__).parent
    spelled = [p.name for p in src.rglob("*.py") if p.name != "constraints.py"
               and re.search(r"must be (an integer|a number)\b[^\"']*, got", p.read_text())]
    assert spelled == [], spelled
