"""Planted-K study: how often does each staNMF recipe recover the planted K and patterns?

On synthetic atlases (``osnmf.make_phantom``: K region-shaped patterns on the Allen grid, sparse
non-negative gene mixtures, multiplicative ISH noise) we run StaNMF over ``K_planted ± span``
with several recipes and report, per phantom and recipe:

* ``k_sel``: the selected K (argmin Hungarian instability: ``k_rule="gamma_argmin"`` in every
  recipe but ``fast``, which selects by its own ``median3_near``) — hit when it equals the planted K;
* ``g_true`` / ``g_best_other``: gamma at the planted K and the smallest gamma at any other K;
* ``r_final``: Hungarian-matched correlation of the final model's patterns with the planted ones
  (rectangular matching when K is wrong: mean over the min(K, K_planted) matched pairs);
* ``r_rep_min`` / ``bad``: at the planted K, the worst replicate's matched r and the number of
  replicates whose patterns miss the truth (matched r < 0.95);
* ``maxit``: share of replicate fits at the planted K that stopped at ``max_iter``;
* ``dloss_bad``: mean relative loss excess of the "bad" replicates over the best restart of the
  same bootstrap sample found by the ``restarts`` recipe (> 0 = a worse local optimum).

Recipes (``--recipes``; the first five run under StaNMF's ``recipe="paper"`` — grow=False, exact
solver, γ argmin —, the grown ones under ``recipe="fast"`` with ``k_rule="gamma_argmin"``, so all
of them select K alike; on these small matrices the former default ``solver="auto"`` was the exact
solver too, so every arm fits what it fitted before ``"paper"`` became the default — ``k_sel`` is
the γ argmin this docstring always named, where from ``median3_near``'s adoption until then it had
been that rule's K):
  paper       bootstrap + fixed NNDSVDa init, max_iter 200, tol 1e-4 (the seed paper; StaNMF's
              recipe="paper")
  converged   same, max_iter 2000, tol 1e-6
  restarts    bootstrap, 3 fits per replicate (NNDSVDa + 2 random), lowest loss kept
  both        restarts + converged
  init        no bootstrap, random inits only (original Drosophila staNMF)
  grow        bootstrap, NNDSVDa and the replicate's K-1 solution grown by its residual's
              leading component; lowest loss kept (StaNMF(recipe="fast", grow=True))
  grow+restarts  grow plus 2 random restarts
  fast        StaNMF(recipe="fast") as it is: grow="only", auto solver, K by median3_near

Usage::

    .venv/bin/python benchmarks/planted_k_study.py                      # default grid
    .venv/bin/python benchmarks/planted_k_study.py --planted 5 --seeds 0 --recipes paper

K-selection criteria (``--criteria``): for every difficulty level × noise level × seed, one
StaNMF sweep over K = planted ± span, and the K that every rule of
:mod:`osnmf.factorize.choose_k.criteria` picks from its panel (γ argmin / one-SE rules, out-of-bag
bi-cross-validation error, consensus cophenetic correlation and dispersion, γ + OOB). Levels,
each with 8 planted patterns from ``PATTERN_LIBRARY`` (same noise model as ``make_phantom``:
log-normal multiplicative noise with CV ``noise`` and 2 % additive background, no missing data):

  large     the first 8 library patterns (all ≥ 7 % of the brain voxels)
  small     the first 7 + "cortical subplate + cerebellar nuclei" (5 % of the voxels)
  overlap   the first 7 + "midbrain + pons, dorsal-high", which overlaps the 7th pattern
            ("midbrain + pons + medulla, ventral-high"; Pearson r 0.45)
  calibrated  ``make_phantom(preset="calibrated")`` with its default 11 patterns (K = 11 ± span;
            the preset sets its own noise model, so ``--noise-levels`` does not apply)

The sweep's recipe (``--sweep-recipe``):

  fast      (default) ``StaNMF(recipe="fast", grow=--grow)``, ``--grow`` true by default: the sweep
            this study always ran (``grow=True``, the default until the fourth session; the
            committed results/planted_k_study_panels.csv, and ``--grow only`` for
            results/planted_k_study_panels_grow_only.csv);
  paper     ``StaNMF(recipe="paper")``: cold NNDSVDa fits of every bootstrap sample
            (``grow=False``), exact solver — the arm without grown starts; ``--grow`` true or
            only contradicts it (refused).

The recipe only changes the replicates (and the final model's K, hence ``r_final``); every rule's
K is computed from the panel either way. The panel CSV records ``recipe`` and ``grow``, and the
summary keeps sweeps of different recipes apart (CSVs written before these columns show them
empty).

The summary prints, per recipe, level and noise, how many seeds each rule finds the planted K
exactly and within ±1::

    .venv/bin/python benchmarks/planted_k_study.py --criteria --seeds 0 1 2 3 4 5 6 7 8 9 \
        --levels large small overlap --noise-levels 0.3 0.6 --replicates 10 --span 3 --csv out.csv
    .venv/bin/python benchmarks/planted_k_study.py --criteria --sweep-recipe paper ... --csv paper.csv

BLAS is limited to one thread (the benchmark machine is shared; threaded BLAS on small batched
products only spins). Everything is seeded: the same arguments print the same table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from threadpoolctl import threadpool_limits

import osnmf
from osnmf.factorize.choose_k.stability import cross_correlation
from osnmf.factorize.stanmf import StaNMF

_PAPER = dict(recipe="paper")  # grow=False, exact solver, K = γ argmin
_GROWN = dict(recipe="fast", grow=True, k_rule="gamma_argmin")
RECIPES = {
    "paper": dict(n_restarts=1, max_iter=200, tol=1e-4, **_PAPER),
    "converged": dict(n_restarts=1, max_iter=2000, tol=1e-6, **_PAPER),
    "restarts": dict(n_restarts=3, max_iter=200, tol=1e-4, **_PAPER),
    "both": dict(n_restarts=3, max_iter=2000, tol=1e-6, **_PAPER),
    "init": dict(n_restarts=1, max_iter=200, tol=1e-4, perturbation="init", **_PAPER),
    "grow": dict(n_restarts=1, max_iter=200, tol=1e-4, **_GROWN),
    "grow+restarts": dict(n_restarts=3, max_iter=200, tol=1e-4, **_GROWN),
    "fast": dict(n_restarts=1, max_iter=200, tol=1e-4, recipe="fast"),
}
#: --sweep-recipe of --criteria -> StaNMF's recipe; the grow of each (None: --grow's default)
SWEEP_RECIPES = ("fast", "paper")


def sweep_settings(recipe: str, grow) -> dict:
    """StaNMF keywords of one --criteria sweep: ``fast`` grows (``grow`` true by default, the study's
    sweep since it began), ``paper`` refuses a grown start (``grow`` must be None or False)."""
    if recipe == "paper":
        if grow not in (None, False):
            raise SystemExit(f"--grow {grow} contradicts --sweep-recipe paper (grow=False); drop it, "
                             "or use --sweep-recipe fast")
        return {"recipe": "paper"}
    return {"recipe": "fast", "grow": True if grow is None else grow}


def matched_r(P: np.ndarray, Q: np.ndarray) -> float:
    """Mean correlation of optimally matched patterns (rectangular Hungarian)."""
    C = cross_correlation(P, Q)
    r, c = linear_sum_assignment(C, maximize=True)
    return float(C[r, c].mean())


def make_data(k: int, seed: int, n_genes: int, stride: int, noise: float):
    ph = osnmf.make_phantom(n_genes=n_genes, n_patterns=k, noise=noise, missing=0.0, seed=seed)
    X, _ = ph.data.to_matrix()
    return np.ascontiguousarray(X[:, ::stride]), np.ascontiguousarray(ph.patterns[:, ::stride])


def run(args) -> pd.DataFrame:
    rows = []
    for kp in args.planted:
        for seed in args.seeds:
            X, P = make_data(kp, seed, args.genes, args.stride, args.noise)
            ks = range(max(2, kp - args.span), kp + args.span + 1)
            best_loss = None
            fits = {}
            for name in args.recipes:
                t0 = time.perf_counter()
                kw = dict(RECIPES[name])
                model = StaNMF(k_range=ks, n_replicates=args.replicates[0], random_state=seed,
                               **kw).fit(X)
                dt = time.perf_counter() - t0
                fits[name] = model
                tab = model.instability_.set_index("k")["hungarian"]
                reps = model.replicates_[kp]
                rr = np.array([matched_r(d, P) for d in reps])
                info = model.replicate_info_.query("k == @kp")
                rows.append({
                    "K_planted": kp, "seed": seed, "recipe": name, "k_sel": model.k_,
                    "hit": model.k_ == kp,
                    "g_true": tab[kp], "g_best_other": tab.drop(kp).min(),
                    "r_final": matched_r(model.components_, P),
                    "r_rep_min": rr.min(), "bad": int((rr < 0.95).sum()),
                    "maxit": float((info["n_iter"] >= kw["max_iter"]).mean()),
                    "_loss": info["loss"].to_numpy(), "_bad": rr < 0.95, "seconds": dt,
                })
                print(_fmt(rows[-1]), flush=True)
            # loss excess of bad replicates vs the best restart on the same bootstrap sample
            ref = next((n for n in ("grow+restarts", "grow", "both", "restarts") if n in fits),
                       None)
            if ref is not None:
                best_loss = fits[ref].replicate_info_.query("k == @kp")["loss"].to_numpy()
                for row in rows[-len(args.recipes):]:
                    if row["recipe"] == "init" or not row["_bad"].any():
                        continue
                    ex = row["_loss"][row["_bad"]] / best_loss[row["_bad"]] - 1
                    row["dloss_bad"] = float(ex.mean())
    df = pd.DataFrame(rows).drop(columns=["_loss", "_bad"])
    if "dloss_bad" not in df:
        df["dloss_bad"] = np.nan
    return df


def _fmt(r: dict) -> str:
    return (f"K={r['K_planted']:>2} seed={r['seed']} {r['recipe']:<9} k_sel={r['k_sel']:>2} "
            f"g_true={r['g_true']:.4f} g_other={r['g_best_other']:.4f} "
            f"r_final={r['r_final']:.3f} r_rep_min={r['r_rep_min']:.3f} bad={r['bad']} "
            f"maxit={r['maxit']:.2f} {r['seconds']:.0f}s")


LEVELS = {"large": (0, 1, 2, 3, 4, 5, 6, 7), "small": (0, 1, 2, 3, 4, 5, 6, 9),
          "overlap": (0, 1, 2, 3, 4, 5, 6, 11)}


_PATTERNS: dict[str, np.ndarray] = {}
PLANTED = {"calibrated": 11}  # planted K per level (8 unless listed): the preset's own default


def level_data(level: str, seed: int, n_genes: int, stride: int, noise: float,
               background: float = 0.02):
    """(X (n_genes, voxels/stride), planted patterns (8, voxels/stride)) of one difficulty level."""
    from osnmf.atlas import Atlas
    from osnmf.datasets.phantom_parts import plant_coefficients
    from osnmf.datasets.phantom_patterns import PATTERN_LIBRARY, build_pattern

    if level == "calibrated":  # the preset sets its own noise model; ``noise`` is ignored
        ph = osnmf.make_phantom(n_genes=n_genes, n_patterns=PLANTED[level], missing=0.0,
                                seed=seed, preset="calibrated")
        X, _ = ph.data.to_matrix()
        return (np.ascontiguousarray(X[:, ::stride]),
                np.ascontiguousarray(ph.patterns[:, ::stride]))
    if level not in _PATTERNS:  # the atlas patterns do not depend on the seed
        atlas = Atlas.default()
        _PATTERNS[level] = np.vstack([build_pattern(atlas, PATTERN_LIBRARY[i])
                                      for i in LEVELS[level]])
    P = np.ascontiguousarray(_PATTERNS[level][:, ::stride], dtype=np.float64)
    rng = np.random.default_rng([seed, 18])
    A, _ = plant_coefficients(n_genes, P.shape[0], rng)
    clean = A.astype(np.float64) @ P
    log_sd = np.sqrt(np.log1p(noise**2))
    X = clean * np.exp(rng.standard_normal(clean.shape) * log_sd - log_sd**2 / 2)
    X += rng.standard_normal(clean.shape) * background * clean.max(axis=1, keepdims=True)
    return np.ascontiguousarray(np.maximum(X, 0), dtype=np.float32), P


def run_criteria(args) -> pd.DataFrame:
    """One sweep (``--sweep-recipe``) per (level, noise, replicates, seed); its K-selection panel, one row per K.

    The panel (γ ± SE, OOB error, cophenetic, dispersion, ...) is kept rather than the rules'
    picks, so any rule of :mod:`osnmf.factorize.choose_k.criteria` can be evaluated from the CSV later.
    """
    rows = []
    out = None
    settings = sweep_settings(args.sweep_recipe, args.grow)
    if args.csv:
        out = open(args.csv, "w", encoding="utf-8")  # noqa: SIM115 - appended sweep by sweep
    try:
        for seed in args.seeds:  # seeds outermost: a partial run stays balanced over levels
            for level in args.levels:
                kp = PLANTED.get(level, 8)
                ks = range(kp - args.span, kp + args.span + 1)
                for noise in args.noise_levels if level != "calibrated" else [float("nan")]:
                    X, P = level_data(level, seed, args.genes, args.stride, noise)
                    for n_rep in args.replicates:
                        t0 = time.perf_counter()
                        model = StaNMF(k_range=ks, n_replicates=n_rep, random_state=seed, **settings).fit(X)
                        sweep = {"level": level, "noise": noise, "replicates": n_rep, "seed": seed,
                                 "recipe": args.sweep_recipe, "grow": str(model.recipe_settings_["grow"]),
                                 "K_planted": kp, "r_final": matched_r(model.components_, P),
                                 "seconds": time.perf_counter() - t0}
                        panel = model.selection_.assign(**sweep)
                        rows.append(panel)
                        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in {**sweep, **model.k_rules_}.items()), flush=True)
                        if out is not None:
                            panel.to_csv(out, header=len(rows) == 1, index=False)
                            out.flush()
    finally:
        if out is not None:
            out.close()
    return pd.concat(rows, ignore_index=True)


SWEEP_KEYS = ["level", "noise", "replicates", "seed"]
RECIPE_KEYS = ["recipe", "grow"]  # in panels written since the --sweep-recipe option


def _recipe_keys(df: pd.DataFrame) -> list[str]:
    return [c for c in RECIPE_KEYS if c in df]


def sweep_picks(panels: pd.DataFrame) -> pd.DataFrame:
    """The K every rule picks, one row per sweep, from the panel rows written by ``--criteria``."""
    from osnmf.factorize.choose_k.criteria import k_rules

    recs = []
    keys = _recipe_keys(panels) + SWEEP_KEYS
    for key, g in panels.groupby(keys, sort=True, dropna=False):
        recs.append({**dict(zip(keys, key, strict=True)), "K_planted": int(g["K_planted"].iloc[0]),
                     **k_rules(g)})
    return pd.DataFrame(recs)


def criteria_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (recipe, grow, level, noise, replicates) and rule: seeds with the planted K exactly, and within ±1
    (``a/b``); recipe and grow only where the CSVs record them.

    ``df``: panel rows (``--criteria`` CSVs), or one row of picks per sweep (older CSVs, 10 replicates).
    """
    from osnmf.factorize.choose_k.criteria import RULES, median3

    if "gamma" in df:
        df = sweep_picks(df)
    if "replicates" not in df:
        df = df.assign(replicates=10)
    if "median3" not in df:  # rows written before the rule existed: derive it from its parts
        df = df.assign(median3=[median3(*t) for t in zip(
            df["gamma_argmin"], df["cophenetic_argmax"], df["dispersion_argmax"], strict=True)])
    rules = [r for r in RULES if r in df]
    recs = []
    keys = _recipe_keys(df)
    for key, g in df.groupby([*keys, "level", "noise", "replicates"], sort=True, dropna=False):
        *rk, level, noise, n_rep = key
        rec = {**dict(zip(keys, rk, strict=True)), "level": level, "noise": noise, "R": n_rep, "seeds": len(g)}
        for r in rules:
            d = (g[r] - g["K_planted"]).abs()
            rec[r] = f"{int((d == 0).sum())}/{int((d <= 1).sum())}"
        recs.append(rec)
    return pd.DataFrame(recs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--planted", type=int, nargs="+", default=[5, 8, 12])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--recipes", nargs="+", default=["paper", "restarts", "grow"],
                    choices=list(RECIPES))
    ap.add_argument("--replicates", type=int, nargs="+", default=[8],
                    help="bootstrap replicates per K (several values: a replicate-count level of --criteria)")
    ap.add_argument("--genes", type=int, default=200)
    ap.add_argument("--stride", type=int, default=10, help="keep every stride-th brain voxel")
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--span", type=int, default=2, help="K range = planted ± span")
    ap.add_argument("--csv", default=None, help="also write the table here")
    ap.add_argument("--criteria", action="store_true",
                    help="K-selection study: every rule of osnmf.factorize.choose_k.criteria per level")
    ap.add_argument("--sweep-recipe", choices=SWEEP_RECIPES, default="fast",
                    help="StaNMF's recipe of the --criteria sweeps: fast (grown starts, the study's sweep so far) "
                         "or paper (grow=False, exact solver)")
    ap.add_argument("--grow", type=lambda v: {"true": True, "false": False}.get(v.lower(), v),
                    default=None, help="StaNMF's grow of the --criteria sweeps: true, false or only "
                                       "(default: true under --sweep-recipe fast, false under paper)")
    ap.add_argument("--levels", nargs="+", default=["large", "small", "overlap"],
                    choices=[*LEVELS, "calibrated"])
    ap.add_argument("--noise-levels", type=float, nargs="+", default=[0.3, 0.6])
    ap.add_argument("--summarize", nargs="+", default=None,
                    help="only print the criteria summary of CSVs written by --criteria")
    ap.add_argument("--skip-seeds", type=int, nargs="+", default=None,
                    help="with --summarize: leave these seeds out (e.g. those seen while a rule was designed)")
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    if args.summarize:
        from pathlib import Path

        df = pd.concat([pd.read_csv(f) for f in args.summarize if Path(f).stat().st_size > 0],
                       ignore_index=True)
        if args.skip_seeds:
            df = df[~df["seed"].isin(args.skip_seeds)]
        print(criteria_summary(df).to_string(index=False))
        return
    if args.criteria:
        settings = sweep_settings(args.sweep_recipe, args.grow)  # a contradiction stops here, before any data
        print(f"K-selection study: {args.genes} genes, every {args.stride}th voxel, "
              f"{args.replicates} replicates, K = planted ± {args.span}, levels {args.levels}, "
              f"noise {args.noise_levels}, seeds {args.seeds}, sweep {settings}")
        with threadpool_limits(1):
            df = run_criteria(args)
        print("\nseeds finding the planted K exactly / within ±1, per rule")
        print(criteria_summary(df).to_string(index=False))
        return
    print(f"phantoms: {args.genes} genes, every {args.stride}th voxel, noise {args.noise}, "
          f"{args.replicates} replicates, K = planted ± {args.span}")
    with threadpool_limits(1):
        df = run(args)
    pd.set_option("display.width", 160)
    print("\nper phantom and recipe")
    print(df.round(4).to_string(index=False))
    summary = df.groupby("recipe", sort=False).agg(
        K_hit=("hit", "mean"), r_final=("r_final", "mean"), r_rep_min=("r_rep_min", "mean"),
        bad_replicates=("bad", "sum"), maxit=("maxit", "mean"), seconds=("seconds", "sum"))
    print("\nsummary over phantoms (K_hit = share of phantoms whose planted K was selected)")
    print(summary.round(3).to_string())
    if args.csv:
        df.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
