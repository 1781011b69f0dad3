"""Pattern-region links vs brute-force voxel correlation and planted ground truth."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

import osnmf
from osnmf import Atlas
from osnmf.errors import ConfigError, InputError
from osnmf.spatial.adjacency import ancestor_matrix, contiguous_sets, region_adjacency
from osnmf.spatial.linking import MIN_MEMBER_SHARE, beam_search, best_combinations, pick_best
from osnmf.spatial.region_correlation import bubble_data, combination_r, region_correlations, union_mask


def _pearson_rows(patterns, masks):
    """Brute force: Pearson r of every pattern (K, n) with every explicit mask (T, n) -> (T, K)."""
    out = np.empty((masks.shape[0], patterns.shape[0]))
    for t, m in enumerate(masks):
        for k, p in enumerate(patterns):
            out[t, k] = np.corrcoef(p, m.astype(float))[0, 1] if 0 < m.sum() < m.size else np.nan
    return out


def _smooth_patterns(atlas, n, seed, sigma=1.5):
    rng = np.random.default_rng(seed)
    vols = ndimage.gaussian_filter(rng.random((n, *atlas.shape)), sigma=(0, sigma, sigma, sigma))
    return vols[:, atlas.brain_mask]


def test_combination_r_exact(atlas):
    pats = _smooth_patterns(atlas, 3, seed=1)
    rng = np.random.default_rng(2)
    ids = atlas.region_ids
    triples = contiguous_sets(atlas, 3)
    sets = [tuple(triples[i]) for i in rng.choice(len(triples), 15, replace=False)]
    sets += [tuple(rng.choice(ids, size=s, replace=False)) for s in (1, 2, 4, 5) for _ in range(3)]
    sets += [("Isocortex", "SSp", "MOp"), ("HPF", "CA1"), ("TH",), ("root",)]  # nested, whole brain
    got = combination_r(pats, atlas, sets)
    masks = np.stack([union_mask(atlas, s) for s in sets])
    ref = _pearson_rows(pats, masks)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)
    assert np.isnan(got[-1]).all()  # root covers the whole brain: r undefined


def test_region_correlations_vs_reference(atlas):
    pats = _smooth_patterns(atlas, 2, seed=3)
    table = region_correlations(pats, atlas)
    assert len(table) == 2 * len(atlas.region_ids) == 2 * 843
    for key in ["Isocortex", "CA1", "MOB", "CBX", "VISp5"]:
        sid = atlas.id_of(key)
        mask = atlas.mask(sid)[atlas.brain_mask]
        for k in range(2):
            row = table[(table.pattern_index == k) & (table.region_id == sid)].iloc[0]
            assert row.r == pytest.approx(np.corrcoef(pats[k], mask)[0, 1], abs=1e-10)
            binary = pats[k] >= 0.5 * pats[k].max()
            assert row.dice == pytest.approx(2 * (binary & mask).sum() / (binary.sum() + mask.sum()))
    top = region_correlations(pats, atlas, binarize="top")
    sid = atlas.id_of("HPF")
    mask = atlas.mask(sid)[atlas.brain_mask]
    m = int(mask.sum())
    best_vox = np.argsort(-pats[0], kind="stable")[:m]
    binary = np.zeros_like(mask)
    binary[best_vox] = True
    row = top[(top.pattern_index == 0) & (top.region_id == sid)].iloc[0]
    assert row.dice == pytest.approx(2 * (binary & mask).sum() / (2 * m))


def test_bubble_data_order(atlas):
    pats = _smooth_patterns(atlas, 3, seed=4)
    # pattern 1 is the thalamus, pattern 0 the isocortex: y order must follow the coarse order
    pats[0] += 5 * atlas.mask("Isocortex")[atlas.brain_mask]
    pats[1] += 5 * atlas.mask("TH")[atlas.brain_mask]
    pats[2] += 5 * atlas.mask("CB")[atlas.brain_mask]
    df = bubble_data(pats, atlas)
    medium = [s for s in atlas.medium_ids if s in set(atlas.region_ids)]  # voxel-owning ones
    assert len(df) == 3 * len(medium)
    cols = df[df.pattern_index == 0].sort_values("x")
    assert list(cols.graph_order) == sorted(cols.graph_order)
    assert list(cols.x) == list(range(len(medium)))
    assert set(cols.region_id) == set(medium)
    y = df.groupby("pattern_index").y.first()
    assert y[0] < y[1] < y[2]


def _explicit_pearson(patterns, masks):
    """Brute force on explicit (T, n) masks: centred dot products, r per (mask, pattern)."""
    pc = patterns - patterns.mean(axis=1, keepdims=True)
    mc = masks - masks.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (mc @ pc.T) / np.outer(np.linalg.norm(mc, axis=1), np.linalg.norm(pc, axis=1))


def _brute_share(masks: list[np.ndarray]) -> float:
    """Smallest member's share of the union's voxels, from explicit masks: a member whose mask lies
    inside another member's (or repeats an earlier one) adds nothing and is left out."""
    union = np.logical_or.reduce(masks)
    kept = [m for i, m in enumerate(masks)
            if not any(j != i and (m <= o).all() and ((m != o).any() or j < i) for j, o in enumerate(masks))]
    return min(int(m.sum()) for m in kept) / int(union.sum())


