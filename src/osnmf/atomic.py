"""Atomic file writes: write to a temporary file in the target folder, then rename.

A reader never sees a half-written file, and an interrupted write leaves only a ``.part`` file
that is removed on the way out (a killed process leaves it: :func:`is_temporary` names such
files, and a run folder's next start removes them, :mod:`osnmf.run.folder`). A write that fails
for want of space or write access raises :class:`~osnmf.errors.StorageError` naming the file.
:func:`recording` collects the paths written under a folder (a run's manifest) and can announce
each one before it is put in place (the run's journal).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from osnmf.errors import STORAGE_ERRNOS, storage_error

# (folder, paths written under it, called with each path before it is put in place) of open recordings
_RECORDERS: list[tuple[Path, set[Path], Callable[[Path], None] | None]] = []
PREFIX, SUFFIX = ".", ".part"  # a temporary file: .<name>.<8 random characters><suffix>
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.[A-Za-z0-9]+)$")


def is_temporary(name: str) -> bool:
    """Whether the file name ``name`` is one of :func:`atomic_path`'s temporary files
    (``.patterns.npz.k3j9x_2a.part``, ``.PP1.nrrd.0abcdefg.nrrd``)."""
    match = _TEMPORARY.match(name)
    return bool(match) and (match["suffix"] == SUFFIX or match["name"].endswith(match["suffix"]))


@contextlib.contextmanager
def recording(folder: str | os.PathLike, before: Callable[[Path], None] | None = None) -> Iterator[set[Path]]:
    """Yield a set that collects the resolved paths written (by this module) under ``folder``
    while the block runs; ``before(path)`` (resolved) is called just before each is put in place."""
    entry = (Path(folder).resolve(), set(), before)
    _RECORDERS.append(entry)
    try:
        yield entry[1]
    finally:
        _RECORDERS.remove(entry)


def _recorders(path: Path):
    resolved = path.resolve()
    return resolved, [entry for entry in list(_RECORDERS) if resolved.is_relative_to(entry[0])]


def _announce(path: Path) -> None:
    if _RECORDERS:
        resolved, entries = _recorders(path)
        for _, _, before in entries:
            if before is not None:
                before(resolved)


def _record(path: Path) -> None:
    if _RECORDERS:
        resolved, entries = _recorders(path)
        for _, written, _ in entries:
            written.add(resolved)


def _temporary(name, path: Path, suffix: str) -> bool:
    """Whether ``name`` is one of :func:`atomic_path`'s temporary names for ``path``."""
    return name is not None and Path(os.fsdecode(name)).name.startswith(f".{path.name}.") \
        and os.fsdecode(name).endswith(suffix)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``.

    ``suffix`` is the temporary file's extension, for writers that choose a format by it.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{PREFIX}{path.name}.", suffix=suffix)
        os.close(fd)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
    except OSError as exc:  # named by the file wanted, not by mkstemp's temporary name
        raise storage_error(exc, path, own_name=not _temporary(exc.filename, path, suffix)) from None
    try:
        yield Path(tmp)
        _announce(path)
        os.replace(tmp, path)
        _record(path)
    except OSError as exc:  # disk full, read-only: one line naming the file (the .part goes below)
        if exc.errno in STORAGE_ERRNOS:
            raise storage_error(exc, path, own_name=not _temporary(exc.filename, path, suffix)) from None
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)


def check_free_space(path: str | os.PathLike, n_bytes: int) -> None:
    """:class:`StorageError` (disk full, naming ``path``) unless the disk of ``path``'s folder has
    ``n_bytes`` free. For writers that cannot fail cleanly mid-file (HDF5 keeps its state broken
    and crashes the interpreter at exit), so they are stopped before they start."""
    folder = Path(path).parent
    try:
        stat = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs (Windows) or no folder yet: the write will tell
        return
    free = stat.f_bavail * stat.f_frsize
    if free < n_bytes:
        raise storage_error(OSError(errno.ENOSPC, f"{free:,} bytes free, about {n_bytes:,} needed"), path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def save_npz(path: str | os.PathLike, compress: bool = True, **arrays: np.ndarray) -> Path:
    """``np.savez`` atomically; string arrays must be unicode (never object) so loading needs no pickle."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; convert to str or numbers first")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            (np.savez_compressed if compress else np.savez)(handle, **arrays)
    return Path(path)
