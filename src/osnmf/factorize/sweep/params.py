"""The parameters and the block plan of a stability sweep (shared by sweep, store, executors).

A sweep is the set of all (K, replicate-block) fits of a staNMF run: :class:`SweepParams` holds
everything that decides a block's result besides the data, :class:`BlockSpec` names one block,
:class:`BlockResult` holds its fits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from osnmf.errors import ConfigError
from osnmf.factorize.checks import MAX_ITER, N_RESTARTS, RANDOM_STATE, SWEEP_SOLVER, TOL, check, check_backend

__all__ = ["BlockResult", "BlockSpec", "SweepParams", "auto_block_size", "plan_blocks"]


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
    grow : bool or "only"
        True: also start each replicate from its own solution at K-1 (same bootstrap sample) plus
        the leading non-negative component of that solution's residual (:func:`~osnmf.factorize.nmf.grow.grow_lowrank`),
        and keep it when its loss is lower. "only": the grown start replaces the cold starts
        wherever a K-1 solution exists (the cold starts then run at the first K only). Blocks
        of K then wait for K-1.
    solver, backend, device, max_iter, tol, sketch
        Passed to ``fit_nmf_replicates``.
    random_state : int
        Root seed of every random draw in the sweep.
    keep_coefficients : bool
        Store the replicate coefficients ``A`` (R, n, k) too (needed by nothing in the
        instability; costs R·n·k floats per block).
    """

    perturbation: str = "bootstrap"
    n_restarts: int = N_RESTARTS
    grow: bool | str = False
    solver: str = "exact"
    backend: str = "numpy"
    device: str | None = None
    max_iter: int = MAX_ITER
    tol: float = TOL
    random_state: int = RANDOM_STATE
    keep_coefficients: bool = True
    sketch: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        """The one place where the sweep's parameters are checked (and normalised to builtins)."""
        check("perturbation", self.perturbation)
        SWEEP_SOLVER.check("solver", self.solver)
        check_backend(self.backend, self.device)
        if self.sketch is not None and not isinstance(self.sketch, Mapping):
            raise ConfigError(f"sketch={self.sketch!r}: must be a dict of sketch_matrix options or None")
        normalised = {name: check(name, getattr(self, name)) for name in
                      ("n_restarts", "max_iter", "tol", "random_state", "grow")}
        normalised["keep_coefficients"] = bool(self.keep_coefficients)
        for name, value in normalised.items():
            object.__setattr__(self, name, value)  # frozen: set once, here

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

    @classmethod
    def concat(cls, parts: Iterable[BlockResult], coefficients: bool = False) -> BlockResult:
        """The blocks of one K joined in replicate order (coefficients only if asked for)."""
        parts = sorted(parts, key=lambda p: int(p.seeds[0]))
        cat = np.concatenate
        return cls(cat([p.components for p in parts]),
                   cat([p.coefficients for p in parts]) if coefficients else None,
                   cat([p.n_iter for p in parts]), cat([p.loss for p in parts]),
                   cat([p.restart for p in parts]), cat([p.seeds for p in parts]))


def plan_blocks(k_values: Iterable[int], n_replicates: int, block_size: int) -> list[BlockSpec]:
    """All blocks of a sweep, K-major, replicates in chunks of ``block_size``."""
    return [
        BlockSpec(int(k), s, min(s + block_size, n_replicates))
        for k in k_values
        for s in range(0, n_replicates, block_size)
    ]


def auto_block_size(n_rows: int, n_cols: int, k_max: int, n_replicates: int, n_jobs: int = 1,
                    budget_bytes: float | None = None) -> int:
    """Replicates per block: the working memory of the ``n_jobs`` blocks that run at once stays
    within ``budget_bytes`` (default: half the size of X in float32, at least 512 MiB), and every
    job gets a block.

    A block's peak is at most six float32 copies of its factors at ``k_max`` (the start, which
    the solver works in and returns, products ``Aᵀ X``, the best start so far, the K−1 warm
    start, transients; ``tests/test_stanmf.py`` measures 3.4, and 4.1 before the solver
    returned its working D; the model keeps its margin so the block layout stays as stored).
    Capped at 50 replicates so an interrupted sweep loses little work.
    """
    if budget_bytes is None:
        budget_bytes = max(2 * n_rows * n_cols, 2**29)  # half of X (4 bytes per value)
    per_rep = 6 * 4 * k_max * (n_rows + n_cols) * max(1, n_jobs)
    by_jobs = -(-n_replicates // max(1, n_jobs))
    return int(max(1, min(n_replicates, 50, by_jobs, budget_bytes // max(per_rep, 1))))
