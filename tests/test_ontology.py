"""Gene-expression-defined ontology and the region prediction test."""

import json

import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering

from osnmf.errors import ConfigError, InputError
from osnmf.interpret.ontology import newick_quote, pattern_ontology
from osnmf.spatial.linking import best_combinations
from osnmf.spatial.region_correlation import union_mask


def parse_newick(text):
    """Minimal independent Newick parser -> nested (label, length, children) tuples."""
    pos = 0

    def label():
        nonlocal pos
        if text[pos] == "'":
            out, pos = [], pos + 1
            while True:
                if text[pos] == "'":
                    if text[pos + 1] == "'":
                        out.append("'")
                        pos += 2
                        continue
                    pos += 1
                    return "".join(out)
                out.append(text[pos])
                pos += 1
        start = pos
        while text[pos] not in ",():;":
            pos += 1
        return text[start:pos].replace("_", " ")

    def node():
        nonlocal pos
        kids = []
        if text[pos] == "(":
            pos += 1
            kids.append(node())
            while text[pos] == ",":
                pos += 1
                kids.append(node())
            assert text[pos] == ")"
            pos += 1
        name = label() if text[pos] not in ",():;" else ""
        length = None
        if text[pos] == ":":
            pos += 1
            start = pos
            while text[pos] not in ",();":
                pos += 1
            length = float(text[start:pos])
        return (name, length, kids)

    tree = node()
    assert text[pos] == ";"
    return tree


def leaves(t, depth=0.0):
    name, length, kids = t
    d = depth + (length or 0.0)
    if not kids:
        return [(name, d)]
    return [x for k in kids for x in leaves(k, d)]


