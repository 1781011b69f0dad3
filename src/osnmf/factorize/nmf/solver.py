"""The one coordinate-descent loop of osnmf, over per-backend kernels (numpy, torch).

Model: ``X ≈ A D`` with ``X`` genes × voxels (n × m), ``A ≥ 0`` (n × k), ``D ≥ 0`` (k × m),
Frobenius loss, scikit-learn's ``NMF(solver="cd")`` arithmetic (alpha = 0):

* one iteration = one cyclic coordinate-descent sweep over the columns of ``A`` followed by one
  sweep over the rows of ``D``;
* the projected-gradient "violation" of both sweeps is summed; a replicate stops at the first
  iteration where ``violation / violation_at_iteration_1 <= tol`` (``tol = 0``: after
  ``max_iter`` iterations). A warm start (a grown K − 1 fit) begins close to an optimum, so its
  own first violation is small and the relative rule would demand far more accuracy than a cold
  start; ``viol_ref`` lets it use the first violation of its replicate's cold (NNDSVDa) start
  instead: both then stop at the same absolute accuracy.

Bootstrap replicates are row-weighted problems ``Σ_i c_i ‖x_i − a_i D‖²`` with integer counts
``c``; R replicates share every pass over ``X`` (two GEMMs of width ``R·k`` per iteration) and
retire one by one as they converge.

A non-finite start or a violation that turns NaN or infinite stops the loop at once with
:class:`~osnmf.errors.NonFiniteFitError` (its replicates and iteration), so no NaN factor is
ever returned, stored or iterated to ``max_iter``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from osnmf.errors import NonFiniteFitError
from osnmf.factorize.nmf.kernels.numpy_cd import swap_rows, swap_to_front
from osnmf.progress import ProgressBar

__all__ = ["Kernels", "solve"]


class Kernels(Protocol):
    """What a backend supplies (see :class:`osnmf.factorize.nmf.kernels.numpy_cd.NumpyKernels`)."""

    op: object
    host_in_place: bool  # working arrays are host arrays and ``keep`` keeps the rows it drops

    def put(self, a: np.ndarray): ...
    def adopt(self, a: np.ndarray): ...
    def get(self, a) -> np.ndarray: ...
    def keep(self, a, idx: np.ndarray): ...
    def data_t(self, D): ...
    def data(self, At, out=None): ...
    def gram(self, F, Fw=None): ...
    def weigh(self, At, w): ...
    def inner(self, P, Q) -> np.ndarray: ...
    def cd_sweep(self, F, G, XF, w): ...


def solve(
    K: Kernels,
    At: np.ndarray,
    D: np.ndarray,
    counts: np.ndarray | None,
    max_iter: int,
    tol: float,
    progress: bool = False,
    viol_ref: np.ndarray | None = None,
    out_D: np.ndarray | None = None,
    consume_init: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Batched CD iterations for R replicates from the start ``At`` (R, k, n), ``D`` (R, k, m).

    Parameters
    ----------
    K : the backend's kernels (they hold the data operator ``K.op``).
    At, D : host arrays, the initial factors (not modified unless ``consume_init``).
    counts : (R, n) int row counts, or None for unweighted fits.
    max_iter, tol : stopping rule (checked by the caller).
    progress : show a progress bar (:mod:`osnmf.progress`).
    viol_ref : optional (R,) float: replicate r stops when its violation is at most ``tol`` times
        ``viol_ref[r]``; NaN entries (and the default) use its own first-iteration violation
        (scikit-learn's rule).
    out_D : optional host array (R, k, m) of the operator's dtype that receives the final ``D``.
        By default: ``D`` itself when ``consume_init`` on a host backend (the kernels'
        ``host_in_place``: retiring replicates stay in the working array, which is put back in
        replicate order at the end; no second copy of the largest factor), else a new array.
    consume_init : the solver may work in ``At`` and ``D`` themselves (they are then overwritten:
        for starts made for this fit only).

    Returns
    -------
    At (R, k, n), D (R, k, m) host arrays in the operator's dtype; n_iter (R,) int64;
    loss (R,) float64 = ``sqrt(Σ_i c_i ‖x_i − a_i D‖²)``; viol_init (R,) float64, the
    first-iteration violations (a reference for warm starts of the same replicates).
    """
    R, k, _ = At.shape
    # one replicate at a time: no boolean array of the whole (R, k, m) start
    bad = np.array([not (np.isfinite(At[r]).all() and np.isfinite(D[r]).all()) for r in range(R)], dtype=bool)
    if bad.any():
        raise NonFiniteFitError(f"the NMF start of replicate(s) {', '.join(map(str, np.flatnonzero(bad)[:5]))} "
                                "is non-finite (NaN or infinity)", np.flatnonzero(bad), 0)
    row_sq = K.op.row_sq_norms()
    xnorm2 = np.full(R, row_sq.sum()) if counts is None else counts.astype(np.float64) @ row_sq
    out_At = np.empty(At.shape, dtype=K.op.dtype)
    in_place = out_D is None and consume_init and K.host_in_place
    if out_D is None and not in_place:
        out_D = np.empty(D.shape, dtype=K.op.dtype)
    n_iter = np.full(R, max_iter, dtype=np.int64)
    loss = np.zeros(R)
    viol_init = np.zeros(R)
    ref = viol_init
    active = np.arange(R)
    XtA = None
    At, D = (K.adopt(At), K.adopt(D)) if consume_init else (K.put(At), K.put(D))
    if in_place:  # D's rows are permuted as replicates retire: slot[p] = the replicate at row p
        out_D, slot = D, np.arange(R)
    w = None if counts is None else K.put(counts)
    bar = ProgressBar("NMF iterations", max_iter, enabled=progress).start()
    try:
        for it in range(1, max_iter + 1):
            # A update (rows of X independent): needs X Dᵀ and D Dᵀ
            viol = K.cd_sweep(At, K.gram(D), K.data_t(D), w)
            # D update: needs Aᵀ diag(c) X and Aᵀ diag(c) A
            Aw = At if w is None else K.weigh(At, w)
            if K.host_in_place and XtA is not None:  # into the first iteration's array (its prefix
                XtA = K.data(Aw, out=XtA[: len(active)])  # once replicates retire): no new one
            else:
                XtA = None  # the last iteration's products go before the new ones are made
                XtA = K.data(Aw)
            G2 = K.gram(At, Aw)
            del Aw
            viol = K.get(viol + K.cd_sweep(D, G2, XtA, None))
            if not np.isfinite(viol).all():  # NaN/inf in the factors: stop here, never store them
                bad = active[~np.isfinite(viol)]
                raise NonFiniteFitError(f"NMF went non-finite (NaN or infinity) at iteration {it} in replicate(s) "
                                        f"{', '.join(map(str, bad[:5]))}", bad, it)
            if it == 1:  # every replicate is active at the first iteration
                viol_init[active] = viol
                if viol_ref is not None:
                    ref = np.where(np.isnan(viol_ref), viol_init, viol_ref)
            vi = ref[active]
            done = (vi == 0) | (viol / np.where(vi == 0, 1, vi) <= tol)
            if it == max_iter:
                done[:] = True
            if done.any():
                idx = np.flatnonzero(done)
                g = active[idx]
                n_iter[g] = it
                # losses of every running replicate, kept for the retiring ones (no copies of
                # the largest arrays)
                cross = K.inner(D, XtA)[idx]
                quad = K.inner(G2, K.gram(D))[idx]
                loss[g] = np.sqrt(np.maximum(xnorm2[g] - 2 * cross + quad, 0))
                for j, r in zip(idx, g, strict=True):
                    out_At[r] = K.get(At[j])
                    if not in_place:
                        out_D[r] = K.get(D[j])
                keep = np.flatnonzero(~done)
                active = active[keep]
                if len(keep) == 0:
                    break
                if in_place:
                    swap_to_front(slot[: len(done)], keep)
                At, D = K.keep(At, keep), K.keep(D, keep)
                if w is not None:
                    w = K.keep(w, keep)
            bar.update(completed=it, note=f"{len(active)}/{R} replicates running")
    finally:
        bar.stop()
    if in_place:
        _to_replicate_order(out_D, slot)
    return out_At, out_D, n_iter, loss, viol_init


def _to_replicate_order(a: np.ndarray, slot: np.ndarray) -> None:
    """Permute the rows of ``a`` in place so that row r holds replicate r (row p held ``slot[p]``).

    Follows the permutation's cycles: each swap puts one replicate in its final row.
    """
    slot = slot.copy()
    for p in range(len(slot)):
        while slot[p] != p:
            q = int(slot[p])
            swap_rows(a, p, q)
            swap_rows(slot, p, q)
