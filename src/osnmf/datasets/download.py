"""Download the Allen Mouse Brain Atlas expression grids into an ABA grid folder.

``download_aba(out)`` fetches ``{base_url}/grid_data/download/{id}?include=energy`` for each
experiment (by default the packaged 4,345 coronal P56 experiments of the seed paper; a packaged
sagittal list stands in when the live sagittal listing fails) and writes::

    OUT/experiments.csv          section_data_set_id, gene_symbol[, plane, entrez_id]
    OUT/energy/<id>.zip          the Allen API zip (energy.mhd + energy.raw), one per experiment

the layout :func:`osnmf.io.aba_folder.read_aba_folder` reads. Only the standard library talks to
the network (``http.client`` + a thread pool).

Safety: each body is streamed into a temporary ``energy/.<id>.zip.<random>.part`` file, checked
(size equals the ``Content-Length``, the zip opens, no member with ``..`` or an absolute path,
``energy.raw`` has the byte count its ``.mhd`` header declares, the grid has the expected shape
and valid values) and only then renamed to ``<id>.zip``; anything else is deleted. A grid of
another shape (the Allen API reports some experiments in other boxes, e.g. 68 × 40 × 50) is a
permanent failure of that experiment, not retried. An ``https`` root that cannot be reached is
used over ``http`` for the rest of the run. A rerun
re-validates the zips already there, skips the valid ones and fetches the rest, so an interrupted
or partly failed run is finished by running the same command again. ``experiments.csv`` is
rewritten atomically at the end and lists exactly the experiments whose zips are present (earlier
runs' entries kept), so the folder is always loadable; when none is present no list is written
(and the folders this run created are removed again), never a header-only one.

Bounds (see :mod:`osnmf.datasets.http_get`): an attempt ends after ``max_seconds`` wall clock
whatever the server sends, a body over ``max_bytes`` (2 MiB) is refused, redirects are followed
only to http(s) on the same host, and a zip's members are checked against the grid before they
are decompressed (:mod:`osnmf.formats.metaimage`). A failed write (disk full, read-only) stops
the download with one line naming the file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd

from osnmf.atomic import atomic_path
from osnmf.datasets.allen_query import ApiRoot, backoff_delay
from osnmf.datasets.http_get import Permanent, Transient, Unreachable, get_to_file
from osnmf.errors import ConfigError, DownloadError, InputError, OsnmfError, StorageError, storage_error
from osnmf.formats.allen_grid import read_allen_grid_zip
from osnmf.formats.metaimage import GridShapeError
from osnmf.io.aba_folder import (
    EXPERIMENTS_CSV,
    GENE_COLUMN,
    GRID_DIR,
    ID_COLUMN,
    check_experiment_id,
    read_experiments_csv,
)
from osnmf.progress import ProgressBar

DEFAULT_BASE_URL = "https://api.brain-map.org"
ALLEN_GRID_SHAPE = (67, 41, 58)
PACKAGED_LISTS = {"coronal": "coronal_experiments.csv.gz", "sagittal": "sagittal_experiments.csv.gz"}
# the largest real grid zip measured is 408,729 bytes (the 8 of /work/shared/data/aba_real); one that
# compressed nothing would be 637,304 (energy.raw) + 190 kB (the largest data_set.xml) + headers
MAX_ZIP_BYTES = 2 << 20
NOT_RETRIED = "left out (not retried)"




@dataclass
class DownloadReport:
    """Final account of a :func:`download_aba` run.

    Attributes
    ----------
    out : the ABA grid folder.
    downloaded : ids fetched and validated in this run.
    present : ids whose zip was already there and valid (skipped).
    failed : id → reason (after all retries), for ids that have no valid zip now.
    attempts : id → number of attempts made for it in this run (an https attempt repeated over
        http counts once).
    """

    out: Path
    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """A few human-readable lines: the counts, then one line per failed id."""
        lines = [
            f"{self.out}: {len(self.downloaded)} downloaded, {len(self.present)} already present, "
            f"{len(self.failed)} failed"
        ]
        lines += [f"  failed {exp_id}: {reason}" for exp_id, reason in self.failed.items()]
        if any(not reason.endswith(NOT_RETRIED) for reason in self.failed.values()):
            lines.append("  rerun the same command to retry the failed experiments")
        if self.failed and not (self.out / EXPERIMENTS_CSV).exists():
            lines.append(f"  nothing was downloaded: {self.out} has no {EXPERIMENTS_CSV} yet, so it is no ABA "
                         "grid folder")
        return "\n".join(lines)


def packaged_experiments(plane: str = "coronal") -> pd.DataFrame:
    """A packaged experiment list (string columns; see ``osnmf/resources/PROVENANCE.md``).

    ``"coronal"``: the seed paper's 4,345 coronal experiments; ``"sagittal"``: the 21,716 sagittal
    P56 experiments listed beside them by the same source.
    """
    if plane not in PACKAGED_LISTS:
        raise ConfigError(f"plane={plane!r}: must be one of {', '.join(PACKAGED_LISTS)}")
    with resources.as_file(resources.files("osnmf.resources").joinpath(PACKAGED_LISTS[plane])) as path:
        return pd.read_csv(path, dtype=str, keep_default_na=False)


def _experiment_table(experiments) -> pd.DataFrame:
    if experiments is None:
        return packaged_experiments()
    if isinstance(experiments, pd.DataFrame):
        table = experiments.copy()
        missing = [c for c in (ID_COLUMN, GENE_COLUMN) if c not in table.columns]
        if missing:
            raise InputError(f"experiments table lacks column(s) {', '.join(missing)}")
        table = table.astype({ID_COLUMN: str, GENE_COLUMN: str})
        for exp_id in table[ID_COLUMN]:
            check_experiment_id(exp_id, "experiments table")
        if table[ID_COLUMN].duplicated().any():
            raise InputError("experiments table lists an experiment id twice")
        if len(table) == 0:
            raise InputError("experiments table is empty")
        return table.reset_index(drop=True)
    if isinstance(experiments, str | os.PathLike):
        return read_experiments_csv(experiments)
    # a sequence of ids: take their symbols from the packaged lists
    ids = [str(i).strip() for i in experiments]
    if not ids:
        raise InputError("no experiment ids given")
    packaged = pd.concat([packaged_experiments(p) for p in PACKAGED_LISTS]).set_index(ID_COLUMN, drop=False)
    unknown = [i for i in ids if i not in packaged.index]
    if unknown:
        raise InputError(
            f"experiment id(s) {', '.join(unknown[:5])} are not in the packaged coronal or sagittal lists; "
            f"pass a CSV with columns {ID_COLUMN}, {GENE_COLUMN} instead"
        )
    if len(set(ids)) != len(ids):
        raise InputError("an experiment id is listed twice")
    return packaged.loc[ids].reset_index(drop=True)


PLANE_CHOICES = ("coronal", "sagittal", "both")


def _plane_table(out: Path, plane: str, base_url: str | ApiRoot, timeout: float, retries: int, backoff: float,
                 refresh: bool) -> pd.DataFrame:
    """The experiment list of ``plane``: coronal packaged, sagittal queried (cached in ``out``; the
    packaged sagittal list if the query fails), or both."""
    from osnmf.datasets.allen_query import cached_experiment_list

    if plane not in PLANE_CHOICES:
        raise ConfigError(f"plane={plane!r}: must be one of {', '.join(PLANE_CHOICES)}")
    sagittal, _ = cached_experiment_list(out, "sagittal", base_url, refresh=refresh, timeout=timeout,
                                         retries=retries, backoff=backoff,
                                         packaged=lambda: packaged_experiments("sagittal"))
    if plane == "sagittal":
        return sagittal
    coronal = packaged_experiments()
    return pd.concat([coronal, sagittal[~sagittal[ID_COLUMN].isin(coronal[ID_COLUMN])]], ignore_index=True)


def grid_url(base_url: str, exp_id: str) -> str:
    """The Allen API URL of one experiment's energy grid zip."""
    return f"{base_url.rstrip('/')}/grid_data/download/{urllib.parse.quote(exp_id)}?include=energy"


