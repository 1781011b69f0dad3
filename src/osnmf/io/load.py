"""One entry point for every supported expression input: :func:`load_expression`."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from osnmf.atlas import Atlas
from osnmf.errors import InputError
from osnmf.expression import SpatialExpression

FORMATS = "an ABA grid folder, an Allen grid .zip, an .npz stack or an .h5ad file (voxels or cells × genes)"


@lru_cache(maxsize=1)
def _known_experiments() -> dict[str, str]:
    """section_data_set_id → gene symbol of the packaged coronal experiment list (4,345 rows)."""
    import pandas as pd

    with resources.as_file(resources.files("osnmf.resources").joinpath("coronal_experiments.csv.gz")) as p:
        table = pd.read_csv(p, dtype=str, usecols=["section_data_set_id", "gene_symbol"])
    return dict(zip(table["section_data_set_id"], table["gene_symbol"], strict=True))


def read_grid_zip(path: str | os.PathLike, atlas: Atlas | None = None) -> SpatialExpression:
    """Read one Allen grid zip as a one-experiment :class:`SpatialExpression`.

    The experiment id is the file name's leading integer (``74272479.zip``, ``74272479_energy.zip``)
    or else its stem; the gene symbol comes from the packaged list of the 4,345 coronal
    experiments when the id is there, else from a ``<gene>_<id>.zip`` name, else it is the id.
    """
    from osnmf.formats.allen_grid import read_allen_grid_zip

    path = Path(path)
    atlas = Atlas.default() if atlas is None else atlas
    grid = read_allen_grid_zip(path, ("energy",), expected_shape=atlas.shape,
                               expected_spacing=atlas.spacing_um)["energy"]
    stem = path.stem
    digits = re.findall(r"\d{4,}", stem)
    exp_id = digits[0] if digits else stem
    gene = _known_experiments().get(exp_id)
    if gene is None:
        parts = [p for p in re.split(r"[_\-]", stem) if p and p != exp_id and not p.isdigit()]
        gene = parts[0] if parts and digits else exp_id
    return SpatialExpression(grid[None], np.array([gene]), np.array([exp_id]), atlas)


def load_expression(
    path: str | os.PathLike, atlas: Atlas | None = None, progress: bool = False,
    coords: str | os.PathLike | None = None, min_cells: int = 3, cell_values: str = "auto",
) -> SpatialExpression:
    """Load any supported expression input, chosen by what ``path`` is.

    - a folder → :func:`osnmf.io.aba_folder.read_aba_folder`;
    - ``.zip`` → one Allen grid zip (:func:`read_grid_zip`);
    - ``.npz`` → :func:`osnmf.io.npz.read_npz`;
    - ``.h5ad`` with ``obs`` columns ``x, y, z`` (or with ``coords``) → cells × genes, binned onto
      the grid by :func:`osnmf.io.cells.read_cells` (``min_cells``, ``cell_values``);
    - other ``.h5ad`` → voxels × genes, :func:`osnmf.io.anndata_io.read_h5ad`.

    ``progress`` shows a progress bar while reading a folder. Raises :class:`InputError` for a
    missing path or an unknown format.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found (expected {FORMATS})")
    if coords is not None and path.suffix.lower() != ".h5ad":
        raise InputError(f"--coords {coords}: CCF coordinates go with a cells × genes .h5ad, not {path}")
    if path.is_dir():
        from osnmf.io.aba_folder import read_aba_folder

        return read_aba_folder(path, atlas=atlas, progress=progress)
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return read_grid_zip(path, atlas=atlas)
    if suffix == ".npz":
        from osnmf.io.npz import read_npz

        return read_npz(path, atlas=atlas)
    if suffix == ".h5ad":
        from osnmf.io.anndata_io import read_h5ad
        from osnmf.io.cells import has_cell_coordinates, read_cells

        if coords is not None or has_cell_coordinates(path):
            return read_cells(path, atlas=atlas, coords=coords, min_cells=min_cells, values=cell_values)

        return read_h5ad(path, atlas=atlas)
    raise InputError(f"{path}: unknown input format {suffix or '(no extension)'!r}; expected {FORMATS}")
