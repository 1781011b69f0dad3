"""Deprecated location of the data operators; use :mod:`osnmf.factorize.operators`."""

from osnmf.factorize.operators import ExactOperator, Sketch, sketch_matrix

__all__ = ["ExactOperator", "Sketch", "sketch_matrix"]