def validate_grid_zip(path: str | os.PathLike, expected_shape: tuple[int, int, int] | None = ALLEN_GRID_SHAPE) -> None:
    """Raise :class:`InputError` unless ``path`` is a complete, safe Allen energy-grid zip.

    Checks (via :func:`osnmf.formats.allen_grid.read_allen_grid_zip`): the zip opens and its CRCs
    match, no member is absolute or contains ``..``, ``energy.raw`` has exactly the bytes the
    ``energy.mhd`` header declares, the grid has ``expected_shape`` (AP, DV, ML) and its values are
    finite, ≥ 0 or the −1 sentinel.
    """
    read_allen_grid_zip(path, kinds=("energy",), expected_shape=expected_shape)


def _check_download(tmp: Path, expected_shape: tuple[int, int, int] | None) -> None:
    """Validate a received zip: Permanent for a complete grid of another shape, Transient if broken."""
    try:
        read_allen_grid_zip(tmp, kinds=("energy",), expected_shape=expected_shape)
    except GridShapeError as exc:  # the header's shape, refused before its raw data is read
        raise Permanent(f"grid is {' × '.join(map(str, exc.shape))} (AP × DV × ML), not "
                         f"{' × '.join(map(str, expected_shape))}; {NOT_RETRIED}") from None
    except InputError as exc:
        raise Transient(f"invalid grid zip: {str(exc).replace(str(tmp), 'download')}") from None


