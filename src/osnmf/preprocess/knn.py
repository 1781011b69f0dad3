"""kNN imputation of missing voxels, vectorised across experiments (spec section 2).

For every experiment, each missing voxel inside ``support`` gets the inverse-distance-weighted mean
of its ``k`` nearest *observed* voxels inside ``support`` (Euclidean distance in micrometres). This
is the model of the seed paper's reference code, which fits a scikit-learn
``KNeighborsRegressor(n_neighbors=6, weights="distance")`` per gene on voxel coordinates.

**Tie rule.** On a regular grid many candidates share the same distance. When the k-th nearest
distance ``d_k`` is shared by several observed voxels, *every* observed voxel with distance
``<= d_k`` enters the weighted mean (order independent; scikit-learn instead keeps an arbitrary
subset of the tied candidates, chosen by its tree traversal). Wherever the k nearest are
unambiguous the two agree to float rounding. Distances count as equal when their squares agree to
a relative 1e-9.

**Algorithm.** Neighbour offsets of the grid are precomputed once, grouped into *shells* of equal
physical distance and sorted outwards. Missing voxels of a chunk of experiments are gathered as
one flat index into a NaN-padded copy of the chunk; each shell adds its observed values (one
weight per shell) to every still-open query, and a query closes at the first shell where its
count of observed neighbours reaches ``k`` -- that shell holds all ties at ``d_k``. A query starts
at the first shell no nearer than the nearest grid plane (along each axis) that holds an observed
voxel, which skips the empty shells inside whole missing coronal sections. Queries still
open after the last precomputed shell (deep holes, e.g. whole missing coronal sections) are
answered exactly by a KD-tree on that experiment's observed voxels, so the result is always exact.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np
from scipy.spatial import cKDTree

from osnmf.constraints import POSITIVE, Interval
from osnmf.errors import InputError
from osnmf.preprocess.common import check_spacing, check_volumes, chunk_slices, run_chunks

__all__ = ["impute_knn", "default_support", "neighbour_shells", "knn_fill"]

_TIE_RTOL = 1e-9


@dataclass(frozen=True)
class Shell:
    """Grid offsets at one physical distance from the centre voxel.

    Attributes
    ----------
    distance_um : the common distance (µm).
    offsets : int ``(m, 3)`` offsets along (AP, DV, ML) in voxels.
    """

    distance_um: float
    offsets: np.ndarray


def neighbour_shells(spacing_um: Sequence[float], max_radius_um: float) -> list[Shell]:
    """All non-zero grid offsets within ``max_radius_um``, grouped by equal distance, nearest first.

    Parameters
    ----------
    spacing_um : voxel size along (AP, DV, ML) in µm.
    max_radius_um : include every offset whose physical length is ``<= max_radius_um``.

    Returns
    -------
    list of :class:`Shell`, sorted by increasing distance; together they hold the complete ball.
    """
    spacing = np.asarray(check_spacing(spacing_um))
    reach = np.floor(max_radius_um / spacing + 1e-9).astype(int)
    axes = [np.arange(-r, r + 1) for r in reach]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    d2 = ((grid * spacing) ** 2).sum(axis=1)
    keep = (d2 > 0) & (d2 <= max_radius_um**2 * (1 + _TIE_RTOL))
    grid, d2 = grid[keep], d2[keep]
    # group equal distances: round the squared distance relative to the smallest voxel area
    unit = float(spacing.min() ** 2)
    key = np.round(d2 / unit, 6)
    order = np.lexsort((grid[:, 2], grid[:, 1], grid[:, 0], key))
    grid, key, d2 = grid[order], key[order], d2[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    bounds = np.r_[starts, key.size]
    return [
        Shell(float(np.sqrt(d2[a])), grid[a:b].copy())
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def _kdtree_fill(
    observed_coords: np.ndarray, observed_values: np.ndarray, query_coords: np.ndarray, k: int
) -> np.ndarray:
    """Exact tie-inclusive IDW kNN for a few queries of one experiment (physical coordinates)."""
    n_obs = observed_coords.shape[0]
    out = np.full(query_coords.shape[0], np.nan)
    if n_obs == 0 or query_coords.shape[0] == 0:
        return out
    k = min(k, n_obs)
    tree = cKDTree(observed_coords)
    extra = min(n_obs, max(4 * k, k + 32))
    dist, idx = tree.query(query_coords, k=extra)
    dist = dist.reshape(query_coords.shape[0], extra)
    idx = idx.reshape(query_coords.shape[0], extra)
    dk = dist[:, k - 1]
    within = dist <= dk[:, None] * (1 + _TIE_RTOL)
    # a tie run that fills all `extra` columns may continue: redo those rows with a ball query
    overflow = within[:, -1] & (extra < n_obs)
    good = ~overflow
    w = np.where(within[good], 1.0 / np.maximum(dist[good], 1e-300), 0.0)
    out[good] = (w * observed_values[idx[good]]).sum(axis=1) / w.sum(axis=1)
    for row in np.flatnonzero(overflow):
        members = np.asarray(tree.query_ball_point(query_coords[row], r=dk[row] * (1 + _TIE_RTOL)))
        d = np.linalg.norm(observed_coords[members] - query_coords[row], axis=1)
        w = 1.0 / d
        out[row] = (w * observed_values[members]).sum() / w.sum()
    return out


def knn_fill(
    volumes: np.ndarray,
    support: np.ndarray,
    queries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    n_neighbors: int = 6,
    spacing_um: Sequence[float] = (200.0, 200.0, 200.0),
    max_radius_vox: float = 10.0,
    shells: list[Shell] | None = None,
    workspace: dict | None = None,
) -> np.ndarray:
    """IDW kNN estimates at given voxels from the observed in-support voxels of each experiment.

    The query voxels themselves are treated as unobserved (so this also serves hold-out checks).

    Parameters
    ----------
    volumes : float32 ``(n, AP, DV, ML)``, NaN = missing.
    support : bool ``(AP, DV, ML)``; only observed voxels inside it are neighbours.
    queries : four int arrays ``(experiment, ap, dv, ml)`` of equal length ``q``.
    n_neighbors : k.
    spacing_um : voxel size (µm) along (AP, DV, ML).
    max_radius_vox : radius (in units of the smallest voxel side) of the precomputed shells;
        farther queries go to the exact KD-tree fallback.
    shells : precomputed :func:`neighbour_shells` (optional).
    workspace : a dict to keep the NaN-padded buffer in between calls with the same grid and
        support (saves re-allocating it for every chunk); not shared between threads.

    Returns
    -------
    float64 ``(q,)`` estimates; NaN where the experiment has no observed voxel in the support.
    """
    spacing = check_spacing(spacing_um)
    if shells is None:
        shells = neighbour_shells(spacing, max_radius_vox * min(spacing))
    e_q, i_q, j_q, l_q = (np.asarray(a, dtype=np.intp) for a in queries)
    n_q = e_q.size
    result = np.full(n_q, np.nan)
    if n_q == 0:
        return result
    n_exp = volumes.shape[0]
    pad = (
        np.max(np.abs(np.concatenate([s.offsets for s in shells])), axis=0)
        if shells
        else np.zeros(3, int)
    )
    shape = np.asarray(volumes.shape[1:]) + 2 * pad
    padded = None
    if workspace is not None and workspace.get("shape") == tuple(shape):
        if np.array_equal(workspace["support"], support):
            padded = workspace["padded"]
    if padded is None or padded.shape[0] < n_exp:
        padded = np.full((n_exp, *shape), np.nan, dtype=np.float32)
        if workspace is not None:
            workspace.update(shape=tuple(shape), support=support.copy(), padded=padded)
    padded = padded[:n_exp]  # outside the support it is all NaN; inside it is overwritten below
    a, d, m = volumes.shape[1:]
    inner = padded[:, pad[0] : pad[0] + a, pad[1] : pad[1] + d, pad[2] : pad[2] + m]
    np.copyto(inner, volumes, where=support[None])
    inner[e_q, i_q, j_q, l_q] = np.nan  # queries never see themselves
    flat = padded.reshape(-1)
    strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.intp)
    lin_all = ((e_q * shape[0] + i_q + pad[0]) * shape[1] + j_q + pad[1]) * shape[2] + l_q + pad[2]
    # skip the shells that provably hold no observed voxel: a query can be no closer to an
    # observed voxel than to the nearest grid plane (along each axis) that holds one
    lower = _plane_lower_bound(~np.isnan(inner), (e_q, i_q, j_q, l_q), spacing)
    shell_d = np.array([sh.distance_um for sh in shells])
    first = np.searchsorted(shell_d, lower * (1 - _TIE_RTOL), side="left")
    order = np.argsort(first, kind="stable")
    entry = np.searchsorted(first[order], np.arange(len(shells) + 1), side="left")
    open_ = np.zeros(0, dtype=np.intp)
    lin = np.zeros(0, dtype=np.intp)
    num = np.zeros(0)
    den = np.zeros(0)
    cnt = np.zeros(0, dtype=np.int64)
    for index, shell in enumerate(shells):
        new = order[entry[index] : entry[index + 1]]
        if new.size:
            open_ = np.concatenate([open_, new])
            lin = np.concatenate([lin, lin_all[new]])
            num = np.concatenate([num, np.zeros(new.size)])
            den = np.concatenate([den, np.zeros(new.size)])
            cnt = np.concatenate([cnt, np.zeros(new.size, dtype=np.int64)])
        if open_.size == 0:
            continue
        deltas = shell.offsets @ strides
        vals = flat[lin[:, None] + deltas]
        obs = ~np.isnan(vals)
        c = obs.sum(axis=1)
        s = np.where(obs, vals, 0).sum(axis=1, dtype=np.float64)
        w = 1.0 / shell.distance_um
        num += s * w
        den += c * w
        cnt += c
        done = cnt >= n_neighbors
        if done.any():
            result[open_[done]] = num[done] / den[done]
            keep = ~done
            open_, lin, num, den, cnt = open_[keep], lin[keep], num[keep], den[keep], cnt[keep]
    open_ = np.concatenate([open_, order[entry[len(shells)] :]])
    if open_.size:
        spacing_arr = np.asarray(spacing)
        coords_q = np.stack([i_q[open_], j_q[open_], l_q[open_]], axis=1)
        for e in np.unique(e_q[open_]):
            sel = e_q[open_] == e
            vol = inner[e]
            obs_idx = np.argwhere(~np.isnan(vol))
            result[open_[sel]] = _kdtree_fill(
                obs_idx * spacing_arr,
                vol[tuple(obs_idx.T)].astype(np.float64),
                coords_q[sel] * spacing_arr,
                n_neighbors,
            )
    return result


def _plane_lower_bound(observed: np.ndarray, queries, spacing) -> np.ndarray:
    """Per query, the distance (µm) to the nearest grid plane holding an observed voxel.

    ``observed`` is bool ``(n, AP, DV, ML)``; the bound is the largest over the three axes (inf
    where an experiment has no observed voxel). Whole missing coronal sections make it large.
    """
    e_q = queries[0]
    bound = np.zeros(e_q.size)
    for axis in range(3):
        other = tuple(a for a in (1, 2, 3) if a != axis + 1)
        has = observed.any(axis=other)  # (n, L)
        pos = np.arange(has.shape[1])
        gap = np.abs(pos[:, None] - pos[None, :]).astype(float)  # (L, L)
        dist = np.where(has[:, None, :], gap[None], np.inf).min(axis=2)  # (n, L)
        bound = np.maximum(bound, dist[e_q, queries[axis + 1]] * spacing[axis])
    return bound


def impute_knn(
    volumes,
    support: np.ndarray,
    n_neighbors: int = 6,
    spacing_um: Sequence[float] | None = None,
    chunk: int = 32,
    n_jobs: int = 1,
    max_radius_vox: float = 10.0,
    inplace: bool = False,
    progress: bool = False,
):
    """Fill missing voxels inside ``support`` with the IDW mean of their k nearest observed voxels.

    Parameters
    ----------
    volumes : float ``(n_experiments, AP, DV, ML)`` with NaN for missing, or a
        :class:`~osnmf.expression.SpatialExpression` (then a new one is returned).
    support : bool ``(AP, DV, ML)``: voxels to fill and the only voxels used as neighbours
        (see :func:`default_support`).
    n_neighbors : k (the paper: 6). Ties at the k-th distance are all included (module docstring).
    spacing_um : voxel size (µm) along (AP, DV, ML); default the atlas spacing of a
        SpatialExpression, else 200 µm isotropic.
    chunk : experiments processed together (memory ~ ``chunk`` × 1.3 MB on the Allen grid plus
        the queries' working arrays).
    n_jobs : threads working on different chunks.
    max_radius_vox : radius of the precomputed neighbour shells in voxels; queries whose k-th
        neighbour is farther use an exact per-experiment KD-tree.
    inplace : write into ``volumes`` (must be a writable float array) instead of a copy.
    progress : show a rich progress bar over chunks.

    Returns
    -------
    Same type as ``volumes``: missing voxels inside ``support`` filled (NaN stays only where an
    experiment has no observed voxel in the support); voxels outside ``support`` untouched.
    """
    from osnmf.expression import SpatialExpression

    expr = volumes if isinstance(volumes, SpatialExpression) else None
    if expr is not None:
        volumes = expr.volumes
        if spacing_um is None:
            spacing_um = expr.atlas.spacing_um
    spacing = check_spacing((200.0, 200.0, 200.0) if spacing_um is None else spacing_um)
    n_neighbors, chunk = POSITIVE.check("n_neighbors", n_neighbors), POSITIVE.check("chunk", chunk)
    volumes, support = check_volumes(volumes, support)
    out = volumes if inplace else volumes.copy()
    shells = neighbour_shells(spacing, max_radius_vox * min(spacing))
    local = threading.local()

    def work(sl: slice) -> None:
        if not hasattr(local, "workspace"):
            local.workspace = {}
        block = out[sl]
        e, i, j, l = np.nonzero(np.isnan(block) & support[None])
        if e.size:
            block[e, i, j, l] = knn_fill(
                block,
                support,
                (e, i, j, l),
                int(n_neighbors),
                spacing,
                shells=shells,
                workspace=local.workspace,
            )

    slices = list(chunk_slices(out.shape[0], int(chunk)))
    run_chunks(work, slices, n_jobs, progress, "kNN imputation")
    if expr is not None:
        return SpatialExpression(out, expr.genes, expr.experiment_ids, expr.atlas, expr.planes)
    return out


def default_support(
    volumes, brain_mask: np.ndarray, max_missing: float = 0.95, chunk: int = 256
) -> np.ndarray:
    """Brain voxels that are *not* missing in ``>= max_missing`` of the experiments (the reference).

    Parameters
    ----------
    volumes : float ``(n_experiments, AP, DV, ML)`` with NaN for missing (or a SpatialExpression).
    brain_mask : bool ``(AP, DV, ML)``.
    max_missing : a voxel leaves the support when its missing fraction is ``>= max_missing``.
    chunk : experiments counted at a time (bounds memory).

    Returns
    -------
    bool ``(AP, DV, ML)``.
    """
    from osnmf.expression import SpatialExpression

    if isinstance(volumes, SpatialExpression):
        volumes = volumes.volumes
    volumes, brain_mask = check_volumes(volumes, brain_mask)
    Interval(Real, 0, 1, closed="right").check("max_missing", max_missing)
    if volumes.shape[0] == 0:
        raise InputError("no experiments: cannot compute a support")
    missing = np.zeros(volumes.shape[1:], dtype=np.int64)
    for sl in chunk_slices(volumes.shape[0], chunk):
        missing += np.isnan(volumes[sl]).sum(axis=0)
    return brain_mask & (missing / volumes.shape[0] < max_missing)
