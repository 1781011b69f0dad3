#!/usr/bin/env bash
# One prepared GPU check (issue 13, item 7) for the first CUDA machine; under 10 minutes.
#   1. the torch tests on CUDA (OSNMF_REQUIRE_CUDA=1: the CUDA cases run or fail, never skip);
#   2. one block of the default (paper) recipe's fits at paper size (grow=False, exact solver:
#      SweepParams' defaults) on CUDA beside the numpy backend and scikit-learn (per-fit ratios printed);
#   3. the default (paper) recipe's whole paper-size `osnmf run` on CUDA: K 8-30 x 100 replicates,
#      cold exact fits (bench_paper_size.py --backend torch --device cuda). On 2 CPU cores this sweep
#      is ~6e15 flops: 4,527 s measured with 10 replicates, about 12.6 h projected for 100
#      (benchmarks/results/paper_size_paper_recipe_10reps.json); on a GPU it should take minutes. Resumable: a second call with the same OSNMF_GPU_OUT on the still-warm
#      machine goes on from the finished blocks.
# Usage: bash benchmarks/gpu_check.sh [python] [sections]
#   python: default .venv/bin/python, else python3; sections: default "1 2 3". One `run` call has
#   10 minutes: run "1 2" in one call and "3" in the next.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
SECTIONS=" ${2:-1 2 3} "
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OSNMF_GPU_OUT:-/tmp/osnmf_gpu_check}
mkdir -p "$OUT"
"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch"
print("torch", torch.__version__, "device", torch.cuda.get_device_name(0))
PY
if [[ $SECTIONS == *" 1 "* ]]; then
echo "== 1. torch tests on CUDA"
OSNMF_REQUIRE_TORCH=1 OSNMF_REQUIRE_CUDA=1 timeout 240 "$PY" -m pytest -q -x -p no:cacheprovider tests/test_nmf_torch.py
fi
if [[ $SECTIONS == *" 2 "* ]]; then
echo "== 2. one block at paper size: torch-cuda vs numpy vs scikit-learn"
timeout 240 "$PY" - <<'PY'
import os, time, warnings
import numpy as np
from bench_nmf_bootstrap import load_matrix
from osnmf.factorize.sweep.run import SweepParams, fit_block, replicate_counts
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
fi
if [[ $SECTIONS == *" 3 "* ]]; then
echo "== 3. the paper recipe's paper-size osnmf run on CUDA (K 8-30 x 100)"
timeout 540 "$PY" benchmarks/bench_paper_size.py --out "$OUT/run_paper" --recipe paper \
    --backend torch --device cuda --sklearn-fits 1 --sklearn-ks --json "$OUT/paper_size_paper_recipe_cuda.json"
echo "gpu_check section 3 done: $OUT/paper_size_paper_recipe_cuda.json"
fi
