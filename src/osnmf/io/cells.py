"""CCF-registered single cells (AnnData ``.h5ad``, cells × genes) onto the ISH grid.

Input layout (that of the Allen Brain Cell atlas' MERFISH releases):

- ``X``: cells × genes, dense or CSR, raw counts or log values (``values``: ``"auto"`` tells them
  apart by the first chunk: all non-negative integers are counts); genes from ``var["gene_symbol"]``
  or ``var_names``;
- CCF coordinates per cell in **millimetres** on Allen CCFv3 axes (x anterior→posterior,
  y dorsal→ventral, z left→right): ``obs`` columns ``x``, ``y``, ``z``, or a CSV
  (``coords=``, columns ``cell_label, x, y, z``, joined on ``obs_names``: the atlas'
  ``ccf_coordinates.csv``);
- optional cell-type labels in an ``obs`` column (default ``subclass``, else ``class``).

The mapping: a cell at ``(x, y, z)`` mm lies in grid voxel
``(AP, DV, ML) = round(1000 * (x, y, z) / spacing_um)``: voxel ``i`` is centred at ``i·s`` mm and
covers ``[(i − ½)·s, (i + ½)·s)`` (``s`` = 0.2 mm on the ISH grid), as the Allen grids sample the
13.2 × 8.0 × 11.4 mm CCF box at both its ends (67 × 41 × 58 = 66 + 1, 40 + 1, 57 + 1 voxels). The
check: the grid annotation is mirror-symmetric about ML 28.5 voxels = 5.7 mm, CCFv3's midline
(tests/test_cells.py). Cells without coordinates or outside the grid are counted and dropped (one
warning line).

The file is read by rows in chunks (``chunk_cells``), never whole: memory is the per-cell voxel
index and label codes (a few bytes per cell), one chunk, and the per-voxel sums.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osnmf.atlas import Atlas
from osnmf.atomic import atomic_path
from osnmf.errors import InputError, OsnmfWarning
from osnmf.expression import SpatialExpression

__all__ = ["CELL_VALUES", "CellFile", "Grid", "bin_cells", "ccf_to_voxel", "cell_labels", "has_cell_coordinates",
           "iter_cell_chunks", "open_cells", "read_cells", "write_cells_h5ad"]

CELL_VALUES = ("auto", "counts", "log")
TYPE_KEYS = ("subclass", "class")  # the default cell-type columns, first found wins
UM_FACTOR = 10.0  # a median coordinate this many grid extents away: the file is in µm, not mm
CHUNK_CELLS = 100_000


def _h5py():
    import h5py

    return h5py


def has_cell_coordinates(path: str | os.PathLike) -> bool:
    """Whether the ``.h5ad`` at ``path`` is a cells file: ``obs`` has columns ``x``, ``y`` and ``z``."""
    try:
        with _h5py().File(path, "r") as f:
            obs = f.get("obs")
            return obs is not None and all(c in obs for c in ("x", "y", "z"))
    except OSError:
        return False


def ccf_to_voxel(xyz_mm: np.ndarray, shape: tuple[int, int, int], spacing_um) -> tuple[np.ndarray, np.ndarray]:
    """CCF millimetres ``(n, 3)`` (x AP, y DV, z ML) → grid indices ``(n, 3)`` int64 and ``inside`` (n,) bool.

    ``index = floor(1000 * mm / spacing_um + 1/2)`` (voxel ``i`` centred at ``i · spacing``); non-finite
    coordinates and indices outside ``shape`` are not ``inside`` (their index row is -1).
    """
    xyz = np.asarray(xyz_mm, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        scaled = np.floor(xyz * 1000.0 / np.asarray(spacing_um, dtype=np.float64) + 0.5)
    finite = np.isfinite(scaled).all(axis=1)
    idx = np.full(xyz.shape, -1, dtype=np.int64)
    idx[finite] = scaled[finite].astype(np.int64)
    inside = finite & ((idx >= 0) & (idx < np.asarray(shape))).all(axis=1)
    idx[~inside] = -1
    return idx, inside


@dataclass(frozen=True)
class Grid:
    """A grid without an annotation: what :func:`open_cells` needs of an :class:`Atlas`."""

    shape: tuple[int, int, int]
    spacing_um: tuple[float, float, float]


@dataclass
class CellFile:
    """An opened cells ``.h5ad``: what its ``obs`` / ``var`` say, per cell a few bytes.

    Attributes
    ----------
    path : the file.
    genes : gene symbol per column of ``X`` (n_genes,); ids : ``var_names`` (n_genes,).
    n_cells : rows of ``X``.
    voxel : int64 (n_cells,) flat grid index of each cell's voxel, -1 for a dropped cell.
    type_codes : int (n_cells,) index into ``type_names`` (-1: no label), or None without labels.
    type_names : the cell types (categories); type_key : the ``obs`` column they came from.
    values : ``"counts"`` (log1p applied when read) or ``"log"`` (used as they are).
    n_no_coordinates, n_outside : cells dropped for either reason.
    shape : the grid (AP, DV, ML).
    """

    path: Path
    genes: np.ndarray
    ids: np.ndarray
    n_cells: int
    voxel: np.ndarray
    type_codes: np.ndarray | None
    type_names: list[str]
    type_key: str | None
    values: str
    n_no_coordinates: int
    n_outside: int
    shape: tuple[int, int, int]

    @property
    def kept(self) -> np.ndarray:
        """bool (n_cells,): cells with a voxel inside the grid."""
        return self.voxel >= 0


def _obs_column(obs, name: str):
    from anndata.io import read_elem

    return read_elem(obs[name])


def _obs_names(obs) -> np.ndarray:
    """The index of ``obs`` (or ``var``) as read: an object array of str (no fixed-width copy)."""
    from anndata.io import read_elem

    names = np.asarray(read_elem(obs[obs.attrs["_index"]]))
    return names if names.dtype == object else names.astype(str).astype(object)


def cell_labels(cells: CellFile, rows: np.ndarray | None = None) -> np.ndarray:
    """The ``obs_names`` of the cells file (of ``rows`` only, when given): an object array of str."""
    with _h5py().File(cells.path, "r") as f:
        names = _obs_names(f["obs"])
    return names if rows is None else names[rows]


def _coordinate_chunks(f, source: str, coords: str | os.PathLike | None, chunk: int) -> Iterator[np.ndarray]:
    """(rows, 3) float64 mm per chunk of cells, NaN where a cell has none; obs columns read by slices."""
    obs = f["obs"]
    if coords is None:
        if not all(c in obs for c in ("x", "y", "z")):
            raise InputError(f"{source}: no CCF coordinates: obs has no x, y, z columns (mm); give --coords "
                             "FILE (a CSV with cell_label, x, y, z, as the atlas' ccf_coordinates.csv)")
        columns = [obs[c] if isinstance(obs[c], _h5py().Dataset) else np.asarray(_obs_column(obs, c))
                   for c in ("x", "y", "z")]
        n = columns[0].shape[0]
        for start in range(0, n, chunk):
            yield np.column_stack([np.asarray(c[start:start + chunk], dtype=np.float64) for c in columns])
        return
    import pandas as pd

    coords = Path(coords)
    if not coords.is_file():
        raise InputError(f"--coords {coords}: file not found")
    try:
        table = pd.read_csv(coords, usecols=["cell_label", "x", "y", "z"], dtype={"cell_label": str})
    except ValueError as exc:
        raise InputError(f"--coords {coords}: needs columns cell_label, x, y, z ({exc})") from None
    table = table.drop_duplicates("cell_label").set_index("cell_label")
    joined = table.reindex(pd.Index(_obs_names(obs)))[["x", "y", "z"]].to_numpy(dtype=np.float64)
    del table
    for start in range(0, joined.shape[0], chunk):
        yield joined[start:start + chunk]


def _check_units(xyz: np.ndarray, shape, spacing_um, source: str) -> None:
    extent = np.asarray(shape) * np.asarray(spacing_um) / 1000.0
    finite = np.isfinite(xyz).all(axis=1)
    median = np.median(xyz[finite], axis=0)
    if (np.abs(median) > UM_FACTOR * extent).any():
        shown, spans = ", ".join(f"{m:,.0f}" for m in median), ", ".join(f"{e:.1f}" for e in extent)
        raise InputError(f"{source}: CCF coordinates look like micrometres (median x, y, z = {shown}; the grid "
                         f"spans {spans} mm); give them in millimetres (divide by 1000)")


def _cell_types(obs, key: str | None, source: str):
    import pandas as pd

    if key is None:
        key = next((k for k in TYPE_KEYS if k in obs), None)
        if key is None:
            return None, [], None
    elif key not in obs:
        cols = sorted(k for k in obs if k != obs.attrs.get("_index"))
        raise InputError(f"{source}: --cell-type-key {key!r} is not an obs column; columns: "
                         f"{', '.join(cols[:12])}{' …' if len(cols) > 12 else ''}")
    column = _obs_column(obs, key)
    cat = column if isinstance(column, pd.Categorical) else pd.Categorical(np.asarray(column).astype(str))
    return np.asarray(cat.codes, dtype=np.int32), [str(c) for c in cat.categories], key


def open_cells(path: str | os.PathLike, atlas: Atlas | Grid | None = None, coords: str | os.PathLike | None = None,
               cell_type_key: str | None = None, values: str = "auto") -> CellFile:
    """Read the ``obs`` / ``var`` of a cells ``.h5ad`` and place every cell on ``atlas``' grid
    (an :class:`Atlas` or a :class:`Grid`; default :meth:`Atlas.default`).

    Raises :class:`InputError` (one line) for no coordinates, coordinates in µm, an unknown
    ``cell_type_key``, no readable ``X``; warns (:class:`OsnmfWarning`, one line) about the cells
    dropped for lack of coordinates or outside the grid.
    """
    path = Path(path)
    source = str(path)
    atlas = Atlas.default() if atlas is None else atlas
    if values not in CELL_VALUES:
        raise InputError(f"--cell-values {values!r}: choose one of {', '.join(CELL_VALUES)}")
    if not path.is_file():
        raise InputError(f"{source}: file not found")
    try:
        f = _h5py().File(path, "r")
    except OSError as exc:
        raise InputError(f"{source}: not a readable .h5ad file ({exc})") from None
    with f:
        if "obs" not in f or "var" not in f or "X" not in f:
            raise InputError(f"{source}: not an AnnData file (needs obs, var and X)")
        parts, no_coords, n_outside, checked = [], 0, 0, False
        for xyz in _coordinate_chunks(f, source, coords, CHUNK_CELLS):
            missing = int((~np.isfinite(xyz).all(axis=1)).sum())
            if not checked and missing < xyz.shape[0]:  # the units, from the first cells with coordinates
                _check_units(xyz, atlas.shape, atlas.spacing_um, source)
                checked = True
            idx, inside = ccf_to_voxel(xyz, atlas.shape, atlas.spacing_um)
            no_coords, n_outside = no_coords + missing, n_outside + int((~inside).sum()) - missing
            part = np.full(idx.shape[0], -1, dtype=np.int64)
            part[inside] = np.ravel_multi_index(tuple(idx[inside].T), atlas.shape)
            parts.append(part)
        if not checked:
            raise InputError(f"{source}: no cell has finite CCF coordinates x, y, z")
        voxel = np.concatenate(parts)
        del parts
        inside = voxel >= 0
        codes, names, key = _cell_types(f["obs"], cell_type_key, source)
        var = f["var"]
        ids = np.asarray(_obs_names(var), dtype=str)
        genes = np.asarray(_obs_column(var, "gene_symbol"), dtype=str) if "gene_symbol" in var else ids
        n_rows = _x_shape(f["X"], source)[0]
    if n_rows != voxel.size:
        raise InputError(f"{source}: X has {n_rows} rows but obs {voxel.size} cells")
    if len(set(ids.tolist())) != ids.size:
        raise InputError(f"{source}: var_names (the gene columns) are not unique; make them unique "
                         "(e.g. AnnData.var_names_make_unique) and keep the symbols in var['gene_symbol']")
    if not inside.any():
        raise InputError(f"{source}: none of the {voxel.size} cells lies inside the {atlas.shape} grid "
                         f"({atlas.spacing_um[0]:g} µm voxels); are x, y, z CCFv3 millimetres?")
    if no_coords or n_outside:
        warnings.warn(f"{source}: {no_coords} cell(s) without coordinates and {n_outside} outside the grid "
                      f"were dropped ({int(inside.sum())} of {voxel.size} kept)", OsnmfWarning, stacklevel=2)
    cells = CellFile(path, genes, ids, voxel.size, voxel, codes, names, key, values, no_coords, n_outside,
                     atlas.shape)
    if values == "auto":
        first = next(_raw_chunks(cells, 5000), np.zeros((0, genes.size), np.float32))
        finite = first[np.isfinite(first)]
        cells.values = "counts" if finite.size and np.array_equal(finite, np.round(finite)) else "log"
    return cells


def _x_shape(X, source: str) -> tuple[int, int]:
    h5py = _h5py()
    if isinstance(X, h5py.Dataset):
        return tuple(X.shape)
    kind = X.attrs.get("encoding-type", "")
    if kind != "csr_matrix":
        raise InputError(f"{source}: X is stored as {kind or 'an unknown group'}; store it dense or CSR "
                         "(cells as rows)")
    return tuple(int(s) for s in X.attrs["shape"])


def _raw_chunks(cells: CellFile, chunk_cells: int) -> Iterator[np.ndarray]:
    """float32 rows of ``X`` as stored, ``chunk_cells`` at a time (all cells, dropped ones too)."""
    with _h5py().File(cells.path, "r") as f:
        X = f["X"]
        dense = isinstance(X, _h5py().Dataset)
        if not dense:
            from anndata.io import sparse_dataset

            X = sparse_dataset(X)
        for start in range(0, cells.n_cells, chunk_cells):
            block = X[start:start + chunk_cells]
            yield np.asarray(block if dense else block.toarray(), dtype=np.float32)


def iter_cell_chunks(cells: CellFile, chunk_cells: int = CHUNK_CELLS) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, values)`` per chunk of rows: float32 ``(rows, n_genes)``, log1p applied to counts.

    Raises :class:`InputError` on negative or non-finite values.
    """
    start = 0
    for block in _raw_chunks(cells, chunk_cells):
        if not np.isfinite(block).all() or (block < 0).any():
            raise InputError(f"{cells.path}: X has negative or non-finite values in rows {start}-"
                             f"{start + block.shape[0] - 1}; give raw counts or log expression (>= 0)")
        if cells.values == "counts":
            np.log1p(block, out=block)
        yield start, block
        start += block.shape[0]


