"""The list of Allen Mouse Brain Atlas (P56) ISH experiments of one plane, from the Allen API.

The query is the one the Allen API documentation gives for finding SectionDataSets before
downloading their 3-D expression grids ("Downloading 3-D Expression Grid Data"), without the gene
filter, with the genes included and paged::

    {base_url}/api/v2/data/query.json?criteria=model::SectionDataSet,
        rma::criteria,[failed$eq'false'],products[abbreviation$eq'Mouse'],plane_of_section[name$eq'sagittal'],
        rma::include,genes,rma::options[num_rows$eq2000][start_row$eq0][order$eq'data_sets.id']

The answer is cached in the download folder as ``<plane>_experiments.csv`` beside
``<plane>_experiments.json`` (query URL, UTC date, row count); a rerun reuses it unless asked
to refresh.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from osnmf.atomic import atomic_path, write_text
from osnmf.errors import ConfigError, DownloadError

__all__ = ["cached_experiment_list", "query_experiments", "query_url"]

PAGE_ROWS = 2000
LIST_COLUMNS = ["section_data_set_id", "gene_symbol", "plane", "entrez_id"]


def query_url(base_url: str, plane: str, start_row: int = 0, num_rows: int = PAGE_ROWS) -> str:
    """RMA query URL for one page of the non-failed P56 mouse ISH SectionDataSets of ``plane``."""
    if plane not in ("coronal", "sagittal"):
        raise ConfigError(f"plane {plane!r}: choose coronal or sagittal")
    criteria = (
        "model::SectionDataSet,rma::criteria,[failed$eq'false'],products[abbreviation$eq'Mouse'],"
        f"plane_of_section[name$eq'{plane}'],rma::include,genes,"
        f"rma::options[num_rows$eq{int(num_rows)}][start_row$eq{int(start_row)}][order$eq'data_sets.id']"
    )
    return f"{base_url.rstrip('/')}/api/v2/data/query.json?criteria={urllib.parse.quote(criteria, safe=',:$[]')}"


def backoff_delay(attempt: int, backoff: float, max_backoff: float = 30.0) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, …): ``min(max_backoff, backoff × 2^(attempt−1))``."""
    return min(max_backoff, backoff * 2 ** (attempt - 1))


def _get_json(url: str, timeout: float, retries: int, backoff: float, user_agent: str) -> dict:
    reason = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_delay(attempt, backoff))
        request = urllib.request.Request(url, headers={"User-Agent": user_agent, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http/https only)
                body = response.read(64 << 20)
            data = json.loads(body)
            if not isinstance(data, dict) or not data.get("success", False) or not isinstance(data.get("msg"), list):
                raise DownloadError(f"{url}: the experiment list query got no list of experiments from the Allen API "
                                    f"({str(data.get('msg') if isinstance(data, dict) else data)[:120]})")
            return data
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code} {exc.reason}"
            if exc.code in (400, 401, 403, 404, 410):
                break
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
    raise DownloadError(f"{url}: experiment list query failed ({reason}); check the network or --base-url and rerun")


def query_experiments(base_url: str, plane: str, timeout: float = 60.0, retries: int = 4, backoff: float = 1.0,
                      page_rows: int = PAGE_ROWS, user_agent: str = "osnmf") -> pd.DataFrame:
    """All non-failed P56 mouse ISH experiments of ``plane``, paged through the RMA query.

    Returns
    -------
    DataFrame with string columns ``section_data_set_id``, ``gene_symbol`` (first gene of the
    experiment), ``plane``, ``entrez_id``, sorted by id; experiments without a gene are left out.
    """
    rows, start, total = [], 0, None
    while total is None or start < total:
        data = _get_json(query_url(base_url, plane, start, page_rows), timeout, retries, backoff, user_agent)
        total = int(data.get("total_rows", len(data["msg"])))
        for record in data["msg"]:
            genes = record.get("genes") or []
            if "id" not in record or not genes or not genes[0].get("acronym"):
                continue
            entrez = genes[0].get("entrez_id")
            rows.append({"section_data_set_id": str(record["id"]), "gene_symbol": str(genes[0]["acronym"]).strip(),
                         "plane": plane, "entrez_id": "" if entrez is None else str(entrez)})
        if not data["msg"]:
            break
        start += len(data["msg"])
    table = pd.DataFrame(rows, columns=LIST_COLUMNS).drop_duplicates("section_data_set_id")
    if table.empty:
        raise DownloadError(f"the Allen API listed no {plane} experiments ({query_url(base_url, plane)})")
    return table.sort_values("section_data_set_id", key=lambda s: s.astype(int)).reset_index(drop=True)


def cached_experiment_list(out: str | Path, plane: str, base_url: str, refresh: bool = False,
                           **query) -> tuple[pd.DataFrame, dict]:
    """The ``plane`` experiment list: ``out/<plane>_experiments.csv`` if cached, else queried and cached.

    Returns ``(table, meta)``; ``meta`` holds ``plane``, ``retrieved_utc``, ``query`` and
    ``n_experiments`` (also in ``out/<plane>_experiments.json``).
    """
    out = Path(out)
    csv_path, meta_path = out / f"{plane}_experiments.csv", out / f"{plane}_experiments.json"
    if not refresh and csv_path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
            if list(table.columns) == LIST_COLUMNS and len(table) == meta.get("n_experiments"):
                return table, meta
        except (OSError, ValueError, pd.errors.ParserError):
            pass  # unreadable cache: query again
    table = query_experiments(base_url, plane, **query)
    meta = {"plane": plane, "retrieved_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "query": query_url(base_url, plane), "n_experiments": int(len(table))}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    write_text(meta_path, json.dumps(meta, indent=2))
    return table, meta
