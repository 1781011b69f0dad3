"""Deprecated location of the Dask executor; use :mod:`osnmf.factorize.executors`."""

from osnmf.factorize.executors import DaskExecutor, NpyRef, as_executor

__all__ = ["DaskExecutor", "NpyRef", "as_executor"]
