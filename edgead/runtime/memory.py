"""Available memory, so that big statistics are refused before they exhaust the machine.

Read from /proc/meminfo (Linux, Jetson included); elsewhere from sysconf. Written here because
the one library that does this well (psutil) is a compiled dependency the runtime can spare.
"""

from __future__ import annotations

import os


def available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def reset_peak() -> bool:
    """Start this process's peak-memory count afresh (Linux: ``/proc/self/clear_refs``), so
    that a fit in a long-lived worker (``export-many``) reports its own peak, not an earlier
    task's. False where the OS does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb() -> int | None:
    """This process's peak resident memory since it started or since ``reset_peak``, MiB
    (Linux: VmHWM, its own address space's high-water mark; getrusage's ru_maxrss would carry
    a parent's peak over fork and exec, and cannot be reset). None where the OS does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    try:
        import resource
        import sys
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if sys.platform == "darwin" else 1 << 10))
