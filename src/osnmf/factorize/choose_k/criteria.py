"""Choosing K: a panel of criteria computed from the replicate fits of a staNMF sweep.

Every criterion is defined once, here, from what a sweep already has: the replicate patterns
``D_r`` (R, K, m), the replicates' bootstrap row counts ``c_r`` (R, n) (reproducible from the
sweep's seed, :func:`osnmf.factorize.sweep.run.replicate_counts`) and the solver's final loss.

``gamma`` ± ``gamma_se`` (Wu et al. 2016, staNMF)
    The Hungarian instability of :func:`osnmf.factorize.choose_k.stability.instability` and its standard
    error (the reference code's bound ``sd · √(2/R)``).
``oob_error`` ± ``oob_error_se`` (out-of-bag bi-cross-validation; Owen & Perry 2009)
    Each bootstrap replicate leaves about 37 % of the rows (genes) out: the out-of-bag (OOB) rows
    ``I_r = {i : c_r[i] = 0}``. The voxels are split once into ``n_folds`` random folds ``J_f``.
    For each fold, the OOB rows' coefficients are the non-negative least-squares projection of
    ``X[I, not J_f]`` onto ``D_r[:, not J_f]``, and they predict the held-out block
    ``X[I, J_f] ≈ A D_r[:, J_f]`` (:func:`osnmf.factorize.nmf.projection.nnls_project`). No entry of
    a held-out block entered either factor (the patterns never saw rows I, the coefficients
    never saw columns J_f), so, unlike the in-sample error, it does not fall merely because K
    grows; it still falls while the data hold more structure than K patterns capture. Per
    replicate ``e_r = Σ_f ‖X[I, J_f] − A_f D_r[:, J_f]‖² / Σ_f ‖X[I, J_f]‖²``; the panel has
    the mean over the first :data:`OOB_REPLICATES` replicates and its standard error ``sd / √R``
    (a cost cap: 20 replicates give the curve's mean to ±SE; at paper size all 100 would cost
    minutes). Cost: one product ``X[I] D_rᵀ`` of twice the width per replicate (all folds at once).
``cophenetic``, ``dispersion`` (Brunet et al. 2004; Kim & Park 2007)
    Each replicate parcellates the voxels: voxel ``v`` goes to the pattern with the largest
    L2-normalised loading, ``argmax_k D_r[k, v] / ‖D_r[k]‖``. The consensus matrix
    ``C[u, v]`` is the share of replicates that put u and v in the same pattern (computed on a
    fixed random subsample of at most ``consensus_voxels`` voxels). ``cophenetic`` is the
    Pearson correlation between ``1 − C`` and the cophenetic distances of the average-linkage
    tree of ``1 − C``; ``dispersion`` is ``mean over (u, v) of 4 (C[u, v] − ½)²``. Both are 1
    for a perfectly reproducible parcellation.
``recon_error`` ± ``recon_error_se``
    The replicates' in-sample relative error ``‖diag(√c)(X − A D)‖_F / ‖diag(√c) X‖_F`` (the
    solver's loss). It only decreases with K; it is shown, not used to select.

Rules (:func:`k_rules`), each a K:

* ``gamma_argmin`` — the K with the smallest γ (ties to the smaller K): the paper's rule.
* ``gamma_1se_small`` / ``gamma_1se_large`` — the smallest / largest K whose γ is within one
  standard error of the minimum (Breiman's one-standard-error rule, both directions).
* ``oob_argmin``, ``oob_1se`` — smallest OOB error; smallest K within one SE of it (the usual
  cross-validation rule: the simplest model the held-out error cannot tell from the best).
* ``cophenetic_argmax``, ``dispersion_argmax`` — the most reproducible consensus parcellation.
* ``gamma_oob`` — among the Ks whose γ is within one SE of the minimum, the one with the
  smallest OOB error (a second, independent criterion settles near ties of γ).
* ``median3`` — the median of the γ argmin, cophenetic argmax and dispersion argmax: where two of
  the three agree, they outvote the third (:func:`median3`).
* ``median3_near`` — ``median3`` among the Ks whose γ is *near* the minimum: at most
  ``max(γ_min + SE, NEAR_FACTOR · γ_min)`` (:func:`near_minimum`). The consensus criteria settle
  near ties of γ, but a clear γ minimum stands: with few replicates the consensus matrices are
  coarse and can favour a K whose γ is many times the minimum (``osnmf demo --quick``: γ 0.0023
  at the planted K = 5, 0.037 at K = 6, which cophenetic and dispersion both preferred). One SE
  alone is too narrow (the SE of a very stable K is tiny, so a weakly supported planted pattern
  one K up was always excluded). The default (:data:`DEFAULT_RULE`), chosen by the planted-K
  study (docs/stanmf.md).

References: Brunet, Tamayo, Golub & Mesirov (2004) PNAS 101:4164; Kim & Park (2007)
Bioinformatics 23:1495; Owen & Perry (2009) Ann. Appl. Stat. 3:564; Wu et al. (2016) PNAS
113:4290.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from osnmf.errors import InputError
from osnmf.factorize.choose_k.stability import as_pattern_stack, select_k
from osnmf.factorize.nmf.operators import ExactOperator

__all__ = [
    "PANEL_COLUMNS",
    "RULES",
    "RULE_DESCRIPTIONS",
    "DEFAULT_RULE",
    "voxel_folds",
    "consensus_voxels",
    "oob_errors",
    "fold_sq_norms",
    "consensus_matrix",
    "cophenetic_correlation",
    "dispersion",
    "reconstruction_errors",
    "panel_row",
    "panel_frame",
    "k_rules",
    "median3",
    "near_minimum",
]

PANEL_COLUMNS = ["k", "gamma", "gamma_se", "oob_error", "oob_error_se", "cophenetic",
                 "dispersion", "recon_error", "recon_error_se"]
RULES = ("gamma_argmin", "gamma_1se_small", "gamma_1se_large", "oob_argmin", "oob_1se",
         "cophenetic_argmax", "dispersion_argmax", "gamma_oob", "median3", "median3_near")
#: One sentence per rule (report and docs).
RULE_DESCRIPTIONS = {
    "gamma_argmin": "the K with the smallest instability γ (ties go to the smaller K).",
    "gamma_1se_small": "the smallest K whose γ is within one standard error of the minimum.",
    "gamma_1se_large": "the largest K whose γ is within one standard error of the minimum.",
    "oob_argmin": "the K with the smallest out-of-bag (held-out) reconstruction error.",
    "oob_1se": "the smallest K whose out-of-bag error is within one standard error of the minimum.",
    "cophenetic_argmax": "the K whose consensus parcellation has the largest cophenetic correlation.",
    "dispersion_argmax": "the K whose consensus parcellation has the largest dispersion.",
    "gamma_oob": "among the Ks with γ within one standard error of the minimum, the smallest out-of-bag error.",
    "median3": "the median of the Ks chosen by gamma_argmin, cophenetic_argmax and dispersion_argmax.",
    "median3_near": "median3 among the Ks whose γ is within one standard error or twice the minimum "
                    "(a clear γ minimum stands; the consensus criteria break near ties).",
}
#: Voxel folds of the out-of-bag error, and the size of the consensus voxel subsample.
N_FOLDS = 2
CONSENSUS_VOXELS = 1000
#: Replicates (the first ones) whose out-of-bag error enters the panel.
OOB_REPLICATES = 20
#: The rule that sets ``StaNMF.k_`` (chosen by benchmarks/planted_k_study.py, see docs/stanmf.md).
DEFAULT_RULE = "median3_near"
#: γ up to this multiple of the minimum counts as near it (``median3_near``).
NEAR_FACTOR = 2.0


# ---- fixed random splits (common to every K and replicate of a sweep) ----------------------------
def voxel_folds(m: int, n_folds: int, random_state: int) -> np.ndarray:
    """Fold of each of ``m`` columns, (m,) int in ``0 .. n_folds-1``, balanced, seeded."""
    if n_folds < 2 or n_folds > m:
        raise InputError(f"n_folds must be in 2..{m} (columns), got {n_folds}")
    rng = np.random.default_rng([int(random_state), 0x0F01D])
    return rng.permutation(np.arange(m) % n_folds)


def consensus_voxels(m: int, n_voxels: int, random_state: int) -> np.ndarray:
    """Sorted indices of at most ``n_voxels`` of ``m`` columns (all when m <= n_voxels), seeded."""
    if m <= n_voxels:
        return np.arange(m)
    rng = np.random.default_rng([int(random_state), 0xC0515])
    return np.sort(rng.choice(m, size=int(n_voxels), replace=False))


# ---- held-out error --------------------------------------------------------------------------
def fold_sq_norms(X: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """(n, n_folds) float64: ``Σ_{j in fold f} X[i, j]²`` of every row, one chunked pass over X."""
    X = np.asarray(X)
    n_folds = int(folds.max()) + 1
    onehot = np.zeros((X.shape[1], n_folds))
    onehot[np.arange(X.shape[1]), folds] = 1.0
    out = np.empty((X.shape[0], n_folds))
    step = max(1, 2**22 // max(1, X.shape[1]))
    for i in range(0, X.shape[0], step):
        blk = X[i:i + step].astype(np.float64)
        out[i:i + step] = (blk * blk) @ onehot
    return out


def _fold_stack(D: np.ndarray, masks: list[np.ndarray], dtype) -> np.ndarray:
    """(F·K, m) in ``dtype``: D with the other folds' columns zeroed, one copy per fold, stacked."""
    return np.vstack([np.where(mk, D, 0.0) for mk in masks]).astype(dtype)


