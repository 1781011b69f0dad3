"""A cache of pipeline stage results keyed by their inputs, for skip-if-done and resume.

Each stage result is a dict of numpy arrays saved as ``<root>/<stage>.npz`` together with the key
it was computed for (a hash of upstream keys and parameters) and the cache format. A stage reruns
only when its key changes; a killed run leaves no half-written result (atomic writes). Typed stage
results (dataclasses of arrays, DataFrames and scalars) travel through :func:`to_arrays` /
:func:`from_arrays`; nothing is pickled. A damaged entry (truncated, zeroed, bytes changed: the
zip's CRC-32 of every array is checked on reading) or one from another cache format is never
trusted: :func:`read_npz_checked` names it in one :class:`~osnmf.errors.OsnmfWarning` and the stage
is recomputed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from osnmf.atomic import save_npz
from osnmf.errors import OsnmfWarning

KEY_FIELD = "__stage_key__"
FORMAT_FIELD = "__format__"
FORMAT = "osnmf-stage-2"  # bump when the stored arrays of a stage change meaning


def read_npz_checked(path: str | Path, what: str, required: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
    """Every array of the ``.npz`` at ``path``, each read in full (so the zip's CRC-32 is checked).

    Returns None, after one :class:`OsnmfWarning` naming ``path`` and why (``what`` says what the
    file is, e.g. ``"cache entry"``), when the file is truncated, zeroed, altered, holds pickled
    objects or lacks one of the ``required`` arrays; the caller recomputes it.
    """
    try:
        with open(path, "rb") as handle:  # our handle: closed even when the archive is broken
            if handle.read(4) != b"PK\x03\x04":
                return damaged(path, what, "not an .npz archive: zeroed, truncated or overwritten")
            handle.seek(0)
            with np.load(handle, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return damaged(path, what, f"unreadable: {reason}")
    missing = [name for name in required if name not in arrays]
    if missing:
        return damaged(path, what, f"lacks {', '.join(missing)}")
    return arrays


def damaged(path: str | Path, what: str, reason: str) -> None:
    """Warn (one line) that the ``what`` at ``path`` is damaged and will be recomputed; return None."""
    warnings.warn(f"{path}: damaged {what} ({reason}); recomputing it", OsnmfWarning, stacklevel=3)
    return None


def digest(*parts) -> str:
    """A short stable hash of JSON-serialisable parts and numpy arrays."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str((part.dtype.str, part.shape)).encode())
            flat = np.ascontiguousarray(part).reshape(-1)
            # the array's own bytes, read in place (tobytes() would copy it: 1 GB at paper size)
            h.update(flat.tobytes() if flat.dtype.hasobject else flat.view(np.uint8))
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class StageCache:
    """Stage results under ``root`` (created on demand)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, stage: str) -> Path:
        return self.root / f"{stage}.npz"

    def get(self, stage: str, key: str) -> dict[str, np.ndarray] | None:
        """The stored result if it was computed for ``key``, else None (a damaged entry or one of
        another format also gives None, with one warning: see :func:`read_npz_checked`)."""
        path = self.path(stage)
        if not path.exists():
            return None
        arrays = read_npz_checked(path, "cache entry", (KEY_FIELD,))
        if arrays is None:
            return None
        written = str(arrays.pop(FORMAT_FIELD, "none"))
        if written != FORMAT:
            return damaged(path, "cache entry", f"from another osnmf version: format {written}, not {FORMAT}")
        if str(arrays.pop(KEY_FIELD)) != key:
            return None  # computed for other inputs or parameters: recompute, nothing wrong
        return arrays

    def put(self, stage: str, key: str, arrays: dict[str, np.ndarray]) -> None:
        save_npz(self.path(stage), **{KEY_FIELD: np.array(key), FORMAT_FIELD: np.array(FORMAT)}, **arrays)


def frame_to_arrays(name: str, frame) -> dict[str, np.ndarray]:
    """Encode a DataFrame as plain arrays (``<name>::<column>``); object columns become strings."""
    out = {f"{name}::__columns__": np.array([str(c) for c in frame.columns])}
    for i, column in enumerate(frame.columns):
        values = frame[column].to_numpy()
        if values.dtype == object:
            values = np.array([str(v) for v in values])
        out[f"{name}::{i}"] = values
    return out


def arrays_to_frame(name: str, arrays: dict[str, np.ndarray]):
    """Inverse of :func:`frame_to_arrays` (tuples and lists come back as their string form)."""
    import pandas as pd

    columns = arrays[f"{name}::__columns__"].tolist()
    return pd.DataFrame({c: arrays[f"{name}::{i}"] for i, c in enumerate(columns)})


_SCALARS = {"int": int, "float": float, "str": str, "bool": bool}


def _kinds(cls) -> dict[str, str]:
    """Field name → "array", "frame" or a scalar type name, from the dataclass's annotations."""
    hints = typing.get_type_hints(cls)
    kinds = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        name = getattr(hint, "__name__", str(hint))
        if name == "ndarray":
            kinds[f.name] = "array"
        elif name == "DataFrame":
            kinds[f.name] = "frame"
        elif name in _SCALARS:
            kinds[f.name] = name
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: a stage result holds arrays, DataFrames and scalars, not {hint}")
    return kinds


def to_arrays(result) -> dict[str, np.ndarray]:
    """A stage-result dataclass as plain arrays (DataFrames via :func:`frame_to_arrays`)."""
    out: dict[str, np.ndarray] = {}
    for name, kind in _kinds(type(result)).items():
        value = getattr(result, name)
        if kind == "frame":
            out.update(frame_to_arrays(name, value))
        else:
            out[name] = np.asarray(value)
    return out


def from_arrays(cls, arrays: dict[str, np.ndarray]):
    """Inverse of :func:`to_arrays`: rebuild a ``cls`` instance (raises KeyError on a missing field)."""
    values = {}
    for name, kind in _kinds(cls).items():
        if kind == "frame":
            values[name] = arrays_to_frame(name, arrays)
        elif kind == "array":
            values[name] = arrays[name]
        else:
            values[name] = _SCALARS[kind](arrays[name].item() if kind != "str" else str(arrays[name]))
    return cls(**values)
