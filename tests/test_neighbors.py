"""Region adjacency and contiguous sets vs brute force (explicit scipy.ndimage dilation)."""

import itertools

import numpy as np
import pytest
from scipy import ndimage

from osnmf import Atlas
from osnmf.errors import ConfigError
from osnmf.spatial.adjacency import (
    adjacency_counts,
    ancestor_matrix,
    contiguous_index_sets,
    contiguous_sets,
    region_adjacency,
)


@pytest.fixture(scope="module")
def crop(atlas):
    return Atlas(atlas.annotation[22:34, 8:20, 14:30], atlas.ontology)


def _masks(atlas):
    """Region masks as (R, V) boolean matrix over the whole crop grid, from the ontology."""
    ids = atlas.region_ids
    return np.stack([atlas.mask(int(s)).ravel() for s in ids])


def _brute_pairs(atlas):
    masks = _masks(atlas)
    struct = ndimage.generate_binary_structure(3, 1)
    shape = atlas.shape
    dil = np.stack([ndimage.binary_dilation(m.reshape(shape), structure=struct).ravel() for m in masks])
    meets = (dil.astype(np.int32) @ masks.T.astype(np.int32)) > 0
    np.fill_diagonal(meets, False)
    return masks, dil, meets


def test_pairs_match_dilation(crop):
    masks, dil, meets = _brute_pairs(crop)
    assert 40 < len(crop.region_ids) < 200
    adj = region_adjacency(crop).toarray()
    np.testing.assert_array_equal(adj, meets)
    np.testing.assert_array_equal(meets, meets.T)
    # without nesting: drop pairs whose masks overlap (tree: overlap <=> nested)
    overlap = (masks.astype(np.int32) @ masks.T.astype(np.int32)) > 0
    flat = region_adjacency(crop, include_nested=False).toarray()
    np.testing.assert_array_equal(flat, meets & ~overlap)
    pairs = contiguous_sets(crop, 2)
    i, j = np.nonzero(np.triu(meets, 1))
    expected = {frozenset((int(crop.region_ids[a]), int(crop.region_ids[b]))) for a, b in zip(i, j, strict=True)}
    got = {frozenset(map(int, p)) for p in pairs}
    assert got == expected and len(pairs) == len(expected)


def test_triples_match_dilation(crop):
    masks, dil, meets = _brute_pairs(crop)
    ids = crop.region_ids
    expected = set()
    for i, j in zip(*np.nonzero(np.triu(meets, 1)), strict=True):
        union = masks[i] | masks[j]
        hits = np.flatnonzero((dil.astype(np.int32) @ union.astype(np.int32)) > 0)
        for k in hits:
            if k != i and k != j:
                expected.add(frozenset((int(ids[i]), int(ids[j]), int(ids[k]))))
    triples = contiguous_sets(crop, 3)
    got = [frozenset(map(int, t)) for t in triples]
    assert len(got) == len(set(got)), "duplicate triples"
    assert all(len(t) == 3 for t in got)
    assert set(got) == expected
    counts = adjacency_counts(crop)
    assert counts.triples == len(expected)
    row = {int(s): i for i, s in enumerate(ids)}
    disjoint = [t for t in expected
                if not any((masks[row[a]] & masks[row[b]]).any() for a, b in itertools.combinations(t, 2))]
    assert counts.triples_without_nested == len(disjoint)
    assert counts.pairs == int(np.triu(meets, 1).sum())
    assert counts.pairs == counts.pairs_without_nested + counts.nested_pairs


def test_triples_generic_graph():
    rng = np.random.default_rng(0)
    n = 14
    adj = np.triu(rng.random((n, n)) < 0.3, 1)
    adj = adj | adj.T
    expected = set()
    for a, b, c in itertools.combinations(range(n), 3):
        edges = int(adj[a, b]) + int(adj[a, c]) + int(adj[b, c])
        if edges >= 2:  # 3 nodes are connected iff at least 2 of the 3 edges exist
            expected.add((a, b, c))
    got = contiguous_index_sets(adj, 3)
    assert {tuple(map(int, r)) for r in got} == expected and len(got) == len(expected)


def test_ancestor_matrix(crop):
    anc = ancestor_matrix(crop)
    ids = list(crop.region_ids)
    for i, sid in enumerate(ids):
        expected = {a for a in crop.ancestors(int(sid)) if a in ids}
        assert {ids[j] for j in np.flatnonzero(anc[i])} == expected


def test_bad_size(crop):
    with pytest.raises(ConfigError):
        contiguous_sets(crop, 4)
    with pytest.raises(ConfigError):
        contiguous_sets(crop, 0)
