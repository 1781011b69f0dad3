"""The MetaImage codec: ``.mhd`` headers and ``.raw`` volumes inside zips, as the Allen API serves them.

The header is parsed, never assumed: DimSize (x fastest), ElementType, byte order and spacing.
On the Allen grid x = anterior→posterior, y = dorsal→ventral, z = left→right, so a volume read
here is shaped ``(AP, DV, ML)``. Knows nothing of atlases or expression: it moves arrays.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osnmf.atomic import atomic_path
from osnmf.errors import InputError

ELEMENT_TYPES = {
    "MET_UCHAR": "u1",
    "MET_CHAR": "i1",
    "MET_USHORT": "u2",
    "MET_SHORT": "i2",
    "MET_UINT": "u4",
    "MET_INT": "i4",
    "MET_ULONG": "u8",
    "MET_LONG": "i8",
    "MET_FLOAT": "f4",
    "MET_DOUBLE": "f8",
}


@dataclass(frozen=True)
class MetaImageHeader:
    """Parsed MetaImage header.

    ``dim_size`` is in file order (x fastest), ``spacing_um`` in micrometres, ``dtype`` includes
    the byte order.
    """

    dim_size: tuple[int, ...]
    dtype: np.dtype
    spacing_um: tuple[float, ...]
    data_file: str

    @property
    def n_bytes(self) -> int:
        return int(np.prod(self.dim_size)) * self.dtype.itemsize


def parse_mhd(text: str, source: str = "<mhd>") -> MetaImageHeader:
    """Parse a MetaImage header; raise :class:`InputError` naming ``source`` on any problem."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            fields[key.strip()] = value.strip()
    for key in ("DimSize", "ElementType", "ElementDataFile"):
        if key not in fields:
            raise InputError(f"{source}: MetaImage header has no {key}")
    try:
        dims = tuple(int(v) for v in fields["DimSize"].split())
    except ValueError:
        raise InputError(f"{source}: DimSize {fields['DimSize']!r} is not a list of integers") from None
    ndims = int(fields.get("NDims", len(dims)))
    if len(dims) != ndims or ndims != 3 or min(dims) < 1:
        raise InputError(f"{source}: expected a 3-D image, got DimSize {fields['DimSize']!r}")
    etype = fields["ElementType"]
    if etype not in ELEMENT_TYPES:
        raise InputError(f"{source}: unsupported ElementType {etype!r}")
    msb = fields.get("BinaryDataByteOrderMSB", fields.get("ElementByteOrderMSB", "False"))
    order = ">" if msb.lower() == "true" else "<"
    if fields.get("CompressedData", "False").lower() == "true":
        raise InputError(f"{source}: compressed MetaImage data is not supported")
    spacing_text = fields.get("ElementSpacing", fields.get("ElementSize", "1 1 1"))
    try:
        spacing = tuple(float(v) for v in spacing_text.split())
    except ValueError:
        raise InputError(f"{source}: ElementSpacing {spacing_text!r} is not numeric") from None
    if len(spacing) != 3:
        raise InputError(f"{source}: ElementSpacing needs 3 values, got {spacing_text!r}")
    return MetaImageHeader(dims, np.dtype(order + ELEMENT_TYPES[etype]), spacing, fields["ElementDataFile"])


def element_type_name(dtype: np.dtype) -> str:
    return {v: k for k, v in ELEMENT_TYPES.items()}.get(np.dtype(dtype).str[1:], str(dtype))


def decode_raw(header: MetaImageHeader, raw: bytes, source: str = "<raw>") -> np.ndarray:
    """Decode raw bytes into a volume shaped ``(AP, DV, ML)`` (file x, y, z)."""
    if len(raw) != header.n_bytes:
        etype = element_type_name(header.dtype)
        raise InputError(
            f"{source}: raw data has {len(raw)} bytes but the header's DimSize "
            f"{' '.join(map(str, header.dim_size))} with ElementType {etype} ({header.dtype.itemsize} bytes "
            f"each) needs {header.n_bytes}; the raw file is truncated or the header does not match it"
        )
    flat = np.frombuffer(raw, dtype=header.dtype)
    return flat.reshape(header.dim_size, order="F")


