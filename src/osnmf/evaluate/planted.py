"""Planted-truth check on the synthetic atlas: how well the found patterns recover the planted ones."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from osnmf.errors import InputError
from osnmf.factorize.choose_k.stability import cross_correlation


def planted_truth_check(planted: np.ndarray, found: np.ndarray) -> dict:
    """Match planted to found patterns one-to-one (Hungarian, on Pearson r) and report the matched r.

    Parameters
    ----------
    planted : ``(P, m)`` planted patterns over m voxels (e.g. :attr:`Phantom.patterns`, brain voxels).
    found : ``(K, m)`` patterns found over the same voxels.

    Returns
    -------
    dict with ``planted_k`` (P), ``selected_k`` (K), ``matched_r`` (min(P, K) values, in the
    planted order of the matches) and their mean ``matched_r_mean``.
    """
    planted, found = np.asarray(planted), np.asarray(found)
    if planted.ndim != 2 or found.ndim != 2 or planted.shape[1] != found.shape[1]:
        raise InputError(f"planted {planted.shape} and found {found.shape} patterns must be (K, m) "
                         "over the same voxels")
    corr = cross_correlation(planted, found, centered=True)
    rows, cols = linear_sum_assignment(-corr)
    return {
        "planted_k": int(planted.shape[0]),
        "selected_k": int(found.shape[0]),
        "matched_r": [float(corr[r, c]) for r, c in zip(rows, cols, strict=True)],
        "matched_r_mean": float(corr[rows, cols].mean()),
    }
