"""The paper-size run, end to end: ``osnmf run`` with default settings on a synthetic atlas.

``--recipe`` (written into the TOML the run reads and into the JSON's ``settings``) picks the
run's recipe; its default is the CLI's, ``paper``: cold NNDSVDa fits of every bootstrap sample
with the exact solver, K = γ argmin, PCA under the sweep's replicates. At paper size that sweep
is flop-bound — each CD iteration multiplies the 4,345 × 62,529 matrix by its factors twice, so
K 8–30 × 100 takes hours on 2 cores (benchmarks/bench_paper_recipe.py times it against
scikit-learn on sampled K rather than in full). ``--recipe fast`` (grown starts, the rank-128
sketch of ``solver="auto"``, ``median3_near``, 20 PCA replicates: the defaults before ``paper``
became the default) is the 32-minute run recorded in benchmarks/results/paper_size.json (whose
``settings`` say ``"recipe": "fast"``).

Runs the CLI's ``run`` command in this process (4,345 synthetic experiments with 11 planted
patterns on the 200 µm atlas — by default the phantom calibrated to the real atlas's instability,
``--phantom-preset calibrated``; ``none`` for the plain one —, K 8–30 × 100 replicates by default)
into ``--out``; a rerun with the same ``--out`` resumes (finished stages and sweep blocks are
reused), so it can run in the background and survive an interruption. Every stage is timed and
its peak resident memory sampled (every 0.2 s); the records of finished stages are kept in
``<out>/stages.json``, so a resumed run reports the first, uncached time of every stage (a stage
interrupted midway reports only its resumed part, and the JSON says ``resumed``).
Afterwards, in the same process, ``--sklearn-fits`` bootstrap replicates at the
selected K are fitted with scikit-learn's ``NMF(solver="cd", init="nndsvda")`` on the explicitly
resampled matrix (the paper's loop) and our per-fit time is set beside theirs; ``--sklearn-k-fits``
fits at each of ``--sklearn-ks`` time the loop across the K range (its total over K is then a
projection, interpolated between those K's, and labelled so). The memory target (sweep peak ≤
1.5 × size(X) + the factors of the running blocks) is checked in the JSON.

Writes a JSON (``--json``) with the wall time and peak memory of every stage, the selected K, the
per-fit times and their ratio, size(X), the load average before and after, and the settings.

Usage::

    python benchmarks/bench_paper_size.py [--out /tmp/osnmf_paper] [--recipe paper|fast] [--k-min 8 --k-max 30]
        [--replicates 100] [--genes 4345] [--sklearn-fits 3] [--sklearn-ks 8 15 20 30]
        [--sklearn-k-fits 1] [--backend numpy --device cpu]
        [--json benchmarks/results/paper_size.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import threading
import time
import warnings
from pathlib import Path

import numpy as np


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


class PeakSampler:
    """Samples the RSS every ``interval`` s; ``peak`` is the largest since the last reset."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peak = rss_bytes()
        self._lock = threading.Lock()  # a sample taken before a reset must not land after it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                self.peak = max(self.peak, rss_bytes())

    def sample(self) -> int:
        """Take one sample now (e.g. at the end of a phase); returns the peak."""
        with self._lock:
            self.peak = max(self.peak, rss_bytes())
            return self.peak

    def reset(self) -> int:
        with self._lock:
            now = rss_bytes()
            self.peak = now
        return now

    def stop(self) -> None:
        self._stop.set()


def instrument(stages: dict, sampler: PeakSampler, holder: dict, record: Path):
    """Wrap ``Pipeline._timed`` so every stage records wall time and peak RSS."""
    from osnmf import pipeline

    original = pipeline.Pipeline._timed

    @contextlib.contextmanager
    def timed(self, name, start=None):
        holder["pipeline"] = self
        start_rss = sampler.reset()
        t = time.perf_counter()
        with original(self, name, start) as line:
            yield line
        sampler.sample()
        now = {  # the pipeline's own stage time (from the step's start: imports count)
            "wall_s": round(self.state.timings.get(name, time.perf_counter() - t), 2),
            "peak_rss_gib": round(sampler.peak / 2**30, 3),
            "rss_at_start_gib": round(start_rss / 2**30, 3),
            "peak_above_start_gib": round((sampler.peak - start_rss) / 2**30, 3),
            "cached": bool(self.state.cached.get(name, False)),
        }
        # a stage reused from an earlier (interrupted) attempt keeps that attempt's record
        stages[name] = stages[name] if now["cached"] and name in stages else now
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps(stages, indent=1), encoding="utf-8")
        tmp.replace(record)
        print(f"[bench] stage {name}: {now}", flush=True)

    pipeline.Pipeline._timed = timed


