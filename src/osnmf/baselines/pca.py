"""PCA, the paper's first baseline: components of X, and of its gene-bootstrap replicates on one Gram.

Every function returns or feeds a :class:`~osnmf.baselines.pattern_set.PatternSet`. PCA keeps
its voxel means as ``extra["offset"]`` so that ``coefficients @ patterns + offset`` reconstructs X;
components carry scikit-learn's sign convention (largest-magnitude entry positive). The voxel
embedding used by the clustering baselines (:mod:`osnmf.baselines.clusters`) is here too:
it is PCA with the voxels as samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from osnmf.baselines.gram_pca import CentredGram, weighted_pca
from osnmf.baselines.pattern_set import PatternSet
from osnmf.errors import InputError
from osnmf.factorize.checks import check_k, check_matrix
from osnmf.factorize.sweep.bootstrap import bootstrap_counts
from osnmf.linalg import top_eigh
from osnmf.progress import track

__all__ = ["BLOCK_COLUMNS", "PCABootstrap", "align_signs", "check_pca_matrix", "float64_rows", "largest_entry_signs",
           "pca_bootstrap", "pca_bootstrap_patterns", "pca_fit", "pca_instability", "pca_patterns",
           "voxel_pca_embedding"]

def check_pca_matrix(X: np.ndarray, name: str = "X") -> np.ndarray:
    """A finite numeric matrix with at least 2 rows and columns (negatives allowed: PCA)."""
    return check_matrix(X, name=name, dtype=None, nonnegative=False, min_shape=(2, 2))


BLOCK_COLUMNS = 4096  # columns of X converted to float64 at once (X itself is never converted)


def float64_rows(X: np.ndarray, step: int = 256):
    """(rows, float64 copy of ``X[rows]``) for consecutive blocks of ``step`` rows (``X`` may be
    a transposed view): float64 arithmetic on X without a float64 copy of it."""
    for i in range(0, X.shape[0], step):
        rows = slice(i, i + step)
        yield rows, np.asarray(X[rows], dtype=np.float64)


def pca_fit(
    X: np.ndarray, k: int, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact PCA of the rows of ``X`` (samples) by eigen-decomposition of the smaller Gram matrix.

    The centred, weighted rows ``Z`` are made in blocks (of columns when the rows are fewer, else
    of rows), in float64, from ``X`` as it is (float32 at paper size, or a transposed view): no
    float64 copy of ``X`` and no ``Z`` of its size (the baselines stage held four such copies,
    8 GiB, at 4,345 × 62,529).

    Parameters
    ----------
    X : ``(n, m)`` finite matrix, rows = samples.
    k : number of components.
    weights : optional ``(n,)`` non-negative integer-like row multiplicities (bootstrap counts):
        the result equals PCA of the matrix with row i repeated ``weights[i]`` times.

    Returns
    -------
    components : float64 ``(k, m)``, orthonormal rows, largest-|entry| positive.
    mean : float64 ``(m,)``, the (weighted) row mean that was subtracted.
    explained_variance : float64 ``(k,)``, variance along each component (ddof=1).
    """
    X = np.asarray(X)
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    n, m = X.shape
    if weights is None:
        w = np.ones(n)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n,) or (w < 0).any() or w.sum() <= 1:
            raise InputError("weights must be n non-negative multiplicities summing to more than 1")
    keep = np.flatnonzero(w > 0)
    ws = w[keep]
    total = ws.sum()
    k = check_k(k, min(len(keep), m))
    if len(keep) > m:  # more rows than columns: the m × m covariance, summed over row blocks
        step = max(1, 2**22 // m)  # 32 MiB of float64
        blocks = [slice(i, i + step) for i in range(0, len(keep), step)]
        mean = sum(ws[b] @ np.asarray(X[keep[b]], dtype=np.float64) for b in blocks) / total
        C = np.zeros((m, m))
        for b in blocks:
            Zb = (np.asarray(X[keep[b]], dtype=np.float64) - mean) * np.sqrt(ws[b])[:, None]
            C += Zb.T @ Zb
        vals, vecs = np.linalg.eigh(C)
        order = np.argsort(vals)[::-1][:k]
        vals, comps = np.clip(vals[order], 0, None), vecs[:, order].T
        return comps * largest_entry_signs(comps)[:, None], mean, vals / max(total - 1.0, 1.0)
    cols = [slice(j, j + BLOCK_COLUMNS) for j in range(0, m, BLOCK_COLUMNS)]
    mean = np.concatenate([ws @ np.asarray(X[keep, c], dtype=np.float64) for c in cols]) / total
    sw = np.sqrt(ws)[:, None]

    def z_block(c: slice) -> np.ndarray:  # (kept rows, columns of c) of Z, float64
        return (np.asarray(X[keep, c], dtype=np.float64) - mean[c]) * sw

    G = np.zeros((len(keep), len(keep)))
    for c in cols:
        Zc = z_block(c)
        G += Zc @ Zc.T
    vals, vecs = np.linalg.eigh(G)
    del G
    order = np.argsort(vals)[::-1][:k]
    vals, U = np.clip(vals[order], 0, None), vecs[:, order]
    comps = np.empty((k, m))
    for c in cols:
        comps[:, c] = U.T @ z_block(c)  # not (Z.T @ U).T: OpenBLAS is far slower on that layout
    norms = np.linalg.norm(comps, axis=1, keepdims=True)
    comps = comps / np.where(norms > 0, norms, 1.0)
    return comps * largest_entry_signs(comps)[:, None], mean, vals / max(total - 1.0, 1.0)


# --------------------------------------------------------------------------- PCA pattern sets


def pca_patterns(X: np.ndarray, k: int, name: str = "PCA") -> PatternSet:
    """Principal components of the genes as spatial patterns.

    PCA with genes as samples and voxels as features (the paper's baseline): the K components
    ``(K, m)`` are the patterns, the genes' scores ``(X - mean) @ components.T`` the coefficients,
    and the voxel means go to ``extra["offset"]`` so that ``reconstruct()`` equals scikit-learn's
    ``inverse_transform``. (The reference code reconstructed ``scores @ components`` without the
    mean; pass ``offset=None`` to :func:`osnmf.evaluate.metrics.reconstruction_accuracy` for that.)

    Parameters
    ----------
    X : ``(n_genes, m)`` finite matrix (impute missing values first).
    k : number of components.
    """
    X = check_pca_matrix(X)
    comps, mean, var = pca_fit(X, k)
    scores = np.empty((X.shape[0], comps.shape[0]))
    sq = np.zeros(X.shape[1])
    for rows, block in float64_rows(X):
        centred = block - mean
        scores[rows] = centred @ comps.T
        sq += np.einsum("ij,ij->j", centred, centred)
    total_var = float(sq.sum() / max(X.shape[0] - 1, 1))
    return PatternSet(
        name=name,
        patterns=comps,
        coefficients=scores,
        kind="pca",
        extra={"offset": mean, "explained_variance": var,
               "explained_variance_ratio": var / total_var if total_var > 0 else var * np.nan},
    )


def align_signs(replicate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Flip each row of ``replicate`` so that its best-matching reference row correlates positively.

    A principal component's sign is arbitrary; without this a flipped replicate component would
    count as maximally unstable. Rows are matched by largest absolute uncentred correlation;
    only signs change, never the order.
    """
    a = replicate / np.maximum(np.linalg.norm(replicate, axis=1, keepdims=True), 1e-300)
    b = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-300)
    C = a @ b.T
    best = np.argmax(np.abs(C), axis=1)
    signs = np.sign(C[np.arange(C.shape[0]), best])
    signs[signs == 0] = 1.0
    return replicate * signs[:, None]


def largest_entry_signs(patterns: np.ndarray) -> np.ndarray:
    """Sign ``(N,)`` of each row's largest-magnitude entry (+1 for a zero row)."""
    idx = np.argmax(np.abs(patterns), axis=1)
    signs = np.sign(patterns[np.arange(patterns.shape[0]), idx])
    signs[signs == 0] = 1.0
    return signs


@dataclass
class PCABootstrap:
    """PCA of ``X`` and of its gene-bootstrap replicates, kept as coefficients over the genes.

    Component j of replicate r is the pattern ``coef[r, :, j] @ X'`` (``X'`` = X centred by its
    voxel means, unit norm); its sign already follows :func:`pca_bootstrap_patterns` (the full-data
    component it correlates with most, :func:`align_signs`). Correlations between components come
    from the Gram matrix (:meth:`correlations`, no pass over the voxels); the patterns themselves
    from one product with ``X`` (:meth:`patterns`).

    Attributes
    ----------
    gram : the :class:`osnmf.baselines.gram_pca.CentredGram` of ``X``.
    coef : float64 ``(R, n, K)``; values : float64 ``(R, K)`` eigenvalues (sums of squares).
    reference : float64 ``(n, K)`` the full-data components (largest-|entry| positive);
    reference_values : float64 ``(K,)``.
    """

    gram: CentredGram
    coef: np.ndarray
    values: np.ndarray
    reference: np.ndarray
    reference_values: np.ndarray

    @property
    def n_replicates(self) -> int:
        return int(self.coef.shape[0])

    def _flat(self, replicates: int | None, k: int | None) -> np.ndarray:
        R = self.n_replicates if replicates is None else int(replicates)
        k = self.coef.shape[2] if k is None else int(k)
        return self.coef[:R, :, :k].transpose(1, 0, 2).reshape(self.coef.shape[1], R * k)

    def correlations(self, replicates: int | None = None, centered: bool = False) -> np.ndarray:
        """``(R, R, K, K)``: ``out[p, q]`` = cross-correlation of replicates p and q (as
        :func:`osnmf.factorize.choose_k.stability.pairwise_correlations`) of the first ``replicates``."""
        R = self.n_replicates if replicates is None else int(replicates)
        K = self.coef.shape[2]
        G = self.gram.inner(self._flat(R, None), centered=centered)
        sq = np.sqrt(np.clip(np.diag(G), 0, None))
        inv = np.divide(1.0, sq, out=np.zeros_like(sq), where=sq > 0)
        G *= inv[:, None]
        G *= inv[None, :]
        np.clip(G, -1.0, 1.0, out=G)
        return G.reshape(R, K, R, K).transpose(0, 2, 1, 3)

    def patterns(self, replicates: int | None = None, k: int | None = None) -> np.ndarray:
        """float32 ``(R, k, m)``: the first ``k`` components of the first ``replicates``."""
        R = self.n_replicates if replicates is None else int(replicates)
        k = self.coef.shape[2] if k is None else int(k)
        out = np.empty((R, k, self.gram.shape[1]), dtype=np.float32)
        self.gram.project(self._flat(R, k), out=out.reshape(R * k, -1))
        return out

    def full_pca(self, k: int, name: str = "PCA") -> PatternSet:
        """The full-data PCA at ``k`` (the first k reference components), as :func:`pca_patterns`."""
        return _gram_pattern_set(self.gram, self.reference[:, :k], self.reference_values[:k], name)


def _gram_pattern_set(gram: CentredGram, coef: np.ndarray, values: np.ndarray, name: str) -> PatternSet:
    """PatternSet of full-data components ``coef`` ``(n, k)`` (signs already fixed)."""
    n = gram.shape[0]
    patterns = gram.project(coef)
    scores = gram.gram @ coef  # (X - mean) @ patterns.T = X' X'ᵀ coef
    var = values / max(n - 1, 1)
    total_var = float(np.trace(gram.gram) / max(n - 1, 1))
    return PatternSet(
        name=name, patterns=patterns, coefficients=scores, kind="pca",
        extra={"offset": gram.mean.copy(), "explained_variance": var,
               "explained_variance_ratio": var / total_var if total_var > 0 else var * np.nan},
    )


def pca_bootstrap(
    X: np.ndarray,
    k: int,
    n_replicates: int = 20,
    seed: int = 0,
    counts: np.ndarray | None = None,
    gram: CentredGram | None = None,
    progress: bool = False,
) -> PCABootstrap:
    """PCA of ``X`` and of its gene-bootstrap replicates from one Gram matrix (see
    :mod:`osnmf.baselines.gram_pca`): the same components and signs as
    :func:`pca_bootstrap_patterns`, without a pass over ``X`` per replicate.

    Parameters
    ----------
    X : ``(n_genes, m)`` finite matrix (the Gram is ``n_genes × n_genes``: meant for fewer genes
        than voxels).
    k : components per replicate (K_max of a curve: components are nested).
    n_replicates, seed, counts : the bootstrap, as in :func:`pca_bootstrap_patterns`.
    gram : the Gram of ``X`` if already computed (:class:`CentredGram`).
    """
    X = check_pca_matrix(X)
    n, m = X.shape
    k = check_k(k, min(n - 1, m))
    if counts is None:
        counts = bootstrap_counts(n, n_replicates, seed)
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[1] != n or (counts < 0).any() or (counts.sum(axis=1) <= 1).any():
        raise InputError(f"counts must be (R, {n}) non-negative multiplicities summing to more than 1")
    gram = CentredGram(X, progress=progress) if gram is None else gram
    # the full data (all weights 1) iterated together with the replicates
    values, coef = weighted_pca(gram, np.vstack([np.ones((1, n)), counts]), k, progress=progress)
    ref_values, ref = values[0], coef[0] * largest_entry_signs(gram.project(coef[0]))[None, :]
    values, coef = values[1:], coef[1:]
    R = counts.shape[0]
    flat = coef.transpose(1, 0, 2).reshape(n, R * k)
    C = flat.T @ (gram.gram @ ref)  # replicate components × reference components
    ref_norms = np.sqrt(np.clip(np.einsum("ij,ij->j", ref, gram.gram @ ref), 0, None))
    best = np.argmax(np.abs(C) / np.where(ref_norms > 0, ref_norms, 1.0)[None, :], axis=1)
    signs = np.sign(C[np.arange(R * k), best])
    if (signs == 0).any():  # no correlation with the reference: the largest entry decides
        zero = np.flatnonzero(signs == 0)
        signs[zero] = largest_entry_signs(gram.project(flat[:, zero]))
    coef *= signs.reshape(R, 1, k)
    return PCABootstrap(gram=gram, coef=coef, values=values, reference=ref, reference_values=ref_values)


def pca_bootstrap_patterns(
    X: np.ndarray,
    k: int,
    n_replicates: int = 20,
    seed: int = 0,
    counts: np.ndarray | None = None,
    align: bool = True,
    progress: bool = False,
) -> np.ndarray:
    """PCA patterns fitted on gene-bootstrap replicates of ``X``.

    Parameters
    ----------
    X : ``(n_genes, m)`` finite matrix.
    k : components per replicate.
    n_replicates : R (the paper: 100 for instability, 20 for the Moran's I distribution).
    seed : bootstrap seed (see :func:`bootstrap_counts`); ignored when ``counts`` is given.
    counts : optional ``(R, n_genes)`` row multiplicities to use instead.
    align : flip component signs towards the full-data PCA (:func:`align_signs`).
    progress : show a progress bar.

    Returns
    -------
    float32 ``(R, k, m)``.
    """
    X = check_pca_matrix(X)  # kept in its precision: blocks of columns are converted
    if counts is None:
        counts = bootstrap_counts(X.shape[0], n_replicates, seed)
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[1] != X.shape[0]:
        raise InputError(f"counts must be (R, {X.shape[0]}), got {counts.shape}")
    if align and X.shape[0] < X.shape[1]:  # genes × voxels: all replicates from one Gram
        return pca_bootstrap(X, k, counts=counts, progress=progress).patterns()
    reference = pca_fit(X, k)[0] if align else None
    out = np.empty((counts.shape[0], int(k), X.shape[1]), dtype=np.float32)
    for r in track(range(counts.shape[0]), "PCA bootstrap", enabled=progress):
        comps = pca_fit(X, k, weights=counts[r])[0]
        out[r] = align_signs(comps, reference) if align else comps
    return out


def pca_instability(
    X: np.ndarray,
    k: int,
    n_replicates: int = 20,
    seed: int = 0,
    centered: bool = False,
    align: bool = True,
    progress: bool = False,
) -> dict[str, float]:
    """Instability of PCA patterns under the gene bootstrap staNMF uses.

    Fits PCA on ``n_replicates`` bootstrap replicates (:func:`pca_bootstrap_patterns`) and scores
    them with :func:`osnmf.factorize.choose_k.stability.instability` (the same dissimilarities as staNMF).

    Returns
    -------
    dict: ``hungarian``, ``hungarian_sd``, ``amari``, ``amari_sd`` (and the other keys of
    ``instability``).
    """
    from osnmf.factorize.choose_k.stability import instability

    reps = pca_bootstrap_patterns(X, k, n_replicates, seed, align=align, progress=progress)
    return instability(reps, centered=centered)


def voxel_pca_embedding(X: np.ndarray, n_components: int, gram: CentredGram | None = None) -> np.ndarray:
    """Voxels embedded by PCA with voxels as samples and genes as features: ``(m, n_components)``.

    ``gram``: the :class:`CentredGram` of ``X`` (genes × voxels, fewer genes than voxels): the
    genes' covariance over the voxels then follows from it (no pass over X for it).
    """
    X = check_pca_matrix(X)
    if gram is None:
        comps, mean, _ = pca_fit(X.T, n_components)  # a view: pca_fit converts blocks of voxels
        emb = np.empty((X.shape[1], comps.shape[0]))
        for voxels, block in float64_rows(X.T, BLOCK_COLUMNS):
            emb[voxels] = (block - mean) @ comps.T
        return emb
    n, m = X.shape
    k = check_k(n_components, min(n, m))
    s, t, mu = gram.row_means, gram.row_dot_mean, gram.mean
    nu = mu - mu.mean()
    # X_c = X − (gene means) 1ᵀ = X' − s 1ᵀ + 1 νᵀ, so X_c X_cᵀ = G − m s sᵀ + t 1ᵀ + 1 tᵀ + |ν|² 11ᵀ
    C = gram.gram - m * np.outer(s, s) + t[:, None] + t[None, :] + float(nu @ nu)
    _, E = top_eigh((C + C.T) / 2, k)
    E = E * largest_entry_signs(E.T)[None, :]
    # emb = X_cᵀ E = X'ᵀ E + μ (1ᵀE) − 1 (rᵀ E), r = s + mean(μ) the gene means
    emb = gram.project(E).T
    emb += np.outer(mu, E.sum(axis=0))
    emb -= (s + mu.mean()) @ E
    return emb
