"""Grow K−1 factors by one component without ever forming the residual ``X − A D``.

The residual of replicate r, ``E_r = X − A_r D_r`` (genes × voxels), is only touched through
products: ``E v = X v − A (D v)`` and ``Eᵀ u = Xᵀ u − Dᵀ (Aᵀ u)``. Power iterations on
``E_rᵀ diag(c_r) E_r`` (all replicates of a block share one product with ``X``, or with its
sketch, per step) give the leading right singular vector ``v`` of the count-weighted residual;
its dominant-sign part ``v̂ ≥ 0`` (the NNDSVD choice: the larger of ``‖v₊‖·‖(Ev)₊‖`` and
``‖v₋‖·‖(Ev)₋‖``) is the new pattern's direction and ``a = max(E v̂, 0)`` — the non-negative
least-squares coefficients of every gene for that pattern — its coefficients. Memory: a few
(R, n) and (R, m) vectors, never an n × m array.
"""

from __future__ import annotations

import numpy as np

__all__ = ["grow_lowrank"]


def _wnorm(U: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Count-weighted L2 norm of each row of U (R, n)."""
    return np.sqrt(np.einsum("rn,rn->r", w * U, U))


def grow_lowrank(
    op, A: np.ndarray, D: np.ndarray, counts: np.ndarray, n_power: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Add one component to each replicate's factors from its residual's leading pair.

    Parameters
    ----------
    op : ExactOperator or Sketch (anything with ``shape``, ``dtype``, ``left``, ``left_t``)
        The data ``X`` (n, m) or its sketch ``Q B``.
    A : ndarray, shape (R, n, k)
        Coefficients of the rank-k solutions (all genes, drawn or not).
    D : ndarray, shape (R, k, m)
        Their patterns.
    counts : ndarray of int, shape (R, n)
        Row multiplicities (bootstrap counts) of each replicate.
    n_power : int
        Power iterations (each: one product by ``X`` and one by ``Xᵀ`` for the whole block).

    Returns
    -------
    A0 : ndarray, shape (R, n, k + 1), float32
    D0 : ndarray, shape (R, k + 1, m), float32
        Non-negative; the first k columns / rows are ``A`` and ``D`` unchanged.
    """
    R, n, k = A.shape
    m = op.shape[1]
    dt = np.dtype(op.dtype)
    A_ = np.ascontiguousarray(A, dtype=dt)
    D_ = np.ascontiguousarray(D, dtype=dt)
    w = np.asarray(counts, dtype=np.float64)

    def E_v(V: np.ndarray) -> np.ndarray:  # (R, m) -> (R, n): E v for every replicate
        XV = op.left_t(np.ascontiguousarray(V, dtype=dt)).astype(np.float64)
        DV = np.einsum("rkm,rm->rk", D_, V.astype(dt), dtype=np.float64)
        return XV - np.einsum("rnk,rk->rn", A_, DV, dtype=np.float64)

    def Et_u(U: np.ndarray) -> np.ndarray:  # (R, n) -> (R, m): Eᵀ u for every replicate
        XU = op.left(np.ascontiguousarray(U, dtype=dt)).astype(np.float64)
        AU = np.einsum("rnk,rn->rk", A_, U.astype(dt), dtype=np.float64)
        return XU - np.einsum("rkm,rk->rm", D_, AU, dtype=np.float64)

    V = Et_u(w)  # weighted column sums of the residual: a start with the residual's sign
    for _ in range(int(n_power)):
        nv = np.linalg.norm(V, axis=1, keepdims=True)
        V = V / np.where(nv > 0, nv, 1)
        V = Et_u(w * E_v(V))
    nv = np.linalg.norm(V, axis=1, keepdims=True)
    V = V / np.where(nv > 0, nv, 1)
    U = E_v(V)
    vp, vn = np.maximum(V, 0), np.maximum(-V, 0)
    mp = np.linalg.norm(vp, axis=1) * _wnorm(np.maximum(U, 0), w)
    mn = np.linalg.norm(vn, axis=1) * _wnorm(np.maximum(-U, 0), w)
    Vh = np.where((mp >= mn)[:, None], vp, vn)
    nh = np.linalg.norm(Vh, axis=1, keepdims=True)
    Vh = Vh / np.where(nh > 0, nh, 1)
    a = np.maximum(E_v(Vh), 0)  # NNLS coefficients of every gene for the pattern Vh
    s = _wnorm(a, w)  # ‖diag(√c) a‖ = the rank-1 term's weighted singular value

    A0 = np.empty((R, n, k + 1), dtype=np.float32)
    D0 = np.empty((R, k + 1, m), dtype=np.float32)
    A0[:, :, :k] = A
    D0[:, :k] = D
    for r in range(R):
        if s[r] > 0 and nh[r, 0] > 0:
            A0[r, :, k] = a[r] / np.sqrt(s[r])
            D0[r, k] = np.sqrt(s[r]) * Vh[r]
        else:  # nothing left to explain: a tiny flat component
            eps = float(op.row_sums().sum()) / (n * m) * 1e-3 + 1e-12
            A0[r, :, k] = eps
            D0[r, k] = eps
    return A0, D0
