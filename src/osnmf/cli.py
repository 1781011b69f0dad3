"""Command-line interface (Typer + rich): a thin shell over the API and :mod:`osnmf.pipeline`.

Every :class:`~osnmf.errors.OsnmfError` is printed as one line on stderr with exit code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

from osnmf.errors import OsnmfError

app = typer.Typer(
    name="osnmf",
    help="Principal spatial patterns of gene expression in 3D brain atlases (stability-driven NMF).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
_STATE = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors.")) -> None:
    _STATE["debug"] = debug


@app.command()
def info(
    path: Path = typer.Argument(..., help="ABA grid folder, Allen grid zip, .npz stack or .h5ad."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Summarise an expression dataset: experiments, genes, brain voxels, missing fraction."""
    from osnmf.io.detect import load_expression

    summary = {"path": str(path), **load_expression(path, progress=sys.stderr.isatty()).summary()}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        typer.echo(f"{key:>16}: {value}")


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
) -> None:
    """Download Allen expression-energy grids; exit 1 if any experiment failed (rerun to resume)."""
    from osnmf.datasets.download import download_aba

    report = download_aba(out, experiments=experiments, base_url=base_url, jobs=jobs, timeout=timeout,
                          retries=retries, backoff=backoff, progress=progress)
    typer.echo(report.summary())
    if report.failed:
        raise SystemExit(1)  # not typer.Exit: with standalone_mode=False click returns its code instead


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    try:
        app(standalone_mode=False)
    except OsnmfError as exc:
        if _STATE["debug"]:
            raise
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:  # typer.Exit from commands, SystemExit from --help
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code or 0)
    except typer.Abort:
        console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        console.print("interrupted; finished work is kept, rerun the same command to resume")
        sys.exit(130)
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # Typer/Click usage errors
            exc.show()
            sys.exit(2)
        if _STATE["debug"]:
            raise
        console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc} (rerun with --debug)")
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
