"""Hand freed heap memory back to the operating system during a long fit (glibc; no-ops elsewhere).

glibc serves allocations below its mmap threshold from its heaps, and the threshold adapts
upwards (to 32 MiB) once a large array has been freed, so the many 2–30 MiB arrays of a sweep's
blocks and γ computations land there; when they are freed the pages stay resident.

* :func:`release_free_memory` (``malloc_trim(0)``) returns the free pages inside every heap.
  It cannot shrink the top of a worker thread's heap: glibc does that only on ``free``, once
  the top exceeds the trim threshold, which adapts upwards to 64 MiB. Measured at paper size
  (4,345 × 62,529, blocks on two threads): between the phases after the blocks, RSS stayed
  0.13 GiB above what was allocated, and that matched the free bytes glibc still held.
* :func:`limit_heap_retention` therefore fixes the trim threshold at 8 MiB (and the mmap
  threshold at 32 MiB, where it adapts to anyway; setting one disables the adaptation of both).
  Measured on K = 10–30 blocks of 5 replicates on two threads: 0.11–0.16 GiB less resident
  after the blocks, same time (a 1 MiB mmap threshold, by contrast, cost 40 % in page faults).
  It changes a process-wide allocator setting, once, when a sweep starts (dask.distributed does
  the like for the workers its nannies start: ``MALLOC_TRIM_THRESHOLD_=65536``).
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["limit_heap_retention", "release_free_memory"]

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 8 * 2**20
MMAP_THRESHOLD = 32 * 2**20


def _libc_function(name: str):
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None), name)  # glibc; absent on musl
    except (OSError, AttributeError):
        return None


_TRIM = _libc_function("malloc_trim")
_MALLOPT = _libc_function("mallopt")
_limited = False


def release_free_memory() -> None:
    """Return the free pages of the C heap to the OS (glibc ``malloc_trim(0)``; a no-op elsewhere)."""
    if _TRIM is not None:
        _TRIM(0)


def limit_heap_retention() -> None:
    """Fix glibc's trim threshold at 8 MiB and its mmap threshold at 32 MiB (once per process)."""
    global _limited
    if _MALLOPT is None or _TRIM is None or _limited:
        return
    _MALLOPT(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    _MALLOPT(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    _limited = True
