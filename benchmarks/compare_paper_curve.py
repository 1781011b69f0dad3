"""A run's instability curves beside the paper's released real-atlas curves, K by K.

Reads ``stability.csv`` of one or more finished ``osnmf run`` folders (staNMF γ and PCA γ with
their standard errors) and the paper's released curve (``../shared/data/osnmf_paper/
instability_curve.csv``: 4,345 genes, 100 replicates), and for every K both have prints γ, its SE,
the paper's γ and SE, z = (γ − γ_paper) / √(SE² + SE_paper²), and whether |z| ≤ 2 — the issue's
"within 2 SE" of the calibrated phantom at paper size. Also the γ argmin of each curve.

Usage::

    python benchmarks/compare_paper_curve.py RUN [RUN ...] [--labels paper-10reps fast]
        [--paper ../shared/data/osnmf_paper/instability_curve.csv] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

PAPER_CURVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "osnmf_paper" / "instability_curve.csv"


def compare(run: pd.DataFrame, paper: pd.DataFrame, ours: str, ours_se: str, theirs: str,
            theirs_se: str) -> pd.DataFrame:
    """Per K: our γ and SE, the paper's γ and SE, z and |z| ≤ 2 (K both curves have)."""
    both = run[["k", ours, ours_se]].merge(paper[["k", theirs, theirs_se]], on="k")
    both.columns = ["k", "gamma", "se", "gamma_paper", "se_paper"]
    spread = np.sqrt(both["se"] ** 2 + both["se_paper"] ** 2)
    both["z"] = (both["gamma"] - both["gamma_paper"]) / spread.where(spread > 0, np.nan)
    both["within_2se"] = both["z"].abs() <= 2
    return both


def summarize(table: pd.DataFrame) -> dict:
    """The comparison in JSON form: the table, the argmins and how many K lie within 2 SE."""
    return {
        "by_k": table.round(6).to_dict(orient="list"),
        "argmin_k": int(table.loc[table["gamma"].idxmin(), "k"]),
        "argmin_k_paper": int(table.loc[table["gamma_paper"].idxmin(), "k"]),
        "n_within_2se": int(table["within_2se"].sum()),
        "n_k": len(table),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished osnmf run folders (their stability.csv)")
    ap.add_argument("--labels", nargs="*", default=None)
    ap.add_argument("--paper", type=Path, default=PAPER_CURVE)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    if not a.paper.is_file():
        raise SystemExit(f"the paper's curve is not at {a.paper}: pass --paper PATH")
    paper = pd.read_csv(a.paper)
    labels = a.labels or [r.name for r in a.runs]
    out = {}
    for label, run_dir in zip(labels, a.runs, strict=True):
        run = pd.read_csv(run_dir / "stability.csv")
        if not set(run["k"]) & set(paper["k"]):
            ks = f"{paper['k'].min()}-{paper['k'].max()}"
            raise SystemExit(f"{run_dir}: no K in common with the paper's curve (K {ks})")
        out[label] = {"staNMF": summarize(compare(run, paper, "hungarian", "hungarian_se",
                                                  "stanmf_hungarian", "stanmf_se"))}
        if {"pca_hungarian", "pca_hungarian_se"} <= set(run):
            out[label]["PCA"] = summarize(compare(run, paper, "pca_hungarian", "pca_hungarian_se",
                                                  "pca_hungarian", "pca_se"))
        for method, res in out[label].items():
            t = pd.DataFrame(res["by_k"])
            print(f"\n{label} — {method}: argmin K {res['argmin_k']} (paper {res['argmin_k_paper']}); "
                  f"{res['n_within_2se']} of {res['n_k']} K within 2 SE of the paper")
            print("| K | γ | SE | γ paper | SE paper | z |")
            print("|---|---|---|---|---|---|")
            for row in t.itertuples():
                print(f"| {row.k} | {row.gamma:.4f} | {row.se:.4f} | {row.gamma_paper:.4f} | {row.se_paper:.4f} | "
                      f"{row.z:+.1f} |")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
