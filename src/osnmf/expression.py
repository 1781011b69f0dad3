"""`SpatialExpression`: a stack of 3D expression volumes on an atlas grid.

Also the one place that flattens volumes to a genes × voxels matrix and back (:func:`to_matrix`,
:func:`to_volumes`). Volumes are float32 ``(n_experiments, AP, DV, ML)`` with NaN for missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from osnmf.atlas import Atlas
from osnmf.errors import InputError


def to_matrix(volumes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Flatten ``(n, AP, DV, ML)`` volumes to an ``(n, n_mask_voxels)`` matrix (C order of the mask).

    The result is C-contiguous (``volumes[..., mask]`` would be Fortran-ordered, and every
    consumer of a genes × voxels matrix would then hold a second, C-ordered copy of it).
    """
    volumes = np.asarray(volumes)
    if volumes.shape[-3:] != mask.shape:
        raise InputError(f"volumes of shape {volumes.shape[-3:]} do not match the mask {mask.shape}")
    flat = volumes.reshape(*volumes.shape[:-3], -1)
    return np.take(flat, np.flatnonzero(mask), axis=-1)


def to_volumes(matrix: np.ndarray, mask: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Inverse of :func:`to_matrix`: ``(n, n_mask_voxels)`` → ``(n, AP, DV, ML)``, ``fill`` outside."""
    matrix = np.asarray(matrix)
    if matrix.shape[-1] != int(mask.sum()):
        raise InputError(f"matrix has {matrix.shape[-1]} columns but the mask has {int(mask.sum())} voxels")
    out = np.full((*matrix.shape[:-1], *mask.shape), fill, dtype=matrix.dtype)
    out[..., mask] = matrix
    return out


def peak_sections(volumes: np.ndarray) -> np.ndarray:
    """``(n, 3)`` int: for each volume ``(n, AP, DV, ML)``, the coronal, horizontal and sagittal section
    (index along AP, DV, ML) holding the largest sum of its values (where a pattern is most present)."""
    volumes = np.asarray(volumes, dtype=np.float64)
    return np.stack([np.argmax(volumes.sum(axis=tuple(a for a in (1, 2, 3) if a != axis)), axis=1)
                     for axis in (1, 2, 3)], axis=1).astype(np.int64)


@dataclass
class SpatialExpression:
    """Expression volumes of several ISH experiments on one atlas grid.

    Attributes
    ----------
    volumes : float32 ``(n_experiments, AP, DV, ML)``, NaN = missing, otherwise >= 0.
    genes : gene symbol per experiment, shape ``(n_experiments,)`` (a gene may repeat).
    experiment_ids : unique experiment id per experiment (strings), shape ``(n_experiments,)``.
    atlas : the :class:`~osnmf.atlas.Atlas` the grid belongs to.
    planes : optional plane of section per experiment (``"coronal"``, ``"sagittal"`` or ``""`` when
        unknown), shape ``(n_experiments,)``; ``None`` when the input says nothing about planes.
    """

    volumes: np.ndarray
    genes: np.ndarray
    experiment_ids: np.ndarray
    atlas: Atlas = field(repr=False)
    planes: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        self.volumes = np.asarray(self.volumes, dtype=np.float32)
        self.genes = np.asarray(self.genes, dtype=str)
        self.experiment_ids = np.asarray(self.experiment_ids, dtype=str)
        if self.volumes.ndim != 4:
            raise InputError(f"volumes must be (experiments, AP, DV, ML), got shape {self.volumes.shape}")
        if self.volumes.shape[1:] != self.atlas.shape:
            raise InputError(f"volumes are {self.volumes.shape[1:]} but the atlas grid is {self.atlas.shape}")
        n = self.volumes.shape[0]
        if self.genes.shape != (n,) or self.experiment_ids.shape != (n,):
            raise InputError(f"need one gene symbol and one experiment id for each of the {n} volumes")
        if len(set(self.experiment_ids.tolist())) != n:
            raise InputError("experiment ids must be unique")
        if self.planes is not None:
            self.planes = np.asarray(self.planes, dtype=str)
            if self.planes.shape != (n,):
                raise InputError(f"need one plane of section for each of the {n} volumes")

    def __len__(self) -> int:
        return self.volumes.shape[0]

    @property
    def n_experiments(self) -> int:
        return self.volumes.shape[0]

    @property
    def n_genes(self) -> int:
        return len(set(self.genes.tolist()))

    def to_matrix(self, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Experiments × voxels matrix inside ``mask`` (default the brain) and its missing mask.

        Returns ``(X, missing)``: float32 ``(n_experiments, n_voxels)`` with NaN kept, and bool of
        the same shape.
        """
        mask = self.atlas.brain_mask if mask is None else mask
        matrix = to_matrix(self.volumes, mask)
        return matrix, np.isnan(matrix)

    def patterns_to_volumes(self, patterns: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """K × voxels patterns → K × AP × DV × ML volumes, zero outside ``mask`` (default the brain)."""
        return to_volumes(patterns, self.atlas.brain_mask if mask is None else mask)

    def subset(self, index) -> SpatialExpression:
        """A new object holding the selected experiments (any numpy index)."""
        index = np.arange(len(self))[index]
        planes = None if self.planes is None else self.planes[index]
        return SpatialExpression(self.volumes[index], self.genes[index], self.experiment_ids[index], self.atlas,
                                 planes)

    def summary(self) -> dict:
        """Counts and ranges: experiments, genes, brain voxels, missing fraction in the brain, value range."""
        inside = self.volumes[:, self.atlas.brain_mask]
        finite = inside[~np.isnan(inside)]
        return {
            "n_experiments": int(self.n_experiments),
            "n_genes": int(self.n_genes),
            "grid_shape": list(self.atlas.shape),
            "spacing_um": list(self.atlas.spacing_um),
            "n_brain_voxels": int(self.atlas.n_brain_voxels),
            "missing_fraction": float(np.isnan(inside).mean()) if inside.size else 0.0,
            "value_min": float(finite.min()) if finite.size else None,
            "value_max": float(finite.max()) if finite.size else None,
        }
