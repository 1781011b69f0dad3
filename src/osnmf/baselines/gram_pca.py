"""PCA of a matrix and of its row-bootstrap replicates from one centred Gram matrix.

Rows of ``X`` ``(n, m)`` are the samples (genes), columns the features (voxels), ``n < m``. One
pass over ``X`` in blocks of columns (converted to float64 block by block, never whole) gives
``G = X' X'ᵀ`` ``(n, n)`` of ``X' = X - 1 μᵀ``, ``μ`` the column means. Everything else follows
from ``G`` exactly (in exact arithmetic):

* A bootstrap replicate repeats row i ``w_i`` times (``W = Σ w_i``). Its centred rows are
  ``P X'`` with ``P = I - 1 wᵀ / W`` (centring by the weighted mean; the shift by ``μ`` cancels),
  and ``Z = D^½ P X'`` (``D = diag(w)``) has the same ``Zᵀ Z`` as the explicitly resampled, centred
  matrix, hence the same principal components. Its Gram is ``M = D^½ P G Pᵀ D^½``; with
  ``M u = λ u``, the component is ``Zᵀ u / √λ = X'ᵀ b`` with ``b = Pᵀ D^½ u / √λ`` ``(n,)``.
* Components are therefore kept as coefficient vectors ``b`` over the rows: their inner products
  are ``bᵢᵀ G bⱼ`` (no pass over the m columns), and the patterns themselves cost one product
  ``Bᵀ X'`` for the rows that are needed (:meth:`CentredGram.project`).
* The top eigenpairs of all replicates' ``M`` come from one batched Lanczos iteration
  (:func:`osnmf.linalg.top_eigenpairs`) whose products ``G [y₁ … y_R]`` are a single matrix–matrix product.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from osnmf.errors import InputError
from osnmf.linalg import DENSE_MAX, LANCZOS_THREADS, dense_top_eigh, top_eigenpairs
from osnmf.progress import track

__all__ = ["CentredGram", "weighted_pca"]

BLOCK_COLUMNS = 4096  # columns of X converted to float64 at once
BATCH = 128  # replicates iterated together (one G @ Y product of this many columns per step)


class CentredGram:
    """``G = X' X'ᵀ`` of ``X`` centred by its column means, float64, from one pass over ``X``.

    Attributes
    ----------
    X : the ``(n, m)`` matrix (kept by reference, any float dtype; never copied whole).
    mean : float64 ``(m,)``, the column means ``μ``.
    gram : float64 ``(n, n)``, ``X' X'ᵀ``.
    row_means : float64 ``(n,)``, ``X' 1 / m`` (for patterns centred over the columns).
    row_dot_mean : float64 ``(n,)``, ``X' ν`` with ``ν = μ − mean(μ)`` (for PCA of the columns).
    """

    def __init__(self, X: np.ndarray, progress: bool = False):
        X = np.asarray(X)
        if X.ndim != 2:
            raise InputError(f"X must be a matrix, got shape {X.shape}")
        n, m = X.shape
        self.X = X
        self.mean = np.zeros(m)
        for c in self._blocks():
            self.mean[c] = X[:, c].mean(axis=0, dtype=np.float64)
        nu = self.mean - self.mean.mean()
        self.gram = np.zeros((n, n))
        s, t = np.zeros(n), np.zeros(n)
        for c in track(self._blocks(), "Gram of X", enabled=progress):
            Z = self.block(c)
            self.gram += Z @ Z.T  # numpy runs this as a symmetric rank-k update (syrk)
            s += Z.sum(axis=1)
            t += Z @ nu[c]
        self.row_means = s / m
        self.row_dot_mean = t

    @property
    def shape(self) -> tuple[int, int]:
        return self.X.shape

    def _blocks(self) -> list[slice]:
        m = self.X.shape[1]
        return [slice(j, min(m, j + BLOCK_COLUMNS)) for j in range(0, m, BLOCK_COLUMNS)]

    def block(self, c: slice) -> np.ndarray:
        """Columns ``c`` of ``X'`` in float64 ``(n, len(c))``."""
        Z = np.array(self.X[:, c], dtype=np.float64)  # a copy, also of a float64 X
        Z -= self.mean[c]
        return Z

    def project(self, coef: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``coefᵀ X'`` ``(N, m)``: the patterns of coefficient vectors ``coef`` ``(n, N)``.

        ``out`` (e.g. float32) receives the result block by block; default float64.
        """
        coef = np.asarray(coef, dtype=np.float64)
        if out is None:
            out = np.empty((coef.shape[1], self.X.shape[1]))
        ct = np.ascontiguousarray(coef.T)
        for c in self._blocks():
            out[:, c] = ct @ self.block(c)
        return out

    def inner(self, coef: np.ndarray, centered: bool = False) -> np.ndarray:
        """Inner products ``(N, N)`` of the patterns ``coefᵀ X'`` (``coef`` ``(n, N)``) over the m
        columns; ``centered``: of the patterns each centred over the columns first."""
        coef = np.asarray(coef, dtype=np.float64)
        out = coef.T @ (self.gram @ coef)
        if centered:
            mu = coef.T @ self.row_means
            out -= self.X.shape[1] * np.outer(mu, mu)
        return (out + out.T) / 2


def _weighted_gram(G: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``D^½ P G Pᵀ D^½`` ``(n, n)`` explicitly (for the dense path)."""
    W = w.sum()
    g = G @ w / W
    M = G - g[:, None] - g[None, :] + (w @ g) / W
    d = np.sqrt(w)
    return M * d[:, None] * d[None, :]


def weighted_pca(
    gram: CentredGram, weights: np.ndarray, k: int, seed: int = 0, batch: int = BATCH,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k PCA of R row-weighted versions of ``X`` (bootstrap replicates) from its Gram.

    Parameters
    ----------
    gram : :class:`CentredGram` of ``X`` ``(n, m)``.
    weights : ``(R, n)`` non-negative integer-like row multiplicities, each summing to more than 1.
    k : components per replicate.
    seed : seed of the Lanczos start vectors (the result does not depend on it beyond rounding).
    batch : replicates iterated together.

    Returns
    -------
    values : float64 ``(R, k)``, the eigenvalues λ (sum of squares along each component; the
        explained variance is ``λ / (W − 1)``), descending.
    coef : float64 ``(R, n, k)``, coefficient vectors ``b``: component j of replicate r is
        ``coef[r, :, j] @ X'``, of unit norm (zero where λ = 0).
    """
    G = gram.gram
    weights = np.asarray(weights, dtype=np.float64)
    R, n = weights.shape
    values, coef = np.zeros((R, k)), np.zeros((R, n, k))
    rng = np.random.default_rng(seed)
    chunks = [range(a, min(R, a + batch)) for a in range(0, R, batch)]
    for chunk in track(chunks, "PCA bootstrap", enabled=progress):
        w = weights[list(chunk)]
        support = int((w > 0).sum(axis=1).min())
        if support <= DENSE_MAX or k >= support // 3:
            pairs = [dense_top_eigh(_weighted_gram(G, wr), k) for wr in w]
            vals, vecs = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        else:
            with threadpool_limits(LANCZOS_THREADS):
                vals, vecs = top_eigenpairs(_replicate_operator(G, w), rng.standard_normal(w.shape) * (w > 0), k)
        values[list(chunk)], coef[list(chunk)] = vals, _coefficients(vecs, vals, w)
    return values, coef


def _replicate_operator(G: np.ndarray, weights: np.ndarray):
    """``apply(idx, Y)`` of the operators ``M_r = D^½ P G Pᵀ D^½`` (one product with ``G``)."""
    d = np.sqrt(weights)
    total = weights.sum(axis=1)

    def apply(idx: np.ndarray, Y: np.ndarray) -> np.ndarray:
        w, W = weights[idx], total[idx, None]
        y = d[idx] * Y
        y -= w * (y.sum(axis=1, keepdims=True) / W)  # Pᵀ y
        z = y @ G  # G symmetric: (G yᵀ)ᵀ
        z -= (w * z).sum(axis=1, keepdims=True) / W  # P z
        z *= d[idx]
        return z

    return apply


def _coefficients(vecs: np.ndarray, vals: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``b = Pᵀ D^½ u / √λ`` ``(R, n, k)`` from eigenvectors ``u`` ``(R, n, k)``."""
    y = np.sqrt(weights)[:, :, None] * vecs
    y -= weights[:, :, None] * (y.sum(axis=1, keepdims=True) / weights.sum(axis=1)[:, None, None])
    scale = np.divide(1.0, np.sqrt(np.clip(vals, 0, None)), out=np.zeros_like(vals), where=vals > 0)
    return y * scale[:, None, :]
