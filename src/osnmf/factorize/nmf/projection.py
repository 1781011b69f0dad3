"""Projection of new samples onto learned patterns by non-negative least squares (NNLS).

For new experiments ``X_new`` (n × m voxels) and patterns ``D`` (K × m), each row's coefficients
solve ``min_a ||x - a D||²`` subject to ``a ≥ 0``. Only the K × K Gram matrix ``G = D Dᵀ`` and the
cross products ``B = X_new Dᵀ`` (n × K) are needed, so the cost is one pass over ``X_new``
(n·m·K) plus small K × K work per row:

1. cyclic coordinate descent on all rows at once (vectorised over rows);
2. an exact polish: rows are grouped by their set of positive coefficients, the equality-
   constrained system ``G_PP a_P = b_P`` is solved per group and the KKT conditions are checked;
3. rows whose KKT check still fails are solved by an active-set method (Lawson–Hanson on the
   Gram form), which terminates with the exact solution.
"""

from __future__ import annotations

import numpy as np

from osnmf.errors import InputError
from osnmf.factorize.checks import as_rows, check_matrix

__all__ = ["check_projection_input", "nnls_gram", "nnls_project", "nnls_rows"]


def check_projection_input(X, n_columns: int, name: str = "X") -> np.ndarray:
    """``X`` as a 2-D finite non-negative float array with ``n_columns`` columns, or InputError."""
    if hasattr(X, "toarray") and callable(X.toarray):
        X = X.toarray()
    arr = as_rows(X, n_columns, f"{name} must be (n, {n_columns}) to match the patterns' "
                  f"{n_columns} columns (voxels); project data on the same voxels")
    return check_matrix(arr, name=name, dtype=None, min_shape=(0, n_columns))