def _fetch_once(url: str, tmp: Path, timeout: float, max_bytes: int, user_agent: str, max_seconds: float) -> int:
    """One bounded GET of ``url`` into ``tmp`` (:mod:`osnmf.datasets.http_get`); returns the byte count."""
    headers = {"User-Agent": user_agent, "Accept": "application/zip"}
    return get_to_file(url, tmp, timeout, max_bytes, max_seconds, headers)


def _fetch(root: ApiRoot, exp_id: str, tmp: Path, *limits) -> int:
    """:func:`_fetch_once` from ``root``; an unreachable https root is retried at once over http."""
    url = grid_url(root.url, exp_id)
    try:
        return _fetch_once(url, tmp, *limits)
    except Unreachable as exc:
        if not root.fall_back_to_http(url, str(exc)):
            raise
    return _fetch_once(grid_url(root.url, exp_id), tmp, *limits)


def _stale_parts(grid_dir: Path, exp_id: str) -> list[Path]:
    return list(grid_dir.glob(f".{exp_id}.zip.*.part"))


def _download_one(
    exp_id: str,
    grid_dir: Path,
    root: ApiRoot,
    timeout: float,
    retries: int,
    backoff: float,
    max_backoff: float,
    max_bytes: int,
    max_seconds: float,
    expected_shape: tuple[int, int, int] | None,
    user_agent: str,
    stop: threading.Event,
    sleep: Callable[[float], None],
) -> tuple[str, str | None, int]:
    """Fetch and validate one experiment. Returns (status, reason, attempts)."""
    final = grid_dir / f"{exp_id}.zip"
    for stale in _stale_parts(grid_dir, exp_id):  # left by an interrupted run
        stale.unlink(missing_ok=True)
    if final.exists():
        try:
            validate_grid_zip(final, expected_shape)
            return "present", None, 0
        except InputError:
            final.unlink(missing_ok=True)  # corrupt leftover: fetch it again
    reason = "not attempted"
    attempts = 0
    for attempt in range(retries + 1):
        if stop.is_set():
            return "failed", "cancelled", attempts
        if attempt:
            sleep(backoff_delay(attempt, backoff, max_backoff))
        try:
            fd, tmp_name = tempfile.mkstemp(dir=grid_dir, prefix=f".{exp_id}.zip.", suffix=".part")
            os.close(fd)
        except OSError as exc:  # disk full, read-only: stops the whole download (StorageError)
            raise storage_error(exc, grid_dir) from None
        tmp = Path(tmp_name)
        attempts += 1
        try:
            _fetch(root, exp_id, tmp, timeout, max_bytes, user_agent, max_seconds)
            _check_download(tmp, expected_shape)
            try:
                os.replace(tmp, final)
            except OSError as exc:
                raise storage_error(exc, final) from None
            return "downloaded", None, attempts
        except StorageError as exc:  # named by the file wanted, not by its temporary name
            raise StorageError(str(exc).replace(str(tmp), str(final))) from None
        except Permanent as exc:
            return "failed", str(exc), attempts
        except Transient as exc:
            reason = str(exc)
        finally:
            tmp.unlink(missing_ok=True)
    return "failed", f"{reason} (after {attempts} attempts)", attempts