def _fold_products(rows: np.ndarray, Dm: np.ndarray, K: int) -> list[np.ndarray]:
    """``rows[:, J_f] @ D[:, J_f].T`` for every fold f, as float64 (n_rows, K) arrays.

    One GEMM over all folds with ``Dm = _fold_stack(D, ...)``. For float32 data it runs in float32
    over column blocks of 4,096 accumulated in float64 (relative error ~1e-7).
    """
    if rows.dtype == np.float64:
        out = rows @ Dm.T
    else:
        out = np.zeros((rows.shape[0], Dm.shape[0]))
        for j in range(0, rows.shape[1], 4096):
            out += rows[:, j:j + 4096] @ Dm[:, j:j + 4096].T
    return [out[:, f * K:(f + 1) * K] for f in range(Dm.shape[0] // K)]


def oob_errors(X: np.ndarray, patterns: np.ndarray, counts: np.ndarray, folds: np.ndarray,
               chunk_rows: int = 256, sq_norms: np.ndarray | None = None) -> np.ndarray:
    """Out-of-bag bi-cross-validation error of each replicate (see the module docstring).

    Computed from Gram quantities: per replicate, one product of its OOB rows with the patterns
    (all folds at once), then per fold an NNLS in Gram form (:func:`~osnmf.factorize.nmf.projection.nnls_rows`)
    and ``‖X_IJ − A D_J‖² = ‖X_IJ‖² − 2⟨A, X_IJ D_Jᵀ⟩ + ⟨A D_J D_Jᵀ, A⟩``; no held-out block is
    formed.

    Parameters
    ----------
    X : (n, m) the data the sweep fitted.
    patterns : (R, K, m) replicate patterns (an array, or patterns on disk read one replicate at
        a time, :class:`osnmf.factorize.sweep.stored_patterns.StoredPatterns`); counts : (R, n) their bootstrap
        row counts.
    folds : (m,) int voxel folds (:func:`voxel_folds`).
    chunk_rows : OOB rows multiplied at once (bounds the temporaries: 64 MB of float32 rows at
        62,529 voxels).
    sq_norms : optional (n, n_folds) :func:`fold_sq_norms` of X (computed when None).

    Returns
    -------
    (R,) float64 relative held-out squared error; NaN for a replicate without OOB rows.
    """
    from osnmf.factorize.nmf.projection import nnls_rows

    X = np.asarray(X)
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    patterns = as_pattern_stack(patterns)
    R, K, m = patterns.shape
    n_folds = int(folds.max()) + 1
    masks = [folds == f for f in range(n_folds)]
    if sq_norms is None:
        sq_norms = fold_sq_norms(X, folds)
    out = np.full(R, np.nan)
    for r in range(R):
        oob = np.flatnonzero(np.asarray(counts[r]) == 0)
        if oob.size == 0:
            continue
        D = np.asarray(patterns[r], dtype=np.float64)
        grams = [(D[:, mk] @ D[:, mk].T) for mk in masks]  # (K, K) per fold
        Dm = _fold_stack(D, masks, X.dtype)  # made once per replicate, used by every row chunk
        sse = tot = 0.0
        for s in range(0, oob.size, chunk_rows):
            idx = oob[s:s + chunk_rows]
            cross = _fold_products(X[idx], Dm, K)  # X[I, J_f] D[:, J_f]ᵀ per fold
            for f in range(n_folds):
                others = [g for g in range(n_folds) if g != f]
                A = nnls_rows(sum(grams[g] for g in others), sum(cross[g] for g in others))
                held = float(sq_norms[idx, f].sum())
                sse += held - 2.0 * float(np.sum(A * cross[f])) + float(np.sum((A @ grams[f]) * A))
                tot += held
        out[r] = max(sse, 0.0) / tot if tot > 0 else np.nan
    return out


# ---- consensus parcellation ------------------------------------------------------------------
def _voxel_labels(patterns: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    """(R, v) pattern index of each voxel: argmax of the L2-normalised loadings.

    One replicate at a time, in float64 (never a float64 copy of all the patterns: 1.5 GB at
    K = 30, 100 replicates, 62,529 voxels; patterns on disk are read replicate by replicate).
    """
    labels = np.empty((len(patterns), voxels.size), dtype=np.int64)
    for r, d in enumerate(patterns):
        norms = np.sqrt(np.einsum("km,km->k", d, d, dtype=np.float64))
        P = np.asarray(d[:, voxels], dtype=np.float64) / np.where(norms > 0, norms, 1.0)[:, None]
        labels[r] = P.argmax(axis=0)
    return labels


def consensus_matrix(patterns: np.ndarray, voxels: np.ndarray | None = None) -> np.ndarray:
    """Consensus matrix of the replicates' voxel parcellations.

    Parameters
    ----------
    patterns : (R, K, m) replicate patterns.
    voxels : indices of the voxels to keep (default all m).

    Returns
    -------
    (v, v) float64: ``C[u, w]`` = share of replicates that assign voxels u and w to the same
    pattern (argmax of the L2-normalised loadings).
    """
    patterns = as_pattern_stack(patterns)
    if len(patterns.shape) != 3 or patterns.shape[0] < 1:
        raise InputError(f"patterns must be (R, K, m) with R >= 1, got shape {patterns.shape}")
    R, K, m = patterns.shape
    voxels = np.arange(m) if voxels is None else np.asarray(voxels)
    labels = _voxel_labels(patterns, voxels)  # (R, v)
    onehot = np.zeros((voxels.size, R * K))
    onehot[np.arange(voxels.size)[:, None], labels.T + K * np.arange(R)[None, :]] = 1.0
    return (onehot @ onehot.T) / R


def _cophenetic_distances(Z: np.ndarray, n: int) -> np.ndarray:
    """Condensed cophenetic distances of a linkage ``Z`` over n leaves (merge heights)."""
    members: list[list[int]] = [[i] for i in range(n)]
    D = np.zeros((n, n))
    for a, b, h, _ in Z:
        A, B = members[int(a)], members[int(b)]
        D[np.ix_(A, B)] = h
        D[np.ix_(B, A)] = h
        members.append(A + B)
    iu = np.triu_indices(n, k=1)
    return D[iu]


def cophenetic_correlation(C: np.ndarray) -> float:
    """Cophenetic correlation of a consensus matrix (Brunet et al. 2004).

    Pearson correlation between the distances ``1 − C`` (off-diagonal pairs) and the cophenetic
    distances of the average-linkage (UPGMA) tree built on them. 1 for a block-diagonal 0/1
    consensus; NaN when all distances are equal (nothing to correlate).
    """
    from scipy.cluster.hierarchy import linkage

    C = np.asarray(C, dtype=np.float64)
    n = C.shape[0]
    if C.ndim != 2 or C.shape[1] != n or n < 3:
        raise InputError(f"a consensus matrix must be square with >= 3 items, got {C.shape}")
    d = (1.0 - C)[np.triu_indices(n, k=1)]
    if np.ptp(d) == 0:
        return float("nan")
    coph = _cophenetic_distances(linkage(d, method="average"), n)
    if np.ptp(coph) == 0:
        return float("nan")
    return float(np.corrcoef(d, coph)[0, 1])


def dispersion(C: np.ndarray) -> float:
    """Dispersion of a consensus matrix (Kim & Park 2007): mean of ``4 (C − ½)²``, in [0, 1]."""
    C = np.asarray(C, dtype=np.float64)
    return float(np.mean(4.0 * (C - 0.5) ** 2))


# ---- in-sample error -------------------------------------------------------------------------
def reconstruction_errors(X: np.ndarray, loss: np.ndarray, counts: np.ndarray,
                          row_sq: np.ndarray | None = None) -> np.ndarray:
    """(R,) relative in-sample error ``loss_r / ‖diag(√c_r) X‖_F`` (loss = the solver's
    ``‖diag(√c_r)(X − A_r D_r)‖_F``); ``row_sq``: optional (n,) squared row norms of X."""
    if row_sq is None:
        row_sq = ExactOperator(np.asarray(X)).row_sq_norms()  # chunked: no float64 copy of X
    xnorm = np.sqrt(np.asarray(counts, dtype=np.float64) @ row_sq)
    return np.asarray(loss, dtype=np.float64) / np.where(xnorm > 0, xnorm, np.nan)


# ---- one row of the panel, and the rules ---------------------------------------------------
def _mean_se(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    se = float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")
    return float(x.mean()), se


def panel_row(X: np.ndarray, patterns: np.ndarray, loss: np.ndarray, counts: np.ndarray,
              folds: np.ndarray, voxels: np.ndarray, sq_norms: np.ndarray | None = None) -> dict[str, float]:
    """The K-independent criteria of one K (all but γ, which the sweep has already).

    Parameters
    ----------
    X : (n, m) data; patterns : (R, K, m); loss : (R,) solver losses; counts : (R, n).
    folds : (m,) voxel folds (:func:`voxel_folds`; None: no OOB error, e.g. one column);
        voxels : consensus subsample
        (:func:`consensus_voxels`).
    sq_norms : optional :func:`fold_sq_norms` of X (shared by the Ks of a sweep).

    Returns
    -------
    dict with oob_error, oob_error_se, cophenetic, dispersion, recon_error, recon_error_se.
    """
    counts = np.asarray(counts)
    if counts.shape[0] != patterns.shape[0]:
        raise InputError(f"counts has {counts.shape[0]} replicates, patterns {patterns.shape[0]}")
    oob, oob_se = (float("nan"), float("nan")) if folds is None else \
        _mean_se(oob_errors(X, patterns[:OOB_REPLICATES], counts[:OOB_REPLICATES], folds, sq_norms=sq_norms))
    C = consensus_matrix(patterns, voxels)
    row_sq = None if sq_norms is None else sq_norms.sum(axis=1)
    rec, rec_se = _mean_se(reconstruction_errors(X, loss, counts, row_sq))
    return {"oob_error": oob, "oob_error_se": oob_se,
            "cophenetic": cophenetic_correlation(C) if C.shape[0] >= 3 else float("nan"),
            "dispersion": dispersion(C), "recon_error": rec, "recon_error_se": rec_se}


def _pick(ks: np.ndarray, values: np.ndarray, largest: bool = False, maximise: bool = False):
    ok = np.isfinite(values)
    if not ok.any():
        return None
    ks, values = ks[ok], values[ok]
    v = -values if maximise else values
    best = np.flatnonzero(v == v.min())
    return int(ks[best[-1] if largest else best[0]])


def k_rules(panel: pd.DataFrame | Mapping[str, Sequence[float]]) -> dict[str, int | None]:
    """The K each rule of :data:`RULES` selects from a panel (None when its column is all NaN).

    Parameters
    ----------
    panel : table with the columns of :data:`PANEL_COLUMNS` (one row per K).
    """
    try:
        ks = np.asarray(panel["k"], dtype=np.int64)
        col = {c: np.asarray(panel[c], dtype=np.float64) for c in PANEL_COLUMNS[1:]}
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"k_rules needs a panel with columns {PANEL_COLUMNS}: {exc}") from None
    order = np.argsort(ks)
    ks = ks[order]
    col = {c: v[order] for c, v in col.items()}
    out: dict[str, int | None] = {}
    out["gamma_argmin"] = (select_k({"k": ks, "hungarian": col["gamma"]})
                           if np.isfinite(col["gamma"]).any() else None)
    near = near_minimum(ks, col["gamma"], col["gamma_se"])
    out["gamma_1se_small"] = None if near is None else int(near.min())
    out["gamma_1se_large"] = None if near is None else int(near.max())
    out["oob_argmin"] = _pick(ks, col["oob_error"])
    near_oob = near_minimum(ks, col["oob_error"], col["oob_error_se"])
    out["oob_1se"] = None if near_oob is None else int(near_oob.min())
    out["cophenetic_argmax"] = _pick(ks, col["cophenetic"], maximise=True)
    out["dispersion_argmax"] = _pick(ks, col["dispersion"], maximise=True)
    if near is None:
        out["gamma_oob"] = None
    else:
        sub = np.isin(ks, near)
        oob = np.where(sub, col["oob_error"], np.nan)
        out["gamma_oob"] = _pick(ks, oob) if np.isfinite(oob).any() else out["gamma_argmin"]
    out["median3"] = median3(out["gamma_argmin"], out["cophenetic_argmax"], out["dispersion_argmax"])
    close = near_minimum(ks, col["gamma"], col["gamma_se"], NEAR_FACTOR)
    if close is None:
        out["median3_near"] = None
    else:
        sub = np.isin(ks, close)
        out["median3_near"] = median3(
            out["gamma_argmin"],
            _pick(ks, np.where(sub, col["cophenetic"], np.nan), maximise=True),
            _pick(ks, np.where(sub, col["dispersion"], np.nan), maximise=True))
    return out


def near_minimum(ks: np.ndarray, values: np.ndarray, se: np.ndarray,
                 factor: float = 0.0) -> np.ndarray | None:
    """The Ks whose value is near the smallest: ``v ≤ max(v_min + SE(v_min), factor · v_min)``.

    ``factor = 0``: the one-standard-error set; ``factor = NEAR_FACTOR``: ``median3_near``'s set.
    None when every value is NaN.
    """
    ok = np.isfinite(values)
    if not ok.any():
        return None
    i = int(np.flatnonzero(ok)[np.argmin(values[ok])])
    s = se[i] if np.isfinite(se[i]) else 0.0
    return ks[ok & (values <= max(values[i] + s, factor * values[i]))]


def median3(k_gamma: int | None, k_cophenetic: int | None, k_dispersion: int | None) -> int | None:
    """The ``median3`` rule: median of three Ks (γ argmin, cophenetic and dispersion argmax).

    Two of three criteria agreeing outvote the third; with a criterion missing (None) the
    γ argmin is returned.
    """
    picks = [k_gamma, k_cophenetic, k_dispersion]
    if any(p is None for p in picks):
        return k_gamma
    return int(sorted(int(p) for p in picks)[1])


def panel_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows (dicts with the panel keys) as a DataFrame with the :data:`PANEL_COLUMNS` order."""
    return pd.DataFrame(list(rows), columns=PANEL_COLUMNS)
