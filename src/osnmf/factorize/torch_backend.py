"""Deprecated location of the torch backend; use :mod:`osnmf.factorize.kernels_torch`."""

from osnmf.factorize.kernels_torch import TorchOperator, import_torch, resolve_device

__all__ = ["TorchOperator", "import_torch", "resolve_device"]
