"""The data operators the NMF solver uses: the matrix itself, or a randomised low-rank sketch.

The NMF updates touch the data only through the products ``P @ X`` and ``P @ X.T``. An
:class:`ExactOperator` computes them with ``X`` itself; a :class:`Sketch` ``X ≈ Q B`` (``Q``
orthonormal, genes × rank; ``B`` rank × voxels) computes them in ``(n + m)·rank`` instead of
``n·m`` operations per row of ``P``, which is what makes the ``"compressed"`` solver fast.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from osnmf.errors import ConfigError
from osnmf.factorize.checks import SWEEP_SOLVER
from osnmf.linalg import dense_top_eigh

__all__ = ["ExactOperator", "Sketch", "make_operator", "sketch_matrix"]


class ExactOperator:
    """The data matrix itself, seen through the two products the solver needs.

    Parameters
    ----------
    X : ndarray, shape (n, m)
        Non-negative data (genes × voxels), held without copying.
    """

    def __init__(self, X: np.ndarray):
        self.X = X
        self.shape = X.shape
        self.dtype = X.dtype
        self._gram: np.ndarray | None = None
        self._row_sq: np.ndarray | None = None

    def left_gram(self) -> np.ndarray:
        """``X @ X.T`` as float64, shape (n, n); computed once, then cached.

        Blocks of 4,096 columns are multiplied in X's own precision (float32 GEMM is ~7× faster
        than converting to float64 first; relative error ~1e-6, ample for the top-k
        eigenvectors the initialisation needs) and accumulated in float64. Each product covers
        a pair of row panels of at most 2,048 rows (16 MiB of float32; the lower triangle, then
        mirrored): a whole n × n float32 product added 72 MiB at 4,345 genes. Same values,
        same time (measured at 4,345 × 62,529: 8.0 s vs 7.7 s).
        """
        if self._gram is None:
            n, m = self.shape
            G = np.zeros((n, n))
            panels = [slice(i, min(n, i + 2048)) for i in range(0, n, 2048)]
            for j in range(0, m, 4096):
                for a, rows in enumerate(panels):
                    blk = self.X[rows, j : j + 4096]
                    G[rows, rows] += blk @ blk.T
                    for other in panels[:a]:
                        G[rows, other] += blk @ self.X[other, j : j + 4096].T
            for a, rows in enumerate(panels):
                for other in panels[:a]:
                    G[other, rows] = G[rows, other].T
            self._gram = G
        return self._gram

    def forget_gram(self) -> None:
        """Drop the cached Gram (n² float64: 0.15 GiB at 4,345 genes) once no NNDSVDa start needs it."""
        self._gram = None

    def weighted_right_gram(self, c: np.ndarray) -> np.ndarray:
        """``X.T @ diag(c) @ X`` in float64, shape (m, m)."""
        Xd = self.X.astype(np.float64)
        return Xd.T @ (c[:, None] * Xd)

    def left(self, P: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``P @ X`` for ``P`` of shape (w, n); returns (w, m) (written into ``out`` if given)."""
        return np.matmul(P, self.X, out=out)

    def left_t(self, P: np.ndarray) -> np.ndarray:
        """``P @ X.T`` for ``P`` of shape (w, m); returns (w, n).

        Computed as ``(X @ P.T).T``: OpenBLAS is up to 20× slower on the other layout when w is
        small and m large (measured: 0.9 s vs 0.05 s for w = 30, n = 150, m = 62,529).
        """
        return (self.X @ P.T).T

    def row_sq_norms(self) -> np.ndarray:
        """Squared L2 norm of every row, float64, shape (n,); computed once (read-only).

        Rows are converted to float64 in blocks of 2²¹ values (16 MiB): at paper size a block of
        2²⁴ values made the pass peak at 0.25 GiB, in every fit that asked for the norms.
        """
        if self._row_sq is None:
            out = np.empty(self.shape[0], dtype=np.float64)
            step = max(1, 2**21 // max(1, self.shape[1]))
            for i in range(0, self.shape[0], step):
                blk = self.X[i : i + step].astype(np.float64)
                out[i : i + step] = np.einsum("ij,ij->i", blk, blk)
            out.flags.writeable = False
            self._row_sq = out
        return self._row_sq

    def row_sums(self) -> np.ndarray:
        """Sum of every row, float64, shape (n,)."""
        return self.X.sum(axis=1, dtype=np.float64)


@dataclass
class Sketch:
    """A low-rank approximation ``X ≈ Q @ B`` of a genes × voxels matrix.

    Attributes
    ----------
    Q : ndarray, shape (n, rank)
        Orthonormal columns (left singular vectors of the sketch).
    B : ndarray, shape (rank, m)
        ``Q.T @ X`` restricted to the kept rank (= singular values × right vectors).
    singular_values : ndarray, shape (rank,)
        Singular values of the kept part, descending.
    energy : float
        Fraction of ``‖X‖²_F`` the sketch captures, ``‖B‖²_F / ‖X‖²_F``.
    frob2 : float
        ``‖X‖²_F`` of the original matrix.
    row_sq : ndarray, shape (n,)
        Squared row norms of the original ``X`` (exact; used for losses).
    row_sum : ndarray, shape (n,)
        Row sums of the original ``X`` (exact; used by the NNDSVDa fill value).
    """

    Q: np.ndarray
    B: np.ndarray
    singular_values: np.ndarray
    energy: float
    frob2: float
    row_sq: np.ndarray
    row_sum: np.ndarray

    @property
    def rank(self) -> int:
        return int(self.B.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.Q.shape[0]), int(self.B.shape[1]))

    @property
    def dtype(self):
        return self.B.dtype

    def left(self, P: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``P @ (Q B)`` for ``P`` of shape (w, n); returns (w, m) (written into ``out`` if given)."""
        return np.matmul(P @ self.Q, self.B, out=out)

    def left_t(self, P: np.ndarray) -> np.ndarray:
        """``P @ (Q B).T`` for ``P`` of shape (w, m); returns (w, n)."""
        return ((self.B @ P.T).T) @ self.Q.T  # layout as in ExactOperator.left_t

    def row_sq_norms(self) -> np.ndarray:
        return self.row_sq

    def left_gram(self) -> np.ndarray:
        """``(Q B)(Q B).T`` in float64, shape (n, n)."""
        QB = self.Q.astype(np.float64) @ (self.B.astype(np.float64) @ self.B.T.astype(np.float64))
        return QB @ self.Q.T.astype(np.float64)

    def weighted_right_gram(self, c: np.ndarray) -> np.ndarray:
        """``(Q B).T diag(c) (Q B)`` in float64, shape (m, m)."""
        Q = self.Q.astype(np.float64)
        B = self.B.astype(np.float64)
        return B.T @ ((Q.T @ (c[:, None] * Q)) @ B)

    def row_sums(self) -> np.ndarray:
        return self.row_sum

    def __repr__(self) -> str:
        n, m = self.shape
        return f"Sketch(shape=({n}, {m}), rank={self.rank}, energy={self.energy:.5f})"


def _range_finder(X: np.ndarray, width: int, n_iter: int, rng: np.random.Generator) -> np.ndarray:
    """Orthonormal basis (n × width) of the dominant column space of ``X`` (power iterations)."""
    n, m = X.shape
    omega = rng.standard_normal((m, width)).astype(X.dtype)
    Q, _ = np.linalg.qr(X @ omega)
    for _ in range(n_iter):
        Z, _ = np.linalg.qr(X.T @ Q)
        Q, _ = np.linalg.qr(X @ Z)
    return Q


def sketch_matrix(
    X: np.ndarray,
    *,
    energy: float = 0.999,
    rank: int | None = None,
    max_rank: int = 1024,
    n_oversamples: int = 16,
    n_iter: int = 2,
    random_state: int | np.random.Generator | None = 0,
    gram_limit: int = 8192,
) -> Sketch:
    """Randomised low-rank sketch ``X ≈ Q B`` keeping a target fraction of the energy.

    The rank is the smallest one whose singular values hold ``energy`` of ``‖X‖²_F``. For a
    matrix with a small side the truncated SVD is exact (Gram eigendecomposition); otherwise the
    randomised sketch width doubles (from 64) until that is reached or ``max_rank`` is hit, in which case the
    sketch keeps ``max_rank`` and reports the energy it reached (``Sketch.energy``).

    Parameters
    ----------
    X : ndarray, shape (n, m)
        Non-negative data, float32 or float64 (kept in its dtype).
    energy : float
        Target captured fraction of the squared Frobenius norm, in (0, 1].
    rank : int, optional
        Fixed rank; overrides ``energy``.
    max_rank : int
        Upper bound on the kept rank (a cost cap: each NMF product costs ``(n + m)·rank``).
    n_oversamples, n_iter : int
        Extra sketch columns and power iterations of the randomised range finder.
    random_state : int or Generator, optional
        Seed of the Gaussian test matrix.
    gram_limit : int
        When ``min(n, m) <= gram_limit`` the sketch is the *exact* truncated SVD, from the
        eigendecomposition of the small Gram matrix (``X Xᵀ`` or ``Xᵀ X``, float64); otherwise
        a randomised range finder is used.

    Returns
    -------
    Sketch
    """
    if not 0 < energy <= 1:
        raise ConfigError(f"sketch energy must lie in (0, 1], got {energy}")
    n, m = X.shape
    full = min(n, m)
    rng = np.random.default_rng(random_state)
    exact = ExactOperator(X)
    row_sq = exact.row_sq_norms()
    frob2 = float(row_sq.sum())
    row_sum = X.sum(axis=1, dtype=np.float64)
    if rank is not None and not 1 <= rank <= full:
        raise ConfigError(f"sketch rank must be between 1 and {full}, got {rank}")
    if min(n, m) <= gram_limit:
        # exact truncated SVD from the small Gram matrix (its eigenvalues are σ²)
        small_left = n <= m
        G = exact.left_gram() if small_left else exact.weighted_right_gram(np.ones(n))
        exact.forget_gram()  # dense_top_eigh overwrites G: the operator must not keep it
        lam, E = dense_top_eigh(G, rank if rank is not None else min(max(1, int(max_rank)), full), overwrite=True)
        lam = np.maximum(lam, 0)
        del G
        cum = np.cumsum(lam)
        if rank is not None:
            keep = rank
        else:
            reached = int(np.searchsorted(cum, energy * frob2 * (1 - 1e-12)) + 1)
            keep = int(min(reached, max(1, int(max_rank)), full))
        s = np.sqrt(lam[:keep])
        if small_left:
            Qk = np.ascontiguousarray(E[:, :keep]).astype(X.dtype)
            Bk = (Qk.T @ X).astype(X.dtype)
        else:
            Vk = np.ascontiguousarray(E[:, :keep].T)  # (keep, m)
            XV = X.astype(np.float64) @ Vk.T  # (n, keep) = U S
            Qk = (XV / np.where(s > 0, s, 1)).astype(X.dtype)
            Bk = (s[:, None] * Vk).astype(X.dtype)
        captured = float(cum[keep - 1] / frob2) if frob2 > 0 else 1.0
        return Sketch(Qk, Bk, s, captured, frob2, row_sq, row_sum)
    if rank is not None:
        widths = [min(full, rank + n_oversamples)]
    else:
        cap = min(full, max(1, int(max_rank)))
        widths = []
        w = 64
        while True:
            widths.append(min(full, w + n_oversamples, cap + n_oversamples))
            if widths[-1] >= min(full, cap + n_oversamples):
                break
            w *= 2
    for width in widths:
        Q = _range_finder(X, width, n_iter, rng)
        B = Q.T @ X
        Ub, s, Vt = np.linalg.svd(B, full_matrices=False)
        cum = np.cumsum(s.astype(np.float64) ** 2)
        if rank is not None:
            keep = rank
            break
        reached = np.searchsorted(cum, energy * frob2 * (1 - 1e-12)) + 1
        if reached <= min(width - n_oversamples, cap) or width == widths[-1]:
            keep = int(min(reached, cap, len(s)))
            break
    keep = int(min(keep, len(s)))
    Qk = (Q @ Ub[:, :keep]).astype(X.dtype)
    Bk = (s[:keep, None] * Vt[:keep]).astype(X.dtype)
    captured = float(cum[keep - 1] / frob2) if frob2 > 0 else 1.0
    return Sketch(Qk, Bk, s[:keep].astype(np.float64), captured, frob2, row_sq, row_sum)


def make_operator(
    X: np.ndarray, solver: str = "exact", sketch: Sketch | dict | None = None,
    random_state: int | np.random.Generator | None = None,
) -> ExactOperator | Sketch:
    """The operator for a checked matrix ``X``: exact, or a sketch (given, or computed here).

    Parameters
    ----------
    X : ndarray, shape (n, m), already checked (float32 or float64).
    solver : {"exact", "compressed"}
    sketch : a :class:`Sketch` of ``X`` (converted to X's dtype), or options of
        :func:`sketch_matrix`; None: default options (compressed only).
    random_state : seed of a sketch computed here.
    """
    SWEEP_SOLVER.check("solver", solver)
    if solver == "exact":
        return ExactOperator(X)
    if sketch is None:
        return sketch_matrix(X, random_state=random_state)
    if isinstance(sketch, Sketch):
        if sketch.shape != X.shape:
            raise ConfigError(f"sketch shape {sketch.shape} does not match X {X.shape}")
        if sketch.dtype != X.dtype:
            return replace(sketch, Q=sketch.Q.astype(X.dtype), B=sketch.B.astype(X.dtype))
        return sketch
    if isinstance(sketch, dict):
        return sketch_matrix(X, **{"random_state": random_state, **sketch})
    raise ConfigError("sketch must be None, an osnmf Sketch, or a dict of sketch_matrix options")

