"""The glibc heap settings of a sweep: freed worker-thread arrays go back to the OS."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import threading, numpy as np
    from osnmf.factorize.sweep import memory

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024

    big = np.ones(40 * 2**20 // 8); del big  # a freed mmapped chunk: glibc raises its thresholds
    if LIMIT:
        memory.limit_heap_retention()

    def work():  # a worker thread's arrays of 20 MiB, freed at the top of its heap
        for _ in range(3):
            a = np.ones(20 * 2**20 // 8)
            a += 1
            del a

    t = threading.Thread(target=work); t.start(); t.join()
    memory.release_free_memory()
    print(rss_mib())
""")


def _retained(limit: bool) -> float:
    """Resident MiB of a fresh process after its worker thread freed its arrays."""
    # without glibc settings inherited from the environment (a Dask nanny, started by another
    # test, sets MALLOC_TRIM_THRESHOLD_ for the same reason)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", f"LIMIT = {limit}\n" + SCRIPT], capture_output=True,
                         text=True, check=True, env=env).stdout
    return float(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc heap settings (Linux only)")
def test_limited_heap_returns_a_worker_threads_freed_arrays():
    """Without the limit the freed 20 MiB stays resident in the thread's heap (malloc_trim cannot
    shrink a thread heap's top); with it, the process holds about 20 MiB less."""
    plain, limited = _retained(False), _retained(True)
    assert plain - limited > 15, (plain, limited)
