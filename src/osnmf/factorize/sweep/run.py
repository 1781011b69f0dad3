"""A resumable stability sweep: blocks of replicate NMF fits, streamed into an on-disk store.

Each block is a pure function of its inputs, :func:`fit_block` ``(X, k, counts, params, seeds)
-> BlockResult``, so it can run here, in a thread, or on a Dask worker
(:mod:`osnmf.factorize.sweep.executors`), and :func:`run_sweep` writes its result to the store
(:mod:`osnmf.factorize.sweep.store`) as soon as it arrives.

Replicate ``r`` always uses the bootstrap counts of :func:`osnmf.factorize.sweep.bootstrap.bootstrap_counts`
(``default_rng([random_state, r])``), the same for every K (common random numbers across the
curve), whatever the block layout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from osnmf.errors import NonFiniteFitError
from osnmf.factorize.checks import GROW_ONLY
from osnmf.factorize.nmf.fits import non_finite_error, solve_replicates
from osnmf.factorize.nmf.grow import grow_lowrank
from osnmf.factorize.nmf.operators import ExactOperator, Sketch, make_operator
from osnmf.factorize.sweep.bootstrap import bootstrap_counts
from osnmf.factorize.sweep.executors import Executor, SerialExecutor
from osnmf.factorize.sweep.params import BlockResult, BlockSpec, SweepParams
from osnmf.factorize.sweep.store import MemoryStore, SweepStore
from osnmf.progress import ProgressBar, track

__all__ = ["fit_block", "replicate_counts", "run_sweep"]


def replicate_counts(n_rows: int, replicates: Sequence[int], params: SweepParams) -> np.ndarray:
    """Row multiplicities (len(replicates), n_rows) of the given replicates of a sweep.

    Bootstrap perturbations: :func:`~osnmf.factorize.sweep.bootstrap.bootstrap_counts` seeded by
    ``params.random_state``; ``perturbation="init"``: all ones (every row once).
    """
    if params.perturbation == "init":
        return np.ones((len(replicates), n_rows), dtype=np.int64)
    return bootstrap_counts(n_rows, replicates, params.random_state)


def _restart_seed(params: SweepParams, k: int, start: int, stop: int, restart: int) -> int:
    ss = np.random.SeedSequence([int(params.random_state), 7919, k, start, stop, restart])
    return int(ss.generate_state(1)[0])


def _operator(X: Any, params: SweepParams, sketch: Any) -> ExactOperator | Sketch:
    """The data operator of a block: prepared once per sweep (passed as ``sketch``) or made here
    (a Dask worker). ``X`` was checked once, by the public boundary (``StaNMF.fit``): not again."""
    if isinstance(sketch, ExactOperator | Sketch):
        return sketch
    if isinstance(X, ExactOperator | Sketch):
        return X
    opts = sketch if sketch is not None else params.sketch
    return make_operator(np.ascontiguousarray(X, dtype=np.float32), params.solver,
                         None if opts is None else dict(opts), params.random_state)


def _cold_init(params: SweepParams, k: int, start: int, stop: int, restart: int) -> tuple[str, int]:
    """(init name, seed) of a cold start: restart 0 is the perturbation's own init.

    NNDSVDa's randomised SVD (large X only) gets the same seed in every block: the "fixed
    initialisation" of the paper; random inits differ per block and restart.
    """
    if restart > 0 or params.perturbation in ("init", "both"):
        return "random", _restart_seed(params, k, start, stop, restart)
    return "nndsvda", _restart_seed(params, k, 0, 0, 0)


def fit_block(
    X: np.ndarray, k: int, counts: np.ndarray, params: SweepParams, seeds: Sequence[int],
    sketch: Any = None, warm: tuple[np.ndarray, np.ndarray] | None = None,
) -> BlockResult:
    """Fit one block of replicates: a pure function of its arguments.

    Parameters
    ----------
    X : (n, m) non-negative float array.
    k : rank.
    counts : (R, n) int row multiplicities (see :func:`replicate_counts`).
    params : :class:`SweepParams`.
    seeds : (R,) replicate indices (they seed the random inits, with ``k``).
    sketch : the data operator prepared once per sweep (an ``ExactOperator`` of ``X``, with its
        cached Gram, or the ``Sketch`` of ``X`` for ``solver="compressed"``), or None: made here
        from ``params`` (``params.sketch`` options).
    warm : (A, D) of the same replicates at rank ``k - 1`` (shapes (R, n, k-1), (R, k-1, m));
        with ``params.grow`` one more start grows them (``grow="only"``: the only start; one
        iteration of the cold start then gives the stopping scale)
        (:func:`osnmf.factorize.nmf.grow.grow_lowrank`: products only, no dense residual); it
        stops when its violation falls to ``tol`` times the first violation of the replicate's
        cold start (restart 0), i.e. at the cold fit's accuracy (:mod:`osnmf.factorize.nmf.solver`).

    Returns
    -------
    :class:`BlockResult`, the fit with the lowest loss over ``params.n_restarts`` per replicate.

    Raises
    ------
    NonFiniteFitError
        A fit went NaN or infinite; the message names K, the replicates (``seeds``), the
        iteration and the cause. Nothing is returned, so nothing non-finite is stored.
    """
    seeds = np.asarray(seeds, dtype=np.int64)
    try:
        return _fit_block(X, k, counts, params, seeds, sketch, warm)
    except NonFiniteFitError as exc:  # name the sweep's replicates, not the block's rows
        raise non_finite_error(k, seeds[list(exc.replicates)], exc.iteration, exc.cause) from None


def _fit_block(X: Any, k: int, counts: np.ndarray, params: SweepParams, seeds: np.ndarray, sketch: Any,
               warm: tuple[np.ndarray, np.ndarray] | None) -> BlockResult:
    start, stop = int(seeds.min()), int(seeds.max()) + 1
    best = None
    grow = bool(params.grow) and warm is not None
    grow_only = grow and params.grow == GROW_ONLY
    starts = ([] if grow_only else list(range(params.n_restarts))) + ([params.n_restarts] if grow else [])
    op = _operator(X, params, sketch)
    fit_args = {"max_iter": params.max_iter, "tol": params.tol, "backend": params.backend,
                "device": params.device}
    cold_violation = None  # first-iteration violations of restart 0 (the grown start's scale)
    if grow_only:  # no cold start: one iteration of restart 0 sets the grown start's scale
        init, seed = _cold_init(params, k, start, stop, 0)
        cold_violation = solve_replicates(op, k, counts, init=init, random_state=seed,
                                          **{**fit_args, "max_iter": 1}).viol_init
    for restart in starts:
        grown = restart == params.n_restarts
        init, seed = _cold_init(params, k, start, stop, restart)
        reference = None
        if grown:  # a warm start: it stops at the accuracy of the replicate's first cold start
            init = grow_lowrank(op, warm[0], warm[1], counts)
            reference = cold_violation
        fits = solve_replicates(op, k, counts, init=init, random_state=seed,
                                stop_reference=reference, consume_init=grown, **fit_args)
        if restart == 0:
            cold_violation = fits.viol_init
        D = np.asarray(fits.D, dtype=np.float32)
        keep_a = params.keep_coefficients or params.grow  # grow needs A of K-1
        A = np.asarray(fits.A, dtype=np.float32) if keep_a else None
        loss = np.asarray(fits.loss, dtype=np.float64)
        n_iter = np.asarray(fits.n_iter, dtype=np.int64)
        if best is None:
            best = BlockResult(D, A, n_iter, loss, np.full(len(seeds), restart, np.int64), seeds)
            continue
        better = loss < best.loss
        best.components[better] = D[better]
        if A is not None:
            best.coefficients[better] = A[better]
        best.loss[better] = loss[better]
        best.n_iter[better] = n_iter[better]
        best.restart[better] = restart
    return best


def run_sweep(
    X: np.ndarray,
    blocks: Sequence[BlockSpec],
    params: SweepParams,
    *,
    store: SweepStore | MemoryStore | None = None,
    executor: Executor | None = None,
    block_fn: Callable[..., BlockResult] = fit_block,
    on_result: Callable[[BlockSpec, BlockResult], None] | None = None,
    progress: bool = False,
    keep_results: bool = True,
    sketch: Any = None,
) -> dict[BlockSpec, BlockResult]:
    """Run every block not yet in ``store``; write each result as soon as it finishes.

    Parameters
    ----------
    X : (n, m) float array, the data (held once; replicates are row weights).
    blocks : the blocks to have (see :func:`plan_blocks`).
    params : :class:`SweepParams`.
    store : where results go (a :class:`SweepStore` or its in-memory twin); finished blocks found
        there are skipped (resume). None: only the returned results (``keep_results``).
    executor : how blocks run (default: serially here). Must yield ``(task index, result)``.
    block_fn : the block function, ``(X, k, counts, params, seeds) -> BlockResult``.
    on_result : called with each new result after it is stored (in this process).
    progress : show a rich progress bar with ETA over the blocks still to run.
    keep_results : return the computed results (False: rely on the store, keep memory flat).
    sketch : precomputed sketch of ``X`` handed to every block (``solver="compressed"``).

    Returns
    -------
    dict BlockSpec -> BlockResult of the blocks computed in this call (stored ones are not
    loaded; read them with :meth:`SweepStore.get`).
    """
    n = X.shape[0]
    on_disk = [b for b in blocks if store is not None and store.stored(b)]
    sound = {b for b in track(on_disk, f"staNMF sweep: checking {len(on_disk)} stored blocks",
                              enabled=progress and bool(on_disk), transient=False) if store.has(b)}
    todo = [b for b in blocks if b not in sound]
    counts_cache: dict[tuple[int, int], np.ndarray] = {}  # the same draws serve every K
    tasks = []
    for b in todo:
        reps = np.arange(b.start, b.stop)
        if (b.start, b.stop) not in counts_cache:
            counts_cache[b.start, b.stop] = replicate_counts(n, reps, params)
        tasks.append((X, b.k, counts_cache[b.start, b.stop], params, reps, sketch))
    executor = executor or SerialExecutor()
    done: dict[BlockSpec, BlockResult] = {}
    # with grow, the blocks of K start from those of K-1: run in waves of increasing K
    waves = sorted({b.k for b in todo}) if params.grow else [None]
    ranks = {b.k for b in blocks}
    prev: dict[tuple[int, int], BlockResult] = {}
    label = f"staNMF sweep ({len(blocks) - len(todo)} of {len(blocks)} blocks stored before)"
    with ProgressBar(label, len(todo), enabled=progress, transient=False) as prog:
        for wave in waves:
            idx = [i for i, b in enumerate(todo) if wave is None or b.k == wave]

            def wave_tasks(idx=idx, prev=prev, wave=wave):
                """The wave's tasks, each made when drawn: a K−1 warm start read from the store
                is held only while its block runs (all of a wave's: 0.7 GB at K = 30)."""
                for i in idx:
                    b = todo[i]
                    warm = None
                    if params.grow and b.k - 1 in ranks:
                        before = BlockSpec(b.k - 1, b.start, b.stop)
                        res = prev.get((b.start, b.stop)) if wave - 1 in _wave_ks(prev) else None
                        res = res or done.get(before) or (store.get(before) if store else None)
                        if res is not None and res.coefficients is not None:
                            warm = (res.coefficients, res.components)
                    yield (*tasks[i], warm)

            current: dict[tuple[int, int], BlockResult] = {}
            for j, result in executor.map_unordered(block_fn, wave_tasks()):
                spec = todo[idx[j]]
                if store is not None:
                    store.put(spec, result)
                if keep_results:
                    done[spec] = result
                if params.grow and store is None:  # with a store, K-1 is read back from it
                    result.extra["k"] = spec.k
                    current[spec.start, spec.stop] = result
                if on_result is not None:
                    on_result(spec, result)
                prog.advance(note=f"last K={spec.k}")
            prev = current
    return done


def _wave_ks(prev: Mapping[tuple[int, int], BlockResult]) -> set[int]:
    return {int(r.extra.get("k", -1)) for r in prev.values()}


def fit_chain(op: Any, ks: Sequence[int], counts: np.ndarray, params: SweepParams, step: int,
              warm: tuple[np.ndarray, np.ndarray] | None = None, bar: Any = None):
    """Refit replicates ``0 .. len(counts)-1`` at each of the consecutive ``ks``, in blocks of
    ``step`` replicates; with ``params.grow`` each K starts from the previous K's fits (the first
    from ``warm``). Yields ``(k, BlockResult)`` (coefficients kept with ``grow``); ``bar.advance``
    after every block."""
    R = len(counts)
    seeds = np.arange(R)
    for k in ks:
        parts = []
        for s in range(0, R, step):
            part_warm = None if warm is None else (warm[0][s:s + step], warm[1][s:s + step])
            parts.append(fit_block(op, k, counts[s:s + step], params, seeds[s:s + step], op, part_warm))
            if bar is not None:
                bar.advance(note=f"K={k}")
        res = BlockResult.concat(parts, coefficients=bool(params.grow))
        del parts
        warm = (res.coefficients, res.components) if params.grow else None
        yield k, res
