"""The whole packaged atlas against brute force from the reference files (../shared, or the
identical packaged copies).

Every region's mask is built from the reference ontology (``structure_id_path``), dilated on its own
with ``scipy.ndimage`` (face connectivity), and intersected with every other mask; the contiguous
pairs and triples that follow are compared, as sets, with the package's lists and counts. The
region, medium-level and experiment counts are derived here from the reference files, not typed in.
"""

import numpy as np
import pandas as pd
import pytest
from conftest import reference_file
from scipy import ndimage

from osnmf.spatial.adjacency import adjacency_counts, contiguous_sets

COARSE = ("Isocortex", "OLF", "HPF", "CTXsp", "STR", "PAL", "TH", "HY", "MB", "P", "MY", "CB")  # spec §1


@pytest.fixture(scope="module")
def ontology():
    tree = pd.read_csv(reference_file("aba/structure_tree.csv", "structure_tree.csv.gz"))
    tree = tree[tree["id"] > 0].set_index("id")
    return tree


@pytest.fixture(scope="module")
def brute(atlas, ontology):
    """Regions, their masks' overlap and the dilation adjacency, all computed from scratch."""
    ann = atlas.annotation.astype(np.int64)  # equal to the shared zip (tests/test_atlas.py)
    labels = np.unique(ann[ann > 0])
    # a node owns voxels when it is a label or an ancestor of one (structure_id_path)
    path = {int(i): [int(p) for p in str(s).strip("/").split("/")] for i, s in ontology["structure_id_path"].items()}
    regions = np.array(sorted({p for lab in labels for p in path[int(lab)]}), dtype=np.int64)
    row = {int(r): i for i, r in enumerate(regions)}
    R = regions.size
    # inside[l, r]: label l lies in region r
    lab_row = {int(lab): i for i, lab in enumerate(labels)}
    inside = np.zeros((labels.size, R), dtype=bool)
    for lab in labels:
        inside[lab_row[int(lab)], [row[p] for p in path[int(lab)]]] = True
    lut = np.full(int(ann.max()) + 1, -1, dtype=np.int64)
    lut[labels] = np.arange(labels.size)
    struct = ndimage.generate_binary_structure(3, 1)
    meets = np.zeros((R, R), dtype=bool)
    for i in range(R):
        mask = np.isin(ann, labels[inside[:, i]])
        lo = np.maximum(np.argwhere(mask).min(axis=0) - 1, 0)
        hi = np.argwhere(mask).max(axis=0) + 2
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        grown = ndimage.binary_dilation(mask[box], structure=struct)
        touched = lut[ann[box][grown & (ann[box] > 0)]]
        meets[i] = inside[np.unique(touched)].any(axis=0)  # dilation of i meets mask of j
    np.fill_diagonal(meets, False)
    nested = np.zeros((R, R), dtype=bool)  # masks overlap <=> one is an ancestor of the other
    for r in regions:
        anc = [row[p] for p in path[int(r)] if p in row and p != r]
        nested[row[int(r)], anc] = True
    nested |= nested.T
    return regions, meets, nested


def _codes(index_sets: np.ndarray, R: int) -> np.ndarray:
    """Unordered index sets (n, s) → one sorted int64 code per set."""
    s = np.sort(index_sets, axis=1).astype(np.int64)
    code = np.zeros(len(s), dtype=np.int64)
    for col in range(s.shape[1]):
        code = code * R + s[:, col]
    return code


def _as_index(sets: np.ndarray, regions: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(regions, sets)
    assert (regions[np.minimum(pos, regions.size - 1)] == sets).all(), "a set holds an unknown region"
    return pos


def test_regions_and_levels_from_shared_files(atlas, ontology, brute):
    regions, _, _ = brute
    assert set(atlas.region_ids.tolist()) == set(regions.tolist())
    assert len(atlas.region_ids) == regions.size == 843  # the derived count, stated for the reader
    # medium level: the children of the 12 coarse regions in the shared ontology
    by_acronym = {a: int(i) for i, a in ontology["acronym"].items()}
    coarse = [by_acronym[a] for a in COARSE]
    medium = ontology.index[ontology["parent_structure_id"].isin(coarse)].astype(int).tolist()
    assert sorted(atlas.medium_ids) == sorted(medium)
    assert atlas.coarse_ids == coarse


def test_packaged_experiments_equal_shared_list(shared_dir):
    from osnmf.datasets.download import packaged_experiments

    shared = pd.read_csv(shared_dir / "data/aba/coronal_experiments.csv", dtype=str, keep_default_na=False)
    ours = packaged_experiments()
    assert len(ours) == len(shared) and ours["section_data_set_id"].is_unique
    merged = ours.merge(shared, on="section_data_set_id", suffixes=("", "_shared"))
    assert len(merged) == len(shared)
    assert (merged["gene_symbol"] == merged["gene_symbol_shared"]).all()
    # docs/download.md: 4,345 experiments of 4,082 genes
    assert (len(ours), ours["gene_symbol"].nunique()) == (len(shared), shared["gene_symbol"].nunique()) == (4345, 4082)


@pytest.mark.slow
def test_full_atlas_pairs_and_triples_match_dilation(atlas, brute):
    regions, meets, nested = brute
    R = regions.size
    np.testing.assert_array_equal(meets, meets.T)  # face dilation is symmetric
    assert nested[~meets].sum() == 0  # nested regions always touch
    i, j = np.nonzero(np.triu(meets, 1))
    pair_codes = np.unique(_codes(np.stack([i, j], axis=1), R))
    got = _codes(_as_index(contiguous_sets(atlas, 2), regions), R)
    assert got.size == np.unique(got).size, "duplicate pairs"
    np.testing.assert_array_equal(np.sort(got), pair_codes)
    counts = adjacency_counts(atlas)
    assert counts.n_regions == R == 843
    # exact, from brute force (was a range): here 17,680; the paper's CCFv3, 868 regions: 22,711
    assert counts.pairs == pair_codes.size == len(contiguous_sets(atlas, 2))
    assert counts.nested_pairs == int(np.triu(nested & meets, 1).sum())
    assert counts.pairs_without_nested == int(np.triu(meets & ~nested, 1).sum())
    # triples: a touching pair plus any region whose dilation meets either member (the paper's rule)
    parts = []
    for lo in range(0, i.size, 2000):
        a, b = i[lo:lo + 2000], j[lo:lo + 2000]
        third = meets[a] | meets[b]
        third[np.arange(a.size), a] = False
        third[np.arange(a.size), b] = False
        p, k = np.nonzero(third)
        parts.append(np.unique(_codes(np.stack([a[p], b[p], k], axis=1), R)))
    triple_codes = np.unique(np.concatenate(parts))
    triples = contiguous_sets(atlas, 3)
    got = _codes(_as_index(triples, regions), R)
    assert got.size == np.unique(got).size, "duplicate triples"
    np.testing.assert_array_equal(np.sort(got), triple_codes)
    assert counts.triples == triple_codes.size
    # without nesting: no two members overlap
    x, y, z = (triple_codes // R**2, (triple_codes // R) % R, triple_codes % R)
    flat = ~(nested[x, y] | nested[x, z] | nested[y, z])
    assert counts.triples_without_nested == int(flat.sum())
