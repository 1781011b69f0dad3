"""``solver="auto"``: which solver a sweep uses, and the sketch rank of the compressed one.

Rule (set from flop counts, then checked by ``benchmarks/bench_auto_rule.py``, which times both
solvers by matrix size in one run: K 9–11 × 10 replicates on the calibrated atlas's rows, exact /
compressed = 1.40× at 300 genes, 2.11× at 600, 2.79× at 1,200, 4.28× at 2,400, max |Δγ| ≤ 0.0033;
the rule keeps exact fits, equal to scikit-learn's, below the size where compressed clearly pays):

* **compressed** when ``X`` holds at least :data:`COMPRESS_MIN_ENTRIES` values (25 M: e.g. 400
  genes × 62,529 voxels) *and* its small side is at least :data:`COMPRESS_MIN_SIDE` times the sketch
  rank — there a product with the sketch costs ``(n + m)·rank`` instead of ``n·m`` and the sketch
  (one truncated SVD) is paid once per sweep;
* **exact** otherwise (small matrices: every fit is then scikit-learn's to rounding).

Sketch rank: the smallest rank holding 99.9 % of ``‖X‖²_F``, capped at :data:`MAX_RANK` (128) —
noise makes the 99.9 % rank of an atlas large (hundreds), while the patterns of a K-pattern model
live in far fewer directions (128 ≥ 4 per pattern up to K = 32). The cap does not depend on the
K range, so extending a stored sweep to more K reuses its blocks (the sketch is in the run key).
Every compressed sweep is checked against exact refits (:mod:`osnmf.factorize.choose_k.certify`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from osnmf.constraints import refuse
from osnmf.factorize.checks import RULES, check

__all__ = ["COMPRESS_MIN_ENTRIES", "SOLVERS", "resolve_solver", "sketch_options"]

SOLVERS = RULES["solver"].choices  # auto, exact, compressed
COMPRESS_MIN_ENTRIES = 25_000_000
COMPRESS_MIN_SIDE = 4
MAX_RANK = 128


def sketch_options(user: dict[str, Any] | None = None) -> dict[str, Any]:
    """Options of ``sketch_matrix`` for the compressed solver (user options win)."""
    if user is not None and not isinstance(user, Mapping):
        raise refuse("sketch", user, "a dict of sketch_matrix options or None")
    opts: dict[str, Any] = {"energy": 0.999, "max_rank": MAX_RANK}
    opts.update(dict(user or {}))
    return opts


def resolve_solver(solver: str, shape: tuple[int, int], k_max: int,
                   sketch: dict[str, Any] | None = None) -> str:
    """The solver a sweep runs: ``solver`` itself, or the rule above for ``"auto"``.

    Parameters
    ----------
    solver : {"auto", "exact", "compressed"}
    shape : (n, m) of the data.
    k_max : largest K of the sweep (compressed only while the sketch rank is at least 2 k_max).
    sketch : user sketch options (their ``max_rank`` / ``rank`` enter the side test).

    Returns
    -------
    "exact" or "compressed"
    """
    check("solver", solver)
    if solver != "auto":
        return solver
    n, m = int(shape[0]), int(shape[1])
    opts = sketch_options(sketch)
    rank = int(opts.get("rank") or opts["max_rank"])
    if n * m >= COMPRESS_MIN_ENTRIES and min(n, m) >= COMPRESS_MIN_SIDE * rank and 2 * k_max <= rank:
        return "compressed"
    return "exact"
