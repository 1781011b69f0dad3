"""The list of Allen Mouse Brain Atlas (P56) ISH experiments of one plane, from the Allen API.

The filter is the seed paper's download query (``data/download_mouse_brain_ISH_data.py`` of the
Yu group's ``shifwang/allen_institute_collaboration`` repository, the code the 4,345 coronal
experiments were fetched with), with the plane as a parameter; it is paged instead of
``num_rows$eqall`` and keeps every gene field (not ``only$eq'genes.acronym,id'``)::

    {base_url}/api/v2/data/query.json?criteria=model::SectionDataSet,rma::criteria,[failed$eqFalse],
        plane_of_section[name$eqsagittal],products[name$eq'Mouse Brain'],treatments[name$eqISH],
        rma::include,genes,rma::options[num_rows$eq2000][start_row$eq0][order$eq'data_sets.id']

Details not confirmed against the live API fall back: an ``https`` root that cannot be reached
is retried over ``http`` (the scheme the Allen documentation uses), a query refused with the
``order`` option is asked again without it, and ``entrez_id`` may be missing. The answer is
cached in the download folder as ``<plane>_experiments.csv`` beside ``<plane>_experiments.json``
(source, query URL, UTC date, row count); a rerun reuses it unless asked to refresh.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from osnmf.atomic import atomic_path, write_text
from osnmf.datasets.http_get import Permanent, Transient, get_bytes
from osnmf.datasets.http_get import Unreachable as _NoAnswer
from osnmf.errors import ConfigError, DownloadError, OsnmfWarning

__all__ = ["ApiRoot", "cached_experiment_list", "query_experiments", "query_url"]

PAGE_ROWS = 2000
MAX_PAGE_BYTES = 64 << 20  # one page of 2,000 records with their genes is a few MB
MAX_PAGE_SECONDS = 600.0  # wall clock per page, whatever the server sends (a trickle is cut off)
LIST_COLUMNS = ["section_data_set_id", "gene_symbol", "plane", "entrez_id"]
PLANE_OF_SECTION_IDS = {"coronal": 1, "sagittal": 2}
QUERY_SOURCE = "shifwang/allen_institute_collaboration, data/download_mouse_brain_ISH_data.py"
SORT_OPTION = "[order$eq'data_sets.id']"


class QueryRefused(DownloadError):
    """The API answered the list query with an error (HTTP status or ``success: false``)."""


class Unreachable(DownloadError):
    """No HTTP answer at all: TLS failure, refused or reset connection, unknown host."""


class ApiRoot:
    """The API root URL of one run; moves from https to http (once, for every later request)
    when an https connection cannot be made."""

    def __init__(self, url: str) -> None:
        self.url = str(url).rstrip("/")
        self._lock = threading.Lock()

    def fall_back_to_http(self, failed_url: str, reason: str) -> bool:
        """True if ``failed_url`` was https, so the caller should retry it over http now."""
        if not failed_url.startswith("https://"):
            return False
        with self._lock:
            if self.url.startswith("https://"):
                self.url = "http://" + self.url[len("https://"):]
                warnings.warn(f"https to the Allen API failed ({reason}); using {self.url} instead",
                              OsnmfWarning, stacklevel=2)
        return True


def query_url(base_url: str, plane: str, start_row: int = 0, num_rows: int = PAGE_ROWS, sort: bool = True) -> str:
    """RMA query URL for one page of the non-failed P56 mouse ISH SectionDataSets of ``plane``."""
    if plane not in PLANE_OF_SECTION_IDS:
        raise ConfigError(f"plane {plane!r}: choose coronal or sagittal")
    criteria = (
        "model::SectionDataSet,rma::criteria,[failed$eqFalse],"
        f"plane_of_section[name$eq{plane}],products[name$eq'Mouse Brain'],treatments[name$eqISH],"
        f"rma::include,genes,rma::options[num_rows$eq{int(num_rows)}][start_row$eq{int(start_row)}]"
        + (SORT_OPTION if sort else "")
    )
    return f"{base_url.rstrip('/')}/api/v2/data/query.json?criteria={urllib.parse.quote(criteria, safe=',:$[]')}"


def backoff_delay(attempt: int, backoff: float, max_backoff: float = 30.0) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, …): ``min(max_backoff, backoff × 2^(attempt−1))``."""
    return min(max_backoff, backoff * 2 ** (attempt - 1))


