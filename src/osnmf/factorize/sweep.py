"""A resumable stability sweep: blocks of replicate NMF fits, streamed into an on-disk store.

A sweep is the set of all (K, replicate-block) fits of a staNMF run. Each block is a pure
function of its inputs, :func:`fit_block` ``(X, k, counts, params, seed) -> BlockResult``, so it can
run here, in a thread, or on a remote worker (a Dask executor only has to implement
``map_unordered``), and its result is written to the store as soon as it arrives.

Store layout (one directory per run, so different inputs never share results)::

    <root>/<run key>/manifest.json          data hash, shape, parameters, osnmf version
    <root>/<run key>/k012/r0000-0020.npz    one finished block (written atomically)
    <root>/<run key>/k012/instability.json  gamma(K) once every block of K is done
    <root>/<run key>/final_k012.npz         the final model at the selected K

The run key is a hash of the data (its float32 bytes and shape) and of every parameter that
changes a block's result; ``k``, the number of replicates and the block size are not part of it,
so extending a sweep (more K, more replicates) reuses what is already there. A block file also
records the run key and is ignored if it does not match.

Replicate ``r`` always uses the bootstrap counts drawn from ``default_rng([random_state, r])``,
the same for every K (common random numbers across the curve), whatever the block layout.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from osnmf.atomic import save_npz, write_text
from osnmf.errors import ConfigError, InputError

__all__ = [
    "SweepParams",
    "BlockSpec",
    "BlockResult",
    "SweepStore",
    "fit_block",
    "grow_factors",
    "replicate_counts",
    "plan_blocks",
    "run_sweep",
    "SerialExecutor",
    "ThreadExecutor",
    "data_digest",
]

PERTURBATIONS = ("bootstrap", "init", "both")


@dataclass(frozen=True)
class SweepParams:
    """Everything besides ``X``, ``k`` and the replicate indices that decides a block's result.

    Attributes
    ----------
    perturbation : {"bootstrap", "init", "both"}
        "bootstrap": rows resampled with replacement, deterministic NNDSVDa init (the paper);
        "init": all rows once, random initialisation (the original Drosophila staNMF);
        "both": bootstrap rows and random initialisation.
    n_restarts : int
        Fits per replicate; restart 0 uses the perturbation's init, restarts 1.. a random init;
        the fit with the lowest loss is kept.
    grow : bool
        Also start each replicate from its own solution at K-1 (same bootstrap sample) plus the
        leading non-negative component of that solution's residual (:func:`grow_factors`),
        and keep it when its loss is lower. Blocks of K then wait for K-1.
    solver, backend, device, max_iter, tol, sketch
        Passed to ``fit_nmf_replicates``.
    random_state : int
        Root seed of every random draw in the sweep.
    keep_coefficients : bool
        Store the replicate coefficients ``A`` (R, n, k) too (needed by nothing in the
        instability; costs R·n·k floats per block).
    """

    perturbation: str = "bootstrap"
    n_restarts: int = 1
    grow: bool = False
    solver: str = "exact"
    backend: str = "numpy"
    device: str | None = None
    max_iter: int = 200
    tol: float = 1e-4
    random_state: int = 0
    keep_coefficients: bool = True
    sketch: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.perturbation not in PERTURBATIONS:
            raise ConfigError(
                f"perturbation must be one of {PERTURBATIONS}, got {self.perturbation!r}"
            )
        if int(self.n_restarts) < 1:
            raise ConfigError(f"n_restarts must be >= 1, got {self.n_restarts}")
        if int(self.max_iter) < 1:
            raise ConfigError(f"max_iter must be >= 1, got {self.max_iter}")
        if not float(self.tol) >= 0:
            raise ConfigError(f"tol must be >= 0, got {self.tol}")

    def key_fields(self) -> dict[str, Any]:
        """The parameters that enter the run key (all of them; device excluded)."""
        d = asdict(self)
        d.pop("device")
        d.pop("keep_coefficients")
        d["sketch"] = None if self.sketch is None else dict(self.sketch)
        return d


@dataclass(frozen=True)
class BlockSpec:
    """Replicates ``start .. stop-1`` at rank ``k``."""

    k: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"k{self.k:03d}/r{self.start:04d}-{self.stop:04d}"

    @property
    def n(self) -> int:
        return self.stop - self.start


@dataclass
class BlockResult:
    """Result of one block of R replicate fits at rank k on an n × m matrix.

    Attributes
    ----------
    components : (R, k, m) float32, the patterns D of each replicate.
    coefficients : (R, n, k) float32 or None, the coefficients A (rows of the full X; a row
        that a bootstrap replicate did not draw is the non-negative least-squares-free value the
        solver left there and should not be interpreted).
    n_iter : (R,) int, iterations of the kept fit.
    loss : (R,) float, final loss of the kept fit (the solver's definition).
    restart : (R,) int, which start was kept: 0 = the perturbation's own init, 1 .. n_restarts-1
        = random restarts, n_restarts = grown from the K-1 solution (``grow``).
    seeds : (R,) int64, replicate indices (the bootstrap draw is ``default_rng([random_state, r])``).
    """

    components: np.ndarray
    coefficients: np.ndarray | None
    n_iter: np.ndarray
    loss: np.ndarray
    restart: np.ndarray
    seeds: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)


def data_digest(X: np.ndarray) -> str:
    """A short stable hash of a matrix's float32 values and shape (the data part of a run key)."""
    from osnmf.stagecache import digest

    X32 = np.ascontiguousarray(X, dtype=np.float32)
    return digest(X32)


def replicate_counts(n_rows: int, replicates: Sequence[int], params: SweepParams) -> np.ndarray:
    """Row multiplicities of the given replicates, shape (len(replicates), n_rows), int.

    Bootstrap: multinomial counts summing to ``n_rows`` drawn from
    ``default_rng([random_state, r])`` (independent of K and of the block layout);
    ``perturbation="init"``: all ones.
    """
    out = np.ones((len(replicates), n_rows), dtype=np.int64)
    if params.perturbation == "init":
        return out
    from osnmf.factorize.nmf import bootstrap_counts

    for i, r in enumerate(replicates):
        rng = np.random.default_rng([int(params.random_state), int(r)])
        out[i] = bootstrap_counts(n_rows, 1, rng)[0]
    return out


def _restart_seed(params: SweepParams, k: int, start: int, stop: int, restart: int) -> int:
    ss = np.random.SeedSequence([int(params.random_state), 7919, k, start, stop, restart])
    return int(ss.generate_state(1)[0])


def grow_factors(
    X: np.ndarray, A: np.ndarray, D: np.ndarray, counts: np.ndarray, n_power: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Add one component to each replicate's factors: the leading part of its positive residual.

    For replicate r with counts ``c``, ``E = max(X - A_r D_r, 0)`` is what the K-1 model leaves
    unexplained; the leading singular pair (u, s, v) of ``diag(sqrt(c)) E`` (power iteration,
    non-negative by Perron–Frobenius) gives the new pattern ``sqrt(s) v`` and coefficients
    ``E v / sqrt(s)`` (for every row, drawn or not).

    Parameters
    ----------
    X : (n, m) data.
    A : (R, n, k) coefficients, D : (R, k, m) patterns of the K-1 = k solutions.
    counts : (R, n) row multiplicities.
    n_power : power iterations.

    Returns
    -------
    A0 : (R, n, k+1), D0 : (R, k+1, m), float32, non-negative: an initialisation at k+1.
    """
    R, n, k = A.shape
    m = X.shape[1]
    A0 = np.empty((R, n, k + 1), dtype=np.float32)
    D0 = np.empty((R, k + 1, m), dtype=np.float32)
    for r in range(R):
        E = np.asarray(X, dtype=np.float32) - A[r].astype(np.float32) @ D[r].astype(np.float32)
        np.maximum(E, 0, out=E)
        w = np.sqrt(counts[r].astype(np.float32))
        v = (w @ E).astype(np.float64)  # positive start vector
        s = 0.0
        for _ in range(n_power):
            nv = np.linalg.norm(v)
            if nv == 0:
                break
            v /= nv
            u = w * (E @ v.astype(np.float32))
            v = ((w * u) @ E).astype(np.float64)
            s = float(np.sqrt(np.linalg.norm(v)))  # sqrt of the top eigenvalue of E'WE
        nv = np.linalg.norm(v)
        if s <= 0 or nv == 0:  # nothing left to explain: a tiny flat component
            eps = float(X.mean()) * 1e-3 + 1e-12
            a_new, d_new = np.full(n, eps), np.full(m, eps)
        else:
            v = v / nv
            a_new = (E @ v.astype(np.float32)) / np.sqrt(s)
            d_new = np.sqrt(s) * v
        A0[r, :, :k] = A[r]
        A0[r, :, k] = a_new
        D0[r, :k] = D[r]
        D0[r, k] = d_new
    return A0, D0


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
    sketch : a precomputed ``osnmf.factorize.sketch.Sketch`` of ``X`` for
        ``solver="compressed"`` (computed once per sweep); None: ``params.sketch`` options.
    warm : (A, D) of the same replicates at rank ``k - 1`` (shapes (R, n, k-1), (R, k-1, m));
        with ``params.grow`` one more start grows them (:func:`grow_factors`).

    Returns
    -------
    :class:`BlockResult`, the fit with the lowest loss over ``params.n_restarts`` per replicate.
    """
    from osnmf.factorize.nmf import fit_nmf_replicates

    seeds = np.asarray(seeds, dtype=np.int64)
    start, stop = int(seeds.min()), int(seeds.max()) + 1
    best = None
    starts = list(range(params.n_restarts))
    if params.grow and warm is not None:
        starts.append(params.n_restarts)
    if sketch is None and params.sketch is not None:
        sketch = dict(params.sketch)
    for restart in starts:
        grown = restart == params.n_restarts
        random_init = restart > 0 or params.perturbation in ("init", "both")
        # NNDSVDa's randomised SVD (large X only) gets the same seed in every block: the
        # "fixed initialisation" of the paper; random inits differ per block and restart.
        seed = (_restart_seed(params, k, start, stop, restart) if random_init
                else _restart_seed(params, k, 0, 0, 0))
        init: Any = "random" if random_init else "nndsvda"
        if grown:
            init = grow_factors(X, warm[0], warm[1], counts)
        fits = fit_nmf_replicates(
            X,
            k,
            counts,
            init=init,
            random_state=seed,
            max_iter=params.max_iter,
            tol=params.tol,
            solver=params.solver,
            sketch=sketch,
            backend=params.backend,
            device=params.device,
        )
        D = np.asarray(fits.D, dtype=np.float32)
        keep_a = params.keep_coefficients or params.grow  # grow needs A of K-1
        A = np.asarray(fits.A, dtype=np.float32) if keep_a else None
        loss = np.asarray(fits.loss, dtype=np.float64)
        n_iter = np.asarray(fits.n_iter, dtype=np.int64)
        if best is None:
            best = BlockResult(D, A, n_iter, loss, np.zeros(len(seeds), np.int64), seeds)
            continue
        better = loss < best.loss
        best.components[better] = D[better]
        if A is not None:
            best.coefficients[better] = A[better]
        best.loss[better] = loss[better]
        best.n_iter[better] = n_iter[better]
        best.restart[better] = restart
    return best


def plan_blocks(k_values: Iterable[int], n_replicates: int, block_size: int) -> list[BlockSpec]:
    """All blocks of a sweep, K-major, replicates in chunks of ``block_size``."""
    if n_replicates < 1:
        raise ConfigError(f"n_replicates must be >= 1, got {n_replicates}")
    if block_size < 1:
        raise ConfigError(f"block_size must be >= 1, got {block_size}")
    return [
        BlockSpec(int(k), s, min(s + block_size, n_replicates))
        for k in k_values
        for s in range(0, n_replicates, block_size)
    ]


def auto_block_size(n_rows: int, n_cols: int, k_max: int, n_replicates: int,
                    budget_bytes: float = 2**30) -> int:
    """Replicates per block so the block's factors and solver temporaries stay near ``budget``.

    Assumes about 4 float64 copies of ``A`` and ``D`` per replicate; capped at 50 replicates so an
    interrupted sweep loses little work.
    """
    per_rep = 4 * 8 * k_max * (n_rows + n_cols)
    return int(max(1, min(n_replicates, 50, budget_bytes // max(per_rep, 1))))


class SweepStore:
    """The on-disk results of one sweep run (see the module docstring for the layout).

    Parameters
    ----------
    root : folder holding runs; the run lives in ``root / key``.
    key : run key (hash of data + parameters), see :meth:`open`.
    """

    def __init__(self, root: str | os.PathLike, key: str):
        self.root = Path(root)
        self.key = key
        self.path = self.root / key

    @classmethod
    def open(cls, root: str | os.PathLike, X: np.ndarray, params: SweepParams,
             data_key: str | None = None) -> SweepStore:
        """Open (creating if needed) the run of ``X`` under ``params`` inside ``root``."""
        from osnmf.stagecache import digest

        data_key = data_key or data_digest(X)
        key = digest(data_key, params.key_fields())
        store = cls(root, key)
        manifest = store.path / "manifest.json"
        if manifest.exists():
            try:
                info = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError(f"sweep store manifest {manifest} is unreadable: {exc}; "
                                 "delete that run folder to start it again") from None
            if info.get("key") != key or info.get("data") != data_key:
                raise InputError(f"sweep store {store.path} belongs to another run "
                                 "(data or parameters differ); delete it or use another root")
        else:
            from osnmf._version import __version__

            info = {
                "key": key,
                "data": data_key,
                "shape": list(np.shape(X)),
                "params": params.key_fields(),
                "osnmf_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            write_text(manifest, json.dumps(info, indent=2, default=str))
        return store

    # blocks -----------------------------------------------------------------------------
    def block_path(self, spec: BlockSpec) -> Path:
        return self.path / f"{spec.name}.npz"

    def has(self, spec: BlockSpec) -> bool:
        return self.block_path(spec).exists()

    def put(self, spec: BlockSpec, result: BlockResult) -> Path:
        arrays = {
            "run_key": np.array(self.key),
            "components": result.components,
            "n_iter": result.n_iter,
            "loss": result.loss,
            "restart": result.restart,
            "seeds": result.seeds,
        }
        if result.coefficients is not None:
            arrays["coefficients"] = result.coefficients
        return save_npz(self.block_path(spec), compress=False, **arrays)

    def get(self, spec: BlockSpec, coefficients: bool = True) -> BlockResult | None:
        """A stored block, or None when absent, unreadable or from another run."""
        path = self.block_path(spec)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["run_key"]) != self.key:
                    return None
                A = z["coefficients"] if coefficients and "coefficients" in z.files else None
                return BlockResult(z["components"], A, z["n_iter"], z["loss"], z["restart"],
                                   z["seeds"])
        except (OSError, ValueError, KeyError):
            return None

    def load_k(self, k: int, n_replicates: int, block_size: int,
               coefficients: bool = False) -> BlockResult:
        """Concatenate the blocks of rank ``k`` (replicates 0 .. n_replicates-1)."""
        parts = []
        for spec in plan_blocks([k], n_replicates, block_size):
            res = self.get(spec, coefficients=coefficients)
            if res is None:
                raise InputError(f"sweep store {self.path}: block {spec.name} is missing; "
                                 "run the sweep again to finish it")
            parts.append(res)
        cat = np.concatenate
        return BlockResult(
            cat([p.components for p in parts]),
            cat([p.coefficients for p in parts]) if coefficients else None,
            cat([p.n_iter for p in parts]), cat([p.loss for p in parts]),
            cat([p.restart for p in parts]), cat([p.seeds for p in parts]),
        )

    # per-K summaries and the final model --------------------------------------------------
    def _json_path(self, k: int) -> Path:
        return self.path / f"k{k:03d}" / "instability.json"

    def get_instability(self, k: int, tag: Mapping[str, Any]) -> dict[str, float] | None:
        path = self._json_path(k)
        if not path.exists():
            return None
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return info.get("values") if info.get("tag") == dict(tag) else None

    def put_instability(self, k: int, tag: Mapping[str, Any], values: Mapping[str, float]) -> None:
        write_text(self._json_path(k), json.dumps({"tag": dict(tag), "values": dict(values)}))

    def final_path(self, k: int, tag: str) -> Path:
        return self.path / f"final_k{k:03d}_{tag}.npz"


class Executor(Protocol):
    """Runs block tasks, yielding ``(index, result)`` as each finishes (any order)."""

    def map_unordered(self, fn: Callable[..., Any],
                      tasks: Sequence[tuple]) -> Iterator[tuple[int, Any]]: ...


class SerialExecutor:
    """Runs tasks one after the other in this process."""

    def map_unordered(self, fn, tasks):
        for i, args in enumerate(tasks):
            yield i, fn(*args)


class ThreadExecutor:
    """Runs tasks on ``n_jobs`` threads (the numeric kernels release the GIL)."""

    def __init__(self, n_jobs: int):
        self.n_jobs = int(n_jobs)

    def map_unordered(self, fn, tasks):
        with cf.ThreadPoolExecutor(max_workers=self.n_jobs) as pool:
            futures = {pool.submit(fn, *args): i for i, args in enumerate(tasks)}
            for fut in cf.as_completed(futures):
                yield futures[fut], fut.result()


def _progress(enabled: bool, total: int):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    prog = Progress(
        TextColumn("[bold]staNMF sweep[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )
    return prog


def run_sweep(
    X: np.ndarray,
    blocks: Sequence[BlockSpec],
    params: SweepParams,
    *,
    store: SweepStore | None = None,
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
    store : where results go; finished blocks found there are skipped (resume). None keeps
        everything in memory.
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
    todo = [b for b in blocks if store is None or not store.has(b)]
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
    with _progress(progress, len(todo)) as prog:
        task = prog.add_task(f"{len(blocks) - len(todo)} of {len(blocks)} blocks stored",
                             total=len(todo))
        for wave in waves:
            idx = [i for i, b in enumerate(todo) if wave is None or b.k == wave]
            wave_tasks = []
            for i in idx:
                b = todo[i]
                warm = None
                if params.grow and b.k - 1 in ranks:
                    before = BlockSpec(b.k - 1, b.start, b.stop)
                    res = prev.get((b.start, b.stop)) if wave - 1 in _wave_ks(prev) else None
                    res = res or done.get(before) or (store.get(before) if store else None)
                    if res is not None and res.coefficients is not None:
                        warm = (res.coefficients, res.components)
                wave_tasks.append((*tasks[i], warm))
            current: dict[tuple[int, int], BlockResult] = {}
            for j, result in executor.map_unordered(block_fn, wave_tasks):
                spec = todo[idx[j]]
                if store is not None:
                    store.put(spec, result)
                if keep_results:
                    done[spec] = result
                if params.grow:
                    result.extra["k"] = spec.k
                    current[spec.start, spec.stop] = result
                if on_result is not None:
                    on_result(spec, result)
                prog.update(task, advance=1, description=f"last K={spec.k}")
            prev = current
    return done


def _wave_ks(prev: Mapping[tuple[int, int], BlockResult]) -> set[int]:
    return {int(r.extra.get("k", -1)) for r in prev.values()}
