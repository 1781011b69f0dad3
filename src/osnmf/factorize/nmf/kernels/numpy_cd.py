"""numpy kernels of the coordinate-descent solver: the array operations one iteration needs.

The loop itself (convergence, replicate retirement, loss, progress) is
:func:`osnmf.factorize.nmf.solver.solve`; a backend only supplies these operations on its own arrays.
Layout: stacked replicates, ``At`` (R, k, n) = Aᵀ and ``D`` (R, k, m).
"""

from __future__ import annotations

import numpy as np

from osnmf.factorize.nmf.kernels.numba_cd import cd_sweep_fused

__all__ = ["NumpyKernels", "cd_sweep"]


def cd_sweep(F: np.ndarray, G: np.ndarray, XF: np.ndarray, w: np.ndarray | None) -> np.ndarray:
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


def swap_rows(a: np.ndarray, i: int, j: int) -> None:
    """Exchange ``a[i]`` and ``a[j]`` in place (one row of temporary memory)."""
    row = a[i].copy()
    a[i] = a[j]
    a[j] = row


def swap_to_front(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` (increasing) of ``a`` swapped to its front in place; returns that prefix (a
    view). The other rows move behind it, unchanged."""
    for j, i in enumerate(idx):
        if i != j:
            swap_rows(a, i, j)
    return a[: len(idx)]


class NumpyKernels:
    """Solver operations on numpy arrays, products with the data through ``op``.

    Parameters
    ----------
    op : ExactOperator or Sketch (``left``, ``left_t``, ``shape``, ``dtype``).
    """

    host_in_place = True  # working arrays are host arrays; ``keep`` keeps the rows it drops

    def __init__(self, op):
        self.op = op

    def put(self, a: np.ndarray) -> np.ndarray:
        """A working copy of a host array."""
        return np.array(a, dtype=self.op.dtype, order="C")

    def adopt(self, a: np.ndarray) -> np.ndarray:
        """The host array itself when it has the working dtype and layout (else a copy)."""
        return np.ascontiguousarray(a, dtype=self.op.dtype)

    def get(self, a: np.ndarray) -> np.ndarray:
        """A host (numpy) view of a working array."""
        return a

    def keep(self, a: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` of the replicate axis, swapped to the front of ``a`` (:func:`swap_to_front`:
        no second copy of a factor while replicates retire; the solver can return the working
        array itself)."""
        return swap_to_front(a, idx)

    def data_t(self, D: np.ndarray) -> np.ndarray:
        """``X Dᵀ`` per replicate, laid out (R, k, n)."""
        R, k, m = D.shape
        return self.op.left_t(D.reshape(R * k, m)).reshape(R, k, self.op.shape[0])

    def data(self, At: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``Aᵀ X`` per replicate, (R, k, m); written into ``out`` (C-contiguous) if given."""
        R, k, n = At.shape
        m = self.op.shape[1]
        flat = None if out is None else out.reshape(R * k, m)  # a view: out is contiguous
        return self.op.left(At.reshape(R * k, n), out=flat).reshape(R, k, m)

    def gram(self, F: np.ndarray, Fw: np.ndarray | None = None) -> np.ndarray:
        """``Fw Fᵀ`` per replicate, (R, k, k) (``Fw`` defaults to ``F``)."""
        return np.matmul(F if Fw is None else Fw, F.transpose(0, 2, 1))

    def weigh(self, At: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Columns of ``At`` scaled by the counts, (R, k, n)."""
        return At * w[:, None, :]

    def inner(self, P: np.ndarray, Q: np.ndarray) -> np.ndarray:
        """``Σ P ∘ Q`` per replicate, float64 host array (R,)."""
        return np.einsum("rkm,rkm->r", P, Q, dtype=np.float64)

    # the fused numba sweep (same arithmetic, one pass per chunk; numba is a dependency)
    cd_sweep = staticmethod(cd_sweep_fused)
