"""``osnmf project``: coefficients of new experiments on the patterns of a finished run.

Typical use: learn the patterns on the coronal set, project the sagittal genome. The new data are
prepared as in the run (hemisphere mirroring, kNN imputation on the run's support voxels, same
settings from its ``summary.json``), then every experiment's coefficients are the non-negative
least-squares fit onto the run's patterns (:func:`osnmf.factorize.nmf.projection.nnls_project`).

Written to ``OUT`` (formats as in a run, see docs/outputs.md): ``coefficients.csv``,
``projection.csv`` (assigned pattern, its importance, reconstruction r, hemisphere, mirrored
voxels), ``importance.csv``, ``results.h5ad``, ``summary.json`` and a short ``report.html``.
Every input problem is one :class:`~osnmf.errors.InputError` line before anything is written,
among them patterns no run writes (NaN, negative, or zero on the whole support).

``OUT`` is a folder of its own (:mod:`osnmf.run.folder`, kind ``projection``): new, empty, or the
``OUT`` of an earlier projection; the run folder itself, any other osnmf run, or someone's
non-empty folder is refused in one line. It is locked, journalled and committed like a run's
folder, and the run being read must not be in use by a run (its lock) nor left incomplete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from osnmf.accept import read_run_patterns
from osnmf.atomic import atomic_path, write_text
from osnmf.errors import ConfigError, InputError
from osnmf.run.folder import RunFolder, check_out
from osnmf.run.layout import REPORT, SUMMARY, RunPatterns, read_parameters
from osnmf.run.lock import RunLock
from osnmf.run.log import RunLog

__all__ = ["project_run"]

_SETTINGS = ("hemispheres", "impute", "n_neighbors", "random_state")  # of the run, prepared alike


def _check_grid(expr, run: RunPatterns, data: str) -> None:
    shape, spacing = tuple(run.patterns.shape[1:]), run.spacing_um
    if tuple(expr.atlas.shape) != shape:
        raise InputError(f"{data}: grid is {tuple(expr.atlas.shape)} (AP, DV, ML) but the run's patterns are {shape}; "
                         "project data on the run's grid")
    if not np.allclose(expr.atlas.spacing_um, spacing, rtol=1e-4):
        raise InputError(f"{data}: voxel spacing {tuple(expr.atlas.spacing_um)} µm differs from the run's "
                         f"{spacing} µm; project data of the same resolution")


def _check_patterns(run: RunPatterns) -> None:
    """Refuse patterns no NMF run writes: NaN or infinite values, negative values, or a pattern that
    is zero on every support voxel (its coefficient would be arbitrary)."""
    P = run.patterns
    for i, name in enumerate(run.pattern_names):
        pattern, where = P[i], f"{run.path}: pattern {name}"
        bad = int((~np.isfinite(pattern)).sum())
        if bad:
            raise InputError(f"{where} has {bad} NaN or infinite values; the run's patterns are damaged, rerun "
                             "'osnmf run'")
        if pattern.min() < 0:
            raise InputError(f"{where} has negative values (min {float(pattern.min()):.4g}); NMF patterns are "
                             "non-negative, project onto the patterns of an 'osnmf run'")
        if not pattern[run.support].any():
            raise InputError(f"{where} is zero on every support voxel; nothing can be projected onto it, rerun "
                             "'osnmf run'")


LOW_R_DROP = 0.2  # a projection this far below the run's own reconstruction r is flagged


def projection_warnings(run_summary: dict, data, r_mean: float | None) -> list[str]:
    """One-line warnings about what a projection means: real experiments put onto a synthetic
    demo's patterns (the run's ``parameters.data`` is None: the synthetic atlas), and a mean
    reconstruction r more than :data:`LOW_R_DROP` below the run's own (its patterns explain the new
    experiments poorly). ``run_summary`` is the run's summary.json."""
    out = []
    source = (run_summary.get("data") or {}).get("source", "")
    synthetic = (run_summary.get("parameters") or {}).get("data", "") is None or "synthetic" in str(source)
    if synthetic and data is not None:
        out.append(f"the run's patterns were found on the synthetic atlas, not on real data: projecting {data} "
                   "onto them says nothing about anatomy; project onto a run of 'osnmf run --data ...' instead")
    own = run_summary.get("reconstruction_stanmf_mean")
    if r_mean is not None and isinstance(own, int | float) and np.isfinite(own) and r_mean < own - LOW_R_DROP:
        out.append(f"mean reconstruction r {r_mean:.2f} is far below the run's own {own:.2f}: its patterns explain "
                   "these experiments poorly (another plane, age or gene set?); read the coefficients with care")
    return out


