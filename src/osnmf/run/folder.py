"""A run folder holds one run: ``<out>/manifest.json`` is osnmf's marker of it and lists the files
the last run wrote there.

* **The marker.** A folder is osnmf's only when its manifest says so (``osnmf_version``, its
  ``kind``: ``run`` for ``osnmf run``, ``projection`` for ``osnmf project``), never because it
  holds common names such as ``.cache/`` or ``sweep/``. ``--out`` naming a file, a non-empty folder
  without the marker, or a folder of the other kind is refused with one line before anything is
  written (:func:`check_out`). A run writes the marker as soon as its input is accepted.
* **One run at a time, never two runs in view.** Before the first result file of a run is put in
  place the manifest is marked ``"complete": false`` (the readers of a run, :mod:`osnmf.run.layout`,
  then refuse the folder in one line), and each result file is named in the journal ``.writing``
  just before it is renamed into place. When the run finishes its manifest lists exactly its files
  and says ``"complete": true``; the files of the previous run, and those a killed run named in
  the journal, that this run did not write are removed then (a quick demo over a full one leaves
  no ``PP6``–``PP8``; a killed K = 4 rerun leaves no ``PP4``). Only listed or journalled files are
  ever removed, listed ones only when unchanged since the run that wrote them (same size and
  modification time); anything else in the folder is left alone.
* **Leftovers.** The hidden temporary files of a killed run's atomic writes
  (``.patterns.npz.*.part``, :func:`osnmf.atomic.is_temporary`) are removed when the next run starts.

The run's machinery is not listed and survives reruns, so the same command resumes: the stage
cache ``.cache``, the sweep store ``sweep``, the lock ``.lock`` and the journal. A run that stops
early keeps the old list too (and stays marked incomplete), so the next one still cleans up after both.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import warnings
from pathlib import Path

from osnmf.atomic import is_temporary, recording, write_text
from osnmf.errors import ConfigError, OsnmfError, OsnmfWarning
from osnmf.run.layout import CACHE, JOURNAL, LOCK, MANIFEST, SWEEP
from osnmf.run.lock import RunLock

MACHINERY = (CACHE, SWEEP, LOCK, MANIFEST, JOURNAL)  # never listed, never removed by a rerun
KINDS = ("run", "projection")  # what wrote the folder: osnmf run / demo, osnmf project


def read_marker(out: str | os.PathLike) -> dict | None:
    """The manifest of ``out`` when it is osnmf's (a JSON object with ``osnmf_version`` and a
    ``files`` table; ``kind`` defaults to ``run``, ``complete`` to true), else None."""
    try:
        info = json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(info, dict) and isinstance(info.get("osnmf_version"), str)
            and isinstance(info.get("files"), dict) and info.get("kind", "run") in KINDS):
        return None
    return {**info, "kind": info.get("kind", "run"), "complete": info.get("complete", True) is not False}


def check_out(out: str | os.PathLike, kind: str = "run") -> None:
    """:class:`ConfigError` unless ``out`` is absent, an empty folder (or one holding only a lock),
    or a folder whose manifest marks it as osnmf's ``kind``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder: choose a folder for the {kind}")
    if not out.is_dir():
        return
    marker = read_marker(out)
    if marker is not None:
        if marker["kind"] == kind:
            return
        raise ConfigError(f"--out {out} is the folder of an osnmf {marker['kind']}, not of a {kind}; "
                          f"choose a new or empty folder, or the --out of an earlier {kind}")
    if {entry.name for entry in out.iterdir()} - {LOCK}:  # a lock alone: a first run that has just started
        what = "an osnmf run" if kind == "run" else f"an osnmf {kind}"
        raise ConfigError(f"--out {out} is a non-empty folder that is not {what} (no {MANIFEST}); "
                          f"choose a new or empty folder, or the --out of an earlier {kind}")


def read_manifest(out: str | os.PathLike) -> dict[str, dict]:
    """The files the folder's last run listed, ``{relative path: {"size", "mtime_ns"}}`` (empty when
    there is no readable manifest)."""
    marker = read_marker(out)
    files = {} if marker is None else marker["files"]
    return {str(k): v for k, v in files.items() if isinstance(v, dict)}


def read_journal(out: str | os.PathLike) -> list[str]:
    """The result files named in the journal of ``out`` (a run that was writing, or was killed)."""
    try:
        text = (Path(out) / JOURNAL).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return sorted({line for line in text.splitlines() if line.strip()})