def _read_json(url: str, timeout: float, user_agent: str) -> dict:
    """One GET of ``url``; the parsed RMA envelope, or QueryRefused if it reports no list."""
    body = get_bytes(url, timeout, MAX_PAGE_BYTES, MAX_PAGE_SECONDS,
                     {"User-Agent": user_agent, "Accept": "application/json"})
    data = json.loads(body)
    if not isinstance(data, dict) or data.get("success") is not True or not isinstance(data.get("msg"), list):
        message = data.get("msg") if isinstance(data, dict) else data
        raise QueryRefused(f"the API answered success: false ({' '.join(str(message).split())[:160]})")
    return data


def _get_json(root: ApiRoot, make_url: Callable[[str], str], timeout: float, retries: int, backoff: float,
              user_agent: str) -> dict:
    """The envelope of ``make_url(root.url)``, retrying transient failures; https falls back to http."""
    error: DownloadError | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_delay(attempt, backoff))
        url = make_url(root.url)
        try:
            return _read_json(url, timeout, user_agent)
        except QueryRefused as exc:
            error = exc
        except (Permanent, Transient) as exc:  # bounded GET (osnmf.datasets.http_get)
            if exc.status is not None:
                error = QueryRefused(str(exc))
            elif isinstance(exc, _NoAnswer) and root.fall_back_to_http(url, str(exc)):
                return _get_json(root, make_url, timeout, retries - attempt, backoff, user_agent)
            else:
                error = Unreachable(str(exc)) if isinstance(exc, _NoAnswer) else DownloadError(str(exc))
            if isinstance(exc, Permanent):
                break
        except ValueError as exc:  # not JSON
            error = DownloadError(f"not a JSON answer ({' '.join(str(exc).split())[:120]})")
    failure = type(error)(f"{make_url(root.url)}: experiment list query failed ({error}); check the network or "
                          "--base-url and rerun")
    failure.reason = str(error)
    raise failure


def _record_row(record: dict, plane: str) -> dict | None:
    """One list row from an RMA SectionDataSet record, or None for a record to leave out."""
    if not isinstance(record, dict) or "id" not in record or record.get("failed") is True:
        return None
    if record.get("plane_of_section_id", PLANE_OF_SECTION_IDS[plane]) != PLANE_OF_SECTION_IDS[plane]:
        return None
    genes = record.get("genes") or [{}]
    gene = genes[0] if isinstance(genes[0], dict) else {}
    symbol = str(gene.get("acronym") or "").strip()
    if not symbol:
        return None
    entrez = gene.get("entrez_id")
    return {"section_data_set_id": str(record["id"]), "gene_symbol": symbol, "plane": plane,
            "entrez_id": "" if entrez is None else str(entrez)}


def _page_all(root: ApiRoot, plane: str, sort: bool, timeout: float, retries: int, backoff: float,
              page_rows: int, user_agent: str) -> tuple[list[dict], set[str], int]:
    """Every page of the query: (rows kept, distinct record ids seen, total_rows the API reported)."""
    rows, seen, start, total = [], set(), 0, None
    while total is None or start < total:
        def make_url(base: str, start_row: int = start) -> str:
            return query_url(base, plane, start_row, page_rows, sort)

        data = _get_json(root, make_url, timeout, retries, backoff, user_agent)
        total = int(data.get("total_rows", len(data["msg"])))
        for record in data["msg"]:
            seen.add(str(record.get("id")) if isinstance(record, dict) else "")
            row = _record_row(record, plane)
            if row is not None:
                rows.append(row)
        if not data["msg"]:
            break
        start += len(data["msg"])
    return rows, seen, total


