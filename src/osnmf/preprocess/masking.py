"""Masking: volumes → the non-negative experiments × voxels matrix that NMF takes, and back.

Flattening itself lives in :mod:`osnmf.expression` (:func:`to_matrix` / :func:`to_volumes`); this
module adds the preprocessing decisions: which voxels (``support``), negatives clipped to 0,
experiments without any observed voxel dropped (with a warning, or an error when ``strict``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from osnmf.errors import InputError
from osnmf.expression import SpatialExpression, to_matrix, to_volumes

__all__ = ["PreparedMatrix", "prepare_matrix"]


@dataclass
class PreparedMatrix:
    """The NMF input matrix and what it takes to map results back.

    Attributes
    ----------
    X : float32 ``(n_kept, n_support_voxels)``, >= 0; NaN where missing unless filled.
    missing : bool, same shape as ``X``: True where the input was missing (before any fill).
    support : bool ``(AP, DV, ML)``; its C-order voxels are the columns of ``X``.
    kept, dropped : int indices (into the input experiments) of the rows kept / dropped.
    n_clipped : number of negative entries set to 0.
    expression : the kept experiments as a SpatialExpression when the input was one, else None.
    """

    X: np.ndarray
    missing: np.ndarray = field(repr=False)
    support: np.ndarray = field(repr=False)
    kept: np.ndarray = field(repr=False)
    dropped: np.ndarray = field(repr=False)
    n_clipped: int = 0
    expression: SpatialExpression | None = field(default=None, repr=False)

    @property
    def n_dropped(self) -> int:
        return int(self.dropped.size)

    def to_volumes(self, matrix: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Rows over the support (e.g. patterns ``(K, n_voxels)``) → volumes ``(K, AP, DV, ML)``."""
        return to_volumes(np.asarray(matrix), self.support, fill=fill)

    def summary(self) -> dict:
        """Counts for reports: experiments kept/dropped, voxels, missing fraction, clipped."""
        return {
            "n_experiments": int(self.X.shape[0]),
            "n_dropped": self.n_dropped,
            "n_voxels": int(self.X.shape[1]),
            "missing_fraction": float(self.missing.mean()) if self.missing.size else 0.0,
            "n_clipped": int(self.n_clipped),
        }


def prepare_matrix(
    data,
    support: np.ndarray | None = None,
    strict: bool = False,
    fill_missing: float | None = None,
) -> PreparedMatrix:
    """Experiments × support-voxels matrix for NMF: clip negatives, drop empty experiments.

    Parameters
    ----------
    data : float volumes ``(n_experiments, AP, DV, ML)`` (NaN = missing) or a SpatialExpression.
    support : bool ``(AP, DV, ML)`` voxels that become columns; default the atlas brain mask of a
        SpatialExpression (the column order of every genes × voxels matrix in osnmf). Voxels left
        missing after imputation (outside the imputation support) stay NaN unless ``fill_missing``.
    strict : raise :class:`~osnmf.errors.InputError` instead of dropping experiments that have no
        observed voxel in the support.
    fill_missing : value for the remaining missing entries (the reference code effectively used 0);
        None keeps NaN (for missing-aware NMF, which reads ``missing``).

    Returns
    -------
    :class:`PreparedMatrix`.
    """
    expr = data if isinstance(data, SpatialExpression) else None
    volumes = expr.volumes if expr is not None else np.asarray(data)
    if support is None:
        if expr is None:
            raise InputError("prepare_matrix needs a support mask when given plain volumes")
        support = expr.atlas.brain_mask
    support = np.asarray(support)
    if support.dtype != bool:
        raise InputError(f"support must be a boolean mask, got dtype {support.dtype}")
    if volumes.ndim != 4:
        raise InputError(f"volumes must be (experiments, AP, DV, ML), got shape {volumes.shape}")
    X = to_matrix(volumes, support).astype(np.float32, copy=False)
    missing = np.isnan(X)
    empty = missing.all(axis=1) if X.shape[1] else np.ones(X.shape[0], dtype=bool)
    dropped = np.flatnonzero(empty)
    kept = np.flatnonzero(~empty)
    if dropped.size:
        names = (
            expr.experiment_ids[dropped[:3]].tolist() if expr is not None else dropped[:3].tolist()
        )
        msg = (
            f"{dropped.size} of {X.shape[0]} experiments have no observed voxel in the support "
            f"(e.g. {', '.join(map(str, names))})"
        )
        if strict:
            raise InputError(msg + "; remove them or run without strict to drop them")
        warnings.warn(msg + "; they were dropped", stacklevel=2)
        X, missing = X[kept], missing[kept]
    negative = X < 0
    n_clipped = int(negative.sum())
    if n_clipped:
        X = X.copy() if np.shares_memory(X, volumes) else X
        X[negative] = 0
    if fill_missing is not None and missing.any():
        X = np.where(missing, np.float32(fill_missing), X)
    return PreparedMatrix(
        X=X,
        missing=missing,
        support=support,
        kept=kept,
        dropped=dropped,
        n_clipped=n_clipped,
        expression=expr.subset(kept) if expr is not None else None,
    )
