"""Command-line interface (Typer + rich): a thin shell over the API and :mod:`osnmf.pipeline`.

Every :class:`~osnmf.errors.OsnmfError` is printed as one line on stderr with exit code 2, and so
is an ``OSError`` (disk full, read-only folder, a file in the way: the path, what it means, what to do);
``--debug`` shows the traceback instead. Help and error text print as written: no rich markup
(``'osnmf[viewer]'`` stays), no emoji codes (``:X:`` stays).
"""

from __future__ import annotations

import inspect
import json
import sys
import warnings
from pathlib import Path
from typing import get_type_hints

import typer
from rich.console import Console
from rich.text import Text

from osnmf.config import RunConfig
from osnmf.errors import ConfigError, OsnmfError, OsnmfWarning, storage_error
from osnmf.params_table import PARAMS, Param, by_name, shown_default, value_types

N_JOBS = by_name()["n_jobs"].default  # `osnmf project` imputes with run's default threads

app = typer.Typer(
    name="osnmf",
    help="Principal spatial patterns of gene expression in 3D brain atlases (stability-driven NMF).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is plain: "pip install 'osnmf[viewer]'" must not lose "[viewer]"
)
console = Console(stderr=True, emoji=False, highlight=False)


def _say(label: str, message: str, style: str = "bold red") -> None:
    """One line on stderr, ``label`` styled and ``message`` verbatim (a Text: no markup, no emoji)."""
    console.print(Text.assemble((label, style), " ", message) if label else Text(message), soft_wrap=True)


_STATE = {"debug": False}
INTERRUPTED = "interrupted; finished work is kept, rerun the same command to resume"


def _version(value: bool) -> None:
    if value:
        from osnmf._version import __version__

        typer.echo(f"osnmf {__version__}")
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Show the version and exit.")) -> None:
    _STATE["debug"] = debug


RUN_FLAGS = tuple(p for p in PARAMS if p.flag)  # the options of `osnmf run`, from the parameter table
PATH_FLAGS = ("data", "out", "coords")  # read as paths, passed on as strings
LONG_LIST = 5  # a flag with more choices lists them in its help text, its metavar stays short


def _flag(param: Param) -> str:
    return "--" + param.name.replace("_", "-")


# the values of each choice flag, shown in --help as [a|b|c]: the run flags' from the table
CHOICES = {**{_flag(p): tuple(p.choices) for p in RUN_FLAGS if p.choices},
           "--plane": ("coronal", "sagittal", "both")}


def _choices(flag: str) -> str:
    """The metavar of a choice flag: its values, as click shows a choice."""
    return "[" + "|".join(CHOICES[flag]) + "]"


def _option(param: Param) -> typer.models.OptionInfo:
    """The option of a run flag: help, choices and the default it shows from the table. Its value
    is None (False for a switch) unless given, so a TOML file's value is not overridden."""
    text, metavar = param.help, None
    if len(param.choices) > LONG_LIST:
        text, metavar = f"{text}: {', '.join(param.choices)}", "<" + _flag(param).rsplit("-", 1)[-1] + ">"
    elif param.choices:
        metavar = _choices(_flag(param))
    default = shown_default(param)
    text += f" (default: {default})." if default else "."
    names = (_flag(param), param.short) if param.short else (_flag(param),)
    return typer.Option(False if param.type is bool else None, *names, metavar=metavar, help=text)


def _cli_type(param: Param) -> type:
    if param.name in PATH_FLAGS:
        return Path
    types = value_types(param)
    return str if str in types else types[0]


def _with_run_flags(command):
    """Give ``command(..., **flags)`` one keyword option per run flag of the table (typer reads the
    signature and the annotations)."""
    own = [p for p in inspect.signature(command).parameters.values() if p.kind is not p.VAR_KEYWORD]
    flags = [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=_option(p), annotation=_cli_type(p))
             for p in RUN_FLAGS]
    command.__signature__ = inspect.Signature(own + flags)
    command.__annotations__ = {**get_type_hints(command), **{p.name: p.annotation for p in flags}}
    return command


