"""Left/right hemispheres: midline, per-experiment coverage, mirroring, pattern symmetry.

On the Allen grid the last axis runs left → right (``ML``). The midline is found from the
annotation: the mirror map ``z ↦ c − z`` with the integer ``c`` that best maps structure labels
onto themselves (the real 200 µm grid, 58 voxels wide: ``c = 57``, the midline lies between
voxels 28 and 29). A voxel is *left* when ``z < c / 2``, *right* when ``z > c / 2``.

Sagittal ISH experiments image one hemisphere only. :func:`hemisphere_coverage` finds them from
the data (share of the brain voxels of each side that were measured);
:func:`mirror_fill` fills a one-hemisphere experiment's missing voxels from the mirror voxel
across the midline where that one was measured (before kNN imputation fills the rest).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from osnmf.errors import InputError
from osnmf.preprocess.common import chunk_slices

__all__ = [
    "HEMISPHERE_MODES",
    "LABELS",
    "find_midline",
    "hemisphere_counts",
    "hemisphere_coverage",
    "mirror_check",
    "mirror_fill",
    "mirror_volumes",
    "symmetry_r",
]

HEMISPHERE_MODES = ("auto", "off", "drop")
LABELS = ("bilateral", "left", "right", "none")
#: an experiment is one-sided when its weaker side's coverage is below this share of its stronger side's
ONE_SIDED_RATIO = 1 / 3


def find_midline(annotation: np.ndarray, search: int = 8) -> int:
    """Integer ``c`` of the mirror map ``z ↦ c − z`` (last axis) that best preserves the labels.

    Parameters
    ----------
    annotation : int ``(AP, DV, ML)`` structure ids, 0 outside the brain.
    search : ``c`` is searched within ``ML − 1 ± search``.

    Returns
    -------
    int ``c``; the midline is at ``ML = c / 2`` (voxel units).
    """
    annotation = np.asarray(annotation)
    ml = annotation.shape[-1]
    brain = annotation > 0
    best, best_score = ml - 1, -1.0
    for c in range(max(1, ml - 1 - search), min(2 * ml - 2, ml - 1 + search) + 1):
        src, ok = _mirror_index(ml, c)
        a, b = annotation[..., ok], annotation[..., src[ok]]
        either = brain[..., ok] | brain[..., src[ok]]
        if not either.any():
            continue
        score = float((a == b)[either].mean())
        if score > best_score:
            best, best_score = c, score
    return best


def _mirror_index(ml: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Source index ``c − z`` for every ``z`` in ``0..ml-1`` and whether it lies on the grid."""
    src = c - np.arange(ml)
    ok = (src >= 0) & (src < ml)
    return np.where(ok, src, 0), ok


def mirror_volumes(volumes: np.ndarray, c: int) -> np.ndarray:
    """Mirror image across the midline: ``out[..., z] = volumes[..., c − z]`` (NaN off the grid)."""
    volumes = np.asarray(volumes)
    src, ok = _mirror_index(volumes.shape[-1], c)
    out = volumes[..., src].astype(np.result_type(volumes.dtype, np.float32), copy=True)
    out[..., ~ok] = np.nan
    return out


