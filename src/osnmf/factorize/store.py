"""The on-disk results of a sweep: one directory per run, one file per finished block.

Layout::

    <root>/<run key>/manifest.json          data hash, shape, parameters, osnmf version
    <root>/<run key>/k012/r0000-0020.npz    one finished block (written atomically)
    <root>/<run key>/k012/instability.json  gamma(K) once every block of K is done
    <root>/<run key>/final_k012.npz         the final model at the selected K

The run key is a hash of the data (its float32 bytes and shape) and of every parameter that
changes a block's result; ``k``, the number of replicates and the block size are not part of it,
so extending a sweep (more K, more replicates) reuses what is already there. A block file also
records the run key. A block that is damaged (truncated, zeroed, altered: every array is read in
full, so the zip's CRC-32 is checked), of the wrong shape or from another run or osnmf version is
never trusted: it is named in one :class:`~osnmf.errors.OsnmfWarning` and computed again.
"""

from __future__ import annotations

import json
import os
import struct
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from osnmf._version import __version__
from osnmf.atomic import save_npz, write_text
from osnmf.errors import InputError
from osnmf.factorize.params import BlockResult, BlockSpec, SweepParams, plan_blocks

__all__ = ["ReplicatePatterns", "StoredPatterns", "SweepStore", "data_digest", "npy_member"]


def data_digest(X: np.ndarray) -> str:
    """A short stable hash of a matrix's float32 values and shape (the data part of a run key)."""
    from osnmf.stagecache import digest

    X32 = np.ascontiguousarray(X, dtype=np.float32)
    return digest(X32)


BLOCK_ARRAYS = tuple(f.name for f in fields(BlockResult) if f.name != "extra")  # its arrays, in order


