"""Opt-in malloc tuning for long numerical runs: keep large temporaries on the heap.

glibc serves every allocation above its mmap threshold (128 KiB to start with) with a
fresh ``mmap`` and returns it with ``munmap`` when freed, so each solver step page-faults
its megabyte-sized ``(E, B)`` temporaries back in. Raising glibc's mmap and trim
thresholds (``mallopt(M_MMAP_THRESHOLD)``, ``mallopt(M_TRIM_THRESHOLD)``; see
``man 3 mallopt``) makes freed blocks reusable. Measured figures are in the README
(``benchmarks/bench_allocator.py``).

This changes the whole process's allocator, so the library never does it on import: the
``kirchhoff-sim`` command and the benchmarks call :func:`tune_allocator`, and a library
user who wants the speed-up calls it once at the start of a script. It only changes where
memory comes from, never a result. It is skipped off glibc/Linux, or when the environment
variable ``KIRCHHOFF_SIM_KEEP_MALLOC`` is set.

Dask workers need it most: their nanny sets ``MALLOC_TRIM_THRESHOLD_=65536``, which makes
glibc hand back nearly every freed block, and one training shard of the digits net took
6× longer on an untuned worker (1.0 s against 0.16 s). The local clusters
:class:`~kirchhoff_sim.hardware.distributed.DaskRunner` starts tune their workers (the
runner owns them); the workers of an existing cluster get it from ``dask worker ADDRESS
--preload kirchhoff_sim.allocator`` (:func:`dask_setup`).
"""

import ctypes
import ctypes.util
import os
import sys

__all__ = ["tune_allocator", "dask_setup"]

_M_TRIM_THRESHOLD = -1         # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20     # glibc's largest allowed value on 64-bit
_TRIM_THRESHOLD = 256 << 20


def tune_allocator() -> bool:
    """Raise glibc's mmap/trim thresholds for this process; returns True when it did."""
    if not sys.platform.startswith("linux") or os.environ.get("KIRCHHOFF_SIM_KEEP_MALLOC"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def dask_setup(worker=None) -> None:
    """Dask's preload hook: ``dask worker ADDRESS --preload kirchhoff_sim.allocator`` runs
    :func:`tune_allocator` in each worker process as it starts."""
    tune_allocator()