@pytest.mark.parametrize(("distinct", "share", "tol"), [(True, 0.0, 0.0), (False, 0.0, 0.0), (True, 0.05, 0.0),
                                                        (False, 0.2, 0.0), (True, 0.05, 0.01), (True, 0.2, 0.05)])
def test_exhaustive_matches_brute_force_on_crop(atlas, distinct, share, tol):
    """Every size's best r, the set counts, the other-combination statistics and the best link over
    sizes against explicit masks: sets filtered by their smallest member's share of the union, the
    best link the smallest size within ``tol`` of the best r."""
    small = Atlas(atlas.annotation[24:32, 10:18, 16:26], atlas.ontology)
    pats = _smooth_patterns(small, 3, seed=5, sigma=1.0)
    res = best_combinations(pats, small, sizes=(1, 2, 3), top_n=1, distinct_unions=distinct,
                            min_member_share=share, tie_tolerance=tol)
    # region masks straight from the annotation (not from membership)
    region = {int(s): small.mask(int(s))[small.brain_mask] for s in small.region_ids}
    allr, size_best = [], []
    for size in (1, 2, 3):
        sets = contiguous_sets(small, size)
        if distinct:  # keep sets of pairwise disjoint masks
            keep = [all(not (region[int(a)] & region[int(b)]).any() for a, b in itertools.combinations(row, 2))
                    for row in sets]
            sets = sets[np.array(keep, dtype=bool)]
        if size > 1 and share > 0:
            keep = [_brute_share([region[int(s)] for s in row]) >= share for row in sets]
            sets = sets[np.array(keep, dtype=bool)]
        masks = np.zeros((len(sets), small.n_brain_voxels))
        for col in range(size):
            masks = np.maximum(masks, np.stack([region[int(s)] for s in sets[:, col]]))
        ref = _explicit_pearson(pats, masks)
        allr.append(ref)
        size_best.append(np.nanmax(ref, axis=0))
        got = res.table[(res.table["size"] == size)].sort_values("pattern_index")
        np.testing.assert_allclose(got.r.to_numpy(), size_best[-1], atol=1e-10)
        assert res.summary["n_combinations"][size] == len(sets)
    size_best = np.array(size_best)  # (size, K)
    for k in range(3):  # the best link: the smallest size within tol of the best r of any size
        chosen = next(s for s in range(3) if size_best[s, k] >= size_best[:, k].max() - tol)
        assert res.best["size"][k] == chosen + 1
        assert res.best["r"][k] == pytest.approx(size_best[chosen, k], abs=1e-10)
    allr = np.concatenate(allr)
    for k in range(3):
        col = allr[:, k][np.isfinite(allr[:, k])]
        others = np.delete(col, np.flatnonzero(np.isclose(col, res.best["r"][k], rtol=0, atol=1e-12))[0])
        assert res.pattern_stats.mean_other[k] == pytest.approx(others.mean(), abs=1e-9)
        assert res.pattern_stats.sd_other[k] == pytest.approx(others.std(), abs=1e-7)
    # summary and matrix consistent with an independent recomputation
    best_masks = np.stack([union_mask(small, ids) for ids in res.best.region_ids])
    mat = _pearson_rows(pats, best_masks).T
    np.testing.assert_allclose(res.matrix.to_numpy(), mat, atol=1e-10)
    assert res.summary["mean_best"] == pytest.approx(np.diag(mat).mean())
    off = mat[~np.eye(3, dtype=bool)]
    assert res.summary["mean_offdiag"] == pytest.approx(off.mean())


