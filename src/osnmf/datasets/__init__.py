"""Datasets: the synthetic ISH atlas (:func:`make_phantom`) and the packaged Drosophila images."""

from osnmf.datasets.drosophila import load_drosophila
from osnmf.datasets.phantom import Phantom, make_phantom

__all__ = ["Phantom", "load_drosophila", "make_phantom"]
