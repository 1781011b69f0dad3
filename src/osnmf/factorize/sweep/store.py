"""The results of a sweep: on disk (one directory per run, one file per finished block) or in memory.

Layout::

    <root>/<run key>/manifest.json          data hash, shape, parameters, osnmf version
    <root>/<run key>/k012/r0000-0020.npz    one finished block (written atomically)
    <root>/<run key>/k012/instability.json  gamma(K) once every block of K is done (with run key, CRC-32)
    <root>/<run key>/final_k012.npz         the final model at the selected K

The run key is a hash of the data (its float32 bytes and shape) and of every parameter that
changes a block's result; ``k``, the number of replicates and the block size are not part of it,
so extending a sweep (more K, more replicates) reuses what is already there. A block file also
records the run key. A block that is damaged (truncated, zeroed, altered: every array is read in
full, so the zip's CRC-32 is checked), of the wrong shape or from another run or osnmf version is
never trusted: it is named in one :class:`~osnmf.errors.OsnmfWarning` and computed again. The
per-K values (γ, the selection rules, …) are checked the same way: a value file edited by hand,
damaged, of another format or run is named in one warning and recomputed from the blocks.

:class:`MemoryStore` is its twin for a fit without a folder: the same methods, the blocks, values
and final model held in dicts (:func:`open_store` picks one), so ``StaNMF.fit`` reads and writes
a sweep's results one way.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from osnmf._version import __version__
from osnmf.atomic import save_npz, write_text
from osnmf.errors import InputError
from osnmf.factorize.sweep.params import BlockResult, BlockSpec, SweepParams, plan_blocks
from osnmf.factorize.sweep.stored_patterns import StoredPatterns, npy_member

if TYPE_CHECKING:
    from osnmf.factorize.nmf.fits import NMFResult

__all__ = ["MemoryStore", "ReplicatePatterns", "SweepStore", "data_digest", "open_store"]


def data_digest(X: np.ndarray) -> str:
    """A short stable hash of a matrix's float32 values and shape (the data part of a run key)."""
    from osnmf.run.stagecache import digest

    X32 = np.ascontiguousarray(X, dtype=np.float32)
    return digest(X32)


VALUES_FORMAT = "osnmf-values-2"  # per-K values (γ, selection rules, …): 2 = with run key and CRC-32


def _values_crc(tag: Any, values: Any) -> int:
    """CRC-32 of the canonical JSON of a stored value file's tag and values."""
    return zlib.crc32(json.dumps([tag, values], sort_keys=True).encode())


BLOCK_ARRAYS = tuple(f.name for f in fields(BlockResult) if f.name != "extra")  # its arrays, in order


