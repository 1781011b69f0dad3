"""Certify a compressed sweep: refit a few replicates exactly around the selected K.

After a sweep with the compressed solver, the first ``n_certify`` replicates at the selected K
and its two neighbours (``StaNMF``: every K near the γ minimum) are fitted again with the exact
solver (same bootstrap draws, same recipe; with ``grow`` the first certified K starts from the
compressed fits at K−1). γ of those
exact fits is reported beside γ of the *same* replicates' compressed fits, and the two argmins
over the certified K's are compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from osnmf.factorize.stability import instability
from osnmf.progress import ProgressBar

__all__ = ["certify_sweep"]

CERT_COLUMNS = ["k", "hungarian_exact", "hungarian_compressed_subset", "n_certified"]


def certify_sweep(
    X: Any,
    k_selected: int,
    ks: Sequence[int],
    params: Any,
    compressed_at: Callable[[int], Any],
    n_certify: int,
    n_replicates: int,
    *,
    centered: bool = False,
    block_size: int | None = None,
    progress: bool = False,
    k_values: Sequence[int] | None = None,
) -> tuple[pd.DataFrame, bool]:
    """Exact refits of the first replicates at ``k_selected`` and its neighbours in ``ks`` (or at
    the contiguous ``k_values``).

    Parameters
    ----------
    X : (n, m) float32 data, or its prepared ``ExactOperator`` (shared: its Gram is computed once).
    k_selected : the K the compressed sweep selected.
    ks : the K's of the sweep.
    params : the sweep's ``SweepParams`` (solver compressed).
    compressed_at : ``k -> BlockResult`` of the compressed sweep at rank k (at least the first
        ``n_certify`` replicates, in replicate order; coefficients needed only for the grow warm
        start).
    n_certify : replicates refitted (≥ 2).
    n_replicates : replicates of the sweep.
    centered : correlation of the instability.
    block_size : replicates refitted at once (the sweep's block size bounds the memory); None: all.
    progress : show a progress bar over the refitted blocks.
    k_values : the K's to certify (contiguous, within ``ks``); None: ``k_selected`` ± 1.

    Returns
    -------
    table : DataFrame with columns k, hungarian_exact, hungarian_compressed_subset, n_certified
        (one row per certified K).
    agrees : bool, True when the argmin of γ over the certified K's is the same for the exact
        and the compressed fits of those replicates.
    """
    from osnmf.factorize.operators import ExactOperator
    from osnmf.factorize.params import BlockResult
    from osnmf.factorize.sweep import fit_block, replicate_counts

    kset = set(int(k) for k in ks)
    wanted = (k_selected - 1, k_selected, k_selected + 1) if k_values is None else k_values
    cert_ks = sorted(int(k) for k in wanted if int(k) in kset)
    R = int(min(n_certify, n_replicates))
    seeds = np.arange(R)
    n = X.shape[0]
    counts = replicate_counts(n, seeds, params)
    exact = dataclasses.replace(params, solver="exact", sketch=None, keep_coefficients=False)
    op = X if isinstance(X, ExactOperator) else ExactOperator(X)
    warm = None
    if params.grow and cert_ks[0] - 1 in kset:
        prev = compressed_at(cert_ks[0] - 1)
        if prev.coefficients is not None:
            warm = (prev.coefficients[:R], prev.components[:R])
    rows = []
    step = R if block_size is None else max(1, int(block_size))
    label = f"certification: exact refits of {R} replicates at K = {', '.join(map(str, cert_ks))}"
    with ProgressBar(label, len(cert_ks) * len(range(0, R, step)), enabled=progress, transient=False) as bar:
        for k in cert_ks:
            parts = []
            for s in range(0, R, step):
                part_warm = None if warm is None else (warm[0][s:s + step], warm[1][s:s + step])
                parts.append(fit_block(op, k, counts[s:s + step], exact, seeds[s:s + step], op, part_warm))
                bar.advance(note=f"K={k}")
            res = BlockResult.concat(parts, coefficients=bool(params.grow))
            del parts
            warm = (res.coefficients, res.components) if params.grow else None
            comp = compressed_at(k).components[:R]
            rows.append({
                "k": k,
                "hungarian_exact": instability(res.components, centered=centered)["hungarian"],
                "hungarian_compressed_subset": instability(comp, centered=centered)["hungarian"],
                "n_certified": R,
            })
    table = pd.DataFrame(rows, columns=CERT_COLUMNS)
    exact_k, compressed_k = certified_argmins(table)
    return table, exact_k == compressed_k


def certified_argmins(table: pd.DataFrame) -> tuple[int, int]:
    """The K of the smallest γ among the certified K's: (exact refits, compressed fits of the
    same replicates)."""
    def argmin(column: str) -> int:
        return int(table["k"].iloc[int(np.argmin(table[column].to_numpy()))])

    return argmin("hungarian_exact"), argmin("hungarian_compressed_subset")