PLANTED = [["Isocortex", "OLF"], ["TH"], ["CBX"], ["STRd", "ACB", "OT"], ["HY", "MB"], ["P", "MY"], ["HIP"]]


def test_planted_sharp_regions_recovered(atlas):
    rng = np.random.default_rng(6)
    masks = [union_mask(atlas, regs) for regs in PLANTED]
    pats = np.stack([m + 0.05 * rng.standard_normal(m.size) for m in masks])
    res = best_combinations(pats, atlas)
    for k, m in enumerate(masks):
        found = union_mask(atlas, res.best.region_ids[k])
        assert (found == m).all(), (PLANTED[k], res.best.acronyms[k])
        assert res.best.r[k] > 0.95
    pairs = contiguous_sets(atlas, 2, include_nested=False)  # disjoint: the union's voxels add up
    voxels = {int(r): int(atlas.mask(int(r)).sum()) for r in np.unique(pairs)}  # from the annotation
    sizes = np.vectorize(voxels.get)(pairs)
    kept = sizes.min(axis=1) / sizes.sum(axis=1) >= MIN_MEMBER_SHARE
    assert res.summary["n_combinations"][2] == int(kept.sum()) < len(pairs)
    assert set(res.table.columns) >= {"pattern", "size", "region_ids", "acronyms", "names", "levels", "r"}


def test_phantom_planted_groups_are_best_links():
    ph = osnmf.make_phantom(n_genes=12, n_patterns=11, seed=0)
    atlas = ph.atlas
    res = best_combinations(ph.patterns, atlas)
    for k, regs in enumerate(ph.pattern_regions):
        planted = union_mask(atlas, regs)
        found = union_mask(atlas, res.best.region_ids[k])
        dice = 2 * (planted & found).sum() / (planted.sum() + found.sum())
        assert dice > 0.85, (regs, res.best.acronyms[k], dice)
        # and no other pattern's planted group fits this pattern's best link better
        others = [union_mask(atlas, r) for j, r in enumerate(ph.pattern_regions) if j != k]
        assert all(2 * (o & found).sum() / (o.sum() + found.sum()) < dice for o in others)
    assert res.summary["mean_best"] > 0.8
    assert res.summary["mean_offdiag"] < 0.1


