"""Public NMF fits: one matrix (:func:`fit_nmf`) or R bootstrap replicates sharing every pass
over ``X`` (:func:`fit_nmf_replicates`).

The fits reproduce scikit-learn's ``NMF(solver="cd", tol=1e-4, max_iter=200, init="nndsvda")``
(alpha = 0); replicate ``r`` with counts ``c_r`` is scikit-learn's NMF of the resampled matrix
``X[repeat(arange(n), c_r)]``. Pieces: checks (:mod:`.checks`), operators (:mod:`.operators`),
initialisation (:mod:`.init`), the loop (:mod:`.solver`) over numpy or torch kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from osnmf.errors import ConfigError, InputError, NonFiniteFitError
from osnmf.factorize.checks import (
    MAX_ITER,
    TOL,
    check,
    check_backend,
    check_counts,
    check_k,
    check_matrix,
    resolve_dtype,
)
from osnmf.factorize.nmf.init import nndsvda_init, random_init
from osnmf.factorize.nmf.kernels.numpy_cd import NumpyKernels
from osnmf.factorize.nmf.operators import ExactOperator, Sketch, make_operator
from osnmf.factorize.nmf.solver import solve

__all__ = [
    "NMFResult",
    "ReplicateFits",
    "fit_nmf",
    "fit_nmf_replicates",
    "non_finite_error",
    "solve_replicates",
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
    viol_init : ndarray of float, shape (R,)
        First-iteration projected-gradient violation (the stopping rule's scale).
    """

    A: np.ndarray
    D: np.ndarray
    n_iter: np.ndarray
    loss: np.ndarray
    viol_init: np.ndarray | None = None


