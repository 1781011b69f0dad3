"""Hold-out check of the kNN imputation (spec section 2; paper: 1,000 voxels per gene).

Random observed voxels inside the support are hidden, imputed from the rest with exactly the
model of :func:`~osnmf.preprocess.knn.impute_knn`, and compared with the measured values (and,
for synthetic data, with the noiseless truth).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from osnmf.constraints import POSITIVE
from osnmf.errors import InputError
from osnmf.expression import to_volumes
from osnmf.preprocess.common import check_spacing, check_volumes, chunk_slices, run_chunks
from osnmf.preprocess.knn import knn_fill, neighbour_shells

__all__ = ["HOLDOUT_VOXELS", "HoldoutResult", "holdout_check", "sample_holdout"]

HOLDOUT_VOXELS = 1000  # measured voxels hidden per gene in the run's hold-out check (the paper: 1,000)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _grouped_stats(
    group: np.ndarray, n_groups: int, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Per-group count, mean |x - y| and Pearson r of x and y (NaN where undefined)."""
    n = np.bincount(group, minlength=n_groups).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mae = np.bincount(group, np.abs(x - y), minlength=n_groups) / n
        mx = np.bincount(group, x, minlength=n_groups) / n
        my = np.bincount(group, y, minlength=n_groups) / n
        dx, dy = x - mx[group], y - my[group]
        sxy = np.bincount(group, dx * dy, minlength=n_groups)
        sxx = np.bincount(group, dx * dx, minlength=n_groups)
        syy = np.bincount(group, dy * dy, minlength=n_groups)
        r = sxy / np.sqrt(sxx * syy)
    r[(sxx <= 0) | (syy <= 0) | (n < 2)] = np.nan
    return n, mae, r


@dataclass
class HoldoutResult:
    """Outcome of :func:`holdout_check`.

    Attributes
    ----------
    n_points : number of held-out voxels in all.
    mean_error : mean of (measured - imputed), the paper's "mean error" (paper: < 0.01).
    mae : mean absolute error between measured and imputed.
    pearson_r, p_value : Pearson r between measured and imputed over all points (paper: 0.52).
    per_experiment : DataFrame, one row per experiment: ``n``, ``mae``, ``pearson_r`` and, with a
        truth, ``mae_truth``, ``r_truth`` (imputed vs truth), ``r_measured_truth``.
    mae_truth, r_truth : imputed vs noiseless truth over all points (NaN without truth).
    mae_measured_truth, r_measured_truth : measured vs truth, i.e. the noise level the imputation
        is up against (NaN without truth).
    points : int ``(n_points, 4)`` (experiment, AP, DV, ML) of the held-out voxels.
    measured, imputed, truth : float64 ``(n_points,)`` values at those points (truth NaN if absent).
    """

    n_points: int
    mean_error: float
    mae: float
    pearson_r: float
    p_value: float
    per_experiment: pd.DataFrame = field(repr=False)
    mae_truth: float = float("nan")
    r_truth: float = float("nan")
    mae_measured_truth: float = float("nan")
    r_measured_truth: float = float("nan")
    points: np.ndarray = field(default=None, repr=False)
    measured: np.ndarray = field(default=None, repr=False)
    imputed: np.ndarray = field(default=None, repr=False)
    truth: np.ndarray = field(default=None, repr=False)

    def summary(self) -> dict:
        """The scalar results as a plain dict (JSON friendly)."""
        per = self.per_experiment
        out = {
            "n_points": self.n_points,
            "n_experiments": int(len(per)),
            "mean_error": self.mean_error,
            "mae": self.mae,
            "pearson_r": self.pearson_r,
            "p_value": self.p_value,
            "per_experiment_r_mean": float(np.nanmean(per["pearson_r"]))
            if len(per)
            else float("nan"),
            "per_experiment_r_sd": float(np.nanstd(per["pearson_r"])) if len(per) else float("nan"),
        }
        if np.isfinite(self.r_truth):
            out |= {
                "mae_truth": self.mae_truth,
                "r_truth": self.r_truth,
                "mae_measured_truth": self.mae_measured_truth,
                "r_measured_truth": self.r_measured_truth,
            }
        return {k: float(v) if isinstance(v, np.floating) else v for k, v in out.items()}


