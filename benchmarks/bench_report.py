"""Benchmark: how long the report takes to build on a small run (issue 36: 25–53 s, as long as the sweep).

Runs the tiny pipeline once into ``--out`` (its stages are cached, so a rerun only rebuilds the
result files and the report), then times :func:`osnmf.report.build.build_report` ``--repeat`` times
(wall and CPU seconds, medians), the seconds each figure takes to save in one more build, and with
``--profile`` the slowest functions of one build under cProfile. To time another checkout, run this
file with ``PYTHONPATH=<checkout>/src`` and another ``--out``.

Run: .venv/bin/python benchmarks/bench_report.py [--out /tmp/bench_report] [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import time

from osnmf.config import RunConfig
from osnmf.pipeline import Pipeline

TINY = dict(k_min=3, k_max=5, n_replicates=4, phantom_genes=60, phantom_patterns=4, phantom_noise=0.1,
            moran_replicates=3, n_random_models=20, link_sizes=[1, 2], quiet=True)  # tests/test_pipeline.py's run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/bench_report")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    from osnmf.report.build import build_report

    pipeline = Pipeline(RunConfig(out=args.out, **TINY))
    summary = pipeline.run()  # cached after the first time
    print(f"pipeline stage seconds: {pipeline.state.timings}")
    seconds, cpu = [], []
    for _ in range(args.repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        build_report(pipeline.state, summary)
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)  # CPU time: less sensitive to other load on the machine
    print(f"build_report: median {statistics.median(seconds):.2f} s wall, {statistics.median(cpu):.2f} s CPU over "
          f"{args.repeat} (wall {', '.join(f'{s:.2f}' for s in seconds)}; CPU {', '.join(f'{s:.2f}' for s in cpu)})")
    import osnmf.report.build as build

    saved: dict[str, float] = {}
    original = build._Figures.__call__

    def timed(self, fig, name):
        start = time.perf_counter()
        try:
            return original(self, fig, name)
        finally:
            saved[name] = time.perf_counter() - start

    build._Figures.__call__ = timed
    start = time.perf_counter()
    build_report(pipeline.state, summary)
    total = time.perf_counter() - start
    build._Figures.__call__ = original
    print(f"one more build: {total:.2f} s, of which saving figures {sum(saved.values()):.2f} s:")
    for name, sec in sorted(saved.items(), key=lambda item: -item[1]):
        print(f"  {name:<28} {sec:6.2f} s")
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        build_report(pipeline.state, summary)
        profile.disable()
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(35)
        print(text.getvalue())


if __name__ == "__main__":
    main()
