"""The K-selection panel of a finished sweep: one row per K from its stored replicates.

The panel's measures are those of :mod:`osnmf.factorize.choose_k.criteria`; this module reads each K's
replicate patterns and losses through the sweep's store and keeps each row there (a resumed fit
does not recompute it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from osnmf.factorize.choose_k import criteria as sel
from osnmf.factorize.sweep.memory import release_free_memory
from osnmf.factorize.sweep.plan import SweepPlan
from osnmf.progress import track

__all__ = ["selection_panel"]


def selection_panel(X: np.ndarray, plan: SweepPlan, store: Any, inst: pd.DataFrame, info: pd.DataFrame,
                    progress: bool = False) -> tuple[pd.DataFrame, dict[str, int | None]]:
    """The K-selection panel (:func:`osnmf.factorize.choose_k.criteria.panel_frame`) and the K of every rule.

    Parameters
    ----------
    X : (n, m) the data the sweep fitted.
    plan : the sweep's :class:`~osnmf.factorize.sweep.plan.SweepPlan`.
    store : the sweep's store (on disk or in memory): patterns per K, the panel rows kept there.
    inst : γ per K (``StaNMF.instability_``); info : the per-replicate losses (``replicate_info_``).
    progress : show a progress bar over the K's.
    """
    from osnmf.factorize.sweep.run import replicate_counts

    R, bs, params = plan.n_replicates, plan.block_size, plan.params
    counts = replicate_counts(X.shape[0], range(R), params)
    folds = (sel.voxel_folds(X.shape[1], sel.N_FOLDS, params.random_state)
             if X.shape[1] >= sel.N_FOLDS else None)
    voxels = sel.consensus_voxels(X.shape[1], sel.CONSENSUS_VOXELS, params.random_state)
    tag = {"n_replicates": R, "block_size": bs, "n_folds": sel.N_FOLDS,
           "consensus_voxels": sel.CONSENSUS_VOXELS, "oob_replicates": sel.OOB_REPLICATES, "version": 1}
    gam = inst.set_index("k")
    rows = []
    sq_norms = None  # per-fold row norms of X: one pass, shared by every K computed here
    for k in track(plan.ks, "K-selection panel per K", enabled=progress, transient=False):
        vals = store.get_values(f"k{k:03d}/selection.json", tag)
        if vals is None:
            pats = store.patterns(k, R, bs)
            loss = info.loc[info["k"] == k, "loss"].to_numpy()
            if sq_norms is None and folds is not None:
                sq_norms = sel.fold_sq_norms(X, folds)
            vals = sel.panel_row(X, pats, loss, counts, folds, voxels, sq_norms)
            release_free_memory()
            store.put_values(f"k{k:03d}/selection.json", tag, vals)
        rows.append({"k": k, "gamma": float(gam.loc[k, "hungarian"]),
                     "gamma_se": float(gam.loc[k, "hungarian_se"]), **vals})
    panel = sel.panel_frame(rows)
    return panel, sel.k_rules(panel)
