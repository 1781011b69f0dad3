"""ABA grid folders: the layout the downloader writes and ``osnmf run --data`` reads.

::

    <folder>/
      experiments.csv                  columns section_data_set_id, gene_symbol[, plane, ...]
                                       (plane: coronal or sagittal; blank = unknown)
      energy/<section_data_set_id>.zip one Allen grid zip per listed experiment
      P56_Mouse_gridAnnotation.zip     optional; default: the packaged annotation

Every zip is validated (see :func:`osnmf.formats.allen_grid.read_allen_grid_zip`) and its grid must
match the annotation's shape. Every problem is one :class:`~osnmf.errors.InputError` line that
names the file.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from osnmf.atlas import Atlas
from osnmf.atomic import write_bytes
from osnmf.errors import InputError
from osnmf.expression import SpatialExpression
from osnmf.formats.allen_grid import read_allen_grid_zip, write_allen_grid_zip
from osnmf.formats.metaimage import write_mhd_zip
from osnmf.progress import track

EXPERIMENTS_CSV = "experiments.csv"
ANNOTATION_ZIP = "P56_Mouse_gridAnnotation.zip"
GRID_DIR = "energy"
ID_COLUMN = "section_data_set_id"
GENE_COLUMN = "gene_symbol"
PLANE_COLUMN = "plane"
PLANES = ("coronal", "sagittal")
KINDS = ("energy", "density", "intensity")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def check_experiment_id(exp_id: str, source: str) -> str:
    """Refuse experiment ids that cannot be used safely as a file name (``/``, ``..``, spaces)."""
    if not _SAFE_ID.match(exp_id) or ".." in exp_id:
        raise InputError(
            f"{source}: experiment id {exp_id!r} is not a plain file name "
            "(use letters, digits, '_', '-', '.'; Allen ids are integers)"
        )
    return exp_id


def read_experiments_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate ``experiments.csv``.

    Returns a DataFrame with string columns ``section_data_set_id`` and ``gene_symbol`` (plus any
    other columns of the file), one row per experiment, in file order.
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise InputError(
            f"{source}: not found; an ABA grid folder needs {EXPERIMENTS_CSV} "
            f"(columns {ID_COLUMN}, {GENE_COLUMN}) and {GRID_DIR}/<{ID_COLUMN}>.zip"
        )
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise InputError(f"{source}: file is empty; expected columns {ID_COLUMN}, {GENE_COLUMN}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{source}: not a readable CSV ({first})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in (ID_COLUMN, GENE_COLUMN) if c not in table.columns]
    if missing:
        raise InputError(
            f"{source}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, table.columns))}"
        )
    if len(table) == 0:
        raise InputError(f"{source}: lists no experiments (header only)")
    for col in (ID_COLUMN, GENE_COLUMN):
        table[col] = table[col].str.strip()
        blank = np.flatnonzero((table[col] == "").to_numpy())
        if blank.size:
            raise InputError(f"{source}: empty {col} on line {int(blank[0]) + 2}")
    for exp_id in table[ID_COLUMN]:
        check_experiment_id(exp_id, source)
    if PLANE_COLUMN in table.columns:
        table[PLANE_COLUMN] = table[PLANE_COLUMN].str.strip().str.lower()
        bad = np.flatnonzero(~table[PLANE_COLUMN].isin(("", *PLANES)).to_numpy())
        if bad.size:
            raise InputError(f"{source}: plane {table[PLANE_COLUMN].iloc[bad[0]]!r} on line {int(bad[0]) + 2} is "
                             f"not {' or '.join(PLANES)}; fix the {PLANE_COLUMN} column (or leave it blank)")
    dup = table[ID_COLUMN].duplicated(keep=False)
    if dup.any():
        ids = sorted(set(table.loc[dup, ID_COLUMN]))
        lines = [str(i + 2) for i in np.flatnonzero(dup.to_numpy())[:4]]
        raise InputError(
            f"{source}: duplicate {ID_COLUMN} {', '.join(ids[:5])}"
            f"{' …' if len(ids) > 5 else ''} (lines {', '.join(lines)}); each experiment must be listed once"
        )
    return table.reset_index(drop=True)


def _folder_atlas(folder: Path, atlas: Atlas | None) -> Atlas:
    if atlas is not None:
        return atlas
    annotation = folder / ANNOTATION_ZIP
    if not annotation.exists():
        return Atlas.default()
    try:
        return Atlas.from_files(annotation)
    except InputError as exc:
        message = str(exc)
        if str(annotation) not in message:
            message = f"{annotation}: {message}"
        raise InputError(message) from None


def read_aba_folder(
    path: str | os.PathLike,
    atlas: Atlas | None = None,
    kinds: tuple[str, ...] = ("energy",),
    progress: bool = False,
    n_jobs: int = 1,
) -> SpatialExpression | dict[str, SpatialExpression]:
    """Read an ABA grid folder into a :class:`~osnmf.expression.SpatialExpression`.

    Parameters
    ----------
    path : the folder (see the module docstring for its layout).
    atlas : the atlas of the grid. Default: the folder's ``P56_Mouse_gridAnnotation.zip`` with the
        packaged ontology if present, else :meth:`Atlas.default`. An explicit atlas wins.
    kinds : grids to read from each ``energy/<id>.zip`` (``"energy"``, ``"density"``,
        ``"intensity"``; the Allen API puts all requested kinds in one zip).
    progress : show a rich progress bar.
    n_jobs : threads reading zips concurrently (decompression releases the GIL).

    Returns
    -------
    SpatialExpression with float32 volumes ``(n_experiments, AP, DV, ML)``, NaN where the files hold
    ``-1``, experiments in ``experiments.csv`` order. With several ``kinds``: a dict kind →
    SpatialExpression.

    Raises
    ------
    InputError : one line naming the offending file: missing folder, csv or zip; empty csv or
        missing columns; duplicate ids; corrupt/unsafe zips; grids that do not match the annotation;
        NaN/inf or negative values other than -1.
    """
    folder = Path(path)
    if not folder.exists():
        raise InputError(f"{folder}: folder not found")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (expected an ABA grid folder with {EXPERIMENTS_CSV})")
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if not kinds or bad:
        raise InputError(f"kinds must be a non-empty subset of {KINDS}, got {kinds}")
    table = read_experiments_csv(folder / EXPERIMENTS_CSV)
    ids = table[ID_COLUMN].tolist()
    zips = [folder / GRID_DIR / f"{exp_id}.zip" for exp_id in ids]
    for line, zpath in enumerate(zips, start=2):
        if not zpath.is_file():
            raise InputError(f"{zpath}: missing (listed on line {line} of {folder / EXPERIMENTS_CSV})")
    atlas = _folder_atlas(folder, atlas)
    stacks = {k: np.empty((len(ids), *atlas.shape), dtype=np.float32) for k in kinds}

    def load(i: int) -> None:
        grids = read_allen_grid_zip(zips[i], kinds=kinds, expected_shape=atlas.shape,
                                    expected_spacing=atlas.spacing_um)
        for k in kinds:
            stacks[k][i] = grids[k]

    # zlib releases the GIL, so threads overlap the decompression; each result lands in place.
    # map() yields in order, so the error reported is the first bad file in experiments.csv order.
    pool = ThreadPoolExecutor(max_workers=max(1, int(n_jobs)))
    try:
        for _ in track(pool.map(load, range(len(ids))), f"reading {folder.name}", len(ids), enabled=progress):
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    genes = table[GENE_COLUMN].to_numpy(dtype=str)
    planes = _planes(table, zips)
    out = {k: SpatialExpression(stacks[k], genes, np.asarray(ids, dtype=str), atlas, planes) for k in kinds}
    return out[kinds[0]] if len(kinds) == 1 else out


def _planes(table: pd.DataFrame, zips: list[Path]) -> np.ndarray | None:
    """Plane per experiment: the ``plane`` column, else the zip's ``data_set.xml`` when it says."""
    from osnmf.formats.allen_grid import read_plane_of_section

    planes = table[PLANE_COLUMN].to_numpy(dtype=object) if PLANE_COLUMN in table.columns else None
    blank = np.ones(len(zips), dtype=bool) if planes is None else planes == ""
    if not blank.any():
        return planes.astype(str)
    found = {i: read_plane_of_section(zips[i]) for i in np.flatnonzero(blank)}
    if planes is None and not any(found.values()):
        return None
    planes = np.full(len(zips), "", dtype=object) if planes is None else planes
    for i, plane in found.items():
        planes[i] = plane or ""
    return planes.astype(str)


