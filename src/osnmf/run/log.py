"""What a run tells its user on stderr, written for people and for log files alike.

Three levels: ``quiet`` (warnings and errors only), normal (one line per stage with its duration
and whether it was reused from the cache) and ``verbose`` (also details such as cache keys, and
library warnings). Lines are plain text — no markup, no emoji codes, no source locations, no blank
lines. Long loops report through :mod:`osnmf.progress` when :attr:`RunLog.progress` says so: a
bar with ETA on a terminal; in a log file only with ``verbose`` (its periodic plain lines), so a
log file reads one line per stage. Warnings are :class:`~osnmf.errors.OsnmfWarning` (something a user can act
on) shown as one ``warning:`` line; numpy/scipy/scikit-learn warnings are hidden unless verbose
(:meth:`RunLog.capture_warnings`).
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager

from rich.console import Console
from rich.text import Text

from osnmf import progress as _progress
from osnmf.errors import OsnmfWarning

QUIET, NORMAL, VERBOSE = 0, 1, 2


class RunLog:
    """One-line messages on stderr, shared with the progress bars (``console`` overrides where the
    lines go, e.g. a file in tests)."""

    def __init__(self, quiet: bool = False, verbose: bool = False, console: Console | None = None):
        self.level = QUIET if quiet else VERBOSE if verbose else NORMAL
        self.console = console or _progress.console()
        self.start = time.perf_counter()

    @property
    def progress(self) -> bool:
        """Whether long loops report progress: never when quiet; a bar with ETA when stderr is a
        terminal; off a terminal (a log file) only when verbose."""
        if self.level == QUIET:
            return False
        return self.level >= VERBOSE or _progress.console().is_terminal

    def _line(self, text: str, style: str | None = None) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.console.print(Text.assemble((stamp, "dim"), " ", (text, style or "")), soft_wrap=True)

    def info(self, text: str) -> None:
        """A line at the normal level (not with ``--quiet``)."""
        if self.level >= NORMAL:
            self._line(text)

    def detail(self, text: str) -> None:
        """A line only with ``--verbose``."""
        if self.level >= VERBOSE:
            self._line(text, "dim")

    def warn(self, text: str) -> None:
        """A ``warning:`` line, shown at every level."""
        self._line(f"warning: {' '.join(str(text).split())}", "yellow")

    def stage(self, name: str, seconds: float, reused: bool = False, note: str = "") -> None:
        """The line of a finished stage: name, duration in seconds, cache reuse and a short note."""
        extra = "  reused from cache" if reused else ""
        self.info(f"{name:<10} {seconds:7.1f} s{extra}{'  ' + note if note else ''}")

    def elapsed(self) -> float:
        """Seconds since this log was created."""
        return time.perf_counter() - self.start

    @contextmanager
    def timed(self, name: str):
        """Time the block as stage ``name`` and print its :meth:`stage` line when it ends; the block
        may set ``line["note"]`` on the yielded dict."""
        start, line = time.perf_counter(), {"note": ""}
        yield line
        self.stage(name, time.perf_counter() - start, note=line["note"])

    @contextmanager
    def capture_warnings(self):
        """Show :class:`OsnmfWarning` as ``warning:`` lines; other warnings only when verbose."""

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, OsnmfWarning) or self.level >= VERBOSE:
                self.warn(str(message) if issubclass(category, OsnmfWarning)
                          else f"{category.__name__}: {message}")

        with warnings.catch_warnings():
            warnings.simplefilter("default")  # each distinct warning once per place
            warnings.showwarning = show
            yield self