def _write_experiments_csv(out: Path, table: pd.DataFrame, present: set[str]) -> None:
    """Rewrite ``OUT/experiments.csv`` atomically: earlier valid entries, then this run's present ones.

    A list that would be empty is not written (a header-only file is no ABA grid folder); an
    earlier file is then left as it was."""
    path = out / EXPERIMENTS_CSV
    rows = table[table[ID_COLUMN].isin(present)]
    if path.exists():
        try:
            earlier = read_experiments_csv(path)
        except InputError:
            earlier = None  # unreadable: replaced by this run's list
        if earlier is not None:
            keep = earlier[~earlier[ID_COLUMN].isin(table[ID_COLUMN])]
            keep = keep[[(out / GRID_DIR / f"{i}.zip").is_file() for i in keep[ID_COLUMN]]]
            rows = pd.concat([keep, rows], ignore_index=True)
    if rows.empty:
        return
    with atomic_path(path) as tmp:
        rows.to_csv(tmp, index=False)


def _finish_folder(out: Path, table: pd.DataFrame, status: dict, made: list[Path]) -> None:
    """List the experiments present in ``experiments.csv``; when there are none, remove the folders
    this run ``made`` (if still empty) instead of leaving a folder that does not load."""
    done = {i for i, (s, _) in status.items() if s in ("downloaded", "present")}
    _write_experiments_csv(out, table, done)
    if not (out / EXPERIMENTS_CSV).exists():
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty


