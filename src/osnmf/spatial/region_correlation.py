"""Pearson r (and Dice) of patterns with region masks and unions of regions, in closed form.

Every function takes ``patterns`` shaped ``(K, n_brain_voxels)`` with columns in
``atlas.brain_coords`` order (any pattern set: staNMF, PCA, cluster indicators …).
Pearson r of a pattern with a binary mask, in closed form
-----------------------------------------------------------
Let ``p`` be a pattern over ``n`` brain voxels, ``c = p − mean(p)`` its centred copy,
``Q = Σ c²`` and ``M`` a mask with ``m`` voxels and ``s = Σ_{v∈M} c_v``. Because ``Σ c = 0``,
``cov(p, 1_M) = s / n``, ``var(1_M) = m (n − m) / n²`` and ``var(p) = Q / n``, so

    r(p, M) = s / sqrt(Q · m (n − m) / n).

(Equivalently, with raw sums ``S_M = Σ_M p``, ``S = Σ p``, ``S2 = Σ p²``:
``r = (n S_M − S m) / sqrt((n S2 − S²)(n m − m²))``.) ``r`` is undefined (NaN) for an empty
mask, the whole brain, or a constant pattern.

The union of regions needs only per-region sums ``s_i`` and voxel counts ``m_i``. Ontology nodes
form a tree, so two regions are either nested or disjoint: drop every member that has an
ancestor in the set and the remaining members are pairwise disjoint, so their ``s`` and ``m``
add up. Each combination therefore costs O(1) per pattern after one sparse product
``membership @ c``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from osnmf.atlas import Atlas
from osnmf.constraints import refuse
from osnmf.errors import InputError
from osnmf.spatial.adjacency import ancestor_matrix

__all__ = [
    "RegionStats",
    "bubble_data",
    "check_patterns",
    "combination_r",
    "mask_pearson",
    "pattern_labels",
    "region_correlations",
    "region_stats",
    "union_mask",
    "union_r",
    "union_weights",
]


# ---- inputs -------------------------------------------------------------------------------
def check_patterns(patterns, atlas: Atlas) -> np.ndarray:
    """Validate patterns: float64 ``(K, n_brain_voxels)``, finite. A 1-D pattern becomes K = 1."""
    arr = np.asarray(patterns, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InputError(f"patterns must be 2-D (K, n_brain_voxels), got shape {arr.shape}")
    if arr.shape[1] != atlas.n_brain_voxels:
        raise InputError(
            f"patterns have {arr.shape[1]} columns but the atlas has {atlas.n_brain_voxels} brain "
            "voxels; pass patterns in atlas.brain_coords order (transpose if voxels are rows)"
        )
    if arr.shape[0] == 0:
        raise InputError("patterns are empty (K = 0)")
    if not np.isfinite(arr).all():
        raise InputError("patterns contain NaN or inf; impute or fill missing voxels first")
    return arr


def pattern_labels(k: int, pattern_names) -> list[str]:
    """``pattern_names`` as K strings, or ``PP1`` … ``PPK`` when None."""
    if pattern_names is None:
        return [f"PP{i + 1}" for i in range(k)]
    names = [str(n) for n in pattern_names]
    if len(names) != k:
        raise InputError(f"{len(names)} pattern names given for {k} patterns")
    return names


# ---- the one correlation formula ----------------------------------------------------------
def mask_pearson(sums, counts, sq, n: int) -> np.ndarray:
    """Pearson r between centred patterns and binary masks from sufficient statistics.

    Parameters
    ----------
    sums : ``Σ_{v∈M} c_v`` of the centred pattern over each mask (any broadcastable shape).
    counts : mask sizes ``m`` (voxels), broadcastable against ``sums``.
    sq : ``Q = Σ c²`` of each centred pattern, broadcastable.
    n : number of brain voxels.

    Returns
    -------
    r, NaN where undefined (m = 0, m = n or Q = 0).
    """
    counts = np.asarray(counts, dtype=np.float64)
    sq = np.asarray(sq, dtype=np.float64)
    cm = counts * (n - counts) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        fm = np.where(cm > 0, 1.0 / np.sqrt(cm), np.nan)
        fq = np.where(sq > 0, 1.0 / np.sqrt(sq), np.nan)
    r = np.multiply(sums, fm, dtype=np.float64)
    r *= fq
    return r


@dataclass
class RegionStats:
    """Per-region sufficient statistics of centred patterns."""

    sums: np.ndarray  # (R, K) Σ over each region of the centred pattern
    counts: np.ndarray  # (R,) voxels per region
    sq: np.ndarray  # (K,) Σ c²
    n: int


def region_stats(patterns: np.ndarray, atlas: Atlas) -> RegionStats:
    """Sufficient statistics of ``(K, n_brain_voxels)`` patterns over every voxel-owning region."""
    centred = patterns - patterns.mean(axis=1, keepdims=True)
    memb = atlas.membership.astype(np.float64)
    sums = np.asarray(memb @ centred.T)  # (R, K)
    counts = np.asarray(atlas.membership.sum(axis=1)).ravel().astype(np.float64)
    return RegionStats(sums, counts, (centred**2).sum(axis=1), patterns.shape[1])


def union_weights(combos: np.ndarray, anc: np.ndarray) -> np.ndarray:
    """``(T, k)`` 0/1 weights: 0 for a member whose ancestor is also in the set."""
    t, k = combos.shape
    w = np.ones((t, k), dtype=np.float64)
    for a in range(k):
        for b in range(k):
            if a != b:
                w[anc[combos[:, a], combos[:, b]], a] = 0.0
    return w


def union_r(stats: RegionStats, combos: np.ndarray, anc: np.ndarray) -> np.ndarray:
    """r of every pattern with the union of every combination: ``(T, K)``."""
    w = union_weights(combos, anc)
    m = (w * stats.counts[combos]).sum(axis=1)
    s = None
    for a in range(combos.shape[1]):
        g = stats.sums[combos[:, a]]  # (T, K) gather
        absorbed = w[:, a] == 0
        if absorbed.any():
            g[absorbed] = 0.0
        if s is None:
            s = g
        else:
            s += g
    return mask_pearson(s, m[:, None], stats.sq[None, :], stats.n)


def combination_r(patterns, atlas: Atlas, region_sets) -> np.ndarray:
    """Pearson r of each pattern with the union of each region set.

    Parameters
    ----------
    patterns : ``(K, n_brain_voxels)``.
    region_sets : sequence of sequences of region ids or acronyms (any lengths).

    Returns
    -------
    ``(n_sets, K)`` float64.
    """
    pats = check_patterns(patterns, atlas)
    stats = region_stats(pats, atlas)
    anc = ancestor_matrix(atlas)
    row = {int(s): i for i, s in enumerate(atlas.region_ids)}
    out = np.empty((len(region_sets), pats.shape[0]))
    for t, members in enumerate(region_sets):
        idx = []
        for key in members:
            sid = atlas.id_of(key)
            if sid not in row:
                raise InputError(f"region {key!r} owns no voxels in this atlas")
            idx.append(row[sid])
        out[t] = union_r(stats, np.array([sorted(set(idx))]), anc)[0]
    return out


def union_mask(atlas: Atlas, region_ids) -> np.ndarray:
    """Boolean ``(n_brain_voxels,)`` union of the given regions' masks."""
    row = {int(s): i for i, s in enumerate(atlas.region_ids)}
    rows = [row[atlas.id_of(k)] for k in region_ids]
    return np.asarray(atlas.membership[rows].sum(axis=0)).ravel() > 0


