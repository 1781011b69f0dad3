"""Why the fused numba sweep: one CD sweep timed with numpy, torch (CPU) and numba, same inputs.

Prints, for a few (replicates R, rank k, length L) shapes of the paper-size problem (L = 62,529
voxels for the D update, L = 4,345 genes for the A update), the best-of-3 time of one sweep with
each kernel, the ratios, and the largest difference of the updated factors against numpy, with
the load average (the machine is shared: compare ratios, not absolute times).

``--chunks 128 1024 2048`` instead times the numba sweep compiled with each column-chunk size
(the module's source with its ``CHUNK`` replaced, not cached), the measurement behind ``CHUNK``.

Usage::

    python benchmarks/bench_kernels.py [--threads 2] [--chunks 128 1024 2048]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from osnmf.factorize.nmf.kernels.numba_cd import cd_sweep_fused
from osnmf.factorize.nmf.kernels.numpy_cd import cd_sweep as numpy_sweep


def best_of(fn, F, *args, reps=3):
    """Best time of ``fn(copy of F, *args)`` over ``reps`` runs, and the last updated copy."""
    ts = []
    for _ in range(reps):
        Fc = F.copy()
        t = time.perf_counter()
        fn(Fc, *args)
        ts.append(time.perf_counter() - t)
    return min(ts), Fc


def sweep_with_chunk(chunk: int):
    """``cd_sweep_fused`` compiled with ``CHUNK = chunk`` (a fresh copy of the module, no cache)."""
    import re

    import osnmf.factorize.nmf.kernels.numba_cd as kn

    with open(kn.__file__, encoding="utf-8") as fh:
        src = fh.read()
    src = re.sub(r"^CHUNK = \d+", f"CHUNK = {chunk}", src, flags=re.M).replace("cache=True", "cache=False")
    ns: dict = {"__name__": f"kernels_numba_chunk{chunk}"}
    exec(compile(src, kn.__file__, "exec"), ns)
    return ns["cd_sweep_fused"]


def time_chunks(chunks: list[int]) -> None:
    """One sweep per shape and chunk size (best of 3; D updates unweighted, A updates weighted)."""
    rng = np.random.default_rng(0)
    sweeps = {c: sweep_with_chunk(c) for c in chunks}
    for R, k, L in [(50, 30, 62529), (50, 10, 62529), (16, 30, 4345), (1, 10, 62529)]:
        Y = rng.random((R, k, 500)).astype(np.float32)
        G = Y @ Y.transpose(0, 2, 1)
        F = rng.random((R, k, L)).astype(np.float32)
        XF = (rng.random((R, k, L)) * G.sum(2)[:, :, None]).astype(np.float32)
        w = rng.integers(0, 3, (R, L)).astype(np.float32) if L < 10_000 else None
        times = {}
        for c, fn in sweeps.items():
            fn(F.copy(), G, XF, w)  # compile
            times[c], _ = best_of(fn, F, G, XF, w)
        print("RESULT " + f"R={R:3d} k={k:2d} L={L:6d}: " + "  ".join(
            f"chunk {c}: {t / R * 1e3:6.2f} ms/replicate" for c, t in times.items()), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunks", type=int, nargs="+", default=None)
    a = ap.parse_args()
    if a.chunks:
        print(f"load average {os.getloadavg()}")
        time_chunks(a.chunks)
        print(f"load average {os.getloadavg()}")
        return
    rng = np.random.default_rng(0)
    try:
        import torch

        from osnmf.factorize.nmf.kernels.torch_cd import cd_sweep as torch_sweep
    except ImportError:
        torch = None
    print(f"load average {os.getloadavg()}; threads {a.threads}")
    with threadpool_limits(a.threads):
        if torch is not None:
            torch.set_num_threads(a.threads)
        for R, k, L in [(20, 11, 62529), (20, 30, 62529), (20, 11, 4345), (1, 11, 62529)]:
            F = rng.random((R, k, L)).astype(np.float32)
            D = rng.random((R, k, 500)).astype(np.float32)
            G = D @ D.transpose(0, 2, 1)
            XF = (rng.random((R, k, L)) * G.sum(2)[:, :, None]).astype(np.float32)
            w = rng.integers(0, 3, (R, L)).astype(np.float32)
            cd_sweep_fused(F.copy(), G, XF, w)  # compile / load the cache
            t_np, F_np = best_of(numpy_sweep, F, G, XF, w)
            t_nb, F_nb = best_of(cd_sweep_fused, F, G, XF, w)
            line = (f"R={R:3d} k={k:2d} L={L:6d}: numpy {t_np * 1e3:8.1f} ms  numba {t_nb * 1e3:7.1f} ms "
                    f"({t_np / t_nb:4.1f}x)  max|ΔF| {np.abs(F_nb - F_np).max():.1e}")
            if torch is not None:
                tG, tXF, tw = (torch.from_numpy(x) for x in (G, XF, w))
                t_t, _ = best_of(lambda F, *a: torch_sweep(torch.from_numpy(F), *a), F, tG, tXF, tw)
                line += f"  torch-cpu {t_t * 1e3:7.1f} ms ({t_t / t_nb:4.1f}x numba)"
            print("RESULT " + line, flush=True)
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