@app.command()
def info(
    path: Path = typer.Argument(..., help="ABA grid folder, Allen grid zip, .npz stack or .h5ad."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Summarise an expression dataset: experiments, genes, brain voxels, missing fraction."""
    from osnmf.io.load import load_expression
    from osnmf.preprocess.hemispheres import coverage_report

    expr = load_expression(path, progress=sys.stderr.isatty())
    summary = {"path": str(path), **expr.summary(), **coverage_report(expr)}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    width = max(map(len, summary))  # every key right-aligned on the colon
    for key, value in summary.items():
        typer.echo(f"{key:>{width}}: {_info_value(value)}")


def _info_value(value) -> str:
    """A summary value as a reader wants it: 4 significant digits, lists and dicts without Python brackets."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return " × ".join(_info_value(v) for v in value) if all(isinstance(v, int) for v in value) else \
            ", ".join(_info_value(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_info_value(v)}" for k, v in value.items())
    return str(value)


@app.command("download-aba")
def download_aba_command(
    out: Path = typer.Argument(..., help="Target ABA grid folder (gets experiments.csv and energy/<id>.zip)."),
    experiments: Path = typer.Option(
        None, "--experiments", help="CSV with section_data_set_id, gene_symbol (default: the packaged 4,345)."
    ),
    base_url: str = typer.Option("https://api.brain-map.org", "--base-url", help="Allen API root URL."),
    jobs: int = typer.Option(4, "--jobs", help="Concurrent downloads."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds a connection may stay silent."),
    retries: int = typer.Option(4, "--retries", help="Retries after a transient failure."),
    backoff: float = typer.Option(1.0, "--backoff", help="First retry wait in seconds (doubles each retry)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    plane: str = typer.Option(None, "--plane", metavar=_choices("--plane"),
                              help="coronal (packaged list, default), sagittal or both "
                              "(sagittal list queried from the Allen API, cached in OUT; the packaged "
                              "sagittal list if the query fails)."),
    refresh_list: bool = typer.Option(False, "--refresh-list", help="Query the sagittal list again "
                                      "(a failed query is then an error)."),
) -> None:
    """Download Allen expression-energy grids; exit 1 if any experiment failed (rerun to resume)."""
    from osnmf.datasets.download import download_aba

    report = download_aba(out, experiments=experiments, base_url=base_url, jobs=jobs, timeout=timeout,
                          retries=retries, backoff=backoff, progress=progress, plane=plane,
                          refresh_list=refresh_list)
    typer.echo(report.summary())
    if report.failed:
        raise SystemExit(1)  # not typer.Exit: with standalone_mode=False click returns its code instead


def _run_config(config: Path | None, **flags) -> RunConfig:
    from osnmf.config import RunConfig, load_config

    flags = {k: v for k, v in flags.items() if v is not None and v is not False}
    return load_config(config, overrides=flags) if config is not None else RunConfig().replace(**flags)


# old flag → (new flag, RunConfig name); they still work with a one-line deprecation warning
DEPRECATED_FLAGS = {"--replicates": ("--n-replicates", "n_replicates"), "--seed": ("--random-state", "random_state"),
                    "--jobs": ("--n-jobs", "n_jobs"), "--restarts": ("--n-restarts", "n_restarts")}


def _deprecated(flags: dict, old_values: dict) -> dict:
    """Fold deprecated flags (``old_values``: old flag → value or None) into ``flags`` with a warning."""
    import warnings

    from osnmf.errors import OsnmfDeprecationWarning

    for old, value in old_values.items():
        if value is None:
            continue
        new, name = DEPRECATED_FLAGS[old]
        if flags.get(name) is not None:
            raise ConfigError(f"both {old} and {new} given; keep {new} ({old} is its deprecated name)")
        warnings.warn(f"{old} is deprecated; use {new}", OsnmfDeprecationWarning, stacklevel=2)
        flags[name] = value
    return flags


def _finish(summary: dict, out: Path) -> None:
    typer.echo(f"K = {summary['k_selected']} patterns; report: {out / 'report.html'}")
    truth = summary.get("planted_truth")
    if truth:
        typer.echo(f"planted K = {truth['planted_k']}, matched r = {truth['matched_r_mean']:.3f}")


@app.command()
@_with_run_flags
def run(
    config: Path = typer.Option(None, "--config", help="TOML file with any run setting (see README)."),
    replicates: int = typer.Option(None, "--replicates", hidden=True),
    seed: int = typer.Option(None, "--seed", hidden=True),
    jobs: int = typer.Option(None, "--jobs", hidden=True),
    restarts: int = typer.Option(None, "--restarts", hidden=True),
    **flags,
) -> None:
    """Run the whole pipeline: impute, staNMF sweep, baselines, linking, markers, networks, report."""
    from osnmf.pipeline import run_pipeline

    if flags["quiet"] and flags["verbose"]:
        raise ConfigError("--quiet and --verbose together: choose one")
    flags = {k: str(v) if isinstance(v, Path) else v for k, v in flags.items()}
    flags = _deprecated(flags, {"--replicates": replicates, "--seed": seed, "--jobs": jobs, "--restarts": restarts})
    cfg = _run_config(config, **flags)
    _finish(run_pipeline(cfg), Path(cfg.out))


DEMO = {"k_min": 6, "k_max": 10, "n_replicates": 10, "phantom_genes": 300, "phantom_patterns": 8,
        "pca_replicates": 10, "moran_replicates": 10, "n_random_models": 200}
QUICK = {"k_min": 3, "k_max": 7, "n_replicates": 5, "phantom_genes": 100, "phantom_patterns": 5,
         "pca_replicates": 5, "moran_replicates": 5, "n_random_models": 50, "link_sizes": [1, 2]}


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Run directory."),
    quick: bool = typer.Option(False, "--quick", help="Smaller settings: about a minute."),
    quiet: bool = _option(by_name()["quiet"]),
    verbose: bool = _option(by_name()["verbose"]),
) -> None:
    """The whole pipeline on the synthetic atlas with planted patterns (a few minutes on 2 cores)."""
    from osnmf.config import RunConfig
    from osnmf.pipeline import run_pipeline

    if quiet and verbose:
        raise ConfigError("--quiet and --verbose together: choose one")
    cfg = RunConfig(out=str(out), quiet=quiet, verbose=verbose, **(QUICK if quick else DEMO))
    _finish(run_pipeline(cfg), out)


@app.command()
def project(
    run_dir: Path = typer.Argument(..., help="Run directory (the --out of 'osnmf run') whose patterns are used."),
    data: Path = typer.Option(..., "--data", help="New experiments: ABA grid folder, Allen zip, .npz or .h5ad."),
    out: Path = typer.Option(..., "--out", help="Folder for coefficients, assignments and the report."),
    hemispheres: str = typer.Option(None, "--hemispheres", metavar=_choices("--hemispheres"),
                                    help="auto, off or drop (default: the run's)."),
    n_jobs: int = typer.Option(None, "--n-jobs", help=f"Parallel threads for the imputation (default: {N_JOBS})."),
    coords: Path = typer.Option(None, "--coords", help="Cells: CSV of CCF coordinates in mm (cell_label, x, y, z)."),
    cell_type_key: str = typer.Option(None, "--cell-type-key", help="Cells: the obs column of the cell types "
                                      "(default: subclass, else class, else none)."),
    cell_values: str = typer.Option(None, "--cell-values", metavar=_choices("--cell-values"),
                                    help="Cells: X holds counts (log1p applied), log values, or auto (default)."),
    quiet: bool = _option(by_name()["quiet"]),
    verbose: bool = _option(by_name()["verbose"]),
    jobs: int = typer.Option(None, "--jobs", hidden=True),
) -> None:
    """Project new experiments onto a run's patterns: coefficients, assigned pattern, reconstruction r.
    Cells (.h5ad with CCF coordinates): cell types × patterns by location and by expression."""
    from osnmf.project import project_run
    from osnmf.run.log import RunLog

    if quiet and verbose:
        raise ConfigError("--quiet and --verbose together: choose one")
    n_jobs = _deprecated({"n_jobs": n_jobs}, {"--jobs": jobs})["n_jobs"]
    if n_jobs is not None:  # the run's own rule for n_jobs (the parameter table)
        n_jobs = by_name()["n_jobs"].check(n_jobs)
    log = RunLog(quiet=quiet, verbose=verbose)
    with log.capture_warnings():
        summary = project_run(run_dir, data, out, hemispheres=hemispheres, n_jobs=n_jobs or N_JOBS, log=log,
                              coords=coords, cell_type_key=cell_type_key,
                              cell_values=by_name()["cell_values"].check(cell_values or "auto"))
    if "n_cells_projected" in summary:
        a = summary["agreement"]
        typer.echo(f"{summary['n_cells_projected']} cells of {summary['n_cell_types']} types onto "
                   f"{summary['n_patterns']} patterns ({summary['n_genes_projected']} shared genes); same top pattern "
                   f"by location and expression for {a['same_top_pattern']} of {a['n_cell_types']} types; report: "
                   f"{out / 'report.html'}")
        return
    r = summary["reconstruction_r_mean"]
    typer.echo(f"{summary['n_projected']} experiments projected onto {summary['n_patterns']} patterns"
               + (f"; mean reconstruction r = {r:.3f}" if r is not None else "") + f"; report: {out / 'report.html'}")


@app.command()
def view(
    run_dir: Path = typer.Argument(..., help="Run directory (the --out of 'osnmf run' or 'osnmf demo')."),
    annotation: bool = typer.Option(True, "--annotation/--no-annotation", help="Add the atlas labels layer."),
) -> None:
    """Open the patterns of a run in napari (needs the viewer extra: pip install 'osnmf[viewer]')."""
    from osnmf.viewer import view_run

    view_run(run_dir, annotation=annotation)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings outside a run (e.g. a deprecated flag): ours as one line, library ones hidden."""
    if issubclass(category, OsnmfWarning):
        _say("warning:", " ".join(str(message).split()), "yellow")


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)  # typer.Exit(n) comes back as the return value here
        if code == 130:  # Ctrl-C: recent typer turns KeyboardInterrupt into Exit(130), returned here
            _say("", INTERRUPTED)
        if isinstance(code, int) and code:
            sys.exit(code)
    except OsnmfError as exc:
        if _STATE["debug"]:
            raise
        _say("error:", str(exc))
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:  # typer.Exit from commands, SystemExit from --help
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code or 0)
    except typer.Abort:
        _say("", "aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        _say("", INTERRUPTED)
        sys.exit(130)
    except OSError as exc:  # the environment: disk full, read-only, a file in the way, a dangling link
        if _STATE["debug"]:
            raise
        _say("error:", str(storage_error(exc)))
        sys.exit(2)
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # Typer/Click usage errors
            exc.show()
            sys.exit(2)
        if _STATE["debug"]:
            raise
        _say("internal error:", f"{type(exc).__name__}: {exc} (rerun with --debug)")
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
