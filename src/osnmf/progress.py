"""The one place that shows progress: a rich bar with ETA on a terminal, plain periodic lines otherwise.

Every long loop in osnmf reports through :class:`ProgressBar` (or :func:`track`)::

    with ProgressBar("kNN imputation", total=len(chunks), enabled=progress) as bar:
        for chunk in chunks:
            work(chunk)
            bar.advance()

* On a terminal: a transient rich bar (description, bar, done/total, elapsed, ETA, note).
* Elsewhere (a log file, a notebook, a cluster job): no control characters and no blank lines,
  only a plain line every ``interval_s`` seconds (``label: 30/120 (25%), 12 s``) and, when such
  a line was written, one closing line (``label: 120/120 (100%) done in 47.0 s``); a task
  shorter than ``interval_s`` writes nothing.
* ``enabled=False``: nothing at all.

Output goes to :func:`console` (stderr, shared by all bars; pass ``console=`` to use another).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator

from rich.console import Console

INTERVAL_S = 10.0  # seconds between plain progress lines off a terminal

_CONSOLE: list[Console] = []


def console() -> Console:
    """The shared stderr console that progress (and logs) are written to."""
    if not _CONSOLE:
        _CONSOLE.append(Console(stderr=True))
    return _CONSOLE[0]


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {int(s % 60):02d} s"


def _columns(width: int, total: float | None, label_len: int = 0) -> list:
    """The terminal bar's columns for a ``width``-column terminal: the count, elapsed time and ETA
    keep their full width (80 columns included); then the label (whole when it fits beside a
    5-column bar), the bar (up to 40) and the note share what is left, label and note cut with an
    ellipsis."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Column

    count = 2 * len(f"{total:g}") + 1 if total else 6
    fixed = count + len("0:00:00") + len("ETA") + len("0:00:00") + 6  # six one-space gaps between 7 columns
    rest = max(width - fixed, 16)
    label = max(8, min(label_len, rest - 5))
    bar = min(40, max(5, (rest - label) // 2))
    note = max(0, rest - bar - label)

    def cut(at_most: int) -> Column:
        return Column(max_width=at_most, no_wrap=True, overflow="ellipsis")

    def whole(at_least: int) -> Column:
        return Column(min_width=at_least, no_wrap=True)

    return [TextColumn("{task.description}", table_column=cut(label)), BarColumn(bar_width=bar),
            MofNCompleteColumn(table_column=whole(count)), TimeElapsedColumn(table_column=whole(7)),
            TextColumn("ETA"), TimeRemainingColumn(table_column=whole(7)),
            TextColumn("{task.fields[note]}", table_column=cut(note))]


class ProgressBar:
    """Progress of one task of ``total`` steps (see the module docstring for what is shown where).

    Parameters
    ----------
    label : what is being done, e.g. ``"kNN imputation"``.
    total : number of steps (None: unknown; the bar then shows a spinner-like pulse).
    enabled : False shows nothing.
    transient : on a terminal, remove the bar when done (the default) or leave it on screen.
    console : where to write (default :func:`console`).
    interval_s : seconds between plain lines off a terminal.
    """

    def __init__(self, label: str, total: float | None = None, enabled: bool = True, *, transient: bool = True,
                 console: Console | None = None, interval_s: float = INTERVAL_S):
        self.label, self.total, self.enabled = label, total, bool(enabled)
        self.completed = 0.0
        self.note = ""
        self._console = console
        self._transient, self._interval = transient, float(interval_s)
        self._live = None
        self._task = None
        self._lock = threading.Lock()
        self._start = self._last = 0.0
        self._started = self._printed = False

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> ProgressBar:
        if not self.enabled or self._started:
            return self
        self._started, self._printed = True, False
        self._start = self._last = time.perf_counter()
        out = self._console or console()
        self._console = out
        if out.is_terminal:
            from rich.progress import Progress

            columns = _columns(out.width, self.total, len(self.label))
            self._live = Progress(*columns, console=out, transient=self._transient)
            self._live.start()
            self._task = self._live.add_task(self.label, total=self.total, note=self.note)
        return self

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self._live is not None:
            self._live.stop()
            self._live = None
            return
        if not self._printed:
            return
        elapsed = time.perf_counter() - self._start
        done = self.total is not None and self.completed >= self.total
        self._line(f"{self._count()} {'done' if done else 'stopped'} in {_seconds(elapsed)}")

    def __enter__(self) -> ProgressBar:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- reporting -----------------------------------------------------------------------------
    def advance(self, steps: float = 1, note: str | None = None) -> None:
        """``steps`` more steps are done (thread-safe)."""
        with self._lock:
            self.update(completed=self.completed + steps, note=note)

    def update(self, completed: float | None = None, *, total: float | None = None, label: str | None = None,
               note: str | None = None) -> None:
        """Set the steps done, the total, the label or the note shown after the bar."""
        if completed is not None:
            self.completed = float(completed)
        if total is not None:
            self.total = total
        if label is not None:
            self.label = label
        if note is not None:
            self.note = note
        if not self._started:
            return
        if self._live is not None:
            self._live.update(self._task, completed=self.completed, total=self.total, description=self.label,
                              note=self.note)
            return
        now = time.perf_counter()
        if now - self._last >= self._interval:
            self._last = now
            self._line(f"{self._count()}, {_seconds(now - self._start)}")

    def _count(self) -> str:
        done = f"{self.completed:g}"
        if not self.total:
            return done
        return f"{done}/{self.total:g} ({100 * self.completed / self.total:.0f}%)"

    def _line(self, text: str) -> None:
        self._printed = True
        note = f" [{self.note}]" if self.note else ""
        self._console.print(f"{self.label}: {text}{note}", markup=False, highlight=False, emoji=False,
                            soft_wrap=True)


def track(items: Iterable, label: str, total: float | None = None, enabled: bool = True,
          transient: bool = True) -> Iterator:
    """Iterate over ``items`` while showing a :class:`ProgressBar` (``total`` defaults to ``len(items)``;
    ``transient=False`` leaves the finished bar on a terminal)."""
    if not enabled:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with ProgressBar(label, total, transient=transient) as bar:
        for item in items:
            yield item
            bar.advance()
