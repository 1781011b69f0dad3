"""Figures. Every function takes already-computed data and returns a matplotlib Figure."""

from osnmf.plotting.common import save_figure

__all__ = ["save_figure"]
