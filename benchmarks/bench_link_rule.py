"""Benchmark: the anatomical-sense rule of region linking (osnmf.spatial.linking), chosen by measurement.

A pair or triple is scored only when each member holds at least ``share`` of the union's voxels,
and a pattern's best link is the smallest set whose r is within ``tol`` of the best r of any size.
For a grid of (share, tol) this measures:

- synthetic atlas (planted truth): the phantom's planted patterns (12 genes, 11 patterns, seed 0),
  clean and with Gaussian noise of 0.5 × each pattern's SD (an estimate's noise): Dice of the chosen
  union with the planted union (mean, min), how many chosen unions equal the planted one, and how
  many contain a member under 2 % of the union ("tiny");
- real Allen grids (``--real``, an ABA grid folder, e.g. ../shared/data/aba_real): the 8 imputed
  expression maps and NMF patterns of them (K = 3, scikit-learn, seed 0): r lost against the
  unrestricted best (share 0, tol 0), tiny members, mean set size, and the chosen names.

Run: .venv/bin/python benchmarks/bench_link_rule.py --real ../shared/data/aba_real [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import osnmf
from osnmf.spatial.adjacency import ancestor_matrix
from osnmf.spatial.linking import best_combinations, member_share, pick_best
from osnmf.spatial.region_correlation import union_mask

SHARES = (0.0, 0.01, 0.02, 0.05, 0.1)
TOLS = (0.0, 0.001, 0.002, 0.005, 0.01)
TINY = 0.02


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def _tiny_members(best, atlas) -> int:
    """Chosen links holding a member under TINY of the union's voxels."""
    index = {int(s): i for i, s in enumerate(atlas.region_ids)}
    counts = np.asarray(atlas.membership.sum(axis=1)).ravel().astype(float)
    anc = ancestor_matrix(atlas)
    n = 0
    for ids in best["region_ids"]:
        if len(ids) > 1:
            n += int(member_share(np.array([[index[int(s)] for s in ids]]), counts, anc)[0] < TINY)
    return n


def synthetic(noise: float, seed: int = 0) -> dict:
    ph = osnmf.make_phantom(n_genes=12, n_patterns=11, seed=0)
    atlas = ph.atlas
    pats = np.asarray(ph.patterns, dtype=float)
    if noise > 0:
        rng = np.random.default_rng(seed)
        pats = pats + noise * pats.std(axis=1, keepdims=True) * rng.standard_normal(pats.shape)
    planted = [union_mask(atlas, regs) for regs in ph.pattern_regions]
    rows = []
    for share in SHARES:
        table = best_combinations(pats, atlas, min_member_share=share, top_n=1, keep=1).table  # one search
        for tol in TOLS:
            best = pick_best(table, tol)
            found = [union_mask(atlas, ids) for ids in best["region_ids"]]
            dice = [_dice(p, f) for p, f in zip(planted, found, strict=True)]
            rows.append({"share": share, "tol": tol, "dice_mean": float(np.mean(dice)), "dice_min": float(min(dice)),
                         "exact": int(sum((p == f).all() for p, f in zip(planted, found, strict=True))),
                         "tiny": _tiny_members(best, atlas), "r_mean": float(best["r"].mean()),
                         "links": best["acronyms"].tolist()})
    return {"noise": noise, "planted": ["+".join(r) for r in ph.pattern_regions], "rows": rows}


def real(folder: str) -> dict:
    from sklearn.decomposition import NMF

    expr = osnmf.load_expression(folder)
    atlas = expr.atlas
    support = osnmf.default_support(expr.volumes, atlas.brain_mask)
    X = osnmf.prepare_matrix(osnmf.impute_knn(expr, support), support, fill_missing=0.0).X  # genes × support
    brain = np.zeros((X.shape[0], atlas.n_brain_voxels))
    brain[:, support[atlas.brain_mask]] = X
    nmf = NMF(n_components=3, init="nndsvda", max_iter=500, random_state=0).fit(brain)
    sets = {"genes": (brain, list(expr.genes)), "nmf3": (nmf.components_, ["NMF1", "NMF2", "NMF3"])}
    out = {}
    for name, (pats, labels) in sets.items():
        free = best_combinations(pats, atlas, min_member_share=0.0, tie_tolerance=0.0, top_n=1, keep=1).best
        rows = []
        for share in SHARES:
            table = best_combinations(pats, atlas, min_member_share=share, top_n=1, keep=1).table
            for tol in TOLS:
                best = pick_best(table, tol)
                loss = free["r"].to_numpy() - best["r"].to_numpy()
                rows.append({"share": share, "tol": tol, "r_loss_mean": float(loss.mean()),
                             "r_loss_max": float(loss.max()), "tiny": _tiny_members(best, atlas),
                             "size_mean": float(best["size"].mean()),
                             "links": [f"{lab}: {a} ({r:.3f})" for lab, a, r in
                                       zip(labels, best["acronyms"], best["r"], strict=True)]})
        out[name] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", help="an ABA grid folder (e.g. ../shared/data/aba_real)")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    t0 = time.perf_counter()
    results = {"synthetic": [synthetic(0.0), synthetic(0.5)]}
    for block in results["synthetic"]:
        print(f"synthetic, noise {block['noise']}: share tol | Dice mean min | exact/11 | tiny | mean r")
        for r in block["rows"]:
            print(f"  {r['share']:.2f} {r['tol']:.3f} | {r['dice_mean']:.3f} {r['dice_min']:.3f} | {r['exact']:2d} | "
                  f"{r['tiny']} | {r['r_mean']:.4f}")
    if args.real:
        results["real"] = real(args.real)
        for name, rows in results["real"].items():
            print(f"real grids, {name}: share tol | r lost mean max | tiny | mean size")
            for r in rows:
                print(f"  {r['share']:.2f} {r['tol']:.3f} | {r['r_loss_mean']:.4f} {r['r_loss_max']:.4f} | "
                      f"{r['tiny']} | {r['size_mean']:.2f}")
    results["seconds"] = time.perf_counter() - t0
    print(f"{results['seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