def sklearn_per_fit(X: np.ndarray, k: int, n_fits: int, seed: int) -> dict:
    """The paper's loop on ``n_fits`` bootstrap replicates of the sweep: seconds per fit."""
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    from osnmf.factorize.sweep.run import SweepParams, replicate_counts

    counts = replicate_counts(X.shape[0], range(n_fits), SweepParams(random_state=seed))
    times, iters = [], []
    for r in range(n_fits):
        idx = np.repeat(np.arange(X.shape[0]), counts[r])
        t = time.perf_counter()
        model = NMF(k, solver="cd", tol=1e-4, max_iter=200, init="nndsvda", random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit_transform(X[idx])
        times.append(time.perf_counter() - t)
        iters.append(int(model.n_iter_))
        print(f"[bench] sklearn fit {r}: {times[-1]:.1f} s, {iters[-1]} iterations", flush=True)
    return {"per_fit_s": float(np.mean(times)), "fits": n_fits, "times_s": times, "n_iter": iters}


def sweep_seconds_per_k(store: Path) -> dict[int, float]:
    """Seconds each K of the sweep took, from its block files' modification times: the time from the
    previous K's last block to this K's last block (blocks run K by K: in waves under grow, drawn in
    K order otherwise, where parallel jobs overlap at a K's boundaries; the first K is left out)."""
    last = {}
    for f in store.glob("*/k*/r*.npz"):
        k = int(f.parent.name[1:])
        last[k] = max(last.get(k, 0.0), f.stat().st_mtime)
    ks = sorted(last)
    return {k: round(last[k] - last[prev], 1) for prev, k in zip(ks, ks[1:], strict=False)}


def memory_target(sweep: dict, x_gib: float, shape, k_max: int, replicates: int) -> dict:
    """The issue's memory target: sweep peak ≤ 1.5 × size(X) + the factors of the running blocks.

    X is held before the stage starts, so the target on the stage's own peak (above its start)
    is 0.5 × size(X) + the factors (``n_jobs`` blocks of the default block size at ``k_max``).
    """
    from osnmf.config import RunConfig
    from osnmf.factorize.sweep.params import auto_block_size

    n, m = shape
    jobs = RunConfig().n_jobs
    bs = auto_block_size(n, m, k_max, replicates, jobs)
    factors = jobs * bs * k_max * (n + m) * 4 / 2**30
    above = sweep.get("peak_above_start_gib", float("nan"))
    return {"n_jobs": jobs, "block_size": bs, "factors_gib": round(factors, 3),
            "peak_above_start_gib": above, "allowed_above_start_gib": round(0.5 * x_gib + factors, 3),
            "met": bool(above <= 0.5 * x_gib + factors)}


def loop_projection(sk_by_k: dict, k_sel: int, sk: dict, k_min: int, k_max: int, replicates: int,
                    ours_sweep_s: float | None) -> dict:
    """The scikit-learn loop over the whole K range, PROJECTED from the K's timed here.

    Per-fit seconds are interpolated linearly in K between the measured K's (held flat outside
    them) and multiplied by the replicates: a projection, not a measurement.
    """
    pts = sorted({**{kk: v["per_fit_s"] for kk, v in sk_by_k.items()}, k_sel: sk["per_fit_s"]}.items())
    ks, secs = [p[0] for p in pts], [p[1] for p in pts]
    total = float(sum(np.interp(kk, ks, secs) for kk in range(k_min, k_max + 1)) * replicates)
    return {"measured_k": ks, "measured_per_fit_s": secs, "projected_loop_s": round(total, 1),
            "ours_sweep_stage_s": ours_sweep_s,
            "ratio": round(total / ours_sweep_s, 1) if ours_sweep_s else None}


def previous_recipe(cfg: Path) -> str | None:
    """The recipe of the TOML an earlier run in ``--out`` wrote (None: no earlier run; ``fast``: one
    written before this option, when the defaults were the fast recipe's)."""
    if not cfg.exists():
        return None
    import tomllib

    return tomllib.loads(cfg.read_text(encoding="utf-8")).get("recipe", "fast")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/osnmf_paper_size")
    ap.add_argument("--recipe", choices=["paper", "fast"], default="paper",
                    help="the run's recipe (default: paper, the CLI's default; fast: the 32-minute run of "
                         "benchmarks/results/paper_size.json)")
    ap.add_argument("--k-min", type=int, default=8)
    ap.add_argument("--k-max", type=int, default=30)
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--genes", type=int, default=4345)
    ap.add_argument("--patterns", type=int, default=11)
    ap.add_argument("--phantom-preset", default="calibrated", help="calibrated (default) or none")
    ap.add_argument("--sklearn-fits", type=int, default=3)
    ap.add_argument("--sklearn-ks", type=int, nargs="*", default=[8, 15, 20, 30],
                    help="also time --sklearn-k-fits scikit-learn fits at these K (the loop across the K range)")
    ap.add_argument("--sklearn-k-fits", type=int, default=1)
    ap.add_argument("--backend", default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", default=None, help="result file (default: <out>/bench_paper_size.json)")
    a = ap.parse_args()

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "bench_config.toml"
    record = out / "stages.json"
    before = previous_recipe(cfg)
    if record.exists() and before not in (None, a.recipe):  # the stage records would be another recipe's
        raise SystemExit(f"{out} holds a run of recipe {before!r}; use another --out for --recipe {a.recipe}")
    lines = [f'out = "{out / "run"}"', f'recipe = "{a.recipe}"', f"k_min = {a.k_min}", f"k_max = {a.k_max}",
             f"n_replicates = {a.replicates}", f"phantom_genes = {a.genes}",
             f"phantom_patterns = {a.patterns}", "quiet = true"]
    if a.phantom_preset != "none":
        lines.append(f'phantom_preset = "{a.phantom_preset}"')
    if a.backend:
        lines.append(f'backend = "{a.backend}"')
    if a.device:
        lines.append(f'device = "{a.device}"')
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")

    stages: dict = json.loads(record.read_text(encoding="utf-8")) if record.exists() else {}
    resumed = bool(stages)
    holder: dict = {}
    sampler = PeakSampler()
    instrument(stages, sampler, holder, record)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    from osnmf.cli import app

    code = app(["run", "--config", str(cfg)], standalone_mode=False)  # the CLI's `osnmf run`
    if isinstance(code, int) and code:
        raise SystemExit(f"osnmf run exited with {code}")
    total = time.perf_counter() - t0
    if resumed:  # the whole run = the first record of every stage
        total = sum(v["wall_s"] for v in stages.values())
    state = holder["pipeline"].state
    X = state.impute.X
    k = int(state.sweep.k)
    n_ks = a.k_max - a.k_min + 1
    sweep = stages.get("sweep", {})
    ours_per_fit = sweep.get("wall_s", float("nan")) / (n_ks * a.replicates)
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    sk = sklearn_per_fit(X32, k, a.sklearn_fits, 0)
    sk_by_k = {kk: sklearn_per_fit(X32, kk, a.sklearn_k_fits, 0) for kk in a.sklearn_ks if kk != k}
    ours_by_k = sweep_seconds_per_k(out / "run" / "sweep")
    sampler.stop()
    x_gib = X.size * 4 / 2**30
    import pandas as pd

    stab = pd.read_csv(out / "run" / "stability.csv")
    cert_cols = [c for c in ("k", "hungarian", "hungarian_compressed_subset", "hungarian_exact", "n_certified")
                 if c in stab]
    certified = stab.dropna(subset=["hungarian_exact"])[cert_cols] if "hungarian_exact" in stab else stab.iloc[:0]
    summary = json.loads((out / "run" / "summary.json").read_text(encoding="utf-8"))
    result = {
        "resumed": resumed,
        "settings": {"recipe": a.recipe, "genes": a.genes, "patterns": a.patterns,
                     "phantom_preset": a.phantom_preset, "k_min": a.k_min, "k_max": a.k_max,
                     "replicates": a.replicates, "backend": a.backend or "numpy",
                     "device": a.device, "cpus": os.cpu_count(), "machine": platform.platform()},
        "X_shape": list(X.shape),
        "X_gib_float32": round(x_gib, 3),
        "selected_k": k,
        "k_rule": summary.get("k_selection", {}).get("rule"),
        "recipe": summary.get("recipe"),
        "planted_k": a.patterns,
        "instability": stab[["k", "hungarian", "hungarian_se"]].to_dict(orient="list"),
        "certification": certified.to_dict(orient="records"),
        "stages": stages,
        "total_wall_s": round(total, 1),
        "sweep_cached": bool(sweep.get("cached", False)),
        "ours_per_fit_s": ours_per_fit,
        "sklearn": sk,
        "per_fit_ratio": sk["per_fit_s"] / ours_per_fit if ours_per_fit > 0 else None,
        "ours_sweep_s_per_k_from_block_mtimes": ours_by_k,
        "sklearn_by_k": {str(kk): v for kk, v in sk_by_k.items()},
        "per_fit_ratio_by_k": {str(kk): v["per_fit_s"] / (ours_by_k[kk] / a.replicates)
                               for kk, v in [*sk_by_k.items(), (k, sk)] if ours_by_k.get(kk)},
        "sweep_peak_above_start_over_X": (sweep.get("peak_above_start_gib", float("nan")) / x_gib),
        "memory_target": memory_target(sweep, x_gib, X.shape, a.k_max, a.replicates),
        "sklearn_loop_projection": loop_projection(sk_by_k, k, sk, a.k_min, a.k_max, a.replicates,
                                                   sweep.get("wall_s")),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    path = Path(a.json) if a.json else out / "bench_paper_size.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    print(f"RESULT recipe {a.recipe}: selected K {k}; total {total:.0f} s; sweep {sweep.get('wall_s')} s "
          f"({ours_per_fit:.2f} s per replicate fit, sklearn {sk['per_fit_s']:.2f} s per fit, "
          f"ratio {result['per_fit_ratio']:.1f}x); sweep peak above its start "
          f"{sweep.get('peak_above_start_gib')} GiB = {result['sweep_peak_above_start_over_X']:.2f} x size(X) "
          f"({x_gib:.2f} GiB); memory target {result['memory_target']}; scikit-learn loop over K "
          f"{a.k_min}-{a.k_max} PROJECTED from the timed K's: {result['sklearn_loop_projection']}; "
          f"load {load_before} -> {result['load_average_after']}; wrote {path}")


if __name__ == "__main__":
    main()
