"""Stability of pattern sets: cross-correlation, dissimilarities, instability and K selection.

This module is the one place where osnmf defines

* the correlation between two patterns (:func:`cross_correlation`): uncentred (each pattern
  L2-normalised, then inner products, as the staNMF reference code of the seed paper) or
  Pearson (``centered=True``);
* the dissimilarity of two pattern sets (:func:`hungarian_dissimilarity`,
  :func:`amari_dissimilarity`, spec section 3);
* the instability ``gamma(K)`` of a set of replicate pattern sets (:func:`instability`);
* the rule that selects K from an instability table (:func:`select_k`).

Patterns are rows: a pattern set is ``(K, m)`` (K patterns over m voxels/pixels), a stack of
replicates is ``(R, K, m)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from osnmf.errors import InputError

__all__ = [
    "cross_correlation",
    "hungarian_dissimilarity",
    "amari_dissimilarity",
    "pairwise_correlations",
    "as_pattern_stack",
    "instability",
    "instability_from_correlations",
    "select_k",
]

# Columns of m processed at once when forming Gram matrices (bounds temporary memory).
_CHUNK_BYTES = 64 * 2**20


def _as_patterns(P: Any, name: str, ndim: int) -> np.ndarray:
    P = np.asarray(P)
    if P.ndim != ndim:
        raise InputError(f"{name} must be a {ndim}-D array of patterns, got shape {P.shape}")
    if not np.issubdtype(P.dtype, np.number):
        raise InputError(f"{name} must be numeric, got dtype {P.dtype}")
    if P.shape[-1] == 0:
        raise InputError(f"{name} has no columns (patterns of length 0)")
    return P


def _correlate(P: np.ndarray, Q: np.ndarray | None, centered: bool) -> np.ndarray:
    """Correlation between the rows of ``P`` (N, m) and of ``Q`` (M, m) -> (N, M).

    ``Q=None`` means ``Q is P`` (the symmetric case, half the work).
    """
    return _correlate_chunks(lambda a, b: P[:, a:b], None if Q is None else (lambda a, b: Q[:, a:b]),
                             P.shape[0], P.shape[0] if Q is None else Q.shape[0], P.shape[-1], centered)


def _correlate_chunks(read_p, read_q, n_p: int, n_q: int, m: int, centered: bool) -> np.ndarray:
    """Correlation of the rows of two matrices given by column-chunk readers -> (n_p, n_q).

    ``read_p(a, b)`` returns columns a:b of the first matrix, (n_p, b - a); ``read_q`` the same
    for the second (None: the first, the symmetric case). Accumulates in float64 over column
    chunks of about 64 MiB, so float32, memory-mapped or on-disk inputs are never copied whole;
    the result is normalised in place (one n_p × n_q array). A row with zero norm (uncentred) or
    zero variance (Pearson) has correlation 0 with every row.
    """
    chunk = max(1, _CHUNK_BYTES // (8 * max(n_p + (0 if read_q is None else n_q), 1)))
    spans = [(j, min(m, j + chunk)) for j in range(0, m, chunk)]

    def row_means(read, n):
        s = np.zeros(n)
        for a, b in spans:
            s += read(a, b).sum(axis=-1, dtype=np.float64)
        return s / m

    if centered:
        mu_p = row_means(read_p, n_p)
        mu_q = mu_p if read_q is None else row_means(read_q, n_q)
    G = np.zeros((n_p, n_q))
    sq_p = np.zeros(n_p)
    sq_q = sq_p if read_q is None else np.zeros(n_q)
    for a, b in spans:
        p = np.asarray(read_p(a, b), dtype=np.float64)
        if centered:
            p = p - mu_p[:, None]  # never in place: p may be the caller's float64 array
        sq_p += np.einsum("ij,ij->i", p, p)
        if read_q is None:
            G += p @ p.T
        else:
            q = np.asarray(read_q(a, b), dtype=np.float64)
            if centered:
                q = q - mu_q[:, None]
            sq_q += np.einsum("ij,ij->i", q, q)
            G += p @ q.T
    inv_p = np.divide(1.0, np.sqrt(sq_p), out=np.zeros(n_p), where=sq_p > 0)
    inv_q = inv_p if read_q is None else np.divide(1.0, np.sqrt(sq_q), out=np.zeros(n_q), where=sq_q > 0)
    G *= inv_p[:, None]
    G *= inv_q[None, :]
    return np.clip(G, -1.0, 1.0, out=G)


def cross_correlation(P: Any, Q: Any, centered: bool = False) -> np.ndarray:
    """Cross-correlation matrix between two pattern sets.

    Parameters
    ----------
    P : array, shape (K1, m)
        First pattern set, one pattern per row.
    Q : array, shape (K2, m)
        Second pattern set.
    centered : bool, default False
        False: uncentred correlation, ``C_kl = <p_k, q_l> / (|p_k| |q_l|)`` (the staNMF
        reference code). True: Pearson correlation (each pattern centred first).

    Returns
    -------
    C : ndarray, shape (K1, K2), float64
        ``C[k, l]`` is the correlation of ``P[k]`` with ``Q[l]``, clipped to [-1, 1].
        A constant-zero pattern (or a constant pattern when ``centered``) has correlation 0.
    """
    P = _as_patterns(P, "P", 2)
    Q = _as_patterns(Q, "Q", 2)
    if P.shape[1] != Q.shape[1]:
        raise InputError(
            f"pattern sets have different lengths: P {P.shape} vs Q {Q.shape}; "
            "both must be (K, m) over the same m columns"
        )
    return _correlate(P, Q, centered)


def _check_square(C: np.ndarray) -> np.ndarray:
    C = np.asarray(C, dtype=np.float64)
    if C.ndim < 2 or C.shape[-1] != C.shape[-2] or C.shape[-1] == 0:
        raise InputError(f"a correlation matrix must be square (…, K, K), got shape {C.shape}")
    return C


def hungarian_dissimilarity(C: Any) -> float | np.ndarray:
    """Dissimilarity after optimal one-to-one matching of patterns.

    ``dsim = (1/K) * sum over matched (k, l) of (1 - C[k, l])``, the matching maximising the total
    correlation (Hungarian method, scipy ``linear_sum_assignment``).

    Parameters
    ----------
    C : array, shape (K, K) or (..., K, K)
        Cross-correlation matrices (see :func:`cross_correlation`).

    Returns
    -------
    float, or ndarray of shape (...) for a stack of matrices. Range [0, 2]; 0 = identical sets.
    """
    C = _check_square(C)
    K = C.shape[-1]
    flat = C.reshape(-1, K, K)
    out = np.empty(flat.shape[0])
    for i, c in enumerate(flat):
        r, col = linear_sum_assignment(c, maximize=True)
        out[i] = 1.0 - c[r, col].sum() / K
    if C.ndim == 2:
        return float(out[0])
    return out.reshape(C.shape[:-2])


def amari_dissimilarity(C: Any) -> float | np.ndarray:
    """Amari-type dissimilarity: ``(1/2K) (2K - sum_l max_k C_kl - sum_k max_l C_kl)``.

    Parameters
    ----------
    C : array, shape (K, K) or (..., K, K)

    Returns
    -------
    float, or ndarray of shape (...). Range [0, 2]; 0 = identical sets.
    """
    C = _check_square(C)
    K = C.shape[-1]
    val = 1.0 - (C.max(axis=-2).sum(axis=-1) + C.max(axis=-1).sum(axis=-1)) / (2 * K)
    if C.ndim == 2:
        return float(val)
    return val


def pairwise_correlations(patterns: Any, centered: bool = False) -> np.ndarray:
    """Cross-correlation matrices of every pair of replicate pattern sets.

    Parameters
    ----------
    patterns : array, shape (R, K, m)
        R replicate pattern sets (may be float32, a memory map, or patterns on disk with a
        ``columns(a, b)`` method such as :class:`osnmf.factorize.sweep.stored_patterns.StoredPatterns`; read in
        column chunks).
    centered : bool
        See :func:`cross_correlation`.

    Returns
    -------
    ndarray, shape (R, R, K, K): ``out[p, q] = cross_correlation(patterns[p], patterns[q])``.
    """
    patterns = as_pattern_stack(patterns)
    R, K, m = patterns.shape
    if hasattr(patterns, "columns"):
        def read(a, b):
            return patterns.columns(a, b).reshape(R * K, b - a)
    else:
        flat = patterns.reshape(R * K, m)

        def read(a, b):
            return flat[:, a:b]
    # one Gram matrix of all R*K patterns (BLAS, one pass over the data), then reshape
    G = _correlate_chunks(read, None, R * K, R * K, m, centered)
    return G.reshape(R, K, R, K).transpose(0, 2, 1, 3)


def as_pattern_stack(patterns: Any):
    """An (R, K, m) stack of patterns, checked; patterns read on demand (with a ``columns`` method,
    e.g. :class:`osnmf.factorize.sweep.stored_patterns.StoredPatterns`) are left where they are."""
    if hasattr(patterns, "columns") and not isinstance(patterns, np.ndarray):
        if len(patterns.shape) != 3 or patterns.shape[-1] == 0:
            raise InputError(f"patterns must be a 3-D array of patterns, got shape {patterns.shape}")
        return patterns
    return _as_patterns(patterns, "patterns", 3)


def instability(patterns: Any, centered: bool = False) -> dict[str, float]:
    """Instability of replicate pattern sets (spec section 3).

    ``gamma = 2 / (R (R - 1)) * sum_{p<q} dsim(D_p, D_q)`` for both dissimilarities.

    Parameters
    ----------
    patterns : array, shape (R, K, m), R >= 2
        Patterns (rows of ``D``) of R replicate fits at the same K (or patterns on disk, see
        :func:`pairwise_correlations`).
    centered : bool, default False
        Uncentred (reference code) or Pearson correlation.

    Returns
    -------
    dict with keys
        ``hungarian``, ``amari``: mean dissimilarity over the R(R-1)/2 pairs;
        ``hungarian_sd``, ``amari_sd``: standard deviation (ddof=0) of the pair dissimilarities;
        ``hungarian_se``, ``amari_se``: ``sd * sqrt(2 / R)``, the staNMF reference code's
        upper bound on the standard error of the U-statistic ``gamma``;
        ``n_pairs``: R(R-1)/2.
    """
    patterns = as_pattern_stack(patterns)
    R = patterns.shape[0]
    if R < 2:
        raise InputError(f"instability needs at least 2 replicates, got {R}")
    return instability_from_correlations(pairwise_correlations(patterns, centered))


def instability_from_correlations(C: Any) -> dict[str, float]:
    """:func:`instability` from the replicates' cross-correlations ``C`` ``(R, R, K, K)``
    (:func:`pairwise_correlations`), e.g. the leading ``[:, :, :k, :k]`` block of nested sets."""
    C = np.asarray(C)
    R = C.shape[0]
    if C.ndim != 4 or C.shape[1] != R or R < 2:
        raise InputError(f"need (R, R, K, K) correlations with R >= 2, got shape {C.shape}")
    iu, ju = np.triu_indices(R, k=1)
    pairs = C[iu, ju]  # (n_pairs, K, K)
    hung = np.atleast_1d(hungarian_dissimilarity(pairs))
    amari = np.atleast_1d(amari_dissimilarity(pairs))
    scale = np.sqrt(2.0 / R)
    return {
        "hungarian": float(hung.mean()),
        "hungarian_sd": float(hung.std()),
        "hungarian_se": float(hung.std() * scale),
        "amari": float(amari.mean()),
        "amari_sd": float(amari.std()),
        "amari_se": float(amari.std() * scale),
        "n_pairs": int(hung.size),
    }


def select_k(table: Any, column: str = "hungarian") -> int:
    """The K-selection rule: the K with the smallest instability; ties go to the smaller K.

    Parameters
    ----------
    table : DataFrame or mapping
        With a ``k`` column/key and an instability column (default ``"hungarian"``); a mapping
        ``{k: gamma}`` is accepted too. NaN rows are ignored.
    column : str
        Which instability to minimise (``"hungarian"`` or ``"amari"``).

    Returns
    -------
    int, the selected K.
    """
    if isinstance(table, Mapping) and "k" not in table:
        ks = np.asarray(list(table.keys()))
        gam = np.asarray(list(table.values()), dtype=np.float64)
    else:
        try:
            ks = np.asarray(table["k"])
            gam = np.asarray(table[column], dtype=np.float64)
        except (KeyError, IndexError, TypeError) as exc:
            raise InputError(
                f"select_k needs a table with columns 'k' and {column!r}: {exc}"
            ) from None
    ok = np.isfinite(gam)
    if ks.size == 0 or not ok.any():
        raise InputError("select_k: the instability table has no finite values")
    ks, gam = ks[ok], gam[ok]
    order = np.lexsort((ks, gam))  # by gamma, then by k
    return int(ks[order[0]])