def _solve_sym(G: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``G x = b`` (b: (p,) or (p, r)); least squares if ``G`` is singular."""
    try:
        return np.linalg.solve(G, b)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(G, b, rcond=None)[0]


def nnls_gram(G: np.ndarray, b: np.ndarray, tol: float | None = None, max_iter: int | None = None) -> np.ndarray:
    """Lawson–Hanson active-set NNLS for one row, given ``G = D Dᵀ`` (K, K) and ``b = D x`` (K,).

    Returns the (K,) non-negative minimiser of ``½ aᵀ G a − bᵀ a``.
    """
    K = b.shape[0]
    if tol is None:
        tol = 1e-12 * max(1.0, float(np.abs(G).max()) * K) * max(1.0, float(np.abs(b).max()))
    max_iter = 3 * K + 10 if max_iter is None else max_iter
    x = np.zeros(K)
    passive = np.zeros(K, dtype=bool)
    w = b.copy()
    for _ in range(max_iter):
        free = ~passive
        if not free.any() or w[free].max() <= tol:
            break
        j = int(np.flatnonzero(free)[np.argmax(w[free])])
        passive[j] = True
        while True:
            idx = np.flatnonzero(passive)
            z = np.zeros(K)
            z[idx] = _solve_sym(G[np.ix_(idx, idx)], b[idx])
            if (z[idx] > 0).all():
                x = z
                break
            bad = idx[z[idx] <= 0]
            alpha = np.min(x[bad] / (x[bad] - z[bad]))
            x = x + alpha * (z - x)
            passive &= x > tol * 1e-3
            x[~passive] = 0.0
            if not passive.any():
                break
        w = b - G @ x
    return x


def _kkt_ok(A: np.ndarray, G: np.ndarray, B: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """Rows (n,) whose coefficients satisfy the NNLS optimality conditions up to ``tol`` (n,)."""
    grad = A @ G - B  # (n, K): gradient of ½ aᵀGa − bᵀa
    pos = A > 0
    stationary = np.where(pos, np.abs(grad), 0.0).max(axis=1) <= tol
    dual = np.where(pos, 0.0, -grad).max(axis=1) <= tol
    return stationary & dual & (A >= 0).all(axis=1)


def _polish(A: np.ndarray, G: np.ndarray, B: np.ndarray, rows: np.ndarray) -> None:
    """Solve each row's equality system on its positive set (in place, grouped by pattern)."""
    pattern = A[rows] > 0
    keys, inverse = np.unique(pattern, axis=0, return_inverse=True)
    for g, key in enumerate(keys):
        members = rows[inverse.ravel() == g]
        idx = np.flatnonzero(key)
        if idx.size == 0:
            continue
        sol = _solve_sym(G[np.ix_(idx, idx)], B[np.ix_(members, idx)].T).T
        if (sol > 0).all():
            A[np.ix_(members, idx)] = sol
        else:  # keep the rows whose solution stays positive
            ok = (sol > 0).all(axis=1)
            A[np.ix_(members[ok], idx)] = sol[ok]


def nnls_project(
    X: np.ndarray,
    components: np.ndarray,
    max_iter: int = 200,
    tol: float = 1e-10,
    chunk_rows: int = 4096,
) -> np.ndarray:
    """Non-negative coefficients ``A`` (n, K) minimising ``||X − A D||_F`` with ``A ≥ 0``.

    Parameters
    ----------
    X : (n, m) array, new samples over the same m columns (voxels) as the patterns; finite.
    components : (K, m) array, the patterns ``D`` (e.g. ``StaNMF.components_``).
    max_iter : coordinate-descent sweeps before the exact polish.
    tol : relative tolerance of the optimality check (scaled by each row's ``‖b‖``).
    chunk_rows : rows of ``X`` multiplied at once (bounds the float64 temporaries).

    Returns
    -------
    (n, K) float64 array, row i = scipy.optimize.nnls(D.T, X[i]) up to round-off.
    """
    D = np.asarray(components, dtype=np.float64)
    if D.ndim != 2:
        raise InputError(f"components must be a (K, m) matrix, got shape {D.shape}")
    X = check_projection_input(X, D.shape[1])
    n, K = X.shape[0], D.shape[0]
    B = np.empty((n, K))
    for s in range(0, n, chunk_rows):
        B[s:s + chunk_rows] = np.asarray(X[s:s + chunk_rows], dtype=np.float64) @ D.T
    return nnls_rows(D @ D.T, B, max_iter=max_iter, tol=tol)


def nnls_rows(G: np.ndarray, B: np.ndarray, max_iter: int = 200, tol: float = 1e-10) -> np.ndarray:
    """NNLS of many rows from their Gram form: row i minimises ``½ aᵀ G a − B[i] a`` with ``a ≥ 0``.

    ``G = D Dᵀ`` (K, K) and ``B = X Dᵀ`` (n, K) as float64 — all :func:`nnls_project` needs; the
    (n, K) float64 result equals ``scipy.optimize.nnls(D.T, x_i)`` row by row up to round-off.
    """
    G, B = np.asarray(G, dtype=np.float64), np.asarray(B, dtype=np.float64)
    n, K = B.shape
    A = np.zeros((n, K))
    live = np.flatnonzero(np.diag(G) > 0)  # an all-zero pattern gets coefficient 0
    if n == 0 or live.size == 0:
        return A
    Gl, Bl = G[np.ix_(live, live)], B[:, live]
    scale = tol * np.maximum(np.abs(Bl).max(axis=1), np.finfo(float).tiny) * max(1, live.size)
    Al = np.maximum(_solve_sym(Gl, Bl.T).T, 0.0)  # clipped unconstrained start
    hinv = 1.0 / np.diag(Gl)
    todo = np.arange(n)
    for sweep in range(max_iter):
        sub = Al[todo]
        for t in range(live.size):
            grad = sub @ Gl[:, t] - Bl[todo, t]
            sub[:, t] = np.maximum(sub[:, t] - grad * hinv[t], 0.0)
        Al[todo] = sub
        if sweep % 10 == 9 or sweep == max_iter - 1:
            _polish(Al, Gl, Bl, todo)
            todo = todo[~_kkt_ok(Al[todo], Gl, Bl[todo], scale[todo])]
            if todo.size == 0:
                break
    for i in todo:  # exact active-set solve for the rows CD + polish did not settle
        Al[i] = nnls_gram(Gl, Bl[i])
    A[:, live] = Al
    return A
