"""The plan of a staNMF sweep: its K values, replicates, block layout, parameters and where blocks run.

``StaNMF.fit`` checks its settings once into a :class:`SweepPlan`; every later step (the sweep,
γ per K, the selection panel, certification, the k_min check, the replicate patterns) reads the
K values, ``n_replicates`` and the block size from it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from threadpoolctl import threadpool_limits

from osnmf.errors import ConfigError
from osnmf.factorize.checks import check, check_k
from osnmf.factorize.sweep.executors import Executor, SerialExecutor, ThreadExecutor, as_executor
from osnmf.factorize.sweep.params import BlockSpec, SweepParams, auto_block_size, plan_blocks

__all__ = ["SweepPlan", "k_values"]

K_RANGE_DEFAULT = range(8, 31)  # the paper's range


def k_values(k_range: Iterable[int] | None, n: int, m: int) -> list[int]:
    """The sorted distinct K of ``k_range`` (None: 8..30), each in 1..min(n, m)."""
    if k_range is None:
        k_range = K_RANGE_DEFAULT
    try:
        ks = sorted({check_k(k, name="k_range value") for k in k_range})
    except TypeError:
        raise ConfigError(f"k_range={k_range!r}: must be an iterable of integers") from None
    if not ks:
        raise ConfigError(f"k_range={k_range!r}: must not be empty")
    if ks[-1] > min(n, m):
        raise ConfigError(f"k_range={ks[0]}..{ks[-1]}: must lie in 1..{min(n, m)} (X has {n} sample(s) and {m} "
                          "feature(s); K <= min of both)")
    return ks


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep fits and how: checked once (:meth:`make`), read by every step after.

    Attributes
    ----------
    ks : the sorted K values.
    n_replicates : R, replicates per K.
    block_size : replicates fitted together in one block (≤ R).
    params : the :class:`~osnmf.factorize.sweep.params.SweepParams` of every block.
    n_jobs : blocks fitted at once on threads (ignored with ``client``).
    client : a Dask client or executor the blocks run on, or None.
    """

    ks: list[int]
    n_replicates: int
    block_size: int
    params: SweepParams
    n_jobs: int = 1
    client: Any = None

    @classmethod
    def make(cls, shape: tuple[int, int], ks: list[int], params: SweepParams, n_replicates: Any,
             block_size: Any = None, n_jobs: Any = 1, client: Any = None) -> SweepPlan:
        """The plan for data of ``shape``, each setting checked by its one rule (block size None:
        :func:`~osnmf.factorize.sweep.params.auto_block_size`)."""
        n, m = shape
        R = check("n_replicates", n_replicates)
        n_jobs = check("n_jobs", n_jobs)
        bs = auto_block_size(n, m, ks[-1], R, n_jobs) if block_size is None else check("block_size", block_size)
        return cls(list(ks), R, min(bs, R), params, n_jobs, client)

    @property
    def blocks(self) -> list[BlockSpec]:
        """Every block of the sweep, K-major (:func:`~osnmf.factorize.sweep.params.plan_blocks`)."""
        return plan_blocks(self.ks, self.n_replicates, self.block_size)

    def executor(self) -> Executor:
        """Where the blocks run: the Dask cluster of ``client``, else ``n_jobs`` threads or here."""
        if self.client is not None:
            return as_executor(self.client)
        return ThreadExecutor(self.n_jobs) if self.n_jobs > 1 else SerialExecutor()

    def blas_threads(self) -> contextlib.AbstractContextManager:
        """One BLAS thread, whatever ``n_jobs``: with several block threads no oversubscription, and
        the same threading for every fit, so results never depend on ``n_jobs`` (a BLAS's sums
        may round differently on another number of threads)."""
        return threadpool_limits(1)
