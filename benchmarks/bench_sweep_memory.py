"""Resident memory of each phase of ``StaNMF.fit`` on a finished run: blocks of one K and after.

Takes an ``osnmf run`` folder (e.g. the paper-size run of ``bench_paper_size.py``), hard-links its
stored sweep blocks into a fresh store (the per-K γ, panel and final-model files are left out, so
they are recomputed, and so are the blocks of ``--refit-k``), reloads the imputed matrix from the
run's stage cache (C order, as the pipeline hands it to ``StaNMF``) and runs ``StaNMF.fit`` with
the run's recipe (``--recipe``; default: ``recipe.name`` of the run's summary.json, or ``fast`` for
a run made before recipes existed — the defaults of that time, grown starts and the auto solver,
so the stored blocks are reused as before; a recipe other than the run's refits every block).
Every phase (sketch, the blocks of ``--refit-k``, γ per K, selection panel,
certification, final model) reports its peak RSS above the RSS before ``fit`` (X already held),
sampled every 50 ms, its RSS at start, its seconds and, with ``--traced``, the peak of the memory
numpy and Python allocated in it (tracemalloc). tracemalloc's bookkeeping (one record per live
allocation) is itself resident, so RSS read with ``--traced`` is an upper bound (fifth session:
the phases after the blocks started up to 0.53 GiB above the pre-fit RSS with it). Measure RSS
without it; a fresh process is stricter than ``bench_paper_size.py``'s sweep stage, which reuses
the heap memory the earlier stages freed (sixth session: 0.68 GiB here, 0.33 there).
This is the measurement behind the memory paragraph of docs/stanmf.md.

Usage::

    python benchmarks/bench_sweep_memory.py --run /tmp/osnmf_paper_size/run [--k-min 8 --k-max 30 --replicates 100]
        [--recipe fast|paper]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

GiB = 2**30


def run_recipe(run: Path) -> str:
    """The recipe of an ``osnmf run`` folder: its summary.json's, else ``fast`` (made before recipes)."""
    try:
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "fast"
    recipe = summary.get("recipe")
    return recipe.get("name", "fast") if isinstance(recipe, dict) else "fast"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="an osnmf run folder with sweep/ and .cache/impute.npz")
    ap.add_argument("--k-min", type=int, default=8)
    ap.add_argument("--k-max", type=int, default=30)
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--refit-k", type=int, default=30, help="K whose blocks are fitted again (0: none)")
    ap.add_argument("--traced", action="store_true", help="also the tracemalloc peak of each phase")
    ap.add_argument("--recipe", choices=["fast", "paper"], default=None,
                    help="default: the run's (summary.json), else fast (a run made before recipes existed)")
    a = ap.parse_args()
    run = Path(a.run)
    if a.recipe is None:
        a.recipe = run_recipe(run)
    from bench_paper_size import PeakSampler, rss_bytes

    from osnmf.factorize import stanmf
    from osnmf.factorize.sweep import store as store_mod

    # caches written before osnmf.expression.to_matrix returned C order hold X in Fortran order
    X = np.ascontiguousarray(np.load(run / ".cache" / "impute.npz")["X"])
    if a.traced:
        tracemalloc.start()
    sampler = PeakSampler(interval=0.05)
    depth = [0]
    traced0 = [0]
    totals: dict[str, list] = {}

    def wrap(owner, name, label):
        f = getattr(owner, name)

        def timed(*args, **kwargs):
            at_start = None
            if depth[0] == 0:  # a nested phase keeps its caller's running peak
                at_start = sampler.reset()
                tracemalloc.reset_peak()
                traced0[0] = tracemalloc.get_traced_memory()[0]
            depth[0] += 1
            t = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                depth[0] -= 1
                sampler.sample()
                rec = totals.setdefault(label, [0.0, 0.0, 0, 0.0, 0.0])
                rec[0] = max(rec[0], (sampler.peak - base) / GiB)
                rec[1] += time.perf_counter() - t
                rec[2] += 1
                if at_start is not None:  # outermost: its own traced peak and starting RSS
                    rec[3] = max(rec[3], (tracemalloc.get_traced_memory()[1] - traced0[0]) / GiB)
                    rec[4] = max(rec[4], (at_start - base) / GiB)

        setattr(owner, name, timed)

    for owner, name, label in [(stanmf, "sketch_matrix", "sketch"), (stanmf, "run_sweep", "blocks"),
                               (store_mod.SweepStore, "load_k", "load_k"),
                               (stanmf, "instability", "gamma (per K)"),
                               (stanmf, "selection_panel", "selection panel"),
                               (stanmf.StaNMF, "_certify", "certification"),
                               (stanmf.StaNMF, "_fit_final", "final model")]:
        wrap(owner, name, label)
    with tempfile.TemporaryDirectory(dir=run.parent) as tmp:
        for src in (run / "sweep").rglob("*"):  # the blocks and the manifest only
            dst = Path(tmp) / src.relative_to(run / "sweep")
            if src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
            elif (src.suffix == ".npz" and src.name.startswith("r") and src.parent.name != f"k{a.refit_k:03d}"
                  or src.name == "manifest.json"):
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(src, dst) if src.stat().st_dev == Path(tmp).stat().st_dev else shutil.copy2(src, dst)
        base = rss_bytes()
        model = stanmf.StaNMF(k_range=range(a.k_min, a.k_max + 1), n_replicates=a.replicates,
                              recipe=a.recipe, n_jobs=a.n_jobs, store=tmp)
        model.fit(X)
    sampler.stop()
    print(f"X {X.shape} {X.nbytes / GiB:.2f} GiB; RSS before fit {base / GiB:.2f} GiB; recipe {a.recipe}; "
          f"K = {model.k_}")
    print("(a phase nested in another, e.g. load_k in certification, reports its caller's running peak)")
    for label, (peak, secs, calls, traced, start) in totals.items():
        print(f"RESULT {label:16s} calls {calls:3d}  {secs:7.1f} s  peak RSS above the pre-fit RSS {peak:.2f} GiB "
              f"= {peak * GiB / X.nbytes:.2f} x size(X) (RSS at its start up to {start:.2f}); "
              + (f"traced peak {traced:.2f} GiB" if a.traced else "(no --traced)"), flush=True)


if __name__ == "__main__":
    main()
