"""A synthetic CCF-registered cell atlas from the phantom: :func:`make_cells`.

The model, from a :class:`~osnmf.datasets.phantom_parts.Phantom` with K planted patterns
``P`` (K × brain voxels, max 1) and gene coefficients ``A`` (genes × K):

- cells sit at a uniform density in the brain (each cell in a brain voxel drawn uniformly), at a
  uniform position inside the voxel (the jitter; voxel ``i`` spans ``(i ± ½) · spacing``, see
  :mod:`osnmf.io.cells`);
- a cell in voxel ``v`` is of planted type ``k`` with probability ``w · P[k, v]``
  (``w = 1 / max_v Σ_k P[k, v]``), else of type ``"Other"``: so type ``k``'s cells are placed by
  pattern ``k``'s density, and the share of type ``k`` among a voxel's cells is linear in ``P[k, v]``;
- a type-``k`` cell's counts are Poisson with mean ``depth · A[g, k] / max_g A[g, k]``; an
  ``"Other"`` cell's are Poisson(``other_rate``) for every gene.

Written as the Allen Brain Cell atlas lays out MERFISH cells (see :mod:`osnmf.io.cells`): ``X``
counts (float32, cells × genes), ``var_names`` = gene symbols (and ``var["gene_symbol"]``),
``obs`` ``x, y, z`` CCF millimetres (x AP, y DV, z ML), ``subclass`` (the type) and
``structure_id`` (the grid annotation at the cell's voxel), or the coordinates in a separate
``ccf_coordinates.csv`` (``cell_label, x, y, z``). Everything comes from one seeded Generator.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osnmf.atlas import Atlas
from osnmf.atomic import atomic_path
from osnmf.datasets.phantom import make_phantom
from osnmf.datasets.phantom_parts import Phantom
from osnmf.errors import ConfigError

__all__ = ["OTHER", "SyntheticCells", "make_cells", "type_names"]

OTHER = "Other"


def type_names(n_patterns: int) -> list[str]:
    """The planted cell types: ``Type01`` … (type ``k`` follows pattern ``k``), then :data:`OTHER`."""
    return [f"Type{k + 1:02d}" for k in range(n_patterns)] + [OTHER]


@dataclass
class SyntheticCells:
    """A synthetic cell atlas and its truth.

    Attributes
    ----------
    phantom : the phantom it was drawn from (patterns, gene coefficients, atlas).
    path : the ``.h5ad`` written (None when not written); coords_path : the CSV, when written.
    n_cells : cells drawn; type_names : type of each code (``Type01`` … then ``Other``).
    types : int (n_cells,) type code (K = Other); voxel : int (n_cells,) flat grid index.
    xyz_mm : float64 (n_cells, 3) CCF coordinates.
    """

    phantom: Phantom
    path: Path | None
    coords_path: Path | None
    n_cells: int
    type_names: list[str]
    types: np.ndarray
    voxel: np.ndarray
    xyz_mm: np.ndarray


def _draw_chunk(rng, n, flat_brain, share, other, means, other_rate, spacing_mm, shape):
    """One chunk of cells: (voxel flat, type codes, xyz mm, counts float32 (n, genes))."""
    K = share.shape[0]
    pick = rng.integers(0, flat_brain.size, size=n)
    probs = np.vstack([share[:, pick], other[pick][None]])  # (K + 1, n)
    cum = np.cumsum(probs, axis=0)
    u = rng.random(n) * cum[-1]
    types = (u[None] >= cum).sum(axis=0).astype(np.int32)
    types = np.minimum(types, K)
    voxel = flat_brain[pick]
    idx = np.column_stack(np.unravel_index(voxel, shape)).astype(np.float64)
    xyz = (idx + rng.random((n, 3)) - 0.5) * spacing_mm  # voxel i is centred at i · spacing
    rates = np.vstack([means, np.full((1, means.shape[1]), other_rate)])[types]  # (n, genes)
    counts = rng.poisson(rates).astype(np.float32)
    return voxel, types, xyz, counts


def make_cells(
    path: str | os.PathLike | None = None,
    n_cells: int = 50_000,
    phantom: Phantom | None = None,
    n_genes: int = 60,
    n_patterns: int = 4,
    depth: float = 8.0,
    other_rate: float = 0.0,
    seed: int | None = 0,
    atlas: Atlas | None = None,
    coords_csv: bool = False,
    parcellation: bool = True,
    chunk_cells: int = 200_000,
    compression: str | None = None,
    keep: bool = True,
) -> SyntheticCells:
    """Draw ``n_cells`` synthetic cells from ``phantom`` (default: a clean ``make_phantom``) and write them.

    Parameters
    ----------
    path : the ``.h5ad`` to write (None: draw only, keep nothing on disk).
    n_cells : cells in the brain (uniform density).
    phantom : the truth; default ``make_phantom(n_genes, n_patterns, noise=0, missing=0, seed, atlas)``.
    depth : mean count of a type's strongest gene.
    other_rate : Poisson mean of every gene in an ``"Other"`` cell.
    coords_csv : write the coordinates to ``<path stem>_ccf_coordinates.csv`` (``cell_label, x, y,
        z``) instead of ``obs`` x, y, z.
    parcellation : add ``obs["structure_id"]``, the grid annotation at each cell's voxel.
    chunk_cells : cells drawn and written at a time (bounds memory).
    compression : HDF5 compression of ``X`` (``"gzip"``, ``"lzf"``, None).
    keep : keep the per-cell truth (types, voxel, xyz) in the result (False for millions of cells).
    """
    import pandas as pd

    from osnmf.io.cells import write_cells_h5ad

    if n_cells < 1 or depth <= 0 or other_rate < 0 or chunk_cells < 1:
        raise ConfigError("make_cells: need n_cells >= 1, depth > 0, other_rate >= 0, chunk_cells >= 1")
    if phantom is None:
        phantom = make_phantom(n_genes=n_genes, n_patterns=n_patterns, noise=0.0, missing=0.0, background=0.0,
                               seed=seed, atlas=atlas)
    atlas = phantom.atlas
    rng = np.random.default_rng(seed)
    P = np.asarray(phantom.patterns, dtype=np.float64)
    A = np.nan_to_num(np.asarray(phantom.coefficients, dtype=np.float64))
    K = P.shape[0]
    share = P / P.sum(axis=0).max()  # w · P: at most 1 per voxel
    other = np.clip(1.0 - share.sum(axis=0), 0.0, 1.0)
    top = A.max(axis=0)
    means = (depth * A / np.where(top > 0, top, 1.0)).T  # (K, genes)
    flat_brain = np.flatnonzero(atlas.brain_mask.ravel())
    spacing_mm = np.asarray(atlas.spacing_um) / 1000.0
    names = type_names(K)
    genes = phantom.data.genes
    sizes = [min(chunk_cells, n_cells - s) for s in range(0, n_cells, chunk_cells)]
    draws: list[tuple] = []

    def chunks(record: bool):
        for n in sizes:
            voxel, types, xyz, counts = _draw_chunk(rng, n, flat_brain, share, other, means, other_rate,
                                                    spacing_mm, atlas.shape)
            if record:
                draws.append((voxel, types, xyz))
            yield counts

    if path is None:
        for _ in chunks(keep):
            pass
        return _result(phantom, None, None, n_cells, names, draws, keep)
    # obs need every cell's coordinates before X is written: draw the cells first, counts in a second pass
    # from a copy of the generator state, so memory holds one chunk of counts at a time.
    state = rng.bit_generator.state
    for _ in chunks(True):
        pass
    voxel = np.concatenate([d[0] for d in draws])
    types = np.concatenate([d[1] for d in draws])
    xyz = np.concatenate([d[2] for d in draws])
    labels = pd.Index([f"cell{i:08d}" for i in range(n_cells)], dtype=str)
    obs = pd.DataFrame({"subclass": pd.Categorical.from_codes(types, names)}, index=labels)
    if parcellation:
        obs["structure_id"] = atlas.annotation.ravel()[voxel].astype(np.int64)
    path = Path(path)
    coords_path = None
    if coords_csv:
        coords_path = path.with_name(f"{path.stem}_ccf_coordinates.csv")
        table = pd.DataFrame({"cell_label": labels, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
        with atomic_path(coords_path) as tmp:
            table.to_csv(tmp, index=False)
    else:
        for axis, name in enumerate("xyz"):
            obs[name] = xyz[:, axis]
    var = pd.DataFrame({"gene_symbol": pd.Series(genes.tolist(), dtype=str).to_numpy()},
                       index=pd.Index(genes.tolist(), dtype=str))
    draws[:] = [(voxel, types, xyz)]
    rng.bit_generator.state = state
    write_cells_h5ad(path, obs, var, chunks(False), n_cells, compression=compression)
    return _result(phantom, path, coords_path, n_cells, names, draws, keep)


def _result(phantom, path, coords_path, n_cells, names, draws, keep) -> SyntheticCells:
    if keep and draws:
        voxel, types, xyz = (np.concatenate([d[i] for d in draws]) for i in range(3))
    else:
        voxel, types, xyz = np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros((0, 3))
    return SyntheticCells(phantom, path, coords_path, n_cells, names, types, voxel, xyz)
