"""The dense grow step, written out for tests: the K-1 factors plus the leading pair of the positive
residual, by power iteration on the full n × m residual (osnmf grows from K-1 without forming it:
:func:`osnmf.factorize.nmf.grow.grow_lowrank`)."""

import numpy as np


def grow_factors(X, A, D, counts, n_power: int = 12):
    """Add one component to each replicate's factors: the leading part of its positive residual.

    For replicate r with counts ``c``, ``E = max(X - A_r D_r, 0)`` is what the K-1 model leaves
    unexplained; the leading singular pair (u, s, v) of ``diag(sqrt(c)) E`` (power iteration,
    non-negative by Perron–Frobenius) gives the new pattern ``sqrt(s) v`` and coefficients
    ``E v / sqrt(s)`` (for every row, drawn or not).

    Parameters
    ----------
    X : (n, m) data.
    A : (R, n, k) coefficients, D : (R, k, m) patterns of the K-1 = k solutions.
    counts : (R, n) row multiplicities.
    n_power : power iterations.

    Returns
    -------
    A0 : (R, n, k+1), D0 : (R, k+1, m), float32, non-negative: an initialisation at k+1.
    """
    R, n, k = A.shape
    m = X.shape[1]
    A0 = np.empty((R, n, k + 1), dtype=np.float32)
    D0 = np.empty((R, k + 1, m), dtype=np.float32)
    for r in range(R):
        E = np.asarray(X, dtype=np.float32) - A[r].astype(np.float32) @ D[r].astype(np.float32)
        np.maximum(E, 0, out=E)
        w = np.sqrt(counts[r].astype(np.float32))
        v = (w @ E).astype(np.float64)  # positive start vector
        s = 0.0
        for _ in range(n_power):
            nv = np.linalg.norm(v)
            if nv == 0:
                break
            v /= nv
            u = w * (E @ v.astype(np.float32))
            v = ((w * u) @ E).astype(np.float64)
            s = float(np.sqrt(np.linalg.norm(v)))  # sqrt of the top eigenvalue of E'WE
        nv = np.linalg.norm(v)
        if s <= 0 or nv == 0:  # nothing left to explain: a tiny flat component
            eps = float(X.mean()) * 1e-3 + 1e-12
            a_new, d_new = np.full(n, eps), np.full(m, eps)
        else:
            v = v / nv
            a_new = (E @ v.astype(np.float32)) / np.sqrt(s)
            d_new = np.sqrt(s) * v
        A0[r, :, :k] = A[r]
        A0[r, :, k] = a_new
        D0[r, :k] = D[r]
        D0[r, k] = d_new
    return A0, D0
