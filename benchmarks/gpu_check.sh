#!/usr/bin/env bash
# One prepared GPU check (issue 13, item 7) for the first CUDA machine; under 10 minutes.
#   1. the torch tests on CUDA (OSNMF_REQUIRE_CUDA=1: the CUDA cases run or fail, never skip);
#   2. one block of the default (paper) recipe's fits at paper size (grow=False, exact solver:
#      SweepParams' defaults) on CUDA beside the numpy backend and scikit-learn (per-fit ratios printed);
#   3. a reduced paper-size `osnmf run` with --backend torch --device cuda and --recipe fast
#      (bench_paper_size.py; grown starts and the auto solver's sketch, the run this check always
#      made — the paper recipe's exact sweep is section 2's fits; K and replicates below, raise
#      them when time allows).
# Usage: bash benchmarks/gpu_check.sh [python]   (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OSNMF_GPU_OUT:-/tmp/osnmf_gpu_check}
mkdir -p "$OUT"
"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch"
print("torch", torch.__version__, "device", torch.cuda.get_device_name(0))
PY
echo "== 1. torch tests on CUDA"
OSNMF_REQUIRE_TORCH=1 OSNMF_REQUIRE_CUDA=1 timeout 240 "$PY" -m pytest -q -x -p no:cacheprovider tests/test_nmf_torch.py
echo "== 2. one block at paper size: torch-cuda vs numpy vs scikit-learn"
timeout 240 "$PY" - <<'PY'
import os, time, warnings
import numpy as np
from bench_nmf_bootstrap import load_matrix
from osnmf.factorize.sweep import SweepParams, fit_block, replicate_counts
X = load_matrix(4345, 11, os.environ.get("OSNMF_GPU_OUT", "/tmp/osnmf_gpu_check") + "/X4345.npy")
R, k = 20, 11
params = SweepParams(random_state=0, grow=False)
counts = replicate_counts(X.shape[0], range(R), params)
times = {}
for name, p in [("cuda", SweepParams(random_state=0, grow=False, backend="torch", device="cuda")),
                ("cuda-exact", SweepParams(random_state=0, grow=False, backend="torch", device="cuda", solver="exact")),
                ("numpy", params)]:
    fit_block(X, k, counts[:2], p, np.arange(2))  # warm-up (CUDA context, kernels, numba cache)
    t = time.perf_counter(); fit_block(X, k, counts, p, np.arange(R)); times[name] = (time.perf_counter() - t) / R
    print(f"{name}: {times[name]:.3f} s per replicate fit", flush=True)
from sklearn.decomposition import NMF
idx = np.repeat(np.arange(X.shape[0]), counts[0])
t = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    NMF(k, solver="cd", init="nndsvda", random_state=0, max_iter=200, tol=1e-4).fit_transform(X[idx])
sk = time.perf_counter() - t
print(f"RESULT per fit: sklearn {sk:.2f} s; " + "; ".join(f"{n} {v:.3f} s ({sk / v:.1f}x)" for n, v in times.items()))
PY
echo "== 3. reduced paper-size osnmf run on CUDA"
timeout 420 "$PY" benchmarks/bench_paper_size.py --out "$OUT/run" --recipe fast --k-min 10 --k-max 12 \
    --replicates 20 --backend torch --device cuda --sklearn-fits 1 --json "$OUT/paper_size_cuda.json"
echo "gpu_check done: $OUT/paper_size_cuda.json"