# ---- single regions -----------------------------------------------------------------------
def _binary_overlap(patterns, atlas, binarize, threshold):
    memb = atlas.membership
    counts = np.asarray(memb.sum(axis=1)).ravel().astype(np.float64)
    if binarize == "relative":
        top = patterns.max(axis=1, keepdims=True)
        binary = (patterns >= threshold * top) & (top > 0)
        inter = np.asarray(memb.astype(np.float64) @ binary.T.astype(np.float64))  # (R, K)
        size_b = binary.sum(axis=1).astype(np.float64)
        return 2 * inter / (counts[:, None] + size_b[None, :])
    if binarize == "top":
        # rank 0 = the pattern's highest voxel (ties broken by position)
        order = np.argsort(-patterns, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(patterns.shape[1])[None, :], axis=1)
        lengths = np.diff(memb.indptr)
        limit = np.repeat(counts, lengths)
        dice = np.empty((counts.size, patterns.shape[0]))
        for k in range(patterns.shape[0]):
            hit = ranks[k, memb.indices] < limit
            dice[:, k] = np.add.reduceat(hit.astype(np.float64), memb.indptr[:-1]) / counts
        dice[lengths == 0] = 0.0
        return dice
    raise refuse("binarize", binarize, "'relative' or 'top'")


def region_correlations(
    patterns,
    atlas: Atlas,
    binarize: str = "relative",
    threshold: float = 0.5,
    pattern_names=None,
) -> pd.DataFrame:
    """Pearson r and Dice between every pattern and every voxel-owning region.

    Parameters
    ----------
    patterns : ``(K, n_brain_voxels)``.
    atlas : regions are ``atlas.region_ids`` (843 on the packaged grid).
    binarize : how a pattern becomes a binary map for Dice.
        ``"relative"`` (default): voxels ≥ ``threshold`` × the pattern's maximum (50 %).
        ``"top"``: for each region of ``m`` voxels, the pattern's ``m`` highest voxels, so Dice
        equals the fraction of the region covered by the pattern's top-``m`` voxels.
    threshold : fraction of the maximum for ``"relative"``.
    pattern_names : K labels, default ``PP1`` … ``PPK``.

    Returns
    -------
    Tidy DataFrame, one row per (pattern, region): pattern, pattern_index, region_id, acronym,
    name, level, n_voxels, graph_order, r, dice. ``attrs["binarize"]`` states the rule.
    """
    pats = check_patterns(patterns, atlas)
    if not 0 < threshold <= 1:
        raise refuse("threshold", threshold, "a number in (0, 1]")
    names = pattern_labels(pats.shape[0], pattern_names)
    stats = region_stats(pats, atlas)
    r = mask_pearson(stats.sums, stats.counts[:, None], stats.sq[None, :], stats.n)  # (R, K)
    dice = _binary_overlap(pats, atlas, binarize, threshold)
    table = atlas.region_table()
    k, nreg = pats.shape[0], table.shape[0]
    out = pd.DataFrame(
        {
            "pattern": np.repeat(names, nreg),
            "pattern_index": np.repeat(np.arange(k), nreg),
            "region_id": np.tile(table.index.to_numpy(), k),
            "acronym": np.tile(table["acronym"].to_numpy(), k),
            "name": np.tile(table["name"].to_numpy(), k),
            "level": np.tile(table["level"].to_numpy(), k),
            "n_voxels": np.tile(table["n_voxels"].to_numpy(), k),
            "graph_order": np.tile(table["graph_order"].to_numpy(), k),
            "r": r.T.ravel(),
            "dice": dice.T.ravel(),
        }
    )
    out.attrs["binarize"] = (
        f"voxels >= {threshold:g} x pattern max" if binarize == "relative" else "top-|region| voxels"
    )
    return out


