"""Preprocessing: kNN imputation, its hold-out check, masking to a matrix (spec section 2)."""

from osnmf.preprocess.holdout import HoldoutResult, holdout_check, sample_holdout
from osnmf.preprocess.knn import default_support, impute_knn, knn_fill, neighbour_shells
from osnmf.preprocess.masking import PreparedMatrix, prepare_matrix

__all__ = [
    "HoldoutResult",
    "PreparedMatrix",
    "default_support",
    "holdout_check",
    "impute_knn",
    "knn_fill",
    "neighbour_shells",
    "prepare_matrix",
    "sample_holdout",
]

