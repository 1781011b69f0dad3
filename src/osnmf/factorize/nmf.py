"""Non-negative matrix factorisation, single fits and batched bootstrap replicates.

Model: ``X ≈ A D`` with ``X`` genes × voxels (n × m), ``A ≥ 0`` (n × k, coefficients) and
``D ≥ 0`` (k × m, the patterns), Frobenius loss. The solver reproduces scikit-learn's
``NMF(solver="cd", tol=1e-4, max_iter=200, init="nndsvda")`` (alpha = 0):

* one iteration = one cyclic coordinate-descent sweep over the columns of ``A`` (rows of ``X``
  independent, so a whole column is updated at once — exactly the same arithmetic as the
  element-wise loop) followed by one sweep over the rows of ``D``;
* the projected-gradient "violation" of both sweeps is summed; the fit stops at the first
  iteration where ``violation / violation_at_iteration_1 <= tol``.

Bootstrap replicates (genes resampled with replacement) are the same problem with integer row
weights ``c`` (the counts): ``Σ_i c_i ‖x_i − a_i D‖²``. Duplicated rows of ``X[idx]`` start equal
and stay equal under the updates, so the weighted fit equals scikit-learn on ``X[idx]``. ``R``
replicates share every pass over ``X``: their factors are stacked so that each iteration costs
two GEMMs of width ``R·k`` and the memory grows with ``R·k·(n + m)``, never with ``R·size(X)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from osnmf.errors import ConfigError, InputError
from osnmf.factorize.sketch import ExactOperator, Sketch, sketch_matrix

__all__ = [
    "NMFResult",
    "ReplicateFits",
    "bootstrap_counts",
    "check_data",
    "fit_nmf",
    "fit_nmf_replicates",
    "nndsvda",
    "prepare_data",
]


@dataclass
class NMFResult:
    """One NMF fit ``X ≈ A D``.

    Attributes
    ----------
    A : ndarray, shape (n, k)
        Coefficients (genes × patterns), non-negative.
    D : ndarray, shape (k, m)
        Patterns (patterns × voxels), non-negative.
    n_iter : int
        Coordinate-descent iterations run (as scikit-learn's ``n_iter_``).
    loss : float
        ``‖X − A D‖_F`` (scikit-learn's ``reconstruction_err_``).
    """

    A: np.ndarray
    D: np.ndarray
    n_iter: int
    loss: float


@dataclass
class ReplicateFits:
    """R NMF fits of row-weighted (bootstrap) versions of one matrix.

    Attributes
    ----------
    A : ndarray, shape (R, n, k)
        Coefficients per replicate. Rows whose count is 0 are not part of that replicate's
        problem (they hold out-of-bag projections, not fitted values).
    D : ndarray, shape (R, k, m)
        Patterns per replicate.
    n_iter : ndarray of int, shape (R,)
        Iterations per replicate.
    loss : ndarray of float, shape (R,)
        ``sqrt(Σ_i c_i ‖x_i − a_i D‖²)``: the reconstruction error of the resampled matrix.
    """

    A: np.ndarray
    D: np.ndarray
    n_iter: np.ndarray
    loss: np.ndarray


# --------------------------------------------------------------------------- input checks


def check_data(X: Any, *, dtype: Any = np.float32, name: str = "X") -> np.ndarray:
    """Validate a genes × voxels matrix and return it as a C-contiguous float array.

    Raises
    ------
    InputError
        If ``X`` is not 2-D, is empty, or holds NaN, infinite or negative values.
    """
    try:
        arr = np.asarray(X)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise InputError(f"{name} cannot be read as an array: {exc}") from exc
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D genes × voxels matrix, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"{name} is empty (shape {arr.shape})")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        raise InputError(
            f"{name} contains NaN or infinite values; impute missing voxels first "
            "(osnmf.impute_knn) or drop them"
        )
    if arr.min() < 0:
        raise InputError(
            f"{name} contains negative values (min {float(arr.min()):.4g}); NMF needs "
            "non-negative data — clip them to 0 first"
        )
    return arr


def _check_k(k: Any, n: int, m: int, init: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k (number of patterns) must be a positive integer, got {k!r}")
    if isinstance(init, str) and init == "nndsvda" and k > min(n, m):
        raise ConfigError(
            f"init='nndsvda' needs k <= min(n_genes, n_voxels) = {min(n, m)}, got k={k}; "
            "use init='random'"
        )
    return int(k)


def _check_counts(row_counts: Any, n: int) -> np.ndarray:
    c = np.asarray(row_counts)
    if c.ndim == 1:
        c = c[None, :]
    if c.ndim != 2 or c.shape[1] != n:
        raise InputError(f"row_counts must have shape (R, {n}) (one count per row of X), got {c.shape}")
    if not np.issubdtype(c.dtype, np.integer):
        if not np.all(np.isfinite(c)) or not np.all(c == np.round(c)):
            raise InputError("row_counts must be integers (bootstrap multiplicities)")
        c = c.astype(np.int64)
    if c.min() < 0:
        raise InputError("row_counts must be non-negative")
    if np.any(c.sum(axis=1) == 0):
        raise InputError("every replicate needs at least one row with a positive count")
    return c


def _resolve_dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ConfigError(f"dtype must be float32 or float64, got {dt}")
    return dt


# --------------------------------------------------------------------------- NNDSVDa


def bootstrap_counts(
    n_rows: int, n_replicates: int, rng: int | np.random.Generator | None
) -> np.ndarray:
    """Row multiplicities of ``n_replicates`` bootstrap samples (rows drawn with replacement).

    Parameters
    ----------
    n_rows : int
        Number of rows (genes) of the data.
    n_replicates : int
        Number of bootstrap replicates R.
    rng : Generator or int or None
        Random source (an int seeds ``numpy.random.default_rng``).

    Returns
    -------
    ndarray of int64, shape (R, n_rows)
        ``counts[r, i]`` = how often row ``i`` is drawn in replicate ``r``; every row sums to
        ``n_rows``. ``np.repeat(np.arange(n_rows), counts[r])`` gives the resampled indices.
    """
    if n_rows < 1 or n_replicates < 1:
        raise ConfigError(f"need n_rows >= 1 and n_replicates >= 1, got {n_rows}, {n_replicates}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    idx = gen.integers(0, n_rows, size=(n_replicates, n_rows))
    counts = np.zeros((n_replicates, n_rows), dtype=np.int64)
    for r in range(n_replicates):
        counts[r] = np.bincount(idx[r], minlength=n_rows)
    return counts


def _top_eig_batch(
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
    * n > m: per replicate eigendecomposition of ``M_rᵀ M_r = Xᵀ diag(c_r) X`` (m × m).

    Returns
    -------
    Uhat : ndarray, shape (R, n, k)
        Left singular vectors divided by ``sqrt_w`` (per *unweighted* row; 0 where the
        weight is 0) — the rows of the left vectors of the resampled matrix.
    S : ndarray, shape (R, k)
    V : ndarray, shape (R, k, m)
    """
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
        V = op.left(P.astype(op.dtype).reshape(R * k, n)).reshape(R, k, m).astype(np.float64)
    elif n <= m:
        l = min(n, k + n_oversamples)
        U, lam = _top_eig_batch(op.left_gram(), sw, k, l, n_iter, rng)
        S = np.sqrt(lam)
        P = ((sw[:, :, None] * U) / np.where(S > 0, S, 1)[:, None, :]).transpose(0, 2, 1)
        V = op.left(P.astype(op.dtype).reshape(R * k, n)).reshape(R, k, m).astype(np.float64)
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
    Uhat: np.ndarray, S: np.ndarray, V: np.ndarray, w: np.ndarray, avg: float, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """NNDSVDa factors of one replicate from its weighted SVD (norms of left parts weighted)."""
    n, k = Uhat.shape
    A = np.zeros((n, k))
    D = np.zeros((k, V.shape[1]))
    A[:, 0] = math.sqrt(S[0]) * np.abs(Uhat[:, 0])
    D[0] = math.sqrt(S[0]) * np.abs(V[0])
    for j in range(1, k):
        x, y = Uhat[:, j], V[j]
        xp, yp = np.maximum(x, 0), np.maximum(y, 0)
        xn, yn = np.maximum(-x, 0), np.maximum(-y, 0)
        xp_nrm, xn_nrm = math.sqrt(float(w @ xp**2)), math.sqrt(float(w @ xn**2))
        yp_nrm, yn_nrm = float(np.linalg.norm(yp)), float(np.linalg.norm(yn))
        mp, mn = xp_nrm * yp_nrm, xn_nrm * yn_nrm
        if mp > mn:
            u, v, sigma = xp / xp_nrm, yp / yp_nrm, mp
        else:
            u, v, sigma = xn / xn_nrm, yn / yn_nrm, mn
        lbd = math.sqrt(S[j] * sigma)
        A[:, j] = lbd * u
        D[j] = lbd * v
    A[A < eps] = 0
    D[D < eps] = 0
    A[A == 0] = avg
    D[D == 0] = avg
    return A, D


def _nndsvda_batch(
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
        a, d = _nndsvda_from_svd(Uhat[r], S[r], V[r], w[r], avg, eps)
        At[r] = a.T
        D[r] = d
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
    X = check_data(X, dtype=dt)
    n, m = X.shape
    k = _check_k(k, n, m, "nndsvda")
    if weights is None:
        counts = np.ones((1, n))
    else:
        counts = np.asarray(weights, dtype=np.float64).reshape(1, -1)
        if counts.shape[1] != n or not np.all(np.isfinite(counts)) or counts.min() < 0:
            raise InputError(f"weights must be {n} non-negative finite numbers (one per row)")
        if counts.sum() <= 0:
            raise InputError("weights must not all be zero")
    rng = np.random.default_rng(random_state)
    At, D = _nndsvda_batch(ExactOperator(X), k, counts, rng, eps, exact_svd)
    return np.ascontiguousarray(At[0].T), D[0]


def _random_init(
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


# --------------------------------------------------------------------------- the solver


def _cd_sweep(F: np.ndarray, G: np.ndarray, XF: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """One cyclic coordinate-descent sweep over the k rows of ``F`` (in place).

    Minimises ``½ tr(F^T G F) − tr(XF^T F)`` row by row for every replicate (sklearn's
    ``_update_cdnmf_fast`` on the transposed layout).

    Parameters
    ----------
    F : ndarray, shape (R, k, L)
        Factor being updated (``A^T`` or ``D``), modified in place.
    G : ndarray, shape (R, k, k)
        Gram matrix of the other factor (count-weighted for the D update).
    XF : ndarray, shape (R, k, L)
        Cross products with the data.
    w : ndarray, shape (R, L), optional
        Weights of the violation sum (the counts for the A update).

    Returns
    -------
    ndarray of float64, shape (R,)
        Sum of absolute projected gradients before each coordinate step.
    """
    R, k, L = F.shape
    viol = np.zeros(R, dtype=np.float64)
    diag = np.diagonal(G, axis1=1, axis2=2)
    with np.errstate(divide="ignore"):
        hinv = np.where(diag != 0, 1.0 / diag, 0.0).astype(F.dtype)  # h = 0: no step (sklearn)
    grad3 = np.empty((R, 1, L), dtype=F.dtype)
    grad = grad3[:, 0, :]
    pg = np.empty((R, L), dtype=F.dtype)
    mask = np.empty((R, L), dtype=bool)
    for t in range(k):
        np.matmul(G[:, t : t + 1, :], F, out=grad3)
        np.subtract(grad, XF[:, t, :], out=grad)
        f = F[:, t, :]
        # projected gradient: min(grad, 0) where f == 0, else grad
        np.minimum(grad, 0, out=pg)
        np.not_equal(f, 0, out=mask)
        np.copyto(pg, grad, where=mask)
        np.abs(pg, out=pg)
        if w is not None:
            pg *= w
        viol += pg.sum(axis=1)
        grad *= hinv[:, t, None]
        f -= grad
        np.maximum(f, 0, out=f)
    return viol


def _solve(
    op,
    At: np.ndarray,
    D: np.ndarray,
    counts: np.ndarray | None,
    max_iter: int,
    tol: float,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Batched CD iterations for R replicates; returns At, D, n_iter, loss."""
    n, m = op.shape
    R, k, _ = At.shape
    dt = op.dtype
    w = None if counts is None else counts.astype(dt)
    row_sq = op.row_sq_norms()
    xnorm2 = np.full(R, row_sq.sum()) if counts is None else counts.astype(np.float64) @ row_sq
    n_iter = np.full(R, max_iter, dtype=np.int64)
    loss = np.zeros(R)
    out_At = At
    out_D = D
    active = np.arange(R)
    At = At.copy()
    D = D.copy()
    viol_init = np.zeros(R)
    XtA = G2 = None
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("NMF iterations", total=max_iter)
    try:
        for it in range(1, max_iter + 1):
            Ra = len(active)
            wa = None if w is None else w[active]
            # --- A update (rows of X independent): needs X D^T and D D^T
            XD = op.left_t(D.reshape(Ra * k, m)).reshape(Ra, k, n)
            G = np.matmul(D, D.transpose(0, 2, 1))
            viol = _cd_sweep(At, G, XD, wa)
            del XD
            # --- D update: needs X^T diag(c) A and A^T diag(c) A
            Aw = At if wa is None else At * wa[:, None, :]
            XtA = op.left(Aw.reshape(Ra * k, n)).reshape(Ra, k, m)
            G2 = np.matmul(Aw, At.transpose(0, 2, 1))
            del Aw
            viol += _cd_sweep(D, G2, XtA, None)
            if it == 1:
                viol_init[active] = viol
            vi = viol_init[active]
            done = (vi == 0) | (viol / np.where(vi == 0, 1, vi) <= tol)
            if it == max_iter:
                done[:] = True
            if done.any():
                idx = np.flatnonzero(done)
                g = active[idx]
                n_iter[g] = it
                DDt = np.matmul(D[idx], D[idx].transpose(0, 2, 1))
                cross = np.einsum("rkm,rkm->r", D[idx], XtA[idx], dtype=np.float64)
                quad = np.einsum("rkl,rkl->r", G2[idx], DDt, dtype=np.float64)
                loss[g] = np.sqrt(np.maximum(xnorm2[g] - 2 * cross + quad, 0))
                out_At[g] = At[idx]
                out_D[g] = D[idx]
                keep = np.flatnonzero(~done)
                active = active[keep]
                if len(keep) == 0:
                    break
                At = np.ascontiguousarray(At[keep])
                D = np.ascontiguousarray(D[keep])
            if bar is not None:
                bar.update(task, completed=it, description=f"NMF ({len(active)}/{R} running)")
    finally:
        if bar is not None:
            bar.stop()
    return out_At, out_D, n_iter, loss


# --------------------------------------------------------------------------- public API


def _make_operator(X, solver, sketch, dt, rng):
    if solver == "exact":
        return ExactOperator(X)
    if solver == "compressed":
        if sketch is None:
            return sketch_matrix(X, random_state=rng)
        if isinstance(sketch, Sketch):
            if sketch.shape != X.shape:
                raise ConfigError(f"sketch shape {sketch.shape} does not match X {X.shape}")
            if sketch.dtype != dt:
                return Sketch(
                    sketch.Q.astype(dt), sketch.B.astype(dt), sketch.singular_values,
                    sketch.energy, sketch.frob2, sketch.row_sq, sketch.row_sum,
                )
            return sketch
        if isinstance(sketch, dict):
            return sketch_matrix(X, random_state=rng, **sketch)
        raise ConfigError("sketch must be None, an osnmf Sketch, or a dict of sketch_matrix options")
    raise ConfigError(f"solver must be 'exact' or 'compressed', got {solver!r}")


def prepare_data(
    X: np.ndarray,
    *,
    solver: str = "exact",
    sketch: Sketch | dict | None = None,
    dtype: Any = np.float32,
    random_state: int | np.random.Generator | None = None,
) -> ExactOperator | Sketch:
    """Check and convert ``X`` once, for many calls of :func:`fit_nmf_replicates` (a K sweep).

    The returned object can be passed as ``X``: the exact operator caches the n × n Gram matrix
    its NNDSVDa uses after the first call; the compressed one is the sketch (computed once).

    Parameters
    ----------
    X : ndarray, shape (n, m)
        Non-negative data.
    solver : {"exact", "compressed"}
    sketch : Sketch or dict, optional
        Options for :func:`osnmf.factorize.sketch.sketch_matrix` (compressed only).
    dtype : float32 or float64
    random_state : int or Generator, optional
        Seed of the sketch.

    Returns
    -------
    ExactOperator or Sketch
    """
    dt = _resolve_dtype(dtype)
    X = check_data(X, dtype=dt)
    rng = np.random.default_rng(random_state)
    return _make_operator(X, solver, sketch, dt, rng)


def _check_common(max_iter, tol, backend):
    if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise ConfigError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not tol >= 0:
        raise ConfigError(f"tol must be >= 0, got {tol!r}")
    if backend not in ("numpy", "torch"):
        raise ConfigError(f"backend must be 'numpy' or 'torch', got {backend!r}")


def fit_nmf(
    X: np.ndarray,
    k: int,
    *,
    init: str | tuple[np.ndarray, np.ndarray] = "nndsvda",
    max_iter: int = 200,
    tol: float = 1e-4,
    random_state: int | np.random.Generator | None = None,
    solver: str = "exact",
    backend: str = "numpy",
    device: str | None = None,
    sketch: Sketch | dict | None = None,
    dtype: Any = np.float32,
) -> NMFResult:
    """Fit ``X ≈ A D`` by coordinate descent (scikit-learn ``solver="cd"`` arithmetic).

    Parameters
    ----------
    X : ndarray, shape (n, m)
        Non-negative data, genes × voxels. NaN or negative values raise ``InputError``.
    k : int
        Number of patterns.
    init : {"nndsvda", "random"} or (A0, D0)
        Initialisation: NNDSVDa (deterministic up to the randomised SVD of large matrices,
        seeded by ``random_state``), scikit-learn-style random, or explicit factors
        ``A0`` (n, k) and ``D0`` (k, m).
    max_iter, tol : int, float
        Stop when the projected-gradient violation falls to ``tol`` × its first-iteration
        value, or after ``max_iter`` iterations.
    random_state : int or Generator, optional
        Seed for the random parts (randomised SVD, random init, sketch).
    solver : {"exact", "compressed"}
        ``"compressed"`` works on a randomised low-rank sketch of X (see ``sketch``).
    backend : {"numpy", "torch"}
        ``"torch"`` needs the optional ``torch`` package (``pip install osnmf[gpu]``).
    device : str, optional
        Torch device ("cpu", "cuda", "cuda:0"); default CUDA when available.
    sketch : Sketch or dict, optional
        Precomputed sketch, or options for :func:`osnmf.factorize.sketch.sketch_matrix`.
    dtype : float32 or float64
        Working precision (float32 is twice as fast; float64 reproduces sklearn on float64 data
        to rounding).

    Returns
    -------
    NMFResult
    """
    dt = _resolve_dtype(dtype)
    X = check_data(X, dtype=dt)
    n, m = X.shape
    k = _check_k(k, n, m, init)
    _check_common(max_iter, tol, backend)
    counts = np.ones((1, n), dtype=np.int64)
    if isinstance(init, tuple):
        if len(init) != 2:
            raise ConfigError("init as a tuple must be (A0, D0)")
        A0 = np.asarray(init[0], dtype=dt)
        D0 = np.asarray(init[1], dtype=dt)
        if A0.shape != (n, k) or D0.shape != (k, m):
            raise InputError(
                f"init factors must have shapes ({n}, {k}) and ({k}, {m}), "
                f"got {A0.shape} and {D0.shape}"
            )
        if not (np.isfinite(A0).all() and np.isfinite(D0).all()) or A0.min() < 0 or D0.min() < 0:
            raise InputError("init factors must be finite and non-negative")
        init = (A0[None], D0[None])
    fits = fit_nmf_replicates(
        X, k, counts, init=init, random_state=random_state, max_iter=max_iter, tol=tol,
        solver=solver, sketch=sketch, backend=backend, device=device, dtype=dt,
        _weighted=False,
    )
    return NMFResult(fits.A[0], fits.D[0], int(fits.n_iter[0]), float(fits.loss[0]))


def fit_nmf_replicates(
    X: np.ndarray,
    k: int,
    row_counts: np.ndarray,
    *,
    init: str | tuple[np.ndarray, np.ndarray] = "nndsvda",
    random_state: int | np.random.Generator | None = None,
    max_iter: int = 200,
    tol: float = 1e-4,
    solver: str = "exact",
    sketch: Sketch | dict | None = None,
    backend: str = "numpy",
    device: str | None = None,
    dtype: Any = np.float32,
    batch_size: int | None = None,
    progress: bool = False,
    _weighted: bool = True,
) -> ReplicateFits:
    """Fit R row-weighted NMF problems (bootstrap replicates) sharing every pass over ``X``.

    Replicate ``r`` minimises ``Σ_i c_ri ‖x_i − a_i D‖²`` with the counts ``c_r``, which is
    scikit-learn's NMF of the resampled matrix ``X[repeat(arange(n), c_r)]`` (same init, same
    iterations, same stopping rule).

    Parameters
    ----------
    X : ndarray, shape (n, m), or the result of :func:`prepare_data`
        Non-negative data, held once (float32 by default). A prepared operator fixes the
        solver (``solver``/``sketch``/``dtype`` are then ignored) and keeps its caches.
    k : int
        Number of patterns.
    row_counts : ndarray of int, shape (R, n)
        Row multiplicities per replicate (see :func:`bootstrap_counts`).
    init : {"nndsvda", "random"} or (A0, D0)
        Per-replicate NNDSVDa of the resampled matrix, random, or explicit stacked factors
        ``A0`` (R, n, k) and ``D0`` (R, k, m).
    random_state : int or Generator, optional
        Seed of the randomised SVD / random init / sketch.
    max_iter, tol : int, float
        As :func:`fit_nmf`; each replicate stops on its own.
    solver : {"exact", "compressed"}
        ``"compressed"`` replaces X by a low-rank sketch in every product (init included).
    sketch : Sketch or dict, optional
        Precomputed sketch (reuse it across K!) or options for ``sketch_matrix``.
    backend, device : str
        ``"numpy"`` or ``"torch"`` (optional dependency; CPU or CUDA).
    dtype : float32 or float64
        Working precision.
    batch_size : int, optional
        Replicates fitted together (memory ∝ batch_size·k·(n + m)); default all.
    progress : bool
        Show a rich progress bar.

    Returns
    -------
    ReplicateFits
    """
    rng = random_state if isinstance(random_state, np.random.Generator) else (
        np.random.default_rng(random_state)
    )
    if isinstance(X, ExactOperator | Sketch):  # prepared by prepare_data: reuse as it is
        op = X
        dt = np.dtype(op.dtype)
        n, m = op.shape
    else:
        dt = _resolve_dtype(dtype)
        X = check_data(X, dtype=dt)
        n, m = X.shape
        op = None
    k = _check_k(k, n, m, init)
    _check_common(max_iter, tol, backend)
    counts = _check_counts(row_counts, n)
    R = counts.shape[0]
    if op is None:
        op = _make_operator(X, solver, sketch, dt, rng)
    if batch_size is None:
        batch_size = R
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")

    if isinstance(init, tuple):
        if len(init) != 2:
            raise ConfigError("init as a tuple must be (A0, D0)")
        A0 = np.asarray(init[0], dtype=dt)
        D0 = np.asarray(init[1], dtype=dt)
        if A0.shape != (R, n, k) or D0.shape != (R, k, m):
            raise InputError(
                f"stacked init factors must have shapes ({R}, {n}, {k}) and ({R}, {k}, {m}), "
                f"got {A0.shape} and {D0.shape}"
            )
    elif init not in ("nndsvda", "random"):
        raise ConfigError(f"init must be 'nndsvda', 'random' or (A0, D0), got {init!r}")

    solve = _solve
    if backend == "torch":
        from osnmf.factorize.torch_backend import TorchOperator, resolve_device, solve_torch

        op = TorchOperator(op, resolve_device(device))
        solve = solve_torch
    elif device is not None and device != "cpu":
        raise ConfigError(f"device={device!r} needs backend='torch'")

    A_out = np.empty((R, n, k), dtype=dt)
    D_out = np.empty((R, k, m), dtype=dt)
    it_out = np.empty(R, dtype=np.int64)
    loss_out = np.empty(R)
    for s in range(0, R, batch_size):
        sl = slice(s, min(R, s + batch_size))
        c = counts[sl]
        if isinstance(init, tuple):
            At = np.ascontiguousarray(A0[sl].transpose(0, 2, 1))
            D = np.ascontiguousarray(D0[sl])
        elif init == "nndsvda":
            At, D = _nndsvda_batch(op, k, c, rng, 1e-6, None)
        else:
            At, D = _random_init(op, k, c, rng)
        At, D, it, loss = solve(op, At, D, c if _weighted else None, max_iter, tol, progress)
        A_out[sl] = At.transpose(0, 2, 1)
        D_out[sl] = D
        it_out[sl] = it
        loss_out[sl] = loss
    return ReplicateFits(A_out, D_out, it_out, loss_out)
