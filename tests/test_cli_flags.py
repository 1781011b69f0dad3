"""The CLI's flags read alike everywhere: ``osnmf --version``; every choice flag lists its values in
``--help`` (the lists the settings are validated with); ``osnmf project`` takes ``run``'s names
(``--n-jobs``, ``-q/--quiet``, ``-v/--verbose``) and prints its stages as ``run`` does."""

from __future__ import annotations

import re
import subprocess
import sys

import click
import pytest
import typer
from typer.testing import CliRunner

from osnmf import cli
from osnmf._version import __version__

STAGE_LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<name>\w+) +(?P<seconds>\d+\.\d) s(?P<rest>.*)$")


def _command(name: str) -> click.Command:
    return typer.main.get_command(cli.app).commands[name]


def _option(command: click.Command, flag: str) -> click.Option:
    return next(p for p in command.params if flag in p.opts)


def _help_of(command: click.Command, flag: str) -> str:
    """What ``--help`` shows for ``flag``: its names with the metavar, and its help text."""
    with click.Context(command) as ctx:
        names, text = _option(command, flag).get_help_record(ctx)
    return f"{names} {' '.join(text.split())}"


def test_version():
    result = CliRunner().invoke(cli.app, ["--version"])
    assert (result.exit_code, result.output) == (0, f"osnmf {__version__}\n")
    proc = subprocess.run([sys.executable, "-m", "osnmf.cli", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"osnmf {__version__}\n", "")
    assert "--version" in CliRunner().invoke(cli.app, ["--help"]).output


def test_choice_lists_are_the_validated_ones():
    from osnmf.datasets.download import PLANE_CHOICES
    from osnmf.factorize.checks import BACKENDS, SOLVERS
    from osnmf.factorize.choose_k.criteria import RULES
    from osnmf.preprocess.hemispheres import HEMISPHERE_MODES

    assert cli.CHOICES["--solver"] == ("auto", *SOLVERS)
    assert cli.CHOICES["--backend"] == BACKENDS and cli.CHOICES["--k-rule"] == RULES
    assert cli.CHOICES["--hemispheres"] == HEMISPHERE_MODES and cli.CHOICES["--plane"] == PLANE_CHOICES


@pytest.mark.parametrize("command, flag", [
    ("run", "--recipe"), ("run", "--grow"), ("run", "--solver"), ("run", "--k-rule"), ("run", "--backend"),
    ("run", "--hemispheres"), ("project", "--hemispheres"), ("download-aba", "--plane")])
def test_choice_flags_list_their_choices_in_help(command, flag):
    shown = _help_of(_command(command), flag)
    for value in cli.CHOICES[flag]:
        assert re.search(rf"(?<![\w-]){value}(?![\w-])", shown), f"{command} {flag}: {value} not in {shown!r}"
    if flag != "--k-rule":  # ten rules: listed in the help text, the metavar stays short
        assert shown.startswith(f"{flag} [{'|'.join(cli.CHOICES[flag])}]")
    assert "auto" in _help_of(_command("run"), "--solver")


@pytest.mark.parametrize("flag, value", [("--grow", "sometimes"), ("--solver", "fast"), ("--k-rule", "elbow"),
                                         ("--backend", "jax"), ("--hemispheres", "left")])
def test_a_value_not_listed_is_one_line_exit_2(tmp_path, monkeypatch, capsys, flag, value):
    monkeypatch.setattr(sys, "argv", ["osnmf", "run", "--out", str(tmp_path / "out"), flag, value])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert all(v in err.lower() for v in cli.CHOICES[flag]), err  # grow's message spells True, False, 'only'
    assert not (tmp_path / "out").exists()


def test_project_takes_runs_flag_names():
    run, project = _command("run"), _command("project")
    for flag in ("--n-jobs", "--quiet", "--verbose", "--hemispheres", "--data", "--out"):
        assert _option(project, flag).opts == _option(run, flag).opts
    for flag in ("--quiet", "--verbose"):
        assert _help_of(project, flag) == _help_of(run, flag)
    assert _option(project, "--jobs").hidden  # the old name still works, with a deprecation warning


@pytest.fixture(scope="module")
def projection_inputs(tmp_path_factory):
    """A finished run's patterns (planted) and new experiments on them, as test_project.py makes them."""
    from test_project import _fake_run

    from osnmf.datasets.phantom import make_phantom
    from osnmf.io.aba_folder import write_aba_folder

    folder = tmp_path_factory.mktemp("project")
    ph = make_phantom(n_genes=12, n_patterns=3, noise=0.0, missing=0.0, background=0.0, seed=2)
    run = _fake_run(folder / "run", ph.patterns, ph.atlas.brain_mask)
    return run, write_aba_folder(folder / "new", ph.data, plane="coronal")


def _project(inputs, out, *flags):
    run, data = inputs
    return subprocess.run([sys.executable, "-m", "osnmf.cli", "project", str(run), "--data", str(data),
                           "--out", str(out), *flags], capture_output=True, text=True, timeout=600)


def test_project_prints_stage_lines_like_run(projection_inputs, tmp_path):
    proc = _project(projection_inputs, tmp_path / "out", "--n-jobs", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("12 experiments projected onto 3 patterns")
    lines = proc.stderr.splitlines()
    stages = [STAGE_LINE.match(line) for line in lines[:-1]]
    assert all(stages), proc.stderr  # one line per stage, nothing else, then "done in"
    assert [m["name"] for m in stages] == ["load", "impute", "project", "outputs"]
    assert "12 experiments from" in stages[0]["rest"] and f"result files in {tmp_path / 'out'}" in stages[3]["rest"]
    assert re.fullmatch(r"\d\d:\d\d:\d\d done in \d+\.\d s", lines[-1])
    assert (tmp_path / "out" / "coefficients.csv").is_file()


def test_project_quiet_verbose_and_old_jobs_flag(projection_inputs, tmp_path):
    quiet = _project(projection_inputs, tmp_path / "q", "-q")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout.startswith("12 experiments projected")
    old = _project(projection_inputs, tmp_path / "old", "-q", "--jobs", "1")
    assert old.returncode == 0 and old.stderr == "warning: --jobs is deprecated; use --n-jobs\n", old.stderr
    both = _project(projection_inputs, tmp_path / "both", "-q", "-v")
    assert (both.returncode, both.stderr) == (2, "error: --quiet and --verbose together: choose one\n")
    bad = _project(projection_inputs, tmp_path / "bad", "--hemispheres", "left")
    assert bad.returncode == 2 and bad.stderr.endswith("hemispheres='left': must be one of auto, off, drop\n")
    assert not (tmp_path / "both").exists() and not (tmp_path / "bad").exists()


def test_project_checks_n_jobs_by_the_runs_rule(projection_inputs, tmp_path, monkeypatch, capsys):
    """`project --n-jobs 0` reads as `run --n-jobs 0` does: the parameter table's one rule and format."""
    run, data = projection_inputs
    messages = []
    for argv in (["project", str(run), "--data", str(data), "--out", str(tmp_path / "p"), "--n-jobs", "0"],
                 ["run", "--out", str(tmp_path / "r"), "--n-jobs", "0"]):
        monkeypatch.setattr(sys, "argv", ["osnmf", *argv])
        with pytest.raises(SystemExit) as exc:
            cli.main()
        assert exc.value.code == 2
        messages.append(capsys.readouterr().err)
    assert messages == ["error: n_jobs=0: must be an integer >= 1\n"] * 2, messages
    assert not (tmp_path / "p").exists() and not (tmp_path / "r").exists()
