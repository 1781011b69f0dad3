"""How much a chained sweep's γ(K) depends on where its chain starts (``grow``: the fast recipe).

With ``grow`` each replicate at K starts from its own K−1 fit, so γ(K) depends on ``k_min``: the
chain from ``k_min`` reaches K through K − k_min grown steps. This check refits the first
replicates of the sweep with a chain that starts later — at the selected K − 1 (cold NNDSVDa
there, as every chain's first K) — over the selected K and its neighbours, and sets γ of those
replicates from both starts side by side. Under ``grow=False`` (the paper's recipe) no K depends on
another and the check is not needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from osnmf.factorize.choose_k.stability import instability
from osnmf.factorize.sweep.params import SweepParams
from osnmf.progress import ProgressBar

if TYPE_CHECKING:
    from osnmf.factorize.sweep.plan import SweepPlan

__all__ = ["CHECK_COLUMNS", "alternative_start", "k_min_check", "k_min_check_in_store"]

CHECK_COLUMNS = ["k", "hungarian_subset", "hungarian_subset_alt_start", "abs_diff", "n_replicates",
                 "k_min", "k_min_alt"]


def alternative_start(ks: Sequence[int], k_selected: int) -> tuple[int, list[int]] | None:
    """The later chain start and the K's it is compared at: start at ``k_selected − 1`` (at least
    ``k_min + 1``), compare from there up to ``k_selected + 1``; None when the range leaves no K."""
    ks = sorted(int(k) for k in ks)
    start = max(ks[0] + 1, k_selected - 1)
    compare = [k for k in ks if start <= k <= max(start, k_selected + 1)]
    if not compare or compare != list(range(compare[0], compare[-1] + 1)):
        return None
    return start, compare


def k_min_check(
    op: Any, ks: Sequence[int], k_selected: int, params: SweepParams, patterns_at: Callable[[int], np.ndarray],
    n_check: int, *, centered: bool = False, block_size: int | None = None, progress: bool = False,
) -> pd.DataFrame | None:
    """γ of the first ``n_check`` replicates from the sweep's chain and from a chain started later.

    Parameters
    ----------
    op : the sweep's data operator (``ExactOperator`` or ``Sketch``), shared.
    ks : the K's of the sweep (its chain starts at ``min(ks)``).
    k_selected : the selected K.
    params : the sweep's parameters (``grow`` truthy).
    patterns_at : ``k -> (≥ n_check, k, m)`` patterns of the sweep's replicates at k, in order.
    n_check : replicates refitted (≥ 2).
    centered, block_size, progress : as in the sweep.

    Returns
    -------
    DataFrame with :data:`CHECK_COLUMNS`, one row per compared K (``abs_diff`` = |Δγ|), or None
    when there is nothing to compare (no later start inside the range).
    """
    from osnmf.factorize.sweep.run import fit_chain, replicate_counts

    plan = alternative_start(ks, k_selected)
    if plan is None or n_check < 2:
        return None
    start, compare = plan
    seeds = np.arange(n_check)
    counts = replicate_counts(op.shape[0], seeds, params)
    step = n_check if block_size is None else max(1, int(block_size))
    rows = []
    label = f"k_min check: {n_check} replicates chained from K = {start}"
    with ProgressBar(label, len(compare) * len(range(0, n_check, step)), enabled=progress, transient=False) as bar:
        for k, res in fit_chain(op, compare, counts, params, step, bar=bar):
            main = instability(np.asarray(patterns_at(k)[:n_check]), centered=centered)["hungarian"]
            alt = instability(res.components, centered=centered)["hungarian"]
            rows.append({"k": k, "hungarian_subset": main, "hungarian_subset_alt_start": alt,
                         "abs_diff": abs(main - alt), "n_replicates": n_check, "k_min": int(min(ks)),
                         "k_min_alt": start})
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def k_min_check_in_store(op: Any, plan: SweepPlan, store: Any, k_selected: int,
                         patterns_at: Callable[[int], np.ndarray], n_check: int, *, centered: bool = False,
                         progress: bool = False) -> pd.DataFrame | None:
    """:func:`k_min_check` of a finished sweep with the first ``n_check`` replicates (at most R),
    kept in the sweep's ``store``; None under ``grow=False``, with fewer than 2 replicates, or when
    there is nothing to compare."""
    R, bs = plan.n_replicates, plan.block_size
    n_check = min(int(n_check or 0), R)
    if not plan.params.grow or n_check < 2:
        return None
    tag = {"k": k_selected, "ks": [int(k) for k in plan.ks], "n_check": n_check, "n_replicates": R,
           "block_size": bs, "centered": bool(centered), "version": 1}
    stored = store.get_values("k_min_check.json", tag)
    if stored is not None:
        return pd.DataFrame(stored, columns=CHECK_COLUMNS)
    table = k_min_check(op, plan.ks, k_selected, plan.params, patterns_at, n_check,
                        centered=centered, block_size=bs, progress=progress)
    if table is not None:
        store.put_values("k_min_check.json", tag, table.to_dict("records"))
    return table
