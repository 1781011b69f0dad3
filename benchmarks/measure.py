"""Timing and memory for the benchmarks, in separate passes.

``tracemalloc`` hooks every allocation, which slows Python-heavy code (scikit-learn's loops) far
more than code that spends its time in a few large NumPy calls, so a timing taken under it
flatters the faster side's ratio. :func:`timed` therefore never traces; :func:`peak_mib` runs the
function a second time, traced, only to read its peak memory.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), wall seconds)``, measured without tracing."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def peak_mib(fn: Callable[[], Any]) -> float:
    """Peak traced Python/NumPy memory of a second, separate run of ``fn``, in MiB."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