def test_beam_search_exact_contiguous_and_gains(atlas):
    # a pattern made of four disjoint, contiguous cortical areas that no triple covers well
    regs = ["MOp", "SSp", "AUD", "TEa"]
    m = union_mask(atlas, regs)
    rng = np.random.default_rng(7)
    pats = np.stack([m + 0.05 * rng.standard_normal(m.size), _smooth_patterns(atlas, 1, seed=8)[0]])
    out = beam_search(pats, atlas, max_size=5, beam_width=20)
    assert set(out["size"]) == {4, 5}
    ref = combination_r(pats, atlas, list(out.region_ids))
    np.testing.assert_allclose(out.r.to_numpy(), ref[np.arange(len(out)), out.pattern_index], atol=1e-10)
    row = out[(out.pattern_index == 0) & (out["size"] == 4)].iloc[0]
    assert (union_mask(atlas, row.region_ids) == m).all()
    assert row.gain > 0.02
    # returned sets: distinct, pairwise disjoint, contiguous by face contact (brute graph check)
    anc = ancestor_matrix(atlas)
    flat = region_adjacency(atlas, include_nested=False).toarray()
    row_of = {int(s): i for i, s in enumerate(atlas.region_ids)}
    for ids in out.region_ids:
        idx = [row_of[s] for s in ids]
        assert len(set(idx)) == len(idx)
        assert not any(anc[a, b] for a, b in itertools.permutations(idx, 2))
        seen, stack = {idx[0]}, [idx[0]]
        while stack:
            v = stack.pop()
            for w in idx:
                if w not in seen and flat[v, w]:
                    seen.add(w)
                    stack.append(w)
        assert seen == set(idx)


def test_bad_inputs(atlas):
    with pytest.raises(InputError):
        region_correlations(np.zeros((2, 10)), atlas)
    bad = np.zeros((1, atlas.n_brain_voxels))
    bad[0, 0] = np.nan
    with pytest.raises(InputError):
        best_combinations(bad, atlas)
    with pytest.raises(ConfigError):
        best_combinations(np.ones((1, atlas.n_brain_voxels)), atlas, sizes=(4,))
    with pytest.raises(ConfigError):
        region_correlations(np.ones((1, atlas.n_brain_voxels)), atlas, binarize="otsu")
    with pytest.raises(InputError):
        combination_r(np.ones((1, atlas.n_brain_voxels)), atlas, [("NOT_A_REGION",)])


def test_compare_pattern_sets(atlas):
    from osnmf.spatial.linking import compare_pattern_sets

    sharp = np.stack([union_mask(atlas, r).astype(float) for r in (["TH"], ["CBX"], ["MOB"])])
    blurry = _smooth_patterns(atlas, 2, seed=9)
    table = compare_pattern_sets({"sharp": sharp, "random": blurry}, atlas, sizes=(1, 2))
    assert list(table.index) == ["sharp", "random"] and list(table.k) == [3, 2]
    assert table.loc["sharp", "mean_best"] == pytest.approx(1.0)
    assert table.loc["sharp", "sd_best"] == pytest.approx(0.0, abs=1e-12)
    assert table.loc["random", "mean_best"] < 0.9


@pytest.mark.parametrize("share", [0.0, 0.1])
def test_beam_with_wide_beam_is_exhaustive_on_crop(atlas, share):
    """A beam wider than every set is the exhaustive search of sizes 4 and 5 (sets whose smallest
    member holds under ``share`` of the union left out, by explicit masks)."""
    small = Atlas(atlas.annotation[24:32, 10:18, 16:26], atlas.ontology)
    pats = _smooth_patterns(small, 2, seed=10, sigma=1.0)
    region = {int(s): small.mask(int(s))[small.brain_mask] for s in small.region_ids}
    ids = [int(s) for s in small.region_ids]
    # brute force: grow connected sets of pairwise disjoint regions by face contact (explicit masks)
    struct = ndimage.generate_binary_structure(3, 1)
    dil = {s: ndimage.binary_dilation(small.mask(s), structure=struct)[small.brain_mask] for s in ids}
    touch = {(a, b) for a in ids for b in ids if a != b and (dil[a] & region[b]).any()
             and not (region[a] & region[b]).any()}
    sets = {frozenset(p) for p in touch}
    by_size = {2: sets}
    for size in (3, 4, 5):
        grown = set()
        for st in by_size[size - 1]:
            for x in ids:
                if x not in st and any((m, x) in touch for m in st) and not any(
                        (region[x] & region[m]).any() for m in st):
                    grown.add(st | {x})
        by_size[size] = grown
    assert len(by_size[4]) > 100 and len(by_size[5]) > len(by_size[4])
    out = beam_search(pats, small, max_size=5, beam_width=100_000, min_member_share=share)
    for size in (4, 5):
        sets_k = [tuple(s) for s in by_size[size] if _brute_share([region[r] for r in s]) >= share]
        if share:
            assert 0 < len(sets_k) < len(by_size[size])
        masks = np.stack([np.any([region[s] for s in st], axis=0) for st in sets_k]).astype(float)
        ref = np.nanmax(_explicit_pearson(pats, masks), axis=0)
        got = out[out["size"] == size].sort_values("pattern_index").r.to_numpy()
        np.testing.assert_allclose(got, ref, atol=1e-10)


