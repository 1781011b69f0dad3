"""Symmetric eigenproblems of osnmf, in one place: dense LAPACK, batched Lanczos, batched subspace
iteration.

* :func:`dense_top_eigh`: the top k eigenpairs of one symmetric matrix by LAPACK (``syevr`` on an
  index range), optionally in place;
* :func:`top_eigenpairs`: the top k eigenpairs of R symmetric operators at once by thick-restart
  Lanczos (the PCA bootstrap: one product with a Gram matrix per step for all replicates);
* :func:`top_eigh`: dense up to :data:`DENSE_MAX`, else Lanczos;
* :func:`subspace_top_eig_batch`: the top k eigenpairs of every ``diag(s_r) G diag(s_r)`` by
  subspace iteration (the NNDSVDa starts of bootstrap replicates).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import linalg
from threadpoolctl import threadpool_limits

from osnmf.errors import InputError

__all__ = ["DENSE_MAX", "dense_top_eigh", "subspace_top_eig_batch", "top_eigenpairs", "top_eigh"]

DENSE_MAX = 600  # operators of at most this dimension are decomposed densely (LAPACK)
LANCZOS_TOL = 1e-14  # residual ‖M u − θ u‖ ≤ tol · θ₁ for every wanted Ritz pair
# BLAS threads while iterating: each step is one mid-sized product and many small ones, and on a
# shared 2-core machine OpenBLAS's threads waiting for each other made it 3.7x slower than one.
LANCZOS_THREADS = 1

def top_eigenpairs(
    apply: Callable[[np.ndarray, np.ndarray], np.ndarray],
    start: np.ndarray,
    k: int,
    ncv: int | None = None,
    tol: float = LANCZOS_TOL,
    max_restarts: int = 500,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` eigenpairs of R symmetric operators at once: thick-restart Lanczos.

    Every replicate runs the same number of steps, so the R operator applications of a step are
    one call of ``apply`` (for :func:`weighted_pca`, one product with ``G``). Lanczos vectors are
    fully reorthogonalised (classical Gram–Schmidt, twice); a restart keeps the top
    ``k + (ncv − k) // 2`` Ritz vectors. Operator r has converged when every one of its top ``k``
    Ritz pairs has residual ``‖A u − θ u‖ ≤ tol · θ₁``, the backward error of a dense solver.

    Parameters
    ----------
    apply : ``apply(idx, Y)`` with ``idx`` int ``(b,)`` operator indices and ``Y`` ``(b, n)``
        returns ``(b, n)``, row i = operator ``idx[i]`` applied to ``Y[i]``.
    start : ``(R, n)`` start vectors (zero outside an operator's support).
    k : wanted eigenpairs.
    ncv : Lanczos basis size, default ``2k + 1``.

    Returns
    -------
    values : ``(R, k)`` descending; vectors : ``(R, n, k)`` orthonormal columns.
    """
    start = np.asarray(start, dtype=np.float64)
    R, n = start.shape
    ncv = min(ncv or 2 * k + 1, n - 1)
    if not 0 < k < ncv:
        raise InputError(f"Lanczos needs 0 < k < ncv < n, got k={k}, ncv={ncv}, n={n}")
    keep = k + (ncv - k) // 2
    values, vectors = np.zeros((R, k)), np.zeros((R, n, k))
    idx = np.arange(R)
    V = np.zeros((R, ncv + 1, n))
    V[:, 0] = start / np.linalg.norm(start, axis=1, keepdims=True)
    H = np.zeros((R, ncv, ncv))
    beta = np.zeros(R)
    j0 = 0
    for _ in range(max_restarts):
        for j in range(j0, ncv):
            beta = _lanczos_step(apply, idx, V, H, j, start)
        theta, S = np.linalg.eigh(H)
        theta, S = theta[:, ::-1], S[:, :, ::-1]
        res = np.abs(beta[:, None] * S[:, -1, :k])
        done = (res <= tol * np.abs(theta[:, :1])).all(axis=1)
        if done.any():
            values[idx[done]] = theta[done, :k]
            vectors[idx[done]] = np.matmul(V[done, :ncv].transpose(0, 2, 1), S[done, :, :k])
        if done.all():
            return values, vectors
        live = ~done
        idx, V, H, theta, S, beta = idx[live], V[live], H[live], theta[live], S[live], beta[live]
        start = start[live]
        V[:, :keep] = np.matmul(S[:, :, :keep].transpose(0, 2, 1), V[:, :ncv])
        V[:, keep] = V[:, ncv]
        H[:] = 0.0
        H[:, np.arange(keep), np.arange(keep)] = theta[:, :keep]
        H[:, keep, :keep] = H[:, :keep, keep] = beta[:, None] * S[:, -1, :keep]
        j0 = keep
    raise RuntimeError(f"Lanczos did not converge in {max_restarts} restarts")  # pragma: no cover