def _sides(ml: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    z2 = 2 * np.arange(ml)
    return z2 < c, z2 > c


def hemisphere_coverage(volumes: np.ndarray, brain: np.ndarray, c: int, planes=None,
                        chunk: int = 256) -> pd.DataFrame:
    """Measured share of each hemisphere's brain voxels, per experiment, and its label.

    Parameters
    ----------
    volumes : float ``(n, AP, DV, ML)``, NaN = missing.
    brain : bool ``(AP, DV, ML)``.
    c : midline (see :func:`find_midline`).
    planes : optional ``(n,)`` plane of section per experiment (reported beside the data).
    chunk : experiments handled at once.

    Returns
    -------
    DataFrame, one row per experiment: ``left_coverage``, ``right_coverage`` (0..1), ``hemisphere``
    (``bilateral``, ``left``, ``right`` — the one side imaged —, or ``none`` without data) and
    ``plane`` (empty when unknown). One-sided: the weaker side's coverage is below a third of the
    stronger side's.
    """
    left, right = _sides(brain.shape[-1], c)
    bl, br = brain & left, brain & right
    n_left, n_right = max(int(bl.sum()), 1), max(int(br.sum()), 1)
    n = volumes.shape[0]
    cov = np.zeros((n, 2))
    for rows in chunk_slices(n, chunk):
        measured = ~np.isnan(volumes[rows])
        cov[rows, 0] = (measured & bl).sum(axis=(1, 2, 3)) / n_left
        cov[rows, 1] = (measured & br).sum(axis=(1, 2, 3)) / n_right
    strong, weak = cov.max(axis=1), cov.min(axis=1)
    label = np.where(weak >= ONE_SIDED_RATIO * strong, "bilateral",
                     np.where(cov[:, 0] >= cov[:, 1], "left", "right"))
    label[strong == 0] = "none"
    plane = np.full(n, "", dtype=object) if planes is None else np.asarray(planes, dtype=object)
    return pd.DataFrame({"left_coverage": cov[:, 0], "right_coverage": cov[:, 1], "hemisphere": label,
                         "plane": plane})


def hemisphere_counts(coverage: pd.DataFrame) -> dict:
    """``{"bilateral": n, "left_only": n, "right_only": n, "no_data": n}`` from :func:`hemisphere_coverage`."""
    h = coverage["hemisphere"]
    return {"bilateral": int((h == "bilateral").sum()), "left_only": int((h == "left").sum()),
            "right_only": int((h == "right").sum()), "no_data": int((h == "none").sum())}


def one_sided(coverage: pd.DataFrame) -> np.ndarray:
    """bool ``(n,)``: experiments that imaged one hemisphere only."""
    return coverage["hemisphere"].isin(["left", "right"]).to_numpy()


def mirror_fill(volumes: np.ndarray, which: np.ndarray, brain: np.ndarray, c: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Fill missing brain voxels of the experiments ``which`` from their mirror voxels.

    Parameters
    ----------
    volumes : float ``(n, AP, DV, ML)``, NaN = missing (not modified).
    which : bool ``(n,)``, the one-hemisphere experiments.
    brain : bool ``(AP, DV, ML)``; only voxels inside it are filled.
    c : midline (see :func:`find_midline`).

    Returns
    -------
    ``(filled, mirrored)``: the volumes (the input itself when nothing is filled, else a copy) and
    a bool ``(n, AP, DV, ML)`` mask of the voxels that got a mirrored value.
    """
    which = np.asarray(which, dtype=bool)
    mirrored = np.zeros(volumes.shape, dtype=bool)
    if which.shape != (volumes.shape[0],):
        raise InputError(f"which must be one flag per experiment ({volumes.shape[0]}), got {which.shape}")
    if not which.any():
        return volumes, mirrored
    filled = np.array(volumes, dtype=np.float32, copy=True)
    for e in np.flatnonzero(which):
        mirror = mirror_volumes(volumes[e], c)
        take = np.isnan(volumes[e]) & brain & ~np.isnan(mirror)
        filled[e][take] = mirror[take]
        mirrored[e] = take
    return filled, mirrored


def mirror_check(volumes: np.ndarray, bilateral: np.ndarray, brain: np.ndarray, c: int,
                 n_points: int = 1000, seed: int = 0) -> dict:
    """How well a mirror voxel predicts a measured one, on experiments measured on both sides.

    Up to ``n_points`` measured brain voxels per bilateral experiment whose mirror voxel is also
    measured are drawn; the mirror value is compared with the measured value.

    Returns
    -------
    dict ``n_points``, ``mae``, ``pearson_r`` (NaN without bilateral experiments).
    """
    rng = np.random.default_rng(seed)
    measured, predicted = [], []
    for e in np.flatnonzero(np.asarray(bilateral, dtype=bool)):
        mirror = mirror_volumes(volumes[e], c)
        ok = np.flatnonzero((brain & ~np.isnan(volumes[e]) & ~np.isnan(mirror)).ravel())
        if ok.size == 0:
            continue
        pick = rng.choice(ok, size=min(n_points, ok.size), replace=False)
        measured.append(volumes[e].ravel()[pick])
        predicted.append(mirror.ravel()[pick])
    if not measured:
        return {"n_points": 0, "mae": float("nan"), "pearson_r": float("nan")}
    x, y = np.concatenate(measured).astype(float), np.concatenate(predicted).astype(float)
    r = float(np.corrcoef(x, y)[0, 1]) if x.size > 1 and np.ptp(x) > 0 and np.ptp(y) > 0 else float("nan")
    return {"n_points": int(x.size), "mae": float(np.abs(x - y).mean()), "pearson_r": r}


def symmetry_r(volumes: np.ndarray, mask: np.ndarray, c: int) -> np.ndarray:
    """Left–right symmetry of each volume: Pearson r of it and its mirror image.

    Parameters
    ----------
    volumes : ``(K, AP, DV, ML)`` (e.g. patterns).
    mask : bool ``(AP, DV, ML)``; voxels count when they and their mirror voxel are both inside.
    c : midline (see :func:`find_midline`).

    Returns
    -------
    float ``(K,)`` correlations (NaN for a constant volume).
    """
    volumes = np.asarray(volumes, dtype=np.float64)
    both = mask & (mirror_volumes(mask.astype(np.float32), c) == 1)
    out = np.full(volumes.shape[0], np.nan)
    for k, vol in enumerate(volumes):
        a, b = vol[both], mirror_volumes(vol, c)[both]
        if a.size > 1 and np.ptp(a) > 0:
            out[k] = np.corrcoef(a, b)[0, 1]
    return out


# --------------------------------------------------------------------------- pipeline helpers


def check_planes(expr, mode: str) -> None:
    """Refuse a dataset mixing coronal and sagittal experiments when ``mode`` is ``"off"``."""
    from osnmf.constraints import Options
    from osnmf.errors import ConfigError

    Options(HEMISPHERE_MODES).check("hemispheres", mode)
    planes = getattr(expr, "planes", None)
    if mode != "off" or planes is None:
        return
    n_cor, n_sag = int((planes == "coronal").sum()), int((planes == "sagittal").sum())
    if n_cor and n_sag:
        raise ConfigError(
            f"the data mix {n_cor} coronal and {n_sag} sagittal experiments; with --hemispheres off the "
            "one-hemisphere sagittal ones would be imputed from the midline outwards: use --hemispheres auto "
            "(mirror them) or drop (leave them out)")


def drop_one_sided(expr):
    """``(expr without one-hemisphere experiments, one-line message or "")``."""
    cov = hemisphere_coverage(expr.volumes, expr.atlas.brain_mask, find_midline(expr.atlas.annotation),
                              expr.planes)
    drop = one_sided(cov)
    if not drop.any():
        return expr, ""
    if drop.all():
        raise InputError(f"all {drop.size} experiments image one hemisphere only; --hemispheres drop would leave "
                         "nothing: use --hemispheres auto")
    first = int(np.flatnonzero(drop)[0])
    message = (f"--hemispheres drop: left out {int(drop.sum())} one-hemisphere experiment(s) (e.g. "
               f"{expr.genes[first]} {expr.experiment_ids[first]}); {int((~drop).sum())} remain")
    return expr.subset(~drop), message


def mirror_stage(expr, mode: str, seed: int = 0, n_check: int = 1000):
    """Coverage, mirroring (``mode == "auto"``) and the mirror check, for the impute stage.

    Returns
    -------
    ``(volumes, mirrored, arrays)``: volumes to impute (mirrored where filled), the bool mask of
    mirrored voxels (None when none) and the arrays stored in the stage result (``hemi_*``
    per experiment: label code into :data:`LABELS`, coverages, mirrored voxel counts; the midline;
    ``holdout_mirror`` = n_points, mae, pearson_r of :func:`mirror_check`).
    """
    brain = expr.atlas.brain_mask
    c = find_midline(expr.atlas.annotation)
    cov = hemisphere_coverage(expr.volumes, brain, c, expr.planes)
    volumes, mirrored = expr.volumes, None
    counts = np.zeros(len(cov), dtype=np.int64)
    sided = one_sided(cov)
    if mode == "auto" and sided.any():
        volumes, mirrored = mirror_fill(expr.volumes, sided, brain, c)
        counts = mirrored.sum(axis=(1, 2, 3))
    check = mirror_check(expr.volumes, (cov["hemisphere"] == "bilateral").to_numpy(), brain, c, n_check, seed)
    arrays = {
        "hemi_midline": int(c),
        "hemi_label": np.array([LABELS.index(h) for h in cov["hemisphere"]], dtype=np.int8),
        "hemi_left_coverage": cov["left_coverage"].to_numpy(np.float32),
        "hemi_right_coverage": cov["right_coverage"].to_numpy(np.float32),
        "hemi_mirrored_voxels": counts,
        "holdout_mirror": np.array([check["n_points"], check["mae"], check["pearson_r"]]),
    }
    return volumes, mirrored, arrays


def hemisphere_summary(result, mode: str) -> dict:
    """The ``hemispheres`` block of summary.json from an impute stage result (or the dict of :func:`mirror_stage`)."""
    if not isinstance(result, dict):
        result = vars(result)
    labels = np.asarray(LABELS)[result["hemi_label"]]
    cov = pd.DataFrame({"hemisphere": labels})
    hold = result["holdout_mirror"]
    c = int(result["hemi_midline"])
    mirrored = np.asarray(result["hemi_mirrored_voxels"])
    return {
        "mode": mode,
        "midline_ml_voxel": c / 2,
        **hemisphere_counts(cov),
        "mirrored_experiments": int((mirrored > 0).sum()),
        "mirrored_voxels": int(mirrored.sum()),
        "mirror_check": {"n_points": int(hold[0]), "mae": None if np.isnan(hold[1]) else float(hold[1]),
                         "pearson_r": None if np.isnan(hold[2]) else float(hold[2])},
    }


def coverage_report(expr) -> dict:
    """Hemisphere counts and planes of a dataset, for ``osnmf info``."""
    c = find_midline(expr.atlas.annotation)
    cov = hemisphere_coverage(expr.volumes, expr.atlas.brain_mask, c, expr.planes)
    out = {"midline_ml_voxel": c / 2, **{f"hemispheres_{k}": v for k, v in hemisphere_counts(cov).items()}}
    if expr.planes is not None:
        out["planes"] = {p or "unknown": int((expr.planes == p).sum()) for p in sorted(set(expr.planes.tolist()))}
    return out
