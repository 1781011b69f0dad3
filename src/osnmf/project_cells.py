"""``osnmf project RUN --data cells.h5ad``: cell types × the patterns of a finished ISH run, two views.

- **by location**: each cell takes the run's patterns at its voxel (``floor(mm / 0.2)``, see
  :mod:`osnmf.io.cells`); per cell type the mean of every pattern over its cells, divided by the
  mean over all cells: an enrichment (1 = as common as anywhere, 2 = twice) →
  ``cell_types_by_pattern.csv``;
- **by expression**: each cell's non-negative least-squares coefficients ``h ≥ 0`` minimising
  ``‖x' − W' h‖`` over the shared genes, with ``W`` the run's gene coefficients (mean over a gene's
  experiments); every gene is scaled to mean 1 in both modalities (``x'`` = the cell values over
  their mean over cells, ``W'`` = ``W`` over the gene's mean reconstructed ISH on the support) so
  the probe efficiency of either technique does not weigh genes; per cell type the mean ``h``
  divided by the mean over all cells → ``cell_programs.csv``; per cell ``h`` in ``cells.h5ad``.

The agreement of the views, per type: Pearson r of its two rows (over patterns) and whether the
top pattern (the largest enrichment above 1) is the same (``agreement.csv``). Cells are read in
chunks, twice (gene means, then coefficients); memory is one chunk and about 190 bytes per cell
(labels, voxel, type code and the (cells × K) location of the per-cell file; docs/cells.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from osnmf.accept import read_run_patterns
from osnmf.atomic import atomic_path, write_text
from osnmf.errors import InputError
from osnmf.run.layout import REPORT, SUMMARY
from osnmf.run.log import RunLog

__all__ = ["gene_coefficients", "project_cells"]

ALL_CELLS = "all cells"  # the one row when the file has no cell-type labels


def gene_coefficients(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The run's coefficients per gene symbol: ``(genes (G,), W (G, K))``, mean over a gene's experiments."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "coefficients" not in npz.files or "genes" not in npz.files:
                raise InputError(f"{path} lacks the run's gene coefficients; rerun 'osnmf run' to rewrite it")
            coef = np.asarray(npz["coefficients"], dtype=np.float64)
            genes = np.asarray(npz["genes"], dtype=str).ravel()
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if coef.ndim != 2 or coef.shape[0] != genes.size:
        raise InputError(f"{path}: coefficients {coef.shape} do not match {genes.size} genes")
    symbols, inverse = np.unique(genes, return_inverse=True)
    sums = np.zeros((symbols.size, coef.shape[1]))
    np.add.at(sums, inverse, coef)
    return symbols, sums / np.bincount(inverse, minlength=symbols.size)[:, None]


def _shared(cell_genes: np.ndarray, run_genes: np.ndarray, data: str, run_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the cells file and rows of the run's genes that are the same gene (first column of each)."""
    row = {g: i for i, g in enumerate(run_genes.tolist())}
    cols, rows, seen = [], [], set()
    for j, g in enumerate(cell_genes.tolist()):
        if g in row and g not in seen:
            seen.add(g)
            cols.append(j)
            rows.append(row[g])
    if not cols:
        raise InputError(f"{data}: none of its {cell_genes.size} genes (e.g. {', '.join(cell_genes[:3])}) is among "
                         f"the {run_genes.size} genes of the run {run_dir} (e.g. {', '.join(run_genes[:3])}); "
                         "project cells measured on genes the run has (gene symbols in var_names or "
                         "var['gene_symbol'])")
    return np.asarray(cols), np.asarray(rows)


def _type_means(codes: np.ndarray, values: np.ndarray, n_types: int) -> np.ndarray:
    """(n_types, K) sums of ``values`` (n, K) per type code."""
    return np.stack([np.bincount(codes, weights=values[:, k], minlength=n_types) for k in range(values.shape[1])],
                    axis=1)


