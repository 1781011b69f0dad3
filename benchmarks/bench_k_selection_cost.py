"""Cost of each K-selection criterion, measured on a sample and projected to the paper's sweep.

Measured here: an ``n × m_sample`` low-rank + noise matrix (default the paper's 4,345 genes and
every 20th of its 62,529 voxels), at one K (default 20), with ``R`` replicates:

* ``fit``: one bootstrap replicate NMF fit (``fit_nmf_replicates``, 200 iterations at most);
* ``gamma``: :func:`osnmf.factorize.choose_k.stability.instability` of the R replicates;
* ``oob``: :func:`osnmf.factorize.choose_k.criteria.oob_errors` (per replicate);
* ``consensus``: consensus matrix + cophenetic correlation + dispersion (1,000 voxels);
* ``recon``: :func:`osnmf.factorize.choose_k.criteria.reconstruction_errors`.

Projection (labelled as such) to the paper's sweep, K = 8..30 × 100 replicates on
4,345 × 62,529: fit and OOB scale with m·K, γ with R²·K²·m (one Gram matrix of all R·K patterns)
plus R²/2 Hungarian matchings, consensus with R·K·m (labels) + R·K·v² (v = 1,000) and the
v² linkage, reconstruction with n·m (once) — each evaluated at every K of 8..30 from the
timing at the measured K. The absolute seconds hold for this machine under its current load;
the ratio to the fits is the number to carry elsewhere.

Usage::

    .venv/bin/python benchmarks/bench_k_selection_cost.py [--stride 20 --k 20 --replicates 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from osnmf.factorize.choose_k import criteria as sel
from osnmf.factorize.choose_k.stability import instability
from osnmf.factorize.nmf.fits import fit_nmf_replicates
from osnmf.factorize.sweep.run import SweepParams, replicate_counts

PAPER_N, PAPER_M, PAPER_KS, PAPER_R = 4345, 62529, range(8, 31), 100


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--genes", type=int, default=PAPER_N)
    ap.add_argument("--stride", type=int, default=20, help="every stride-th of the paper's voxels")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--replicates", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    n, m, K, R = args.genes, PAPER_M // args.stride, args.k, args.replicates
    rng = np.random.default_rng(0)
    X = (rng.gamma(0.5, size=(n, K)) @ rng.gamma(0.5, size=(K, m))).astype(np.float32)
    X *= rng.lognormal(0, 0.3, X.shape).astype(np.float32)
    counts = replicate_counts(n, range(R), SweepParams(random_state=0))
    print(f"sample {n} x {m} (every {args.stride}th voxel), K = {K}, R = {R}, "
          f"BLAS threads {args.threads}, load average {os.getloadavg()[0]:.1f}")
    with threadpool_limits(args.threads):
        fits, t_fit = timed(lambda: fit_nmf_replicates(X, K, counts, init="nndsvda", max_iter=200))
        _, t_gamma = timed(lambda: instability(fits.D))
        folds = sel.voxel_folds(m, sel.N_FOLDS, 0)
        _, t_oob = timed(lambda: sel.oob_errors(X, fits.D, counts, folds))
        vox = sel.consensus_voxels(m, sel.CONSENSUS_VOXELS, 0)

        def consensus():
            C = sel.consensus_matrix(fits.D, vox)
            return sel.cophenetic_correlation(C), sel.dispersion(C)

        _, t_cons = timed(consensus)
        _, t_rec = timed(lambda: sel.reconstruction_errors(X, fits.loss, counts))
    per_rep = {"fit": t_fit / R, "oob": t_oob / R}
    print(f"measured: fit {t_fit:.2f} s ({per_rep['fit']:.2f} s/replicate), gamma {t_gamma:.3f} s, "
          f"oob {t_oob:.2f} s ({per_rep['oob']:.3f} s/replicate), consensus+cophenetic+dispersion "
          f"{t_cons:.3f} s, recon {t_rec:.4f} s")
    # projection to the paper's sweep (linear in m·K per replicate; see the module docstring)
    scale_m = PAPER_M / m
    ks = np.array(list(PAPER_KS), dtype=float)
    proj = {
        "fits (the sweep itself)": per_rep["fit"] * scale_m * PAPER_R * (ks / K).sum(),
        "gamma ± SE": t_gamma * (PAPER_R / R) ** 2 * scale_m * ((ks / K) ** 2).sum(),
        "out-of-bag error": per_rep["oob"] * scale_m * PAPER_R * (ks / K).sum(),
        "consensus cophenetic + dispersion": t_cons * (PAPER_R / R) * (ks / K).sum(),
        "reconstruction error": t_rec * scale_m * len(ks),
    }
    base = proj["fits (the sweep itself)"]
    print("\nPROJECTION to the paper's sweep (4,345 x 62,529, K 8-30 x 100 replicates), "
          "single-threaded, this machine:")
    for name, sec in proj.items():
        print(f"  {name:<36} {sec / 3600:8.2f} h   {100 * sec / base:7.2f} % of the fits")


if __name__ == "__main__":
    main()
