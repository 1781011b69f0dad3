"""``.npz`` volume stacks like the reference code's.

Keys: ``data`` float ``(n_experiments, AP, DV, ML)`` with ``-1`` for missing; ``genes`` (also read:
``gene_names``) with one gene symbol per experiment; optional ``experiment_ids``. Strings are
stored as numpy unicode arrays, never objects, and files are always loaded with
``allow_pickle=False``.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from osnmf.atlas import Atlas
from osnmf.atomic import save_npz
from osnmf.errors import InputError
from osnmf.expression import SpatialExpression
from osnmf.formats.allen_grid import MISSING_SENTINEL
from osnmf.formats.metaimage import check_member_names
from osnmf.formats.npz_headers import npz_headers

GENE_KEYS = ("genes", "gene_names")


def check_volume_values(values: np.ndarray, source: str, missing_sentinel: bool = True) -> np.ndarray:
    """Validate expression values and return float32 with NaN for missing.

    With ``missing_sentinel`` the input marks missing by ``-1`` and NaN/inf are errors; without it
    NaN marks missing and inf is an error. Other negative values are always errors.
    """
    values = np.asarray(values)
    if values.dtype.kind not in "fiu":
        raise InputError(f"{source}: expression values must be numeric, got dtype {values.dtype}")
    out = values.astype(np.float32)
    if missing_sentinel:
        if not np.isfinite(out).all():
            raise InputError(f"{source}: contains NaN or infinite values (only -1 may mark missing data)")
    elif np.isinf(out).any():
        raise InputError(f"{source}: contains infinite values (NaN marks missing data)")
    with np.errstate(invalid="ignore"):
        bad = out < 0
    if missing_sentinel:
        bad &= out != MISSING_SENTINEL
    if bad.any():
        allowed = "-1 for missing" if missing_sentinel else "NaN for missing"
        raise InputError(
            f"{source}: {int(bad.sum())} negative values (e.g. {out[bad][0]:g}); "
            f"expression must be >= 0 with {allowed}"
        )
    if missing_sentinel:
        out[out == MISSING_SENTINEL] = np.nan
    return out


def _string_array(npz, key: str, n: int, source: str) -> np.ndarray:
    arr = npz[key]
    if arr.dtype.kind not in "USiu":
        raise InputError(f"{source}: '{key}' must be strings or integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "utf-8")
    arr = np.asarray(arr).astype(str).reshape(-1)
    if arr.shape != (n,):
        raise InputError(f"{source}: '{key}' has {arr.size} entries but 'data' has {n} experiments")
    return arr


def read_npz(path: str | os.PathLike, atlas: Atlas | None = None) -> SpatialExpression:
    """Read an ``.npz`` stack (without pickle).

    Parameters
    ----------
    path : the ``.npz`` file.
    atlas : the grid's atlas (default :meth:`Atlas.default`); ``data`` must match its shape.

    Returns
    -------
    SpatialExpression; ``experiment_ids`` default to ``"0" … "n-1"`` when the file has none.
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise InputError(f"{source}: file not found")
    atlas = Atlas.default() if atlas is None else atlas
    try:
        with zipfile.ZipFile(path) as zf:
            check_member_names(zf.namelist(), source)
    except zipfile.BadZipFile:
        raise InputError(f"{source}: not an .npz file (not a zip archive)") from None
    _check_shapes(npz_headers(path, source), atlas, source)
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if "data" not in keys:
                raise InputError(f"{source}: no 'data' array (found {', '.join(sorted(keys)) or 'none'})")
            data = npz["data"]
            if data.ndim == 3:
                data = data[None]
            if data.ndim != 4:
                raise InputError(f"{source}: 'data' must be (experiments, AP, DV, ML), got shape {data.shape}")
            if data.shape[1:] != atlas.shape:
                raise InputError(
                    f"{source}: 'data' grid is {data.shape[1:]} (AP, DV, ML) but the atlas is {atlas.shape}"
                )
            n = data.shape[0]
            gene_key = next((k for k in GENE_KEYS if k in keys), None)
            if gene_key is None:
                raise InputError(f"{source}: no gene names (expected key 'genes' or 'gene_names')")
            genes = _string_array(npz, gene_key, n, source)
            if "experiment_ids" in keys:
                ids = _string_array(npz, "experiment_ids", n, source)
                if len(set(ids.tolist())) != n:
                    raise InputError(f"{source}: 'experiment_ids' are not unique")
            else:
                ids = np.arange(n).astype(str)
            volumes = check_volume_values(data, f"{source}:data")
    except ValueError as exc:
        if isinstance(exc, InputError):
            raise
        if "pickle" in str(exc).lower():
            raise InputError(f"{source}: holds object arrays, which need pickle; refusing to load") from None
        raise InputError(f"{source}: unreadable .npz ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{source}: corrupt .npz ({exc})") from None
    return SpatialExpression(volumes, genes, ids, atlas)


def _check_shapes(headers: dict, atlas: Atlas, source: str) -> None:
    """Refuse, from the headers alone (before anything is allocated), a ``data`` array that is not
    the atlas grid and string arrays that are not one entry per experiment."""
    if "data" not in headers:
        return  # named below, with the keys found
    shape, _ = headers["data"]
    if len(shape) not in (3, 4):
        raise InputError(f"{source}: 'data' must be (experiments, AP, DV, ML), got shape {shape}")
    if shape[-3:] != atlas.shape:
        raise InputError(f"{source}: 'data' grid is {shape[-3:]} (AP, DV, ML) but the atlas is {atlas.shape}")
    n = shape[0] if len(shape) == 4 else 1
    for key in (*GENE_KEYS, "experiment_ids"):
        if key in headers and math.prod(headers[key][0]) != n:
            raise InputError(f"{source}: '{key}' has {math.prod(headers[key][0])} entries but 'data' has {n} "
                             "experiments")


def write_npz(path: str | os.PathLike, expr: SpatialExpression, compress: bool = True) -> Path:
    """Write ``expr`` as an ``.npz`` stack (``data`` with -1 for missing, unicode ``genes`` and
    ``experiment_ids``), atomically.
    """
    path = Path(path)
    data = np.where(np.isnan(expr.volumes), np.float32(MISSING_SENTINEL), expr.volumes).astype(np.float32)
    arrays = {
        "data": data,
        "genes": np.asarray(expr.genes, dtype=str),
        "experiment_ids": np.asarray(expr.experiment_ids, dtype=str),
    }
    return save_npz(path, compress=compress, **arrays)
