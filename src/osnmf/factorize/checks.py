"""Input and parameter checks of the factorize layer: one rule per quantity, one message format.

The parameters of the solver and the sweep are declared here once, with their defaults
(:data:`MAX_ITER`, :data:`TOL`, ...) and their constraints (:data:`RULES`, the
:mod:`osnmf.constraints` objects that :mod:`osnmf.params_table` gives the run parameters of the
same names). Each public entry point (``fit_nmf``, ``fit_nmf_replicates``, ``SweepParams``,
``StaNMF.fit``, the baselines, ``RunConfig``) checks its arguments with them once; the sweep's
blocks run on checked values and check nothing again. Every refusal reads ``name=value: must be ...``.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np

from osnmf.constraints import SEED, Check, Interval, Options
from osnmf.errors import ConfigError, InputError

__all__ = [
    "BACKENDS",
    "GROW_ONLY",
    "MAX_ITER",
    "N_REPLICATES",
    "N_RESTARTS",
    "PERTURBATIONS",
    "RANDOM_STATE",
    "RULES",
    "SOLVERS",
    "SWEEP_SOLVER",
    "TOL",
    "as_rows",
    "check",
    "check_backend",
    "check_counts",
    "check_k",
    "check_matrix",
    "check_scale",
    "max_value",
    "resolve_dtype",
]

PERTURBATIONS = ("bootstrap", "init", "both")
SOLVERS = ("exact", "compressed")
BACKENDS = ("numpy", "torch")
GROW_ONLY = "only"  # grow value: grown starts replace the cold ones beyond the first K

# the defaults, written once (scikit-learn's NMF stopping rule: 200 iterations, tol 1e-4)
MAX_ITER = 200
TOL = 1e-4
N_REPLICATES = 100
N_RESTARTS = 1
RANDOM_STATE = 0


def _grow(value: Any) -> bool | str:
    """``grow`` as True, False or ``"only"``; the strings "true" / "false" (the CLI's and a TOML
    string's spelling) become the booleans, any other non-string its truth value."""
    if not isinstance(value, str):
        return bool(value)
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    if value != GROW_ONLY:
        raise ValueError(value)
    return value


#: the constraint of each parameter of the solver and the sweep (one object per name)
RULES = {
    "n_replicates": Interval(Integral, 2, why="instability needs at least 2 replicates"),
    "n_restarts": Interval(Integral, 1),
    "max_iter": Interval(Integral, 1),
    "tol": Interval(Real, 0, why="0 runs max_iter iterations"),
    "random_state": SEED,
    "n_jobs": Interval(Integral, 1),
    "block_size": Interval(Integral, 1),
    "batch_size": Interval(Integral, 1),
    "certify": Interval(Integral, 0, why="exact refits per K; 0 = off"),
    "k": Interval(Integral, 1, why="the number of patterns"),
    "perturbation": Options(PERTURBATIONS),
    "solver": Options(("auto", *SOLVERS)),  # "auto": chosen by size (osnmf.factorize.sweep.autosolver)
    "backend": Options(BACKENDS),
    "grow": Check(_grow, f"True, False or {GROW_ONLY!r} (False = the paper's recipe)", (GROW_ONLY, "true", "false")),
}


#: the solver a sweep runs, "auto" resolved
SWEEP_SOLVER = Options(SOLVERS)


def check(name: str, value: Any) -> Any:
    """``value`` checked (and normalised) by the rule of parameter ``name`` in :data:`RULES`."""
    return RULES[name].check(name, value)


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
    if arr.size and np.issubdtype(arr.dtype, np.inexact):
        check_scale(max(float(arr.max()), -float(arr.min())), arr.shape, name, arr.dtype)  # no |arr| copy
    return arr


SCALE_MARGIN = 1e6  # sums of n m squares stay this far below the dtype's largest value


def max_value(shape: tuple[int, int], dtype: Any = np.float32) -> float:
    """The largest ``|x|`` the solver takes in ``dtype`` for data of ``shape`` (n, m):
    ``sqrt(finfo.max / (SCALE_MARGIN n m))``, so every Gram entry, ``‖X‖²`` and the products of
    the coordinate descent stay finite (2.6e13 in float32 for 8 × 62,529 values, 1.1e12 at paper
    size; a fit of 8 × 1,000 float32 values broke down from 1e16, 1/20 of the bound without the
    margin, tests/test_nmf.py)."""
    n, m = shape
    return float(np.sqrt(np.finfo(dtype).max / (SCALE_MARGIN * max(1, n * m))))


def check_scale(largest: float, shape: tuple[int, int], name: str = "X", dtype: Any = np.float32) -> None:
    """:class:`InputError` when values up to ``largest`` overflow the solver's products (:func:`max_value`);
    the message names the fix (rescale)."""
    limit = max_value(shape, dtype)
    if largest > limit:
        raise InputError(f"{name} has values up to {largest:.3g}, too large for NMF in {np.dtype(dtype)}: products "
                         f"of {shape[0]} × {shape[1]} values overflow above {limit:.3g}; rescale the data, e.g. "
                         "divide it by its maximum")


def _all_finite(arr: np.ndarray, block_bytes: int = 2**24) -> bool:
    """``np.isfinite(arr).all()`` over row blocks (no boolean array of arr's size: 0.27 GB at
    paper size)."""
    if arr.ndim < 2 or not np.issubdtype(arr.dtype, np.inexact):
        return bool(np.isfinite(arr).all())
    step = max(1, block_bytes // max(1, arr[:1].nbytes))
    return all(bool(np.isfinite(arr[i:i + step]).all()) for i in range(0, arr.shape[0], step))


def check_k(k: Any, limit: int | None = None, name: str = "k") -> int:
    """A number of patterns: an integer in 1..``limit`` (no upper bound when ``limit`` is None).

    NMF with NNDSVDa and PCA need ``k <= min(rows, columns)``; a random initialisation does not.
    """
    if limit is None:
        return RULES["k"].check(name, k)
    return Interval(Integral, 1, limit, closed="both", why="at most min(rows, columns) for NNDSVDa/PCA; "
                    "NMF with init='random' has no bound").check(name, k)


def check_backend(backend: Any, device: Any) -> str:
    """Backend name; a non-CPU ``device`` needs the torch backend."""
    check("backend", backend)
    if backend == "numpy" and device is not None and device != "cpu":
        raise ConfigError(f"device={device!r}: must be cpu or None with backend='numpy' (use backend='torch')")
    return backend


def resolve_dtype(dtype: Any) -> np.dtype:
    """float32 or float64 working precision, else :class:`ConfigError`."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ConfigError(f"dtype={dt}: must be float32 or float64")
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
