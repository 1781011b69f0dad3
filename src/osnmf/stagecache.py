"""A cache of pipeline stage results keyed by their inputs, for skip-if-done and resume.

Each stage result is a dict of numpy arrays saved as ``<root>/<stage>.npz`` together with the key
it was computed for (a hash of upstream keys and parameters). A stage reruns only when its key
changes; a killed run leaves no half-written result (atomic writes). Typed stage results
(dataclasses of arrays, DataFrames and scalars) travel through :func:`to_arrays` /
:func:`from_arrays`; nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from pathlib import Path

import numpy as np

from osnmf.atomic import save_npz

KEY_FIELD = "__stage_key__"


def digest(*parts) -> str:
    """A short stable hash of JSON-serialisable parts and numpy arrays."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str((part.dtype.str, part.shape)).encode())
            h.update(np.ascontiguousarray(part).tobytes())
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
        """The stored result if it was computed for ``key``, else None."""
        path = self.path(stage)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                if str(npz[KEY_FIELD]) != key:
                    return None
                return {name: npz[name] for name in npz.files if name != KEY_FIELD}
        except (OSError, ValueError, KeyError):
            return None  # unreadable or foreign file: recompute

    def put(self, stage: str, key: str, arrays: dict[str, np.ndarray]) -> None:
        save_npz(self.path(stage), **{KEY_FIELD: np.array(key)}, **arrays)


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
