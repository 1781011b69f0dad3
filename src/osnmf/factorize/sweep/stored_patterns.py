"""Replicate patterns read from a sweep's block files on demand, without loading or mapping them whole.

:class:`StoredPatterns` (what :meth:`osnmf.factorize.sweep.store.SweepStore.patterns` returns) reads
column ranges and replicates of the uncompressed ``components`` array of each block file at known
offsets (:func:`npy_member`).
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import numpy as np

from osnmf.errors import InputError

__all__ = ["StoredPatterns", "npy_member"]


def npy_member(path: str | os.PathLike, name: str) -> tuple[int, tuple[int, ...], np.dtype]:
    """Where the array ``name`` of an uncompressed ``.npz`` starts: (byte offset, shape, dtype).

    The member must be stored (not deflated) and C-ordered; its values are then the bytes from
    the offset on, so parts of it can be read without loading (or memory-mapping) the whole.
    """
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{name} is compressed")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ValueError("bad local header")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        if fortran or dtype.hasobject:
            raise ValueError(f"{name} is not a C-ordered numeric array")
        return f.tell(), tuple(shape), dtype


class StoredPatterns:
    """The (R, k, m) replicate patterns of one K, read from the sweep's block files on demand.

    Column ranges (:meth:`columns`) and replicates (``patterns[r]``, iteration) are read straight
    from each block's uncompressed ``components`` array (file reads at known offsets, no memory
    map, so nothing stays resident): the γ of a K and its selection panel then hold one column
    chunk or one replicate, not all the K's patterns (0.75 GB at K = 30, 100 replicates, 62,529
    voxels). ``np.asarray`` reads everything. The blocks are those the sweep wrote or verified
    (every array read in full, CRC checked, when a sweep resumes); values read are checked finite.

    Parameters
    ----------
    parts : (path, byte offset of the components, replicates) of each block, in replicate order.
    k, m : patterns per replicate and their length; dtype : their dtype.
    """

    ndim = 3

    def __init__(self, parts: list[tuple[Path, int, int]], k: int, m: int, dtype: np.dtype):
        self.parts = list(parts)
        self.k, self.m, self.dtype = int(k), int(m), np.dtype(dtype)
        self.shape = (sum(p[2] for p in self.parts), self.k, self.m)

    def __len__(self) -> int:
        return self.shape[0]

    def _rows(self, replicates: range, j0: int, j1: int) -> np.ndarray:
        """Replicates ``replicates`` (a step-1 range), columns j0:j1 -> (len, k, j1 - j0)."""
        out = np.empty((len(replicates), self.k, j1 - j0), dtype=self.dtype)
        size = self.dtype.itemsize
        first = 0
        for path, offset, count in self.parts:
            lo, hi = max(replicates.start, first), min(replicates.stop, first + count)
            if lo < hi:
                with open(path, "rb", buffering=0) as f:
                    for r in range(lo, hi):
                        for kk in range(self.k):
                            f.seek(offset + (((r - first) * self.k + kk) * self.m + j0) * size)
                            row = out[r - replicates.start, kk]
                            if f.readinto(memoryview(row).cast("B")) != row.nbytes:
                                raise InputError(f"sweep block {path} is truncated; delete it and run again")
            first += count
        if not np.isfinite(out).all():
            raise InputError(f"sweep store: non-finite patterns among replicates {replicates.start}.."
                             f"{replicates.stop - 1}; delete the run's sweep folder and run again")
        return out

    def columns(self, j0: int, j1: int) -> np.ndarray:
        """Columns ``j0:j1`` of every replicate, (R, k, j1 - j0)."""
        return self._rows(range(len(self)), j0, j1)

    def __getitem__(self, index):
        """``[r]``: replicate r, (k, m); ``[a:b]``: replicates a..b-1, still read on demand."""
        if isinstance(index, slice):
            a, b, step = index.indices(len(self))
            if step != 1:
                raise IndexError("StoredPatterns slices take step 1")
            return _SlicedPatterns(self, range(a, max(a, b)))
        r = range(len(self))[index]  # an int (IndexError past the end)
        return self._rows(range(r, r + 1), 0, self.m)[0]

    def __iter__(self):
        for r in range(len(self)):
            yield self[r]

    def __array__(self, dtype=None, copy=None):
        out = self.columns(0, self.m)
        return out if dtype is None else out.astype(dtype)


class _SlicedPatterns(StoredPatterns):
    """Replicates ``sel`` of a :class:`StoredPatterns` (still read on demand)."""

    def __init__(self, base: StoredPatterns, sel: range):
        self.base, self.sel = base, sel
        self.k, self.m, self.dtype = base.k, base.m, base.dtype
        self.shape = (len(sel), base.k, base.m)

    def _rows(self, replicates: range, j0: int, j1: int) -> np.ndarray:
        start = self.sel.start + replicates.start
        return self.base._rows(range(start, start + len(replicates)), j0, j1)