def test_big_region_wins_over_a_tiny_nucleus_union(atlas):
    """The cerebellum plus a nucleus of a few voxels beside it, at the same r up to the tolerance:
    the rule names the cerebellum alone. Without the rule (share 0, tolerance 0) the search takes the
    union, which a direct Pearson r confirms is (barely) higher: the rule, not the data, decides."""
    brain = atlas.brain_mask
    cb = atlas.mask("CB")
    adj = region_adjacency(atlas, include_nested=False).toarray()
    index = {int(s): i for i, s in enumerate(atlas.region_ids)}
    counts = {int(s): int(atlas.mask(int(s)).sum()) for s in atlas.region_ids}
    touching = [int(s) for s in atlas.region_ids if adj[index[atlas.id_of("CB")], index[int(s)]]
                and not (atlas.mask(int(s)) & cb).any() and 1 <= counts[int(s)] <= 0.02 * cb.sum()]
    tiny = min(touching, key=counts.get)  # the smallest region face-touching the cerebellum
    pattern = (cb | atlas.mask(tiny)).astype(float)
    pattern[cb] += 0.3 * np.random.default_rng(0).random(int(cb.sum()))  # most weight in CB itself
    pattern = pattern[brain][None]
    r_cb = np.corrcoef(pattern[0], cb[brain])[0, 1]
    r_union = np.corrcoef(pattern[0], (cb | atlas.mask(tiny))[brain])[0, 1]
    assert r_union > r_cb > r_union - 0.002  # a tie within the tolerance
    free = best_combinations(pattern, atlas, min_member_share=0.0, tie_tolerance=0.0).best
    assert set(free["region_ids"][0]) == {atlas.id_of("CB"), tiny}
    assert free["r"][0] == pytest.approx(r_union)
    ruled = best_combinations(pattern, atlas).best
    assert ruled["acronyms"][0] == "CB" and ruled["r"][0] == pytest.approx(r_cb)
    # the share rule alone also refuses the union (the nucleus holds < 5 % of it) ...
    shared = best_combinations(pattern, atlas, tie_tolerance=0.0)
    assert not any(tiny in ids for ids in shared.table["region_ids"])
    # ... and the tolerance alone prefers the single region when the union is within it
    tolerant = best_combinations(pattern, atlas, min_member_share=0.0, tie_tolerance=0.002).best
    assert tolerant["acronyms"][0] == "CB"


def test_pick_best_smallest_set_within_tolerance():
    table = pd.DataFrame({"pattern_index": [0, 0, 0, 1, 1], "size": [1, 2, 3, 1, 2], "rank": 1,
                          "r": [0.900, 0.9015, 0.903, 0.5, 0.6]})
    assert pick_best(table, 0.002)["size"].tolist() == [2, 2]
    assert pick_best(table, 0.0031)["size"].tolist() == [1, 2]
    assert pick_best(table, 0.0)["size"].tolist() == [3, 2]
    with pytest.raises(ConfigError, match="min_member_share"):
        best_combinations(np.ones((1, 5)), Atlas(np.ones((1, 1, 5), np.uint32) * 997, _root_ontology()),
                          min_member_share=0.6)


def _root_ontology():
    return pd.DataFrame({"acronym": ["root"], "name": ["root"], "parent_id": [0], "depth": [0], "graph_order": [0],
                         "color": ["FFFFFF"]}, index=pd.Index([997], name="id"))