def bubble_data(
    patterns=None,
    atlas: Atlas | None = None,
    correlations: pd.DataFrame | None = None,
    **kwargs,
) -> pd.DataFrame:
    """Data for the bubble plot: patterns × medium regions ordered by the ontology.

    Either pass ``patterns`` and ``atlas`` (extra keyword arguments go to
    :func:`region_correlations`) or a precomputed ``correlations`` table plus ``atlas``.

    Returns
    -------
    Tidy DataFrame restricted to the voxel-owning ``atlas.medium_ids`` (61 of 62 on the packaged
    grid): the columns of
    :func:`region_correlations` plus ``coarse`` (acronym of the coarse parent), ``x`` (0-based
    column position in graph order) and ``y`` (pattern row: patterns sorted by the coarse region
    they correlate with best, in coarse ontology order, then by that r, descending).
    """
    if atlas is None:
        raise InputError("bubble_data needs the atlas")
    if correlations is None:
        if patterns is None:
            raise InputError("bubble_data needs patterns or a correlations table")
        correlations = region_correlations(patterns, atlas, **kwargs)
    owning = set(int(s) for s in atlas.region_ids)
    medium = pd.Index([s for s in atlas.medium_ids if s in owning])
    coarse_of = {m: atlas.acronym(atlas.parent(m)) for m in atlas.medium_ids}
    df = correlations[correlations["region_id"].isin(medium)].copy()
    order = atlas.ontology.loc[list(medium), "graph_order"].sort_values()
    x_of = {int(sid): x for x, sid in enumerate(order.index)}
    df["x"] = df["region_id"].map(x_of)
    df["coarse"] = df["region_id"].map(coarse_of)
    coarse = correlations[correlations["region_id"].isin(atlas.coarse_ids)]
    coarse_rank = {sid: i for i, sid in enumerate(atlas.coarse_ids)}
    best = coarse.loc[coarse.fillna({"r": -np.inf}).groupby("pattern_index")["r"].idxmax()]
    key = sorted(
        zip(best["pattern_index"], best["region_id"].map(coarse_rank), -best["r"], strict=True),
        key=lambda t: (t[1], t[2]),
    )
    y_of = {int(p): y for y, (p, _, _) in enumerate(key)}
    df["y"] = df["pattern_index"].map(y_of)
    return df.sort_values(["y", "x"]).reset_index(drop=True)
