"""NRRD volumes for viewers (3D Slicer, ITK-SNAP, napari).

Axis convention
---------------
Arrays are ``(AP, DV, ML)`` like every osnmf volume: index 0 grows anterior→posterior, index 1
dorsal→ventral, index 2 left→right (the Allen CCF "PIR" orientation: x = posterior,
y = inferior, z = right). The file keeps that memory layout (AP fastest, like the Allen ``.mhd``)
and declares ``space: right-anterior-superior`` (RAS, 3D Slicer's world) with

- AP axis: direction ``(0, -s, 0)`` (posterior = −anterior),
- DV axis: direction ``(0, 0, -s)`` (ventral = −superior),
- ML axis: direction ``(+s, 0, 0)`` (towards the right),

where ``s`` is the voxel size in millimetres (``space units: mm``; 200 µm → 0.2). Slicer and
ITK-SNAP read the directions, so the brain appears upright with correct axial, coronal and sagittal
views and physical size. napari ignores NRRD orientation and shows the array as stored: slicing
along the first axis then steps through coronal sections with dorsal at the top.
A 4-D stack ``(n, AP, DV, ML)`` is stored with a leading ``list`` axis (kinds
``list domain domain domain``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from osnmf.atomic import atomic_path
from osnmf.errors import InputError

SPACE = "right-anterior-superior"
# unit direction of each array axis (AP, DV, ML) in RAS world coordinates
AXIS_DIRECTIONS = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def write_nrrd(
    path: str | os.PathLike,
    volume: np.ndarray,
    spacing_um=(200.0, 200.0, 200.0),
    origin_um=(0.0, 0.0, 0.0),
    compress: bool = True,
    description: str | None = None,
) -> Path:
    """Write a volume ``(AP, DV, ML)`` (or a stack ``(n, AP, DV, ML)``) as NRRD, atomically.

    Parameters
    ----------
    path : the ``.nrrd`` file.
    volume : numeric array, ``(AP, DV, ML)`` or ``(n, AP, DV, ML)``; NaN is kept as NaN.
    spacing_um : voxel size along (AP, DV, ML) in micrometres.
    origin_um : RAS position (µm) of the centre of voxel ``(0, 0, 0)``.
    compress : gzip the data.
    description : free text stored in the ``content`` field.

    See the module docstring for the orientation metadata.
    """
    import nrrd

    path = Path(path)
    data = np.asarray(volume)
    if data.ndim not in (3, 4) or data.dtype.kind not in "fiub":
        raise InputError(f"{path}: write_nrrd needs a numeric (AP, DV, ML) or (n, AP, DV, ML) array, got "
                         f"{data.dtype} {data.shape}")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    spacing_mm = np.asarray(spacing_um, dtype=float) / 1000.0
    if spacing_mm.shape != (3,) or not (spacing_mm > 0).all():
        raise InputError(f"spacing_um must be 3 positive numbers, got {spacing_um}")
    directions = AXIS_DIRECTIONS * spacing_mm[:, None]
    header = {
        "space": SPACE,
        "space units": ["mm", "mm", "mm"],
        "space origin": np.asarray(origin_um, dtype=float) / 1000.0,
        "encoding": "gzip" if compress else "raw",
    }
    if data.ndim == 3:
        header["space directions"] = directions
        header["kinds"] = ["domain", "domain", "domain"]
    else:
        header["space directions"] = np.vstack([np.full((1, 3), np.nan), directions])
        header["kinds"] = ["list", "domain", "domain", "domain"]
    if description:
        header["content"] = description.replace("\n", " ")
    with atomic_path(path, suffix=".nrrd") as tmp:
        nrrd.write(str(tmp), data, header, index_order="F")
    return path


def read_nrrd(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Read a NRRD written by :func:`write_nrrd` (or any axis-aligned one).

    Returns
    -------
    volume : array as stored, ``(AP, DV, ML)`` or ``(n, AP, DV, ML)``.
    meta : dict with ``spacing_um`` (AP, DV, ML), ``origin_um``, ``space`` and the raw ``header``.
    """
    import nrrd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        data, header = nrrd.read(str(path), index_order="F")
    except Exception as exc:  # pynrrd raises several types for malformed files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{path}: not a readable NRRD file ({first})") from None
    spacing_um = None
    directions = header.get("space directions")
    if directions is not None:
        d = np.asarray(directions, dtype=float)
        d = d[~np.isnan(d).any(axis=1)]
        scale = 1000.0 if header.get("space units", ["mm"])[0] == "mm" else 1.0
        spacing_um = tuple(float(v) for v in np.linalg.norm(d, axis=1) * scale)
    origin = header.get("space origin")
    origin_um = None if origin is None else tuple(float(v) * 1000.0 for v in np.asarray(origin, dtype=float))
    return data, {"spacing_um": spacing_um, "origin_um": origin_um, "space": header.get("space"), "header": header}