def write_annotation_zip(path: str | os.PathLike, annotation: np.ndarray, spacing_um=(200.0, 200.0, 200.0)) -> Path:
    """Write an annotation ``(AP, DV, ML)`` as an Allen ``gridAnnotation`` zip (uint32), atomically."""
    return write_mhd_zip(path, {"gridAnnotation": np.asarray(annotation).astype("<u4")}, spacing_um)


def write_aba_folder(
    path: str | os.PathLike,
    expr: SpatialExpression,
    annotation: bool | None = None,
    plane: str | None = "coronal",
) -> Path:
    """Write ``expr`` as an ABA grid folder readable by :func:`read_aba_folder`.

    Each file is written atomically (temporary file + rename); ``experiments.csv`` is written last,
    so an interrupted write never lists a zip that is not there.

    Parameters
    ----------
    path : the folder (created if needed).
    expr : the expression data; experiment ids become file names and must be plain names.
    annotation : also write ``P56_Mouse_gridAnnotation.zip``. ``None`` (default): only when the
        atlas is not the packaged default one.
    plane : value of the ``plane`` column, or ``None`` to omit the column.

    Returns
    -------
    The folder path.
    """
    folder = Path(path)
    ids = [check_experiment_id(str(i), "write_aba_folder") for i in expr.experiment_ids]
    (folder / GRID_DIR).mkdir(parents=True, exist_ok=True)
    atlas = expr.atlas
    if annotation is None:
        annotation = atlas is not Atlas.default()
    if annotation:
        write_annotation_zip(folder / ANNOTATION_ZIP, atlas.annotation, atlas.spacing_um)
    for i, exp_id in enumerate(ids):
        write_allen_grid_zip(folder / GRID_DIR / f"{exp_id}.zip", {"energy": expr.volumes[i]}, atlas.spacing_um)
    table = pd.DataFrame({ID_COLUMN: ids, GENE_COLUMN: expr.genes.tolist()})
    if plane is not None:
        table["plane"] = plane
    write_bytes(folder / EXPERIMENTS_CSV, table.to_csv(index=False).encode())
    return folder
