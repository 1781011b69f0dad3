"""Experiments to the NMF matrix, the one way: hemisphere mirroring, support, kNN imputation, masking.

Used by the pipeline's impute stage and by ``osnmf project`` (which passes the run's support), so a
projection prepares new experiments exactly as the run prepared its own.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from osnmf.expression import SpatialExpression, to_matrix
from osnmf.preprocess.hemispheres import mirror_stage
from osnmf.preprocess.knn import default_support, impute_knn
from osnmf.preprocess.masking import PreparedMatrix, prepare_matrix

__all__ = ["PreparedExperiments", "measured_matrix", "prepare_experiments"]


@dataclass
class PreparedExperiments:
    """What :func:`prepare_experiments` made.

    Attributes
    ----------
    volumes : float32 ``(n, AP, DV, ML)``, the experiments after mirroring (NaN = missing).
    mirrored : bool, same shape, voxels filled from the mirror voxel; None when none were.
    hemi : the per-experiment hemisphere arrays (``hemi_*``) and the mirror check.
    support : bool ``(AP, DV, ML)``, the voxels that are the matrix's columns.
    matrix : the non-negative experiments × support-voxels matrix (:class:`PreparedMatrix`).
    messages : warnings raised while masking (dropped experiments), for the run's log.
    """

    volumes: np.ndarray
    mirrored: np.ndarray | None
    hemi: dict
    support: np.ndarray
    matrix: PreparedMatrix
    messages: list[str]


def prepare_experiments(
    expr: SpatialExpression, *, hemispheres: str, impute: str, n_neighbors: int, random_state: int,
    n_jobs: int, support: np.ndarray | None = None, support_max_missing: float = 0.95, progress: bool = False,
) -> PreparedExperiments:
    """Mirror one-hemisphere experiments (``hemispheres``), choose the support (default: brain
    voxels missing in fewer than ``support_max_missing`` of the experiments), impute (``impute``
    "knn" or "none") and mask to the matrix (negatives clipped, still-missing entries 0)."""
    volumes, mirrored, hemi = mirror_stage(expr, hemispheres, seed=random_state)
    if support is None:
        support = default_support(volumes, expr.atlas.brain_mask, max_missing=support_max_missing)
    filled = volumes
    if impute == "knn":
        filled = impute_knn(volumes, support, n_neighbors, spacing_um=expr.atlas.spacing_um, n_jobs=n_jobs,
                            progress=progress)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        matrix = prepare_matrix(filled, support, fill_missing=0.0)
    return PreparedExperiments(volumes, mirrored, hemi, support, matrix, [str(w.message) for w in caught])


def measured_matrix(volumes: np.ndarray, rows: np.ndarray, support: np.ndarray) -> np.ndarray:
    """The measured values of experiments ``rows`` over the support voxels, float32 ``(len(rows), m)``:
    negatives clipped to 0 as in the NMF matrix, NaN where the voxel was not measured. Built 256
    experiments at a time (no copy of all the volumes at once)."""
    measured = np.empty((len(rows), int(support.sum())), dtype=np.float32)
    for start in range(0, len(rows), 256):
        block = rows[start:start + 256]
        measured[start:start + len(block)] = to_matrix(volumes[block], support)
    np.maximum(measured, 0, out=measured)  # NaN stays NaN
    return measured