def _stat(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _relative(out: Path, written: set[Path]) -> dict[str, dict]:
    """Listed form of the resolved paths ``written`` under ``out`` (machinery left out)."""
    root = out.resolve()
    files = {}
    for path in sorted(written):
        rel = path.relative_to(root)
        if rel.parts[0] in MACHINERY or not path.is_file():
            continue
        files[rel.as_posix()] = _stat(path)
    return files


def _listed_path(out: Path, rel: str) -> Path | None:
    """``out / rel`` when it is a file a manifest may name (inside the folder, not machinery)."""
    path = out / rel
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts or parts[0] in MACHINERY:
        return None
    return path if path.is_file() and not path.is_symlink() else None


def remove_stale(out: str | os.PathLike, previous: dict[str, dict], current: dict[str, dict]) -> list[str]:
    """Remove the files of ``previous`` not in ``current`` (unchanged ones only, or any marked
    ``{"journal": true}``: named by a killed run's journal; a changed one is kept with a warning),
    then the folders they leave empty. Returns the removed relative paths."""
    out = Path(out)
    removed = []
    for rel in sorted(set(previous) - set(current)):
        path = _listed_path(out, rel)
        if path is None:
            continue
        stat, was = path.stat(), previous[rel]
        if not was.get("journal") and (stat.st_size, stat.st_mtime_ns) != (was.get("size"), was.get("mtime_ns")):
            warnings.warn(f"{path}: kept, a file of the previous run changed since; delete it if it is not "
                          "wanted", OsnmfWarning, stacklevel=2)
            continue
        path.unlink()
        removed.append(rel)
        _remove_empty_parents(path.parent, out)
    return removed


def _remove_empty_parents(folder: Path, out: Path) -> None:
    while folder != out and out in folder.parents:
        try:
            folder.rmdir()  # only when empty
        except OSError:
            return
        folder = folder.parent


def remove_temporaries(out: str | os.PathLike) -> list[str]:
    """Remove the temporary files that killed atomic writes left anywhere under ``out`` (the
    folder must be locked: no write of this folder is under way). Returns their relative paths."""
    out = Path(out)
    removed = []
    for folder, _, names in os.walk(out):
        for name in names:
            path = Path(folder) / name
            if is_temporary(name) and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path.relative_to(out).as_posix())
    return sorted(removed)


def write_manifest(out: str | os.PathLike, files: dict[str, dict], kind: str = "run", complete: bool = True) -> Path:
    """Write ``<out>/manifest.json`` (atomically) listing ``files``; ``complete`` false marks a run
    that is writing its results, or stopped while doing so."""
    from osnmf._version import __version__

    body = {"osnmf_version": __version__, "kind": kind, "complete": bool(complete),
            "written": time.strftime("%Y-%m-%d %H:%M:%S"),
            "note": (f"files written by the last osnmf {kind} of this folder; a rerun removes those it no longer "
                     "writes" + ("" if complete else "; INCOMPLETE: it stopped while writing its results")),
            "files": files}
    return write_text(Path(out) / MANIFEST, json.dumps(body, indent=1) + "\n")


def finish(out: str | os.PathLike, written: set[Path], complete: bool, kind: str = "run") -> list[str]:
    """Record what a run wrote (``written``, resolved paths) and clear the journal: after a complete
    run remove the previous run's leftovers and those a killed run journalled, and list this run's
    files (complete); after an early stop that wrote results list both runs' files (incomplete).
    Returns the removed paths."""
    out = Path(out)
    previous, journal, current = read_manifest(out), read_journal(out), _relative(out, written)
    if not complete:
        if journal or current:
            both = {**previous, **{rel: _stat(p) for rel in journal if (p := _listed_path(out, rel))}}
            kept = {rel: info for rel, info in both.items() if rel not in current and _listed_path(out, rel)}
            write_manifest(out, {**kept, **current}, kind, complete=False)
        (out / JOURNAL).unlink(missing_ok=True)
        return []
    removed = remove_stale(out, {**previous, **{rel: {"journal": True} for rel in journal}}, current)
    write_manifest(out, current, kind)
    (out / JOURNAL).unlink(missing_ok=True)
    return removed


class RunFolder:
    """The ``--out`` folder of one run (``kind`` ``run``) or projection, for the length of a ``with``.

    Checked on creation (:func:`check_out`); an existing folder is locked on entry (a second run
    stops at once), a new one by :meth:`open`, which the run calls once its input is accepted (so
    a rejected input leaves no folder behind). Every result file written inside the block is
    journalled and recorded; on exit the manifest commits (:func:`finish`) when :attr:`complete`
    was set, and :attr:`removed` lists the leftovers removed then.
    """

    def __init__(self, out: str | os.PathLike, kind: str = "run"):
        self.out, self.kind = Path(out), kind
        check_out(self.out, kind)
        self.lock = RunLock(self.out)
        self.complete = False
        self.removed: list[str] = []
        self.written: set[Path] = set()
        self._journalling = False
        self._mutex = threading.RLock()
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> RunFolder:
        self.written = self._stack.enter_context(recording(self.out, before=self._before))
        try:
            if self.out.is_dir():
                self.lock.acquire()
        except BaseException:
            self._stack.close()
            raise
        return self

    def open(self) -> list[str]:
        """Create and lock the folder, remove a killed run's temporary files, mark it as osnmf's.
        Returns the temporary files removed."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        removed = remove_temporaries(self.out)
        if read_marker(self.out) is None:
            write_manifest(self.out, {}, self.kind)
        return removed

    def _before(self, path: Path) -> None:
        """Called before a file under the folder is put in place: journal a result file (and mark
        the manifest incomplete before the first one)."""
        rel = path.relative_to(self.out.resolve())
        if rel.parts[0] in MACHINERY:
            return
        with self._mutex:
            if not self._journalling:
                write_manifest(self.out, read_manifest(self.out), self.kind, complete=False)
                self._journalling = True
            fd = os.open(self.out / JOURNAL, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, (rel.as_posix() + "\n").encode())
            finally:
                os.close(fd)

    def __exit__(self, *exc) -> None:
        try:
            if self.lock.held:
                self.removed = finish(self.out, self.written, self.complete, self.kind)
        except (OsnmfError, OSError):
            if self.complete:  # else the run's own error (e.g. disk full in the outputs) is the one to report
                raise
        finally:  # even when the manifest cannot be written (disk full): no .lock left behind
            self._stack.close()
            self.lock.release()