def bin_cells(cells: CellFile, atlas: Atlas, min_cells: int = 3, chunk_cells: int = CHUNK_CELLS) -> SpatialExpression:
    """Per gene the mean over each voxel's cells; voxels with fewer than ``min_cells`` cells are NaN.

    Returns a :class:`SpatialExpression` (one "experiment" per gene column; NaN where too few cells,
    0 outside the brain where there are none).
    """
    if min_cells < 1:
        raise InputError(f"--min-cells {min_cells}: must be >= 1")
    occupied, compact = np.unique(cells.voxel[cells.kept], return_inverse=True)
    where = np.full(cells.n_cells, -1, dtype=np.int64)
    where[cells.kept] = compact
    sums = np.zeros((occupied.size, cells.genes.size), dtype=np.float64)
    counts = np.bincount(compact, minlength=occupied.size)
    for start, block in iter_cell_chunks(cells, chunk_cells):
        w = where[start:start + block.shape[0]]
        rows = np.flatnonzero(w >= 0)
        rows = rows[np.argsort(w[rows], kind="stable")]  # the chunk's kept cells, grouped by voxel
        w = w[rows]
        if w.size:
            heads = np.flatnonzero(np.r_[True, w[1:] != w[:-1]])
            sums[w[heads]] += np.add.reduceat(block[rows], heads, axis=0, dtype=np.float64)
    enough = counts >= min_cells
    sums /= np.maximum(counts, 1)[:, None]  # in place: the means
    volumes = np.full((cells.genes.size, int(np.prod(atlas.shape))), np.nan, dtype=np.float32)
    volumes[:, ~atlas.brain_mask.ravel()] = 0.0
    volumes[:, occupied] = np.nan
    volumes[:, occupied[enough]] = sums[enough].T
    del sums
    return SpatialExpression(volumes.reshape(cells.genes.size, *atlas.shape), cells.genes, cells.ids, atlas)


