"""Input and parameter checks of the factorize layer: one rule per quantity, one message each.

Every entry point (``fit_nmf``, ``fit_nmf_replicates``, ``SweepParams``, ``StaNMF.fit``, the
baselines, ``RunConfig``) validates through these functions, so a value refused in one place is
refused everywhere, with the same one-line :class:`~osnmf.errors.OsnmfError` message.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from osnmf.errors import ConfigError, InputError

__all__ = [
    "BACKENDS",
    "GROW_ONLY",
    "as_rows",
    "PERTURBATIONS",
    "SOLVERS",
    "check_backend",
    "check_choice",
    "check_counts",
    "check_grow",
    "check_k",
    "check_matrix",
    "check_positive_int",
    "check_tol",
    "resolve_dtype",
]

PERTURBATIONS = ("bootstrap", "init", "both")
SOLVERS = ("exact", "compressed")
BACKENDS = ("numpy", "torch")
GROW_ONLY = "only"  # grow value: grown starts replace the cold ones beyond the first K


def check_matrix(
    X: Any,
    *,
    name: str = "X",
    dtype: Any = np.float32,
    nonnegative: bool = True,
    min_shape: tuple[int, int] = (1, 1),
    nonzero: bool = False,
) -> np.ndarray:
    """Validate a data matrix (rows = genes/samples, columns = voxels) and return it as an array.

    Accepts numpy arrays, pandas DataFrames and scipy sparse matrices (densified).

    Parameters
    ----------
    X : array-like, shape (n, m)
    name : what to call it in messages.
    dtype : dtype of the returned C-contiguous array; None keeps a numeric dtype as it is.
    nonnegative : refuse negative entries (NMF); False for PCA-type baselines.
    min_shape : smallest (rows, columns) accepted.
    nonzero : refuse an all-zero matrix.

    Raises
    ------
    InputError
        Not 2-D, too small, not numeric, NaN/inf, negative (when ``nonnegative``), all zeros
        (when ``nonzero``).
    """
    if hasattr(X, "toarray") and callable(X.toarray):
        X = X.toarray()
    try:
        arr = np.asarray(X)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise InputError(f"{name} cannot be read as an array: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InputError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D genes × voxels matrix, got shape {arr.shape}")
    if arr.shape[0] < min_shape[0] or arr.shape[1] < min_shape[1]:
        raise InputError(f"{name} must have at least {min_shape[0]} rows and {min_shape[1]} "
                         f"columns, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not _all_finite(arr):
        bad = int((~np.isfinite(arr)).sum())
        raise InputError(f"{name} has {bad} NaN or infinite values; impute missing voxels first "
                         "(osnmf.impute_knn) or drop them")
    if nonnegative and arr.size and arr.min() < 0:
        raise InputError(f"Negative values in data: {name} has negative entries (min "
                         f"{float(arr.min()):.4g}); NMF needs non-negative data, clip them first "
                         "(np.clip(X, 0, None))")
    if nonzero and not arr.any():
        raise InputError(f"{name} is all zeros; there is nothing to factorise")
    return arr


def _all_finite(arr: np.ndarray, block_bytes: int = 2**24) -> bool:
    """``np.isfinite(arr).all()`` over row blocks (no boolean array of arr's size: 0.27 GB at
    paper size)."""
    if arr.ndim < 2 or not np.issubdtype(arr.dtype, np.inexact):
        return bool(np.isfinite(arr).all())
    step = max(1, block_bytes // max(1, arr[:1].nbytes))
    return all(bool(np.isfinite(arr[i:i + step]).all()) for i in range(0, arr.shape[0], step))


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools refused), else :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_k(k: Any, limit: int | None = None, name: str = "k") -> int:
    """A number of patterns: an integer in 1..``limit`` (no upper bound when ``limit`` is None).

    NMF with NNDSVDa and PCA need ``k <= min(rows, columns)``; a random initialisation does not.
    """
    k = check_positive_int(k, f"{name} (number of patterns)")
    if limit is not None and k > limit:
        raise ConfigError(f"{name} must lie in 1..{limit} (at most min(rows, columns) for "
                          f"NNDSVDa/PCA; NMF with init='random' has no bound), got {k}")
    return k


def check_tol(tol: Any) -> float:
    """The stopping tolerance: a finite number >= 0 (0 = run all ``max_iter`` iterations)."""
    try:
        value = float(tol)
    except (TypeError, ValueError):
        raise ConfigError(f"tol must be a number >= 0, got {tol!r}") from None
    if isinstance(tol, bool) or not (0 <= value < np.inf):
        raise ConfigError(f"tol must be a finite number >= 0 (0 runs max_iter iterations), "
                          f"got {tol!r}")
    return value


def check_choice(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``, else :class:`ConfigError` listing them."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def check_grow(value: Any) -> bool | str:
    """``grow`` as True, False or ``"only"``; the strings "true" / "false" (the CLI's and a TOML
    string's spelling) become the booleans, any other non-string its truth value."""
    if not isinstance(value, str):
        return bool(value)
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    if value != GROW_ONLY:
        raise ConfigError(f"grow must be True, False or {GROW_ONLY!r} (False = the paper's recipe), got {value!r}")
    return value


def check_backend(backend: Any, device: Any) -> str:
    """Backend name; a non-CPU ``device`` needs the torch backend."""
    check_choice(backend, "backend", BACKENDS)
    if backend == "numpy" and device is not None and device != "cpu":
        raise ConfigError(f"device={device!r} needs backend='torch'")
    return backend


def resolve_dtype(dtype: Any) -> np.dtype:
    """float32 or float64 working precision, else :class:`ConfigError`."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ConfigError(f"dtype must be float32 or float64, got {dt}")
    return dt


def as_rows(values: Any, n_columns: int, message: str) -> np.ndarray:
    """``values`` as a 2-D array of rows with ``n_columns`` columns (one row may come as 1-D).

    Raises :class:`InputError` with ``message`` and the shape found otherwise.
    """
    arr = np.asarray(values)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n_columns:
        raise InputError(f"{message}, got shape {arr.shape}")
    return arr


def check_counts(row_counts: Any, n: int) -> np.ndarray:
    """Bootstrap row multiplicities as int64 (R, n); each replicate needs a positive count."""
    c = as_rows(row_counts, n, f"row_counts must have shape (R, {n}) (one count per row of X)")
    if not np.issubdtype(c.dtype, np.integer):
        if not np.all(np.isfinite(c)) or not np.all(c == np.round(c)):
            raise InputError("row_counts must be integers (bootstrap multiplicities)")
        c = c.astype(np.int64)
    if c.min() < 0:
        raise InputError("row_counts must be non-negative")
    if np.any(c.sum(axis=1) == 0):
        raise InputError("every replicate needs at least one row with a positive count")
    return c
