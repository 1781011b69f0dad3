"""PyTorch backend of the NMF solver (optional dependency; CPU or CUDA).

Same arithmetic as the numpy solver in :mod:`osnmf.factorize.nmf` (batched cyclic coordinate
descent, scikit-learn's stopping rule), with the data and the stacked factors on a torch device.
``torch`` is imported lazily; without it every entry point raises :class:`ConfigError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from osnmf.errors import ConfigError
from osnmf.factorize.sketch import ExactOperator, Sketch

__all__ = ["TorchOperator", "import_torch", "resolve_device", "solve_torch"]


def import_torch():
    """Import torch or raise a ConfigError that says how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise ConfigError(
            "backend='torch' needs PyTorch, which is not installed; install it with "
            "`pip install 'osnmf[gpu]'` (or `pip install torch`), or use backend='numpy'"
        ) from exc
    return torch


def resolve_device(device: str | None) -> Any:
    """A ``torch.device``: the one asked for, else CUDA when available, else CPU."""
    torch = import_torch()
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown torch device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available; use 'cpu'")
    return dev


class TorchOperator:
    """An :class:`ExactOperator` or :class:`Sketch` with its arrays on a torch device.

    Offers the numpy-facing products used by the initialisation (``left``, ``left_t``,
    ``left_gram``, ...) and the tensor products used by the solver (``tleft``, ``tleft_t``).
    """

    def __init__(self, op: ExactOperator | Sketch, device: Any):
        torch = import_torch()
        self.torch = torch
        self.base = op
        self.shape = op.shape
        self.dtype = op.dtype
        self.device = device
        self.exact = isinstance(op, ExactOperator)
        if self.exact:
            self.X = torch.from_numpy(np.ascontiguousarray(op.X)).to(device)
        else:
            self.Q = torch.from_numpy(np.ascontiguousarray(op.Q)).to(device)
            self.B = torch.from_numpy(np.ascontiguousarray(op.B)).to(device)
        self._gram: np.ndarray | None = None

    # tensor products
    def tleft(self, P):
        """``P @ X`` for a tensor P (w, n)."""
        return P @ self.X if self.exact else (P @ self.Q) @ self.B

    def tleft_t(self, P):
        """``P @ X.T`` for a tensor P (w, m)."""
        return P @ self.X.T if self.exact else (P @ self.B.T) @ self.Q.T

    # numpy-facing products (initialisation)
    def _t(self, A: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(A, dtype=self.dtype)).to(self.device)

    def left(self, P: np.ndarray) -> np.ndarray:
        return self.tleft(self._t(P)).cpu().numpy()

    def left_t(self, P: np.ndarray) -> np.ndarray:
        return self.tleft_t(self._t(P)).cpu().numpy()

    def left_gram(self) -> np.ndarray:
        if self._gram is None:
            if self.exact:
                n, m = self.shape
                G = self.torch.zeros((n, n), dtype=self.torch.float64, device=self.device)
                step = max(1, 2**25 // max(1, n))
                for j in range(0, m, step):
                    blk = self.X[:, j : j + step].double()
                    G += blk @ blk.T
                self._gram = G.cpu().numpy()
            else:
                self._gram = self.base.left_gram()
        return self._gram

    def weighted_right_gram(self, c: np.ndarray) -> np.ndarray:
        return self.base.weighted_right_gram(c)

    def row_sums(self) -> np.ndarray:
        return self.base.row_sums()

    def row_sq_norms(self) -> np.ndarray:
        return self.base.row_sq_norms()


def _cd_sweep(torch, F, G, XF, w):
    """Torch twin of ``nmf._cd_sweep`` (in place on F, returns the violation per replicate)."""
    R, k, L = F.shape
    viol = torch.zeros(R, dtype=torch.float64, device=F.device)
    diag = torch.diagonal(G, dim1=1, dim2=2)
    hinv = torch.where(diag != 0, 1.0 / diag, torch.zeros_like(diag))
    for t in range(k):
        grad = torch.bmm(G[:, t : t + 1, :], F)[:, 0, :]
        grad -= XF[:, t, :]
        f = F[:, t, :]
        pg = torch.where(f == 0, grad.clamp(max=0), grad).abs_()
        if w is not None:
            pg *= w
        viol += pg.sum(dim=1).double()
        f.sub_(grad * hinv[:, t : t + 1]).clamp_(min=0)
    return viol


def solve_torch(
    op: TorchOperator,
    At: np.ndarray,
    D: np.ndarray,
    counts: np.ndarray | None,
    max_iter: int,
    tol: float,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Batched CD iterations on the torch device; same contract as ``nmf._solve``."""
    torch = op.torch
    dev = op.device
    n, m = op.shape
    R, k, _ = At.shape
    tA = torch.from_numpy(np.ascontiguousarray(At)).to(dev)
    tD = torch.from_numpy(np.ascontiguousarray(D)).to(dev)
    w = None if counts is None else torch.from_numpy(counts.astype(op.dtype)).to(dev)
    row_sq = op.row_sq_norms()
    xnorm2 = np.full(R, row_sq.sum()) if counts is None else counts.astype(np.float64) @ row_sq
    out_At = np.empty_like(At)
    out_D = np.empty_like(D)
    n_iter = np.full(R, max_iter, dtype=np.int64)
    loss = np.zeros(R)
    viol_init = np.zeros(R)
    active = np.arange(R)
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("NMF iterations", total=max_iter)
    try:
        for it in range(1, max_iter + 1):
            Ra = len(active)
            XD = op.tleft_t(tD.reshape(Ra * k, m)).reshape(Ra, k, n)
            G = torch.bmm(tD, tD.transpose(1, 2))
            viol = _cd_sweep(torch, tA, G, XD, w)
            del XD
            Aw = tA if w is None else tA * w[:, None, :]
            XtA = op.tleft(Aw.reshape(Ra * k, n)).reshape(Ra, k, m)
            G2 = torch.bmm(Aw, tA.transpose(1, 2))
            del Aw
            viol += _cd_sweep(torch, tD, G2, XtA, None)
            viol = viol.cpu().numpy()
            if it == 1:
                viol_init[active] = viol
            vi = viol_init[active]
            done = (vi == 0) | (viol / np.where(vi == 0, 1, vi) <= tol)
            if it == max_iter:
                done[:] = True
            if done.any():
                idx = np.flatnonzero(done)
                ti = torch.from_numpy(idx).to(dev)
                g = active[idx]
                n_iter[g] = it
                Df = tD[ti]
                DDt = torch.bmm(Df, Df.transpose(1, 2))
                cross = (Df.double() * XtA[ti].double()).sum(dim=(1, 2)).cpu().numpy()
                quad = (G2[ti].double() * DDt.double()).sum(dim=(1, 2)).cpu().numpy()
                loss[g] = np.sqrt(np.maximum(xnorm2[g] - 2 * cross + quad, 0))
                out_At[g] = tA[ti].cpu().numpy()
                out_D[g] = Df.cpu().numpy()
                keep = np.flatnonzero(~done)
                active = active[keep]
                if len(keep) == 0:
                    break
                tk = torch.from_numpy(keep).to(dev)
                tA = tA[tk].contiguous()
                tD = tD[tk].contiguous()
                if w is not None:
                    w = w[tk].contiguous()
            if bar is not None:
                bar.update(task, completed=it, description=f"NMF ({len(active)}/{R} running)")
    finally:
        if bar is not None:
            bar.stop()
    return out_At, out_D, n_iter, loss