class SweepStore:
    """The on-disk results of one sweep run (see the module docstring for the layout).

    Parameters
    ----------
    root : folder holding runs; the run lives in ``root / key``.
    key : run key (hash of data + parameters), see :meth:`open`.
    """

    on_disk = True

    def __init__(self, root: str | os.PathLike, key: str):
        self.root = Path(root)
        self.key = key
        self.path = self.root / key

    @classmethod
    def open(cls, root: str | os.PathLike, X: np.ndarray, params: SweepParams,
             data_key: str | None = None) -> SweepStore:
        """Open (creating if needed) the run of ``X`` under ``params`` inside ``root``."""
        from osnmf.run.stagecache import digest

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
                from osnmf.run.stagecache import damaged

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

    def stored(self, spec: BlockSpec) -> bool:
        """Whether a file is stored for ``spec`` (sound or not: :meth:`has` reads it)."""
        return self.block_path(spec).exists()

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
        from osnmf.run.stagecache import damaged, read_npz_checked

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
        with this ``tag`` (the settings they were computed with), or None: absent, computed with
        other settings, or (with one warning, as a damaged block) unreadable, of another format or
        edited since written (their CRC-32 and run key are checked); the caller recomputes them."""
        from osnmf.run.stagecache import damaged

        path = self.path / name
        if not path.exists():
            return None
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return damaged(path, "sweep result", f"unreadable: {' '.join(str(exc).split())}")
        if not isinstance(info, dict) or info.get("format") != VALUES_FORMAT:
            return damaged(path, "sweep result", f"not of format {VALUES_FORMAT} (another osnmf version)")
        if info.get("run_key") != self.key:
            return damaged(path, "sweep result", "from another run")
        if info.get("crc32") != _values_crc(info.get("tag"), info.get("values")):
            return damaged(path, "sweep result", "its CRC-32 does not match: edited or damaged since written")
        return info["values"] if info.get("tag") == json.loads(json.dumps(dict(tag))) else None

    def put_values(self, name: str, tag: Mapping[str, Any], values: Any) -> None:
        """Store JSON ``values`` as ``name`` with their ``tag``, the run key and a CRC-32 (atomically)."""
        tag, values = json.loads(json.dumps(dict(tag))), json.loads(json.dumps(values))  # as read back
        write_text(self.path / name, json.dumps({"format": VALUES_FORMAT, "run_key": self.key, "tag": tag,
                                                 "values": values, "crc32": _values_crc(tag, values)}))

    def close(self) -> None:
        """Nothing to release: every file is closed after each read (see :meth:`MemoryStore.close`)."""

    def final_path(self, k: int, tag: str) -> Path:
        return self.path / f"final_k{k:03d}_{tag}.npz"

    def get_final(self, k: int, n_restarts: int) -> NMFResult | None:
        """The final model stored at ``k`` (fitted with ``n_restarts``), or None: absent, or damaged
        or from another run (then one warning, and it is fitted again)."""
        from osnmf.factorize.nmf.fits import NMFResult
        from osnmf.run.stagecache import damaged, read_npz_checked

        path = self.final_path(k, f"r{n_restarts}")
        if not path.exists():
            return None
        z = read_npz_checked(path, "final model", ("run_key", "D", "A", "loss", "n_iter"))
        if z is not None and str(z["run_key"]) != self.key:
            z = damaged(path, "final model", "from another run or osnmf version")
        return None if z is None else NMFResult(z["A"], z["D"], int(z["n_iter"]), float(z["loss"]))

    def put_final(self, k: int, n_restarts: int, model: NMFResult) -> None:
        """Store the final model at ``k`` (atomically, with the run key)."""
        save_npz(self.final_path(k, f"r{n_restarts}"), compress=False, run_key=np.array(self.key),
                 D=np.asarray(model.D), A=np.asarray(model.A), loss=np.array(float(model.loss)),
                 n_iter=np.array(int(model.n_iter)))


class MemoryStore:
    """The in-memory twin of :class:`SweepStore`: the same methods, everything held in dicts.

    ``patterns(k, …)`` joins the blocks of K once and keeps the (R, k, m) array; values and the
    final model go through the same calls as on disk (values as JSON, like the files).
    """

    on_disk = False

    def __init__(self) -> None:
        self._blocks: dict[BlockSpec, BlockResult] = {}
        self._patterns: dict[tuple[int, int, int], np.ndarray] = {}
        self._values: dict[str, tuple[str, str]] = {}
        self._final: dict[tuple[int, int], NMFResult] = {}

    def stored(self, spec: BlockSpec) -> bool:
        return spec in self._blocks

    def has(self, spec: BlockSpec) -> bool:
        return spec in self._blocks

    def put(self, spec: BlockSpec, result: BlockResult) -> None:
        self._blocks[spec] = result

    def get(self, spec: BlockSpec, coefficients: bool = True) -> BlockResult | None:
        return self._blocks.get(spec)

    def _parts(self, k: int, n_replicates: int, block_size: int, n: int) -> list[BlockResult]:
        parts = []
        for spec in plan_blocks([k], n_replicates, block_size):
            if spec.start >= n:
                break
            if spec not in self._blocks:
                raise InputError(f"sweep: block {spec.name} is missing; run the sweep again to finish it")
            parts.append(self._blocks[spec])
        return parts

    def load_k(self, k: int, n_replicates: int, block_size: int,
               coefficients: bool = False, first: int | None = None, components: bool = True) -> BlockResult:
        """As :meth:`SweepStore.load_k`: the blocks of rank ``k`` joined (the ``first`` replicates)."""
        n = n_replicates if first is None else min(int(first), n_replicates)
        parts = self._parts(k, n_replicates, block_size, n)
        if coefficients and any(p.coefficients is None for p in parts):
            raise InputError(f"sweep: the blocks at K={k} have no coefficients")
        keep = {"components": components, "coefficients": coefficients}
        return BlockResult(*(np.concatenate([getattr(p, f) for p in parts])[:n] if keep.get(f, True) else None
                             for f in BLOCK_ARRAYS))

    def patterns(self, k: int, n_replicates: int, block_size: int) -> np.ndarray:
        """The (n_replicates, k, m) patterns of rank ``k`` (joined once, then kept)."""
        key = (k, n_replicates, block_size)
        if key not in self._patterns:
            parts = self._parts(k, n_replicates, block_size, n_replicates)
            self._patterns[key] = np.concatenate([p.components for p in parts])
        return self._patterns[key]

    def get_values(self, name: str, tag: Mapping[str, Any]) -> Any:
        """As :meth:`SweepStore.get_values`."""
        stored = self._values.get(name)
        if stored is None or json.loads(stored[0]) != dict(tag):
            return None
        return json.loads(stored[1])

    def put_values(self, name: str, tag: Mapping[str, Any], values: Any) -> None:
        self._values[name] = (json.dumps(dict(tag)), json.dumps(values))

    def get_final(self, k: int, n_restarts: int) -> NMFResult | None:
        return self._final.get((k, n_restarts))

    def put_final(self, k: int, n_restarts: int, model: NMFResult) -> None:
        self._final[k, n_restarts] = model

    def close(self) -> None:
        """Drop the blocks (their coefficients too); the patterns joined by :meth:`patterns` stay."""
        self._blocks.clear()


def open_store(root: str | os.PathLike | None, X: np.ndarray, params: SweepParams) -> SweepStore | MemoryStore:
    """The sweep's store: :meth:`SweepStore.open` in ``root``, or a :class:`MemoryStore` when None."""
    return MemoryStore() if root is None else SweepStore.open(root, X, params)


class ReplicatePatterns(Mapping):
    """``k -> (R, k, m)`` replicate patterns, read from the sweep's store (on disk: on access)."""

    def __init__(self, store: SweepStore | MemoryStore, ks: list[int], n_replicates: int, block_size: int):
        self._store = store
        self._ks = ks
        self._n = n_replicates
        self._bs = block_size

    def __getitem__(self, k: int) -> np.ndarray:
        return self.head(k, self._n)

    def head(self, k: int, n: int) -> np.ndarray:
        """The first ``n`` replicates' patterns at ``k``, (n, k, m) (only those are read)."""
        if k not in self._ks:
            raise KeyError(k)
        return np.asarray(self._store.patterns(k, self._n, self._bs)[:n])

    def __iter__(self) -> Iterator[int]:
        return iter(self._ks)

    def __len__(self) -> int:
        return len(self._ks)

    def __repr__(self) -> str:
        where = f"store {self._store.path}" if self._store.on_disk else "memory"
        return f"<replicate patterns for K in {self._ks} ({where})>"
