"""Allen expression-grid zips, as the Allen API serves them (codec: :mod:`osnmf.formats.metaimage`).

A zip holds ``energy.mhd``/``energy.raw`` (and ``density``/``intensity`` on request), each a
float volume shaped ``(AP, DV, ML)``. The sentinel ``-1`` (no data) becomes NaN on reading and
NaN becomes ``-1`` on writing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from osnmf.errors import InputError
from osnmf.formats.metaimage import element_type_name, open_zip, read_member, read_volume_from_zip, write_mhd_zip

MISSING_SENTINEL = -1.0
MAX_XML_BYTES = 4 << 20  # data_set.xml: the Allen ones measure 33-190 kB


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
            volume, header = read_volume_from_zip(zf, kind, source, expected_shape)
            if header.dtype.kind != "f":
                raise InputError(
                    f"{source}: {kind}.mhd ElementType is {element_type_name(header.dtype)} but expression grids are "
                    "MET_FLOAT (or MET_DOUBLE); the file is not an Allen expression grid"
                )
            if expected_spacing is not None and not np.allclose(header.spacing_um, expected_spacing, rtol=1e-4):
                raise InputError(
                    f"{source}: {kind} grid spacing is {' × '.join(f'{v:g}' for v in header.spacing_um)} µm but the "
                    f"annotation's is {' × '.join(f'{v:g}' for v in expected_spacing)} µm; use grids and an "
                    "annotation of the same resolution"
                )
            out[kind] = _to_expression(volume, f"{source}:{kind}")
        return out


# ReferenceSpace of a P56 ISH data set (data_set.xml ``<reference-space-id>``): the Allen API
# registers coronal P56 series to space 9 and sagittal ones to space 10.
REFERENCE_SPACE_PLANES = {"9": "coronal", "10": "sagittal"}
PLANE_OF_SECTION_IDS = {"1": "coronal", "2": "sagittal"}


def read_plane_of_section(path: str | os.PathLike) -> str | None:
    """``"coronal"``/``"sagittal"`` from the zip's ``data_set.xml`` (Allen API), or None if it does not say.

    The zips the Allen API serves carry an empty ``<plane_of_section/>``; what they do hold is the
    data set's ``<reference-space-id>`` (9 for coronal, 10 for sagittal P56 series), which is read
    here. A non-empty ``<plane_of_section>`` (its text or ``<name>``) or ``<plane-of-section-id>``
    (1 coronal, 2 sagittal) wins when present. A zip without ``data_set.xml`` gives None.
    """
    import xml.etree.ElementTree as ET

    zf, source = open_zip(path)
    with zf:
        names = {Path(n).name: n for n in zf.namelist()}
        if "data_set.xml" not in names:
            return None
        text = read_member(zf, names["data_set.xml"], MAX_XML_BYTES, source, "data_set.xml")
        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            raise InputError(f"{source}: data_set.xml is not readable XML") from None
    return _plane_from_xml(root)


def _plane_from_xml(root) -> str | None:
    """The plane named by the data set's own fields (children of the root), else by its reference space."""
    fields = {child.tag.replace("_", "-"): child for child in root}
    node = fields.get("plane-of-section")
    if node is not None:
        text = " ".join(t.strip().lower() for t in node.itertext() if t.strip())
        for plane in ("coronal", "sagittal"):
            if plane in text:
                return plane
    for tag, planes in (("plane-of-section-id", PLANE_OF_SECTION_IDS), ("reference-space-id", REFERENCE_SPACE_PLANES)):
        node = fields.get(tag)
        value = (node.text or "").strip() if node is not None else ""
        if value in planes:
            return planes[value]
    return None


def write_allen_grid_zip(
    path: str | os.PathLike, volumes: dict[str, np.ndarray], spacing_um=(200.0, 200.0, 200.0)
) -> Path:
    """Write volumes ``(AP, DV, ML)`` as an Allen-style grid zip (NaN → -1, float32 little-endian).

    Written to a temporary file first and renamed, so a partial zip never appears.
    """
    grids = {kind: np.where(np.isnan(v), MISSING_SENTINEL, v).astype("<f4") for kind, v in volumes.items()}
    return write_mhd_zip(path, grids, spacing_um)