def project_run(run_dir: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike,
                hemispheres: str | None = None, n_jobs: int = 2, progress: bool = False,
                log: RunLog | None = None, coords: str | os.PathLike | None = None,
                cell_type_key: str | None = None, cell_values: str = "auto") -> dict:
    """Project the experiments of ``data`` onto the patterns of ``run_dir``; write ``out``.

    Parameters
    ----------
    run_dir : the ``--out`` folder of a finished ``osnmf run``.
    data : any input ``osnmf run`` reads (ABA grid folder, Allen zip, .npz, .h5ad) on the same grid;
        a cells × genes ``.h5ad`` (obs x, y, z or ``coords``) goes to
        :func:`osnmf.project_cells.project_cells` (cell types × patterns, two views).
    out : folder for the results (created).
    hemispheres : ``auto``/``off``/``drop``; default: the run's setting.
    n_jobs : imputation threads (as ``osnmf run --n-jobs``).
    progress : stage lines and progress bars (ignored when ``log`` is given).
    log : where the stage lines go, as in a run (:class:`osnmf.run.log.RunLog`).
    coords, cell_type_key, cell_values : of a cells ``.h5ad`` (see :mod:`osnmf.io.cells`).

    Returns
    -------
    The summary written to ``out/summary.json``.
    """
    from osnmf.io.cells import has_cell_coordinates

    is_cells = Path(data).suffix.lower() == ".h5ad" and (coords is not None or has_cell_coordinates(data))
    if not is_cells and (coords is not None or cell_type_key is not None):
        raise InputError(f"{data}: --coords and --cell-type-key go with a cells × genes .h5ad (obs x, y, z)")
    log = log or RunLog(quiet=not progress)
    out = Path(out)
    _check_out(Path(run_dir), out)
    with RunFolder(out, kind="projection") as folder:  # an existing OUT is locked from the start, as a run's
        if is_cells:
            from osnmf.project_cells import project_cells

            summary = project_cells(run_dir, data, out, coords=coords, cell_type_key=cell_type_key,
                                    cell_values=cell_values, log=log, open_out=folder.open)
        else:
            summary = _project(run_dir, data, folder, hemispheres, n_jobs, log)
        folder.complete = True
    if not is_cells:  # project_cells says it itself
        log.info(f"done in {log.elapsed():.1f} s")
    return summary


