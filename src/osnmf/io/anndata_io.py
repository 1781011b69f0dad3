"""AnnData ``.h5ad``: voxels as observations, experiments (genes) as variables.

Layout written by :func:`write_h5ad` (and expected by :func:`read_h5ad`):

- ``X``: float32 ``(n_voxels, n_experiments)``, NaN = missing;
- ``obs``: one row per brain voxel in :attr:`Atlas.brain_coords` order, named ``"ap_dv_ml"``,
  with column ``structure_id`` (the annotation at the voxel);
- ``obsm["spatial"]``: integer grid coordinates ``(n_voxels, 3)`` = (AP, DV, ML) indices (the
  scanpy/squidpy convention; multiply by ``uns["osnmf"]["spacing_um"]`` for micrometres);
- ``var_names``: experiment ids; ``var["gene_symbol"]``: the gene of each experiment;
- ``uns["osnmf"]``: ``grid_shape`` and ``spacing_um``.

The reader accepts any subset and order of voxels: they are placed by ``obsm["spatial"]``, and
voxels that are absent are missing (NaN).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from osnmf.atlas import Atlas
from osnmf.atomic import atomic_path, check_free_space
from osnmf.errors import InputError
from osnmf.expression import SpatialExpression
from osnmf.io.npz import check_volume_values


def write_h5ad(
    path: str | os.PathLike,
    expr: SpatialExpression,
    mask: np.ndarray | None = None,
    compression: str | None = None,
) -> Path:
    """Write ``expr`` as AnnData (voxels × experiments), atomically.

    Parameters
    ----------
    path : the ``.h5ad`` file.
    expr : expression data.
    mask : boolean ``(AP, DV, ML)`` of the voxels to write (default: the atlas brain mask).
    compression : HDF5 compression for the arrays (``"gzip"``, ``"lzf"`` or ``None``).
    """
    import anndata as ad
    import pandas as pd

    path = Path(path)
    atlas = expr.atlas
    mask = atlas.brain_mask if mask is None else np.asarray(mask, dtype=bool)
    coords = atlas.brain_coords if mask is atlas.brain_mask else np.argwhere(mask)
    X, _ = expr.to_matrix(mask)
    obs = pd.DataFrame(
        {"structure_id": atlas.annotation[mask].astype(np.int64)},
        index=pd.Index([f"{a}_{d}_{m}" for a, d, m in coords.tolist()], dtype=str),
    )
    var = pd.DataFrame(
        {"gene_symbol": pd.Series(expr.genes.tolist(), dtype=str).to_numpy()},
        index=pd.Index(expr.experiment_ids.tolist(), dtype=str),
    )
    adata = ad.AnnData(
        X=np.ascontiguousarray(X.T, dtype=np.float32),
        obs=obs,
        var=var,
        obsm={"spatial": coords.astype(np.int64)},
        uns={"osnmf": {"grid_shape": np.asarray(atlas.shape, dtype=np.int64),
                       "spacing_um": np.asarray(atlas.spacing_um, dtype=np.float64)}},
    )
    check_free_space(path, h5ad_bytes(adata))
    with atomic_path(path, suffix=".h5ad") as tmp:
        adata.write_h5ad(tmp, compression=compression)
    return path


def h5ad_bytes(adata) -> int:
    """An upper estimate of the bytes of ``adata`` as an ``.h5ad`` (its arrays uncompressed, plus 1 MiB)."""
    arrays = [adata.X, *adata.obsm.values(), *adata.varm.values()]
    return sum(int(np.asarray(a).nbytes) for a in arrays) + (1 << 20)


def read_h5ad(path: str | os.PathLike, atlas: Atlas | None = None) -> SpatialExpression:
    """Read AnnData with voxels as observations into a :class:`SpatialExpression`.

    Parameters
    ----------
    path : the ``.h5ad`` file.
    atlas : the grid's atlas (default :meth:`Atlas.default`); coordinates must lie inside its grid.

    Returns
    -------
    SpatialExpression; voxels not in the file are NaN (missing). Genes come from
    ``var["gene_symbol"]`` when present, else from the variable names.
    """
    import anndata as ad
    from scipy import sparse

    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise InputError(f"{source}: file not found")
    atlas = Atlas.default() if atlas is None else atlas
    try:
        adata = ad.read_h5ad(path)
    except Exception as exc:  # any failure of the HDF5/AnnData reader means a malformed file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{source}: not a readable .h5ad file ({first})") from None
    if "spatial" not in adata.obsm:
        raise InputError(f"{source}: no obsm['spatial'] with the voxels' (AP, DV, ML) grid coordinates, nor "
                         "obs x, y, z CCF millimetres of cells (for a cells × genes file give them, or --coords)")
    coords = np.asarray(adata.obsm["spatial"])
    if coords.ndim != 2 or coords.shape != (adata.n_obs, 3):
        raise InputError(f"{source}: obsm['spatial'] must be (n_voxels, 3) grid indices, got {coords.shape}")
    if coords.dtype.kind == "f":
        if not np.isfinite(coords).all() or not np.array_equal(coords, np.round(coords)):
            raise InputError(f"{source}: obsm['spatial'] must hold integer grid indices (AP, DV, ML)")
    elif coords.dtype.kind not in "iu":
        raise InputError(f"{source}: obsm['spatial'] must be numeric grid indices, got {coords.dtype}")
    coords = coords.astype(np.int64)
    outside = ((coords < 0) | (coords >= np.asarray(atlas.shape))).any(axis=1)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise InputError(
            f"{source}: {int(outside.sum())} voxel(s) outside the {atlas.shape} grid "
            f"(e.g. obs {adata.obs_names[i]!r} at {tuple(coords[i].tolist())})"
        )
    flat = np.ravel_multi_index(tuple(coords.T), atlas.shape)
    if np.unique(flat).size != flat.size:
        raise InputError(f"{source}: obsm['spatial'] lists some voxels more than once")
    X = adata.X
    if X is None:
        raise InputError(f"{source}: has no X matrix")
    X = X.toarray() if sparse.issparse(X) else np.asarray(X)
    values = check_volume_values(X, f"{source}:X", missing_sentinel=False)
    ids = np.asarray(adata.var_names, dtype=str)
    if len(set(ids.tolist())) != ids.size:
        raise InputError(f"{source}: variable names (experiment ids) are not unique")
    genes = np.asarray(adata.var["gene_symbol"], dtype=str) if "gene_symbol" in adata.var else ids
    volumes = np.full((ids.size, *atlas.shape), np.nan, dtype=np.float32)
    volumes.reshape(ids.size, -1)[:, flat] = values.T
    return SpatialExpression(volumes, genes, ids, atlas)
