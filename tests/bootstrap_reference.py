"""The bootstrap draw written out from its documented definition (docs/stanmf.md), for tests.

Replicate ``r`` of a run seeded ``seed`` resamples the ``n`` rows with replacement from
``numpy.random.default_rng([seed, r])``. References built from these counts (scikit-learn fits of
``X[idx]``) do not go through any osnmf function.
"""

import numpy as np


def documented_counts(n: int, replicates, seed: int) -> np.ndarray:
    """(R, n) row multiplicities: ``n`` draws of ``integers(0, n)`` per replicate."""
    reps = range(replicates) if isinstance(replicates, int) else replicates
    return np.stack([np.bincount(np.random.default_rng([seed, r]).integers(0, n, size=n), minlength=n)
                     for r in reps])


def resampled_rows(counts_r: np.ndarray) -> np.ndarray:
    """Indices of the resampled rows of one replicate."""
    return np.repeat(np.arange(counts_r.size), counts_r)
