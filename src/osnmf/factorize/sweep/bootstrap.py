"""The one bootstrap draw of osnmf: gene (row) resampling with replacement, as row counts.

Replicate ``r`` of a run seeded ``s`` draws its ``n`` rows from ``default_rng([s, r])``, on its
own: the counts of replicate r are the same whatever the number of replicates, the block layout
of a sweep or the K being fitted (common random numbers across the curve), and the staNMF sweep,
the PCA bootstrap baseline and the exported :func:`osnmf.bootstrap_counts` see the same genes.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from osnmf.constraints import refuse
from osnmf.errors import ConfigError

__all__ = ["bootstrap_counts"]


def _root_seed(random_state: int | np.random.Generator | None) -> int:
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer) \
            or random_state < 0:
        raise refuse("random_state", random_state, "a non-negative integer, a numpy Generator or None")
    return int(random_state)


def bootstrap_counts(
    n_rows: int,
    replicates: int | Iterable[int],
    random_state: int | np.random.Generator | None = 0,
) -> np.ndarray:
    """Row multiplicities of bootstrap replicates (rows drawn with replacement).

    Parameters
    ----------
    n_rows : int
        Number of rows (genes) n of the data.
    replicates : int or iterable of int
        R (replicates ``0 .. R-1``) or the replicate indices themselves (e.g. ``range(20, 40)``
        for the second block of a sweep).
    random_state : int, Generator or None
        Root seed ``s``; replicate ``r`` draws from ``default_rng([s, r])``. A Generator gives
        the root seed (one draw from it); None a fresh one.

    Returns
    -------
    ndarray of int64, shape (R, n_rows)
        ``counts[i, j]`` = how often row ``j`` is drawn in the i-th replicate; each row sums to
        ``n_rows``. ``np.repeat(np.arange(n_rows), counts[i])`` gives the resampled indices.
    """
    reps = range(int(replicates)) if isinstance(replicates, int | np.integer) else list(replicates)
    if isinstance(n_rows, bool) or int(n_rows) < 1 or len(reps) < 1:
        raise ConfigError(f"need n_rows >= 1 and at least one replicate, got n_rows={n_rows}, "
                          f"replicates={replicates!r}")
    n = int(n_rows)
    seed = _root_seed(random_state)
    counts = np.empty((len(reps), n), dtype=np.int64)
    for i, r in enumerate(reps):
        rng = np.random.default_rng([seed, int(r)])
        counts[i] = np.bincount(rng.integers(0, n, size=n), minlength=n)
    return counts
