"""The final model of a staNMF fit: one NMF of the full data at the selected K, kept in the sweep's store.

The starts at K are fitted on the sweep's operator (X itself, or its sketch when the sweep is
compressed: cheap): NNDSVDa with the random restarts in one batched call, then (with ``grow``) the
grown full-data K−1 fit, which stops at the NNDSVDa fit's accuracy (a warm start, see
:mod:`osnmf.factorize.nmf.solver`). After a compressed sweep the best start is then refined with the
exact solver to that same accuracy, so the final model is always a fit of X itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from osnmf.factorize.nmf.fits import NMFResult, solve_replicates
from osnmf.factorize.nmf.grow import grow_lowrank
from osnmf.factorize.nmf.init import nndsvda_init, random_init
from osnmf.factorize.nmf.operators import ExactOperator
from osnmf.factorize.sweep.params import SweepParams
from osnmf.progress import ProgressBar

__all__ = ["final_model", "fit_final_model"]


def final_model(op: Any, exact: ExactOperator, k: int, params: SweepParams, store: Any,
                progress: bool = False) -> NMFResult:
    """The final model at ``k``: read from ``store`` (a resumed fit), else fitted and stored there."""
    stored = store.get_final(k, params.n_restarts)
    if stored is not None:
        return stored
    model = fit_final_model(op, exact, k, params, progress)
    store.put_final(k, params.n_restarts, model)
    return model


def fit_final_model(op: Any, exact: ExactOperator, k: int, params: SweepParams,
                    progress: bool = False) -> NMFResult:
    """Fit the final model at ``k`` (see the module docstring): the lowest loss over every start.

    Parameters
    ----------
    op : the sweep's data operator (``ExactOperator`` of X, or its ``Sketch``).
    exact : the ``ExactOperator`` of X (``op`` itself after an exact sweep), for the polish.
    k : the selected K.
    params : the sweep's parameters (``n_restarts``, ``grow``, stopping rule, backend, seed).
    progress : show a progress bar over the starts.
    """
    n = op.shape[0]
    kw = {"max_iter": params.max_iter, "tol": params.tol, "backend": params.backend,
          "device": params.device, "weighted": False}
    ones = np.ones((1, n), dtype=np.int64)
    rng = np.random.default_rng(params.random_state)
    At, D = nndsvda_init(op, k, ones, rng, 1e-6, None)
    A0s, D0s = [At.transpose(0, 2, 1)], [D]
    for restart in range(1, params.n_restarts):
        seed = int(np.random.SeedSequence([params.random_state, 104729, k, restart]).generate_state(1)[0])
        At, D = random_init(op, k, ones, np.random.default_rng(seed))
        A0s.append(At.transpose(0, 2, 1))
        D0s.append(D)
    A0, D0 = np.concatenate(A0s), np.concatenate(D0s)
    grow, polish = bool(params.grow) and k > 1, op is not exact
    with ProgressBar(f"final model at K = {k}", 1 + 2 * grow + polish, enabled=progress, transient=False) as bar:
        fits = [solve_replicates(op, k, np.ones((len(A0), n), dtype=np.int64), init=(A0, D0), **kw)]
        bar.advance(note="starts")
        reference = fits[0].viol_init[:1]  # the NNDSVDa start's first violation
        if grow:
            prev = solve_replicates(op, k - 1, ones, init="nndsvda", random_state=params.random_state, **kw)
            bar.advance(note=f"K = {k - 1}")
            fits.append(solve_replicates(op, k, ones, init=grow_lowrank(op, prev.A, prev.D, ones),
                                         stop_reference=reference, **kw))
            bar.advance(note="grown start")
        # the lowest loss over every start (ties: the earlier start)
        f, i = min(((f, i) for f in fits for i in range(len(f.loss))), key=lambda t: t[0].loss[t[1]])
        best = NMFResult(f.A[i], f.D[i], int(f.n_iter[i]), float(f.loss[i]))
        if polish:
            polished = solve_replicates(exact, k, ones, init=(best.A[None], best.D[None]),
                                        stop_reference=reference, **kw)
            best = NMFResult(polished.A[0], polished.D[0], best.n_iter + int(polished.n_iter[0]),
                             float(polished.loss[0]))
            bar.advance(note="exact polish")
    return NMFResult(np.asarray(best.A), np.asarray(best.D), int(best.n_iter), float(best.loss))
