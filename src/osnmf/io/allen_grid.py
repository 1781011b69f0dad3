"""Allen expression-grid zips, as the Allen API serves them (codec: :mod:`osnmf.io.metaimage`).

A zip holds ``energy.mhd``/``energy.raw`` (and ``density``/``intensity`` on request), each a
float volume shaped ``(AP, DV, ML)``. The sentinel ``-1`` (no data) becomes NaN on reading and
NaN becomes ``-1`` on writing.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from osnmf.errors import InputError
from osnmf.io.metaimage import element_type_name, open_zip, read_volume_from_zip, write_mhd_zip

MISSING_SENTINEL = -1.0


def _to_expression(volume: np.ndarray, source: str) -> np.ndarray:
    values = volume.astype(np.float32)
    if not np.isfinite(values).all():
        raise InputError(f"{source}: contains NaN or infinite values (only -1 may mark missing data)")
    bad = (values < 0) & (values != MISSING_SENTINEL)
    if bad.any():
        raise InputError(
            f"{source}: {int(bad.sum())} negative values other than -1 (e.g. {values[bad][0]:g}); "
            "expression must be >= 0 with -1 for missing"
        )
    values[values == MISSING_SENTINEL] = np.nan
    return values


def read_allen_grid_zip(
    path: str | os.PathLike | bytes,
    kinds: tuple[str, ...] = ("energy",),
    expected_shape: tuple[int, int, int] | None = None,
    expected_spacing: tuple[float, float, float] | None = None,
) -> dict[str, np.ndarray]:
    """Read expression grids from an Allen API zip.

    Parameters
    ----------
    path : zip file path (or its bytes).
    kinds : which grids to read: any of ``"energy"``, ``"density"``, ``"intensity"``.
    expected_shape : if given, the ``(AP, DV, ML)`` shape the grid must have (e.g. the atlas's).
    expected_spacing : if given, the voxel spacing in µm the grid must have (e.g. the atlas's).

    Returns
    -------
    dict kind -> float32 volume ``(AP, DV, ML)`` with NaN where the file has -1.
    """
    zf, source = open_zip(path)
    with zf:
        out = {}
        for kind in kinds:
            volume, header = read_volume_from_zip(zf, kind, source)
            if header.dtype.kind != "f":
                raise InputError(
                    f"{source}: {kind}.mhd ElementType is {element_type_name(header.dtype)} but expression grids are "
                    "MET_FLOAT (or MET_DOUBLE); the file is not an Allen expression grid"
                )
            if expected_shape is not None and volume.shape != tuple(expected_shape):
                raise InputError(
                    f"{source}: {kind} grid is {volume.shape} (AP, DV, ML) but the annotation is "
                    f"{tuple(expected_shape)}; use the matching annotation"
                )
            if expected_spacing is not None and not np.allclose(header.spacing_um, expected_spacing, rtol=1e-4):
                raise InputError(
                    f"{source}: {kind} grid spacing is {' × '.join(f'{v:g}' for v in header.spacing_um)} µm but the "
                    f"annotation's is {' × '.join(f'{v:g}' for v in expected_spacing)} µm; use grids and an "
                    "annotation of the same resolution"
                )
            out[kind] = _to_expression(volume, f"{source}:{kind}")
        return out


def read_plane_of_section(path: str | os.PathLike) -> str | None:
    """``"coronal"``/``"sagittal"`` from the zip's ``data_set.xml`` (Allen API), or None if it does not say.

    Reads ``<plane_of_section>`` (its text or ``<name>`` child) or ``<plane-of-section-id>``
    (Allen ids: 1 coronal, 2 sagittal). A zip without ``data_set.xml`` gives None.
    """
    import xml.etree.ElementTree as ET

    zf, source = open_zip(path)
    with zf:
        names = {Path(n).name: n for n in zf.namelist()}
        if "data_set.xml" not in names:
            return None
        try:
            root = ET.fromstring(zf.read(names["data_set.xml"]))
        except (ET.ParseError, zipfile.BadZipFile, OSError, zlib.error):
            raise InputError(f"{source}: data_set.xml is not readable XML") from None
    for node in root.iter():
        tag = node.tag.replace("_", "-")
        if tag == "plane-of-section":
            text = " ".join(t.strip().lower() for t in node.itertext() if t.strip())
            for plane in ("coronal", "sagittal"):
                if plane in text:
                    return plane
        if tag == "plane-of-section-id" and (node.text or "").strip() in ("1", "2"):
            return {"1": "coronal", "2": "sagittal"}[node.text.strip()]
    return None


def write_allen_grid_zip(
    path: str | os.PathLike, volumes: dict[str, np.ndarray], spacing_um=(200.0, 200.0, 200.0)
) -> Path:
    """Write volumes ``(AP, DV, ML)`` as an Allen-style grid zip (NaN → -1, float32 little-endian).

    Written to a temporary file first and renamed, so a partial zip never appears.
    """
    grids = {kind: np.where(np.isnan(v), MISSING_SENTINEL, v).astype("<f4") for kind, v in volumes.items()}
    return write_mhd_zip(path, grids, spacing_um)