def sample_holdout(
    volumes: np.ndarray,
    support: np.ndarray,
    n_holdout: int,
    seed: int | np.random.Generator | None = 0,
    min_left: int = 6,
    nonzero_only: bool = False,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Pick up to ``n_holdout`` distinct observed in-support voxels per experiment.

    Each experiment keeps at least ``min_left`` observed voxels; fewer points are drawn where it
    has too few. ``nonzero_only`` mimics the reference notebook, which skipped zero voxels.
    ``exclude`` (bool, shaped like ``volumes``) marks voxels never held out (e.g. mirrored values).

    Returns
    -------
    int ``(n_points, 4)``: (experiment, AP, DV, ML), grouped by experiment.
    """
    rng = np.random.default_rng(seed)
    coords = np.argwhere(support)
    rows = []
    for e in range(volumes.shape[0]):
        values = volumes[e][support]
        ok = ~np.isnan(values)
        if nonzero_only:
            ok &= values != 0
        if exclude is not None:
            ok &= ~exclude[e][support]
        candidates = np.flatnonzero(ok)
        n = min(n_holdout, max(0, int((~np.isnan(values)).sum()) - min_left), candidates.size)
        if n <= 0:
            continue
        pick = np.sort(rng.choice(candidates, size=n, replace=False))
        rows.append(np.column_stack([np.full(n, e), coords[pick]]))
    if not rows:
        return np.zeros((0, 4), dtype=np.intp)
    return np.concatenate(rows).astype(np.intp)


def holdout_check(
    volumes,
    support: np.ndarray,
    n_holdout: int = 1000,
    seed: int | np.random.Generator | None = 0,
    truth: np.ndarray | None = None,
    truth_mask: np.ndarray | None = None,
    n_neighbors: int = 6,
    spacing_um: Sequence[float] | None = None,
    nonzero_only: bool = False,
    chunk: int = 32,
    n_jobs: int = 1,
    progress: bool = False,
    exclude: np.ndarray | None = None,
) -> HoldoutResult:
    """Hide random observed voxels, impute them by kNN, and compare with what was hidden.

    Parameters
    ----------
    volumes : float ``(n_experiments, AP, DV, ML)``, NaN = missing (or a SpatialExpression).
    support : bool ``(AP, DV, ML)`` imputation support (see :func:`default_support`).
    n_holdout : voxels hidden per experiment (paper: 1,000); fewer where an experiment has fewer
        than ``n_holdout + n_neighbors`` observed voxels (a warning says how many).
    seed : seed or Generator for the choice of voxels.
    truth : optional noiseless truth, either volumes like ``volumes`` or a matrix
        ``(n_experiments, truth_mask.sum())`` (e.g. ``Phantom.clean`` with the brain mask).
    truth_mask : bool ``(AP, DV, ML)`` giving the column order of a 2-D ``truth``.
    n_neighbors, spacing_um, chunk, n_jobs, progress : as in :func:`impute_knn`.
    nonzero_only : hold out only non-zero voxels, as the reference notebook did.
    exclude : optional bool like ``volumes``: voxels never held out (mirrored values are not
        measurements; :mod:`osnmf.preprocess.hemispheres` checks them separately).

    Returns
    -------
    :class:`HoldoutResult`.
    """
    from osnmf.expression import SpatialExpression

    if isinstance(volumes, SpatialExpression):
        if spacing_um is None:
            spacing_um = volumes.atlas.spacing_um
        volumes = volumes.volumes
    spacing = check_spacing((200.0, 200.0, 200.0) if spacing_um is None else spacing_um)
    volumes, support = check_volumes(volumes, support)
    n_holdout, n_neighbors = POSITIVE.check("n_holdout", n_holdout), POSITIVE.check("n_neighbors", n_neighbors)
    n_exp = volumes.shape[0]
    truth_lookup = _truth_lookup(truth, truth_mask, volumes.shape)

    points = sample_holdout(volumes, support, int(n_holdout), seed, int(n_neighbors), nonzero_only, exclude)
    counts = np.bincount(points[:, 0], minlength=n_exp)
    short = int((counts < n_holdout).sum())
    if short:
        warnings.warn(
            f"hold-out: {short} of {n_exp} experiments have fewer than "
            f"{n_holdout + n_neighbors} usable "
            "observed voxels in the support; fewer voxels were held out there",
            stacklevel=2,
        )
    starts = np.r_[0, np.cumsum(counts)]
    imputed = np.full(points.shape[0], np.nan)
    shells = neighbour_shells(spacing, 10.0 * min(spacing))
    local = threading.local()

    def work(sl: slice) -> None:
        a, b = starts[sl.start], starts[sl.stop]
        if a == b:
            return
        p = points[a:b]
        if not hasattr(local, "workspace"):
            local.workspace = {}
        imputed[a:b] = knn_fill(
            volumes[sl],
            support,
            (p[:, 0] - sl.start, p[:, 1], p[:, 2], p[:, 3]),
            int(n_neighbors),
            spacing,
            shells=shells,
            workspace=local.workspace,
        )

    run_chunks(work, list(chunk_slices(n_exp, int(chunk))), n_jobs, progress, "hold-out check")
    idx = tuple(points.T)
    measured = volumes[idx].astype(np.float64)
    t = truth_lookup(points) if truth_lookup is not None else np.full(points.shape[0], np.nan)
    ok = ~np.isnan(imputed)
    n, mae, r = _grouped_stats(points[ok, 0], n_exp, measured[ok], imputed[ok])
    per = pd.DataFrame({"n": n.astype(int), "mae": mae, "pearson_r": r})
    if ok.sum() >= 2:
        from scipy import stats

        pr = stats.pearsonr(measured[ok], imputed[ok])
        r_all, p_all = float(pr.statistic), float(pr.pvalue)
    else:
        r_all = p_all = float("nan")
    result = HoldoutResult(
        n_points=int(ok.sum()),
        mean_error=float(np.mean(measured[ok] - imputed[ok])) if ok.any() else float("nan"),
        mae=float(np.mean(np.abs(measured[ok] - imputed[ok]))) if ok.any() else float("nan"),
        pearson_r=r_all,
        p_value=p_all,
        per_experiment=per,
        points=points,
        measured=measured,
        imputed=imputed,
        truth=t,
    )
    if truth_lookup is not None:
        _, mae_t, r_t = _grouped_stats(points[ok, 0], n_exp, t[ok], imputed[ok])
        _, _, r_mt = _grouped_stats(points[ok, 0], n_exp, t[ok], measured[ok])
        per["mae_truth"], per["r_truth"], per["r_measured_truth"] = mae_t, r_t, r_mt
        result.mae_truth = float(np.mean(np.abs(t[ok] - imputed[ok])))
        result.r_truth = _pearson(t[ok], imputed[ok])
        result.mae_measured_truth = float(np.mean(np.abs(t[ok] - measured[ok])))
        result.r_measured_truth = _pearson(t[ok], measured[ok])
    return result


def _truth_lookup(truth, truth_mask, shape):
    """A function points -> truth values, for 4-D volumes or a 2-D matrix over ``truth_mask``."""
    if truth is None:
        return None
    truth = np.asarray(truth)
    if truth.ndim == 4:
        if truth.shape != tuple(shape):
            raise InputError(f"truth volumes are {truth.shape} but the data are {tuple(shape)}")
        return lambda p: truth[tuple(p.T)].astype(np.float64)
    if truth.ndim != 2:
        raise InputError(
            "truth must be volumes (n, AP, DV, ML) or a matrix (n, voxels), "
            f"got shape {truth.shape}"
        )
    if truth_mask is None:
        raise InputError(
            "a 2-D truth matrix needs truth_mask (the 3-D mask that orders its columns)"
        )
    truth_mask = np.asarray(truth_mask, dtype=bool)
    if truth_mask.shape != tuple(shape[1:]) or truth.shape != (shape[0], int(truth_mask.sum())):
        raise InputError(
            f"truth matrix {truth.shape} does not match {shape[0]} experiments × "
            f"{int(truth_mask.sum())} mask voxels"
        )
    column = to_volumes(np.arange(truth.shape[1])[None], truth_mask, fill=-1)[0]

    def lookup(p: np.ndarray) -> np.ndarray:
        col = column[p[:, 1], p[:, 2], p[:, 3]]
        out = np.full(p.shape[0], np.nan)
        inside = col >= 0
        out[inside] = truth[p[inside, 0], col[inside]]
        return out

    return lookup
