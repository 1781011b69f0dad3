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
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from osnmf.factorize.choose_k.stability import instability
from osnmf.progress import ProgressBar

if TYPE_CHECKING:
    from osnmf.factorize.sweep.plan import SweepPlan

__all__ = ["certified_ks", "certify_in_store", "certify_sweep"]

CERT_COLUMNS = ["k", "hungarian_exact", "hungarian_compressed_subset", "n_certified"]
CERTIFY_MAX_SHARE = 0.25  # certification skipped when its exact refits exceed this share of the sweep


def certified_ks(inst: pd.DataFrame, ks: Sequence[int], k_selected: int) -> list[int]:
    """The K's certified after a compressed sweep: the contiguous range over the Ks near the γ
    minimum (γ ≤ max(min + SE, 2 min), :func:`osnmf.factorize.choose_k.criteria.near_minimum`) and the
    selected K ± 1, within the sweep's K's."""
    from osnmf.factorize.choose_k.criteria import NEAR_FACTOR, near_minimum

    near = near_minimum(inst["k"].to_numpy(), inst["hungarian"].to_numpy(), inst["hungarian_se"].to_numpy(),
                        NEAR_FACTOR)
    wanted = {k_selected - 1, k_selected, k_selected + 1} | {int(k) for k in (near if near is not None else [])}
    lo, hi = min(wanted), max(wanted)
    return [int(k) for k in ks if lo <= k <= hi]


def certify_in_store(exact: Any, plan: SweepPlan, store: Any, k_selected: int, inst: pd.DataFrame,
                     n_certify: int, *, centered: bool = False,
                     progress: bool = False) -> tuple[pd.DataFrame, bool] | None:
    """:func:`certify_sweep` of a finished sweep over the K's near its γ minimum (:func:`certified_ks`),
    kept in the sweep's ``store`` (a resumed fit does not refit it).

    None (skipped) unless the sweep was compressed, at least 2 replicates are certified
    (``n_certify``, at most R) and the refits stay within :data:`CERTIFY_MAX_SHARE` of the sweep's fits.
    """
    R, bs, params = plan.n_replicates, plan.block_size, plan.params
    n_cert = min(int(n_certify or 0), R)
    cert_ks = certified_ks(inst, plan.ks, k_selected)
    if params.solver != "compressed" or n_cert < 2 or len(cert_ks) * n_cert > CERTIFY_MAX_SHARE * len(plan.ks) * R:
        return None
    tag = {"k": k_selected, "ks": [int(k) for k in plan.ks], "n_certify": n_cert, "n_replicates": R,
           "block_size": bs, "centered": bool(centered), "certified_ks": cert_ks, "version": 2}
    stored = store.get_values("certification.json", tag)
    if stored is not None:
        return pd.DataFrame(stored["table"], columns=CERT_COLUMNS), bool(stored["agrees"])

    def compressed_at(k):  # the first n_cert replicates of the compressed sweep at k
        return store.load_k(k, R, bs, coefficients=bool(params.grow), first=n_cert)

    table, agrees = certify_sweep(exact, k_selected, plan.ks, params, compressed_at, n_cert, R, centered=centered,
                                  block_size=bs, progress=progress, k_values=cert_ks)
    store.put_values("certification.json", tag, {"table": table.to_dict("records"), "agrees": bool(agrees)})
    return table, agrees


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
    from osnmf.factorize.nmf.operators import ExactOperator
    from osnmf.factorize.sweep.run import fit_chain, replicate_counts

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
        for k, res in fit_chain(op, cert_ks, counts, exact, step, warm, bar):
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
