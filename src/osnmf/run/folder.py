"""A run folder holds one run: ``<out>/manifest.json`` lists the files the last run wrote there.

A new run into the folder removes the files of that list it did not write again (a quick demo
over a full one leaves no ``PP6``–``PP8`` behind). Only listed files are ever removed, and only
when unchanged since the run that wrote them (same size and modification time); anything else in
the folder is left alone. The run's machinery is not listed and survives reruns, so the same
command resumes: the stage cache ``.cache``, the sweep store ``sweep`` and the lock ``.lock``.
A run that stops early keeps the old list too, so the next one still cleans up after both.

``--out`` naming a file, or a non-empty folder without any of these markers of an osnmf run, is
refused with one line before anything is written (:func:`check_out`).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

from osnmf.atomic import write_text
from osnmf.errors import ConfigError, OsnmfWarning
from osnmf.run.layout import CACHE, LOCK, SWEEP

MANIFEST = "manifest.json"
MACHINERY = (CACHE, SWEEP, LOCK, MANIFEST)  # never listed, never removed by a rerun


def check_out(out: str | os.PathLike) -> None:
    """:class:`ConfigError` unless ``out`` is absent, an empty folder, or an osnmf run folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder: choose a folder for the run")
    if not out.is_dir() or any((out / name).exists() for name in MACHINERY):
        return
    if next(out.iterdir(), None) is not None:
        raise ConfigError(f"--out {out} is a non-empty folder that is not an osnmf run (no {MANIFEST}); "
                          "choose a new or empty folder, or the --out of an earlier run")


def read_manifest(out: str | os.PathLike) -> dict[str, dict]:
    """The files the folder's last run listed, ``{relative path: {"size", "mtime_ns"}}`` (empty when
    there is no readable manifest, e.g. a run of an osnmf without manifests)."""
    try:
        files = json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {str(k): v for k, v in files.items() if isinstance(v, dict)} if isinstance(files, dict) else {}


def _relative(out: Path, written: set[Path]) -> dict[str, dict]:
    """Listed form of the resolved paths ``written`` under ``out`` (machinery left out)."""
    root = out.resolve()
    files = {}
    for path in sorted(written):
        rel = path.relative_to(root)
        if rel.parts[0] in MACHINERY or not path.is_file():
            continue
        stat = path.stat()
        files[rel.as_posix()] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return files


def _listed_path(out: Path, rel: str) -> Path | None:
    """``out / rel`` when it is a file a manifest may name (inside the folder, not machinery)."""
    path = out / rel
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts or parts[0] in MACHINERY:
        return None
    return path if path.is_file() and not path.is_symlink() else None


def remove_stale(out: str | os.PathLike, previous: dict[str, dict], current: dict[str, dict]) -> list[str]:
    """Remove the files of ``previous`` not in ``current`` (unchanged ones only; a changed one is kept
    with a warning), then the folders they leave empty. Returns the removed relative paths."""
    out = Path(out)
    removed = []
    for rel in sorted(set(previous) - set(current)):
        path = _listed_path(out, rel)
        if path is None:
            continue
        stat, was = path.stat(), previous[rel]
        if (stat.st_size, stat.st_mtime_ns) != (was.get("size"), was.get("mtime_ns")):
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


def write_manifest(out: str | os.PathLike, files: dict[str, dict]) -> Path:
    """Write ``<out>/manifest.json`` (atomically) listing ``files``."""
    from osnmf._version import __version__

    body = {"osnmf_version": __version__, "written": time.strftime("%Y-%m-%d %H:%M:%S"),
            "note": "files written by the last osnmf run of this folder; a rerun removes those it no longer writes",
            "files": files}
    return write_text(Path(out) / MANIFEST, json.dumps(body, indent=1) + "\n")


def finish(out: str | os.PathLike, written: set[Path], complete: bool) -> list[str]:
    """Record what a run wrote (``written``, resolved paths): after a complete run remove the
    previous run's leftovers and list this run's files; after an early stop list both runs' files.
    Call before the run's manifest is written. Returns the removed paths."""
    out = Path(out)
    previous, current = read_manifest(out), _relative(out, written)
    if not complete:
        kept = {rel: info for rel, info in previous.items() if rel not in current and _listed_path(out, rel)}
        if kept or current or (out / MANIFEST).exists():
            write_manifest(out, {**kept, **current})
        return []
    removed = remove_stale(out, previous, current)
    write_manifest(out, current)
    return removed
