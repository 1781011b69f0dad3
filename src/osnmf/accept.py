"""What a run can use, checked before anything is written: the loaded input against the settings.

:func:`accept_input` refuses data no run can factorise (nothing measured in the brain, too few
experiments for ``k_max``, values too large for float32 products, more kNN neighbours than an
experiment has measured voxels) in one :class:`~osnmf.errors.OsnmfError` line;
:func:`read_run_patterns` reads a finished run's patterns for a projection only after the headers
of its ``patterns.npz`` are checked (a hostile file cannot ask for a huge allocation).
"""

from __future__ import annotations

import os
from numbers import Integral
from pathlib import Path

import numpy as np

from osnmf.config import RunConfig
from osnmf.errors import ConfigError, InputError
from osnmf.expression import SpatialExpression
from osnmf.formats.npz_headers import npz_headers
from osnmf.run.layout import PATTERNS, RunPatterns, read_patterns

__all__ = ["accept_input", "read_run_patterns", "refuse_too_few"]


def accept_input(expr: SpatialExpression, cfg: RunConfig) -> None:
    """Refuse an input or a setting the run cannot use, before anything is written: no measured
    value inside the brain, fewer experiments with data than ``k_max`` + 1, values too large for
    the solver's float32 products (:func:`osnmf.factorize.checks.max_value`), or more kNN
    neighbours than an experiment has measured brain voxels."""
    from osnmf.constraints import Interval
    from osnmf.factorize.checks import check_scale

    source = cfg.data if cfg.data is not None else "the synthetic atlas"
    brain = expr.atlas.brain_mask
    counts = np.zeros(len(expr.volumes), dtype=np.int64)  # measured brain voxels per experiment
    largest = np.zeros(len(expr.volumes))  # largest measured value per experiment
    for i, volume in enumerate(expr.volumes):
        values = volume[brain]
        values = values[np.isfinite(values)]
        counts[i] = values.size
        largest[i] = float(np.abs(values).max()) if values.size else 0.0
    measured = counts > 0
    if not measured.any():
        raise InputError(f"{source}: no measured value inside the brain (every voxel is missing); "
                         "check the file's values and grid coordinates")
    refuse_too_few(int(measured.sum()), cfg.k_max, "experiments with data", f"{source}: ")
    worst = int(np.argmax(largest))
    check_scale(float(largest[worst]), (int(measured.sum()), int(brain.sum())),
                f"{source} (experiment {expr.experiment_ids[worst]})")
    if cfg.impute == "knn":
        Interval(Integral, 1, int(counts.max()), closed="both", why="the most measured brain voxels of an experiment "
                 f"in {source}; the paper uses 6").check("n_neighbors", cfg.n_neighbors)


def refuse_too_few(n: int, k_max: int, what: str, where: str = "") -> None:
    """ConfigError when ``n`` experiments cannot support K up to ``k_max`` (NMF needs K < rows)."""
    if n <= k_max:
        raise ConfigError(f"{where}{n} {what} are too few for K up to {k_max}: "
                          f"use --k-max {max(2, n - 1)} or less, or more data")


def read_run_patterns(run_dir: str | os.PathLike) -> RunPatterns:
    """:func:`~osnmf.run.layout.read_patterns`, after the ``.npy`` headers of the run's
    ``patterns.npz`` are checked against the archive's own bytes (:func:`osnmf.formats.npz_headers`):
    a small file declaring a huge shape is one line, not an allocation of its declared size."""
    path = Path(run_dir) / PATTERNS
    if path.is_file():
        npz_headers(path)
    return read_patterns(run_dir)