def fit_nmf(
    X: np.ndarray,
    k: int,
    *,
    init: str | tuple[np.ndarray, np.ndarray] = "nndsvda",
    max_iter: int = MAX_ITER,
    tol: float = TOL,
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
        Precomputed sketch, or options for :func:`osnmf.factorize.nmf.operators.sketch_matrix`.
    dtype : float32 or float64
        Working precision (float32 is twice as fast; float64 reproduces sklearn on float64 data
        to rounding).

    Returns
    -------
    NMFResult
    """
    rng = random_state if isinstance(random_state, np.random.Generator) else (
        np.random.default_rng(random_state)
    )
    if isinstance(X, ExactOperator | Sketch):
        op = X
    else:
        X = check_matrix(X, dtype=resolve_dtype(dtype))
        op = make_operator(X, solver, sketch, rng)
    n, m = op.shape
    if isinstance(init, tuple):  # one replicate: checked as stacked (1, n, k), (1, k, m)
        if len(init) != 2:
            raise ConfigError("init as a tuple must be (A0, D0)")
        init = (np.asarray(init[0])[None], np.asarray(init[1])[None])
    fits = fit_nmf_replicates(
        op, k, np.ones((1, n), dtype=np.int64), init=init, random_state=rng, max_iter=max_iter,
        tol=tol, backend=backend, device=device, _weighted=False,
    )
    return NMFResult(fits.A[0], fits.D[0], int(fits.n_iter[0]), float(fits.loss[0]))


def fit_nmf_replicates(
    X: np.ndarray,
    k: int,
    row_counts: np.ndarray,
    *,
    init: str | tuple[np.ndarray, np.ndarray] = "nndsvda",
    random_state: int | np.random.Generator | None = None,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
    solver: str = "exact",
    sketch: Sketch | dict | None = None,
    backend: str = "numpy",
    device: str | None = None,
    dtype: Any = np.float32,
    batch_size: int | None = None,
    progress: bool = False,
    stop_reference: np.ndarray | None = None,
    _weighted: bool = True,
    _consume_init: bool = False,
) -> ReplicateFits:
    """Fit R row-weighted NMF problems (bootstrap replicates) sharing every pass over ``X``.

    Replicate ``r`` minimises ``Σ_i c_ri ‖x_i − a_i D‖²`` with the counts ``c_r``, which is
    scikit-learn's NMF of the resampled matrix ``X[repeat(arange(n), c_r)]`` (same init, same
    iterations, same stopping rule).

    Parameters
    ----------
    X : ndarray, shape (n, m), or an operator of :func:`~osnmf.factorize.nmf.operators.make_operator`
        Non-negative data, held once (float32 by default). An operator fixes the solver
        (``solver``/``sketch``/``dtype`` are then ignored) and keeps its caches.
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
    stop_reference : ndarray of float, shape (R,), optional
        Replicate r stops when its violation is at most ``tol × stop_reference[r]`` (NaN: its
        own first-iteration violation, scikit-learn's rule, also the default). For warm starts:
        pass ``viol_init`` of the same replicates' cold fits (see :mod:`osnmf.factorize.nmf.solver`).

    Returns
    -------
    ReplicateFits
    """
    rng = random_state if isinstance(random_state, np.random.Generator) else (
        np.random.default_rng(random_state)
    )
    if isinstance(X, ExactOperator | Sketch):  # an operator made once for many calls: reuse it
        op = X
    else:
        X = check_matrix(X, dtype=resolve_dtype(dtype))
        op = make_operator(X, solver, sketch, rng)
    n, m = op.shape
    k = check_k(k, min(n, m) if isinstance(init, str) and init == "nndsvda" else None)
    check_backend(backend, device)
    counts = check_counts(row_counts, n)
    return solve_replicates(op, k, counts, init=init, random_state=rng, max_iter=check("max_iter", max_iter),
                            tol=check("tol", tol), backend=backend, device=device,
                            batch_size=None if batch_size is None else check("batch_size", batch_size),
                            progress=progress, stop_reference=stop_reference, weighted=_weighted,
                            consume_init=_consume_init)


def solve_replicates(
    op: ExactOperator | Sketch,
    k: int,
    counts: np.ndarray,
    *,
    init: str | tuple[np.ndarray, np.ndarray],
    max_iter: int,
    tol: float,
    random_state: int | np.random.Generator | None = None,
    backend: str = "numpy",
    device: str | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    stop_reference: np.ndarray | None = None,
    weighted: bool = True,
    consume_init: bool = False,
) -> ReplicateFits:
    """:func:`fit_nmf_replicates` on checked arguments (the sweep's blocks, the final model): an
    operator ``op``, ``1 <= k``, int64 ``counts`` (R, n) with a positive count per replicate and
    the solver's parameters as :func:`osnmf.factorize.checks.check` returns them; nothing is
    checked again here but explicit start factors and ``stop_reference``'s shape.

    Raises :class:`~osnmf.errors.OsnmfError` when the fit goes non-finite (NaN or infinity in the
    factors or the loss; :func:`osnmf.factorize.nmf.solver.solve`).
    """
    rng = random_state if isinstance(random_state, np.random.Generator) else (
        np.random.default_rng(random_state)
    )
    n, m = op.shape
    dt = np.dtype(op.dtype)
    R = counts.shape[0]
    batch_size = R if batch_size is None else batch_size
    ref = None
    if stop_reference is not None:
        ref = np.asarray(stop_reference, dtype=np.float64)
        if ref.shape != (R,):
            raise ConfigError(f"stop_reference: must have shape ({R},), got {ref.shape}")
    if isinstance(init, tuple):
        A0, D0 = _init_factors(init, (R, n, k), (R, k, m), dt)
    elif init not in ("nndsvda", "random"):
        raise ConfigError(f"init={init!r}: must be 'nndsvda', 'random' or (A0, D0)")
    if backend == "torch":
        from osnmf.factorize.nmf.kernels.torch_cd import TorchKernels, TorchOperator, resolve_device

        op = TorchOperator(op, resolve_device(device))
        kernels = TorchKernels(op)
    else:
        kernels = NumpyKernels(op)

    consume = consume_init or not isinstance(init, tuple)
    A_out = np.empty((R, n, k), dtype=dt)
    # one batch of starts made here: the solver returns its working D (no second (R, k, m) array)
    D_out = None if (consume and batch_size >= R) else np.empty((R, k, m), dtype=dt)
    it_out = np.empty(R, dtype=np.int64)
    loss_out = np.empty(R)
    v0_out = np.empty(R)
    for s in range(0, R, batch_size):
        sl = slice(s, min(R, s + batch_size))
        c = counts[sl]
        if isinstance(init, tuple):
            At = np.ascontiguousarray(A0[sl].transpose(0, 2, 1))
            D = np.ascontiguousarray(D0[sl])
        elif init == "nndsvda":
            At, D = nndsvda_init(op, k, c, rng, 1e-6, None)
        else:
            At, D = random_init(op, k, c, rng)
        try:
            At, D, it, loss, v0 = solve(kernels, At, D, c if weighted else None, max_iter, tol, progress,
                                        None if ref is None else ref[sl],
                                        out_D=None if D_out is None else D_out[sl], consume_init=consume)
        except NonFiniteFitError as exc:
            raise _non_finite(exc, op, k, s, init) from None
        if D_out is None:
            D_out = D
        A_out[sl] = At.transpose(0, 2, 1)
        it_out[sl] = it
        loss_out[sl] = loss
        v0_out[sl] = v0
    return ReplicateFits(A_out, D_out, it_out, loss_out, v0_out)


def _non_finite(exc: NonFiniteFitError, op: Any, k: int, offset: int, init: Any) -> NonFiniteFitError:
    """``exc`` (replicates of one batch) with K, the replicates of the call and the likely cause."""
    reps = [r + offset for r in exc.replicates]
    start = "explicit" if isinstance(init, tuple) else init
    if exc.iteration == 0:
        cause = f"the {start} start is non-finite"
    else:
        row_sq = np.asarray(op.row_sq_norms(), dtype=np.float64)
        total = float(row_sq.sum())
        if not np.isfinite(total) or total > np.finfo(np.float32).max:
            cause = (f"X's scale overflows the solver's products (sum of squares {total:.3g}); rescale X, "
                     "e.g. divide it by its maximum")
        else:
            cause = f"the coordinate descent broke down from the {start} start"
    return non_finite_error(k, reps, exc.iteration, cause)


def non_finite_error(k: int, replicates: Any, iteration: int, cause: str) -> NonFiniteFitError:
    """The one message of a fit that went non-finite: K, the replicates, the iteration, the cause."""
    reps = [int(r) for r in replicates]
    where = f"at iteration {iteration}" if iteration else "at its start"
    return NonFiniteFitError(f"NMF at K={k} went non-finite (NaN or infinity) in replicate(s) "
                             f"{', '.join(map(str, reps[:5]))}{', ...' if len(reps) > 5 else ''} {where}: {cause}",
                             reps, iteration, cause)


def _init_factors(init: tuple, a_shape: tuple, d_shape: tuple, dt: np.dtype):
    """Explicit stacked start factors (A0, D0), checked: shapes, finite, non-negative."""
    if len(init) != 2:
        raise ConfigError("init as a tuple must be (A0, D0)")
    A0, D0 = np.asarray(init[0], dtype=dt), np.asarray(init[1], dtype=dt)
    if A0.shape != a_shape or D0.shape != d_shape:
        raise InputError(f"init factors must have shapes {a_shape} and {d_shape}, "
                         f"got {A0.shape} and {D0.shape}")
    if not (np.isfinite(A0).all() and np.isfinite(D0).all()) or A0.min() < 0 or D0.min() < 0:
        raise InputError("init factors must be finite and non-negative")
    return A0, D0