def _enrichment(sums: np.ndarray, n_per_type: np.ndarray) -> np.ndarray:
    """Per type mean over its cells, divided by the mean over all cells (NaN where undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        means = sums / n_per_type[:, None]
        overall = sums.sum(axis=0) / n_per_type.sum()
        return means / np.where(overall > 0, overall, np.nan)


def project_cells(run_dir: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike,
                  coords: str | os.PathLike | None = None, cell_type_key: str | None = None,
                  cell_values: str = "auto", chunk_cells: int = 100_000, progress: bool = False,
                  log: RunLog | None = None, open_out: Callable[[], object] | None = None) -> dict:
    """Cell types of the cells ``.h5ad`` ``data`` × the patterns of ``run_dir``, by location and by expression.

    Writes to ``out``: ``cell_types_by_pattern.csv``, ``cell_programs.csv`` (rows cell types with
    their ``n_cells``, columns patterns), ``agreement.csv``, ``cells.h5ad`` (per kept cell: ``X`` its
    coefficients (cells × K), ``obs`` cell type and voxel, ``obsm["location"]`` the patterns at its
    voxel), ``summary.json`` (returned) and ``report.html``. Input problems are one
    :class:`InputError` line before anything is written. ``open_out``: makes ``out`` ready just
    before the first file is written (``project_run`` passes its :class:`~osnmf.run.folder.RunFolder`'s
    ``open``: locked, marked as a projection); default: the folder is created.
    """
    from osnmf.factorize.nmf.projection import nnls_rows
    from osnmf.io.cells import Grid, cell_labels, iter_cell_chunks, open_cells, write_cells_h5ad

    log = log or RunLog(quiet=not progress)
    data, run_dir = str(data), str(run_dir)
    with log.timed("load") as line:
        run = read_run_patterns(run_dir)
        run_genes, W_all = gene_coefficients(run.path)
        K = run.patterns.shape[0]
        cells = open_cells(data, Grid(tuple(run.patterns.shape[1:]), run.spacing_um), coords=coords,
                           cell_type_key=cell_type_key, values=cell_values)
        cols, rows = _shared(cells.genes, run_genes, data, run_dir)
        kept = np.flatnonzero(cells.kept)
        if cells.type_codes is None:
            names, codes = [ALL_CELLS], np.zeros(kept.size, dtype=np.int64)
        else:
            names, codes = cells.type_names, cells.type_codes[kept].astype(np.int64)
        labelled = codes >= 0
        line["note"] = (f"{kept.size} of {cells.n_cells} cells on the grid, {len(names)} cell types "
                        f"({cells.type_key or 'no labels'}), {cols.size} genes shared with the run's {run_genes.size}")
    n_types = len(names)
    n_per_type = np.bincount(codes[labelled], minlength=n_types).astype(np.float64)
    with log.timed("location") as line:
        D = run.patterns.reshape(K, -1)
        location = np.ascontiguousarray(D.T, dtype=np.float32)[cells.voxel[kept]]  # (kept, K)
        every_labelled = bool(labelled.all())
        loc_table = _enrichment(_type_means(codes if every_labelled else codes[labelled],
                                            location if every_labelled else location[labelled], n_types), n_per_type)
        line["note"] = f"{K} patterns at the voxels of {kept.size} cells"
    with log.timed("expression") as line:
        position = np.full(cells.n_cells, -1, dtype=np.int64)
        position[kept] = np.arange(kept.size)
        gene_sum = np.zeros(cols.size)
        in_order = np.array_equal(cols, np.arange(cells.genes.size))
        for start, block in iter_cell_chunks(cells, chunk_cells):
            here = cells.kept[start:start + block.shape[0]]
            rows_here = block if here.all() else block[here]
            gene_sum += (rows_here if in_order else rows_here[:, cols]).sum(axis=0, dtype=np.float64)
        cell_mean = gene_sum / max(kept.size, 1)
        W = W_all[rows]
        ish_mean = W @ D[:, run.support.ravel()].mean(axis=1)
        usable = (cell_mean > 0) & (ish_mean > 0)
        if not usable.any():
            raise InputError(f"{data}: the {cols.size} shared genes are zero in every cell or in the run's "
                             "coefficients; nothing to project")
        cols, Wn, scale = cols[usable], W[usable] / ish_mean[usable, None], cell_mean[usable].astype(np.float32)
        every = np.array_equal(cols, np.arange(cells.genes.size))  # all columns in order: no column copy
        G = Wn.T @ Wn
        prog_sums = np.zeros((n_types, K))
        line["note"] = f"{int(usable.sum())} genes (of {usable.size} shared) in both modalities"

    def coefficients():
        for start, block in iter_cell_chunks(cells, chunk_cells):
            here = cells.kept[start:start + block.shape[0]]
            x = block[here] if every else block[here][:, cols]
            x /= scale
            H = nnls_rows(G, x @ Wn)
            at = position[start:start + block.shape[0]][here]
            ok = labelled[at]
            prog_sums[:] += _type_means(codes[at][ok], H[ok], n_types)
            yield H.astype(np.float32)

    out = Path(out)
    grid = np.unravel_index(cells.voxel[kept], cells.shape)
    obs = pd.DataFrame({"cell_type": pd.Categorical.from_codes(np.where(labelled, codes, -1), names),
                        **{axis: g.astype(np.int32) for axis, g in zip(("ap", "dv", "ml"), grid, strict=True)}},
                       index=pd.Index(cell_labels(cells, kept), dtype=object))
    del grid
    var = pd.DataFrame(index=pd.Index(run.pattern_names, dtype=str))
    with log.timed("project") as line:
        if open_out is not None:
            open_out()
        else:
            out.mkdir(parents=True, exist_ok=True)
        write_cells_h5ad(out / "cells.h5ad", obs, var, coefficients(), kept.size, compression="gzip",
                         obsm={"location": location})
        prog_table = _enrichment(prog_sums, n_per_type)
        line["note"] = f"non-negative coefficients of {kept.size} cells on {K} patterns"
    present = n_per_type > 0
    summary = _write_outputs(out, names, n_per_type, present, loc_table, prog_table, run.pattern_names, {
        "run": run_dir, "data": data, "n_cells": int(cells.n_cells), "n_cells_projected": int(kept.size),
        "n_cells_without_coordinates": int(cells.n_no_coordinates), "n_cells_outside_grid": int(cells.n_outside),
        "n_cell_types": int(present.sum()), "cell_type_key": cells.type_key, "cell_values": cells.values,
        "n_shared_genes": int(usable.size), "n_genes_projected": int(usable.sum()),
        "n_run_genes": int(run_genes.size), "n_cell_genes": int(cells.genes.size), "n_patterns": int(K),
    }, log)
    log.info(f"done in {log.elapsed():.1f} s")
    return summary


def _top(row: np.ndarray, patterns) -> str:
    """The pattern of the largest enrichment; "" when no pattern is enriched (none above 1)."""
    finite = np.where(np.isfinite(row), row, -np.inf)
    return patterns[int(np.argmax(finite))] if finite.max() > 1 else ""


def _agreement(names, present, loc, prog, patterns) -> pd.DataFrame:
    rows = []
    for i in np.flatnonzero(present):
        a, b = loc[i], prog[i]
        ok = np.isfinite(a) & np.isfinite(b)
        r = float(np.corrcoef(a[ok], b[ok])[0, 1]) if ok.sum() > 1 and a[ok].std() > 0 and b[ok].std() > 0 else None
        top_a, top_b = _top(a, patterns), _top(b, patterns)
        rows.append({"cell_type": names[i], "location_top": top_a, "expression_top": top_b,
                     "same_top": top_a == top_b and top_a != "", "r": r})
    return pd.DataFrame(rows, columns=["cell_type", "location_top", "expression_top", "same_top", "r"])


def _table(names, n_per_type, present, values, patterns) -> pd.DataFrame:
    frame = pd.DataFrame(values[present], columns=patterns)
    frame.insert(0, "n_cells", n_per_type[present].astype(np.int64))
    frame.insert(0, "cell_type", [n for n, p in zip(names, present, strict=True) if p])
    return frame


def _write_outputs(out: Path, names, n_per_type, present, loc, prog, patterns, summary: dict, log) -> dict:
    with log.timed("outputs") as line:
        tables = {"cell_types_by_pattern.csv": _table(names, n_per_type, present, loc, patterns),
                  "cell_programs.csv": _table(names, n_per_type, present, prog, patterns),
                  "agreement.csv": _agreement(names, present, loc, prog, patterns)}
        for name, frame in tables.items():
            with atomic_path(out / name) as tmp:
                frame.to_csv(tmp, index=False)
        agree = tables["agreement.csv"]
        r = agree["r"].dropna()
        summary["agreement"] = {"same_top_pattern": int(agree["same_top"].sum()), "n_cell_types": int(len(agree)),
                                "r_mean": float(r.mean()) if len(r) else None}
        write_text(out / SUMMARY, json.dumps(summary, indent=2))
        _write_report(out, summary, tables, names, present, loc, prog, patterns)
        line["note"] = f"result files in {out}"
    return summary


def _write_report(out, summary, tables, names, present, loc, prog, patterns) -> None:
    from osnmf.plotting.cells import plot_cell_type_enrichment
    from osnmf.plotting.common import save_figure
    from osnmf.report.html import Section, write_report

    shown = [n for n, p in zip(names, present, strict=True) if p]
    png = save_figure(plot_cell_type_enrichment(loc[present], prog[present], shown, patterns),
                      out / "cell_types_by_pattern", formats=("png",))[0]
    a = summary["agreement"]
    r = f"{a['r_mean']:.2f}" if a["r_mean"] is not None else "undefined"
    paragraphs = [
        f"{summary['n_cells_projected']} of {summary['n_cells']} cells of {summary['data']} lie on the grid of the run "
        f"{summary['run']} ({summary['n_cells_without_coordinates']} without coordinates, "
        f"{summary['n_cells_outside_grid']} outside the grid were dropped); {summary['n_cell_types']} cell types "
        f"(obs column {summary['cell_type_key'] or 'none'}).",
        f"By location: each cell type's mean of every pattern at its cells' voxels, divided by the mean over all "
        f"cells (1 = no preference). By expression: each cell's non-negative coefficients on the run's gene "
        f"coefficients of the {summary['n_genes_projected']} genes measured in both ({summary['n_shared_genes']} "
        f"shared of the run's {summary['n_run_genes']}), genes scaled to mean 1 in each modality; the same "
        "enrichment per cell type.",
        f"Agreement of the two views: the same top pattern for {a['same_top_pattern']} of {a['n_cell_types']} cell "
        f"types; mean Pearson r of a type's two rows {r}. A small gene panel is not the ISH genome: the expression "
        "view only sees the patterns its genes carry.",
    ]
    section = Section("Cell types × patterns", paragraphs=paragraphs,
                      figures=[(png, "log2 enrichment of each cell type on each pattern, by location (left) and by "
                                "expression (right)")],
                      tables=[(tables["agreement.csv"], "Agreement of the two views per cell type (agreement.csv)"),
                              (tables["cell_types_by_pattern.csv"], "By location (cell_types_by_pattern.csv)"),
                              (tables["cell_programs.csv"], "By expression (cell_programs.csv)")])
    write_report(out / REPORT, "osnmf projection of cells", [section],
                 {"cell_type_key": summary["cell_type_key"], "cell_values": summary["cell_values"]})