def _lanczos_step(apply, idx: np.ndarray, V: np.ndarray, H: np.ndarray, j: int,
                  support: np.ndarray) -> np.ndarray:
    """One Lanczos step for every operator: ``V[:, j+1]``, column ``j`` of ``H``; returns β.

    The three-term part (α v_j + β v_{j-1}) is removed first, then one classical Gram–Schmidt
    pass against the whole basis, and a second where the first removed more than half the norm
    (DGKS); right after a restart (``H[:, j, :j]`` already filled) two full passes.
    """
    w = apply(idx, V[:, j])
    R = len(idx)
    h = np.zeros((R, j + 1))
    if j > 0 and not H[:, j, : j - 1].any():  # tridiagonal part: local coefficients first
        h[:, j] = np.einsum("rn,rn->r", V[:, j], w)
        h[:, j - 1] = H[:, j - 1, j]
        w -= h[:, j, None] * V[:, j] + h[:, j - 1, None] * V[:, j - 1]
        passes = 1
    else:
        passes = 2
    first = np.linalg.norm(w, axis=1)
    redo = np.ones(R, bool)
    for p in range(2):
        for r in np.flatnonzero(redo):
            B = V[r, : j + 1]
            c = B @ w[r]
            w[r] -= c @ B
            h[r] += c
        after = np.linalg.norm(w, axis=1)
        redo = np.ones(R, bool) if passes == 2 else after < 0.7 * first  # DGKS criterion
        if p == 0 and not redo.any():
            break
    H[:, : j + 1, j] = h
    H[:, j, : j + 1] = h
    beta = after
    scale = np.abs(h).max(axis=1)
    broke = beta <= 1e-12 * np.maximum(scale, np.finfo(float).tiny)
    if broke.any():  # invariant subspace: go on with a vector orthogonal to the basis
        w[broke] = _fresh_direction(V[broke, : j + 1], support[broke] != 0, j)
        beta[broke] = 0.0
    V[:, j + 1] = w / np.where(broke, 1.0, beta)[:, None]
    if j + 1 < H.shape[1]:
        H[:, j + 1, j] = H[:, j, j + 1] = beta
    return beta


def _fresh_direction(basis: np.ndarray, support: np.ndarray, j: int) -> np.ndarray:
    """Unit vectors ``(b, n)`` on each operator's support, orthogonal to its ``basis``."""
    rng = np.random.default_rng(j)
    w = rng.standard_normal(support.shape) * support
    for _ in range(2):
        w -= np.matmul(basis.transpose(0, 2, 1), np.matmul(basis, w[:, :, None]))[:, :, 0]
    return w / np.linalg.norm(w, axis=1, keepdims=True)



def dense_top_eigh(M: np.ndarray, k: int, overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest eigenpairs ``(k,), (n, k)`` of the symmetric ``M`` (n × n), descending.

    Only those k are computed (LAPACK ``syevr`` on an index range) when k < n: at n = 4,345 the
    full ``syevd`` needs 2·n² float64 of workspace (0.3 GB) besides all n eigenvectors.
    ``overwrite``: ``M`` is used as LAPACK's workspace (scipy would otherwise copy it: 0.15 GiB at
    n = 4,345); the caller must not use it afterwards.
    """
    n = M.shape[0]
    if k >= n:
        vals, vecs = np.linalg.eigh(M)
    elif overwrite:
        # M is symmetric, so its transpose (a Fortran-ordered view) is M: LAPACK works in it
        vals, vecs = linalg.eigh(M.T, subset_by_index=[n - k, n - 1], driver="evr", overwrite_a=True)
    else:
        vals, vecs = linalg.eigh(M, subset_by_index=[n - k, n - 1])
    return vals[::-1], vecs[:, ::-1]


def top_eigh(M: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` eigenpairs ``(k,), (n, k)`` of one symmetric matrix, descending (dense LAPACK up
    to :data:`DENSE_MAX`, else :func:`top_eigenpairs`)."""
    n = M.shape[0]
    if n <= DENSE_MAX or k >= n // 3:
        return dense_top_eigh(M, k)
    start = np.random.default_rng(seed).standard_normal((1, n))
    with threadpool_limits(LANCZOS_THREADS):
        vals, vecs = top_eigenpairs(lambda idx, Y: Y @ M, start, k)
    return vals[0], vecs[0]


def subspace_top_eig_batch(
    G: np.ndarray, sw: np.ndarray, k: int, l: int, n_iter: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k eigenpairs of ``K_r = diag(s_r) G diag(s_r)`` for every r (subspace iteration).

    All replicates share one GEMM per iteration (``G`` times the stacked blocks). The start
    block is the top-l eigenspace of the unweighted ``G`` (itself found by subspace iteration).
    """
    n = G.shape[0]
    R = sw.shape[0]
    V = np.linalg.qr(G @ rng.standard_normal((n, l)))[0]
    for _ in range(n_iter):
        V = np.linalg.qr(G @ V)[0]
    V = np.broadcast_to(V, (R, n, l)).copy()
    for _ in range(n_iter):
        W = (G @ (sw[:, :, None] * V).transpose(1, 0, 2).reshape(n, R * l)).reshape(n, R, l)
        V = np.linalg.qr(sw[:, :, None] * W.transpose(1, 0, 2))[0]
    W = (G @ (sw[:, :, None] * V).transpose(1, 0, 2).reshape(n, R * l)).reshape(n, R, l)
    T = V.transpose(0, 2, 1) @ (sw[:, :, None] * W.transpose(1, 0, 2))  # Rayleigh quotient
    T = 0.5 * (T + T.transpose(0, 2, 1))
    evals, evecs = np.linalg.eigh(T)
    order = np.argsort(evals, axis=1)[:, ::-1][:, :k]
    evals = np.take_along_axis(evals, order, axis=1)
    evecs = np.take_along_axis(evecs, order[:, None, :], axis=2)
    return V @ evecs, np.maximum(evals, 0)
