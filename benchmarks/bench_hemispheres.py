"""Left–right symmetry of the patterns with one-hemisphere (sagittal) experiments: mirroring vs not.

The 8 real experiments of ``../shared/data/aba_real`` (5 coronal, 3 sagittal) are too few for a
run on their own, so they are combined with the synthetic atlas: ``make_phantom`` plants
``--patterns`` patterns in ``--genes`` experiments (noise, missing sections) and the real grids are
appended. A share ``--sagittal`` of the phantom experiments becomes "sagittal": their right
hemisphere (ML >= 29) is hidden and their plane set to sagittal, as in the Allen sagittal set.

Three full ``osnmf`` pipeline runs (same small settings, K fixed at the planted number):

* ``coronal only``: the bilateral experiments alone (phantom coronal + real coronal);
* ``mixed, off``: everything, no mirroring (the folder without a plane column, so ``off`` runs);
* ``mixed, auto``: everything, one-hemisphere experiments mirrored before kNN imputation.

Prints, per run, the left–right symmetry r of every pattern (Pearson r of a pattern and its mirror
image over support voxels whose mirror is in the support; ``summary.json`` →
``hemispheres.pattern_symmetry_r``), the planted patterns' own symmetry, and the matched r of
the found patterns to the planted ones. The data folder is written under ``--work``.

    .venv/bin/python benchmarks/bench_hemispheres.py [--genes 200 --patterns 6 --sagittal 0.6]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from osnmf.config import RunConfig
from osnmf.datasets.phantom import make_phantom
from osnmf.expression import SpatialExpression
from osnmf.io.aba_folder import write_aba_folder
from osnmf.pipeline import Pipeline
from osnmf.preprocess.hemispheres import find_midline, symmetry_r

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "aba_real"


def build(args) -> tuple[SpatialExpression, np.ndarray, object]:
    table = pd.read_csv(SHARED / "experiments.csv", dtype=str)
    zips = [SHARED / "energy" / f"{i}.zip" for i in table["section_data_set_id"]]
    ph = make_phantom(n_genes=args.genes, n_patterns=args.patterns, noise=0.15, missing=0.1, seed=args.seed,
                      real_genes=zips)
    expr = ph.data
    rng = np.random.default_rng(args.seed)
    n_ph = args.genes
    sag = np.zeros(len(expr), bool)
    sag[rng.choice(n_ph, int(round(args.sagittal * n_ph)), replace=False)] = True
    volumes = expr.volumes.copy()
    volumes[sag, :, :, 29:] = np.nan  # one hemisphere only, as an Allen sagittal experiment
    planes = np.where(sag, "sagittal", "coronal")
    planes[n_ph:] = table["plane"].to_numpy()
    return SpatialExpression(volumes, expr.genes, expr.experiment_ids, expr.atlas, planes), planes, ph


def write(expr: SpatialExpression, folder: Path, with_plane: bool) -> Path:
    write_aba_folder(folder, expr, plane=None)
    if with_plane:
        csv = pd.read_csv(folder / "experiments.csv", dtype=str)
        csv["plane"] = expr.planes
        csv.to_csv(folder / "experiments.csv", index=False)
    return folder


def run(folder: Path, out: Path, mode: str, k: int) -> dict:
    cfg = RunConfig(data=str(folder), out=str(out), k_min=k, k_max=k, n_replicates=4, pca_replicates=4,
                    moran_replicates=4, n_random_models=50, link_sizes=[1], hemispheres=mode, quiet=True)
    start = time.perf_counter()
    summary = Pipeline(cfg).run()
    summary["wall_s"] = time.perf_counter() - start
    return summary


def matched_r(ph, out: Path) -> float:
    from scipy.optimize import linear_sum_assignment

    with np.load(out / "patterns.npz", allow_pickle=False) as z:
        found = z["patterns"][:, ph.atlas.brain_mask]
    P = ph.patterns - ph.patterns.mean(axis=1, keepdims=True)
    F = found - found.mean(axis=1, keepdims=True)
    C = (P / np.linalg.norm(P, axis=1, keepdims=True)) @ (F / np.linalg.norm(F, axis=1, keepdims=True)).T
    rows, cols = linear_sum_assignment(-C)
    return float(C[rows, cols].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=200)
    parser.add_argument("--patterns", type=int, default=6)
    parser.add_argument("--sagittal", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("bench_hemispheres_work"))
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; {args.genes} phantom experiments ({args.sagittal:.0%} made "
          f"sagittal) + 8 real (5 coronal, 3 sagittal), K = {args.patterns}")
    expr, planes, ph = build(args)
    c = find_midline(expr.atlas.annotation)
    planted = symmetry_r(ph.pattern_volumes(), expr.atlas.brain_mask, c)
    print(f"planted patterns' own symmetry r: {np.round(planted, 3).tolist()}")
    coronal = planes == "coronal"
    work = args.work
    folders = {"coronal only": write(expr.subset(coronal), work / "coronal", True),
               "mixed, off": write(expr, work / "mixed_noplane", False),
               "mixed, auto": write(expr, work / "mixed", True)}
    modes = {"coronal only": "auto", "mixed, off": "off", "mixed, auto": "auto"}
    for name, folder in folders.items():
        out = work / ("run_" + name.replace(", ", "_").replace(" ", "_"))
        s = run(folder, out, modes[name], args.patterns)
        h = s["hemispheres"]
        sym = np.asarray(h["pattern_symmetry_r"])
        print(f"{name:13s}: n={s['data']['n_experiments']:4d} bilateral={h['bilateral']} left-only={h['left_only']} "
              f"mirrored voxels={h['mirrored_voxels']}; pattern symmetry r min {sym.min():.3f} mean {sym.mean():.3f} "
              f"all {np.round(sym, 3).tolist()}; matched r to planted {matched_r(ph, out):.3f}; "
              f"hold-out r {s['holdout_r']:.3f}; mirror check r {h['mirror_check']['pearson_r']}; "
              f"{s['wall_s']:.0f} s")
        (work / f"{out.name}_summary.json").write_text(json.dumps(h, indent=1))


if __name__ == "__main__":
    main()
