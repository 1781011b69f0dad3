"""A gene-expression-defined ontology: a tree of patterns grouped by spatial similarity.

Patterns are clustered hierarchically on their pairwise Pearson correlation over brain voxels
(distance ``1 − r``; Ward linkage uses ``sqrt(2 (1 − r))``, the Euclidean distance between
standardised patterns divided by ``sqrt(n)``). Each leaf is a pattern labelled with its best
anatomical link (a union of atlas regions from :func:`osnmf.spatial.linking.best_combinations`);
each internal node lists the patterns below it, the union of their linked regions and, with an
atlas, the lowest common ontology ancestor of those regions. The tree exports as JSON (nested
dicts) and Newick.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from osnmf.atlas import Atlas
from osnmf.atomic import write_text
from osnmf.constraints import refuse
from osnmf.errors import InputError

__all__ = ["PatternOntology", "newick_quote", "pattern_ontology"]

METHODS = ("average", "complete", "single", "weighted", "ward")
_NEWICK_SPECIAL = set(" \t\n\r()[]':;,_")


def newick_quote(label: str) -> str:
    """A Newick-safe label: bare when plain, else single-quoted with inner quotes doubled.

    Underscores force quoting because unquoted underscores mean spaces in Newick.
    """
    text = str(label)
    if text and not any(ch in _NEWICK_SPECIAL for ch in text):
        return text
    return "'" + text.replace("'", "''") + "'"


def _pattern_correlation(patterns: np.ndarray) -> np.ndarray:
    centred = patterns - patterns.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1)
    if np.any(norm == 0):
        raise InputError(f"pattern {int(np.argmin(norm))} is constant; its correlation is undefined")
    unit = centred / norm[:, None]
    return np.clip(unit @ unit.T, -1.0, 1.0)


@dataclass
class PatternOntology:
    """The tree and what it was built from.

    Attributes
    ----------
    tree : nested dict; every node has name, height, patterns, regions (acronyms) and, with an
        atlas, common_ancestor; leaves add pattern_index, links (id, acronym, name, level) and r;
        internal nodes add children (two).
    linkage : scipy linkage matrix ``(K − 1, 4)``.
    correlation : ``(K, K)`` DataFrame of pattern Pearson correlations.
    method : linkage method.
    """

    tree: dict
    linkage: np.ndarray
    correlation: pd.DataFrame
    method: str
    pattern_names: list[str] = field(default_factory=list)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.tree, indent=indent, ensure_ascii=False)

    def to_newick(self, leaf_label: str = "label") -> str:
        """Newick string with branch lengths in linkage-height units.

        ``leaf_label``: "label" (pattern name and its linked regions, e.g. ``'PP1: Isocortex+OLF'``)
        or "name" (pattern name only). Internal nodes are named by their common ontology ancestor
        when an atlas was given.
        """
        if leaf_label not in ("label", "name"):
            raise refuse("leaf_label", leaf_label, "'label' or 'name'")

        def rec(node: dict, parent_height: float | None) -> str:
            if "children" in node:
                inner = ",".join(rec(c, node["height"]) for c in node["children"])
                text = f"({inner})" + (newick_quote(node["common_ancestor"]) if node.get("common_ancestor") else "")
            else:
                text = newick_quote(node[leaf_label] if leaf_label == "label" else node["name"])
            if parent_height is not None:
                text += f":{max(parent_height - node['height'], 0.0):.6g}"
            return text

        return rec(self.tree, None) + ";"

    def write_json(self, path: str | os.PathLike):
        """Write :meth:`to_json` atomically; returns the path."""
        return write_text(path, self.to_json() + "\n")

    def write_newick(self, path: str | os.PathLike, leaf_label: str = "label"):
        """Write :meth:`to_newick` atomically; returns the path."""
        return write_text(path, self.to_newick(leaf_label) + "\n")


def _links_from(links, k: int) -> list[list[int]] | None:
    if links is None:
        return None
    best = getattr(links, "best", links)
    if not isinstance(best, pd.DataFrame) or not {"pattern_index", "region_ids"} <= set(best.columns):
        raise InputError("links must be a LinkResult or its .best table (pattern_index, region_ids)")
    out: list[list[int]] = [[] for _ in range(k)]
    r = [float("nan")] * k
    for _, row in best.iterrows():
        p = int(row["pattern_index"])
        if not 0 <= p < k:
            raise InputError(f"links refer to pattern {p} but there are {k} patterns")
        out[p] = [int(s) for s in row["region_ids"]]
        r[p] = float(row["r"]) if "r" in row else float("nan")
    return out, r


def _common_ancestor(atlas: Atlas, ids: list[int]) -> int | None:
    if not ids:
        return None
    paths = [[i, *atlas.ancestors(i)] for i in ids]
    shared = set(paths[0]).intersection(*map(set, paths[1:]))
    for node in paths[0]:  # the deepest shared node comes first on the path
        if node in shared:
            return node
    return None


def pattern_ontology(
    patterns,
    links=None,
    atlas: Atlas | None = None,
    method: str = "average",
    pattern_names=None,
) -> PatternOntology:
    """Build the gene-expression-defined ontology of a pattern set.

    Parameters
    ----------
    patterns : ``(K, n_voxels)``, K ≥ 2 (any voxel order, shared by all patterns).
    links : a :class:`~osnmf.spatial.linking.LinkResult` (or its ``best`` table) labelling each
        pattern with its best region union; None for unlabelled leaves.
    atlas : needed for acronyms, names, levels and common ancestors of the links.
    method : linkage: average (default), complete, single, weighted or ward.
    pattern_names : K labels (default ``PP1`` … ``PPK``, or the names stored in ``links``).
    """
    pats = np.asarray(patterns, dtype=np.float64)
    if pats.ndim != 2 or pats.shape[0] < 2:
        raise InputError(f"patterns must be (K, n_voxels) with K >= 2, got shape {pats.shape}")
    if not np.isfinite(pats).all():
        raise InputError("patterns contain NaN or inf")
    if method not in METHODS:
        raise refuse("method", method, f"one of {', '.join(METHODS)}")
    k = pats.shape[0]
    if pattern_names is None:
        pattern_names = getattr(links, "pattern_names", None) or [f"PP{i + 1}" for i in range(k)]
    names = [str(n) for n in pattern_names]
    if len(names) != k:
        raise InputError(f"{len(names)} pattern names for {k} patterns")
    parsed = _links_from(links, k)
    if parsed is not None and atlas is None:
        raise InputError("pass the atlas together with links (to name the linked regions)")

    corr = _pattern_correlation(pats)
    dist = 1.0 - corr if method != "ward" else np.sqrt(np.maximum(2.0 * (1.0 - corr), 0.0))
    np.fill_diagonal(dist, 0.0)
    z = hierarchy.linkage(squareform(dist, checks=False), method=method)

    def leaf(i: int) -> dict:
        node = {"name": names[i], "pattern_index": i, "height": 0.0, "patterns": [names[i]]}
        if parsed is not None:
            ids, r = parsed[0][i], parsed[1][i]
            node["links"] = [
                {"id": s, "acronym": atlas.acronym(s), "name": atlas.name(s), "level": atlas.level(s)} for s in ids
            ]
            node["regions"] = [atlas.acronym(s) for s in ids]
            node["r"] = r
            node["label"] = f"{names[i]}: {'+'.join(node['regions'])}" if ids else names[i]
            ca = _common_ancestor(atlas, ids)
            node["common_ancestor"] = atlas.acronym(ca) if ca is not None else None
            node["_ids"] = ids
        else:
            node["label"] = names[i]
        return node

    nodes: list[dict] = [leaf(i) for i in range(k)]
    for j, (a, b, h, _) in enumerate(z):
        left, right = nodes[int(a)], nodes[int(b)]
        node = {
            "name": f"node{k + j}",
            "height": float(h),
            "patterns": left["patterns"] + right["patterns"],
            "children": [left, right],
        }
        if parsed is not None:
            ids = list(dict.fromkeys(left["_ids"] + right["_ids"]))
            node["_ids"] = ids
            node["regions"] = [atlas.acronym(s) for s in ids]
            ca = _common_ancestor(atlas, ids)
            node["common_ancestor"] = atlas.acronym(ca) if ca is not None else None
        nodes.append(node)
    root = nodes[-1]

    def strip(node: dict) -> None:
        node.pop("_ids", None)
        for c in node.get("children", []):
            strip(c)

    strip(root)
    corr_df = pd.DataFrame(corr, index=names, columns=names)
    return PatternOntology(tree=root, linkage=z, correlation=corr_df, method=method, pattern_names=names)
