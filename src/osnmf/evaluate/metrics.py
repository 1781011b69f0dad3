"""How well a pattern set explains the genes: reconstruction accuracy and patterns per gene.

Both work for any pattern set (staNMF, PCA, clusters): ``X ≈ A D (+ offset)`` with ``X`` genes ×
voxels, ``A`` genes × K coefficients and ``D`` K × voxels patterns.
"""

from __future__ import annotations

import numpy as np

from osnmf.errors import InputError

_CHUNK_ELEMS = 8 * 2**20  # genes × voxels elements reconstructed at once (64 MB in float64)


def _check_factors(X: np.ndarray, A: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, ...]:
    X, A, D = np.asarray(X), np.asarray(A), np.asarray(D)
    if X.ndim != 2 or A.ndim != 2 or D.ndim != 2:
        raise InputError(f"need 2D X, A, D; got shapes {X.shape}, {A.shape}, {D.shape}")
    if A.shape[0] != X.shape[0] or D.shape[1] != X.shape[1] or A.shape[1] != D.shape[0]:
        raise InputError(
            f"shapes do not chain: X {X.shape} ≈ A {A.shape} @ D {D.shape} (need genes × K, "
            "K × voxels)"
        )
    return X, A, D


def reconstruction_accuracy(
    X: np.ndarray,
    A: np.ndarray,
    D: np.ndarray,
    offset: np.ndarray | None = None,
    constant_value: float = 0.0,
) -> np.ndarray:
    """Per-gene Pearson r between the measured and the reconstructed image.

    The reconstruction of gene i is ``A[i] @ D`` (``+ offset`` when given, e.g. the voxel means
    that PCA subtracts). Missing entries of ``X`` (NaN) are left out of that gene's correlation.

    Parameters
    ----------
    X : ``(n_genes, n_voxels)`` measured expression (NaN = missing).
    A : ``(n_genes, K)`` coefficients.
    D : ``(K, n_voxels)`` patterns.
    offset : optional ``(n_voxels,)`` added to every reconstruction.
    constant_value : r reported when either image is constant over the gene's observed voxels
        (or fewer than 2 are observed), where Pearson r is undefined. The default 0.0 is the
        reference code's choice (it maps NaN to 0); pass ``np.nan`` to leave them out of a mean.

    Returns
    -------
    float64 ``(n_genes,)`` in [-1, 1].
    """
    X, A, D = _check_factors(X, A, D)
    if offset is not None:
        offset = np.asarray(offset, dtype=np.float64).ravel()
        if offset.shape != (X.shape[1],):
            raise InputError(f"offset must have one value per voxel ({X.shape[1]}), got {offset.shape}")
    n, m = X.shape
    out = np.empty(n, dtype=np.float64)
    step = max(1, _CHUNK_ELEMS // max(m, 1))
    A64, D64 = A.astype(np.float64, copy=False), D.astype(np.float64, copy=False)
    for s in range(0, n, step):
        x = np.asarray(X[s : s + step], dtype=np.float64)
        r = A64[s : s + step] @ D64
        if offset is not None:
            r += offset
        obs = ~np.isnan(x)
        cnt = obs.sum(axis=1)
        x = np.where(obs, x, 0.0)
        r = np.where(obs, r, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mx = x.sum(1) / cnt
            mr = r.sum(1) / cnt
            xc = np.where(obs, x - mx[:, None], 0.0)
            rc = np.where(obs, r - mr[:, None], 0.0)
            sxx = np.einsum("ij,ij->i", xc, xc)
            srr = np.einsum("ij,ij->i", rc, rc)
            sxr = np.einsum("ij,ij->i", xc, rc)
            # a tiny relative variance is a constant image up to rounding
            tol_x = 1e-24 * np.maximum(1.0, (x * x).sum(1))
            tol_r = 1e-24 * np.maximum(1.0, (r * r).sum(1))
            ok = (cnt >= 2) & (sxx > tol_x) & (srr > tol_r)
            rho = np.where(ok, sxr / np.sqrt(sxx * srr), constant_value)
        out[s : s + x.shape[0]] = np.clip(rho, -1.0, 1.0)
    return out


def patterns_per_gene(A: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Number of patterns each gene uses.

    Rule: pattern k counts for gene i when its share of the gene's total absolute coefficient
    exceeds ``threshold``: ``|A[i, k]| > threshold * sum_l |A[i, l]|``. The default (1%) ignores
    coefficients too small to matter; ``threshold=0`` counts every non-zero coefficient, the
    count the paper's Fig. 1E reports for the coordinate-descent NMF (whose coefficients are
    exactly 0 when a pattern is unused). Absolute values make the rule usable for PCA scores too.

    Parameters
    ----------
    A : ``(n_genes, K)`` coefficients.
    threshold : share of the gene's total, in [0, 1).

    Returns
    -------
    int64 ``(n_genes,)`` in 0…K (0 only for an all-zero row).
    """
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2:
        raise InputError(f"coefficients must be genes × K, got shape {A.shape}")
    if not 0.0 <= threshold < 1.0:
        raise InputError(f"threshold must be in [0, 1), got {threshold}")
    if np.isnan(A).any():
        raise InputError("coefficients contain NaN")
    mag = np.abs(A)
    total = mag.sum(axis=1, keepdims=True)
    return ((mag > threshold * total) & (mag > 0)).sum(axis=1).astype(np.int64)


def summarize(values: np.ndarray) -> dict[str, float]:
    """Mean, SD (ddof=1), median and count of the finite values (NaN skipped)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "median": float("nan"), "n": 0}
    return {
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "median": float(np.median(v)),
        "n": int(v.size),
    }
