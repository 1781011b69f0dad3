"""Clustering baselines: voxels clustered in PC space (k-means, Ward) or by their staNMF loadings.

The paper's Fig. 3C comparison: each voxel is embedded in a low-dimensional space (its
principal-component scores computed with voxels as samples and genes as features, as stLearn /
AGEA-style pipelines do — :func:`osnmf.baselines.pca.voxel_pca_embedding` —; or its
staNMF pattern loadings), the voxels are split into k clusters and each cluster becomes a binary
spatial pattern (1 inside the cluster) of a :class:`~osnmf.baselines.pattern_set.PatternSet`. A
gene's coefficient on a cluster pattern is its mean expression in the cluster, the least-squares
fit for disjoint indicator patterns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from osnmf.baselines.pattern_set import PatternSet
from osnmf.baselines.pca import check_pca_matrix, float64_rows, voxel_pca_embedding
from osnmf.errors import InputError
from osnmf.factorize.checks import check_k

__all__ = ["cluster_patterns", "nmf_hierarchical_patterns", "pca_agglomerative_patterns", "pca_kmeans_patterns",
           "ward_labels"]


def cluster_patterns(
    labels: np.ndarray, k: int, X: np.ndarray | None = None, name: str = "clusters",
    extra: dict[str, Any] | None = None,
) -> PatternSet:
    """Binary patterns of k voxel clusters; coefficients = each gene's mean in each cluster.

    Parameters
    ----------
    labels : int ``(m,)`` in 0…k−1, the cluster of each voxel.
    X : optional ``(n_genes, m)`` matrix for the coefficients (None → no coefficients).
    """
    labels = np.asarray(labels)
    patterns = (labels[None, :] == np.arange(k)[:, None]).astype(np.float64)
    coefficients = None
    if X is not None:
        X = check_pca_matrix(X)
        if X.shape[1] != labels.size:
            raise InputError(f"X has {X.shape[1]} voxels but labels {labels.size}")
        sizes = patterns.sum(axis=1)
        coefficients = np.vstack([block @ patterns.T for _, block in float64_rows(X)]) / np.maximum(sizes, 1)
    info = {"labels": labels, "cluster_sizes": patterns.sum(axis=1).astype(np.int64)}
    info.update(extra or {})
    return PatternSet(name=name, patterns=patterns, coefficients=coefficients, kind="clusters",
                      extra=info)


def pca_kmeans_patterns(
    X: np.ndarray, k: int, n_components: int | None = None, seed: int = 0, n_init: int = 10,
    name: str = "PCA + k-means", embedding: np.ndarray | None = None,
) -> PatternSet:
    """Voxels clustered by k-means in PC space (stLearn-like); each cluster a binary pattern.

    Parameters
    ----------
    X : ``(n_genes, m)`` finite matrix.
    k : number of clusters (patterns).
    n_components : PCs of the voxel embedding (default ``k``).
    seed : k-means ``random_state``.
    embedding : the voxels' ``(m, n_components)`` :func:`voxel_pca_embedding`, if already computed.
    """
    from sklearn.cluster import KMeans

    X = check_pca_matrix(X)
    k = check_k(k, X.shape[1])
    emb = voxel_pca_embedding(X, n_components or k) if embedding is None else embedding
    labels = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(emb)
    return cluster_patterns(labels, k, X, name=name, extra={"embedding": "pca"})


def ward_labels(
    emb: np.ndarray,
    k: int,
    connectivity: sparse.spmatrix | None = None,
    max_voxels: int = 8000,
    seed: int = 0,
) -> np.ndarray:
    """Ward agglomerative clustering of the rows of ``emb`` into k clusters.

    Unstructured Ward needs memory quadratic in the number of points (62,529 voxels → 16 GB),
    so above ``max_voxels`` points it is fitted on a random subsample of ``max_voxels`` points
    (``seed``) and every point is then assigned to the nearest cluster centroid. With a
    ``connectivity`` graph (e.g. :func:`osnmf.spatial.moran.spatial_weights`, which makes the
    clusters spatially contiguous) all points are clustered directly.
    """
    from sklearn.cluster import AgglomerativeClustering

    emb = np.asarray(emb, dtype=np.float64)
    n = emb.shape[0]
    k = check_k(k, n)
    if connectivity is not None:
        if connectivity.shape != (n, n):
            raise InputError(f"connectivity is {connectivity.shape}, need ({n}, {n})")
        model = AgglomerativeClustering(n_clusters=k, linkage="ward", connectivity=connectivity)
        return model.fit_predict(emb)
    if n <= max_voxels:
        return AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(emb)
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.choice(n, size=max_voxels, replace=False))
    sub_labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(emb[sub])
    centroids = np.stack([emb[sub][sub_labels == c].mean(axis=0) for c in range(k)])
    d2 = (emb**2).sum(1)[:, None] - 2 * emb @ centroids.T + (centroids**2).sum(1)[None, :]
    return np.argmin(d2, axis=1)


def pca_agglomerative_patterns(
    X: np.ndarray, k: int, n_components: int | None = None,
    connectivity: sparse.spmatrix | None = None, max_voxels: int = 8000, seed: int = 0,
    name: str = "PCA + agglomerative", embedding: np.ndarray | None = None,
) -> PatternSet:
    """Voxels clustered by Ward agglomerative clustering in PC space (AGEA-like).

    See :func:`ward_labels` for ``connectivity``, ``max_voxels`` and ``seed``; ``embedding`` as
    in :func:`pca_kmeans_patterns`.
    """
    X = check_pca_matrix(X)
    k = check_k(k, X.shape[1])
    emb = voxel_pca_embedding(X, n_components or k) if embedding is None else embedding
    labels = ward_labels(emb, k, connectivity, max_voxels, seed)
    return cluster_patterns(labels, k, X, name=name, extra={"embedding": "pca"})


def nmf_hierarchical_patterns(
    D: np.ndarray, k: int, X: np.ndarray | None = None, scale: bool = True,
    connectivity: sparse.spmatrix | None = None, max_voxels: int = 8000, seed: int = 0,
    name: str = "staNMF + hierarchical",
) -> PatternSet:
    """Voxels clustered by Ward clustering of their staNMF pattern loadings.

    Parameters
    ----------
    D : ``(K, m)`` staNMF patterns; voxel j is embedded as ``D[:, j]``.
    k : number of clusters (patterns).
    X : optional ``(n_genes, m)`` data for the coefficients (cluster means).
    scale : divide each pattern by its maximum first, so every pattern weighs the same.
    connectivity, max_voxels, seed : see :func:`ward_labels`.
    """
    D = check_pca_matrix(D, "D")
    emb = np.asarray(D, dtype=np.float64).copy()
    if scale:
        mx = np.abs(emb).max(axis=1, keepdims=True)
        emb = emb / np.where(mx > 0, mx, 1.0)
    labels = ward_labels(emb.T, k, connectivity, max_voxels, seed)
    return cluster_patterns(labels, k, X, name=name, extra={"embedding": "nmf"})
