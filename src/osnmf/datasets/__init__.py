"""Datasets: the synthetic ISH atlas (:func:`make_phantom`), its cells (:func:`make_cells`) and the
packaged Drosophila images."""

from osnmf.datasets.cells import make_cells
from osnmf.datasets.drosophila import load_drosophila
from osnmf.datasets.phantom import make_phantom
from osnmf.datasets.phantom_parts import Phantom

__all__ = ["Phantom", "load_drosophila", "make_cells", "make_phantom"]
