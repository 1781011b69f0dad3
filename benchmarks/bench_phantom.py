"""Time and peak memory of make_phantom at the demo size and at the paper's size.

Usage: python benchmarks/bench_phantom.py [n_genes ...]   (default: 200 4345)
Peak memory is the process's maximum resident set size (resource.getrusage), measured in a fresh
subprocess per size so one size does not hide the other.
"""

import json
import subprocess
import sys

CHILD = """
import json, resource, time
import numpy as np
import osnmf
atlas = osnmf.Atlas.default(); atlas.membership
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter(); c = time.process_time()
p = osnmf.make_phantom(n_genes={n}, n_patterns=11, seed=0, atlas=atlas)
dt = time.perf_counter() - t; cpu = time.process_time() - c
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
held = p.data.volumes.nbytes + p.clean.nbytes + p.missing.nbytes + p.patterns.nbytes
print(json.dumps(dict(n_genes={n}, seconds=round(dt, 2), cpu_seconds=round(cpu, 2), peak_rss_gb=round(peak / 2**20, 2),
                      rss_before_gb=round(base / 2**20, 2), arrays_gb=round(held / 2**30, 2),
                      missing=round(float(p.missing.mean()), 4))))
"""


def main(sizes):
    for n in sizes:
        out = subprocess.run([sys.executable, "-c", CHILD.format(n=n)], capture_output=True, text=True, check=True)
        print(json.loads(out.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [200, 4345])
