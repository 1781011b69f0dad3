"""The array headers of an ``.npz`` archive, read and checked before any array is allocated.

``np.load`` allocates the shape an ``.npy`` header declares before reading a byte of data, so a
1 kB archive declaring ``(10**6, 67, 41, 58)`` asks for 59 GiB. :func:`npz_headers` reads only
each member's magic and header (``numpy.lib.format``) and refuses, as one :class:`InputError` line,
a member whose header does not agree with the zip's own sizes: the bytes the shape needs must be
what the member declares, and no more than its compressed bytes can hold (deflate expands at most
:data:`MAX_DEFLATE_RATIO` times; stored members are not expanded). The caller then checks each
shape against what it expects (e.g. the atlas grid) and only then lets ``np.load`` read.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from osnmf.errors import InputError

MAX_DEFLATE_RATIO = 1032  # deflate's largest expansion: 258 bytes from 2 bits
MAX_NPY_HEADER = 10_000  # bytes of an .npy header (numpy's own default limit)


def npz_headers(path: str | os.PathLike, source: str | None = None) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{array name: (shape, dtype)}`` of every ``.npy`` member of the archive at ``path``.

    Raises :class:`InputError` (naming ``source``, default the path) when a member is not an
    ``.npy``, holds Python objects (loading them needs pickle), uses another compression than
    stored or deflate, or declares more bytes than the archive can hold.
    """
    path = Path(path)
    source = str(path) if source is None else source
    disk_bytes = path.stat().st_size
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if sum(info.compress_size for info in infos) > disk_bytes:
                raise InputError(f"{source}: its zip directory declares more compressed bytes than the file's "
                                 f"{disk_bytes:,}; the .npz is corrupt")
            for info in infos:
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                out[name] = _member_header(zf, info, f"{source}:{info.filename}")
    except zipfile.BadZipFile:
        raise InputError(f"{source}: not an .npz file (not a zip archive)") from None
    except (OSError, EOFError, zlib.error, NotImplementedError) as exc:
        raise InputError(f"{source}: corrupt .npz ({exc})") from None
    return out


def _member_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> tuple[tuple[int, ...], np.dtype]:
    if info.compress_type == zipfile.ZIP_STORED:
        most = info.compress_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        most = info.compress_size * MAX_DEFLATE_RATIO + 1024
    else:
        raise InputError(f"{source}: compressed with method {info.compress_type}; numpy writes stored or "
                         "deflated members only, so this is not an .npz written by numpy")
    with zf.open(info) as handle:
        try:
            version = npy_format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(handle, max_header_size=MAX_NPY_HEADER)
            elif version == (2, 0):
                shape, fortran, dtype = npy_format.read_array_header_2_0(handle, max_header_size=MAX_NPY_HEADER)
            else:
                raise InputError(f"{source}: .npy format version {version} is not supported (1.0 or 2.0)")
        except ValueError as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{source}: not an .npy array ({' '.join(str(exc).split())[:120]})") from None
        header_bytes = handle.tell()
    if dtype.hasobject:
        raise InputError(f"{source}: holds object arrays, which need pickle; refusing to load")
    n_bytes = math.prod(int(n) for n in shape) * dtype.itemsize  # Python ints: never wraps
    if header_bytes + n_bytes != info.file_size or info.file_size > most:
        raise InputError(f"{source}: its header declares shape {tuple(shape)} of {dtype} ({n_bytes:,} bytes) but "
                         f"the archive holds {min(info.file_size, most):,} bytes at most for it; the .npz is "
                         "corrupt or hostile")
    return tuple(int(n) for n in shape), dtype
