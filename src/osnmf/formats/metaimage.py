"""The MetaImage codec: ``.mhd`` headers and ``.raw`` volumes inside zips, as the Allen API serves them.

The header is parsed, never assumed: DimSize (x fastest), ElementType, byte order and spacing.
On the Allen grid x = anterior→posterior, y = dorsal→ventral, z = left→right, so a volume read
here is shaped ``(AP, DV, ML)``. Knows nothing of atlases or expression: it moves arrays.

Reads are bounded before anything is decompressed or allocated: a header is at most
:data:`MAX_HEADER_BYTES`, a volume at most :data:`MAX_VOXELS` voxels (and, when the caller knows it,
exactly the expected shape); a member's declared size must match what its header needs, and a
member is streamed with a cap (never more than the needed bytes + 1 are decompressed), so a zip
bomb or a lying header costs no more memory than a genuine grid.
"""

from __future__ import annotations

import io
import math
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
MAX_HEADER_BYTES = 64 << 10  # an .mhd header (the Allen ones are 283 bytes)
MAX_VOXELS = 1 << 24  # 16.8 M voxels: the Allen 50 µm grid (9.6 M) fits, the 25 µm one (77 M) does not


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
        return math.prod(self.dim_size) * self.dtype.itemsize  # Python ints: never wraps


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
    ndims_text = fields.get("NDims", str(len(dims)))
    if not ndims_text.isdigit():
        raise InputError(f"{source}: NDims {ndims_text!r} is not an integer (expected NDims = 3)")
    if len(dims) != int(ndims_text) or len(dims) != 3 or min(dims) < 1:
        raise InputError(f"{source}: expected a 3-D image, got DimSize {fields['DimSize']!r}")
    if math.prod(dims) > MAX_VOXELS:
        raise InputError(f"{source}: DimSize {fields['DimSize']!r} declares {math.prod(dims):,} voxels, more than "
                         f"the {MAX_VOXELS:,} an atlas grid may have; the file is not an Allen grid")
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
        raise InputError(_size_mismatch(header, len(raw), source))
    flat = np.frombuffer(raw, dtype=header.dtype)
    return flat.reshape(header.dim_size, order="F")


def _size_mismatch(header: MetaImageHeader, n_bytes: int, source: str) -> str:
    etype = element_type_name(header.dtype)
    return (f"{source}: raw data has {n_bytes} bytes but the header's DimSize "
            f"{' '.join(map(str, header.dim_size))} with ElementType {etype} ({header.dtype.itemsize} bytes "
            f"each) needs {header.n_bytes}; the raw file is truncated or the header does not match it")


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


def read_member(zf: zipfile.ZipFile, name: str, limit: int, source: str, what: str = "member") -> bytes:
    """The bytes of member ``name``, refused (one :class:`InputError` line) when its declared size is
    over ``limit`` or it decompresses to more than ``limit`` bytes; at most ``limit + 1`` bytes are
    ever decompressed, whatever the zip declares."""
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise InputError(f"{source}: {name} declares {info.file_size:,} bytes, more than the {limit:,} a {what} "
                         "may have; the file is not an Allen grid zip")
    try:
        with zf.open(info) as handle:
            data = handle.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as exc:
        raise InputError(f"{source}: corrupt zip ({exc})") from None
    if len(data) > limit:
        raise InputError(f"{source}: {name} holds more than the {limit:,} bytes a {what} may have "
                         f"(its header says {info.file_size:,}); the zip is corrupt or hostile")
    return data


def read_volume_from_zip(zf: zipfile.ZipFile, kind: str, source: str,
                         expected_shape: tuple[int, int, int] | None = None) -> tuple[np.ndarray, MetaImageHeader]:
    """Read ``<kind>.mhd``/``.raw`` from an open zip; returns the raw-typed volume and header.

    With ``expected_shape`` (AP, DV, ML) a header of another shape is refused before the raw data is
    read; :class:`GridShapeError` says so (its ``shape`` is the header's).
    """
    names = {Path(n).name: n for n in zf.namelist()}
    mhd_name = f"{kind}.mhd"
    if mhd_name not in names:
        raise InputError(f"{source}: zip has no {mhd_name}")
    text = read_member(zf, names[mhd_name], MAX_HEADER_BYTES, source, "MetaImage header")
    header = parse_mhd(text.decode("ascii", "replace"), f"{source}:{mhd_name}")
    raw_name = Path(header.data_file).name
    if raw_name not in names:
        raise InputError(f"{source}: zip has no {raw_name} (named by {mhd_name})")
    info = zf.getinfo(names[raw_name])
    if info.file_size != header.n_bytes:
        raise InputError(_size_mismatch(header, info.file_size, f"{source}:{raw_name}"))
    if expected_shape is not None and header.dim_size != tuple(expected_shape):
        raise GridShapeError(f"{source}: {kind} grid is {header.dim_size} (AP, DV, ML) but the annotation is "
                             f"{tuple(expected_shape)}; use the matching annotation", header.dim_size)
    raw = read_member(zf, names[raw_name], header.n_bytes, source, f"{kind} volume of this DimSize")
    return decode_raw(header, raw, f"{source}:{raw_name}"), header


class GridShapeError(InputError):
    """A grid's header declares another shape than the one expected (``shape``: the header's, AP, DV, ML)."""

    def __init__(self, message: str, shape: tuple[int, ...]):
        super().__init__(message)
        self.shape = shape


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