def query_experiments(base_url: str | ApiRoot, plane: str, timeout: float = 60.0, retries: int = 4,
                      backoff: float = 1.0, page_rows: int = PAGE_ROWS, user_agent: str = "osnmf") -> pd.DataFrame:
    """All non-failed P56 mouse ISH experiments of ``plane``, paged through the RMA query.

    Returns
    -------
    DataFrame with string columns ``section_data_set_id``, ``gene_symbol`` (first gene of the
    experiment), ``plane``, ``entrez_id`` (blank when the API gives none), sorted by id. Records
    without a gene, marked failed or of another plane are left out.
    """
    root = base_url if isinstance(base_url, ApiRoot) else ApiRoot(base_url)
    args = (timeout, retries, backoff, page_rows, user_agent)
    try:
        rows, seen, total = _page_all(root, plane, True, *args)
    except QueryRefused as exc:  # ask without the sort; said only if that works
        rows, seen, total = _page_all(root, plane, False, *args)
        warnings.warn(f"the list query sorted by {SORT_OPTION} was refused ({getattr(exc, 'reason', exc)}); "
                      "listed without it",
                      OsnmfWarning, stacklevel=2)
    if len(seen) < total:
        warnings.warn(f"the {plane} list query reported {total} experiments but {len(seen)} distinct ones came "
                      "back (the listing changed while paging?); rerun with --refresh-list to ask again",
                      OsnmfWarning, stacklevel=2)
    table = pd.DataFrame(rows, columns=LIST_COLUMNS).drop_duplicates("section_data_set_id")
    if table.empty:
        raise DownloadError(f"the Allen API listed no {plane} experiments ({query_url(root.url, plane)})")
    return table.sort_values("section_data_set_id", key=lambda s: s.astype(int)).reset_index(drop=True)


def _read_cache(csv_path: Path, meta_path: Path) -> tuple[pd.DataFrame, dict] | None:
    try:
        meta = json.loads(meta_path.read_text())
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError):
        return None  # unreadable cache: list again
    if list(table.columns) == LIST_COLUMNS and len(table) == meta.get("n_experiments"):
        return table, meta
    return None


def cached_experiment_list(out: str | Path, plane: str, base_url: str | ApiRoot, refresh: bool = False,
                           packaged: Callable[[], pd.DataFrame] | None = None, **query) -> tuple[pd.DataFrame, dict]:
    """The ``plane`` experiment list: ``out/<plane>_experiments.csv`` if cached, else queried and cached.

    If the query fails and ``packaged`` is given, its list is used instead (with a warning) and
    cached the same way; with ``refresh`` (an explicit request to query) the failure is raised.
    Returns ``(table, meta)``; ``meta`` holds ``plane``, ``source`` (``"query"`` or
    ``"packaged"``), ``retrieved_utc`` (when the list was put in ``out``), ``query`` and
    ``n_experiments`` (also in ``out/<plane>_experiments.json``), and ``query_error`` when the
    packaged list stood in.
    """
    out = Path(out)
    csv_path, meta_path = out / f"{plane}_experiments.csv", out / f"{plane}_experiments.json"
    if not refresh and csv_path.is_file() and meta_path.is_file():
        cached = _read_cache(csv_path, meta_path)
        if cached is not None:
            return cached
    root = base_url if isinstance(base_url, ApiRoot) else ApiRoot(base_url)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        table = query_experiments(root, plane, **query)
        meta = {"plane": plane, "source": "query", "retrieved_utc": now, "query": query_url(root.url, plane)}
    except DownloadError as exc:
        if packaged is None or refresh:  # asked explicitly to query: its failure is the answer
            raise
        table = packaged()
        warnings.warn(f"{exc}; using the packaged {plane} list ({len(table)} experiments) instead",
                      OsnmfWarning, stacklevel=2)
        meta = {"plane": plane, "source": "packaged", "retrieved_utc": now, "query": None,
                "query_error": str(exc)}
    meta["n_experiments"] = int(len(table))
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    write_text(meta_path, json.dumps(meta, indent=2))
    return table, meta
