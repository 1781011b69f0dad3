"""Benchmark: Moran's I of all patterns of a model at full resolution, osnmf vs esda.

Data: the planted patterns of a phantom (``osnmf.make_phantom``, default 11 patterns over the
62,529 brain voxels of the Allen 200 µm grid), face adjacency inside the brain.

Timed in the same run, on the same data and the same adjacency:

* osnmf ``morans_i`` on the (K, m) stack, building the sparse weights (cold) and with the
  weights precomputed (warm); the strongest-pattern (binary) variant too;
* esda ``Moran(y, w, transformation="b", permutations=0)`` once per pattern, with the
  libpysal ``W`` built from the same neighbour lists (its construction timed separately).

Prints the agreement (max |ΔI|), the times, the ratio and the peak Python-heap memory
(tracemalloc) of each. The reference osNMF code's dense N × N adjacency would need
N² × 8 bytes (≈ 31 GB at full resolution), which is why it downsampled 2×.

Usage: ``python benchmarks/bench_moran.py [--patterns 11] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings

import numpy as np


def _measure(fn, repeat: int):
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, min(times), peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patterns", type=int, default=11)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import esda
    import libpysal

    import osnmf
    from osnmf.spatial.moran import morans_i, spatial_weights, strongest_pattern_morans_i

    ph = osnmf.make_phantom(n_genes=2 * args.patterns, n_patterns=args.patterns, seed=args.seed,
                            n_markers=1)
    mask = ph.atlas.brain_mask
    P = ph.patterns.astype(np.float64)
    K, m = P.shape
    print(f"data: {K} phantom patterns × {m} brain voxels (grid {mask.shape}), face adjacency")

    ours_cold, t_cold, mem_cold = _measure(lambda: morans_i(P, mask), args.repeat)
    w = spatial_weights(mask)
    ours_warm, t_warm, mem_warm = _measure(lambda: morans_i(P, mask, w=w), args.repeat)
    strong, t_strong, mem_strong = _measure(lambda: strongest_pattern_morans_i(P, mask, w=w),
                                            args.repeat)

    def build_w():
        neighbors = {i: w.indices[w.indptr[i]:w.indptr[i + 1]].tolist() for i in range(m)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return libpysal.weights.W(neighbors, silence_warnings=True)

    w_lib, t_build, mem_build = _measure(build_w, 1)

    def run_esda(maps):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.array([esda.Moran(y, w_lib, transformation="b", permutations=0).I
                             for y in maps])

    ref, t_esda, mem_esda = _measure(lambda: run_esda(P), args.repeat)
    labels = np.argmax(P, axis=0)
    labels[P.max(axis=0) <= 0] = -1
    ind = (labels[None, :] == np.arange(K)[:, None]).astype(np.float64)
    ref_strong, t_esda_strong, _ = _measure(lambda: run_esda(ind), 1)

    print(f"agreement: max |I_osnmf - I_esda| = {np.max(np.abs(ours_warm - ref)):.2e} "
          f"(continuous), {np.nanmax(np.abs(strong - ref_strong)):.2e} (strongest-pattern)")
    print(f"Moran's I per pattern: {np.array2string(ours_warm, precision=3)}")
    print()
    print(f"{'method':52s} {'time (s)':>10s} {'peak MB':>9s}")
    rows = [
        ("osnmf morans_i, K patterns, building weights", t_cold, mem_cold),
        ("osnmf morans_i, K patterns, weights given", t_warm, mem_warm),
        ("osnmf strongest_pattern_morans_i, weights given", t_strong, mem_strong),
        ("libpysal W from the same neighbour lists (once)", t_build, mem_build),
        ("esda Moran, K patterns (W given)", t_esda, mem_esda),
        ("esda Moran, K strongest-pattern maps (W given)", t_esda_strong, float("nan")),
    ]
    for name, t, mem in rows:
        print(f"{name:52s} {t:10.4f} {mem / 2**20:9.1f}")
    print()
    print(f"speed-up, weights given: esda / osnmf = {t_esda / t_warm:.1f}×")
    print(f"speed-up, end to end (esda incl. building W vs osnmf cold): "
          f"{(t_esda + t_build) / t_cold:.1f}×")
    print(f"all {K} patterns at full resolution in {t_cold:.3f} s (target < 1 s)")
    print(f"dense N×N adjacency as in the reference code would take {m * m * 8 / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
