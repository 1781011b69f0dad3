"""Distributed staNMF sweep: scaling over Dask workers and the overhead per task.

Same data, same blocks, same seeds, timed in one run. The sweep is StaNMF's fast recipe
(``recipe="fast"``: each replicate grown from its K−1 fit, so the blocks run in K waves; the
estimator's defaults before ``"paper"`` became the default), so it measures what it always did:

* ``local``: the serial in-process sweep (``SerialExecutor``), the reference;
* ``dask N``: a ``LocalCluster`` on 127.0.0.1 with N process workers × 1 thread (each worker
  gets X once, scattered), for N in ``--workers``;
* overhead per task: the same number of near-empty tasks (a rank-1 fit with 1 iteration on a
  3-row slice: microseconds of work) through ``DaskExecutor`` vs ``SerialExecutor``.

Prints wall times, speed-ups vs 1 worker and vs local, the overhead per task, the client's peak
memory and the largest worker RSS, and checks that every run's instability curve equals the
local one. Numbers from a shared machine are noisy: compare within one run.

    .venv/bin/python benchmarks/bench_dask_scaling.py [--genes 300 --voxels 3000 --workers 1 2]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from threadpoolctl import threadpool_limits

from osnmf.factorize.stanmf import StaNMF
from osnmf.factorize.sweep.executors import DaskExecutor, SerialExecutor
from osnmf.factorize.sweep.params import SweepParams
from osnmf.factorize.sweep.run import fit_block


def low_rank(n: int, m: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.gamma(0.6, size=(n, k)) @ rng.gamma(0.6, size=(k, m))
    return (X * rng.lognormal(0, 0.1, X.shape)).astype(np.float32)


def worker_rss_mb(client) -> float:
    rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return max(rss.values()) / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def workers_cpu_seconds(client) -> float:
    return float(sum(client.run(cpu_seconds).values()))


def warm_imports() -> None:
    import osnmf.factorize.nmf.fits  # noqa: F401


def tiny_task(X: np.ndarray, i: int):
    """Microseconds of real work on the shared X: the cost measured is the task's transport."""
    params = SweepParams(max_iter=1)
    return fit_block(X[:3, :50], 1, np.ones((1, 3), np.int64), params, [i])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--genes", type=int, default=300)
    ap.add_argument("--voxels", type=int, default=3000)
    ap.add_argument("--ks", type=int, nargs="+", default=[4, 6, 8])
    ap.add_argument("--replicates", type=int, default=8)
    ap.add_argument("--block-size", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--tiny-tasks", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    from dask.distributed import Client, LocalCluster

    X = low_rank(args.genes, args.voxels, 6)
    kw = dict(k_range=args.ks, n_replicates=args.replicates, block_size=args.block_size, recipe="fast",
              random_state=0, max_iter=200, tol=1e-4)
    n_blocks = len(args.ks) * -(-args.replicates // args.block_size)
    print(f"X {X.shape} float32 ({X.nbytes / 2**20:.1f} MiB); K {args.ks}; "
          f"{args.replicates} replicates in blocks of {args.block_size} -> {n_blocks} tasks")

    from contextlib import ExitStack

    tiny = [(X, i) for i in range(args.tiny_tasks)]
    with ExitStack() as stack:
        clients = {}
        for n_workers in args.workers:
            t0 = time.perf_counter()
            cluster = stack.enter_context(LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None, worker_dashboard_address=None))
            client = stack.enter_context(Client(cluster, set_as_default=False))
            client.run(warm_imports)
            clients[n_workers] = client
            print(f"cluster of {n_workers} worker(s) started in {time.perf_counter() - t0:.1f} s")

        # interleave the configurations, keep the best of --repeats (the machine is shared)
        sweep = {"local": [], **{n: [] for n in clients}}
        cpu = {"local": [], **{n: [] for n in clients}}  # (worker CPU, client CPU) per run
        tasks = {"local": [], **{n: [] for n in clients}}
        diffs = {}
        for _ in range(args.repeats):
            with threadpool_limits(1):  # one BLAS thread, like the dask workers
                t0, c0 = time.perf_counter(), cpu_seconds()
                ref = StaNMF(**kw).fit(X)
                sweep["local"].append(time.perf_counter() - t0)
                cpu["local"].append((cpu_seconds() - c0, 0.0))
                t0 = time.perf_counter()
                list(SerialExecutor().map_unordered(tiny_task, tiny))
                tasks["local"].append(time.perf_counter() - t0)
            for n_workers, client in clients.items():
                ex = DaskExecutor(client)
                w0, c0, t0 = workers_cpu_seconds(client), cpu_seconds(), time.perf_counter()
                model = StaNMF(**kw, client=ex).fit(X)
                sweep[n_workers].append(time.perf_counter() - t0)
                c1 = cpu_seconds()
                cpu[n_workers].append((workers_cpu_seconds(client) - w0, c1 - c0))
                diffs[n_workers] = float(np.abs(model.instability_.to_numpy()
                                                - ref.instability_.to_numpy()).max())
                t0 = time.perf_counter()
                list(ex.map_unordered(tiny_task, tiny))
                tasks[n_workers].append(time.perf_counter() - t0)
        rss = {n: worker_rss_mb(c) for n, c in clients.items()}

    best = {key: min(v) for key, v in sweep.items()}
    tiny_best = {key: min(v) / len(tiny) for key, v in tasks.items()}
    print(f"\nsweep wall time, best of {args.repeats} (all runs: "
          + "; ".join(f"{k}: " + " ".join(f"{t:.1f}" for t in v) for k, v in sweep.items()) + ")")
    print(f"  local serial        {best['local']:7.2f} s  "
          f"({best['local'] / n_blocks * 1e3:.0f} ms per block)")
    first = args.workers[0]
    for n in clients:
        print(f"  dask {n} worker(s)   {best[n]:7.2f} s  speed-up vs local x{best['local'] / best[n]:.2f}"
              f", vs {first} worker x{best[first] / best[n]:.2f} (ideal x{n / first:.0f}); "
              f"overhead per block {(best[n] * n - best['local']) / n_blocks * 1e3:+.0f} ms "
              f"worker-time; curve max |diff| vs local {diffs[n]:.1e}; "
              f"max worker RSS {rss[n]:.0f} MB")
    print("CPU seconds, min over runs (the machine may be shared, CPU time is less noisy than "
          "wall time):")
    print(f"  local serial        {min(c[0] for c in cpu['local']):6.2f} s (sweep + final fit)")
    for n in clients:
        w = min(c[0] for c in cpu[n])
        c = min(c[1] for c in cpu[n])
        print(f"  dask {n} worker(s)   workers {w:6.2f} s + client {c:5.2f} s "
              f"(client includes the final fit) -> workers' CPU per block "
              f"{w / n_blocks * 1e3:.0f} ms")
    print(f"near-empty tasks ({len(tiny)}): local {tiny_best['local'] * 1e3:.2f} ms per task")
    for n in clients:
        print(f"  dask {n} worker(s)   {tiny_best[n] * 1e3:.2f} ms per task  -> overhead "
              f"{(tiny_best[n] - tiny_best['local']) * 1e3:.2f} ms per task")
    print(f"client process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          " MB (holds the LocalClusters' schedulers too)")


if __name__ == "__main__":
    main()