def _two_groups(n_per=3, n=400, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.random(n), rng.random(n)
    pats = [a + 0.2 * rng.random(n) for _ in range(n_per)] + [b + 0.2 * rng.random(n) for _ in range(n_per)]
    return np.array(pats)


def test_tree_matches_sklearn_agglomerative():
    pats = _two_groups()
    onto = pattern_ontology(pats, method="average")
    corr = np.corrcoef(pats)
    ref = AgglomerativeClustering(n_clusters=2, metric="precomputed", linkage="average").fit(1 - corr)
    split = [set(c["patterns"]) for c in onto.tree["children"]]
    names = np.array(onto.pattern_names)
    expected = [set(names[ref.labels_ == lab]) for lab in (0, 1)]
    assert sorted(map(sorted, split)) == sorted(map(sorted, expected))
    np.testing.assert_allclose(onto.correlation.to_numpy(), corr, atol=1e-12)
    # root height = average 1 - r between the two groups (average linkage)
    g0 = [onto.pattern_names.index(p) for p in onto.tree["children"][0]["patterns"]]
    g1 = [onto.pattern_names.index(p) for p in onto.tree["children"][1]["patterns"]]
    assert onto.tree["height"] == pytest.approx((1 - corr[np.ix_(g0, g1)]).mean())
    for method in ("complete", "single", "ward"):
        other = pattern_ontology(pats, method=method)
        assert sorted(map(sorted, [set(c["patterns"]) for c in other.tree["children"]])) == sorted(
            map(sorted, expected)
        )


def test_newick_quoting_roundtrip(tmp_path):
    pats = _two_groups(n_per=2)
    weird = ["PP 1", "it's (a) pattern", "x_y", "plain"]
    onto = pattern_ontology(pats, pattern_names=weird)
    text = onto.to_newick()
    parsed = parse_newick(text)
    got = leaves(parsed)
    assert sorted(n for n, _ in got) == sorted(weird)
    # ultrametric: every root-to-leaf path length equals the root height
    for _, d in got:
        assert d == pytest.approx(onto.tree["height"], rel=1e-5)
    assert newick_quote("a_b") == "'a_b'" and newick_quote("ab") == "ab" and newick_quote("o'k") == "'o''k'"
    path = onto.write_newick(tmp_path / "tree.nwk")
    assert path.read_text().strip() == text
    onto.write_json(tmp_path / "tree.json")
    assert json.loads((tmp_path / "tree.json").read_text()) == onto.tree
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree.json", "tree.nwk"]


def test_labelled_tree_from_planted_links(atlas):
    regs = [["Isocortex"], ["SSp"], ["TH"], ["HY"], ["CBX"]]
    rng = np.random.default_rng(1)
    pats = np.stack([union_mask(atlas, r) + 0.05 * rng.standard_normal(atlas.n_brain_voxels) for r in regs])
    pats[1] += 0.25 * union_mask(atlas, ["Isocortex"])  # SSp pattern resembles the isocortex one
    links = best_combinations(pats, atlas, sizes=(1,))
    onto = pattern_ontology(pats, links, atlas)
    tree = json.loads(onto.to_json())
    leaves_ = {}

    def walk(n):
        if "children" in n:
            for c in n["children"]:
                walk(c)
        else:
            leaves_[n["name"]] = n

    walk(tree)
    for k, r in enumerate(regs):
        leaf = leaves_[f"PP{k + 1}"]
        assert leaf["regions"] == r and leaf["links"][0]["acronym"] == r[0]
        assert leaf["label"] == f"PP{k + 1}: {r[0]}"
    # PP1 and PP2 join first; their common ancestor is the isocortex
    assert hierarchy_first_merge(onto) == {"PP1", "PP2"}
    node = find_node(tree, {"PP1", "PP2"})
    assert node["common_ancestor"] == "Isocortex"
    assert set(node["regions"]) == {"Isocortex", "SSp"}
    assert "'PP1: Isocortex'" in onto.to_newick()
    assert {n for n, _ in leaves(parse_newick(onto.to_newick()))} == {f"PP{k + 1}: {r[0]}" for k, r in enumerate(regs)}


def hierarchy_first_merge(onto):
    a, b = onto.linkage[0, :2].astype(int)
    return {onto.pattern_names[a], onto.pattern_names[b]}


def find_node(tree, patterns):
    if set(tree["patterns"]) == patterns:
        return tree
    for c in tree.get("children", []):
        hit = find_node(c, patterns)
        if hit is not None:
            return hit
    return None


def test_ontology_bad_inputs(atlas):
    with pytest.raises(InputError):
        pattern_ontology(np.ones((1, 5)))
    with pytest.raises(InputError):
        pattern_ontology(np.vstack([np.ones(5), np.arange(5.0)]))  # constant pattern
    with pytest.raises(ConfigError):
        pattern_ontology(_two_groups(), method="centroid")
    with pytest.raises(InputError):
        pattern_ontology(_two_groups(), links=object(), atlas=atlas)


# ---- region prediction test -----------------------------------------------------------------
def _planted_for_isocortex(atlas, seed=0):
    from scipy import ndimage

    groups = [["MO", "FRP", "ORB", "ACA", "PL", "ILA", "AI", "GU", "VISC"], ["SS", "AUD", "TEa", "ECT", "PERI"],
              ["VIS", "RSP", "PTLp"], ["TH"], ["CB"], ["HY"], ["STR"], ["HPF"]]
    rng = np.random.default_rng(seed)
    pats = []
    for g in groups:
        vol = np.zeros(atlas.shape)
        vol[atlas.brain_mask] = union_mask(atlas, g)
        vol = ndimage.gaussian_filter(vol, 0.7)
        pats.append(vol[atlas.brain_mask] + 0.05 * rng.random(atlas.n_brain_voxels))
    return np.array(pats)


def test_region_auc_matches_sklearn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from osnmf.interpret.region_prediction import region_auc

    rng = np.random.default_rng(3)
    x = rng.random((3000, 3))
    y = rng.random(3000) < 1 / (1 + np.exp(-(4 * x[:, 0] - 3 * x[:, 1])))
    z = (x - x.mean(0)) / x.std(0)
    ref = roc_auc_score(y, LogisticRegression().fit(z, y).predict_proba(z)[:, 1])
    assert region_auc(x, y) == pytest.approx(ref, abs=1e-4)


def test_isocortex_prediction_planted(atlas):
    from osnmf.interpret.region_prediction import linked_patterns, region_prediction_test

    pats = _planted_for_isocortex(atlas)
    links = best_combinations(pats, atlas, sizes=(1,))
    assert linked_patterns(links, atlas, "Isocortex") == [0, 1, 2]
    out = region_prediction_test(pats, atlas, links=links, n_random=25, seed=1)
    assert out.linked == [0, 1, 2] and out.linked_names == ["PP1", "PP2", "PP3"]
    assert out.auc > 0.97
    assert out.median_random < out.auc - 0.05
    assert out.p_value == pytest.approx((1 + np.sum(out.random_aucs >= out.auc)) / 26)
    others = [a for a, s in zip(out.random_aucs, out.random_subsets, strict=True) if list(s) != [0, 1, 2]]
    assert max(others) < out.auc
    assert out.random_subsets.shape == (25, 3)
    assert all(len(set(s)) == 3 for s in out.random_subsets)
    assert out.summary()["n_random"] == 25
    held = region_prediction_test(pats, atlas, linked=[0, 1, 2], n_random=3, holdout=0.3)
    assert held.auc > 0.97


def test_linked_patterns_from_table(atlas):
    import pandas as pd

    from osnmf.interpret.region_prediction import linked_patterns

    ids = atlas.id_of
    best = pd.DataFrame({"pattern_index": [0, 1, 2, 3],
                         "region_ids": [(ids("SSp"), ids("TH")), (ids("CA1"),), (ids("Isocortex"),), (ids("CTX"),)]})
    assert linked_patterns(best, atlas, "Isocortex") == [0, 2]  # CTX contains, is not inside
    assert linked_patterns(best, atlas, "HPF") == [1]


def test_prediction_bad_inputs(atlas):
    from osnmf.interpret.region_prediction import region_prediction_test

    pats = np.random.default_rng(0).random((3, atlas.n_brain_voxels))
    with pytest.raises(InputError):
        region_prediction_test(pats, atlas)  # neither linked nor links
    with pytest.raises(InputError):
        region_prediction_test(pats, atlas, linked=[5])
    with pytest.raises(ConfigError):
        region_prediction_test(pats, atlas, linked=[0], n_random=0)
    with pytest.raises(InputError):
        region_prediction_test(pats[:, :10], atlas, linked=[0])


def test_isocortex_triple_against_random_triples_brute_force(atlas):
    """One linked pattern is topped up to a triple (the paper's PP1–3) and compared with 1,000 random
    triples, as in the paper: every random model's AUC equals an independent sklearn fit of that triple
    (all C(8, 3) = 56 fitted here by brute force), p counts them, and p can be small; against the 8
    single-pattern models alone it never could (p ≥ 1/8)."""
    from itertools import combinations

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from osnmf.interpret.region_prediction import model_patterns, region_prediction_test
    from osnmf.spatial.region_correlation import region_correlations

    pats = _planted_for_isocortex(atlas)  # 8 patterns, 0-2 tile the isocortex
    target = atlas.mask("Isocortex")[atlas.brain_mask]
    z = (pats.T - pats.T.mean(0)) / pats.T.std(0)
    brute = {s: roc_auc_score(target, LogisticRegression(max_iter=1000).fit(z[:, s], target).decision_function(z[:, s]))
             for s in combinations(range(8), 3)}
    model = model_patterns([0], region_correlations(pats, atlas), atlas, "Isocortex", size=3)
    assert model == [0, 1, 2]
    out = region_prediction_test(pats, atlas, linked=model, n_random=1000, seed=0, random_size=3)
    assert out.random_subsets.shape == (1000, 3)
    for subset, auc in zip(out.random_subsets, out.random_aucs, strict=True):
        assert auc == pytest.approx(brute[tuple(int(i) for i in subset)], abs=1e-4)
    assert out.auc == pytest.approx(brute[(0, 1, 2)], abs=1e-4)
    assert max(v for s, v in brute.items() if s != (0, 1, 2)) < out.auc - 1e-3  # the planted triple is best
    drawn = sum(tuple(int(i) for i in s) == (0, 1, 2) for s in out.random_subsets)
    assert out.p_value == pytest.approx((1 + drawn) / 1001)
    assert out.median_random == pytest.approx(np.median([brute[tuple(int(i) for i in s)] for s in out.random_subsets]),
                                              abs=1e-4)
    assert out.p_value < 0.05 and out.summary()["random_size"] == 3
    single = region_prediction_test(pats, atlas, linked=[0], n_random=1000, seed=0)
    assert single.p_value >= 1 / 8 - 0.03  # 8 single-pattern models: the linked one is drawn ~1/8 of the time
    with pytest.raises(ConfigError):
        region_prediction_test(pats, atlas, linked=[0], n_random=5, random_size=9)
