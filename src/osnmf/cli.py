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

    summary = load_expression(path).summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        typer.echo(f"{key:>16}: {value}")


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
