"""Fused coordinate-descent sweep (numba): one pass over the data each coordinate touches.

The numpy sweep (``_cd_sweep``) makes about ten elementwise passes over an R × L array per
coordinate (a GEMV, a subtraction, the projected gradient, a mask, the step, the clip). Here
every replicate's factor is cut into column chunks small enough for the L2 cache; each chunk is
loaded once, all k coordinates are updated on it in order (each column of ``F`` only depends on
itself and the fixed ``G``, ``XF``), and it is written back once. Chunks of all replicates run in
parallel threads (``prange``).

Arithmetic per element is scikit-learn's ``_update_cdnmf_fast``: ``grad = −XF[t] + Σ_s G[t, s]
F[s]`` (summed in the order s = 0 … k−1), projected gradient ``min(grad, 0)`` where ``F[t] = 0``,
step ``F[t] ← max(F[t] − grad / G[t, t], 0)`` (no step where ``G[t, t] = 0``).

numba is a dependency of osnmf (pyproject.toml): this kernel is always the sweep of the numpy
backend; the numpy sweep (``numpy_cd.cd_sweep``) is kept as the readable reference it is tested
against.
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit, prange

__all__ = ["cd_sweep_fused"]

# columns per task: k × 1,024 values of F stay in L2 (30 × 1,024 × 4 B = 120 KiB). Measured
# (benchmarks/bench_kernels.py --chunks, 2 cores): 1,024 beats 128 by 1.2-1.4× (fewer
# per-coordinate loop starts) for blocks of 16-50 replicates at K = 10-30 (equal for a single
# replicate) and is within 5 % of 2,048, which is slower at K = 10.
CHUNK = 1024


# FMA contraction and a re-associated (vectorised) violation sum: results differ from the
# sequential order by a few units in the last place, well inside the tests' tolerances.
FASTMATH = {"contract", "reassoc", "nsz"}


def _sweep_py(F, G, XF, w, has_w, parts):  # pragma: no cover - compiled below
    R, k, L = F.shape
    nch = (L + CHUNK - 1) // CHUNK
    for task in prange(R * nch):
        r = task // nch
        j = task - r * nch
        c0 = j * CHUNK
        C = min(L, c0 + CHUNK) - c0
        Fb = np.empty((k, C), dtype=F.dtype)  # the chunk of F, all k coordinates
        grad = np.empty(C, dtype=F.dtype)
        pg = np.empty(C, dtype=F.dtype)
        Fr = F[r]
        XFr = XF[r]
        Gr = G[r]
        for s in range(k):
            Fb[s, :] = Fr[s, c0 : c0 + C]
        v = 0.0
        for t in range(k):
            xf = XFr[t, c0 : c0 + C]
            for c in range(C):
                grad[c] = -xf[c]
            for s in range(k):
                g = Gr[t, s]
                fs = Fb[s]
                for c in range(C):
                    grad[c] += g * fs[c]
            h = Gr[t, t]
            ft = Fb[t]
            for c in range(C):
                gr = grad[c]
                f = ft[c]
                pg[c] = abs(gr) if f != 0 else abs(min(gr, 0))
                if h != 0:
                    ft[c] = max(f - gr / h, 0)
            acc = 0.0
            if has_w:
                wr = w[r, c0 : c0 + C]
                for c in range(C):
                    acc += pg[c] * wr[c]
            else:
                for c in range(C):
                    acc += pg[c]
            v += acc
        for s in range(k):
            Fr[s, c0 : c0 + C] = Fb[s, :]
        parts[r, j] = v


_sweep_serial = njit(cache=True, nogil=True, fastmath=FASTMATH)(_sweep_py)
_sweep_parallel = njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)(_sweep_py)

PARALLEL_WORK = 2_000_000  # R·L·k² above which the chunks are spread over threads


def cd_sweep_fused(F: np.ndarray, G: np.ndarray, XF: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """One cyclic CD sweep over the k rows of ``F`` for every replicate, in place.

    Same contract as the numpy ``_cd_sweep``.

    Parameters
    ----------
    F : ndarray, shape (R, k, L), float32 or float64, C-contiguous
        Factor being updated (``A^T`` or ``D``), modified in place.
    G : ndarray, shape (R, k, k)
        Gram matrix of the other factor.
    XF : ndarray, shape (R, k, L)
        Cross products with the data.
    w : ndarray, shape (R, L), optional
        Weights of the violation sum (the bootstrap counts for the A update).

    Returns
    -------
    ndarray of float64, shape (R,)
        Sum of (weighted) absolute projected gradients before each coordinate step.
    """
    if not F.flags.c_contiguous:
        raise ValueError("F must be C-contiguous (it is updated in place)")
    R, k, L = F.shape
    dt = F.dtype
    G = np.ascontiguousarray(G, dtype=dt)
    XF = np.ascontiguousarray(XF, dtype=dt)
    has_w = w is not None
    wa = np.ascontiguousarray(w, dtype=dt) if has_w else np.zeros((1, 1), dtype=dt)
    parts = np.zeros((R, (L + CHUNK - 1) // CHUNK), dtype=np.float64)
    # threads only from the main thread: blocks run by a thread pool are parallel already, and
    # numba's fallback "workqueue" threading layer aborts on concurrent parallel calls
    parallel = R * L * k * k >= PARALLEL_WORK and threading.current_thread() is threading.main_thread()
    kernel = _sweep_parallel if parallel else _sweep_serial
    kernel(F, G, XF, wa, has_w, parts)
    return parts.sum(axis=1)