def read_cells(path: str | os.PathLike, atlas: Atlas | None = None, coords: str | os.PathLike | None = None,
               min_cells: int = 3, values: str = "auto", chunk_cells: int = CHUNK_CELLS) -> SpatialExpression:
    """A cells ``.h5ad`` binned onto ``atlas``' grid (:func:`open_cells`, then :func:`bin_cells`)."""
    atlas = Atlas.default() if atlas is None else atlas
    cells = open_cells(path, atlas, coords=coords, values=values)
    return bin_cells(cells, atlas, min_cells=min_cells, chunk_cells=chunk_cells)


def write_cells_h5ad(path: str | os.PathLike, obs, var, chunks: Iterator[np.ndarray], n_cells: int,
                     compression: str | None = None, obsm: dict | None = None) -> Path:
    """Write an AnnData ``.h5ad`` whose dense float32 ``X`` (n_cells, len(var)) comes in row chunks, atomically.

    ``obs`` / ``var``: pandas DataFrames (their index: obs_names / var_names); ``chunks``: arrays of
    rows in order, summing to ``n_cells``; ``obsm``: small per-cell arrays written whole.
    """
    from anndata.io import write_elem

    path = Path(path)
    n_genes = len(var)
    with atomic_path(path, suffix=".h5ad") as tmp, _h5py().File(tmp, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        write_elem(f, "obs", obs)
        write_elem(f, "var", var)
        for name in ("uns", "varm", "obsp", "varp", "layers"):
            write_elem(f, name, {})
        write_elem(f, "obsm", obsm or {})
        X = f.create_dataset("X", shape=(n_cells, n_genes), dtype="float32", compression=compression,
                             chunks=(max(1, min(n_cells, max(1, 2**20 // max(n_genes, 1)))), max(n_genes, 1))
                             if n_cells and n_genes else None)
        X.attrs["encoding-type"], X.attrs["encoding-version"] = "array", "0.2.0"
        start = 0
        for block in chunks:
            X[start:start + block.shape[0]] = block
            start += block.shape[0]
        if start != n_cells:
            raise InputError(f"{path}: {start} rows written for {n_cells} cells")
    return path
