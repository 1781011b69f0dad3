"""The shared progress helper: plain lines off a terminal, a live bar on one, nothing when disabled."""

import io
import threading

from rich.console import Console

from osnmf.progress import ProgressBar, track


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=100), buf


def test_plain_lines_off_a_terminal():
    con, buf = _console(False)
    with ProgressBar("demo task", total=4, console=con, interval_s=0.0) as bar:
        for _ in range(4):
            bar.advance(note="0 failed")
    lines = buf.getvalue().splitlines()
    assert lines == [
        "demo task: 1/4 (25%), " + lines[0].split(", ")[1],
        "demo task: 2/4 (50%), " + lines[1].split(", ")[1],
        "demo task: 3/4 (75%), " + lines[2].split(", ")[1],
        "demo task: 4/4 (100%), " + lines[3].split(", ")[1],
        lines[4],
    ]
    assert all(line.endswith("[0 failed]") for line in lines)
    assert lines[4].startswith("demo task: 4/4 (100%) done in ")
    assert "\x1b" not in buf.getvalue() and "\r" not in buf.getvalue()  # no control characters


def test_short_task_off_a_terminal_writes_nothing_and_disabled_writes_nothing():
    con, buf = _console(False)
    with ProgressBar("quick", total=3, console=con, interval_s=3600.0) as bar:
        for _ in range(3):
            bar.advance()
    assert buf.getvalue() == ""
    con, buf = _console(True)
    with ProgressBar("off", total=3, enabled=False, console=con, interval_s=0.0) as bar:
        bar.advance(3)
    assert buf.getvalue() == ""


def test_live_bar_on_a_terminal_and_thread_safe_counting():
    con, buf = _console(True)
    n_threads, per_thread = 8, 250
    with ProgressBar("threads", total=n_threads * per_thread, console=con, transient=False) as bar:
        workers = [threading.Thread(target=lambda: [bar.advance() for _ in range(per_thread)])
                   for _ in range(n_threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert bar.completed == n_threads * per_thread  # no lost increments
    out = buf.getvalue()
    assert "threads" in out and "2000/2000" in out and "ETA" in out


def test_track_yields_every_item_in_order():
    assert list(track(range(7), "items", enabled=False)) == list(range(7))
    assert list(track(iter("abc"), "letters", total=3)) == ["a", "b", "c"]


def test_80_columns_keep_elapsed_time_and_eta():
    """A long label and a long note on an 80-column terminal: the rendered bar still shows the count,
    the elapsed time and the ETA in full (a fake clock: 400 of 1000 steps in 80 s, so 120 s remain),
    within 80 columns; the label and the note are cut instead."""
    import re

    clock = [0.0]
    for width in (80, 60, 120):
        buf = io.StringIO()
        out = Console(file=buf, width=width, force_terminal=True, color_system=None, get_time=lambda: clock[0])
        clock[0] = 0.0
        bar = ProgressBar("scoring region combinations of the whole ontology", 1000, console=out,
                          transient=False).start()
        for _ in range(40):
            clock[0] += 2.0
            bar.advance(10, note="K 8…30 × 100 replicates, block 3 of 12 (exact products)")
        bar._live.refresh()
        bar.stop()
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue()).replace("\r", "\n")
        line = [row for row in text.split("\n") if "ETA" in row][-1]
        assert len(line) <= width, line
        assert "400/1000 0:01:20 ETA 0:02:00" in line, line
        assert "scoring reg" in line and "…" in line
        if width >= 100:  # room for the whole label beside a bar
            assert "scoring region combinations of the whole ontology" in line
