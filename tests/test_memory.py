"""The glibc heap settings of a sweep: freed worker-thread arrays go back to the OS."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import threading, numpy as np
    from osnmf.factorize import memory

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


def _numpy_asks_for_huge_pages() -> bool:
    from osnmf.factorize.memory import _numpy_huge_page_switch

    switch = _numpy_huge_page_switch()
    flag = switch(True)  # numpy's switch returns the previous flag: read it, then put it back
    switch(flag)
    return bool(flag)


def test_a_fit_asks_for_no_huge_pages_and_restores_numpys_setting(monkeypatch):
    """Inside StaNMF.fit numpy does not madvise new arrays for huge pages (khugepaged would make
    freed heap memory resident again); numpy's own setting is back afterwards, also after an error."""
    import numpy as np

    import osnmf
    from osnmf.factorize import memory, stanmf

    assert memory._numpy_huge_page_switch() is not None  # numpy 1.24–2.x have it
    before = _numpy_asks_for_huge_pages()
    seen = []
    real = stanmf.run_sweep

    def spy(*args, **kwargs):
        seen.append(_numpy_asks_for_huge_pages())
        return real(*args, **kwargs)

    monkeypatch.setattr(stanmf, "run_sweep", spy)
    X = np.random.default_rng(0).random((20, 15))
    osnmf.StaNMF(k_range=[2, 3], n_replicates=3, random_state=0).fit(X)
    assert seen == [False]
    assert _numpy_asks_for_huge_pages() is before

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stanmf, "run_sweep", fail)
    with pytest.raises(KeyboardInterrupt):
        osnmf.StaNMF(k_range=[2, 3], n_replicates=3, random_state=0).fit(X)
    assert _numpy_asks_for_huge_pages() is before
