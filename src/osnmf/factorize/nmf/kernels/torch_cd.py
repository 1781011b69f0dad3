"""PyTorch kernels of the coordinate-descent solver (optional dependency; CPU or CUDA).

The same operations as :mod:`osnmf.factorize.nmf.kernels.numpy_cd`, with the data and the stacked
factors on a torch device; the loop is :func:`osnmf.factorize.nmf.solver.solve`. ``torch`` is
imported lazily; without it every entry point raises :class:`ConfigError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from osnmf.errors import ConfigError
from osnmf.factorize.nmf.operators import ExactOperator, Sketch

__all__ = ["TorchKernels", "TorchOperator", "cd_sweep", "import_torch", "resolve_device"]


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


def cd_sweep(F, G, XF, w):
    """Torch version of :func:`osnmf.factorize.nmf.kernels.numpy_cd.cd_sweep` (in place on ``F``).

    Returns the violation per replicate as a float64 tensor (R,).
    """
    import torch

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


class TorchKernels:
    """Solver operations on torch tensors of ``op``'s device (see ``NumpyKernels``)."""

    host_in_place = False  # device tensors: ``keep`` makes new ones

    def __init__(self, op: TorchOperator):
        self.op = op
        self.torch = op.torch

    def put(self, a: np.ndarray):
        """A working copy of a host array on the device (the host array is never written)."""
        t = self.adopt(a)
        return t.clone() if t.device.type == "cpu" else t

    def adopt(self, a: np.ndarray):
        """The host array on the device; on the CPU it shares the array's memory when it can."""
        return self.torch.from_numpy(np.ascontiguousarray(a, dtype=self.op.dtype)).to(
            self.op.device)

    def get(self, a) -> np.ndarray:
        return a.cpu().numpy()

    def keep(self, a, idx: np.ndarray):
        """Rows ``idx`` of the replicate axis (a new contiguous tensor)."""
        return a[self.torch.from_numpy(np.asarray(idx)).to(a.device)].contiguous()

    def data_t(self, D):
        R, k, m = D.shape
        return self.op.tleft_t(D.reshape(R * k, m)).reshape(R, k, self.op.shape[0])

    def data(self, At, out=None):  # device tensors: a new one each time (``out`` is for host arrays)
        R, k, n = At.shape
        return self.op.tleft(At.reshape(R * k, n)).reshape(R, k, self.op.shape[1])

    def gram(self, F, Fw=None):
        return self.torch.bmm(F if Fw is None else Fw, F.transpose(1, 2))

    def weigh(self, At, w):
        return At * w[:, None, :]

    def inner(self, P, Q) -> np.ndarray:
        return (P.double() * Q.double()).sum(dim=(1, 2)).cpu().numpy()

    cd_sweep = staticmethod(cd_sweep)
