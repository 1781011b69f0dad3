"""Datasets: the synthetic ISH atlas (:func:`make_phantom`) and the packaged Drosophila images."""

from osnmf.datasets.drosophila import load_drosophila
from osnmf.datasets.phantom import make_phantom
from osnmf.datasets.phantom_parts import Phantom

__all__ = ["Phantom", "load_drosophila", "make_phantom"]
