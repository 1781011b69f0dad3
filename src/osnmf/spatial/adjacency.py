"""Spatial neighbourhood query: which atlas regions touch, and every contiguous pair / triple.

Two regions ``i`` and ``j`` are *neighbours* when the face-connected (6-neighbourhood) binary
dilation of ``i``'s mask meets ``j``'s mask. Regions are ontology nodes that own voxels
(:attr:`osnmf.Atlas.region_ids`); a node's mask is the union of its own and its descendants'
voxels, so an ancestor and its descendant always meet ("nested" pairs).

Instead of dilating 843 masks, the adjacency is computed once at the level of the annotation
labels (pairs of differing labels across a voxel face) and lifted to every ancestor: two
disjoint regions touch exactly when one of their labels touches one of the other's. In a tree
two nodes are either nested or disjoint, so nested pairs are added from the ontology.

A set of regions is *contiguous* when its induced adjacency graph is connected. For three
regions this is the paper's rule "a neighbouring pair plus a third region whose dilation meets
either member".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from osnmf.atlas import Atlas
from osnmf.constraints import refuse
from osnmf.errors import ConfigError

__all__ = [
    "AdjacencyCounts",
    "adjacency_counts",
    "ancestor_matrix",
    "contiguous_index_sets",
    "contiguous_sets",
    "label_adjacency",
    "region_adjacency",
]


def ancestor_matrix(atlas: Atlas) -> np.ndarray:
    """Dense boolean ``(R, R)`` over :attr:`Atlas.region_ids`: ``[i, j]`` is True when region
    ``j`` is a proper ancestor of region ``i``.
    """
    ids = atlas.region_ids
    row_of = {int(s): r for r, s in enumerate(ids)}
    anc = np.zeros((ids.size, ids.size), dtype=bool)
    for i, sid in enumerate(ids):
        cols = [row_of[a] for a in atlas.ancestors(int(sid)) if a in row_of]
        anc[i, cols] = True
    return anc


def label_adjacency(annotation: np.ndarray) -> np.ndarray:
    """Unordered pairs of differing non-zero labels that share a voxel face.

    Parameters
    ----------
    annotation : integer ``(AP, DV, ML)`` label volume, 0 = background.

    Returns
    -------
    int64 ``(n_pairs, 2)`` array of label pairs ``(a, b)`` with ``a < b``, unique.
    """
    ann = np.asarray(annotation).astype(np.int64)
    pairs = []
    for axis in range(ann.ndim):
        lo = [slice(None)] * ann.ndim
        hi = [slice(None)] * ann.ndim
        lo[axis] = slice(None, -1)
        hi[axis] = slice(1, None)
        a, b = ann[tuple(lo)], ann[tuple(hi)]
        touch = (a > 0) & (b > 0) & (a != b)
        pa, pb = a[touch], b[touch]
        pairs.append(np.stack([np.minimum(pa, pb), np.maximum(pa, pb)], axis=1))
    allp = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    return np.unique(allp, axis=0) if allp.size else allp.reshape(0, 2)


def _label_region_matrix(atlas: Atlas) -> tuple[np.ndarray, sparse.csr_matrix]:
    """Annotation labels and a sparse ``(n_labels, R)`` matrix: label l lies inside region r."""
    ids = atlas.region_ids
    row_of = {int(s): r for r, s in enumerate(ids)}
    labels = np.unique(atlas.annotation[atlas.brain_mask]).astype(np.int64)
    rows, cols = [], []
    for li, lab in enumerate(labels):
        for node in [int(lab), *atlas.ancestors(int(lab))]:
            if node in row_of:
                rows.append(li)
                cols.append(row_of[node])
    g = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(labels.size, ids.size)
    )
    return labels, g


def region_adjacency(atlas: Atlas, include_nested: bool = True) -> sparse.csr_matrix:
    """Symmetric boolean adjacency of the voxel-owning regions.

    Parameters
    ----------
    atlas : the atlas; rows and columns follow ``atlas.region_ids``.
    include_nested : keep ancestor/descendant pairs (they always meet). With False, only pairs
        of disjoint regions whose masks share a voxel face remain.

    Returns
    -------
    scipy CSR bool ``(R, R)``, zero diagonal.
    """
    labels, g = _label_region_matrix(atlas)
    lp = label_adjacency(atlas.annotation)
    idx = np.searchsorted(labels, lp)
    n_lab = labels.size
    a_lab = sparse.csr_matrix(
        (np.ones(len(idx), dtype=np.int32), (idx[:, 0], idx[:, 1])), shape=(n_lab, n_lab)
    )
    a_lab = a_lab + a_lab.T
    touch = (g.T @ a_lab @ g) > 0
    anc = ancestor_matrix(atlas)
    nested = anc | anc.T
    dense = touch.toarray()
    if include_nested:
        dense |= nested
    else:
        dense &= ~nested
    np.fill_diagonal(dense, False)
    return sparse.csr_matrix(dense)


def contiguous_index_sets(adjacency, size: int) -> np.ndarray:
    """Every set of ``size`` distinct nodes whose induced subgraph is connected.

    Parameters
    ----------
    adjacency : symmetric boolean ``(R, R)`` (dense or sparse), zero diagonal.
    size : 1, 2 or 3.

    Returns
    -------
    int64 ``(n_sets, size)`` of node indices, each row ascending, rows unique and sorted.
    """
    adj = adjacency.toarray() if sparse.issparse(adjacency) else np.asarray(adjacency)
    adj = adj.astype(bool)
    n = adj.shape[0]
    if size == 1:
        return np.arange(n, dtype=np.int64)[:, None]
    if size == 2:
        i, j = np.nonzero(np.triu(adj, k=1))
        return np.stack([i, j], axis=1).astype(np.int64)
    if size != 3:
        raise ConfigError(
            f"contiguous sets are enumerated exhaustively for size 1, 2 or 3, not {size}; "
            "use osnmf.spatial.linking.beam_search for larger unions"
        )
    chunks = []
    for v in range(n):
        nb = np.flatnonzero(adj[v])
        if nb.size < 2:
            continue
        a_i, b_i = np.triu_indices(nb.size, k=1)
        a, b = nb[a_i], nb[b_i]
        # a path a-v-b has one centre; a triangle has three, keep it at its smallest member
        keep = ~adj[a, b] | ((v < a) & (v < b))
        a, b = a[keep], b[keep]
        trip = np.stack([np.full(a.size, v), a, b], axis=1)
        chunks.append(trip)
    if not chunks:
        return np.zeros((0, 3), dtype=np.int64)
    out = np.sort(np.concatenate(chunks), axis=1).astype(np.int64)
    order = np.lexsort(out.T[::-1])
    return out[order]


def contiguous_sets(atlas: Atlas, size: int, include_nested: bool = True) -> np.ndarray:
    """Every contiguous set of ``size`` distinct regions, as region (structure) ids.

    Size 2: neighbouring pairs. Size 3: a neighbouring pair plus a third region whose dilation
    meets either member.

    Returns
    -------
    int64 ``(n_sets, size)`` array of structure ids (rows unordered sets, deduplicated).
    """
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise refuse("size", size, "an integer >= 1")
    adj = region_adjacency(atlas, include_nested=include_nested)
    idx = contiguous_index_sets(adj, int(size))
    return atlas.region_ids[idx]


@dataclass(frozen=True)
class AdjacencyCounts:
    """Counts of the neighbourhood query on one atlas.

    ``pairs``/``triples``: every contiguous set (ancestor/descendant pairs count as neighbours).
    ``pairs_without_nested``/``triples_without_nested``: sets of pairwise disjoint regions only
    (what :func:`osnmf.spatial.linking.best_combinations` scores by default).
    """

    n_regions: int
    pairs: int
    pairs_without_nested: int
    nested_pairs: int
    triples: int
    triples_without_nested: int


def _n_triples(adj: np.ndarray) -> int:
    """Connected 3-node induced subgraphs: Σ_v C(deg v, 2) − 2·#triangles."""
    a = adj.astype(np.float64)
    deg = adj.sum(axis=1).astype(np.int64)
    triangles = int(round(float(((a @ a) * a).sum()))) // 6
    return int((deg * (deg - 1) // 2).sum()) - 2 * triangles


def adjacency_counts(atlas: Atlas) -> AdjacencyCounts:
    """Numbers of regions, neighbouring pairs and contiguous triples, with and without nesting."""
    full = region_adjacency(atlas, include_nested=True).toarray()
    flat = region_adjacency(atlas, include_nested=False).toarray()
    pairs = int(full.sum()) // 2
    flat_pairs = int(flat.sum()) // 2
    # triples of pairwise disjoint regions: connected by face contacts, no nested pair inside
    anc = ancestor_matrix(atlas)
    related = anc | anc.T
    t = contiguous_index_sets(flat, 3)
    nested = related[t[:, 0], t[:, 1]] | related[t[:, 0], t[:, 2]] | related[t[:, 1], t[:, 2]]
    return AdjacencyCounts(
        n_regions=int(full.shape[0]),
        pairs=pairs,
        pairs_without_nested=flat_pairs,
        nested_pairs=pairs - flat_pairs,
        triples=_n_triples(full),
        triples_without_nested=int((~nested).sum()),
    )