def check_member_names(names: list[str], source: str) -> None:
    """Refuse zip members with absolute paths or ``..`` components (path traversal)."""
    for name in names:
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
            raise InputError(f"{source}: unsafe member name {name!r} in zip (absolute path or '..')")


def open_zip(path: str | os.PathLike | bytes) -> tuple[zipfile.ZipFile, str]:
    source = "<bytes>" if isinstance(path, bytes) else str(path)
    if isinstance(path, bytes):
        target = io.BytesIO(path)
    else:
        target = Path(path)
        if target.is_dir():
            raise InputError(f"{source}: is a directory, expected a zip file")
        if not target.is_file():
            raise InputError(f"{source}: file not found")
    try:
        # opened by name so that closing the ZipFile also closes the file handle
        zf = zipfile.ZipFile(target)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise InputError(f"{source}: not a zip file (expected an Allen grid zip)") from None
    try:
        check_member_names(zf.namelist(), source)
    except InputError:
        zf.close()
        raise
    return zf, source


def read_volume_from_zip(zf: zipfile.ZipFile, kind: str, source: str) -> tuple[np.ndarray, MetaImageHeader]:
    """Read ``<kind>.mhd``/``.raw`` from an open zip; returns the raw-typed volume and header."""
    names = {Path(n).name: n for n in zf.namelist()}
    mhd_name = f"{kind}.mhd"
    if mhd_name not in names:
        raise InputError(f"{source}: zip has no {mhd_name}")
    try:
        header = parse_mhd(zf.read(names[mhd_name]).decode("ascii", "replace"), f"{source}:{mhd_name}")
        raw_name = Path(header.data_file).name
        if raw_name not in names:
            raise InputError(f"{source}: zip has no {raw_name} (named by {mhd_name})")
        raw = zf.read(names[raw_name])
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as exc:
        raise InputError(f"{source}: corrupt zip ({exc})") from None
    return decode_raw(header, raw, f"{source}:{raw_name}"), header


def read_annotation_zip(path: str | os.PathLike | bytes) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read an Allen grid annotation zip (``gridAnnotation.mhd``/``.raw``).

    Returns the uint32 structure-id volume ``(AP, DV, ML)`` and the spacing in µm.
    """
    zf, source = open_zip(path)
    with zf:
        mhd = [n for n in zf.namelist() if n.endswith(".mhd")]
        if len(mhd) != 1:
            raise InputError(f"{source}: expected exactly one .mhd in the annotation zip, found {len(mhd)}")
        volume, header = read_volume_from_zip(zf, Path(mhd[0]).stem, source)
    if header.dtype.kind not in "ui":
        raise InputError(f"{source}: annotation must hold integer structure ids, got {header.dtype}")
    if (volume < 0).any():
        raise InputError(f"{source}: annotation has negative structure ids")
    return volume.astype(np.uint32), header.spacing_um


def encode_mhd(shape: tuple[int, int, int], dtype: np.dtype, data_file: str, spacing_um=(200, 200, 200)) -> str:
    """A MetaImage header like the Allen API's for a volume shaped ``(AP, DV, ML)``."""
    etype = {v: k for k, v in ELEMENT_TYPES.items()}[np.dtype(dtype).newbyteorder("=").str[1:]]
    return (
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        "TransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\nCenterOfRotation = 0 0 0\n"
        "AnatomicalOrientation = RAI\n"
        f"ElementSpacing = {' '.join(f'{s:g}' for s in spacing_um)}\n"
        f"DimSize = {' '.join(map(str, shape))}\nElementType = {etype}\nElementDataFile = {data_file}\n"
    )


def write_mhd_zip(path: str | os.PathLike, grids: dict[str, np.ndarray], spacing_um=(200.0, 200.0, 200.0)) -> Path:
    """Write volumes ``(AP, DV, ML)`` as ``<name>.mhd`` + ``<name>.raw`` members of one zip, atomically.

    Each array is stored little-endian in its own dtype (x = AP fastest, as the Allen files).
    """
    path = Path(path)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, grid in grids.items():
            data = np.asarray(grid).astype(np.asarray(grid).dtype.newbyteorder("<"))
            zf.writestr(f"{name}.mhd", encode_mhd(data.shape, data.dtype, f"{name}.raw", spacing_um))
            zf.writestr(f"{name}.raw", data.tobytes(order="F"))
    return path
