"""What a run prints: one plain line per stage with seconds, warnings as one line, levels for
--quiet / --verbose, no progress bars off a terminal; deprecated names still work with a warning."""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
import pytest
from rich.console import Console

from osnmf import cli
from osnmf.config import RunConfig, load_config
from osnmf.errors import ConfigError, OsnmfDeprecationWarning, OsnmfWarning
from osnmf.run.log import RunLog

LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<name>\w+) +(?P<seconds>\d+\.\d) s(?P<rest>.*)$")


def _log(**kwargs) -> tuple[RunLog, io.StringIO]:
    buf = io.StringIO()
    return RunLog(console=Console(file=buf, width=60, color_system=None), **kwargs), buf


def test_stage_lines_plain_one_per_stage():
    log, buf = _log()
    log.stage("impute", 12.345, note="[bold]60 experiments[/] :x: done")
    log.stage("sweep", 0.04, reused=True)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and all(lines)
    first, second = (LINE.match(line) for line in lines)
    assert first["name"] == "impute" and first["seconds"] == "12.3"
    assert first["rest"] == "  [bold]60 experiments[/] :x: done"  # no markup, no emoji, not wrapped at width 60
    assert second["name"] == "sweep" and second["seconds"] == "0.0" and second["rest"] == "  reused from cache"
    assert log.level == 1


@pytest.mark.parametrize(("quiet", "verbose", "expected"), [
    (True, False, ["warning: careful"]),
    (False, False, ["step", "warning: careful"]),
    (False, True, ["step", "more", "warning: careful"]),
])
def test_levels(quiet, verbose, expected):
    log, buf = _log(quiet=quiet, verbose=verbose)
    log.info("step")
    log.detail("more")
    log.warn("careful")
    assert [line[9:] for line in buf.getvalue().splitlines()] == expected


@pytest.mark.parametrize("verbose", [False, True])
def test_library_warnings_hidden_ours_shown(verbose):
    log, buf = _log(verbose=verbose)
    from sklearn.exceptions import ConvergenceWarning

    with log.capture_warnings():
        np.mean(np.array([]))  # numpy: "Mean of empty slice" (RuntimeWarning)
        warnings.warn("did not converge", ConvergenceWarning, stacklevel=1)
        warnings.warn("3 experiments\nhave no data", OsnmfWarning, stacklevel=1)
    lines = [line[9:] for line in buf.getvalue().splitlines()]
    ours = "warning: 3 experiments have no data"
    if verbose:
        assert lines[0].startswith("warning: RuntimeWarning: Mean of empty slice")  # numpy's wording may vary
        assert all(line.startswith("warning: RuntimeWarning: ") for line in lines[:-2])
        assert lines[-2:] == ["warning: ConvergenceWarning: did not converge", ours]
    else:
        assert lines == [ours]


def test_config_names_match_the_python_api():
    import inspect

    from osnmf.factorize.stanmf import StaNMF

    api = set(inspect.signature(StaNMF).parameters)
    cfg = set(RunConfig().to_dict())
    assert {"n_replicates", "n_restarts", "random_state", "n_jobs", "solver", "backend", "device", "max_iter",
            "tol"} <= api & cfg
    assert not {"replicates", "seed", "jobs", "restarts"} & cfg


def test_toml_deprecated_keys_warn_once_and_map(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text("[run]\nreplicates = 7\nseed = 3\njobs = 1\nk_min = 4\n")
    with pytest.warns(OsnmfDeprecationWarning) as record:
        cfg = load_config(path)
    assert (cfg.n_replicates, cfg.random_state, cfg.n_jobs, cfg.k_min) == (7, 3, 1, 4)
    assert sorted(str(w.message) for w in record) == [
        f"{path}: key 'jobs' is deprecated; call it 'n_jobs'",
        f"{path}: key 'replicates' is deprecated; call it 'n_replicates'",
        f"{path}: key 'seed' is deprecated; call it 'random_state'",
    ]
    path.write_text("replicates = 7\nn_replicates = 8\n")
    with pytest.raises(ConfigError, match="both replicates and n_replicates"):
        load_config(path)


def test_cli_deprecated_flags(monkeypatch, capsys, tmp_path):
    """Old flags: one warning line each, the value reaches RunConfig; old and new together: exit 2."""
    seen = {}

    def fake_run(cfg):
        seen["cfg"] = cfg
        return {"k_selected": 3}

    monkeypatch.setattr("osnmf.pipeline.run_pipeline", fake_run)
    argv = ["osnmf", "run", "--out", str(tmp_path / "o"), "--replicates", "6", "--seed", "2", "--jobs", "1",
            "--restarts", "3", "--quiet"]
    monkeypatch.setattr("sys.argv", argv)
    try:
        cli.main()
    except SystemExit as exc:
        assert not exc.code
    out, err = capsys.readouterr()
    cfg = seen["cfg"]
    assert (cfg.n_replicates, cfg.random_state, cfg.n_jobs, cfg.n_restarts, cfg.quiet) == (6, 2, 1, 3, True)
    assert err.splitlines() == ["warning: --replicates is deprecated; use --n-replicates",
                                "warning: --seed is deprecated; use --random-state",
                                "warning: --jobs is deprecated; use --n-jobs",
                                "warning: --restarts is deprecated; use --n-restarts"]
    assert out.startswith("K = 3 patterns")
    monkeypatch.setattr("sys.argv", ["osnmf", "run", "--replicates", "6", "--n-replicates", "5"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2
    assert capsys.readouterr().err == ("error: both --replicates and --n-replicates given; keep --n-replicates "
                                       "(--replicates is its deprecated name)\n")


def test_progress_only_on_a_terminal_or_verbose(monkeypatch):
    """A log file gets stage lines only: progress (osnmf.progress) on a terminal, or with --verbose."""
    from osnmf import progress

    for terminal in (False, True):
        monkeypatch.setattr(progress.console(), "_force_terminal", terminal)
        assert progress.console().is_terminal is terminal
        assert RunLog(quiet=True).progress is False
        assert RunLog().progress is terminal
        assert RunLog(verbose=True).progress is True
