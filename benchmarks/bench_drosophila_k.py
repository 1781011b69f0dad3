"""Benchmark 8c: which K does each recipe and each rule select on the Drosophila BDGP images?

The original staNMF paper (Wu et al. 2016) published 21 principal patterns for these 1,640
images × 405 pixels. For each recipe — ``paper`` (``recipe="paper"``, the estimator's default:
``grow=False``, bootstrap rows, fixed NNDSVDa init, exact solver), ``grow`` (``recipe="fast",
grow=True``: both starts, the default until the fourth session) and ``fast`` (``recipe="fast"``:
``grow="only"``, the default from then until ``"paper"`` became it; ``default`` is accepted as its
old name) — and several seeds, this runs ``StaNMF(k_range, n_replicates, random_state=seed, ...)``
and prints the K-selection panel (:mod:`osnmf.factorize.choose_k.criteria`: γ ± SE, out-of-bag
bi-cross-validation error, consensus cophenetic correlation and dispersion, in-sample error) and
the K every rule selects. The panel and every rule's K do not depend on the recipe's ``k_rule``;
only the K of the final model does (γ argmin under ``paper``, ``median3_near`` under the others).
On these images the auto solver is the exact one, so ``paper`` computes the same sweep as the
former ``grow=False`` arm.

Usage::

    .venv/bin/python benchmarks/bench_drosophila_k.py [--kmin 8 --kmax 26 --replicates 20 \\
        --seeds 0 1 2 --store runs/drosophila --csv drosophila_k.csv]

With ``--store`` finished blocks are kept on disk, so an interrupted run resumes. BLAS is
limited to ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

import osnmf
from osnmf.factorize.choose_k.criteria import RULES
from osnmf.factorize.stanmf import StaNMF

#: name -> StaNMF's recipe settings ("default": the old name of "fast")
RECIPES = {"paper": {"recipe": "paper"}, "grow": {"recipe": "fast", "grow": True}, "fast": {"recipe": "fast"}}
ALIASES = {"default": "fast"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kmin", type=int, default=8)
    ap.add_argument("--kmax", type=int, default=26)
    ap.add_argument("--replicates", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=[*RECIPES, *ALIASES])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--store", default=None, help="folder for resumable sweeps")
    ap.add_argument("--csv", default=None, help="write every run's panel here")
    args = ap.parse_args()
    args.recipes = [ALIASES.get(r, r) for r in args.recipes]
    X, _ = osnmf.load_drosophila()
    X = np.ascontiguousarray(X, dtype=np.float32)
    ks = range(args.kmin, args.kmax + 1)
    print(f"Drosophila X {X.shape}, K {ks[0]}..{ks[-1]}, {args.replicates} bootstrap replicates, "
          f"seeds {args.seeds}, recipes {args.recipes}")
    pd.set_option("display.width", 200)
    panels, picks = [], []
    with threadpool_limits(args.threads):
        for seed in args.seeds:
            for name in args.recipes:
                t0 = time.perf_counter()
                model = StaNMF(k_range=ks, n_replicates=args.replicates, random_state=seed,
                               store=args.store, **RECIPES[name]).fit(X)
                dt = time.perf_counter() - t0
                panel = model.selection_.assign(recipe=name, seed=seed)
                panels.append(panel)
                picks.append({"recipe": name, "seed": seed, **model.k_rules_, "seconds": dt})
                print(f"\n{name} ({model.recipe_settings_}), seed {seed}: {dt:.0f} s")
                print(model.selection_.round(4).to_string(index=False))
                print("K by rule:", {r: model.k_rules_[r] for r in RULES}, flush=True)
                if args.csv:
                    pd.concat(panels).to_csv(args.csv, index=False)
    print("\nK selected by each rule (rows: recipe, seed)")
    print(pd.DataFrame(picks).round(0).to_string(index=False))


if __name__ == "__main__":
    main()
