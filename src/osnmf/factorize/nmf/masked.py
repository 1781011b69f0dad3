"""NMF that ignores missing entries, an alternative to imputing them first (beyond the paper).

Minimises the masked objective ``‖W ∘ (X − A D)‖²_F`` with ``W = 1`` where observed and ``0``
where missing, by weighted multiplicative updates (Lee & Seung's rules with the mask inside):

    A ← A ∘ ((W∘X) Dᵀ) / ((W∘(A D)) Dᵀ)
    D ← D ∘ (Aᵀ (W∘X)) / (Aᵀ (W∘(A D)))

Each update does not increase the masked loss. Missing entries never enter, so no value is made
up for them; ``A D`` then predicts them. This is measured against kNN imputation + NMF in
``benchmarks/bench_impute.py``; the pipeline default stays kNN imputation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from osnmf.errors import ConfigError, InputError
from osnmf.factorize.checks import check_k

__all__ = ["MaskedNMFResult", "masked_nmf"]

_EPS = 1e-12


@dataclass
class MaskedNMFResult:
    """One masked NMF fit ``X ≈ A D`` on the observed entries.

    Attributes
    ----------
    A : float ``(n, k)`` coefficients; D : float ``(k, m)`` patterns.
    n_iter : iterations run.
    loss : ``‖W ∘ (X − A D)‖_F`` at the end (observed entries only).
    converged : whether the relative loss decrease fell below ``tol``.
    """

    A: np.ndarray
    D: np.ndarray
    n_iter: int
    loss: float
    converged: bool


def _masked_loss(Xw: np.ndarray, W: np.ndarray, AD: np.ndarray) -> float:
    r = Xw - W * AD
    return float(np.sqrt(np.einsum("ij,ij->", r, r, dtype=np.float64)))


def masked_nmf(
    X: np.ndarray,
    k: int,
    missing: np.ndarray | None = None,
    *,
    init: str | tuple[np.ndarray, np.ndarray] = "random",
    max_iter: int = 500,
    tol: float = 1e-5,
    random_state: int | np.random.Generator | None = 0,
    dtype=np.float32,
) -> MaskedNMFResult:
    """Fit ``X ≈ A D`` with ``A, D >= 0`` on the observed entries only.

    Parameters
    ----------
    X : ``(n, m)`` data (genes × voxels), >= 0 where observed; NaN allowed where missing.
    k : number of patterns.
    missing : bool ``(n, m)``, True where missing; default ``isnan(X)``.
    init : ``"random"`` (scikit-learn's scheme, |N(0,1)|·sqrt(mean/k), mean over observed entries)
        or explicit factors ``(A0 (n, k), D0 (k, m))``.
    max_iter : iteration cap.
    tol : stop when the masked loss decreases by less than ``tol`` (relative) over 10 iterations.
    random_state : seed or Generator for the random initialisation.
    dtype : working precision (float32 or float64).

    Returns
    -------
    :class:`MaskedNMFResult`.
    """
    X = np.asarray(X, dtype=dtype)
    if X.ndim != 2:
        raise InputError(f"X must be a 2-D genes × voxels matrix, got shape {X.shape}")
    missing = np.isnan(X) if missing is None else np.asarray(missing, dtype=bool) | np.isnan(X)
    if missing.shape != X.shape:
        raise InputError(f"missing mask {missing.shape} does not match X {X.shape}")
    W = (~missing).astype(dtype)
    Xw = np.where(missing, 0, X).astype(dtype)
    if Xw.min() < 0:
        raise InputError("X must be non-negative where observed (clip negatives first)")
    n, m = X.shape
    k = check_k(k, min(n, m))
    if W.sum() == 0:
        raise InputError("X has no observed entry")
    if isinstance(init, tuple):
        A = np.array(init[0], dtype=dtype)
        D = np.array(init[1], dtype=dtype)
        if A.shape != (n, k) or D.shape != (k, m) or min(A.min(), D.min()) < 0:
            raise InputError(
                f"init factors must be non-negative with shapes ({n}, {k}) and ({k}, {m})"
            )
    elif init == "random":
        rng = np.random.default_rng(random_state)
        scale = np.sqrt(Xw.sum() / W.sum() / k)
        A = (scale * np.abs(rng.standard_normal((n, k)))).astype(dtype)
        D = (scale * np.abs(rng.standard_normal((k, m)))).astype(dtype)
    else:
        raise ConfigError(f"init must be 'random' or (A0, D0), got {init!r}")
    losses = []
    converged = False
    it = 0
    for it in range(1, int(max_iter) + 1):
        A *= (Xw @ D.T) / np.maximum((W * (A @ D)) @ D.T, _EPS)
        D *= (A.T @ Xw) / np.maximum(A.T @ (W * (A @ D)), _EPS)
        if it % 10 == 0:
            losses.append(_masked_loss(Xw, W, A @ D))
            if len(losses) >= 2 and losses[-2] - losses[-1] <= tol * losses[-2]:
                converged = True
                break
    loss = _masked_loss(Xw, W, A @ D)
    return MaskedNMFResult(A=A, D=D, n_iter=it, loss=loss, converged=converged)
