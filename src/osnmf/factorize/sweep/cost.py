"""What a sweep of cold exact fits will cost, said before it starts.

Every coordinate-descent iteration of one replicate at rank K multiplies X (n × m) by its
factors twice, ``4·n·m·K`` flops; at atlas size these products are nearly all of the work (the
coordinate updates themselves cost O((n + m)·K²)). How many iterations a fit takes is known only
after it: the tolerance stops most fits before ``max_iter`` (47–200 iterations at the paper's size,
benchmarks/results/paper_recipe_sampled.json), so the cost is given as a range, from a quarter of
``max_iter`` to ``max_iter`` iterations per fit. The time range divides it by the rate this
machine multiplies X at, measured on a slice of X in a fraction of a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

__all__ = ["SweepCost", "exact_sweep_cost", "gemm_rate", "slow_sweep_warning"]

#: A sweep whose longest estimate is above this many seconds gets the one-line warning.
WARN_ABOVE_S = 3600.0
#: No machine multiplies slower than this (flops/s): below WARN_ABOVE_S at this rate, the rate is
#: not measured and nothing is said.
SLOWEST_RATE = 1e10


@dataclass(frozen=True)
class SweepCost:
    """Flops and seconds of the blocks still to fit (low: ``max_iter``/4 iterations, high: ``max_iter``)."""

    n_fits: int
    flops_low: float
    flops_high: float
    rate_flops_per_s: float

    @property
    def seconds(self) -> tuple[float, float]:
        return self.flops_low / self.rate_flops_per_s, self.flops_high / self.rate_flops_per_s


def fit_flops(n: int, m: int, k: int, n_iter: int) -> float:
    """Flops of the two products by X (n × m) in ``n_iter`` iterations of one rank-``k`` fit."""
    return 4.0 * n * m * k * n_iter


def gemm_rate(X: np.ndarray, width: int, budget_s: float = 0.2) -> float:
    """Flops per second of ``P @ X[:, :c]`` (P of ``width`` rows) on this machine, best of a few tries.

    Uses up to 16,384 columns of X and at most ``budget_s`` seconds (the first product warms up).
    """
    n, m = X.shape
    cols = X[:, : min(m, 16384)]
    P = np.ones((max(1, width), n), dtype=X.dtype)
    best = np.inf
    start = time.perf_counter()
    for _ in range(5):
        t = time.perf_counter()
        P @ cols
        best = min(best, time.perf_counter() - t)
        if time.perf_counter() - start > budget_s:
            break
    return 2.0 * P.shape[0] * n * cols.shape[1] / max(best, 1e-9)


def exact_sweep_cost(X: np.ndarray, n_fits_per_k: dict[int, int], max_iter: int, block_size: int) -> SweepCost:
    """The flop range of ``n_fits_per_k[k]`` cold exact fits at each K, and this machine's rate.

    The rate is measured with products as wide as the sweep's blocks (``block_size`` × the mean K)
    only when the sweep could last over :data:`WARN_ABOVE_S` at :data:`SLOWEST_RATE`; otherwise it
    is that slowest rate.
    """
    n, m = X.shape
    ks = [k for k, count in n_fits_per_k.items() if count]
    high = sum(n_fits_per_k[k] * fit_flops(n, m, k, max_iter) for k in ks)
    low = sum(n_fits_per_k[k] * fit_flops(n, m, k, max(1, max_iter // 4)) for k in ks)
    rate = SLOWEST_RATE
    if high > WARN_ABOVE_S * SLOWEST_RATE:
        rate = gemm_rate(X, block_size * int(round(np.mean(ks))))
    return SweepCost(sum(n_fits_per_k[k] for k in ks), low, high, rate)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def slow_sweep_warning(cost: SweepCost, shape: tuple[int, int], ks: list[int]) -> str | None:
    """One line when the longest estimate is above :data:`WARN_ABOVE_S`, else None."""
    low_s, high_s = cost.seconds
    if high_s <= WARN_ABOVE_S:
        return None
    n, m = shape
    return (f"the stability sweep still to run ({cost.n_fits:,} cold exact fits, K {ks[0]}-{ks[-1]}, "
            f"on {n:,} x {m:,}) needs {cost.flops_low:.1e}-{cost.flops_high:.1e} flops: about "
            f"{_hours(low_s)} to {_hours(high_s)} on this machine (measured {cost.rate_flops_per_s / 1e9:.0f} "
            f"GFLOP/s); it can be interrupted and resumed. Faster: --backend torch --device cuda on a GPU, "
            f"or --recipe fast (not the paper's method)")