def _project(run_dir: str | os.PathLike, data: str | os.PathLike, folder: RunFolder, hemispheres: str | None,
             n_jobs: int, log: RunLog) -> dict:
    """The body of :func:`project_run`: read, prepare, project, then write into ``folder``."""
    from osnmf.evaluate.metrics import reconstruction_accuracy
    from osnmf.factorize.nmf.projection import nnls_project
    from osnmf.io.load import load_expression
    from osnmf.preprocess.hemispheres import check_planes, drop_one_sided, hemisphere_summary
    from osnmf.preprocess.prepare import measured_matrix, prepare_experiments

    out = folder.out
    with log.timed("load") as line:
        RunLock(run_dir).check_free()  # a run writing its results there: refused, never read half-written
        run = read_run_patterns(run_dir)
        _check_patterns(run)
        params = read_parameters(run_dir)
        missing = [k for k in _SETTINGS if k not in params]
        if missing:
            raise InputError(f"{run_dir}: summary.json lacks the run's setting(s) {', '.join(missing)}; "
                             "rerun 'osnmf run'")
        mode = hemispheres or params["hemispheres"]
        expr = load_expression(data, progress=log.progress)
        _check_grid(expr, run, str(data))
        check_planes(expr, mode)
        dropped = 0
        if mode == "drop":
            before = len(expr)
            expr, message = drop_one_sided(expr)
            dropped = before - len(expr)
            if message:
                log.warn(message)
        line["note"] = f"{len(expr)} experiments from {data}; {len(run.pattern_names)} patterns of {run_dir}"
    support = run.support
    with log.timed("impute") as line:
        prep = prepare_experiments(expr, hemispheres=mode, impute=params["impute"],
                                   n_neighbors=int(params["n_neighbors"]), random_state=int(params["random_state"]),
                                   n_jobs=n_jobs, support=support, progress=log.progress)
        X, kept, hemi = prep.matrix.X, prep.matrix.kept, prep.hemi
        line["note"] = f"{len(expr)} experiments × {int(support.sum())} support voxels ({params['impute']})"
    with log.timed("project") as line:
        measured = measured_matrix(expr.volumes, kept, support)
        D = run.patterns[:, support].astype(np.float64)
        A = nnls_project(X, D)
        recon = reconstruction_accuracy(measured, A, D, constant_value=np.nan)
        line["note"] = f"{len(kept)} experiments onto {D.shape[0]} patterns (non-negative least squares)"
    total = A.sum(axis=1, keepdims=True)
    importance = np.divide(A, total, out=np.zeros_like(A), where=total > 0)
    names = run.pattern_names
    labels = np.asarray(["bilateral", "left", "right", "none"])[hemi["hemi_label"]]
    table = pd.DataFrame({
        "experiment_id": expr.experiment_ids[kept], "gene_symbol": expr.genes[kept],
        "plane": expr.planes[kept] if expr.planes is not None else "",
        "hemisphere": labels[kept], "mirrored_voxels": hemi["hemi_mirrored_voxels"][kept],
        "assigned_pattern": [names[i] for i in importance.argmax(axis=1)],
        "importance": importance.max(axis=1), "reconstruction_r": recon,
    })
    table.loc[total[:, 0] == 0, "assigned_pattern"] = ""

    summary = {
        "run": str(run_dir), "data": str(data), "n_experiments": int(len(expr)), "n_projected": int(len(kept)),
        "n_without_data_in_support": int(len(expr) - len(kept)), "n_dropped_one_hemisphere": int(dropped),
        "n_patterns": len(names), "n_support_voxels": int(support.sum()),
        "reconstruction_r_mean": float(np.nanmean(recon)) if np.isfinite(recon).any() else None,
        "reconstruction_r_median": float(np.nanmedian(recon)) if np.isfinite(recon).any() else None,
        "assigned_counts": {n: int((table["assigned_pattern"] == n).sum()) for n in names},
        "hemispheres": hemisphere_summary(hemi, mode),
        "settings": {"hemispheres": mode, "impute": params["impute"], "n_neighbors": int(params["n_neighbors"])},
    }
    try:
        run_summary = json.loads((Path(run_dir) / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        run_summary = {}
    summary["warnings"] = projection_warnings(run_summary if isinstance(run_summary, dict) else {}, data,
                                              summary["reconstruction_r_mean"])
    for text in summary["warnings"]:
        log.warn(text)
    out = folder.out
    with log.timed("outputs") as line:
        folder.open()
        _write_tables(out, A, importance, table, names)
        _write_h5ad(out / "results.h5ad", X, support, D, A, table, names, expr.atlas.spacing_um)
        write_text(out / SUMMARY, json.dumps(summary, indent=2))
        _write_report(out / REPORT, summary, table)
        line["note"] = f"result files in {out}"
    return summary


def _check_out(run_dir: Path, out: Path) -> None:
    """``out`` may be new, empty or an earlier projection's folder, never the run folder itself."""
    if out.resolve() == run_dir.resolve():
        raise ConfigError(f"--out {out} is the run folder being projected onto: choose a new folder for the "
                          "projection")
    check_out(out, kind="projection")


def _write_tables(out: Path, A: np.ndarray, importance: np.ndarray, table: pd.DataFrame, names: list[str]) -> None:
    """coefficients.csv, projection.csv and importance.csv."""
    frames = {"coefficients.csv": pd.DataFrame(A, columns=names),
              "importance.csv": pd.DataFrame(importance, columns=names)}
    for frame in frames.values():
        frame.insert(0, "gene_symbol", table["gene_symbol"].to_numpy())
        frame.insert(0, "experiment_id", table["experiment_id"].to_numpy())
    frames["projection.csv"] = table
    for name, frame in frames.items():
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False)


def _write_h5ad(path: Path, X, support, D, A, table: pd.DataFrame, names: list[str], spacing) -> None:
    """As a run's results.h5ad: voxels × experiments, patterns in obsm, coefficients in varm."""
    import anndata

    coords = np.argwhere(support)
    var = table.set_index("experiment_id")
    var.index = var.index.astype(str)
    adata = anndata.AnnData(X=np.ascontiguousarray(X.T, dtype=np.float32),
                            obs=pd.DataFrame(index=[f"v{i}" for i in range(coords.shape[0])]), var=var)
    adata.obsm["spatial"] = coords.astype(np.int64)
    adata.obsm["patterns"] = np.ascontiguousarray(D.T)
    adata.varm["coefficients"] = A
    adata.uns["pattern_names"] = np.array(names)
    adata.uns["spacing_um"] = np.array(spacing)
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression="gzip")


def _write_report(path: Path, summary: dict, table: pd.DataFrame) -> None:
    from osnmf.report.html import Section, write_report

    h = summary["hemispheres"]
    r = summary["reconstruction_r_mean"]
    paragraphs = [
        f"{summary['n_projected']} of {summary['n_experiments']} experiments of {summary['data']} were projected "
        f"onto the {summary['n_patterns']} patterns of the run {summary['run']} (non-negative least squares on "
        f"{summary['n_support_voxels']} support voxels, after kNN imputation).",
        f"Reconstruction r per experiment (measured voxels only): mean {r:.3f}, median "
        f"{summary['reconstruction_r_median']:.3f}." if r is not None else "No reconstruction r could be computed.",
        *[f"Warning: {text}." for text in summary["warnings"]],
        f"Hemispheres: {h['bilateral']} bilateral, {h['left_only']} left-only, {h['right_only']} right-only "
        f"experiments; {h['mirrored_voxels']} voxels of {h['mirrored_experiments']} experiments were filled from "
        f"the mirror voxel before imputation (--hemispheres {h['mode']}).",
    ]
    counts = pd.DataFrame({"pattern": list(summary["assigned_counts"]),
                           "experiments assigned": list(summary["assigned_counts"].values())})
    section = Section("Projection onto the run's patterns", paragraphs=paragraphs,
                      tables=[(counts, "Experiments per assigned pattern (largest importance)"),
                              (table, "Per experiment (projection.csv; first 60 rows)")])
    write_report(path, "osnmf projection", [section], summary["settings"])
