"""Marker genes of principal patterns (spec §6).

With ``X ≈ A D`` (``A``: experiments × K coefficients, ``D``: K × voxels patterns), the
*importance* of pattern ``k`` for experiment ``j`` is ``r_jk = a_jk / Σ_k' a_jk'`` — the share of
the experiment's total coefficient that pattern ``k`` carries (the reference code's
``max_k a_jk / Σ_k a_jk``). Each experiment is *assigned* to its strongest pattern
(``argmax_k a_jk``) and the experiments assigned to a pattern are ranked by importance: the top
ones are that pattern's marker genes.

Several experiments may measure the same gene. ``combine="keep"`` keeps them apart (one row per
experiment, so a gene may be a marker of two patterns); ``combine="mean"`` first averages the
coefficient rows of each gene symbol (what the reference does for networks; the reconstructed
image of the mean row is the mean of the experiments' reconstructed images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import hypergeom

from osnmf.constraints import refuse
from osnmf.errors import InputError

COMBINE_MODES = ("keep", "mean")


@dataclass
class MarkerTable:
    """Marker genes of every pattern.

    Attributes
    ----------
    table : tidy DataFrame, one row per (gene or experiment, pattern), sorted by pattern then rank.
        Columns: ``gene`` (symbol), ``experiment`` (row index into ``A``; -1 after
        ``combine="mean"``), ``n_experiments`` (rows of ``A`` behind the entry), ``pattern``
        (0-based), ``coefficient`` (``a_jk``, averaged for ``"mean"``), ``importance``
        (``r_jk``), ``assigned_pattern`` (argmax over patterns; -1 when all coefficients are 0),
        ``assigned`` (bool: this pattern is the assigned one), ``rank`` (1-based rank of the
        importance among all entries for this pattern), ``marker_rank`` (1-based rank among the
        entries *assigned* to this pattern; 0 when not assigned).
    counts : number of entries assigned to each pattern (index = pattern, length K).
    importance : float64 array (entries × K), ``r_jk``.
    assigned : int array (entries,), assigned pattern or -1.
    genes : gene symbol per entry.
    experiments : row index into ``A`` per entry (-1 after ``combine="mean"``).
    combine : the mode used.
    """

    table: pd.DataFrame
    counts: pd.Series
    importance: np.ndarray
    assigned: np.ndarray
    genes: list[str]
    experiments: np.ndarray
    combine: str

    @property
    def n_patterns(self) -> int:
        return self.importance.shape[1]


def check_coefficients(A: np.ndarray, genes: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Validate a coefficient matrix (experiments × K, finite, ≥ 0) and its gene symbols."""
    A = np.asarray(A)
    if A.ndim != 2 or A.shape[0] == 0 or A.shape[1] == 0:
        raise InputError(f"coefficients must be a non-empty 2-D array (experiments × K), got shape {A.shape}")
    if not np.issubdtype(A.dtype, np.number):
        raise InputError(f"coefficients must be numeric, got dtype {A.dtype}")
    A = A.astype(np.float64, copy=False)
    if not np.isfinite(A).all():
        raise InputError("coefficients contain NaN or infinite values")
    if (A < 0).any():
        raise InputError(f"coefficients must be >= 0 (NMF), found minimum {A.min():g}")
    genes = [str(g) for g in genes]
    if len(genes) != A.shape[0]:
        raise InputError(f"{len(genes)} gene symbols for {A.shape[0]} coefficient rows; give one symbol per row")
    return A, genes


