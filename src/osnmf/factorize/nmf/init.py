"""Initial factors of the NMF solver: NNDSVDa and scikit-learn's random scheme.

Both work on stacked replicates with bootstrap row counts ``c`` (R, n) and return the
solver's layout: ``At`` (R, k, n) = Aᵀ and ``D`` (R, k, m), in the operator's dtype.

* NNDSVDa (Boutsidis & Gallopoulos 2008, zeros filled with the mean) of the resampled matrix
  ``X[repeat(arange(n), c)]``, from the SVD of ``diag(sqrt(c)) X``;
* random: ``|N(0, 1)| · sqrt(mean(X_resampled) / k)``, scikit-learn's scheme.

Starts grown from a K-1 solution are made by :mod:`osnmf.factorize.nmf.grow`.
"""

from __future__ import annotations

import math

import numpy as np

from osnmf.errors import InputError
from osnmf.factorize.checks import check_k, check_matrix
from osnmf.factorize.nmf.operators import ExactOperator, Sketch
from osnmf.factorize.nmf.sketch_svd import weighted_svd_sketch
from osnmf.linalg import subspace_top_eig_batch

__all__ = ["nndsvda", "nndsvda_init", "random_init"]


def _weighted_svd(
    op,
    k: int,
    sqrt_w: np.ndarray,
    rng: np.random.Generator,
    exact: bool | None = None,
    n_oversamples: int = 10,
    n_iter: int = 25,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k SVD of ``M_r = diag(sqrt_w[r]) X`` for every replicate r.

    * small problems with the data at hand: LAPACK SVD of ``M_r``;
    * n ≤ m (genes ≤ voxels): the n × n Gram ``X Xᵀ`` is formed once (cached on the operator)
      and the top eigenpairs of ``diag(s_r) X Xᵀ diag(s_r) = M_r M_rᵀ`` are found by a batched
      subspace iteration (cost n²·l per replicate and iteration, no pass over X), then
      ``V_r = U_rᵀ M_r / S_r`` in one stacked pass over X;
    * n > m: per replicate eigendecomposition of ``M_rᵀ M_r = Xᵀ diag(c_r) X`` (m × m);
    * a sketch ``Q B``: :func:`~osnmf.factorize.nmf.sketch_svd.weighted_svd_sketch` (rank-sized;
      V is then a :class:`~osnmf.factorize.nmf.sketch_svd.RightVectors`, each V_r made when indexed).

    Returns
    -------
    Uhat : ndarray, shape (R, n, k)
        Left singular vectors divided by ``sqrt_w`` (per *unweighted* row; 0 where the
        weight is 0) — the rows of the left vectors of the resampled matrix.
    S : ndarray, shape (R, k)
    V : ndarray, shape (R, k, m): float64 from a LAPACK SVD / eigendecomposition of the
        replicate; in the operator's dtype where it is a product with the data (the Gram and
        sketch routes: the product's own precision, without a float64 copy of all R·k rows)
    """
    if isinstance(op, Sketch):  # in the sketch's space: no n × n Gram, no n × n eigh
        return weighted_svd_sketch(op.Q, op.B, k, sqrt_w)
    n, m = op.shape
    R = sqrt_w.shape[0]
    full = min(n, m)
    sw = sqrt_w.astype(np.float64)
    if exact is None:
        exact = isinstance(op, ExactOperator) and (n * m * full <= 5e7)
    if exact:
        Us, Ss, Vs = [], [], []
        for r in range(R):
            U, s, Vt = np.linalg.svd(sw[r][:, None] * op.X, full_matrices=False)
            Us.append(U[:, :k])
            Ss.append(s[:k])
            Vs.append(Vt[:k])
        U, S, V = np.stack(Us), np.stack(Ss), np.stack(Vs)
    elif n <= min(m, 2000):
        # exact: eigendecomposition of the small weighted Gram diag(s) X Xᵀ diag(s) per replicate
        # (a LAPACK SVD of the wide n × m matrix is ~10× slower for the same top-k factors)
        G = op.left_gram()
        Us, Ss = [], []
        for r in range(R):
            lam, E = np.linalg.eigh(sw[r][:, None] * G * sw[r][None, :])
            Us.append(E[:, ::-1][:, :k])
            Ss.append(np.sqrt(np.maximum(lam[::-1][:k], 0)))
        U, S = np.stack(Us), np.stack(Ss)
        P = ((sw[:, :, None] * U) / np.where(S > 0, S, 1)[:, None, :]).transpose(0, 2, 1)
        V = op.left(P.astype(op.dtype).reshape(R * k, n)).reshape(R, k, m)
    elif n <= m:
        l = min(n, k + n_oversamples)
        U, lam = subspace_top_eig_batch(op.left_gram(), sw, k, l, n_iter, rng)
        S = np.sqrt(lam)
        P = ((sw[:, :, None] * U) / np.where(S > 0, S, 1)[:, None, :]).transpose(0, 2, 1)
        V = op.left(P.astype(op.dtype).reshape(R * k, n)).reshape(R, k, m)
    else:
        Vs, Ss = [], []
        for r in range(R):
            lam, E = np.linalg.eigh(op.weighted_right_gram(sw[r] ** 2))
            Vs.append(E[:, ::-1][:, :k].T)
            Ss.append(np.sqrt(np.maximum(lam[::-1][:k], 0)))
        V, S = np.stack(Vs), np.stack(Ss)
        XV = op.left_t(V.astype(op.dtype).reshape(R * k, m)).reshape(R, k, n)
        U = sw[:, :, None] * XV.transpose(0, 2, 1) / np.where(S > 0, S, 1)[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        Uhat = np.where(sw[:, :, None] > 0, U / sw[:, :, None], 0.0)
    return Uhat, S, V


def _nndsvda_from_svd(
    Uhat: np.ndarray, S: np.ndarray, V: np.ndarray, w: np.ndarray, avg: float, eps: float, D: np.ndarray
) -> np.ndarray:
    """NNDSVDa factors of one replicate from its weighted SVD (norms of left parts weighted).

    ``V`` (k, m) may be float32; each row is taken to float64 on its own. The rows of the
    pattern factor are written into ``D`` (k, m; any float dtype) one at a time, thresholded and
    filled in float64 first (no float64 (k, m) array). Returns A (n, k) float64.
    """
    n, k = Uhat.shape
    A = np.zeros((n, k))

    def put_row(j: int, row: np.ndarray) -> None:
        row[row < eps] = 0
        row[row == 0] = avg
        D[j] = row

    A[:, 0] = math.sqrt(S[0]) * np.abs(Uhat[:, 0])
    put_row(0, math.sqrt(S[0]) * np.abs(V[0].astype(np.float64)))
    for j in range(1, k):
        x, y = Uhat[:, j], V[j].astype(np.float64)
        xp, yp = np.maximum(x, 0), np.maximum(y, 0)
        xn, yn = np.maximum(-x, 0), np.maximum(-y, 0)
        xp_nrm, xn_nrm = math.sqrt(float(w @ xp**2)), math.sqrt(float(w @ xn**2))
        yp_nrm, yn_nrm = float(np.linalg.norm(yp)), float(np.linalg.norm(yn))
        mp, mn = xp_nrm * yp_nrm, xn_nrm * yn_nrm
        if max(mp, mn) == 0:  # a null direction (K above the replicate's rank, e.g. K near the number
            put_row(j, np.zeros(V.shape[1]))  # of distinct rows drawn): NNDSVDa's zero, filled with avg
            continue
        if mp > mn:
            u, v, sigma = xp / xp_nrm, yp / yp_nrm, mp
        else:
            u, v, sigma = xn / xn_nrm, yn / yn_nrm, mn
        lbd = math.sqrt(S[j] * sigma)
        A[:, j] = lbd * u
        put_row(j, lbd * v)
    A[A < eps] = 0
    A[A == 0] = avg
    return A


def nndsvda_init(
    op, k: int, counts: np.ndarray, rng: np.random.Generator, eps: float, exact: bool | None
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted NNDSVDa for every replicate; returns At (R, k, n) and D (R, k, m) in op dtype."""
    n, m = op.shape
    w = counts.astype(np.float64)
    sqrt_w = np.sqrt(w).astype(op.dtype)
    Uhat, S, V = _weighted_svd(op, k, sqrt_w, rng, exact=exact)
    row_sum = op.row_sums()
    R = counts.shape[0]
    At = np.empty((R, k, n), dtype=op.dtype)
    D = np.empty((R, k, m), dtype=op.dtype)
    for r in range(R):
        avg = float(w[r] @ row_sum) / (w[r].sum() * m)
        At[r] = _nndsvda_from_svd(Uhat[r], S[r], V[r], w[r], avg, eps, D[r]).T
    return At, D


def nndsvda(
    X: np.ndarray, k: int, weights: np.ndarray | None = None, eps: float = 1e-6, *,
    random_state: int | np.random.Generator | None = 0, exact_svd: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """NNDSVDa initialisation (Boutsidis & Gallopoulos 2008, zeros filled with the mean).

    With integer ``weights`` (bootstrap counts ``c``) this is the NNDSVDa of the resampled matrix
    ``X[idx]`` with ``idx = repeat(arange(n), c)``: the SVD of ``diag(sqrt(c)) X`` has the same
    singular values and right vectors, its left vectors divided by ``sqrt(c)`` are the rows of
    ``X[idx]``'s left vectors, and norms of left parts are count-weighted. So
    ``nndsvda(X, k, c)[0][idx] == nndsvda(X[idx], k)[0]``.

    Parameters
    ----------
    X : ndarray, shape (n, m)
        Non-negative data.
    k : int
        Number of components, ``k <= min(n, m)``.
    weights : ndarray, shape (n,), optional
        Non-negative row weights (counts). Rows with weight 0 get the fill value.
    eps : float
        Values below ``eps`` are set to zero, then filled with the (weighted) mean of ``X``.
    random_state : int or Generator, optional
        Seed of the randomised SVD (used for large matrices only).
    exact_svd : bool, optional
        Force a dense LAPACK SVD (True) or the randomised one (False); default: dense when
        ``n·m·min(n, m) <= 4e9``.

    Returns
    -------
    A0 : ndarray, shape (n, k)
    D0 : ndarray, shape (k, m)
        In the dtype of ``X`` if float32/float64 (else float32).
    """
    dt = np.float64 if np.asarray(X).dtype == np.float64 else np.float32
    X = check_matrix(X, dtype=dt)
    n, m = X.shape
    k = check_k(k, min(n, m))
    if weights is None:
        counts = np.ones((1, n))
    else:
        counts = np.asarray(weights, dtype=np.float64).reshape(1, -1)
        if counts.shape[1] != n or not np.all(np.isfinite(counts)) or counts.min() < 0:
            raise InputError(f"weights must be {n} non-negative finite numbers (one per row)")
        if counts.sum() <= 0:
            raise InputError("weights must not all be zero")
    rng = np.random.default_rng(random_state)
    At, D = nndsvda_init(ExactOperator(X), k, counts, rng, eps, exact_svd)
    return np.ascontiguousarray(At[0].T), D[0]


def random_init(
    op, k: int, counts: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 'random' scheme: |N(0,1)| · sqrt(mean(X_resampled) / k)."""
    n, m = op.shape
    R = counts.shape[0]
    row_sum = op.row_sums()
    At = np.empty((R, k, n), dtype=op.dtype)
    D = np.empty((R, k, m), dtype=op.dtype)
    for r in range(R):
        w = counts[r].astype(np.float64)
        avg = math.sqrt(float(w @ row_sum) / (w.sum() * m) / k)
        D[r] = avg * np.abs(rng.standard_normal((k, m)))
        At[r] = avg * np.abs(rng.standard_normal((k, n)))
    return At, D

