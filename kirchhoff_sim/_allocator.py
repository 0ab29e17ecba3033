"""Keep large numpy temporaries on the heap instead of mmap'ing them afresh.

glibc serves every allocation above its mmap threshold (128 KiB to start with) with a
fresh mmap and returns it with munmap when freed, so each solver step page-faults its
megabyte-sized ``(E, B)`` temporaries back in. Measured on a 600-edge × 512-sample
layer, ``tanh`` of a fresh array took 2.6 ms against 0.5 ms with the threshold raised.
Raising glibc's mmap and trim thresholds makes freed blocks reusable. This only changes
where memory comes from; it is skipped off glibc, or when the environment variable
``KIRCHHOFF_SIM_KEEP_MALLOC`` is set.
"""

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20     # glibc's largest allowed value on 64-bit
_TRIM_THRESHOLD = 256 << 20


def tune() -> bool:
    """Raise glibc's mmap/trim thresholds; returns True when it did."""
    if not sys.platform.startswith("linux") or os.environ.get("KIRCHHOFF_SIM_KEEP_MALLOC"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