def combine_experiments(
    A: np.ndarray, genes: Sequence[str], combine: str = "keep"
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Apply the experiment-combining rule.

    Returns
    -------
    A_out : (entries × K) coefficients, entries = experiments (``"keep"``) or unique genes in
        order of first appearance (``"mean"``, rows averaged).
    genes_out : symbol per entry.
    experiments : row index into ``A`` per entry, -1 for ``"mean"``.
    n_experiments : number of rows of ``A`` behind each entry.
    """
    if combine not in COMBINE_MODES:
        raise refuse("combine", combine, f"one of {', '.join(COMBINE_MODES)}")
    A, genes = check_coefficients(A, genes)
    if combine == "keep":
        n = A.shape[0]
        return A, genes, np.arange(n), np.ones(n, dtype=np.int64)
    codes, uniques = pd.factorize(pd.Series(genes), sort=False)
    n_unique = len(uniques)
    sums = np.zeros((n_unique, A.shape[1]))
    np.add.at(sums, codes, A)
    counts = np.bincount(codes, minlength=n_unique)
    return sums / counts[:, None], [str(u) for u in uniques], np.full(n_unique, -1), counts.astype(np.int64)


def importance_scores(A: np.ndarray) -> np.ndarray:
    """Importance ``r_jk = a_jk / Σ_k a_jk`` (entries × K); rows of zeros give zeros."""
    A = np.asarray(A, dtype=np.float64)
    total = A.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(total > 0, A / np.where(total > 0, total, 1.0), 0.0)
    return r


def assign_patterns(A: np.ndarray) -> np.ndarray:
    """Strongest pattern per entry (argmax of the coefficients; first on ties; -1 for zero rows)."""
    A = np.asarray(A)
    assigned = np.argmax(A, axis=1).astype(np.int64)
    assigned[A.max(axis=1) <= 0] = -1
    return assigned


def _rank_desc(values: np.ndarray) -> np.ndarray:
    """1-based rank of each value, highest first; ties broken by position (stable)."""
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[order] = np.arange(1, len(values) + 1)
    return ranks


def marker_genes(A: np.ndarray, genes: Sequence[str], combine: str = "keep") -> MarkerTable:
    """Importance, assignment and per-pattern ranking of genes.

    Parameters
    ----------
    A : (experiments × K) non-negative NMF coefficients (rows of ``X ≈ A D``).
    genes : gene symbol of each row of ``A`` (a gene may have several experiments).
    combine : ``"keep"`` ranks experiments separately; ``"mean"`` averages the coefficient rows of
        each gene symbol first.

    Returns
    -------
    MarkerTable with the tidy ``table``, ``counts`` per pattern and the raw arrays.
    """
    A_c, genes_c, experiments, n_exp = combine_experiments(A, genes, combine)
    n, K = A_c.shape
    r = importance_scores(A_c)
    assigned = assign_patterns(A_c)

    rank = np.empty((n, K), dtype=np.int64)
    marker_rank = np.zeros((n, K), dtype=np.int64)
    for k in range(K):
        rank[:, k] = _rank_desc(r[:, k])
        members = np.flatnonzero(assigned == k)
        if members.size:
            marker_rank[members, k] = _rank_desc(r[members, k])

    entry = np.repeat(np.arange(n), K)
    pattern = np.tile(np.arange(K), n)
    table = pd.DataFrame(
        {
            "gene": np.asarray(genes_c, dtype=object)[entry],
            "experiment": experiments[entry],
            "n_experiments": n_exp[entry],
            "pattern": pattern,
            "coefficient": A_c.ravel(),
            "importance": r.ravel(),
            "assigned_pattern": assigned[entry],
            "assigned": assigned[entry] == pattern,
            "rank": rank.ravel(),
            "marker_rank": marker_rank.ravel(),
        }
    )
    table = table.sort_values(["pattern", "rank"], kind="stable").reset_index(drop=True)
    counts = pd.Series(np.bincount(assigned[assigned >= 0], minlength=K), index=pd.RangeIndex(K, name="pattern"),
                       name="n_genes")
    return MarkerTable(table, counts, r, assigned, genes_c, experiments, combine)


def _as_table(markers: MarkerTable | pd.DataFrame) -> pd.DataFrame:
    table = markers.table if isinstance(markers, MarkerTable) else markers
    needed = {"gene", "pattern", "importance", "assigned", "marker_rank"}
    if not isinstance(table, pd.DataFrame) or not needed <= set(table.columns):
        raise InputError(f"expected a marker table from marker_genes() with columns {sorted(needed)}")
    return table


def top_markers(markers: MarkerTable | pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """The ``n`` highest-importance genes *assigned* to each pattern.

    Returns a DataFrame with columns ``pattern``, ``marker_rank``, ``gene``, ``experiment``,
    ``importance``, ``coefficient``, sorted by pattern then rank (fewer than ``n`` rows for a
    pattern that has fewer assigned genes).
    """
    if int(n) < 1:
        raise refuse("n", n, "an integer >= 1")
    table = _as_table(markers)
    top = table[table["assigned"] & (table["marker_rank"] >= 1) & (table["marker_rank"] <= int(n))]
    cols = [c for c in ("pattern", "marker_rank", "gene", "experiment", "importance", "coefficient") if c in top]
    return top.sort_values(["pattern", "marker_rank"], kind="stable")[cols].reset_index(drop=True)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values) of a 1-D array."""
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


def marker_overlap(
    markers: MarkerTable | pd.DataFrame,
    external: pd.DataFrame,
    gene_col: str = "gene",
    label_col: str = "label",
    n_top: int | None = None,
) -> pd.DataFrame:
    """Overlap of each pattern's marker genes with external marker lists, with a hypergeometric test.

    The universe is the set of gene symbols in the marker table; external genes outside it are
    ignored (they could never be pattern markers). For pattern ``k`` the marker set is the genes
    assigned to ``k`` (or its ``n_top`` best by marker rank); for label ``L`` the set is its
    external genes in the universe. With ``M`` universe genes, ``N`` pattern markers, ``n`` label
    genes and ``x`` shared, ``p = P(X ≥ x)`` for ``X ~ Hypergeom(M, n, N)`` (one-sided
    enrichment).

    Parameters
    ----------
    markers : result of :func:`marker_genes` (or its ``table``).
    external : DataFrame with a gene-symbol column and a label column (region or cell type);
        a gene may carry several labels (one row each).
    n_top : restrict each pattern's markers to the top ``n_top`` assigned genes.

    Returns
    -------
    DataFrame, one row per (pattern, label): ``pattern``, ``label``, ``overlap``, ``n_pattern``,
    ``n_label``, ``n_universe``, ``expected`` (``N n / M``), ``fold_enrichment``, ``p_value``,
    ``q_value`` (Benjamini–Hochberg over all rows), ``genes`` (shared symbols, ``;``-joined).
    """
    table = _as_table(markers)
    if not isinstance(external, pd.DataFrame) or gene_col not in external or label_col not in external:
        raise InputError(f"external markers must be a DataFrame with columns {gene_col!r} and {label_col!r}")
    if n_top is not None and int(n_top) < 1:
        raise refuse("n_top", n_top, "an integer >= 1 or None")
    universe = set(table["gene"].astype(str))
    M = len(universe)
    assigned = table[table["assigned"]]
    if n_top is not None:
        assigned = assigned[assigned["marker_rank"] <= int(n_top)]
    patterns = sorted(int(p) for p in table["pattern"].unique())
    pattern_sets = {k: set(assigned.loc[assigned["pattern"] == k, "gene"].astype(str)) for k in patterns}
    ext = external[[gene_col, label_col]].dropna().astype(str)
    ext = ext[ext[gene_col].isin(universe)]
    label_sets = {lab: set(grp[gene_col]) for lab, grp in ext.groupby(label_col, sort=True)}

    rows = []
    for k in patterns:
        pset = pattern_sets[k]
        for lab, lset in label_sets.items():
            shared = sorted(pset & lset)
            x, N, n = len(shared), len(pset), len(lset)
            expected = N * n / M if M else 0.0
            p = float(hypergeom.sf(x - 1, M, n, N)) if x > 0 else 1.0
            rows.append(
                {
                    "pattern": k,
                    "label": lab,
                    "overlap": x,
                    "n_pattern": N,
                    "n_label": n,
                    "n_universe": M,
                    "expected": expected,
                    "fold_enrichment": x / expected if expected > 0 else np.nan,
                    "p_value": min(max(p, 0.0), 1.0),
                    "genes": ";".join(shared),
                }
            )
    out = pd.DataFrame(
        rows,
        columns=["pattern", "label", "overlap", "n_pattern", "n_label", "n_universe", "expected",
                 "fold_enrichment", "p_value", "genes"],
    )
    out.insert(9, "q_value", benjamini_hochberg(out["p_value"].to_numpy()))
    return out