class SweepStore:
    """The on-disk results of one sweep run (see the module docstring for the layout).

    Parameters
    ----------
    root : folder holding runs; the run lives in ``root / key``.
    key : run key (hash of data + parameters), see :meth:`open`.
    """

    def __init__(self, root: str | os.PathLike, key: str):
        self.root = Path(root)
        self.key = key
        self.path = self.root / key

    @classmethod
    def open(cls, root: str | os.PathLike, X: np.ndarray, params: SweepParams,
             data_key: str | None = None) -> SweepStore:
        """Open (creating if needed) the run of ``X`` under ``params`` inside ``root``."""
        from osnmf.stagecache import digest

        data_key = data_key or data_digest(X)
        key = digest(data_key, params.key_fields())
        store = cls(root, key)
        manifest = store.path / "manifest.json"
        info = None
        if manifest.exists():
            try:
                info = json.loads(manifest.read_text(encoding="utf-8"))
                if not isinstance(info, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as exc:  # rewritten below; the blocks are checked one by one
                from osnmf.stagecache import damaged

                info = damaged(manifest, "sweep manifest", f"unreadable: {' '.join(str(exc).split())}")
        if info is not None:
            if info.get("key") != key or info.get("data") != data_key:
                raise InputError(f"sweep store {store.path} belongs to another run "
                                 "(data or parameters differ); delete it or use another root")
        else:
            info = {
                "key": key,
                "data": data_key,
                "shape": list(np.shape(X)),
                "params": params.key_fields(),
                "osnmf_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            write_text(manifest, json.dumps(info, indent=2, default=str))
        return store

    # blocks -----------------------------------------------------------------------------
    def block_path(self, spec: BlockSpec) -> Path:
        return self.path / f"{spec.name}.npz"

    def has(self, spec: BlockSpec) -> bool:
        """Whether a sound block is stored for ``spec`` (a damaged one warns and counts as absent)."""
        return self.block_path(spec).exists() and self.get(spec) is not None

    def put(self, spec: BlockSpec, result: BlockResult) -> Path:
        arrays = {
            "run_key": np.array(self.key),
            "components": result.components,
            "n_iter": result.n_iter,
            "loss": result.loss,
            "restart": result.restart,
            "seeds": result.seeds,
        }
        if result.coefficients is not None:
            arrays["coefficients"] = result.coefficients
        return save_npz(self.block_path(spec), compress=False, **arrays)

    def get(self, spec: BlockSpec, coefficients: bool = True) -> BlockResult | None:
        """A stored block, or None when absent, damaged or from another run (with one warning)."""
        from osnmf.stagecache import damaged, read_npz_checked

        path = self.block_path(spec)
        if not path.exists():
            return None
        z = read_npz_checked(path, "sweep block", ("run_key", "components", "n_iter", "loss", "restart", "seeds"))
        if z is None:
            return None
        if str(z["run_key"]) != self.key:
            return damaged(path, "sweep block", "from another run or osnmf version")
        n = spec.stop - spec.start
        D = z["components"]
        if D.ndim != 3 or D.shape[:2] != (n, spec.k) or any(z[f].shape[:1] != (n,) for f in
                                                               ("n_iter", "loss", "restart", "seeds")):
            return damaged(path, "sweep block", f"components of shape {D.shape} for {n} replicates at K={spec.k}")
        if not np.isfinite(D).all():
            return damaged(path, "sweep block", "non-finite values")
        A = z.get("coefficients") if coefficients else None
        return BlockResult(D, A, z["n_iter"], z["loss"], z["restart"], z["seeds"])

    def load_k(self, k: int, n_replicates: int, block_size: int,
               coefficients: bool = False, first: int | None = None, components: bool = True) -> BlockResult:
        """The blocks of rank ``k`` joined (replicates 0 .. n_replicates-1, or the ``first`` ones).

        Filled block by block into arrays allocated once: the peak is one copy of the K's
        patterns (0.75 GB at K = 30, 100 replicates, 62,529 voxels), not two.
        ``components=False``: every block is still read in full (its CRC checked) but only the
        per-replicate numbers are kept (``components`` is None); read the patterns with
        :meth:`patterns`.
        """
        n = n_replicates if first is None else min(int(first), n_replicates)
        out = None
        for spec in plan_blocks([k], n_replicates, block_size):
            if spec.start >= n:
                break
            res = self.get(spec, coefficients=coefficients)
            if res is None:
                raise InputError(f"sweep store {self.path}: block {spec.name} is missing; "
                                 "run the sweep again to finish it")
            if not components:
                res.components = None
            if out is None:
                def room(a):
                    return None if a is None else np.empty((n, *a.shape[1:]), a.dtype)

                out = BlockResult(*(room(getattr(res, f)) for f in BLOCK_ARRAYS))
                if coefficients and out.coefficients is None:
                    raise InputError(f"sweep store {self.path}: block {spec.name} has no coefficients")
            stop = min(spec.stop, n)
            for f in BLOCK_ARRAYS:
                target = getattr(out, f)
                if target is not None:
                    target[spec.start:stop] = getattr(res, f)[: stop - spec.start]
            del res
        return out

    def patterns(self, k: int, n_replicates: int, block_size: int) -> StoredPatterns:
        """The (n_replicates, k, m) patterns of rank ``k``, read from the block files on demand."""
        parts = []
        for spec in plan_blocks([k], n_replicates, block_size):
            path = self.block_path(spec)
            try:
                offset, shape, dtype = npy_member(path, "components")
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                raise InputError(f"sweep store {self.path}: block {spec.name} is missing or unreadable "
                                 f"({' '.join(str(exc).split())}); run the sweep again to finish it") from None
            if len(shape) != 3 or shape[:2] != (spec.stop - spec.start, k):
                raise InputError(f"sweep store {path}: components of shape {shape} for "
                                 f"{spec.stop - spec.start} replicates at K={k}; delete the block and run again")
            parts.append((path, offset, shape[0]))
        return StoredPatterns(parts, k, shape[2], dtype)

    # per-K summaries and the final model --------------------------------------------------
    def get_values(self, name: str, tag: Mapping[str, Any]) -> Any:
        """The values stored as ``name`` (a path relative to the store, e.g. ``k010/instability.json``)
        with this ``tag`` (the settings they were computed with), or None: absent, unreadable or
        computed with other settings (then recomputed)."""
        path = self.path / name
        if not path.exists():
            return None
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return info.get("values") if isinstance(info, dict) and info.get("tag") == dict(tag) else None

    def put_values(self, name: str, tag: Mapping[str, Any], values: Any) -> None:
        """Store JSON ``values`` as ``name`` with their ``tag`` (atomically)."""
        write_text(self.path / name, json.dumps({"tag": dict(tag), "values": values}))

    def final_path(self, k: int, tag: str) -> Path:
        return self.path / f"final_k{k:03d}_{tag}.npz"


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


class ReplicatePatterns(Mapping):
    """``k -> (R, k, m)`` replicate patterns, held in memory or read from the store on access."""

    def __init__(self, memory: dict[int, np.ndarray], store: SweepStore | None,
                 ks: list[int], n_replicates: int, block_size: int):
        self._memory = memory
        self._store = store
        self._ks = ks
        self._n = n_replicates
        self._bs = block_size

    def __getitem__(self, k: int) -> np.ndarray:
        return self.head(k, self._n)

    def head(self, k: int, n: int) -> np.ndarray:
        """The first ``n`` replicates' patterns at ``k``, (n, k, m) (only those are read)."""
        if k in self._memory:
            return self._memory[k][:n]
        if self._store is None or k not in self._ks:
            raise KeyError(k)
        return np.asarray(self._store.patterns(k, self._n, self._bs)[:n])

    def __iter__(self) -> Iterator[int]:
        return iter(self._ks)

    def __len__(self) -> int:
        return len(self._ks)

    def __repr__(self) -> str:
        where = "memory" if self._store is None else f"store {self._store.path}"
        return f"<replicate patterns for K in {self._ks} ({where})>"