def download_aba(
    out: str | os.PathLike,
    experiments: str | os.PathLike | pd.DataFrame | Sequence[int | str] | None = None,
    base_url: str = DEFAULT_BASE_URL,
    jobs: int = 4,
    timeout: float = 60.0,
    retries: int = 4,
    backoff: float = 1.0,
    max_backoff: float = 30.0,
    max_bytes: int = MAX_ZIP_BYTES,
    max_seconds: float = 600.0,
    expected_shape: tuple[int, int, int] | None = ALLEN_GRID_SHAPE,
    progress: bool = True,
    raise_on_failure: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    plane: str | None = None,
    refresh_list: bool = False,
) -> DownloadReport:
    """Download Allen expression-energy grids into the ABA grid folder ``out``.

    Parameters
    ----------
    out : target folder (created); gets ``experiments.csv`` and ``energy/<id>.zip``.
    experiments : ``None`` for the packaged 4,345 coronal experiments; a CSV path or DataFrame
        with columns ``section_data_set_id``, ``gene_symbol`` (others kept); or a list of ids
        from the packaged coronal or sagittal list.
    base_url : API root; the grid of experiment ``id`` is ``{base_url}/grid_data/download/{id}?include=energy``.
        An ``https`` root that cannot be reached (TLS or connection failure) is used over
        ``http`` for the rest of the run, with a warning.
    jobs : concurrent downloads (threads).
    timeout : seconds a connection may stay silent (connect or read) before the attempt fails.
    retries : extra attempts after a transient failure (HTTP 5xx/429, timeout, dropped
        connection, short body, invalid zip); HTTP 400/401/403/404/410 and a complete grid of
        another shape than ``expected_shape`` are not retried.
    backoff, max_backoff : wait ``min(max_backoff, backoff × 2^(attempt−1))`` seconds before a retry.
    max_bytes : refuse bodies larger than this (default 2 MiB; the real grid zips are 159-409 kB).
    max_seconds : give up an attempt that has not finished receiving after this many seconds
        (a server trickling bytes never trips ``timeout``).
    expected_shape : grid shape (AP, DV, ML) a zip must have; ``None`` accepts any 3-D grid.
    progress : show a rich progress bar.
    raise_on_failure : raise :class:`DownloadError` (after writing everything that succeeded)
        instead of only reporting failures.
    plane : with ``experiments=None``: ``"coronal"`` (default, the packaged list), ``"sagittal"``
        (the list queried from the Allen API, see :mod:`osnmf.datasets.allen_query`, cached in
        ``out`` with its date; the packaged sagittal list if the query fails) or ``"both"``.
    refresh_list : query the sagittal list again even if ``out`` holds a cached one.

    Returns
    -------
    DownloadReport with the ids downloaded, already present and failed (with reasons).
    """
    parsed = urllib.parse.urlparse(str(base_url))
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"base URL {base_url!r} must be an http:// or https:// address")
    if int(jobs) < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    if int(retries) < 0:
        raise ConfigError(f"retries must be >= 0, got {retries}")
    if not timeout > 0:
        raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
    if not max_seconds > 0:
        raise ConfigError(f"max_seconds must be > 0, got {max_seconds}")
    if backoff < 0 or max_backoff < 0:
        raise ConfigError("backoff and max_backoff must be >= 0 seconds")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if experiments is not None and plane is not None:
        raise ConfigError("give either an experiment list or --plane, not both (--plane picks the list)")
    root = ApiRoot(str(base_url))
    table = _plane_table(out, plane, root, float(timeout), int(retries), float(backoff), refresh_list) \
        if experiments is None and plane not in (None, "coronal") else _experiment_table(experiments)
    grid_dir = out / GRID_DIR
    made = [d for d in (out, grid_dir) if not d.exists()]  # removed again if they stay empty
    try:
        grid_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, grid_dir) from None

    from osnmf._version import __version__

    user_agent = f"osnmf/{__version__} (+python urllib)"
    ids = table[ID_COLUMN].tolist()
    report = DownloadReport(out)
    status: dict[str, tuple[str, str | None]] = {}
    stop = threading.Event()

    def work(exp_id: str) -> tuple[str, str, str | None, int]:
        state, reason, attempts = _download_one(
            exp_id, grid_dir, root, float(timeout), int(retries), float(backoff),
            float(max_backoff), int(max_bytes), float(max_seconds), expected_shape, user_agent, stop, sleep,
        )
        return exp_id, state, reason, attempts

    bar = ProgressBar("downloading Allen grids", len(ids), enabled=progress, transient=False)
    executor = ThreadPoolExecutor(max_workers=int(jobs), thread_name_prefix="osnmf-download")
    try:
        bar.start()
        futures = [executor.submit(work, exp_id) for exp_id in ids]
        n_failed = 0
        for future in as_completed(futures):
            exp_id, state, reason, attempts = future.result()
            status[exp_id] = (state, reason)
            report.attempts[exp_id] = attempts
            n_failed += state == "failed"
            bar.advance(note=f"{n_failed} failed")
    except BaseException:
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)
        bar.stop()
        with contextlib.suppress(OSError, OsnmfError):  # the first error is the one reported
            _finish_folder(out, table, status, made)
        raise
    executor.shutdown(wait=True)
    bar.stop()
    _finish_folder(out, table, status, made)

    for exp_id in ids:  # the report follows the list order
        state, reason = status[exp_id]
        if state == "downloaded":
            report.downloaded.append(exp_id)
        elif state == "present":
            report.present.append(exp_id)
        else:
            report.failed[exp_id] = reason or "unknown error"
    if raise_on_failure and report.failed:
        first = next(iter(report.failed.items()))
        raise DownloadError(
            f"{len(report.failed)} of {len(ids)} experiments failed (e.g. {first[0]}: {first[1]}); "
            "rerun to retry them"
        )
    return report
